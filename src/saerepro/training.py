"""Train saerepro SAEs on an activation cache, deterministically and resumably.

The "cache" may also be an on-the-fly source (:func:`saerepro.streaming.open_lm_source`): an
:class:`~saerepro.activations.ActivationCache` whose ``array`` computes its rows with the LM when
they are read. Everything below (data order, checkpoints, resumption) is the same for both.

One call trains one SAE (:func:`train_sae`) or several SAEs of one hook point over a single read of
the activations (:func:`train_saes`; same batches in the same order, so each SAE ends bit-identical
to training it alone). Everything is a function of the :class:`TrainConfig` and the cache.

What ``out_dir`` holds when a run completes (every file written to a temp file, then ``os.replace``)::

    cfg.json, sae_weights.safetensors   the SAE in sae-lens format (``SAE.load_from_disk(out_dir)``
                                        after ``import saerepro.sae``); cfg.metadata has hook_name,
                                        model_name, activation_scale, train_config
    loss_curve.csv                      step, tokens, lr, coefficient, loss, <each loss term>, l0,
                                        dead_fraction (every ``log_every_steps`` steps and the last)
    train_info.json                     tokens_trained, epochs (passes over the cache), steps,
                                        seconds, tokens_per_second, lr,
                                        final_losses (mean of the last 10 curve rows), dead_fraction,
                                        resamples, train_config, ... (written last: the "done" marker)

While a run is in progress ``out_dir/checkpoint.pt`` (model, Adam state, step, dead-latent counters,
loss-curve rows, elapsed time) is rewritten every ``checkpoint_every_steps`` steps, on Ctrl-C (between
steps), and at ``stop_at_step``; a later call with the same config resumes from it and ends with the same weights
as an uninterrupted run. It is deleted when the run completes (``keep_checkpoint=True`` keeps it).

Data order: the cache is cut into contiguous chunks of ``shuffle_chunk_tokens`` tokens; each epoch
visits the chunks in a seeded random order, ``shuffle_buffer_tokens // shuffle_chunk_tokens`` chunks
at a time are loaded into a buffer, the buffer is shuffled token-wise (seeded) and served in
batches. The batch at any token position is a pure function of (seed, position), which is what
makes resuming exact. The last ``n_tokens % shuffle_chunk_tokens`` tokens of the cache are never
used.

SAEs trained together (:func:`train_saes`) may differ in ``total_tokens``: they read the same
stream and each stops at its own step count, which equals training it alone.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from .activations import ActivationCache, open_cache
from .sae import ARCHITECTURES, BaselineRescaleShiftSAE, BaselineSAE, make_sae, resample_dead_latents
from .sae.common import SaeReproMixin, l0_norm
from .sae.registry import load_sae, sae_lens_architecture

CHECKPOINT_FILE = "checkpoint.pt"
LOSS_CURVE_FILE = "loss_curve.csv"
TRAIN_INFO_FILE = "train_info.json"
SAE_CFG_FILE = "cfg.json"
SAE_WEIGHTS_FILE = "sae_weights.safetensors"
_CHECKPOINT_FORMAT = 1
#: Config fields that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = frozenset({"checkpoint_every_steps", "device"})

B_DEC_INITS = ("zeros", "mean", "geometric_median")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the step and the term."""


# --------------------------------------------------------------------------- configuration


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
    """baseline: resample dead latents (Bricken et al. 2023), re-warming the LR after each."""

    resample_every_steps: int = 2500
    """baseline: resample after every this many steps (while ``resample_max_count`` allows)."""

    resample_max_count: int = 4
    """baseline: at most this many resampling events (Anthropic: 4)."""

    resample_n_inputs: int = 65536
    """baseline: cache tokens (seeded sample) scored to choose resampling directions."""

    resample_rewarm_steps: int | None = None
    """baseline: LR re-warm-up length after a resample (None: ``lr_warmup_steps``)."""

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
        if self.architecture not in ARCHITECTURES:
            _bad("architecture", self.architecture, f"one of {', '.join(ARCHITECTURES)}")
        if not _finite(self.coefficient) or self.coefficient < 0:
            _bad("coefficient", self.coefficient, "a finite number >= 0")
        if self.architecture == "topk":
            if float(self.coefficient) != int(self.coefficient) or self.coefficient < 1:
                _bad("coefficient", self.coefficient, "an integer k >= 1 for architecture 'topk'")
            self.coefficient = int(self.coefficient)
        if self.d_sae is not None and (not _is_int(self.d_sae) or self.d_sae < 1):
            _bad("d_sae", self.d_sae, "None or an integer >= 1")
        if self.architecture == "topk" and self.d_sae is not None and self.coefficient > self.d_sae:
            _bad("coefficient", self.coefficient, f"k <= d_sae ({self.d_sae})")
        for name in ("expansion_factor", "baseline_width_ratio", "lr", "bandwidth", "jumprelu_init_threshold"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                _bad(name, value, "a finite number > 0")
        for name in (
            "lr_warmup_steps",
            "coefficient_warmup_steps",
            "checkpoint_every_steps",
            "seed",
            "resample_max_count",
        ):
            value = getattr(self, name)
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
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                _bad(name, value, "an integer >= 1")
        if not _is_int(self.total_tokens) or self.total_tokens < self.batch_size:
            _bad("total_tokens", self.total_tokens, f"an integer >= batch_size ({self.batch_size})")
        if self.dead_tokens_threshold is not None and (
            not _is_int(self.dead_tokens_threshold) or self.dead_tokens_threshold < 1
        ):
            _bad("dead_tokens_threshold", self.dead_tokens_threshold, "None or an integer >= 1")
        if not _finite(self.lr_decay_fraction) or not 0 <= self.lr_decay_fraction <= 1:
            _bad("lr_decay_fraction", self.lr_decay_fraction, "a number in [0, 1]")
        if not _finite(self.lr_end) or not 0 <= self.lr_end <= self.lr:
            _bad("lr_end", self.lr_end, f"a number in [0, lr={self.lr}]")
        if (
            not isinstance(self.adam_betas, tuple)
            or len(self.adam_betas) != 2
            or not all(_finite(b) and 0 <= b < 1 for b in self.adam_betas)
        ):
            _bad("adam_betas", self.adam_betas, "two numbers in [0, 1)")
        if self.b_dec_init not in B_DEC_INITS:
            _bad("b_dec_init", self.b_dec_init, f"one of {', '.join(B_DEC_INITS)}")
        if not _finite(self.auxk_coefficient) or self.auxk_coefficient < 0:
            _bad("auxk_coefficient", self.auxk_coefficient, "a finite number >= 0")
        if self.k_aux is not None:
            if self.architecture != "topk":
                _bad("k_aux", self.k_aux, "None unless architecture is 'topk'")
            if not _is_int(self.k_aux) or self.k_aux < 1:
                _bad("k_aux", self.k_aux, "None or an integer >= 1")
        if self.resample_rewarm_steps is not None and (
            not _is_int(self.resample_rewarm_steps) or self.resample_rewarm_steps < 0
        ):
            _bad("resample_rewarm_steps", self.resample_rewarm_steps, "None or an integer >= 0")
        if not isinstance(self.resample, bool):
            _bad("resample", self.resample, "true or false")
        if self.resample and self.architecture != "baseline":
            _bad("resample", self.resample, "false unless architecture is 'baseline'")
        if self.coefficient_warmup_steps and self.architecture in ("topk", "baseline_rescale_shift"):
            _bad(
                "coefficient_warmup_steps",
                self.coefficient_warmup_steps,
                f"0 for architecture {self.architecture!r} (it has no sparsity penalty to warm up)",
            )
        if self.architecture == "baseline_rescale_shift":
            if not self.baseline_path:
                _bad(
                    "baseline_path",
                    self.baseline_path,
                    "the directory of a trained 'baseline' SAE for architecture 'baseline_rescale_shift'",
                )
        elif self.baseline_path is not None:
            _bad("baseline_path", self.baseline_path, "None unless architecture is 'baseline_rescale_shift'")
        if not isinstance(self.autocast_bf16, bool):
            _bad("autocast_bf16", self.autocast_bf16, "true or false")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps")
            or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            _bad("device", self.device, "auto, cpu, cuda, cuda:N or mps")

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
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. YAML); unknown keys are an error naming the allowed ones."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; allowed: {', '.join(allowed)}")
        return cls(**d)


def _bad(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"TrainConfig.{name} must be {allowed}; got {value!r}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available, else mps if available, else cpu."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def learning_rate(cfg: TrainConfig, step: int, last_resample_step: int | None = None) -> float:
    """LR of 0-based step ``step``: warm-up × optional final linear decay × re-warm-up after a resample.

    ``last_resample_step`` is the number of steps completed when the last resample happened.
    """
    lr = cfg.lr
    if cfg.lr_warmup_steps > 0:
        lr *= min(1.0, (step + 1) / cfg.lr_warmup_steps)
    total = cfg.total_steps
    n_decay = int(round(cfg.lr_decay_fraction * total))
    if n_decay > 0 and step >= total - n_decay:
        frac = (total - step) / n_decay  # 1 at the first decay step, 1/n_decay at the last
        lr *= cfg.lr_end / cfg.lr + (1 - cfg.lr_end / cfg.lr) * frac
    if last_resample_step is not None:
        rewarm = cfg.lr_warmup_steps if cfg.resample_rewarm_steps is None else cfg.resample_rewarm_steps
        if rewarm > 0:
            lr *= min(1.0, (step - last_resample_step + 1) / rewarm)
    return lr


def coefficient_at(cfg: TrainConfig, step: int) -> float:
    """Sparsity coefficient at 0-based ``step`` (linear warm-up if configured)."""
    if cfg.coefficient_warmup_steps > 0:
        return cfg.coefficient * min(1.0, (step + 1) / cfg.coefficient_warmup_steps)
    return float(cfg.coefficient)


# --------------------------------------------------------------------------- data


class ShuffledStream:
    """Seeded, chunk-then-buffer shuffled batches from a [n_tokens, d_in] array (see module doc)."""

    def __init__(self, array: np.ndarray, batch_size: int, seed: int, buffer_tokens: int, chunk_tokens: int):
        n = int(array.shape[0])
        if n < 1:
            raise ValueError("the activation cache is empty")
        self.array = array
        self.batch_size = batch_size
        self.seed = seed
        self.chunk = min(chunk_tokens, n)
        self.n_chunks = n // self.chunk
        self.chunks_per_buffer = max(1, min(buffer_tokens // self.chunk, self.n_chunks))
        self.buffer_tokens = self.chunks_per_buffer * self.chunk
        self.epoch_tokens = self.n_chunks * self.chunk
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None

    def _chunk_order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 0]).permutation(self.n_chunks)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def buffer(self, epoch: int, index: int) -> np.ndarray:
        """Buffer ``index`` of ``epoch``: its chunks (read in file order), shuffled token-wise."""
        ids = np.sort(self._chunk_order(epoch)[index * self.chunks_per_buffer : (index + 1) * self.chunks_per_buffer])
        c = self.chunk
        if hasattr(self.array, "read_chunks"):  # an on-the-fly source: one LM pass for the whole buffer
            buf = self.array.read_chunks(ids, c)
        else:
            buf = np.concatenate([np.asarray(self.array[i * c : (i + 1) * c]) for i in ids])
        order = np.random.default_rng([self.seed, epoch, index + 1]).permutation(buf.shape[0])
        return np.take(buf, order, axis=0)

    def batches(self, start_token: int = 0) -> Iterator[np.ndarray]:
        """Batches from token position ``start_token`` of the (endless) stream."""
        epoch, pos = divmod(start_token, self.epoch_tokens)
        index, offset = divmod(pos, self.buffer_tokens)
        pending: list[np.ndarray] = []
        n_pending = 0
        while True:
            buf = self.buffer(epoch, index)[offset:]
            offset = 0
            while buf.shape[0] > 0:
                take = min(self.batch_size - n_pending, buf.shape[0])
                pending.append(buf[:take])
                n_pending += take
                buf = buf[take:]
                if n_pending == self.batch_size:
                    yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                    pending, n_pending = [], 0
            index += 1
            if index * self.buffer_tokens >= self.epoch_tokens:
                epoch, index = epoch + 1, 0


def _batch_to_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """float16 rows -> float32 tensor on ``device`` (numpy converts ~8x faster than torch on CPU;
    accelerators get the half-size float16 copy and convert there)."""
    if device.type == "cpu":
        return torch.from_numpy(batch.astype(np.float32))
    return torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=False).float()


def _sample_rows(array: np.ndarray, n: int, seed: Sequence[int]) -> torch.Tensor:
    """A seeded sample (with replacement, sorted for locality) of rows as float32.

    An on-the-fly source limits the sample to its first ``sample_limit`` rows (its normalisation
    block), so that a sample costs at most that many tokens of LM forward, not one LM batch per
    row; with the block covering all rows the sample is the cached mode's.
    """
    limit = int(cast(Any, getattr(array, "sample_limit", array.shape[0])))
    idx = np.sort(np.random.default_rng(list(seed)).integers(0, limit, size=n))
    return torch.from_numpy(np.asarray(array[idx], dtype=np.float32))


def geometric_median(points: torch.Tensor, max_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm, started at the mean."""
    y = points.mean(dim=0)
    for _ in range(max_iter):
        w = 1.0 / (points - y).norm(dim=1).clamp_min(1e-8)
        y_new = (w[:, None] * points).sum(dim=0) / w.sum()
        if (y_new - y).norm() <= tol * max(1.0, float(y.norm())):
            return y_new
        y = y_new
    return y


# --------------------------------------------------------------------------- one SAE's run


def _build_sae(
    cfg: TrainConfig, cache: ActivationCache, device: torch.device, init_b_dec: bool = True
) -> SaeReproMixin:
    d_in = cache.d_in
    hook_name = cfg.hook_name or cache.meta.get("hook_name")
    metadata: dict[str, Any] = {
        "hook_name": hook_name,
        "model_name": cache.meta.get("model"),
        "saerepro_architecture": cfg.architecture,
        "coefficient": cfg.coefficient,
        "activation_scale": cache.scale,
        "activations_normalised": True,
        "cache_sha256": cache.meta.get("array_sha256"),
        "train_config": cfg.to_dict(),
    }
    for key in ("context_size", "prepend_bos", "layer", "site"):
        if key in cache.meta:
            metadata[key] = cache.meta[key]
    arch_kwargs: dict[str, Any] = {}
    if cfg.architecture == "topk":
        arch_kwargs = {"k": int(cfg.coefficient), "k_aux": cfg.k_aux, "auxk_coefficient": cfg.auxk_coefficient}
    elif cfg.architecture == "jumprelu":
        arch_kwargs = {"bandwidth": cfg.bandwidth, "init_threshold": cfg.jumprelu_init_threshold}

    baseline = None
    d_sae = cfg.resolve_d_sae(d_in)
    if cfg.architecture == "baseline_rescale_shift":
        baseline = load_sae(str(cfg.baseline_path))
        if not isinstance(baseline, BaselineSAE):
            raise ValueError(
                f"TrainConfig.baseline_path {cfg.baseline_path} holds a {type(baseline).__name__}, not a baseline SAE"
            )
        if cfg.d_sae is not None and cfg.d_sae != baseline.cfg.d_sae:
            raise ValueError(f"TrainConfig.d_sae is {cfg.d_sae} but the baseline has {baseline.cfg.d_sae} latents")
        if baseline.cfg.d_in != d_in:
            raise ValueError(f"the baseline has d_in={baseline.cfg.d_in}, the cache {d_in}")
        b_hook = baseline.cfg.metadata.hook_name
        if hook_name and b_hook and b_hook != hook_name:
            raise ValueError(f"the baseline was trained on {b_hook}, this cache is {hook_name}")
        b_coef = baseline.cfg.metadata.coefficient
        if b_coef is not None and not math.isclose(float(b_coef), float(cfg.coefficient), rel_tol=1e-9):
            raise ValueError(
                f"TrainConfig.coefficient must be the baseline's λ ({b_coef}) for baseline_rescale_shift; got {cfg.coefficient}"
            )
        d_sae = baseline.cfg.d_sae
        metadata["baseline_path"] = str(cfg.baseline_path)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sae = make_sae(cfg.architecture, d_in, d_sae, device="cpu", metadata=metadata, **arch_kwargs)
    if hook_name and hook_name.endswith("hook_z"):
        sae.cfg.reshape_activations = "hook_z"  # for sae-lens users; training never reshapes
    if baseline is not None:
        assert isinstance(sae, BaselineRescaleShiftSAE)
        sae.load_baseline_(baseline)
    elif cfg.b_dec_init != "zeros" and init_b_dec:
        sample = _sample_rows(cache.array, min(32768, cache.n_tokens), (cfg.seed, 3))
        init = sample.mean(0) if cfg.b_dec_init == "mean" else geometric_median(sample)
        with torch.no_grad():
            sae.b_dec.copy_(init)
    return sae.to(device)  # type: ignore[return-value]


class _Run:
    """The state of one SAE's training: model, optimiser, counters, loss-curve rows."""

    def __init__(self, cfg: TrainConfig, cache: ActivationCache, out_dir: Path, device: torch.device):
        self.cfg = cfg
        self.cache = cache
        self.out_dir = Path(out_dir)
        self.device = device
        # A checkpoint overwrites b_dec: skip its sample (LM forwards for an on-the-fly source).
        self.sae = _build_sae(cfg, cache, device, init_b_dec=not (self.out_dir / CHECKPOINT_FILE).exists())
        self.optimizer = _adam(self.sae.trainable_parameters(), cfg, device)
        self.step = 0
        self.tokens_since_fired = torch.zeros(self.sae.cfg.d_sae, dtype=torch.long, device=device)
        self.resamples: list[dict[str, int]] = []
        self.rows: list[dict[str, float]] = []
        self.elapsed = 0.0
        self.in_step = False
        self.clock_stopped = False  # set by train_saes once this SAE has done its steps
        self.columns = ["step", "tokens", "lr", "coefficient", "loss", *self.sae.loss_term_names, "l0", "dead_fraction"]
        self._maybe_resume()

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_FILE

    @property
    def last_resample_step(self) -> int | None:
        return self.resamples[-1]["step"] if self.resamples else None

    # -- one optimiser step

    def train_step(self, x: torch.Tensor) -> None:
        self.in_step = True  # stays True if the step is interrupted: its state is then inconsistent
        cfg, sae, step = self.cfg, self.sae, self.step
        lr = learning_rate(cfg, step, self.last_resample_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        coefficient = coefficient_at(cfg, step)
        dead = self.tokens_since_fired >= cfg.dead_window
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=cfg.autocast_bf16):
            out = sae.loss_terms(x, coefficient, dead if sae.needs_dead_mask else None)
        if not bool(torch.isfinite(out.total)):
            bad = [name for name, value in out.terms.items() if not bool(torch.isfinite(value))] or ["total"]
            values = {name: float(value.detach()) for name, value in out.terms.items()}
            raise NonFiniteLossError(
                f"non-finite loss at step {step} (0-based) of {cfg.architecture} "
                f"(coefficient {cfg.coefficient}, {self.out_dir}): loss term {bad[0]!r} is "
                f"{values.get(bad[0], float(out.total.detach()))}; all terms: {values}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        if sae.unit_norm_decoder:
            sae.remove_parallel_decoder_grad_()
        self.optimizer.step()
        if sae.unit_norm_decoder:
            sae.normalize_decoder_()
        with torch.no_grad():
            fired = out.feature_acts.detach().amax(dim=0) > 0  # every architecture's latents are >= 0
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[fired] = 0
        self.step += 1
        if (
            cfg.resample
            and self.step % cfg.resample_every_steps == 0
            and len(self.resamples) < cfg.resample_max_count
            and self.step < cfg.total_steps
        ):
            self._resample()
        if self.step % cfg.log_every_steps == 0 or self.step == cfg.total_steps:
            row: dict[str, float] = {
                "step": self.step,
                "tokens": self.step * cfg.batch_size,
                "lr": lr,
                "coefficient": coefficient,
                "loss": float(out.total.detach()),
            }
            row.update({name: float(out.terms[name].detach()) for name in sae.loss_term_names})
            row["l0"] = float(l0_norm(out.feature_acts))
            row["dead_fraction"] = float((self.tokens_since_fired >= cfg.dead_window).float().mean())
            self.rows.append(row)
        self.in_step = False

    def _resample(self) -> None:
        cfg = self.cfg
        dead = self.tokens_since_fired >= cfg.dead_window
        inputs = _sample_rows(self.cache.array, cfg.resample_n_inputs, (cfg.seed, 2, self.step))
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        assert isinstance(self.sae, BaselineSAE)
        n = resample_dead_latents(self.sae, self.optimizer, dead, inputs, generator, batch_size=cfg.batch_size)
        self.tokens_since_fired[dead] = 0
        self.resamples.append({"step": self.step, "n_resampled": n})

    # -- checkpoints

    def save_checkpoint(self) -> None:
        state = {
            "format": _CHECKPOINT_FORMAT,
            "train_config": self.cfg.to_dict(),
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.sae.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "tokens_since_fired": self.tokens_since_fired.cpu(),
            "resamples": self.resamples,
            "rows": self.rows,
            "elapsed": self.elapsed,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.checkpoint_path, lambda f: torch.save(state, f))

    def _maybe_resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        if state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{self.checkpoint_path} has an unknown format; delete it to start over")
        saved, now = state["train_config"], self.cfg.to_dict()
        differing = sorted(
            k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in _RESUMABLE_CHANGES
        )
        if differing:
            raise ValueError(
                f"{self.checkpoint_path} was written with a different TrainConfig (fields {differing}: "
                f"{ {k: saved.get(k) for k in differing} } vs { {k: now.get(k) for k in differing} }); "
                "delete it to start over"
            )
        self.sae.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.tokens_since_fired = state["tokens_since_fired"].to(self.device)
        self.resamples = list(state["resamples"])
        self.rows = list(state["rows"])
        self.elapsed = float(state["elapsed"])
        logging.getLogger("saerepro").info(
            "resumed %s from its checkpoint at step %d of %d", self.out_dir, self.step, self.cfg.total_steps
        )

    # -- outputs

    def final_summary(self) -> dict[str, Any]:
        tail = self.rows[-10:]
        final = (
            {col: float(np.mean([r[col] for r in tail])) for col in ("loss", *self.sae.loss_term_names, "l0")}
            if tail
            else {}
        )
        tokens = self.step * self.cfg.batch_size
        return {
            "architecture": self.cfg.architecture,
            "sae_lens_architecture": sae_lens_architecture(self.cfg.architecture),
            "coefficient": self.cfg.coefficient,
            "d_in": self.sae.cfg.d_in,
            "d_sae": self.sae.cfg.d_sae,
            "steps": self.step,
            "tokens_trained": tokens,
            "epochs": round(tokens / int(self.cache.array.shape[0]), 4),
            "seconds": self.elapsed,
            "lr": self.cfg.lr,
            "tokens_per_second": tokens / self.elapsed if self.elapsed > 0 else None,
            "final_losses": final,
            "final_losses_note": "mean of the last 10 loss_curve.csv rows",
            "dead_fraction": float((self.tokens_since_fired >= self.cfg.dead_window).float().mean()),
            "resamples": self.resamples,
            "completed": self.step >= self.cfg.total_steps,
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "cache": str(self.cache.path),
            "activations": self.cache.meta.get("mode", "cached"),
            "activation_scale": self.cache.scale,
            "hook_name": self.sae.cfg.metadata.hook_name,
            "train_config": self.cfg.to_dict(),
        }

    def finalize(self, keep_checkpoint: bool, group_size: int) -> dict[str, Any]:
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".tmp-sae-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        self.sae.save_model(tmp)
        os.replace(tmp / SAE_WEIGHTS_FILE, out / SAE_WEIGHTS_FILE)
        os.replace(tmp / SAE_CFG_FILE, out / SAE_CFG_FILE)
        shutil.rmtree(tmp, ignore_errors=True)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (int(v) if k in ("step", "tokens") else repr(float(v))) for k, v in row.items()})
        _atomic_write(out / LOSS_CURVE_FILE, lambda f: f.write(buf.getvalue().encode()))
        info = self.final_summary()
        info["group_size"] = group_size
        _atomic_write(out / TRAIN_INFO_FILE, lambda f: f.write((json.dumps(info, indent=2) + "\n").encode()))
        if not keep_checkpoint and self.checkpoint_path.exists():
            self.checkpoint_path.unlink()
        return info


def _adam(params: list[torch.nn.Parameter], cfg: TrainConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one (3.5x faster on CPU than the for-loop one)."""
    try:
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas)


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- drivers

#: Fields that must agree between SAEs trained over one read of the activations (``total_tokens``
#: may differ: each SAE stops at its own step count).
SHARED_DATA_FIELDS = ("seed", "batch_size", "shuffle_buffer_tokens", "shuffle_chunk_tokens", "device")


def train_saes(
    cfgs: Sequence[TrainConfig],
    cache: ActivationCache | str | os.PathLike[str],
    out_dirs: Sequence[str | os.PathLike[str]],
    *,
    progress: bool = True,
    stop_at_step: int | None = None,
    keep_checkpoint: bool = False,
) -> list[dict[str, Any]]:
    """Train several SAEs of one hook point over one read of the activations.

    Every config must agree on :data:`SHARED_DATA_FIELDS` (they see the same batches in the same
    order, so each result equals :func:`train_sae` on its own config). Each SAE resumes from its own
    ``out_dir/checkpoint.pt`` if present. ``stop_at_step`` stops after that many steps as if
    interrupted (a checkpoint is left; for tests and time-sliced jobs). ``keep_checkpoint`` leaves
    each SAE's checkpoint of its final state beside its outputs (a later call then only rewrites the
    outputs; the on-the-fly job uses this until every SAE of its hook point is done). Returns each
    SAE's train_info (``completed`` says whether it finished).
    """
    if len(cfgs) == 0 or len(cfgs) != len(out_dirs):
        raise ValueError(f"need one out_dir per config, got {len(cfgs)} configs and {len(out_dirs)} out_dirs")
    for name in SHARED_DATA_FIELDS:
        values = {getattr(c, name) for c in cfgs}
        if len(values) > 1:
            raise ValueError(f"SAEs trained together must share TrainConfig.{name}; got {sorted(map(str, values))}")
    if len({os.path.abspath(d) for d in out_dirs}) != len(out_dirs):
        raise ValueError("out_dirs must be distinct")
    if not isinstance(cache, ActivationCache):
        cache = open_cache(os.fspath(cache))
    cfg0 = cfgs[0]
    device = resolve_device(cfg0.device)
    runs = [_Run(cfg, cache, Path(d), device) for cfg, d in zip(cfgs, out_dirs, strict=False)]
    total_steps = max(cfg.total_steps for cfg in cfgs)
    # the first step any SAE still has to take (finished SAEs, e.g. resumed ones, read no data)
    start = min((run.step for run in runs if run.step < run.cfg.total_steps), default=total_steps)
    end = total_steps if stop_at_step is None else min(total_steps, stop_at_step)
    stream = ShuffledStream(
        cache.array, cfg0.batch_size, cfg0.seed, cfg0.shuffle_buffer_tokens, cfg0.shuffle_chunk_tokens
    )
    batches = stream.batches(start * cfg0.batch_size)
    desc = cfg0.architecture if len(runs) == 1 else f"{len(runs)} SAEs"
    bar = _progress_bar(progress, total=total_steps * cfg0.batch_size, initial=start * cfg0.batch_size, desc=desc)
    t_last = time.perf_counter()

    def account_time() -> None:
        nonlocal t_last
        now = time.perf_counter()
        for run in runs:
            if not run.clock_stopped:
                run.elapsed += now - t_last
        t_last = now

    for run in runs:
        run.clock_stopped = run.step >= run.cfg.total_steps
    try:
        for step in range(start, end):
            x = _batch_to_tensor(next(batches), device)
            for run in runs:
                if run.step == step and step < run.cfg.total_steps:
                    run.train_step(x)
                    if run.step == run.cfg.total_steps:  # done before the others: stop its clock
                        account_time()
                        run.clock_stopped = True
                        if keep_checkpoint:
                            run.save_checkpoint()
            if bar is not None:
                bar.update(cfg0.batch_size)
                if len(runs) == 1 and runs[0].rows and runs[0].rows[-1]["step"] == step + 1:
                    bar.set_postfix(
                        loss=f"{runs[0].rows[-1]['loss']:.4g}", l0=f"{runs[0].rows[-1]['l0']:.1f}", refresh=False
                    )
            every = cfg0.checkpoint_every_steps
            if every and (step + 1) % every == 0 and step + 1 < total_steps:
                account_time()
                for run in runs:
                    if run.step == step + 1 and run.step < run.cfg.total_steps:
                        run.save_checkpoint()
    except KeyboardInterrupt:
        account_time()
        for run in runs:
            if not run.in_step:  # a half-done step would not resume exactly: keep its last checkpoint
                run.save_checkpoint()
        raise
    finally:
        if bar is not None:
            bar.close()
    account_time()
    if end < total_steps:
        for run in runs:
            run.save_checkpoint()
        return [run.final_summary() for run in runs]
    return [run.finalize(keep_checkpoint, len(runs)) for run in runs]


def train_sae(
    cfg: TrainConfig,
    cache: ActivationCache | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    stop_at_step: int | None = None,
    keep_checkpoint: bool = False,
) -> dict[str, Any]:
    """Train one SAE and write it to ``out_dir`` (see the module docstring); returns train_info."""
    return train_saes(
        [cfg], cache, [out_dir], progress=progress, stop_at_step=stop_at_step, keep_checkpoint=keep_checkpoint
    )[0]


def _progress_bar(enabled: bool, total: int, initial: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="tok", unit_scale=True, mininterval=2.0, dynamic_ncols=True
    )


__all__ = [
    "B_DEC_INITS",
    "CHECKPOINT_FILE",
    "LOSS_CURVE_FILE",
    "SAE_CFG_FILE",
    "SAE_WEIGHTS_FILE",
    "SHARED_DATA_FIELDS",
    "TRAIN_INFO_FILE",
    "NonFiniteLossError",
    "ShuffledStream",
    "TrainConfig",
    "coefficient_at",
    "default_width",
    "geometric_median",
    "learning_rate",
    "resolve_device",
    "train_sae",
    "train_saes",
]
