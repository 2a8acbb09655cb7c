"""The aggregate stage: mixed experiments, NaN rows, failed runs and wall-clock columns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from saerepro import paths
from saerepro.aggregate import MixedConfigError, aggregate, missing_runs
from saerepro.config import load_config
from saerepro.pipeline import aggregate_available
from saerepro.tables import ALL_COLUMNS, TIMING_COLUMNS, MetricsTableError
from tests.synthetic import synthetic_metrics_table

CONFIG = {
    "model": "gemma-3-270m",
    "layers": [2],
    "sites": ["resid", "mlp"],
    "architectures": {"gated": {"coefficients": [1.0, 2.0]}, "baseline": {"coefficients": [1.0, 2.0]}},
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # aggregate_available finds results/ relative to the working dir
    return tmp_path


def _write_metrics(cfg, skip=()):
    """One metrics.json per configured run (values from the synthetic table), except ``skip``."""
    synth = synthetic_metrics_table(
        layers=(2,), coefficients=(1.0, 2.0), seeds=(0,), sites=("resid", "mlp"), architectures=("gated", "baseline")
    )
    files = []
    for run in cfg.runs():
        if (run.site, run.architecture, run.coefficient) in skip:
            continue
        row = (
            synth[
                (synth.site == run.site)
                & (synth.architecture == run.architecture)
                & (synth.coefficient == run.coefficient)
            ]
            .iloc[0]
            .to_dict()
        )
        row.update(model=run.model, layer=run.layer, train_seconds=12.3, eval_seconds=4.5)
        path = Path(paths.fill(paths.METRICS, run))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(row))
        files.append(str(path))
    return files


def test_metrics_table_has_no_wall_clock_columns_and_timings_go_beside_it(workdir):
    cfg = load_config(CONFIG)
    table = workdir / "results/tables/metrics.csv"
    aggregate(cfg, _write_metrics(cfg), table)
    df = pd.read_csv(table)
    assert list(df.columns) == list(ALL_COLUMNS)
    timings = pd.read_csv(table.parent / "timings.csv")
    assert set(TIMING_COLUMNS) <= set(timings.columns) and len(timings) == len(df) == 8
    assert pd.read_csv(table.parent / "missing_runs.csv").empty


def test_aggregate_refuses_rows_from_two_config_hashes_unless_allowed(workdir):
    cfg = load_config(CONFIG)
    files = _write_metrics(cfg)
    stale = json.loads(Path(files[0]).read_text())
    stale["config_hash"] = "f" * 16
    Path(files[0]).write_text(json.dumps(stale))
    table = workdir / "results/tables/metrics.csv"
    with pytest.raises(MixedConfigError, match="2 different config hashes.*allow_mixed_configs"):
        aggregate(cfg, files, table)
    assert not table.exists()
    allowed = load_config({**CONFIG, "allow_mixed_configs": True})
    assert len(aggregate(allowed, files, table)) == 8


def test_a_nan_metric_never_reaches_the_table(workdir):
    cfg = load_config(CONFIG)
    files = _write_metrics(cfg)
    row = json.loads(Path(files[3]).read_text())
    row["loss_recovered"] = math.nan  # json writes NaN; the table must refuse it
    Path(files[3]).write_text(json.dumps(row))
    table = workdir / "results/tables/metrics.csv"
    with pytest.raises(MetricsTableError, match="loss_recovered.*NaN"):
        aggregate(cfg, files, table)
    assert not table.exists()


def test_failed_runs_are_listed_not_dropped(workdir):
    cfg = load_config(CONFIG)
    _write_metrics(cfg, skip={("mlp", "baseline", 2.0), ("resid", "gated", 1.0)})
    trained_not_evaluated = [
        r for r in cfg.runs() if (r.site, r.architecture, r.coefficient) == ("resid", "gated", 1.0)
    ][0]
    info = Path(paths.fill(paths.TRAIN_INFO, trained_not_evaluated))
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text("{}")
    found, missing = missing_runs(cfg)
    assert len(found) == 6 and len(missing) == 2
    df = aggregate_available(cfg, figures_dir=None)
    assert len(df) == 6
    listed = pd.read_csv(workdir / "results/tables/missing_runs.csv").set_index("architecture")
    assert listed.loc["baseline", "stage_not_done"] == "train" and listed.loc["baseline", "site"] == "mlp"
    assert listed.loc["gated", "stage_not_done"] == "evaluate"
    assert listed.loc["baseline", "log"].startswith("logs/train/gemma-3-270m/wiki-offline/L2/mlp/baseline/c2/")


def test_nothing_finished_writes_only_the_missing_list(workdir):
    cfg = load_config(CONFIG)
    assert aggregate_available(cfg, figures_dir=None) is None
    assert len(pd.read_csv(workdir / "results/tables/missing_runs.csv")) == 8
    assert not (workdir / "results/tables/metrics.csv").exists()


def test_figures_mark_the_saes_training_health_names_as_diverged(workdir, monkeypatch):
    from saerepro.figures import render
    from saerepro.tables import KEY_COLUMNS

    table = workdir / "results/tables/metrics.csv"
    table.parent.mkdir(parents=True)
    synth = synthetic_metrics_table(layers=(2,), coefficients=(1.0, 2.0), seeds=(0,), sites=("resid",))
    synth.to_csv(table, index=False)
    drawn = {}

    def capture(df, out_dir, **kwargs):
        drawn["df"] = df
        return []

    monkeypatch.setattr(render, "make_all_figures", capture)
    render.figures_from_tables(table.parent, workdir / "figures", headline_layer=2)
    assert "diverged" not in drawn["df"]  # no health table: nothing to mark
    health = synth[list(KEY_COLUMNS)].assign(diverged=False).iloc[1:]  # one SAE without a curve
    health.loc[health.index[0], "diverged"] = True
    health.to_csv(table.parent / "training_health.csv", index=False)
    render.figures_from_tables(table.parent, workdir / "figures", headline_layer=2)
    marked = drawn["df"]
    assert len(marked) == len(synth) and int(marked["diverged"].sum()) == 1
    assert bool(marked.set_index(list(KEY_COLUMNS)).loc[tuple(health.iloc[0][list(KEY_COLUMNS)]), "diverged"])


def test_partial_aggregation_figures_mark_diverged_saes_too(workdir, monkeypatch):
    """aggregate_available (after --keep-going) draws its figures from the tables it just wrote,
    training_health.csv included, as the figures rule does."""
    from saerepro import aggregate as aggregate_module
    from saerepro.figures import render
    from saerepro.tables import KEY_COLUMNS

    cfg = load_config(CONFIG)
    _write_metrics(cfg, skip={("mlp", "baseline", 2.0)})
    first = next(r for r in cfg.runs() if (r.site, r.architecture, r.coefficient) == ("resid", "gated", 1.0))

    def one_diverged(metric_files):
        rows = [{c: getattr(first, c) for c in KEY_COLUMNS}]
        return pd.DataFrame(rows).assign(diverged=True)

    monkeypatch.setattr(aggregate_module, "training_health", one_diverged)
    drawn = {}

    def capture(df, out_dir, **kwargs):
        drawn["df"] = df
        return []

    monkeypatch.setattr(render, "make_all_figures", capture)
    assert len(aggregate_available(cfg, figures_dir=workdir / "figures")) == 7
    marked = drawn["df"].set_index(list(KEY_COLUMNS))["diverged"]
    assert int(marked.sum()) == 1 and bool(marked.loc[tuple(getattr(first, c) for c in KEY_COLUMNS)])
