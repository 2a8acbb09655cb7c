"""Dry-runs of the paper configs: the DAG builds with the default profile and plans the pilots
first, and with the SLURM profile every submitted job carries its resources, without any SLURM
command being run."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from saerepro.config import DERIVED_ARCHITECTURES, ConfigError, load_config
from saerepro.costs import estimate

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = sorted((REPO / "config" / "paper").glob("*.yaml"))
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
GPU_RULES = {"cache_activations", "reference_ce", "pilot", "train", "evaluate"}
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


def rule_counts(output: str) -> dict[str, int]:
    """Jobs per rule, from the dry run's job stats table."""
    table = output.split("Job stats:", 1)[1].split("\ntotal", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE)}


def listed_jobs(output: str, field: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, its ``field`` line as a mapping: resources, wildcards) of every job the dry run lists;
    checkpoint jobs (``pilot``) included."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", output):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if not head:
            continue
        line = re.search(rf"^\s+{field}: (.*)$", block, re.MULTILINE)
        values = dict(item.split("=", 1) for item in line.group(1).split(", ")) if line else {}
        jobs.append((head.group(1), values))
    return jobs


def jobs_with_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job the dry-run lists."""
    return listed_jobs(output, "resources")


def without_pilot(config: Path, tmp_path: Path) -> Path:
    """``config`` with its pilot section removed: the static grids, train and evaluate jobs listed."""
    raw = yaml.safe_load(config.read_text())
    raw.pop("pilot")
    path = tmp_path / f"{config.stem}-no-pilot.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_config_dry_run_plans_the_pilots_first(config, tmp_path):
    output = dry_run(config, tmp_path, "--cores", "2")
    cfg = load_config(config)
    est = estimate(cfg)
    counts = rule_counts(output)
    # One pilot per (layer, site, piloted architecture); every architecture that takes
    # coefficients is piloted, a derived one (baseline_rescale_shift) follows its parent's.
    piloted = [name for name in cfg.architectures if name not in DERIVED_ARCHITECTURES]
    assert cfg.pilot is not None and piloted and all(cfg.piloted(name) for name in piloted)
    assert counts["pilot"] == len(cfg.hook_points()) * len(piloted) == len(cfg.pilot_points()) == est.pilots
    assert "DAG of jobs will be updated after completion" in output
    # No SAE of a piloted architecture (or one derived from it) before its pilot chose its grid:
    # here that is every SAE, so no train or evaluate job yet.
    sae_jobs = [(rule, w) for rule, w in listed_jobs(output, "wildcards") if rule in ("train", "evaluate")]
    assert not any(cfg.piloted(DERIVED_ARCHITECTURES.get(w["architecture"], w["architecture"])) for _, w in sae_jobs)
    assert "train" not in counts and "evaluate" not in counts and cfg.runs() == []
    # The DAG has exactly the jobs the cost estimate expects of a dry run before the pilots ran ...
    assert job_count(output) == est.dry_run_jobs == counts["pilot"] + 9
    # ... and once they chose, one train and one evaluate per SAE: as many SAEs as the grids the
    # probes are anchored on (pilot.n_coefficients = their length).
    static = dataclasses.replace(cfg, pilot=None).runs()
    assert est.saes == len(static) and est.jobs == 2 * len(static) + 9 + est.pilots
    assert est.gpu_hours_by_stage["cached"]["pilot"] > 0 and est.probes == est.pilots * cfg.pilot.n_probes
    assert not (tmp_path / "resources").exists(), "a dry run creates nothing"


@pytest.mark.parametrize("config", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_config_on_the_fly_needs_its_pilot_removed(config, tmp_path):
    # The pilot reads the activation cache: on the fly, the config is refused until the pilot
    # section goes, and the SAEs then train the static grids as they stand.
    raw = yaml.safe_load(config.read_text())
    raw["activations"]["mode"] = "on_the_fly"
    with pytest.raises(ConfigError, match="pilot"):
        load_config(raw)
    raw.pop("pilot")
    path = tmp_path / "on-the-fly.yaml"
    path.write_text(yaml.safe_dump(raw))
    counts = rule_counts(dry_run(path, tmp_path, "--cores", "2"))
    cfg = load_config(raw)
    assert "pilot" not in counts and "cache_activations" not in counts
    assert counts["evaluate"] == len(cfg.runs()) == len(dataclasses.replace(load_config(config), pilot=None).runs())
    assert sum(n for rule, n in counts.items() if rule.startswith("train_on_the_fly_")) == len(cfg.hook_points())


def test_slurm_profile_covers_every_rule():
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^\s*(?:rule|checkpoint) (\w+):", smk.read_text(), re.MULTILINE))
    assert {"pilot", "train", "cache_activations"} <= rules  # indented under `if`, a checkpoint
    assert rules and rules <= set(profile["set-resources"]) and rules <= set(profile["set-threads"])
    assert profile["executor"] == "slurm" and profile["rerun-incomplete"] is True
    assert profile["retries"] >= 1 and profile["latency-wait"] >= 60 and profile["jobs"] >= 1
    for key in ("slurm_partition", "runtime", "mem_mb"):
        assert key in profile["default-resources"]
    # The longest train and pilot job of any paper config fits its time limit with headroom at the
    # assumed speed (a pilot cannot resume, so it needs the headroom most).
    estimates = [estimate(load_config(path)) for path in PAPER_CONFIGS]
    for rule in ("train", "pilot"):
        longest = max(e.longest_job_hours[rule] for e in estimates)
        assert int(profile["set-resources"][rule]["runtime"]) > 2 * longest * 60, rule


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
    env = {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    est = estimate(load_config(config))
    # The paper config lists its pilots first; the train and evaluate jobs the pilots add later
    # are those of the same config without its pilot section (the grids differ, the rules do not).
    runs = {
        "pilots first": (config, est.dry_run_jobs, {"pilot"}),
        "after the pilots": (without_pilot(config, tmp_path), est.jobs - est.pilots, {"train", "evaluate"}),
    }
    for label, (path, n_jobs, sweep_rules) in runs.items():
        output = dry_run(path, tmp_path, "--profile", str(SLURM_PROFILE), env=env)
        # The plugin probes `scontrol show config` once (MinJobAge, MaxArraySize) and falls back to
        # defaults when that fails, as every stand-in here does; nothing is submitted or queried.
        probes = calls.read_text().splitlines() if calls.exists() else []
        assert set(probes) <= {"scontrol show config"}, probes
        assert f"Using profile {SLURM_PROFILE}" in output

        jobs = jobs_with_resources(output)
        assert len(jobs) == job_count(output) == n_jobs, label
        submitted = [(rule, res) for rule, res in jobs if rule not in TARGET_RULES]
        assert {rule for rule, _ in submitted} == {
            "prepare_model",
            "prepare_corpus",
            "cache_activations",
            "reference_ce",
            "aggregate",
            "figures",
            "toy_tables",
            "toy_figures",
        } | sweep_rules, label
        for rule, res in submitted:
            for key in ("slurm_partition", "runtime", "mem_mb", "cpus_per_task"):
                assert key in res, f"{rule} has no {key}: {res}"
            assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0
            if rule in GPU_RULES:
                assert res.get("gpu") == "1" and res["slurm_partition"] == "gpu", (rule, res)
            else:
                assert "gpu" not in res and res["slurm_partition"] == "cpu", (rule, res)


def test_workstation_profile_serialises_gpu_jobs(tmp_path):
    profile = REPO / "workflow" / "profiles" / "workstation"
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    assert settings["resources"] == ["gpu=1"]
    assert {rule for rule, res in settings["set-resources"].items() if res.get("gpu") == 1} == GPU_RULES
    output = dry_run(REPO / "config" / "paper" / "gelu-1l.yaml", tmp_path, "--profile", str(profile))
    jobs = [(rule, res) for rule, res in jobs_with_resources(output) if rule not in TARGET_RULES]
    # The pilots come first; train and evaluate once they have chosen (the same set-resources).
    assert {rule for rule, _ in jobs} >= GPU_RULES - {"train", "evaluate"}
    for rule, res in jobs:
        assert (res.get("gpu") == "1") == (rule in GPU_RULES), (rule, res)
