"""The tiny config through a real SLURM cluster with `snakemake --executor slurm`.

Needs a running cluster with a partition `debug`, such as the one-node cluster that
`workflow/slurm-local/start.sh` starts on this machine (Debian: `apt-get install slurm-wlm munge`),
and uses the profile `workflow/profiles/slurm-local`. Skips, saying why, where SLURM is not
installed or does not answer; it never starts daemons itself.

Every job goes through `sbatch` (and `srun` inside it). The test checks the outputs (metrics
table, figures) and that each job really ran as a SLURM job: one SLURM log per job under
.snakemake/slurm_logs, named by its SLURM job id, whose Snakemake ran with the plugin's
`slurm-jobstep` executor, and the ids SLURM still remembers are COMPLETED under this run's name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow/profiles/slurm-local"
PARTITION = "debug"  # the profile's slurm_partition
# reference_ce, 6 x train, 6 x evaluate, aggregate, figures; `all` is a local rule.
EXPECTED_JOBS = {"reference_ce": 1, "train": 6, "evaluate": 6, "aggregate": 1, "figures": 1}


def _slurm_cpus_or_skip() -> int:
    """CPUs of the partition's usable node, or skip with the reason SLURM cannot be used."""
    missing = [cmd for cmd in ("sbatch", "sinfo", "squeue") if shutil.which(cmd) is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} not on PATH); see "
            "workflow/slurm-local/start.sh for a one-node cluster on this machine"
        )
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="snakemake-executor-plugin-slurm is not installed")
    try:
        info = subprocess.run(
            ["sinfo", "-h", "-p", PARTITION, "-o", "%t %c"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.skip(
            "SLURM is installed but not responding (sinfo timed out after 20 s); "
            "start it with workflow/slurm-local/start.sh"
        )
    if info.returncode != 0:
        pytest.skip(
            f"SLURM is installed but not responding (sinfo: {info.stderr.strip()}); "
            "start it with workflow/slurm-local/start.sh"
        )
    usable = [
        line.split()
        for line in info.stdout.splitlines()
        if line.split() and line.split()[0].rstrip("*~#$@").startswith(("idle", "mix", "alloc"))
    ]
    if not usable:
        pytest.skip(
            f"SLURM answers but partition {PARTITION!r} has no usable node "
            f"(sinfo: {info.stdout.strip() or 'no such partition'})"
        )
    return max(int(cpus) for _, cpus in usable)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_tiny_config_runs_through_slurm(tmp_path):
    cpus = _slurm_cpus_or_skip()

    # sbatch passes this environment on (--export=ALL): the jobs run this interpreter
    # (the plugin's job command is `sys.executable -m snakemake ...`) and import this checkout.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    env.pop("SLURM_JOB_ID", None)  # not from inside another SLURM job
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--workflow-profile",
        str(PROFILE),
        "--cores",
        str(min(cpus, 2)),  # `threads: workflow.cores` must fit on the node
        "--configfile",
        str(REPO / "config/test/tiny.yaml"),
        "--config",
        f"resources_dir={REPO / 'resources'}",
        # The shared resources/ (model, corpus, cache) are reused as they are: a checkout's
        # scripts are often newer than them, which the default `code` trigger would take as a
        # reason to rebuild them all.
        "--rerun-triggers",
        "mtime",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3500)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]

    # Real outputs, as in test_workflow's local end-to-end run.
    table = pd.read_csv(tmp_path / "results/tables/metrics.csv")
    assert len(table) == 6  # gated + baseline at 3 sites
    assert set(table["site"]) == {"resid", "mlp", "attn"}
    assert table[["l0", "loss_recovered", "gamma", "nmse"]].notna().all().all()
    assert (table["l0"] > 0).all()
    pngs = list((tmp_path / "figures").glob("*.png"))
    assert len(pngs) >= 7 and all(png.stat().st_size > 5_000 for png in pngs)

    # Every job went through sbatch: Snakemake reports a SLURM job id for each...
    submitted = re.findall(
        r"has been submitted with SLURM jobid (\d+) "
        r"\(log: (\S+)/rule_(\w+)/",
        out,
    )
    per_rule = {rule: sum(1 for *_, r in submitted if r == rule) for rule in EXPECTED_JOBS}
    assert per_rule == EXPECTED_JOBS, out[-6000:]
    run_name = re.search(r"SLURM run ID: (\S+)", out).group(1)

    # ... each job left a SLURM log named by that id, written by Snakemake running inside the
    # SLURM job with the plugin's jobstep executor ...
    logdir = tmp_path / ".snakemake/slurm_logs"
    logs = {p.stem: p for p in logdir.rglob("*.log")}
    ids = {jobid for jobid, *_ in submitted}
    assert ids <= set(logs), (ids, sorted(logs))
    for jobid, _, rule in submitted:
        text = logs[jobid].read_text()
        assert f"rule_{rule}" in str(logs[jobid].relative_to(logdir))
        assert "--executor slurm-jobstep" in text and f"(Rule: {rule})" in text, text[-2000:]

    # ... and SLURM knows the jobs it still remembers (MinJobAge) as COMPLETED under this run.
    squeue = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", run_name, "--format=%i|%T"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert squeue.returncode == 0, squeue.stderr
    states = dict(line.split("|") for line in squeue.stdout.split())
    assert set(states) <= ids
    assert all(state == "COMPLETED" for state in states.values()), states
