"""Dry-runs of the paper configs: the DAG builds with the default profile, and with the SLURM
profile every submitted job carries its resources, without any SLURM command being run."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from saerepro.config import load_config
from saerepro.costs import estimate

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((REPO / "config" / "paper").glob("*.yaml"))
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
GPU_RULES = {"cache_activations", "reference_ce", "train", "evaluate"}
#: Target-only rules: no action, never submitted.
TARGET_RULES = {"all", "cached"}
SLURM_COMMANDS = ("sbatch", "srun", "sinfo", "squeue", "sacct", "sacctmgr", "scontrol", "scancel")


def dry_run(config: Path, tmp_path: Path, *extra: str, env: dict | None = None) -> str:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "-n",
        "--configfile",
        str(config),
        "--config",
        f"resources_dir={tmp_path}/resources",
        *extra,
    ]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    result = subprocess.run(cmd, cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def job_count(output: str) -> int:
    match = re.search(r"^total\s+(\d+)\s*$", output, re.MULTILINE)
    assert match, "no job stats in the dry-run output"
    return int(match.group(1))


def jobs_with_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job the dry-run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        line = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        resources = dict(item.split("=", 1) for item in line.group(1).split(", ")) if line else {}
        jobs.append((head.group(1), resources))
    return jobs


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_config_dry_runs_with_the_default_profile(config, tmp_path):
    output = dry_run(config, tmp_path, "--cores", "2")
    cfg = load_config(config)
    # The DAG has exactly the jobs the cost estimate counts: one train and one evaluate per SAE.
    assert job_count(output) == estimate(cfg).jobs == 2 * len(cfg.runs()) + 7
    assert not (tmp_path / "resources").exists(), "a dry run creates nothing"


def test_slurm_profile_covers_every_rule():
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", smk.read_text(), re.MULTILINE))
    assert rules and rules <= set(profile["set-resources"]) and rules <= set(profile["set-threads"])
    assert profile["executor"] == "slurm" and profile["rerun-incomplete"] is True
    assert profile["retries"] >= 1 and profile["latency-wait"] >= 60 and profile["jobs"] >= 1
    for key in ("slurm_partition", "runtime", "mem_mb"):
        assert key in profile["default-resources"]


def test_slurm_dry_run_gives_every_job_resources_and_runs_no_slurm_command(tmp_path):
    # Stand-ins for every SLURM client: each records its call and fails, so the dry run must not
    # need any of them (sbatch above all).
    fake_bin = tmp_path / "fake-slurm-bin"
    fake_bin.mkdir()
    calls = tmp_path / "slurm-calls.log"
    for name in SLURM_COMMANDS:
        script = fake_bin / name
        script.write_text(f'#!/bin/sh\necho {name} "$@" >> {calls}\nexit 1\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    config = REPO / "config" / "paper" / "pythia-2.8b.yaml"
    output = dry_run(
        config, tmp_path, "--profile", str(SLURM_PROFILE), env={"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    )
    # The plugin probes `scontrol show config` once (MinJobAge, MaxArraySize) and falls back to
    # defaults when that fails, as every stand-in here does; nothing is submitted or queried.
    probes = calls.read_text().splitlines() if calls.exists() else []
    assert set(probes) <= {"scontrol show config"}, probes
    assert f"Using profile {SLURM_PROFILE}" in output

    jobs = jobs_with_resources(output)
    assert len(jobs) == job_count(output) == estimate(load_config(config)).jobs
    submitted = [(rule, res) for rule, res in jobs if rule not in TARGET_RULES]
    assert {rule for rule, _ in submitted} == {
        "prepare_model",
        "prepare_corpus",
        "cache_activations",
        "reference_ce",
        "train",
        "evaluate",
        "aggregate",
        "figures",
    }
    for rule, res in submitted:
        for key in ("slurm_partition", "runtime", "mem_mb", "cpus_per_task"):
            assert key in res, f"{rule} has no {key}: {res}"
        assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0
        if rule in GPU_RULES:
            assert res.get("gpu") == "1" and res["slurm_partition"] == "gpu", (rule, res)
        else:
            assert "gpu" not in res and res["slurm_partition"] == "cpu", (rule, res)
    # The longest train job of the config fits its time limit with headroom at the assumed speed.
    cfg = load_config(config)
    train_minutes = min(int(res["runtime"]) for rule, res in submitted if rule == "train")
    longest = estimate(cfg).gpu_hours_by_stage["cached"]["train"] * 60 / len(cfg.runs())
    assert train_minutes > longest


def test_workstation_profile_serialises_gpu_jobs(tmp_path):
    profile = REPO / "workflow" / "profiles" / "workstation"
    assert yaml.safe_load((profile / "config.yaml").read_text())["resources"] == ["gpu=1"]
    output = dry_run(REPO / "config" / "paper" / "gelu-1l.yaml", tmp_path, "--profile", str(profile))
    jobs = [(rule, res) for rule, res in jobs_with_resources(output) if rule not in TARGET_RULES]
    assert {rule for rule, _ in jobs} >= GPU_RULES
    for rule, res in jobs:
        assert (res.get("gpu") == "1") == (rule in GPU_RULES), (rule, res)
