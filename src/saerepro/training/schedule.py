"""Schedules over the steps of a run: the learning rate and the sparsity coefficient."""

from __future__ import annotations

import math

from .config import TrainConfig


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
        lr *= resample_rewarm_factor(cfg, step - last_resample_step)
    return lr


def resample_rewarm_factor(cfg: TrainConfig, steps_since: int) -> float:
    """LR multiplier ``steps_since`` steps after a resample (0: the first step after it).

    With n = ``resample_rewarm_steps`` (None: ``lr_warmup_steps``) and s =
    ``resample_rewarm_start_factor``:

    * ``linear`` (the default, s = 0): s + (1 − s)·min(1, (steps_since + 1)/n), i.e. the start-of-run
      warm-up again; with s = 0 the first step after the resample gets lr/n and step n − 1 gets lr.
    * ``cosine``: s + (1 − s)·(1 − cos(π·min(1, steps_since/n)))/2: the first step after the
      resample gets s·lr, the LR then rises along a half cosine and is back to lr n steps after it.
      ``cosine`` with s = 0.1 and n = 1000 is the paper's re-warm-up (App. D.1.1: "we reapply
      learning rate warm-up after each resampling event, reducing learning rate to 0.1x the
      ordinary value, and, increasing it with a cosine schedule back to the ordinary value over the
      next 1000 training steps").

    n = 0: no re-warm-up (factor 1).
    """
    n = cfg.lr_warmup_steps if cfg.resample_rewarm_steps is None else cfg.resample_rewarm_steps
    if n <= 0:
        return 1.0
    start = cfg.resample_rewarm_start_factor
    if cfg.resample_rewarm_shape == "cosine":
        progress = min(1.0, max(0, steps_since) / n)
        return start + (1.0 - start) * 0.5 * (1.0 - math.cos(math.pi * progress))
    ramp = min(1.0, (steps_since + 1) / n)
    return ramp if start == 0 else start + (1.0 - start) * ramp


def coefficient_at(cfg: TrainConfig, step: int) -> float:
    """Sparsity coefficient at 0-based ``step`` (linear warm-up if configured)."""
    if cfg.coefficient_warmup_steps > 0:
        return cfg.coefficient * min(1.0, (step + 1) / cfg.coefficient_warmup_steps)
    return float(cfg.coefficient)
