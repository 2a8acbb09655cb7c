"""saerepro.snake: what a Snakemake job shows on the terminal and where it logs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_a_job_names_its_log_by_an_absolute_path_and_logs_there(tmp_path, monkeypatch, capsys):
    """The terminal line is copy-pasteable from any folder (the job runs in runs/<name>/, the user
    may be elsewhere), and the job's own output goes to the log, not the terminal."""
    from saerepro.snake import job

    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((REPO / "config" / "test" / "tiny.yaml").read_text())
    fake = SimpleNamespace(log=["logs/train/x.log"], rule="train", config=config, threads=1)
    with job(fake) as cfg:
        print("inside the job")
        assert cfg.model == config["model"]
    line = capsys.readouterr().err.strip()
    logged = tmp_path / "logs" / "train" / "x.log"
    assert line == f"saerepro: train is logging to {logged} (tail -f it to follow the progress)"
    assert "inside the job" in logged.read_text()
