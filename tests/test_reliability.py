"""Crash safety, bitwise reruns and failure isolation, through Snakemake on the tiny config.

All three tests run the real DAG on config/test/tiny.yaml (real Gemma-3-270M, layer 2, three
sites, gated + baseline):

* an uninterrupted run, repeated from scratch, gives a byte-identical metrics.csv;
* a run SIGKILLed (the whole process group: Snakemake and its jobs) at five points — during
  cache_activations, reference_ce, train (after a checkpoint was written), evaluate and the
  figures, in whatever order Snakemake reaches them — and restarted each time with ``--unlock`` then ``--rerun-incomplete``, completes
  with a metrics.csv byte-identical to the uninterrupted run's, and training resumes from its
  checkpoint instead of from zero;
* with a NaN injected into one architecture's training (an absurd learning rate), ``--keep-going``
  leaves every other SAE's outputs intact, the failing jobs name run, step and loss term, and the
  partial aggregate lists the missing runs instead of crashing or dropping them silently.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_cli import ENV, REPO
from snakemake_cli import SNAKEMAKE as _SNAKEMAKE

from saerepro.activations import open_cache

SNAKEMAKE = [*_SNAKEMAKE, "--cores", "2"]

pytestmark = pytest.mark.slow

#: The tiny config trains 4096 tokens in ~0.2 s, too fast to kill after a checkpoint; 32768 tokens
#: (128 steps, a checkpoint every 4) take a few seconds per SAE. Every run here uses it.
LONGER_TRAINING = {"train.tokens": 32768}


def _prepared_resources() -> Path:
    """The shared resources/ with Gemma and the tiny config's corpus prepared (as the e2e test does)."""
    resources = REPO / "resources"
    subprocess.run(
        [
            *SNAKEMAKE,
            "prepare_corpus",
            "--configfile",
            str(REPO / "config/test/tiny.yaml"),
            "--config",
            f"resources_dir={resources}",
            "--rerun-triggers",
            "mtime",
        ],
        cwd=REPO,
        env=ENV,
        check=True,
        capture_output=True,
        timeout=1800,
    )
    return resources


def _isolated_config(tmp_path: Path, **overrides) -> Path:
    """The tiny config with its own resources dir: shared weights and corpus, a fresh cache."""
    shared = _prepared_resources()
    resources = tmp_path / "resources"
    resources.mkdir()
    for name in ("models", "gguf", "corpus"):
        if (shared / name).exists():
            (resources / name).symlink_to(shared / name)
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw["resources_dir"] = str(resources)
    for dotted, value in {**LONGER_TRAINING, **overrides}.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(workdir: Path, config: Path, *extra: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    workdir.mkdir(exist_ok=True)
    return subprocess.run(
        [*SNAKEMAKE, "--configfile", str(config), "--rerun-incomplete", *extra],
        cwd=workdir,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # a checkpoint or partial file renamed away between glob and stat
        return -1.0


class KillPoint:
    """A moment inside one kind of job *of the current run*: a file matching ``pattern`` (under the
    test's tmp folder) modified since the run started, ``delay`` seconds after first seen."""

    def __init__(self, name: str, pattern: str, delay: float = 0.0):
        self.name, self.pattern, self.delay = name, pattern, delay
        self.first_seen: float | None = None

    def reached(self, root: Path, run_start: float) -> bool:
        if self.first_seen is None:
            if any(_mtime(p) >= run_start for p in root.glob(self.pattern)):
                self.first_seen = time.time()
            else:
                return False
        return time.time() - self.first_seen >= self.delay


def _run_until_killed(
    workdir: Path, config: Path, root: Path, points: list[KillPoint], timeout: float = 900
) -> KillPoint | None:
    """Start the workflow; SIGKILL its whole process group (Snakemake and every job) as soon as one
    of ``points`` is reached and return it, or None if the workflow ended first."""
    for point in points:
        point.first_seen = None
    start = time.time() - 0.01
    proc = subprocess.Popen(
        [*SNAKEMAKE, "--configfile", str(config), "--rerun-incomplete"],
        cwd=workdir,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    hit = None
    try:
        while hit is None and proc.poll() is None:
            if time.time() - start > timeout:
                raise AssertionError("the workflow neither finished nor reached a kill point")
            hit = next((p for p in points if p.reached(root, start)), None)
            time.sleep(0.02)
    finally:
        if hit is not None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return hit


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> bytes:
    """metrics.csv of one uninterrupted run from scratch (fresh cache, fresh results)."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    config = _isolated_config(tmp)
    result = _run(tmp / "work", config)
    assert result.returncode == 0, result.stderr[-4000:]
    return (tmp / "work/results/tables/metrics.csv").read_bytes()


def test_rerun_from_scratch_is_byte_identical(uninterrupted, tmp_path):
    config = _isolated_config(tmp_path)
    result = _run(tmp_path / "work", config)
    assert result.returncode == 0, result.stderr[-4000:]
    again = (tmp_path / "work/results/tables/metrics.csv").read_bytes()
    assert again == uninterrupted
    table = pd.read_csv(tmp_path / "work/results/tables/metrics.csv")
    assert len(table) == 6 and table["config_hash"].nunique() == 1
    assert table["cache_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()


def test_killed_at_five_points_resumes_to_identical_metrics(uninterrupted, tmp_path):
    config = _isolated_config(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "resources/cache"
    # Snakemake's job order is not fixed, so every run is killed at whichever of the remaining
    # points comes first; each kill reruns the jobs it interrupted, so every point comes up.
    remaining = [
        KillPoint("during cache_activations", "resources/cache/**/.activations.npy.partial", 1.0),
        KillPoint("during reference_ce", "work/logs/reference_ce/**/*.log", 2.0),
        KillPoint("during train, after a checkpoint", "work/results/**/checkpoint.pt"),
        KillPoint("during evaluate", "work/logs/evaluate/**/*.log", 1.0),
        KillPoint("during figures", "work/logs/figures.log", 0.5),
    ]
    survived = []
    while remaining:
        hit = _run_until_killed(work, config, tmp_path, remaining)
        assert hit is not None, f"the workflow finished before these kill points: {[p.name for p in remaining]}"
        remaining.remove(hit)
        survived.append(hit.name)
        unlock = _run(work, config, "--unlock")
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        # a cache is complete only once its meta.json (written last) exists, and then it verifies
        for array in cache.glob("**/activations.npy"):
            if (array.parent / "meta.json").exists():
                open_cache(array.parent, verify=True)
    result = _run(work, config)
    assert result.returncode == 0, result.stderr[-4000:]
    assert len(survived) == 5, survived
    assert (work / "results/tables/metrics.csv").read_bytes() == uninterrupted
    train_logs = "\n".join(p.read_text() for p in (work / "logs/train").rglob("*.log"))
    assert "resumed " in train_logs and "from its checkpoint at step" in train_logs
    assert not list((work / "results").rglob("checkpoint.pt")), "finished runs delete their checkpoint"


def test_keep_going_isolates_a_nan_failure_and_lists_the_missing_runs(tmp_path):
    # Adam at lr 1e12 overflows the baseline's weights within a few steps: a genuine non-finite loss.
    config = _isolated_config(tmp_path, **{"architectures.baseline.lr": 1.0e12})
    work = tmp_path / "work"
    result = _run(work, config, "--keep-going")
    assert result.returncode != 0
    results = work / "results/gemma-3-270m/wiki-offline/L2"
    for site in ("resid", "mlp", "attn"):
        assert (results / site / "gated/c1/s0/metrics.json").exists()
        assert not (results / site / "baseline/c1/s0/train_info.json").exists()
        log = (work / f"logs/train/gemma-3-270m/wiki-offline/L2/{site}/baseline/c1/s0.log").read_text()
        assert "NonFiniteLossError" in log and "non-finite loss at step" in log and "loss term" in log
    table = pd.read_csv(work / "results/tables/metrics.csv")
    assert set(table["architecture"]) == {"gated"} and len(table) == 3
    assert table.select_dtypes("number").notna().all().all()
    missing = pd.read_csv(work / "results/tables/missing_runs.csv")
    assert sorted(missing["site"]) == ["attn", "mlp", "resid"]
    assert set(missing["architecture"]) == {"baseline"} and set(missing["stage_not_done"]) == {"train"}
    assert "have no metrics" in (work / "logs/aggregate.log").read_text()
    assert len(list((work / "figures").glob("*.png"))) >= 7
