"""Training health (saerepro.health): a loss spike a run never recovers from is flagged."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from saerepro.health import SPIKE_FLAG, curve_health, training_health


def _curve(loss, dead=None) -> pd.DataFrame:
    steps = np.arange(1, len(loss) + 1) * 10
    out = pd.DataFrame({"step": steps, "loss": loss})
    if dead is not None:
        out["dead_fraction"] = dead
    return out


def test_a_noisy_but_healthy_descent_is_not_flagged():
    rng = np.random.default_rng(0)
    loss = 40 * np.exp(-np.arange(100) / 10) + 4 + rng.uniform(0, 3, 100)  # noise up to 1.75x the floor
    health = curve_health(_curve(loss, dead=np.zeros(100)), warmup_steps=50)
    assert 1 < health["max_loss_spike"] < 2 and not health["diverged"]
    assert health["dead_fraction_final"] == 0.0


def test_a_blow_up_is_flagged_where_it_happened_even_after_the_loss_recovers():
    loss = np.r_[np.linspace(40, 4, 60), 82.0, 21.0, np.linspace(10, 6, 40)]  # the long run's TopK k=64 at resid
    dead = np.r_[np.zeros(62), np.full(40, 0.66)]
    health = curve_health(_curve(loss, dead), warmup_steps=50)
    assert health["diverged"] and health["max_loss_spike"] == pytest.approx(82 / 4)
    assert health["spike_step"] == 610 and health["final_over_best"] == pytest.approx(np.mean(loss[-10:]) / 4)
    assert health["dead_fraction_final"] == pytest.approx(0.66)
    # the warm-up's own descent, however steep, is not a spike; a curve ending in warm-up has no verdict
    assert curve_health(_curve(loss[:60]), warmup_steps=0)["max_loss_spike"] <= 1.0
    short = curve_health(_curve(loss[:5]), warmup_steps=50)
    assert math.isnan(short["max_loss_spike"]) and not short["diverged"] and math.isnan(short["dead_fraction_final"])


def test_training_health_reads_each_run_folder_and_skips_runs_without_a_curve(tmp_path):
    files = []
    for i, loss in enumerate((np.linspace(10, 2, 30), np.r_[np.linspace(10, 2, 20), 50.0, np.full(9, 3.0)])):
        run = tmp_path / f"run{i}"
        run.mkdir()
        key = dict(model="m", corpus="c", layer=6, site="resid", architecture="topk", coefficient=64 - i, seed=0)
        (run / "metrics.json").write_text(json.dumps(key))
        (run / "train_info.json").write_text(json.dumps({"train_config": {"lr_warmup_steps": 50}}))
        _curve(loss).to_csv(run / "loss_curve.csv", index=False)
        files.append(str(run / "metrics.json"))
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "metrics.json").write_text(json.dumps({"coefficient": 1}))
    table = training_health([*files, str(tmp_path / "run2" / "metrics.json")])
    assert list(table["coefficient"]) == [63, 64]  # sorted by key; run2 has no curve
    assert list(table["diverged"]) == [True, False] and table["max_loss_spike"].iloc[0] == pytest.approx(25.0)
    assert table["max_loss_spike"].iloc[0] >= SPIKE_FLAG
