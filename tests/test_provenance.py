"""Provenance: what the config hash covers, and the code/package fingerprint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from saerepro.config import load_config
from saerepro.provenance import (
    ANALYSIS_ONLY,
    HASH_NEUTRAL_DEFAULTS,
    METRIC_MOVING_CODE,
    changed_since,
    config_hash,
    git_commit,
    git_history_unavailable,
    package_versions,
    provenance,
)

REPO = Path(__file__).resolve().parents[1]


def _cfg(**changes):
    import yaml

    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return load_config(raw)


def test_config_hash_is_stable_and_ignores_sweep_axes():
    base = config_hash(_cfg())
    assert base == config_hash(_cfg()) and len(base) == 16
    # growing the sweep keeps the hash of the SAEs already trained
    assert config_hash(_cfg(**{"architectures.gated.coefficients": [1.0, 2.0]})) == base
    assert config_hash(_cfg(seeds=[0, 1])) == base
    assert config_hash(_cfg(sites=["resid"])) == base
    assert config_hash(_cfg(resources_dir="/elsewhere")) == base


def test_config_hash_changes_with_every_shared_setting():
    base = config_hash(_cfg())
    changed = [
        {"train.tokens": 8192},
        {"train.lr": 0.001},
        {"train.b_dec_init": "mean"},
        {"train.autocast_bf16": True},
        {"corpus.context_size": 32},
        {"reference.eval_tokens": 512},
        {"cache.dtype": "float32"},
        {"device": "cpu"},
    ]
    hashes = {config_hash(_cfg(**c)) for c in changed}
    assert base not in hashes and len(hashes) == len(changed)


def test_a_setting_at_its_hash_neutral_default_leaves_the_hash_as_before_it_existed():
    import dataclasses
    import hashlib
    import json

    from saerepro.provenance import SWEEP_FIELDS

    dense = {"train.sparse_step": False}  # the tiny config, like the default, switches sparse steps on
    cfg = _cfg(**dense)
    for dotted, neutral in HASH_NEUTRAL_DEFAULTS.items():
        section, leaf = dotted.split(".")
        assert getattr(getattr(cfg, section), leaf) == neutral, dotted
    # the hash as computed before these settings existed: the fields simply absent
    data = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in SWEEP_FIELDS}
    for dotted in HASH_NEUTRAL_DEFAULTS:
        section, leaf = dotted.split(".")
        del data[section][leaf]
    before = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()[
        :16
    ]
    assert config_hash(cfg) == before
    assert config_hash(_cfg(**dense, **{"reference.precision": "bfloat16"})) != before
    assert config_hash(_cfg(**dense, **{"train.resample_rewarm_shape": "cosine"})) != before
    assert config_hash(_cfg(**dense, **{"train.resample_rewarm_start_factor": 0.1})) != before
    assert config_hash(_cfg(**dense, **{"train.resample_rewarm_steps": 1000})) != before
    assert config_hash(_cfg(**dense, **{"train.compile": True})) != before
    assert config_hash(_cfg()) != before  # sparse_step: true


def test_git_commit_names_this_checkout():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        assert git_commit() == "unknown"
        return
    assert git_commit().split("-")[0] == head.stdout.strip()


def test_package_versions_and_provenance_fields():
    versions = dict(item.split("=") for item in package_versions().split(";"))
    assert versions["torch"] == torch.__version__
    assert set(versions) >= {"saerepro", "sae-lens", "transformer-lens", "transformers"}
    prov = provenance(_cfg(), "ab" * 32)
    assert prov["cache_sha256"] == "ab" * 32 and prov["config_hash"] == config_hash(_cfg())
    assert prov["cpu_model"] and "\n" not in prov["cpu_model"]
    assert prov["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert prov["torch_threads"] == torch.get_num_threads()


# --------------------------------------------------------------------------- changed_since


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path):
    """A tiny git repo; its first commit is where the 'results' were made."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _commit(
        root,
        {
            "src/saerepro/training/loop.py": "lr = 1\n",
            "src/saerepro/figures/style.py": "style = 1\n",
            "config/config.yaml": "a: 1\n",
            "docs/results.md": "text\n",
        },
        "made the results",
    )
    return root


def test_changed_since_lists_every_metric_moving_edit_and_nothing_else(repo):
    made = _git(repo, "rev-parse", "HEAD")
    assert changed_since(repo, made) == []
    # analysis-only modules and docs cannot move a metrics row
    _commit(repo, {"src/saerepro/figures/style.py": "style = 2\n", "docs/results.md": "more\n"}, "figures and docs")
    assert changed_since(repo, made) == []
    # a comment is a change too: no diffing of syntax trees, nothing excused
    _commit(repo, {"src/saerepro/training/loop.py": "lr = 1  # why\n"}, "a comment")
    assert changed_since(repo, made) == ["src/saerepro/training/loop.py"]
    _commit(repo, {"src/saerepro/sae/new.py": "x = 1\n", "config/config.yaml": "a: 2\n"}, "new module, new config")
    assert changed_since(repo, made) == [
        "config/config.yaml",
        "src/saerepro/sae/new.py",
        "src/saerepro/training/loop.py",
    ]
    # a run of another config does not depend on config/config.yaml
    assert "config/config.yaml" not in changed_since(repo, made, METRIC_MOVING_CODE + ("config/long.yaml",))
    # uncommitted edits count: the listing describes the working tree that a test or a doc sees
    (repo / "Snakefile").write_text("rule all: pass\n")
    _git(repo, "add", "Snakefile")
    assert "Snakefile" in changed_since(repo, made)
    with pytest.raises(ValueError, match="not a commit"):
        changed_since(repo, "0123456789" * 4)


def test_every_analysis_only_module_exists_and_no_sae_or_training_code_is_excused():
    assert all((REPO / p).exists() for p in ANALYSIS_ONLY), [p for p in ANALYSIS_ONLY if not (REPO / p).exists()]
    excused = " ".join(ANALYSIS_ONLY)
    for moving in (
        "sae/",
        "training/",
        "evaluate.py",
        "metrics.py",
        "activations.py",
        "lm.py",
        "models.py",
        "config.py",
    ):
        assert moving not in excused, moving


def test_history_unavailable_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "sdist"
    plain.mkdir()
    assert "not a git checkout" in git_history_unavailable(plain)


def test_only_uncommitted_metric_moving_edits_make_a_run_dirty_and_they_are_listed(repo, monkeypatch):
    """Issue 33: a fresh `make repro` that rewrote a committed figure or table marked every row
    ``-dirty``; only an edit that can move a number does now, and provenance.json names it."""
    import saerepro.provenance as P

    monkeypatch.setattr(P, "_checkout", lambda: repo)
    head = _git(repo, "rev-parse", "HEAD")

    def fresh():
        P.dirty_files.cache_clear()
        P.git_commit.cache_clear()
        return P.git_commit(), P.dirty_files()

    try:
        (repo / "docs/results.md").write_text("edited\n")
        (repo / "src/saerepro/figures/style.py").write_text("style = 3\n")
        (repo / "results.csv").write_text("untracked\n")
        assert fresh() == (head, ())
        (repo / "src/saerepro/training/loop.py").write_text("lr = 2\n")
        (repo / "config/config.yaml").write_text("a: 3\n")
        assert fresh() == (f"{head}-dirty", ("config/config.yaml", "src/saerepro/training/loop.py"))
    finally:
        P.dirty_files.cache_clear()
        P.git_commit.cache_clear()
