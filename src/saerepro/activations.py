"""The on-disk activation cache shared by every SAE of one hook point.

Format of one cache directory (one per model, layer and site)::

    activations.npy   float16 array [n_tokens, d_in], memory-mappable (``np.load(mmap_mode="r")``)
    meta.json         model, hook_name, layer, site, shape, dtype, n_tokens, d_in, scale,
                      array_sha256 and the hashes of the inputs it was computed from

Stored values are already normalised: ``x_stored = scale * x_model`` with ``scale`` chosen so
that E‖x_stored‖² = d_in over the cached tokens. Divide by ``scale`` to get back to model units
(needed when splicing a reconstruction into the LM).

Why float16: normalised activations have entries of order 1 (|x| < 65504 with a wide margin),
float16 keeps a relative error of ~5e-4, far below any SAE's reconstruction error (FVU of a few
percent), and halves the disk and page-cache footprint, which is what bounds the default run on
a 24 GiB laptop. The BOS position is never cached: its activations are orders of magnitude
larger than any other token's and would dominate the normalisation and the loss.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_write_json, sha256_file
from .sites import hook_name, site_dim

ARRAY_FILE = "activations.npy"
META_FILE = "meta.json"


class CachedRows:
    """The :class:`saerepro.training.data.ActivationSource` of an activation array in memory or on disk."""

    def __init__(self, array: np.ndarray):
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def sample_limit(self) -> int:
        return int(self.array.shape[0])

    def read_chunks(self, ids: np.ndarray, chunk: int) -> np.ndarray:
        return np.concatenate([np.asarray(self.array[i * chunk : (i + 1) * chunk]) for i in ids])

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return self.array[idx]


@dataclass(frozen=True)
class ActivationCache:
    """A read-only view of one cache directory (or of an on-the-fly source's virtual array)."""

    path: Path
    array: np.ndarray
    meta: dict
    source: Any = None
    """What training reads (an ``ActivationSource``): None means :class:`CachedRows` of ``array``."""

    def __post_init__(self) -> None:
        if self.source is None:
            object.__setattr__(self, "source", CachedRows(self.array))

    @property
    def scale(self) -> float:
        """Multiply model-unit activations by this to get the normalised ones stored here."""
        return float(self.meta["scale"])

    @property
    def d_in(self) -> int:
        return int(self.array.shape[1])

    @property
    def n_tokens(self) -> int:
        return int(self.array.shape[0])


class CorruptCacheError(ValueError):
    """An activation cache whose array disagrees with its metadata (truncated, altered, mixed)."""


_REBUILD = "delete the folder and rerun (with Snakemake: `snakemake --forcerun cache_activations ...`)"


def open_cache(path: str | Path, verify: bool = False) -> ActivationCache:
    """Open a cache directory written by :func:`cache_activations` (memory-mapped, read-only).

    Shape and dtype are always checked against ``meta.json`` (and a truncated file fails here);
    ``verify=True`` also recomputes the array's SHA-256 and compares it with the recorded one, so
    a same-size alteration is caught too (~0.5 s per GB). Training verifies; evaluation, which
    only reads the scale, does not.
    """
    path = Path(path)
    meta_path, array_path = path / META_FILE, path / ARRAY_FILE
    if not meta_path.exists() or not array_path.exists():
        raise FileNotFoundError(f"{path} is not an activation cache: need {META_FILE} and {ARRAY_FILE}")
    try:
        meta = json.loads(meta_path.read_text())
        shape, dtype = list(meta["shape"]), meta["dtype"]
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptCacheError(f"activation cache {path}: unreadable {META_FILE} ({err}); {_REBUILD}") from None
    try:
        array = np.load(array_path, mmap_mode="r")
    except (ValueError, OSError) as err:  # numpy refuses a file shorter than its header says
        raise CorruptCacheError(
            f"activation cache {path}: {ARRAY_FILE} is truncated or unreadable ({err}); {_REBUILD}"
        ) from None
    if list(array.shape) != shape or str(array.dtype) != dtype:
        raise CorruptCacheError(
            f"activation cache {path} is inconsistent: meta.json says shape {shape} dtype {dtype}, "
            f"the array has shape {list(array.shape)} dtype {array.dtype}; {_REBUILD}"
        )
    if verify:
        recorded = meta.get("array_sha256")
        actual = sha256_file(array_path)
        if recorded != actual:
            raise CorruptCacheError(
                f"activation cache {path} is corrupt: {ARRAY_FILE} has SHA-256 {actual[:16]}..., "
                f"meta.json recorded {str(recorded)[:16]}...; {_REBUILD}"
            )
    return ActivationCache(path=path, array=array, meta=meta)


# --------------------------------------------------------------------------- writing


def estimate_cache_bytes(n_tokens: int, dims: list[int], dtype: str = "float16") -> int:
    """Bytes the caches of ``dims``-wide sites over ``n_tokens`` tokens occupy on disk."""
    return int(n_tokens) * sum(dims) * np.dtype(dtype).itemsize


def check_free_space(folder: str | Path, needed: int, margin: float = 1.1) -> None:
    """Fail with both numbers when ``folder``'s file system has less than ``needed`` bytes free."""
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed * margin:
        raise OSError(
            f"not enough disk space for the activation cache in {folder}: need about "
            f"{needed * margin / 1e9:.2f} GB (including a 10% margin), only {free / 1e9:.2f} GB free"
        )


def cache_activations(
    model,
    tokens: np.ndarray,
    hook_points: list[tuple[int, str]],
    out_dirs: list[str | Path],
    batch_size: int = 16,
    dtype: str = "float16",
    input_hashes: dict | None = None,
    model_name: str = "",
    progress: bool = True,
) -> list[dict]:
    """Run ``model`` once over ``tokens`` and write one cache per (layer, site).

    The forward pass stops after the deepest layer needed (``stop_at_layer``), so the 262k-vocab
    unembed is never computed. Position 0 (BOS) is skipped. Values are written in float16 scaled
    by a provisional per-site factor from the first batch (keeping them of order 1), the exact
    E‖x‖² is accumulated in float64 from the float32 activations, and a final in-place pass
    rescales to E‖x‖² = d_in. Each array is written under a temporary name and renamed at the
    end, so an interrupted run never leaves a cache that looks complete.
    """
    import os

    import torch
    from tqdm.auto import tqdm

    if len(hook_points) != len(out_dirs):
        raise ValueError("need one output directory per hook point")
    n_seq, ctx = tokens.shape
    n_tok = n_seq * (ctx - 1)
    names = [hook_name(layer, site) for layer, site in hook_points]
    stop_at = max(layer for layer, _ in hook_points) + 1
    dirs = [Path(d) for d in out_dirs]
    arrays: list[Any] = []
    tmp_paths = []
    sq_sums = [0.0] * len(names)
    provisional: list[Any] = [None] * len(names)  # the first batch's scale, per hook point
    cfg = model.cfg
    dims = [site_dim(site, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) for _, site in hook_points]
    for out_dir, dim in zip(dirs, dims, strict=False):
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".{ARRAY_FILE}.partial"
        tmp_paths.append(tmp)
        arrays.append(np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n_tok, dim)))

    captured: dict[str, torch.Tensor] = {}

    def grab(act, hook):
        captured[hook.name] = act
        return act

    device = next(model.parameters()).device
    row = 0
    bar = tqdm(total=n_tok, unit="tok", unit_scale=True, desc="cache_activations", disable=not progress)
    with torch.no_grad():
        for start in range(0, n_seq, batch_size):
            batch = torch.as_tensor(tokens[start : start + batch_size], dtype=torch.long, device=device)
            captured.clear()
            model.run_with_hooks(batch, stop_at_layer=stop_at, fwd_hooks=[(n, grab) for n in names])
            n_rows = batch.shape[0] * (ctx - 1)
            for i, name in enumerate(names):
                act = captured[name][:, 1:].reshape(n_rows, -1).float()
                sq = act.pow(2).sum(dim=1, dtype=torch.float64)
                sq_sums[i] += float(sq.sum())
                if provisional[i] is None:
                    provisional[i] = float(np.sqrt(dims[i] / float(sq.mean())))
                arrays[i][row : row + n_rows] = (act * provisional[i]).cpu().numpy().astype(dtype)
            row += n_rows
            bar.update(n_rows)
    bar.close()

    metas = []
    for i, (name, (layer, site)) in enumerate(zip(names, hook_points, strict=False)):
        mean_sq = sq_sums[i] / n_tok
        scale = float(np.sqrt(dims[i] / mean_sq))
        ratio = scale / provisional[i]
        arr = arrays[i]
        chunk = 1 << 16
        stored_sq = 0.0
        for s in range(0, n_tok, chunk):
            block = arr[s : s + chunk].astype(np.float32) * ratio
            arr[s : s + chunk] = block.astype(dtype)
            stored_sq += float(np.square(arr[s : s + chunk], dtype=np.float64).sum())
        arr.flush()
        del arr
        arrays[i] = None
        final = dirs[i] / ARRAY_FILE
        os.replace(tmp_paths[i], final)
        meta = {
            "model": model_name,
            "hook_name": name,
            "layer": layer,
            "site": site,
            "shape": [n_tok, dims[i]],
            "dtype": dtype,
            "n_tokens": n_tok,
            "d_in": dims[i],
            "scale": scale,
            "mean_sq_norm_model_units": mean_sq,
            "mean_sq_norm_stored": stored_sq / n_tok,
            "bos_skipped": True,
            "array_sha256": sha256_file(final),
            "inputs": dict(input_hashes or {}),
        }
        atomic_write_json(dirs[i] / META_FILE, meta)
        metas.append(meta)
    return metas
