"""The architectures' specs (:class:`ArchitectureSpec`) and the default-width rule, without torch.

Config validation (:mod:`saerepro.config`), the tables, the figures' styles, the cost model and the
learning curves read :data:`SPECS` without importing torch or sae-lens; :mod:`saerepro.sae.registry`
maps each name to its class and checks that it names every built-in architecture in this order (the
order tables and legends list them). An architecture outside the package (a config's ``plugins``
file) adds its spec with :func:`saerepro.sae.register_architecture`, after the built-in ones; the
name lists below (:class:`SpecNames`, :class:`SpecMap`) read :data:`SPECS` at each use, so they
include it. docs/contributing.md says how a new architecture is added.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload


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
    weight_matrices: int = 2
    """[d, m] weight matrices (encoders and decoder: :func:`saerepro.costs.sae_parameters`)."""
    latent_vectors: int = 1
    """[m] vectors (biases, gains, thresholds)."""
    trainable_latent_vectors: int | None = None
    """Set when only this many [m] vectors train and every other parameter is frozen."""


def _gated(
    name: str, label: str, color: str, marker: str, linestyle: str, products: int, tensors: int, **kwargs: Any
) -> ArchitectureSpec:
    kwargs = {"weight_matrices": 2, "latent_vectors": 3, **kwargs}  # W_enc, W_dec; b_gate, b_mag, r_mag
    return ArchitectureSpec(
        name,
        label,
        color,
        marker,
        products,
        tensors,
        linestyle,
        gated_family=True,
        resample=True,
        learning_curve=True,
        **kwargs,
    )


#: Every architecture, in the order tables and legends list them.
SPECS: dict[str, ArchitectureSpec] = {
    spec.name: spec
    for spec in (
        _gated("gated", "Gated", "#DE8F05", "o", "-", 7, 8),
        ArchitectureSpec(
            "baseline", "Baseline (ReLU)", "#0173B2", "s", 5, 4, resample=True, baseline_width=True, learning_curve=True
        ),
        ArchitectureSpec("topk", "TopK", "#029E73", "^", 5, 4, knob="k"),
        ArchitectureSpec("jumprelu", "JumpReLU", "#D55E00", "D", 5, 5, latent_vectors=2),
        _gated("gated_unfrozen_decoder", "Gated, unfrozen decoder", "#CC78BC", "v", "--", 8, 8),
        _gated("gated_no_rmag", "Gated, no r_mag", "#CA9161", "P", "--", 7, 8),
        _gated(
            "gated_untied", "Gated, untied encoders", "#949494", "X", "--", 9, 9, weight_matrices=3, latent_vectors=2
        ),
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
            latent_vectors=3,
            trainable_latent_vectors=2,  # r_mag and b_mag; the baseline's weights are frozen
        ),
    )
}

T = TypeVar("T")


class SpecNames(Sequence[str]):
    """The names of the registered specs that ``keep``, in :data:`SPECS` order, read at each use:
    a tuple-like view (``in``, iteration, ``index``, ``+`` with a tuple) that includes an
    architecture registered after import (a plugin)."""

    def __init__(self, keep: Callable[[ArchitectureSpec], bool] = lambda spec: True) -> None:
        self._keep = keep

    def _names(self) -> tuple[str, ...]:
        return tuple(name for name, spec in SPECS.items() if self._keep(spec))

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __add__(self, other: Sequence[str]) -> tuple[str, ...]:
        return self._names() + tuple(other)

    def __radd__(self, other: Sequence[str]) -> tuple[str, ...]:
        return tuple(other) + self._names()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and self._names() == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # it changes when an architecture is registered

    def __repr__(self) -> str:
        return repr(self._names())


class SpecMap(Mapping[str, T], Generic[T]):
    """name -> ``value(spec)`` for the registered specs where it is not None, read at each use."""

    def __init__(self, value: Callable[[ArchitectureSpec], T | None]) -> None:
        self._value = value

    def _items(self) -> dict[str, T]:
        return {name: v for name, spec in SPECS.items() if (v := self._value(spec)) is not None}

    def __getitem__(self, name: str) -> T:
        return self._items()[name]

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


#: Every architecture, in the order tables and legends list them.
ARCHITECTURES = SpecNames()

#: The Gated family (the paper's architecture and its ablations).
GATED_FAMILY = SpecNames(lambda spec: spec.gated_family)

#: Architectures that may resample dead latents (``train`` ``resample``): the baseline and the gated
#: family, as in the paper's training (Bricken et al. 2023's procedure).
RESAMPLE_ARCHITECTURES = SpecNames(lambda spec: spec.resample)

#: Architectures whose sparsity knob is the number of active latents ``k``.
K_ARCHITECTURES = SpecNames(lambda spec: spec.knob == "k")

#: Architectures trained on top of an already trained baseline of the same coefficient.
DERIVED_ARCHITECTURES: SpecMap[str] = SpecMap(lambda spec: spec.derived_from)

#: What an architecture's name may be: it names folders, table values and a sae-lens suffix.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")


def register_spec(spec: ArchitectureSpec) -> None:
    """Add an architecture's spec after the others (:func:`saerepro.sae.register_architecture` calls
    this with its class). Registering an equal spec again does nothing; another spec under a
    registered name is refused."""
    if not NAME_PATTERN.fullmatch(spec.name):
        raise ValueError(f"architecture name {spec.name!r}: lower-case letters, digits and _, a letter first")
    if spec.knob not in ("lambda", "k"):
        raise ValueError(f"architecture {spec.name!r}: knob must be 'lambda' or 'k', got {spec.knob!r}")
    if spec.derived_from is not None and spec.derived_from not in SPECS:
        raise ValueError(f"architecture {spec.name!r}: derived_from {spec.derived_from!r} is not registered")
    existing = SPECS.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"architecture {spec.name!r} is registered already, with another spec")
    SPECS[spec.name] = spec


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
