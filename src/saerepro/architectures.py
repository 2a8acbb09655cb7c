"""The architectures' specs (:class:`ArchitectureSpec`) and the default-width rule, without torch.

Config validation (:mod:`saerepro.config`), the tables, the figures' styles, the cost model and the
learning curves read :data:`SPECS` without importing torch or sae-lens; :mod:`saerepro.sae.registry`
maps each name to its class and checks that it names every architecture in this order (the order
tables and legends list them). docs/contributing.md says how a new architecture is added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ArchitectureSpec:
    """What the torch-free layers know of an architecture: config validation, tables, figures and
    the cost model read this; its class in :mod:`saerepro.sae` holds the maths and registers itself
    under the same name (:mod:`saerepro.sae.registry` checks the two lists agree)."""

    name: str
    """Config key, table value and sae-lens suffix (``saerepro_<name>``)."""
    label: str
    """Legend label."""
    color: str
    """Colour in every figure (colour-blind-safe palette)."""
    marker: str
    """Marker in every figure."""
    train_products: int
    """[batch, d] x [d, m]-sized products of one training step (:mod:`saerepro.costs`)."""
    activation_tensors: int
    """[batch, m] float32 tensors a training step keeps for the backward pass (:mod:`saerepro.costs`)."""
    linestyle: str = "-"
    """Line style of its frontier (dashed for the ablations)."""
    knob: Literal["lambda", "k"] = "lambda"
    """Its sparsity knob: a coefficient grid (``coefficients``) or active latents (``k``)."""
    gated_family: bool = False
    """The paper's Gated SAE or one of its ablations."""
    resample: bool = False
    """May resample dead latents (``architectures.<name>.resample``), as the paper's training does."""
    derived_from: str | None = None
    """Trained on top of an already trained SAE of this architecture and the same coefficient."""
    baseline_width: bool = False
    """Gets the baseline's compute-matched width (``baseline_width_ratio`` × the gated width)."""
    learning_curve: bool = False
    """Supported by :mod:`saerepro.learning_curve` (checkpointed at several budgets)."""


def _gated(
    name: str, label: str, color: str, marker: str, linestyle: str, products: int, tensors: int
) -> ArchitectureSpec:
    return ArchitectureSpec(
        name, label, color, marker, products, tensors, linestyle, gated_family=True, resample=True, learning_curve=True
    )


#: Every architecture, in the order tables and legends list them.
SPECS: dict[str, ArchitectureSpec] = {
    spec.name: spec
    for spec in (
        ArchitectureSpec("gated", "Gated", "#DE8F05", "o", 7, 8, gated_family=True, resample=True, learning_curve=True),
        ArchitectureSpec(
            "baseline", "Baseline (ReLU)", "#0173B2", "s", 5, 4, resample=True, baseline_width=True, learning_curve=True
        ),
        ArchitectureSpec("topk", "TopK", "#029E73", "^", 5, 4, knob="k"),
        ArchitectureSpec("jumprelu", "JumpReLU", "#D55E00", "D", 5, 5),
        _gated("gated_unfrozen_decoder", "Gated, unfrozen decoder", "#CC78BC", "v", "--", 8, 8),
        _gated("gated_no_rmag", "Gated, no r_mag", "#CA9161", "P", "--", 7, 8),
        _gated("gated_untied", "Gated, untied encoders", "#949494", "X", "--", 9, 9),
        _gated("gated_strict_aux", "Gated, strict aux", "#FBAFE4", "<", "-.", 7, 8),
        ArchitectureSpec(
            "baseline_rescale_shift",
            "Baseline + rescale & shift",
            "#56B4E9",
            "h",
            3,
            4,
            "--",
            derived_from="baseline",
            baseline_width=True,
        ),
    )
}

#: Every architecture, in the order tables and legends list them.
ARCHITECTURES: tuple[str, ...] = tuple(SPECS)

#: The Gated family (the paper's architecture and its ablations).
GATED_FAMILY: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.gated_family)

#: Architectures that may resample dead latents (``train`` ``resample``): the baseline and the gated
#: family, as in the paper's training (Bricken et al. 2023's procedure).
RESAMPLE_ARCHITECTURES: tuple[str, ...] = tuple(n for n, s in SPECS.items() if s.resample)

#: Architectures whose sparsity knob is the number of active latents ``k``.
K_ARCHITECTURES = frozenset(n for n, s in SPECS.items() if s.knob == "k")

#: Architectures trained on top of an already trained baseline of the same coefficient.
DERIVED_ARCHITECTURES = {n: s.derived_from for n, s in SPECS.items() if s.derived_from is not None}

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
    if SPECS[architecture].baseline_width:
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
    if SPECS[architecture].baseline_width:
        width *= baseline_width_ratio
    return max(1, int(round(width)))
