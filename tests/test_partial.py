"""Partial aggregation of a run that has not finished (saerepro.partial, `make long-partial`)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from saerepro import paths
from saerepro.config import load_config
from saerepro.partial import main
from tests.synthetic import synthetic_metrics_table

CONFIG = {
    "model": "gemma-3-270m",
    "layers": [2],
    "headline_layer": 2,
    "sites": ["resid", "mlp"],
    "architectures": {"gated": {"coefficients": [1.0, 2.0]}, "baseline": {"coefficients": [1.0, 2.0]}},
}


def _finish(run_dir: Path, skip: tuple | None) -> None:
    """metrics.json for every run of CONFIG but ``skip`` (site, architecture, coefficient)."""
    synth = synthetic_metrics_table(
        layers=(2,), coefficients=(1.0, 2.0), seeds=(0,), sites=("resid", "mlp"), architectures=("gated", "baseline")
    )
    for run in load_config(CONFIG).runs():
        key = (run.site, run.architecture, run.coefficient)
        if key == skip:
            continue
        row = synth[(synth.site == run.site) & (synth.architecture == run.architecture)]
        row = row[row.coefficient == run.coefficient].iloc[0].to_dict()
        path = run_dir / paths.fill(paths.METRICS, run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(row, model=run.model, layer=run.layer)))


def _ito_table(run_dir: Path) -> None:
    rows = []
    for arch, shift in (("gated", 0.02), ("baseline", 0.0)):
        for coef in (1.0, 2.0):
            base = dict(model="gemma-3-270m", layer=2, site="resid", architecture=arch, coefficient=coef, seed=0)
            base.update(loss_recovered_se=0.01, l0_se=0.5)
            rows.append(dict(base, k=0, l0=20 / coef, loss_recovered=0.8 + shift))
            for k in (4, 8):
                rows.append(dict(base, k=k, l0=k - 0.5, loss_recovered=0.6 + shift + 0.02 * k))
    out = run_dir / paths.TABLES / "inference_opt" / "gemma-3-270m_L2_resid.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out, index=False)


def test_partial_run_gets_its_tables_figures_and_missing_list(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "runs" / "r"
    _finish(run, skip=("mlp", "baseline", 2.0))
    _ito_table(run)
    stale = tmp_path / "out" / "tables" / "old.csv"  # the tables folder is replaced, not merged
    stale.parent.mkdir(parents=True)
    stale.write_text("x\n")
    main(["run.yaml", "--run-dir", "runs/r", "--tables", "out/tables", "--figures", "out/figures"])
    assert not stale.exists()
    metrics = pd.read_csv(tmp_path / "out/tables/metrics.csv")
    assert len(metrics) == 7
    missing = pd.read_csv(tmp_path / "out/tables/missing_runs.csv")
    assert list(zip(missing.site, missing.architecture, missing.coefficient, strict=True)) == [("mlp", "baseline", 2.0)]
    assert (tmp_path / "out/tables/inference_opt/gemma-3-270m_L2_resid.csv").exists()
    assert (tmp_path / "out/tables/training_health.csv").exists()  # empty here: no loss curves
    figures = {p.name for p in (tmp_path / "out/figures").iterdir()}
    assert {
        "fig1_pareto_headline.png",
        "fig10_inference_opt_decoders.png",
        "fig11_inference_opt_frontiers.pdf",
    } <= figures
    assert Path.cwd() == tmp_path  # back where it started


def test_nothing_finished_is_an_error_that_points_at_the_missing_list(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "runs" / "r").mkdir(parents=True)
    with pytest.raises(SystemExit, match="no SAE of run.yaml has finished"):
        main(["run.yaml", "--run-dir", "runs/r", "--tables", "out/tables", "--figures", "out/figures"])
    assert len(pd.read_csv(tmp_path / "out/tables/missing_runs.csv")) == 8


def test_prior_tables_keep_the_earlier_machines_rows_and_this_run_replaces_its_own(tmp_path, monkeypatch):
    """A run continued on a machine without its earlier run folder: the committed tables are the prior."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    _finish(tmp_path / "runs" / "first", skip=("mlp", "baseline", 2.0))
    _ito_table(tmp_path / "runs" / "first")
    argv = ["run.yaml", "--tables", "out/tables", "--figures", "out/figures"]
    main([*argv, "--run-dir", "runs/first"])
    before = pd.read_csv(tmp_path / "out/tables/metrics.csv")

    second = tmp_path / "runs" / "second"
    _finish(second, skip=None)
    for run in load_config(CONFIG).runs():  # keep only the missing SAE and one rerun of a finished one
        path = second / paths.fill(paths.METRICS, run)
        if (run.site, run.architecture, run.coefficient) == ("resid", "gated", 1.0):
            path.write_text(json.dumps(dict(json.loads(path.read_text()), loss_recovered=0.123)))
        elif (run.site, run.architecture, run.coefficient) != ("mlp", "baseline", 2.0):
            path.unlink()
    main([*argv, "--run-dir", "runs/second", "--prior", "out/tables"])

    after = pd.read_csv(tmp_path / "out/tables/metrics.csv")
    assert len(after) == 8 and pd.read_csv(tmp_path / "out/tables/missing_runs.csv").empty
    key = ["site", "architecture", "coefficient"]
    merged = after.merge(before, on=key, how="left", suffixes=("", "_before"))
    rerun = (merged.site == "resid") & (merged.architecture == "gated") & (merged.coefficient == 1.0)
    added = (merged.site == "mlp") & (merged.architecture == "baseline") & (merged.coefficient == 2.0)
    assert merged.loc[rerun, "loss_recovered"].tolist() == [0.123]
    kept = merged[~rerun & ~added]
    assert len(kept) == 6 and (kept["loss_recovered"] == kept["loss_recovered_before"]).all()
    assert (tmp_path / "out/tables/inference_opt/gemma-3-270m_L2_resid.csv").exists()  # kept from the prior
    verdicts = pd.read_csv(tmp_path / "out/tables/verdicts.csv")
    assert set(verdicts["Site"]) == {"resid", "mlp"}  # derived tables rewritten from all eight


def test_missing_targets_name_the_metrics_files_the_prior_table_lacks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    _finish(tmp_path / "runs" / "first", skip=("mlp", "baseline", 2.0))
    main(["run.yaml", "--run-dir", "runs/first", "--tables", "out/tables", "--figures", "out/figures"])
    capsys.readouterr()
    main(["run.yaml", "--missing-targets", "out/tables"])
    assert capsys.readouterr().out.split() == ["results/gemma-3-270m/wiki-offline/L2/mlp/baseline/c2/s0/metrics.json"]
