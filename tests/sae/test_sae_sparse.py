"""The sparse training step computes what the dense one does: equal losses and gradients for every
architecture that has one, at several densities, in float64 (≤ 1e-12) and float32 (≤ 1e-5)."""

from __future__ import annotations

import pytest
import torch

from saerepro.sae import GATED_FAMILY, make_sae
from saerepro.sae.sparse import ActivePairs, decode_active, sampled_product

SPARSE_ARCHITECTURES = (*GATED_FAMILY, "baseline", "topk", "jumprelu")
#: TopK's k at each shift (its density is k / d_sae); JumpReLU with a wide kernel, so that many
#: pairs fall in the straight-through estimators' window below θ.
TOPK_K = {0.0: 40, 2.0: 10, 5.0: 2}
ARCH_KWARGS = {"jumprelu": {"bandwidth": 0.3, "init_threshold": 0.5}}
#: Relative tolerance of each dtype (issue 29): float32 1e-5, float64 1e-12.
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def _sae(name: str, dtype: str, shift: float, d_in: int = 24, d_sae: int = 96, seed: int = 0):
    """Random weights with non-zero biases; ``shift`` moves every encoder bias (the density)."""
    torch.manual_seed(seed)
    kwargs = {"k": TOPK_K[shift], "k_aux": 7} if name == "topk" else ARCH_KWARGS.get(name, {})
    sae = make_sae(name, d_in, d_sae, dtype=dtype, **kwargs)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for bias in ("b_gate", "b_enc"):
            if hasattr(sae, bias):
                getattr(sae, bias).sub_(shift)
    return sae


def _grads(sae, out) -> dict[str, torch.Tensor]:
    sae.zero_grad(set_to_none=True)
    out.total.backward()
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).clone() for n, p in sae.named_parameters()}


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    scale = max(float(b.abs().max()), 1e-30)
    return float((a - b).abs().max()) <= rel * scale


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shift", [0.0, 2.0, 5.0], ids=["dense-ish", "mid", "sparse"])
@pytest.mark.parametrize("name", SPARSE_ARCHITECTURES)
def test_sparse_step_gives_the_dense_steps_losses_and_gradients(name, shift, dtype):
    sae = _sae(name, dtype, shift)
    x = torch.randn(128, 24, dtype=getattr(torch, dtype)) + 0.5
    dead = torch.rand(96, generator=torch.Generator().manual_seed(3)) < 0.3 if sae.needs_dead_mask else None  # AuxK
    dense = sae.loss_terms(x, coefficient=0.7, dead_mask=dead)
    dense_grads = _grads(sae, dense)
    sparse = sae.sparse_loss_terms(x, coefficient=0.7, dead_mask=dead)
    sparse_grads = _grads(sae, sparse)
    rel = TOLERANCE[dtype]
    pairs, values = sparse.active
    assert 0 < pairs.density < 1, pairs.density
    assert set(dense.terms) == set(sparse.terms)
    for term in dense.terms:
        assert _close(sparse.terms[term].detach(), dense.terms[term].detach(), rel), term
    assert _close(sparse.x_hat.detach(), dense.x_hat.detach(), rel)
    assert torch.equal(sparse.feature_acts.to_dense() != 0, dense.feature_acts != 0)
    if name == "jumprelu":  # pairs inside the kernel's window below θ: there, f is 0 but θ gets a gradient
        assert int((values == 0).sum()) > 0
    assert _close(pairs.to_dense(values.detach()), dense.feature_acts.detach(), rel)
    assert torch.equal(sparse.fired(), dense.fired()) and sparse.l0() == pytest.approx(dense.l0())
    for param, grad in dense_grads.items():
        if float(grad.abs().max()) == 0:
            assert float(sparse_grads[param].abs().max()) == 0, param
        else:
            assert _close(sparse_grads[param], grad, rel), param


def test_densities_of_the_equality_test_span_the_studied_range():
    """The three shifts give the L0 range the sparse step is for and the dense end where it falls back."""
    x = torch.randn(128, 24) + 0.5
    densities = [_sae("gated", "float32", s).sparse_loss_terms(x, 0.7).active[0].density for s in (0.0, 2.0, 5.0)]
    assert densities[0] > 0.3 and densities[-1] < 0.02 and densities == sorted(densities, reverse=True)


def test_kernels_match_their_dense_definitions():
    torch.manual_seed(1)
    mask = torch.rand(7, 11) < 0.2
    mask[3] = False  # a row without any active latent
    pairs = ActivePairs.from_mask(mask)
    values = torch.randn(pairs.nnz, dtype=torch.float64)
    W_dec = torch.randn(11, 5, dtype=torch.float64)
    dense = pairs.to_dense(values)
    assert torch.equal(dense != 0, mask)
    assert torch.allclose(decode_active(pairs, values, W_dec), dense @ W_dec, rtol=0, atol=1e-12)
    x, W = torch.randn(7, 5, dtype=torch.float64), torch.randn(5, 11, dtype=torch.float64)
    assert torch.allclose(sampled_product(x, W, pairs, chunk=3), (x @ W)[mask], rtol=0, atol=1e-12)
    assert torch.allclose(pairs.column_sum(values), dense.sum(0), rtol=0, atol=1e-12)
    assert float(pairs.l0(values)) == pytest.approx(float((dense != 0).sum(-1, dtype=torch.float64).mean()))
