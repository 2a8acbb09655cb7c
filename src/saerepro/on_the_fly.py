"""On-the-fly mode's training stage: every SAE of one hook point trained on LM activations as they are read.

The stream itself is :mod:`saerepro.streaming`; this module runs the LM, opens the stream and
drives :func:`saerepro.training.train_saes` over it, one pass per seed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

from . import paths
from .config import DERIVED_ARCHITECTURES, Config
from .io import atomic_write_json
from .models import load_model, resolve_device
from .provenance import PROVENANCE_FILE, provenance

log = logging.getLogger("saerepro")


def hook_point_runs(cfg: Config, layer: int, site: str) -> list:
    """Every SAE of the sweep at (layer, site), in the sweep's order."""
    return [run for run in cfg.runs() if run.layer == int(layer) and run.site == site]


def train_on_the_fly(
    cfg: Config,
    layer: int,
    site: str,
    corpus: str | Path,
    out_dirs: list[str | Path] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Train every SAE of one hook point on LM activations computed as they are read (no cache).

    One process, one LM. The SAEs are trained in passes over the stream (each pass one
    :func:`saerepro.training.train_saes`): one per seed, since each seed has its own data order as
    in cached mode, and, when ``baseline_rescale_shift`` is configured, a second one per seed for
    it, on the baselines the first pass just trained. ``out_dirs`` (default: the sweep's run folders
    under ``results/``) are in the order of :func:`hook_point_runs`.

    Resuming: every SAE checkpoints as in cached mode and keeps a checkpoint of its final state
    until the whole hook point is done, so a rerun after an interruption skips finished SAEs,
    resumes the others at their last checkpoint (recomputing only the shuffle buffer it falls in
    and the normalisation block) and ends with the same weights as an uninterrupted run.
    """
    from .sae.export import export_sae_lens
    from .streaming import open_lm_source
    from .training import CHECKPOINT_FILE, TrainConfig, train_saes

    runs = hook_point_runs(cfg, layer, site)
    if not runs:
        raise ValueError(f"no SAE of the sweep is configured at layer {layer}, site {site!r}")
    if out_dirs is None:
        out_dirs = [Path(paths.fill(paths.TRAIN_INFO, run)).parent for run in runs]
    if len(out_dirs) != len(runs):
        raise ValueError(f"{len(runs)} SAEs at layer {layer}, site {site!r} but {len(out_dirs)} out_dirs")
    dirs = {run: Path(d) for run, d in zip(runs, out_dirs, strict=False)}
    corpus = Path(corpus)
    tokens = np.load(corpus / "train.npy", mmap_mode="r")
    corpus_meta = json.loads((corpus / "meta.json").read_text())
    device = str(resolve_device(cfg.device))
    model = load_model(cfg.spec, cfg.resources_dir, device, tokenizer=False)
    start = time.time()
    source = open_lm_source(
        model,
        tokens,
        int(layer),
        site,
        batch_size=cfg.cache.batch_size,
        norm_tokens=cfg.activations.norm_tokens,
        dtype=cfg.cache.dtype,
        match_cache_rounding=cfg.activations.match_cache_rounding,
        autocast_bf16=cfg.activations.lm_autocast_bf16,
        model_name=cfg.spec.name,
        input_hashes={
            "train_tokens_sha256": corpus_meta["splits"]["train"]["sha256"],
            "model": cfg.spec.name,
            "model_source": cfg.spec.location,
        },
        path=corpus / "train.npy",
        progress=progress,
    )
    log.info(
        "on-the-fly L%s/%s: scale %.6g from %d tokens (%s of the split)",
        layer,
        site,
        source.scale,
        source.meta["norm_rows"],
        "all" if source.meta["norm_covers_all_tokens"] else "part",
    )
    infos: dict = {}
    for derived in (False, True):  # baselines before the rescale-shift SAEs built on them
        stage = [run for run in runs if (run.architecture in DERIVED_ARCHITECTURES) == derived]
        for seed in sorted({run.seed for run in stage}):
            group = [run for run in stage if run.seed == seed]
            tcfgs = []
            for run in group:
                parent = DERIVED_ARCHITECTURES.get(run.architecture)
                parent_dir = None
                if parent is not None:
                    twin = next(
                        (
                            r
                            for r in runs
                            if r.architecture == parent and r.seed == run.seed and r.coefficient == run.coefficient
                        ),
                        None,
                    )
                    if twin is None:
                        raise ValueError(f"{run.run_dir} needs the {parent} SAE of equal coefficient and seed")
                    parent_dir = dirs[twin]
                tcfgs.append(TrainConfig.from_run(cfg, run, source.d_in, parent_dir))
                # no cache to hash: the stream is identified by the tokens it is computed from
                stream = "on-the-fly:" + corpus_meta["splits"]["train"]["sha256"]
                atomic_write_json(
                    dirs[run] / PROVENANCE_FILE,
                    {
                        **provenance(cfg, stream),
                        "seed": run.seed,
                        "tokens_planned": tcfgs[-1].total_tokens,
                        "cache": None,
                    },
                )
            done = train_saes(tcfgs, source, [dirs[r] for r in group], progress=progress, keep_checkpoint=True)
            infos.update(zip(group, done, strict=False))
    for run in runs:  # the hook point is done: nothing left to resume
        (dirs[run] / CHECKPOINT_FILE).unlink(missing_ok=True)
        export_sae_lens(dirs[run])  # after every pass: rescale-shift SAEs read their baselines as trained
    seconds = time.time() - start
    array = source.array
    log.info(
        "on-the-fly L%s/%s: %d SAEs in %.1f s; LM forward %d tokens in %.1f s (%.0f tokens/s)",
        layer,
        site,
        len(runs),
        seconds,
        cast(Any, array).lm_tokens,
        cast(Any, array).lm_seconds,
        cast(Any, array).lm_tokens / max(cast(Any, array).lm_seconds, 1e-9),
    )
    return [infos[run] for run in runs]
