"""The paper's sparsity coefficients, translated into saerepro's loss convention.

Rajamanoharan et al. (arXiv 2404.16014 v2, App. D and Tables 1-8) quote λ in their own units.
The config files in ``config/paper/`` hold λ in *ours* (:mod:`saerepro.sae.common`):

* ours: inputs x_o scaled so that E‖x_o‖² = d_in; L_o = ‖x_o − x̂_o‖² + λ_o ‖f_o‖₁
  (squared error summed over d_in, both terms averaged over the batch);
* the paper's, written generally: inputs x_p with E‖x_p‖² = M_p; L_p = ‖x_p − x̂_p‖² / N_p +
  λ_p ‖f_p‖₁, where N_p = M_p for the Pythia-2.8B and Gemma-7B *baseline* runs (their
  reconstruction term was "also divided by E‖x‖²") and N_p = 1 otherwise.

With x_o = c·x_p, c = sqrt(d_in / M_p), and a unit-norm decoder, every SAE of one loss maps to an
SAE of the other with f_o = c·f_p (biases scaled by c), so ‖x_o − x̂_o‖² = c²‖x_p − x̂_p‖² and
‖f_o‖₁ = c‖f_p‖₁. Then L_o = c²·N_p·[‖x_p − x̂_p‖²/N_p + λ_o/(c·N_p)·‖f_p‖₁], which has the same
minimisers as L_p exactly when::

    λ_o = c · N_p · λ_p = sqrt(d_in / M_p) · N_p · λ_p

The same holds for the Gated loss (its aux term is another squared error; its L1 acts on
ReLU(π_gate), which also scales by c), so one formula covers every architecture.

**Assumption** (:data:`PAPER_MEAN_SQ_NORM`): M_p = 1, i.e. the paper's activations are scaled to
unit mean squared norm, the convention its authors state in their follow-up papers (JumpReLU,
Gemma Scope). Under it N_p = 1 as well and λ_o = sqrt(d_in) · λ_p for every architecture. If the
paper's inputs had another scale, pass ``paper_mean_sq_norm`` and the baseline's
``recon_divided_by_mean_sq=True`` and the formula above applies unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: E‖x‖² of the paper's SAE inputs (assumed; see the module docstring).
PAPER_MEAN_SQ_NORM = 1.0
#: Significant digits the translated coefficients are rounded to (they name result folders).
SIGNIFICANT_DIGITS = 4


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0.0202386 -> 0.02024)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def to_our_lambda(
    lam_paper: float,
    d_in: int,
    *,
    paper_mean_sq_norm: float = PAPER_MEAN_SQ_NORM,
    recon_divided_by_mean_sq: bool = False,
) -> float:
    """λ_o = sqrt(d_in / M_p) · N_p · λ_p (module docstring), N_p = M_p if the paper's
    reconstruction term was divided by E‖x‖², else 1."""
    if lam_paper <= 0 or d_in <= 0 or paper_mean_sq_norm <= 0:
        raise ValueError("lambda, d_in and the paper's mean squared norm must be positive")
    n_p = paper_mean_sq_norm if recon_divided_by_mean_sq else 1.0
    return math.sqrt(d_in / paper_mean_sq_norm) * n_p * lam_paper


def log_grid(low: float, high: float, n: int) -> list[float]:
    """``n`` log-spaced values from ``low`` to ``high`` inclusive, rounded to
    :data:`SIGNIFICANT_DIGITS` (the paper quotes each sweep by its end points only)."""
    if n < 2 or not 0 < low < high:
        raise ValueError("need n >= 2 and 0 < low < high")
    ratio = (high / low) ** (1 / (n - 1))
    return [round_significant(low * ratio**i) for i in range(n)]


def translated_grid(paper_grid: Sequence[float], d_in: int, **kwargs) -> list[float]:
    """:func:`to_our_lambda` of each value, rounded to :data:`SIGNIFICANT_DIGITS`."""
    return [round_significant(to_our_lambda(lam, d_in, **kwargs)) for lam in paper_grid]


#: The sweeps of the paper configs, in the paper's units: (low, high) per model and architecture
#: family (App. D). GELU-1L's are not among the facts we have: it reuses Pythia-2.8B's.
PAPER_LAMBDA_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "pythia-2.8b": {"baseline": (7e-6, 4.5e-4), "gated": (4e-4, 7.5e-3)},
    "gemma-7b": {"baseline": (2e-6, 8e-4), "gated": (8e-6, 3e-3)},
    "gelu-1l": {"baseline": (7e-6, 4.5e-4), "gated": (4e-4, 7.5e-3)},
}
#: Points per sweep in the paper configs.
GRID_POINTS = 6


def paper_config_grid(model: str, family: str, d_in: int, n: int = GRID_POINTS) -> list[float]:
    """The λ grid (our convention) that ``config/paper/<model>.yaml`` holds for ``family``
    (``gated`` or ``baseline``; the gated ablations use ``gated``'s) at a site ``d_in`` wide."""
    low, high = PAPER_LAMBDA_RANGES[model][family]
    return translated_grid(log_grid(low, high, n), d_in)
