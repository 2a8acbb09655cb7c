"""Training health: did an SAE's loss blow up on the way?

A run whose loss spikes far above what it had already reached (an optimiser step that throws the
dictionary off, e.g. too high a learning rate for that architecture) may recover its loss but not
its latents: they die and stay dead, and the SAE's metrics are those of a damaged dictionary, not
of the architecture. The metrics table cannot show this; each run's ``loss_curve.csv`` can.
:func:`training_health` reads them and ``aggregate`` writes one row per SAE to
``training_health.csv`` beside ``metrics.csv``, warning about every flagged run.

Measured on the long run (1M tokens per SAE, 2026-12-03): every gated, baseline and JumpReLU SAE
stayed within 2.7x of its best loss so far after warm-up; three TopK SAEs of layer 6 (k = 64 and 32
at resid, 64 at mlp; Adam beta1 0, lr 0.003) jumped 44x, 32x and 26x and ended with 66%, 23% and
32% of their latents dead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .tables import KEY_COLUMNS

#: A loss this many times the best loss reached before it (after warm-up) flags the run.
SPIKE_FLAG = 5.0

#: Rows of loss_curve.csv averaged for the final loss.
FINAL_ROWS = 10

HEALTH_COLUMNS = (*KEY_COLUMNS, "max_loss_spike", "spike_step", "final_over_best", "dead_fraction_final", "diverged")


def curve_health(curve: pd.DataFrame, warmup_steps: int = 0) -> dict:
    """Health of one loss curve (``loss_curve.csv``: columns step, loss, optionally dead_fraction).

    ``max_loss_spike``: the largest loss / (lowest loss logged before it), over the rows after
    ``warmup_steps`` (the warm-up's own descent is not a spike); ``spike_step``: where it happened;
    ``final_over_best``: the mean of the last :data:`FINAL_ROWS` losses / the lowest loss (above 1:
    the run ended worse than it had been); ``dead_fraction_final``: the last logged dead fraction
    (NaN if not logged); ``diverged``: ``max_loss_spike`` ≥ :data:`SPIKE_FLAG`. NaNs when fewer
    than two rows follow the warm-up.
    """
    after = curve[curve["step"] > warmup_steps].reset_index(drop=True)
    dead = float(curve["dead_fraction"].iloc[-1]) if "dead_fraction" in curve and len(curve) else math.nan
    if len(after) < 2:
        nan = math.nan
        return {
            "max_loss_spike": nan,
            "spike_step": nan,
            "final_over_best": nan,
            "dead_fraction_final": dead,
            "diverged": False,
        }
    loss = after["loss"].astype(float)
    ratio = (loss / loss.cummin().shift(1)).iloc[1:]
    at = int(ratio.idxmax())
    spike = float(ratio.max())
    return {
        "max_loss_spike": spike,
        "spike_step": int(after["step"].iloc[at]),
        "final_over_best": float(loss.iloc[-FINAL_ROWS:].mean() / loss.min()),
        "dead_fraction_final": dead,
        "diverged": spike >= SPIKE_FLAG,
    }


def training_health(metric_files: list[str]) -> pd.DataFrame:
    """One row per SAE whose run folder (that of its ``metrics.json``) holds a ``loss_curve.csv``:
    its key columns and :func:`curve_health` (warm-up from its ``train_info.json``)."""
    rows = []
    for path in metric_files:
        run_dir = Path(path).parent
        curve_path = run_dir / "loss_curve.csv"
        if not curve_path.exists():
            continue
        metrics = json.loads(Path(path).read_text())
        info_path = run_dir / "train_info.json"
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        warmup = int(info.get("train_config", {}).get("lr_warmup_steps", 0) or 0)
        rows.append({**{k: metrics.get(k) for k in KEY_COLUMNS}, **curve_health(pd.read_csv(curve_path), warmup)})
    table = pd.DataFrame(rows, columns=list(HEALTH_COLUMNS))
    return table.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True) if len(table) else table
