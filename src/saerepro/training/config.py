"""The training configuration: :class:`TrainConfig`, its validation and the default width.

Everything that determines a trained SAE (with its activations) is a field of :class:`TrainConfig`;
the checks below reject a bad value with a message naming the field and what it must be.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..sae import ARCHITECTURES, RESAMPLE_ARCHITECTURES

B_DEC_INITS = ("zeros", "mean", "geometric_median")
RESAMPLE_REWARM_SHAPES = ("linear", "cosine")

#: TrainConfig fields added after checkpoints and train_info.json files were written without them:
#: :meth:`TrainConfig.to_dict` leaves each out at this (old-behaviour) value, so those files still
#: match a config that does not set it (resumption compares ``to_dict``).
_OMITTED_AT_DEFAULT: dict[str, Any] = {"resample_rewarm_shape": "linear", "resample_rewarm_start_factor": 0.0}


def default_width(
    architecture: str, d_in: int, expansion_factor: float = 4.0, baseline_width_ratio: float = 1.5
) -> int:
    """Compute-matched number of latents (paper Sec. 4 / App. D).

    A Gated SAE step costs ~1.5× a baseline step at equal width (one encoder and two decoder
    matmuls forward, against one and one), so at equal compute the ``baseline`` gets
    ``baseline_width_ratio`` × the latents: gated 4×d_in, baseline 6×d_in by default. Every other
    architecture (gated ablations, topk, jumprelu) gets ``expansion_factor`` × d_in, i.e. the
    gated width, so that they compare at equal dictionary size. ``baseline_rescale_shift`` inherits
    its baseline's width (this returns the baseline's default).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; allowed: {', '.join(ARCHITECTURES)}")
    width = expansion_factor * d_in
    if architecture in ("baseline", "baseline_rescale_shift"):
        width *= baseline_width_ratio
    return max(1, int(round(width)))


@dataclass
class TrainConfig:
    """Everything that determines a trained SAE (with the activation cache)."""

    architecture: str
    """One of :data:`saerepro.sae.ARCHITECTURES`: gated, baseline, topk, jumprelu,
    gated_unfrozen_decoder, gated_no_rmag, gated_untied, gated_strict_aux, baseline_rescale_shift."""

    coefficient: float
    """Sparsity coefficient: λ on the L1 term (gated family, baseline), k (topk; an integer), λ on
    the L0 term (jumprelu); for baseline_rescale_shift the λ of the baseline (a label, checked
    against the baseline's). Meaningful under the conventions of :mod:`saerepro.sae.common`."""

    d_sae: int | None = None
    """Number of latents; None: :func:`default_width` from ``expansion_factor`` and
    ``baseline_width_ratio`` (for baseline_rescale_shift: the baseline's)."""

    expansion_factor: float = 4.0
    """Latents per input dimension of the gated (and topk, jumprelu) SAEs when ``d_sae`` is None."""

    baseline_width_ratio: float = 1.5
    """Baseline latents / gated latents when ``d_sae`` is None (compute matching, paper)."""

    total_tokens: int = 10_000_000
    """Tokens to train on; the run takes total_tokens // batch_size steps (epochs repeat if the
    cache is smaller)."""

    batch_size: int = 4096
    """Tokens per optimiser step (the paper's 4096; the default pipeline config uses 1024)."""

    lr: float = 3e-3
    """Peak Adam learning rate."""

    lr_warmup_steps: int = 50
    """Linear warm-up from 0 to ``lr`` over this many steps (0: none)."""

    lr_decay_fraction: float = 0.0
    """Fraction of the steps, at the end, over which the LR decays linearly to ``lr_end`` (0:
    constant after warm-up)."""

    lr_end: float = 0.0
    """LR at the end of the decay (ignored when ``lr_decay_fraction`` is 0)."""

    adam_betas: tuple[float, float] = (0.0, 0.999)
    """Adam (β1, β2); the paper uses β1 = 0."""

    coefficient_warmup_steps: int = 0
    """Linear warm-up of λ from 0 over this many steps (0: none; not for topk)."""

    seed: int = 0
    """Seeds the initialisation, the data order and resampling."""

    shuffle_buffer_tokens: int = 1_000_000
    """Tokens shuffled together (the paper shuffled a buffer of 10^6 activations)."""

    shuffle_chunk_tokens: int = 4096
    """Contiguous tokens read from the cache at a time (chunks are visited in random order)."""

    b_dec_init: str = "zeros"
    """Initial b_dec: zeros, mean, or geometric_median of a seeded sample of 32768 cache tokens."""

    dead_tokens_threshold: int | None = None
    """A latent is dead when it has not fired for this many tokens. Used by AuxK, resampling and
    the logged dead fraction. None: min(10M, total_tokens // 10), i.e. Gao et al.'s 10M tokens,
    scaled down for runs shorter than 100M tokens (a 10M window would never close in them)."""

    k_aux: int | None = None
    """topk: dead latents in the AuxK term (None: d_in // 2, Gao et al.)."""

    auxk_coefficient: float = 1.0 / 32.0
    """topk: α of the AuxK term (Gao et al.: 1/32)."""

    bandwidth: float = 0.001
    """jumprelu: bandwidth ε of the straight-through estimators' rectangle kernel."""

    jumprelu_init_threshold: float = 0.001
    """jumprelu: initial threshold θ."""

    resample: bool = False
    """Resample dead latents (Bricken et al. 2023), re-warming the LR after each. Allowed for the
    architectures of :data:`saerepro.sae.RESAMPLE_ARCHITECTURES` (baseline and the gated family)."""

    resample_every_steps: int = 2500
    """Resample after every this many steps (while ``resample_max_count`` allows)."""

    resample_max_count: int = 4
    """At most this many resampling events (Anthropic: 4)."""

    resample_n_inputs: int = 65536
    """Cache tokens (seeded sample) scored to choose resampling directions."""

    resample_rewarm_steps: int | None = None
    """LR re-warm-up length after a resample (None: ``lr_warmup_steps``)."""

    resample_rewarm_shape: str = "linear"
    """Shape of the LR re-warm-up after a resample: ``linear`` or ``cosine``
    (:func:`saerepro.training.schedule.resample_rewarm_factor`)."""

    resample_rewarm_start_factor: float = 0.0
    """LR right after a resample, as a fraction of the scheduled LR, in [0, 1) (``cosine`` and 0.1:
    the re-warm-up issue 12 attributes to the paper; 0 with ``linear``: a plain warm-up from 0)."""

    baseline_path: str | None = None
    """baseline_rescale_shift: directory of the trained baseline SAE to freeze (required)."""

    hook_name: str | None = None
    """TransformerLens hook name for cfg.metadata (None: the cache's meta.json ``hook_name``)."""

    checkpoint_every_steps: int = 1000
    """Write ``checkpoint.pt`` every this many steps (0: only on interruption / stop_at_step)."""

    log_every_steps: int = 10
    """Append a loss_curve.csv row every this many steps (and at the last step)."""

    autocast_bf16: bool = False
    """Run forward and backward under bfloat16 autocast (weights and Adam stay float32)."""

    device: str = "auto"
    """auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps."""

    def __post_init__(self) -> None:
        if isinstance(self.adam_betas, list):
            self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        _check_architecture(self)
        _check_counts(self)
        _check_schedule(self)
        _check_architecture_settings(self)
        _check_flags(self)

    @property
    def total_steps(self) -> int:
        return self.total_tokens // self.batch_size

    @property
    def dead_window(self) -> int:
        """Tokens without firing after which a latent counts as dead (see ``dead_tokens_threshold``)."""
        if self.dead_tokens_threshold is not None:
            return self.dead_tokens_threshold
        return max(1, min(10_000_000, self.total_tokens // 10))

    def resolve_d_sae(self, d_in: int) -> int:
        """``d_sae`` or the compute-matched default width for inputs of ``d_in`` dimensions."""
        if self.d_sae is not None:
            return self.d_sae
        return default_width(self.architecture, d_in, self.expansion_factor, self.baseline_width_ratio)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict; the fields of ``_OMITTED_AT_DEFAULT`` only when set."""
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        for name, default in _OMITTED_AT_DEFAULT.items():
            if out[name] == default:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. YAML); unknown keys are an error naming the allowed ones."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; allowed: {', '.join(allowed)}")
        return cls(**d)


# The checks of TrainConfig.__post_init__, in the order they run; each raises ValueError naming the
# field, through _bad.


def _check_architecture(c: TrainConfig) -> None:
    """The architecture, the coefficient it reads (k for topk, made an int) and the width."""
    if c.architecture not in ARCHITECTURES:
        _bad("architecture", c.architecture, f"one of {', '.join(ARCHITECTURES)}")
    if not _finite(c.coefficient) or c.coefficient < 0:
        _bad("coefficient", c.coefficient, "a finite number >= 0")
    if c.architecture == "topk":
        if float(c.coefficient) != int(c.coefficient) or c.coefficient < 1:
            _bad("coefficient", c.coefficient, "an integer k >= 1 for architecture 'topk'")
        c.coefficient = int(c.coefficient)
    if c.d_sae is not None and (not _is_int(c.d_sae) or c.d_sae < 1):
        _bad("d_sae", c.d_sae, "None or an integer >= 1")
    if c.architecture == "topk" and c.d_sae is not None and c.coefficient > c.d_sae:
        _bad("coefficient", c.coefficient, f"k <= d_sae ({c.d_sae})")


def _check_counts(c: TrainConfig) -> None:
    """Positive numbers and integer counts."""
    for name in ("expansion_factor", "baseline_width_ratio", "lr", "bandwidth", "jumprelu_init_threshold"):
        value = getattr(c, name)
        if not _finite(value) or value <= 0:
            _bad(name, value, "a finite number > 0")
    for name in ("lr_warmup_steps", "coefficient_warmup_steps", "checkpoint_every_steps", "seed", "resample_max_count"):
        value = getattr(c, name)
        if not _is_int(value) or value < 0:
            _bad(name, value, "an integer >= 0")
    for name in (
        "batch_size",
        "shuffle_buffer_tokens",
        "shuffle_chunk_tokens",
        "log_every_steps",
        "resample_every_steps",
        "resample_n_inputs",
    ):
        value = getattr(c, name)
        if not _is_int(value) or value < 1:
            _bad(name, value, "an integer >= 1")
    if not _is_int(c.total_tokens) or c.total_tokens < c.batch_size:
        _bad("total_tokens", c.total_tokens, f"an integer >= batch_size ({c.batch_size})")
    if c.dead_tokens_threshold is not None and (not _is_int(c.dead_tokens_threshold) or c.dead_tokens_threshold < 1):
        _bad("dead_tokens_threshold", c.dead_tokens_threshold, "None or an integer >= 1")


def _check_schedule(c: TrainConfig) -> None:
    """The LR schedule, Adam's betas and the b_dec initialisation."""
    if not _finite(c.lr_decay_fraction) or not 0 <= c.lr_decay_fraction <= 1:
        _bad("lr_decay_fraction", c.lr_decay_fraction, "a number in [0, 1]")
    if not _finite(c.lr_end) or not 0 <= c.lr_end <= c.lr:
        _bad("lr_end", c.lr_end, f"a number in [0, lr={c.lr}]")
    if (
        not isinstance(c.adam_betas, tuple)
        or len(c.adam_betas) != 2
        or not all(_finite(b) and 0 <= b < 1 for b in c.adam_betas)
    ):
        _bad("adam_betas", c.adam_betas, "two numbers in [0, 1)")
    if c.b_dec_init not in B_DEC_INITS:
        _bad("b_dec_init", c.b_dec_init, f"one of {', '.join(B_DEC_INITS)}")


def _check_architecture_settings(c: TrainConfig) -> None:
    """Settings that only some architectures read are at their neutral value for the others."""
    if not _finite(c.auxk_coefficient) or c.auxk_coefficient < 0:
        _bad("auxk_coefficient", c.auxk_coefficient, "a finite number >= 0")
    if c.k_aux is not None:
        if c.architecture != "topk":
            _bad("k_aux", c.k_aux, "None unless architecture is 'topk'")
        if not _is_int(c.k_aux) or c.k_aux < 1:
            _bad("k_aux", c.k_aux, "None or an integer >= 1")
    if c.resample_rewarm_steps is not None and (not _is_int(c.resample_rewarm_steps) or c.resample_rewarm_steps < 0):
        _bad("resample_rewarm_steps", c.resample_rewarm_steps, "None or an integer >= 0")
    if c.resample_rewarm_shape not in RESAMPLE_REWARM_SHAPES:
        _bad("resample_rewarm_shape", c.resample_rewarm_shape, f"one of {', '.join(RESAMPLE_REWARM_SHAPES)}")
    if not _finite(c.resample_rewarm_start_factor) or not 0 <= c.resample_rewarm_start_factor < 1:
        _bad("resample_rewarm_start_factor", c.resample_rewarm_start_factor, "a number in [0, 1)")
    if not isinstance(c.resample, bool):
        _bad("resample", c.resample, "true or false")
    if c.resample and c.architecture not in RESAMPLE_ARCHITECTURES:
        _bad("resample", c.resample, f"false unless architecture is one of {', '.join(RESAMPLE_ARCHITECTURES)}")
    if c.coefficient_warmup_steps and c.architecture in ("topk", "baseline_rescale_shift"):
        _bad(
            "coefficient_warmup_steps",
            c.coefficient_warmup_steps,
            f"0 for architecture {c.architecture!r} (it has no sparsity penalty to warm up)",
        )
    if c.architecture == "baseline_rescale_shift":
        if not c.baseline_path:
            _bad(
                "baseline_path",
                c.baseline_path,
                "the directory of a trained 'baseline' SAE for architecture 'baseline_rescale_shift'",
            )
    elif c.baseline_path is not None:
        _bad("baseline_path", c.baseline_path, "None unless architecture is 'baseline_rescale_shift'")


def _check_flags(c: TrainConfig) -> None:
    """Booleans and the device name."""
    if not isinstance(c.autocast_bf16, bool):
        _bad("autocast_bf16", c.autocast_bf16, "true or false")
    if not isinstance(c.device, str) or not (
        c.device in ("auto", "cpu", "cuda", "mps") or (c.device.startswith("cuda:") and c.device[5:].isdigit())
    ):
        _bad("device", c.device, "auto, cpu, cuda, cuda:N or mps")


def _bad(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"TrainConfig.{name} must be {allowed}; got {value!r}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
