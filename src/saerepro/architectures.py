"""The architecture names and the default-width rule, without torch.

Config validation (:mod:`saerepro.config`) and the tables read these without importing torch or
sae-lens; :mod:`saerepro.sae.registry` maps each name to its class and checks that it names every
architecture in this order (the order tables and legends list them).
"""

from __future__ import annotations

#: Every architecture, in the order tables and legends list them.
ARCHITECTURES: tuple[str, ...] = (
    "gated",
    "baseline",
    "topk",
    "jumprelu",
    "gated_unfrozen_decoder",
    "gated_no_rmag",
    "gated_untied",
    "gated_strict_aux",
    "baseline_rescale_shift",
)

#: The Gated family (the paper's architecture and its ablations).
GATED_FAMILY: tuple[str, ...] = (
    "gated",
    "gated_unfrozen_decoder",
    "gated_no_rmag",
    "gated_untied",
    "gated_strict_aux",
)

#: Architectures that may resample dead latents (``train`` ``resample``): the baseline and the gated
#: family, as in the paper's training (Bricken et al. 2023's procedure).
RESAMPLE_ARCHITECTURES: tuple[str, ...] = ("baseline", *GATED_FAMILY)

#: Architectures whose sparsity knob is the number of active latents ``k``.
K_ARCHITECTURES = frozenset({"topk"})

#: Architectures trained on top of an already trained baseline of the same coefficient.
DERIVED_ARCHITECTURES = {"baseline_rescale_shift": "baseline"}

#: Latents per input dimension of the gated SAEs (and of topk, jumprelu) by default.
EXPANSION_FACTOR = 4.0

#: Baseline latents / gated latents by default (compute matching, paper).
BASELINE_WIDTH_RATIO = 1.5


def check_architecture(name: str) -> None:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; allowed: {', '.join(ARCHITECTURES)}")


def default_expansion(
    architecture: str, expansion_factor: float = EXPANSION_FACTOR, baseline_width_ratio: float = BASELINE_WIDTH_RATIO
) -> float:
    """Compute-matched latents per input dimension (paper Sec. 4 / App. D).

    A Gated SAE step costs ~1.5× a baseline step at equal width (one encoder and two decoder
    matmuls forward, against one and one), so at equal compute the ``baseline`` gets
    ``baseline_width_ratio`` × the latents: gated 4×d_in, baseline 6×d_in by default. Every other
    architecture (gated ablations, topk, jumprelu) gets ``expansion_factor`` × d_in, i.e. the
    gated width, so that they compare at equal dictionary size. ``baseline_rescale_shift`` inherits
    its baseline's width (this returns the baseline's default).
    """
    check_architecture(architecture)
    if architecture in ("baseline", "baseline_rescale_shift"):
        return expansion_factor * baseline_width_ratio
    return expansion_factor


def default_width(
    architecture: str,
    d_in: int,
    expansion_factor: float = EXPANSION_FACTOR,
    baseline_width_ratio: float = BASELINE_WIDTH_RATIO,
) -> int:
    """Compute-matched number of latents: :func:`default_expansion` × ``d_in``, rounded (>= 1)."""
    check_architecture(architecture)
    width = expansion_factor * d_in
    if architecture in ("baseline", "baseline_rescale_shift"):
        width *= baseline_width_ratio
    return max(1, int(round(width)))
