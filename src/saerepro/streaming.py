"""On-the-fly activations: the LM computes a hook point's activations when training reads them.

At paper scale an activation cache would take terabytes (Pythia-2.8B's residual stream over 1.6B
tokens in float16: 8 TB), so ``activations.mode: on_the_fly`` caches nothing. One job per hook
point runs the LM and trains every SAE of that hook point on the stream.

The stream is the cached mode's stream, computed lazily. :func:`open_lm_source` returns an
:class:`~saerepro.activations.ActivationCache` whose ``array`` is an :class:`LMActivations`: a
virtual ``[n_tokens, d_in]`` array over the training split (BOS positions skipped, rows in corpus
order, exactly the rows a cache would hold) that runs the LM (``stop_at_layer`` = layer + 1) when
rows are read. The trainer (:func:`saerepro.training.train_saes`) reads it through the same
:class:`~saerepro.training.ShuffledStream` as a cache: seeded chunks of the corpus fill a token-level
shuffle buffer of ``shuffle_buffer_tokens`` activations, which is shuffled and served in batches.
So data order, checkpoints and exact resumption are those of cached mode, and every architecture
runs the same per-SAE step (``training.run.TrainingState.train_step``).

Cost: each buffer is one LM pass over its chunks (each LM batch at most once per buffer; chunks
default to whole LM batches so none is computed twice). Reading the training split once costs one
forward over it, as caching does, but without the disk: tokens on disk are int32, 4 bytes per
token instead of 2·d_in. The token array (``train.npy``) is memory-mapped and read at random.

Normalisation: ``scale`` = sqrt(d_in / E‖x‖²), with E‖x‖² accumulated in float64 from the float32
activations exactly as :func:`saerepro.activations.cache_activations` does, but over the first
``norm_tokens`` training tokens in corpus order (whole LM batches, each a function of the token
array only) instead of all of them. With ``norm_tokens`` ≥ the split, the scale equals the cache's
bit for bit.

Values: normalised and rounded once to ``dtype`` (float16 by default, which halves the shuffle
buffer's memory). ``match_cache_rounding`` instead reproduces the cache's two roundings (stored at a
provisional first-batch scale, then rescaled in place), so with the same scale, chunking and seed
an on-the-fly run equals a cached one bit for bit (``tests/test_streaming.py``).

Samples (b_dec initialisation, resampling inputs) are drawn from the first ``norm_tokens`` rows
(``LMActivations.sample_limit``) so they cost at most that many tokens of LM forward; SAEs of one
seed share their b_dec sample.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .activations import ActivationCache
from .sites import hook_name, site_dim


def _site_width(model, site: str) -> int:
    """The hook point's width: ``sites.site_dim`` (the one home of that rule) of the model's shape."""
    cfg = model.cfg
    return site_dim(site, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp)


#: A marker in meta.json-like dicts and train_info.json: where the activations came from.
MODE = "on_the_fly"


def lm_autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast for LM forwards on ``device`` when ``enabled`` (a no-op context otherwise)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@torch.no_grad()
def capture(model, tokens: np.ndarray, name: str, stop_at_layer: int) -> torch.Tensor:
    """Activations of hook ``name`` for ``tokens`` [b, ctx], BOS dropped: float32 [b·(ctx−1), d].

    The same forward, hook and reshape as :func:`saerepro.activations.cache_activations`.
    """
    device = next(model.parameters()).device
    batch = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=device)  # a copy: memmaps are read-only
    captured: dict[str, torch.Tensor] = {}

    def grab(act, hook):
        captured[hook.name] = act
        return act

    model.run_with_hooks(batch, stop_at_layer=stop_at_layer, fwd_hooks=[(name, grab)])
    return captured[name][:, 1:].reshape(batch.shape[0] * (batch.shape[1] - 1), -1).float()


class LMActivations:
    """A virtual, read-only ``[n_tokens, d_in]`` activation array computed by the LM on demand.

    Row ``r`` is position ``r % (ctx − 1) + 1`` of sequence ``r // (ctx − 1)`` of ``tokens``, times
    ``scale``, as ``dtype``: the row a cache of the same tokens holds. The LM always runs on whole,
    aligned batches of ``batch_size`` sequences (batch ``b`` = sequences ``[b·B, (b+1)·B)``, as when
    caching), so a row's value never depends on which other rows were asked for.

    An :class:`~saerepro.training.data.ActivationSource` (``read_chunks``, ``sample_limit``,
    ``a[int_array]``); also supports ``a[i:j]`` (step 1), ``a[i]`` and ``np.asarray(a[...])``.
    """

    def __init__(
        self,
        model,
        tokens: np.ndarray,
        layer: int,
        site: str,
        *,
        batch_size: int,
        scale: float,
        dtype: str = "float16",
        provisional: float | None = None,
        sample_limit: int | None = None,
        autocast_bf16: bool = False,
        progress: bool = False,
    ):
        if tokens.ndim != 2 or tokens.shape[1] < 2:
            raise ValueError(f"tokens must be [n_sequences, ctx >= 2], got shape {tokens.shape}")
        self.model = model
        self.tokens = tokens
        self.name = hook_name(layer, site)
        self.stop_at_layer = layer + 1
        self.batch_size = int(batch_size)
        self.row_len = int(tokens.shape[1]) - 1
        self.rows_per_batch = self.batch_size * self.row_len
        self.scale = float(scale)
        self.dtype = np.dtype(dtype)
        self.provisional = provisional
        """Set: reproduce the cache's two roundings (first at this scale, then rescaled)."""
        self.shape = (int(tokens.shape[0]) * self.row_len, _site_width(model, site))
        self.ndim = 2
        self.sample_limit = min(self.shape[0], sample_limit or self.shape[0])
        self.autocast_bf16 = autocast_bf16
        self.progress = progress
        self.lm_tokens = 0
        """Tokens (BOS included) the LM has been run on: the cost, for logs and benchmarks."""
        self.lm_seconds = 0.0
        self._device = next(model.parameters()).device
        self._last_sample: tuple[bytes, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    # -- the LM

    def lm_batch(self, b: int) -> np.ndarray:
        """Normalised rows of LM batch ``b`` as ``dtype`` (float32 math, then the rounding)."""
        seqs = self.tokens[b * self.batch_size : (b + 1) * self.batch_size]
        start = time.perf_counter()
        with lm_autocast(self._device, self.autocast_bf16):
            act = capture(self.model, seqs, self.name, self.stop_at_layer)
        if self.provisional is None:
            out = (act * self.scale).cpu().numpy().astype(self.dtype)
        else:  # exactly cache_activations' write, then its in-place rescale pass
            stored = (act * self.provisional).cpu().numpy().astype(self.dtype)
            out = (stored.astype(np.float32) * (self.scale / self.provisional)).astype(self.dtype)
        self.lm_seconds += time.perf_counter() - start
        self.lm_tokens += int(seqs.size)
        return out

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed), one LM pass per LM batch they touch."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        out = np.empty((idx.size, self.shape[1]), dtype=self.dtype)
        batch_of = idx // self.rows_per_batch
        order = np.argsort(batch_of, kind="stable")
        bounds = np.flatnonzero(np.diff(batch_of[order])) + 1
        groups = np.split(order, bounds) if idx.size else []
        for group in self._maybe_bar(groups):
            b = int(batch_of[group[0]])
            out[group] = self.lm_batch(b)[idx[group] - b * self.rows_per_batch]
        return out

    def _maybe_bar(self, groups: list) -> Iterator:
        if not self.progress or len(groups) < 8:
            return iter(groups)
        from tqdm.auto import tqdm

        return iter(tqdm(groups, desc=f"LM {self.name}", unit="batch", leave=False, mininterval=2.0))

    # -- array protocol

    def read_chunks(self, ids: np.ndarray, chunk: int) -> np.ndarray:
        """Chunks ``ids`` (``chunk`` rows each) concatenated in the given order."""
        ids = np.asarray(ids, dtype=np.int64)
        idx = (ids[:, None] * chunk + np.arange(chunk)[None, :]).reshape(-1)
        return self.rows(idx)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            return self.rows(np.arange(start, stop, step))
        if isinstance(key, (int, np.integer)):
            return self.rows(np.array([int(key) % self.shape[0]]))[0]
        return self._sample(np.asarray(key))

    def _sample(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx``, remembering the last answer: the SAEs of one seed initialise b_dec from the
        same sample (training.data.sample_rows), which then costs one LM pass, not one per SAE."""
        import hashlib

        key = hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).digest()
        if self._last_sample is not None and self._last_sample[0] == key:
            return self._last_sample[1].copy()
        out = self.rows(idx)
        self._last_sample = (key, out.copy())
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.rows(np.arange(self.shape[0]))
        return out if dtype is None else out.astype(dtype)


@torch.no_grad()
def estimate_scale(
    model,
    tokens: np.ndarray,
    layer: int,
    site: str,
    *,
    batch_size: int,
    norm_tokens: int,
    autocast_bf16: bool = False,
    progress: bool = True,
) -> dict:
    """The normalisation of :func:`saerepro.activations.cache_activations`, on a first block.

    Runs the LM on the first whole LM batches (``batch_size`` sequences, from sequence 0) holding
    at least ``norm_tokens`` non-BOS tokens (or the whole split) and accumulates ‖x‖² in float64
    per batch, as the cache does. Returns ``scale`` = sqrt(d_in / E‖x‖²), ``provisional`` (the
    cache's first-batch scale, for ``match_cache_rounding``), ``mean_sq_norm_model_units`` and
    ``norm_rows`` (the rows used), and the LM cost (``lm_tokens``, ``lm_seconds``).
    """
    from tqdm.auto import tqdm

    row_len = tokens.shape[1] - 1
    n_batches = min(math.ceil(len(tokens) / batch_size), math.ceil(norm_tokens / (batch_size * row_len)))
    name = hook_name(layer, site)
    d_in = _site_width(model, site)
    device = next(model.parameters()).device
    sq_sum, n_rows, provisional = 0.0, 0, None
    start = time.perf_counter()
    for b in tqdm(range(n_batches), desc=f"norm {name}", unit="batch", disable=not progress, mininterval=2.0):
        with lm_autocast(device, autocast_bf16):
            act = capture(model, tokens[b * batch_size : (b + 1) * batch_size], name, layer + 1)
        sq = act.pow(2).sum(dim=1, dtype=torch.float64)
        sq_sum += float(sq.sum())
        n_rows += act.shape[0]
        if provisional is None:
            provisional = float(np.sqrt(d_in / float(sq.mean())))
    mean_sq = sq_sum / n_rows
    return {
        "scale": float(np.sqrt(d_in / mean_sq)),
        "provisional": provisional,
        "mean_sq_norm_model_units": mean_sq,
        "norm_rows": n_rows,
        "lm_tokens": int(min(len(tokens), n_batches * batch_size) * tokens.shape[1]),
        "lm_seconds": time.perf_counter() - start,
    }


def open_lm_source(
    model,
    tokens: np.ndarray,
    layer: int,
    site: str,
    *,
    batch_size: int,
    norm_tokens: int = 1_000_000,
    dtype: str = "float16",
    match_cache_rounding: bool = False,
    autocast_bf16: bool = False,
    model_name: str = "",
    input_hashes: dict | None = None,
    path: str | Path = "on_the_fly",
    progress: bool = True,
) -> ActivationCache:
    """An on-the-fly activation source for one hook point, usable wherever a cache is.

    Estimates the normalisation first (:func:`estimate_scale`); the returned object's ``meta``
    records it (``scale``, ``norm_rows``, ``mean_sq_norm_model_units``) with ``mode:
    on_the_fly``, and each SAE trained on it stores ``activation_scale`` in its metadata and
    train_info.json, where evaluation reads it.
    """
    norm = estimate_scale(
        model,
        tokens,
        layer,
        site,
        batch_size=batch_size,
        norm_tokens=norm_tokens,
        autocast_bf16=autocast_bf16,
        progress=progress,
    )
    array = LMActivations(
        model,
        tokens,
        layer,
        site,
        batch_size=batch_size,
        scale=norm["scale"],
        dtype=dtype,
        provisional=norm["provisional"] if match_cache_rounding else None,
        sample_limit=norm["norm_rows"],
        autocast_bf16=autocast_bf16,
        progress=progress,
    )
    array.lm_tokens, array.lm_seconds = norm["lm_tokens"], norm["lm_seconds"]  # count the norm pass too
    n_rows, d_in = array.shape
    meta = {
        "mode": MODE,
        "model": model_name,
        "hook_name": array.name,
        "layer": layer,
        "site": site,
        "shape": [n_rows, d_in],
        "dtype": str(array.dtype),
        "n_tokens": n_rows,
        "d_in": d_in,
        "scale": norm["scale"],
        "provisional_scale": norm["provisional"],
        "mean_sq_norm_model_units": norm["mean_sq_norm_model_units"],
        "norm_rows": norm["norm_rows"],
        "norm_covers_all_tokens": norm["norm_rows"] == n_rows,
        "match_cache_rounding": bool(match_cache_rounding),
        "lm_batch_size": int(batch_size),
        "lm_autocast_bf16": bool(autocast_bf16),
        "bos_skipped": True,
        "inputs": dict(input_hashes or {}),
    }
    return ActivationCache(path=Path(path), array=array, meta=meta, source=array)  # type: ignore[arg-type]


__all__ = ["MODE", "LMActivations", "capture", "estimate_scale", "lm_autocast", "open_lm_source"]
