"""saerepro.manifest: promoting a finished run writes the committed tables, figures and manifest;
a finished run's summary names its verdicts and paths."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from saerepro.manifest import CommittedRun, promote, read_manifest, run_summary
from saerepro.verdicts import write_verdicts
from tests.synthetic import synthetic_metrics_table


def _finished_run(root: Path) -> Path:
    run = root / "runs" / "demo"
    tables = run / "results" / "tables"
    tables.mkdir(parents=True)
    df = synthetic_metrics_table(
        layers=(6,), sites=("resid",), architectures=("gated", "baseline"), coefficients=(1, 2, 4)
    )
    df = df.assign(git_commit="0" * 40, cpu_model="Some CPU", cpu_capability="AVX512")
    df.to_csv(tables / "metrics.csv", index=False)
    pd.DataFrame({"train_seconds": [10.0, 20.0], "eval_seconds": [5.0, 5.0]}).to_csv(
        tables / "timings.csv", index=False
    )
    write_verdicts(df, tables / "verdicts")
    (run / "figures").mkdir()
    (run / "figures" / "fig1_pareto_headline.png").write_bytes(b"png")
    (run / "wall_seconds").write_text("123\n")
    return run


def test_a_run_finished_in_several_make_calls_sums_them_and_lists_each(tmp_path):
    run_dir = _finished_run(tmp_path)
    (run_dir / "wall_seconds").write_text("3918\n640\n")  # the extras run: 38 SAEs, then 7 added
    run = CommittedRun("demo", "results/demo/tables", "config/config.yaml", "figures/demo", "repro")
    promote(run, repo=tmp_path)
    manifest = read_manifest(run, tmp_path)
    assert manifest["wall_seconds"] == 4558.0 and manifest["wall_calls"] == [3918.0, 640.0]


def test_promote_copies_the_run_and_writes_its_manifest(tmp_path):
    _finished_run(tmp_path)
    run = CommittedRun("demo", "results/demo/tables", "config/config.yaml", "figures/demo", "repro")
    path = promote(run, repo=tmp_path)
    assert path == tmp_path / "results/demo/tables/manifest.json"
    assert (tmp_path / "figures/demo/fig1_pareto_headline.png").read_bytes() == b"png"
    manifest = read_manifest(run, tmp_path)
    assert manifest["n_saes"] == 6 and manifest["wall_seconds"] == 123.0 and manifest["job_seconds"] == 40.0
    assert "wall_calls" not in manifest  # one make call: its seconds are the wall time
    assert manifest["commits"] == {"0" * 40: 6} and manifest["machines"] == {"Some CPU (AVX512)": 6}
    assert json.loads(path.read_text()) == manifest


def test_a_finished_run_ends_with_its_verdicts_and_absolute_paths(tmp_path):
    run = _finished_run(tmp_path)
    text = run_summary(run)
    assert "| gemma-3-270m |" in text and "C2" in text
    assert f"tables in {run.resolve()}/results/tables" in text and f"figures in {run.resolve()}/figures" in text
    assert run_summary(tmp_path / "nothing-yet") == ""
