"""The Snakemake DAG: dry-runs, config errors before any job, and a real end-to-end run.

The end-to-end test runs the tiny config (config/test/tiny.yaml) on the real Gemma-3-270M: one
layer, all three sites, a few thousand tokens, through every rule. Weights and corpus are
prepared on first use under the repository's resources/ (shared with `make repro`).
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from snakemake_cli import REPO, snakemake


def test_dry_run_lists_the_whole_dag_for_the_default_config(tmp_path):
    result = snakemake(
        "-n",
        "--cores",
        "2",
        "--configfile",
        str(REPO / "config/config.yaml"),
        "--config",
        f"resources_dir={tmp_path}/resources",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    for rule in (
        "prepare_model",
        "prepare_corpus",
        "cache_activations",
        "reference_ce",
        "train",
        "evaluate",
        "aggregate",
        "figures",
    ):
        assert rule in out, f"{rule} missing from the dry run"


def test_every_rule_takes_the_prepared_model_as_ancient():
    """prepared.json rewritten by another working directory that shares resources/ must not make
    the corpus, caches and SAEs built from it out of date (Snakemake compares its mtime with the
    outputs recorded here): every rule that reads it takes it as ancient()."""
    uses = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for line in smk.read_text().splitlines():
            if "rules.prepare_model.output" in line:
                uses.append((smk.name, line.strip()))
    assert len(uses) >= 4, uses  # prepare_corpus, cache_activations, reference_ce, on-the-fly training
    assert all("ancient(rules.prepare_model.output)" in line for _, line in uses), uses


def test_every_figure_the_workflow_writes_has_a_report_caption():
    """`snakemake --report` captions each figure from workflow/report/<stem>.rst: a figure rule whose
    PNG has no caption file breaks the report, and one without report() leaves its figure out."""
    from saerepro.plotting import FIGURES

    rules = "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    written = set(re.findall(r"P\.FIGURES\}/(\w+)\.png", rules)) | set(FIGURES)
    captioned = set(re.findall(r'caption="\.\./report/(\w+)\.rst"', rules)) | set(FIGURES)
    assert "fig10_inference_opt_decoders" in written, written
    assert written <= captioned, sorted(written - captioned)
    missing = [s for s in sorted(written) if not (REPO / "workflow" / "report" / f"{s}.rst").is_file()]
    assert not missing, missing


@pytest.mark.parametrize(
    "change,key",
    [
        ({"layers": [40]}, "layers[0]"),
        ({"sites": ["resid", "embed"]}, "sites.1"),
        ({"bogus_key": 1}, "bogus_key"),
        ({"train": {"tokens": 0}}, "train.tokens"),
    ],
)
def test_bad_config_stops_snakemake_before_any_job(tmp_path, change, key):
    import yaml

    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw.update(change)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = snakemake("--cores", "1", "--configfile", str(bad), cwd=tmp_path)
    assert result.returncode != 0
    assert "ConfigError" in result.stderr and key in result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_tiny_config_runs_end_to_end_on_real_gemma(tmp_path):
    resources = REPO / "resources"
    result = snakemake(
        "--cores",
        "2",
        "--configfile",
        str(REPO / "config/test/tiny.yaml"),
        "--config",
        f"resources_dir={resources}",
        cwd=tmp_path,
        timeout=1800,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])

    # The reference CE of a real model on real text: far below ln(262144) = 12.5.
    for site in ("resid", "mlp", "attn"):
        ref = json.loads((tmp_path / f"results/gemma-3-270m/wiki-offline/L2/{site}/reference_ce.json").read_text())
        assert 2.0 < ref["ce_clean"] < 4.5, ref
        assert ref["ce_zero"] > ref["ce_clean"]

    table = pd.read_csv(tmp_path / "results/tables/metrics.csv")
    assert len(table) == 6  # gated + baseline at 3 sites
    assert set(table["site"]) == {"resid", "mlp", "attn"}
    assert table[["l0", "loss_recovered", "gamma", "nmse"]].notna().all().all()
    assert (table["l0"] > 0).all()
    for png in (tmp_path / "figures").glob("*.png"):
        assert png.stat().st_size > 5_000
    assert len(list((tmp_path / "figures").glob("*.png"))) >= 7
    assert len(list((tmp_path / "logs").rglob("*.log"))) >= 10  # every job logged


def test_default_config_is_found_beside_the_snakefile_from_any_directory(tmp_path):
    """`snakemake -d <elsewhere>` with no --configfile plans the default sweep (the config is looked
    up beside the Snakefile, not in the working directory)."""
    result = snakemake(
        "-n",
        "--cores",
        "1",
        "-d",
        str(tmp_path / "wd"),
        "--config",
        f"resources_dir={tmp_path}/resources",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reference_ce" in result.stdout + result.stderr


def test_a_non_default_config_run_in_the_repository_root_writes_under_runs(tmp_path):
    """Run from a copy of the repository's root: the tiny config's jobs are planned under
    runs/tiny/, so the committed results/ and figures/ cannot be overwritten."""
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(
        REPO,
        root,
        ignore=shutil.ignore_patterns(".venv", ".git", "resources", "runs", "results", "figures", ".snakemake", "logs"),
    )
    result = subprocess_snakemake(
        root,
        "-n",
        "--cores",
        "1",
        "--configfile",
        "config/test/tiny.yaml",
        "--config",
        f"resources_dir={tmp_path}/resources",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "writes to runs/tiny/" in out
    assert not (root / "results").exists() and (root / "runs" / "tiny").is_dir()


def subprocess_snakemake(root, *args):
    import subprocess
    import sys

    from snakemake_cli import ENV

    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(root / "Snakefile"), *args],
        cwd=root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
