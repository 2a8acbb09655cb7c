"""benchmarks/neutral_check.py: the shrunk config keeps every setting but the sizes, and the
comparison ignores only where and how long a run went."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import yaml

from saerepro.config import load_config

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("neutral_check", REPO / "benchmarks" / "neutral_check.py")
neutral_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(neutral_check)


def test_shrunk_default_config_is_valid_small_and_keeps_every_other_setting():
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    small = neutral_check.shrink(raw)
    cfg, full = load_config(small), load_config(raw)
    assert cfg.train.tokens <= 8192 and cfg.reference.eval_tokens <= 512
    assert cfg.sites == full.sites and cfg.layers == full.layers
    assert cfg.train.autocast_bf16 == full.train.autocast_bf16 and cfg.train.b_dec_init == full.train.b_dec_init
    assert cfg.cache == full.cache and cfg.corpus.source == full.corpus.source
    assert sorted(cfg.architectures) == sorted(full.architectures)
    assert all(len(a["coefficients"]) == 1 for a in small["architectures"].values())
    assert raw["train"]["tokens"] == full.train.tokens  # the input is not modified


def test_comparison_ignores_commit_and_timings_and_catches_a_one_digit_change(tmp_path):
    base = pd.DataFrame(
        {
            "model": ["m", "m"],
            "layer": [6, 6],
            "site": ["mlp", "resid"],
            "architecture": ["gated"] * 2,
            "coefficient": [0.6, 0.6],
            "seed": [0, 0],
            "loss_recovered": ["0.812345678", "0.9"],
            "git_commit": ["a", "a"],
            "train_seconds": [1.0, 2.0],
            "config_hash": ["h", "h"],
        }
    )
    other = base.copy()
    other["git_commit"], other["train_seconds"] = "b", [5.0, 6.0]
    other = other.iloc[::-1]  # row order does not matter
    paths = [tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"]
    base.to_csv(paths[0], index=False)
    other.to_csv(paths[1], index=False)
    assert neutral_check.comparable(paths[0]) == neutral_check.comparable(paths[1])
    moved = base.copy()
    moved.loc[0, "loss_recovered"] = "0.812345679"
    moved.to_csv(paths[2], index=False)
    assert neutral_check.comparable(paths[0]) != neutral_check.comparable(paths[2])


def test_schema_change_adds_one_valued_columns_and_drops_removed_ones_in_a_committed_table(tmp_path):
    base = pd.DataFrame({"model": ["m", "m"], "layer": [6, 6], "site": ["mlp", "resid"], "n_tokens": [8, 8]})
    head = base.drop(columns="n_tokens").assign(corpus="wiki", per_row=["a", "b"])
    paths = [tmp_path / "base.csv", tmp_path / "head.csv"]
    base.to_csv(paths[0], index=False)
    head.to_csv(paths[1], index=False)
    added, removed, problems = neutral_check.schema_change(paths[0], paths[1])
    assert added == {"corpus": "wiki"} and removed == ["n_tokens"]
    (problem,) = problems  # a column whose value differs by row cannot be added without a rerun
    assert "per_row" in problem
    committed = tmp_path / "committed.csv"
    base.to_csv(committed, index=False)
    entries = [{"columns_added": added, "columns_removed": removed}]
    assert neutral_check.migrate(committed, entries) == ["dropped n_tokens", "added corpus=wiki"]
    assert list(pd.read_csv(committed).columns) == ["model", "corpus", "layer", "site"]
    assert neutral_check.migrate(committed, entries) == []  # idempotent
