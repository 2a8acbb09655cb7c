"""The training configuration: :class:`TrainConfig` and its validation.

Everything that determines a trained SAE (with its activations) is a field of :class:`TrainConfig`;
the checks below reject a bad value with a message naming the field and what it must be.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..architectures import BASELINE_WIDTH_RATIO, EXPANSION_FACTOR, default_width
from ..models import resolve_device
from ..sae import ARCHITECTURES, RESAMPLE_ARCHITECTURES, TRAINING_CONFIGS, ArchTrainingConfig
from ..sites import hook_name

if TYPE_CHECKING:
    from ..config import Config, SaeKey

B_DEC_INITS = ("zeros", "mean", "geometric_median")
RESAMPLE_REWARM_SHAPES = ("linear", "cosine")

#: TrainConfig fields added after checkpoints and train_info.json files were written without them:
#: :meth:`TrainConfig.to_dict` leaves each out at this (old-behaviour) value, so those files still
#: match a config that does not set it (resumption compares ``to_dict``).
_OMITTED_AT_DEFAULT: dict[str, Any] = {
    "resample_rewarm_shape": "linear",
    "resample_rewarm_start_factor": 0.0,
    "compile": False,
    "sparse_step": False,
}


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

    expansion_factor: float = EXPANSION_FACTOR
    """Latents per input dimension of the gated (and topk, jumprelu) SAEs when ``d_sae`` is None."""

    baseline_width_ratio: float = BASELINE_WIDTH_RATIO
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

    arch: ArchTrainingConfig | None = None
    """The architecture's own training settings, owned and validated by its class
    (:data:`saerepro.sae.TRAINING_CONFIGS`): :class:`~saerepro.sae.TopKTrainingConfig` (topk:
    ``k_aux``, ``auxk_coefficient``), :class:`~saerepro.sae.JumpReLUTrainingConfig` (jumprelu:
    ``bandwidth``, ``init_threshold``); None for the others, or their defaults. A mapping of the
    fields is accepted. :meth:`to_dict` writes them flat, as ``k_aux``, ``auxk_coefficient``,
    ``bandwidth``, ``jumprelu_init_threshold`` (every architecture's, the others' at their
    defaults), and :meth:`from_dict` reads them so."""

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
    the paper's re-warm-up, App. D.1.1; 0 with ``linear``: a plain warm-up from 0)."""

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

    compile: bool = False
    """``torch.compile`` the SAE's loss (forward; its backward follows): fuses the elementwise work
    around the matmuls. Same maths, not the same rounding, so results are not bit-identical to an
    uncompiled run (``benchmarks/bench_train.py --compile`` measures the speed). Needs a C++
    compiler on CPU (Triton on CUDA); the first steps pay the compilation (~5-25 s)."""

    sparse_step: bool = False
    """Compute each step after the encoder product on the active (row, latent) pairs only, for the
    architectures that have a sparse step (:attr:`saerepro.sae.common.SaeReproMixin.has_sparse_step`):
    the same loss and gradients (``tests/sae/test_sae_sparse.py``) at a fraction of the work when
    few latents are active. A step runs dense while the previous step's density exceeds
    :attr:`~saerepro.sae.common.SaeReproMixin.sparse_max_density`, its architecture's measured
    crossover (the first steps). Under bf16 autocast the decoders run in float32, so the rounding
    is not the dense step's."""

    device: str = "auto"
    """auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps."""

    def __post_init__(self) -> None:
        if isinstance(self.adam_betas, list):
            self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        _check_architecture(self)
        _build_arch_settings(self)
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
        """The fields as a flat JSON-able dict (written into cfg.json and train_info.json, and
        compared on resume): ``arch`` becomes every architecture's settings under their flat
        keys, the run's own architecture's as set and the others' at their defaults; the fields of
        ``_OMITTED_AT_DEFAULT`` only when set."""
        plain = asdict(self)
        out: dict[str, Any] = {}
        for name, value in plain.items():
            if name != "arch":
                out[name] = value
                continue
            for arch_name, settings in TRAINING_CONFIGS.items():
                own = self.arch if arch_name == self.architecture and self.arch is not None else settings()
                out.update(own.to_flat_dict())
        out["adam_betas"] = list(self.adam_betas)
        for name, default in _OMITTED_AT_DEFAULT.items():
            if out[name] == default:
                del out[name]
        return out

    @classmethod
    def from_run(cls, cfg: Config, run: SaeKey, d_in: int, parent_dir: str | Path | None = None) -> TrainConfig:
        """The TrainConfig of one ``run`` of the sweep ``cfg`` at a hook point of ``d_in``
        dimensions (``parent_dir``: the trained baseline of a ``baseline_rescale_shift`` run)."""

        arch = cfg.architectures[run.architecture]
        resample: dict[str, Any] = {}
        if arch.resample is not None:
            resample = {
                "resample": True,
                "resample_every_steps": arch.resample.every_steps,
                "resample_max_count": arch.resample.max_count,
                "resample_n_inputs": arch.resample.n_inputs,
                "resample_rewarm_shape": cfg.train.resample_rewarm_shape,
                "resample_rewarm_start_factor": float(cfg.train.resample_rewarm_start_factor),
                "resample_rewarm_steps": cfg.train.resample_rewarm_steps,
            }
        return cls(
            architecture=run.architecture,
            coefficient=run.coefficient,
            d_sae=arch.d_sae(d_in, run.site),
            total_tokens=arch.tokens or cfg.train.tokens_for(run.site),
            batch_size=cfg.train.batch_size,
            lr=arch.lr or cfg.train.lr,
            lr_warmup_steps=cfg.train.warmup_steps,
            adam_betas=(arch.adam_beta1 if arch.adam_beta1 is not None else cfg.train.adam_beta1, cfg.train.adam_beta2),
            seed=run.seed,
            checkpoint_every_steps=cfg.train.checkpoint_every_steps,
            shuffle_buffer_tokens=cfg.activations.shuffle_buffer_tokens,
            shuffle_chunk_tokens=shuffle_chunk_tokens(cfg),
            **resample,
            b_dec_init=cfg.train.b_dec_init,
            arch=cast(Any, arch.training_settings() or None),  # a mapping: the class builds it
            autocast_bf16=cfg.train.autocast_bf16,
            compile=cfg.train.compile,
            sparse_step=cfg.train.sparse_step,
            baseline_path=str(parent_dir) if parent_dir is not None else None,
            hook_name=hook_name(run.layer, run.site),
            device=str(resolve_device(cfg.device)),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. YAML, or :meth:`to_dict`'s); unknown keys are an error naming
        the allowed ones. Another architecture's settings must be at their defaults."""
        d = dict(d)
        arch: dict[str, Any] = {}
        for arch_name, settings in TRAINING_CONFIGS.items():
            for key, default in settings.flat_defaults().items():
                if key not in d:
                    continue
                value = d.pop(key)
                if arch_name == d.get("architecture"):
                    arch[key] = value
                elif value != default:
                    _bad(key, value, f"{default!r} (its default) unless architecture is {arch_name!r}")
        allowed = [f.name for f in fields(cls) if f.name != "arch"] + [
            key for settings in TRAINING_CONFIGS.values() for key in settings.flat_defaults()
        ]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; allowed: {', '.join(allowed)}")
        settings_class = TRAINING_CONFIGS.get(d.get("architecture", ""))
        if settings_class is not None:
            d["arch"] = settings_class.from_flat_dict(arch)
        return cls(**d)


def shuffle_chunk_tokens(cfg: Config) -> int:
    """Contiguous activations per shuffle chunk: the config's, else 4096 (cached) or one LM batch
    (on_the_fly, so that no LM batch is computed for two chunks)."""
    if cfg.activations.shuffle_chunk_tokens is not None:
        return cfg.activations.shuffle_chunk_tokens
    if cfg.activations.mode == "on_the_fly":
        return cfg.cache.batch_size * (cfg.corpus.context_size - 1)
    return 4096


# The checks of TrainConfig.__post_init__, in the order they run; each raises ValueError naming the
# field, through _bad.


def _check_architecture(c: TrainConfig) -> None:
    """The architecture, the coefficient (its own class checks what it reads: k for topk, made an
    int) and the width."""
    if c.architecture not in ARCHITECTURES:
        _bad("architecture", c.architecture, f"one of {', '.join(ARCHITECTURES)}")
    if not _finite(c.coefficient) or c.coefficient < 0:
        _bad("coefficient", c.coefficient, "a finite number >= 0")
    if c.d_sae is not None and (not _is_int(c.d_sae) or c.d_sae < 1):
        _bad("d_sae", c.d_sae, "None or an integer >= 1")
    settings = TRAINING_CONFIGS.get(c.architecture)
    if settings is not None:
        c.coefficient = settings.check_coefficient(c.coefficient, c.d_sae)


def _build_arch_settings(c: TrainConfig) -> None:
    """``arch``: the architecture's own settings class (built from a mapping; its defaults when
    None), or None for an architecture without one. The class validates its fields."""
    settings = TRAINING_CONFIGS.get(c.architecture)
    if settings is None:
        if c.arch is not None:
            _bad("arch", c.arch, f"None for architecture {c.architecture!r} (it has no settings of its own)")
        return
    if c.arch is None:
        c.arch = settings()
    elif isinstance(c.arch, dict):
        c.arch = settings(**c.arch)
    elif type(c.arch) is not settings:
        _bad("arch", c.arch, f"a {settings.__name__} for architecture {c.architecture!r}")


def _check_counts(c: TrainConfig) -> None:
    """Positive numbers and integer counts."""
    for name in ("expansion_factor", "baseline_width_ratio", "lr"):
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
    if not isinstance(c.compile, bool):
        _bad("compile", c.compile, "true or false")
    if not isinstance(c.sparse_step, bool):
        _bad("sparse_step", c.sparse_step, "true or false")
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
