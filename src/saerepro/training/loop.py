"""The training loop: :func:`train_saes` (several SAEs over one read of the activations), :func:`train_sae`.

SAEs trained together see the same batches in the same order, so each ends bit-identical to
training it alone; they may differ in ``total_tokens`` (each stops at its own step count).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..activations import ActivationCache, open_cache
from ..allocator import keep_freed_memory
from ..models import resolve_device
from .config import TrainConfig
from .data import ShuffledStream, batch_to_tensor
from .run import TrainingState

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
    _check_trainable_together(cfgs, out_dirs)
    keep_freed_memory()  # page faults of freshly mapped tensors would otherwise dominate a step
    if not isinstance(cache, ActivationCache):
        cache = open_cache(os.fspath(cache))
    cfg0 = cfgs[0]
    device = resolve_device(cfg0.device)
    runs = [TrainingState(cfg, cache, Path(d), device) for cfg, d in zip(cfgs, out_dirs, strict=False)]
    total_steps = max(cfg.total_steps for cfg in cfgs)
    # the first step any SAE still has to take (finished SAEs, e.g. resumed ones, read no data)
    start = min((run.step for run in runs if run.step < run.cfg.total_steps), default=total_steps)
    end = total_steps if stop_at_step is None else min(total_steps, stop_at_step)
    stream = ShuffledStream(
        cache.source, cfg0.batch_size, cfg0.seed, cfg0.shuffle_buffer_tokens, cfg0.shuffle_chunk_tokens
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
            x = batch_to_tensor(next(batches), device)
            for run in runs:
                if run.step == step and step < run.cfg.total_steps:
                    run.train_step(x)
                    if run.step == run.cfg.total_steps:  # done before the others: stop its clock
                        account_time()
                        run.clock_stopped = True
                        if keep_checkpoint:
                            run.save_checkpoint()
            _advance(bar, runs, step, cfg0.batch_size)
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


def _check_trainable_together(cfgs: Sequence[TrainConfig], out_dirs: Sequence[str | os.PathLike[str]]) -> None:
    """One distinct out_dir per config, and the data settings every SAE of one read shares."""
    if len(cfgs) == 0 or len(cfgs) != len(out_dirs):
        raise ValueError(f"need one out_dir per config, got {len(cfgs)} configs and {len(out_dirs)} out_dirs")
    for name in SHARED_DATA_FIELDS:
        values = {getattr(c, name) for c in cfgs}
        if len(values) > 1:
            raise ValueError(f"SAEs trained together must share TrainConfig.{name}; got {sorted(map(str, values))}")
    if len({os.path.abspath(d) for d in out_dirs}) != len(out_dirs):
        raise ValueError("out_dirs must be distinct")


def _advance(bar: Any, runs: Sequence[TrainingState], step: int, batch_size: int) -> None:
    """Move the progress bar by one batch; one SAE's bar shows its latest loss and L0."""
    if bar is None:
        return
    bar.update(batch_size)
    last = runs[0].rows[-1] if len(runs) == 1 and runs[0].rows else None
    if last is not None and last["step"] == step + 1:
        bar.set_postfix(loss=f"{last['loss']:.4g}", l0=f"{last['l0']:.1f}", refresh=False)


def _progress_bar(enabled: bool, total: int, initial: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="tok", unit_scale=True, mininterval=2.0, dynamic_ncols=True
    )
