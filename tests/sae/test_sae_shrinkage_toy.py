"""The paper's Fig. 2, as a test: with one feature and λ = 1, the L1 loss halves the reconstruction.

Rajamanoharan et al. (2404.16014), Fig. 2: "a single-feature SAE (with L1 coefficient λ = 1)
reconstructs 1/2 rather than 1 when minimizing Equation (4)". Minimising (1 − f)² + λf over f ≥ 0
gives f = 1 − λ/2. The gated SAE's magnitude path carries no L1 term, so it reconstructs 1.
Both SAEs here are ours, trained by their own ``loss_terms`` on x ≡ 1 with a fixed unit decoder.
"""

from __future__ import annotations

import pytest

from saerepro.toys import train_single_feature


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_baseline_shrinks_a_single_feature_to_one_minus_half_lambda(lam):
    assert train_single_feature("baseline", lam) == pytest.approx(1 - lam / 2, abs=1e-3)


def test_gated_reconstructs_a_single_feature_without_shrinkage():
    assert train_single_feature("gated", 1.0) == pytest.approx(1.0, abs=1e-3)
