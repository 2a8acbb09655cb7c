"""Schedules over the steps of a run: the learning rate and the sparsity coefficient."""

from __future__ import annotations

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
        rewarm = cfg.lr_warmup_steps if cfg.resample_rewarm_steps is None else cfg.resample_rewarm_steps
        if rewarm > 0:
            lr *= min(1.0, (step - last_resample_step + 1) / rewarm)
    return lr


def coefficient_at(cfg: TrainConfig, step: int) -> float:
    """Sparsity coefficient at 0-based ``step`` (linear warm-up if configured)."""
    if cfg.coefficient_warmup_steps > 0:
        return cfg.coefficient * min(1.0, (step + 1) / cfg.coefficient_warmup_steps)
    return float(cfg.coefficient)
