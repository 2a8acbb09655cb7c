"""Provenance: what the config hash covers, and the code/package fingerprint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from saerepro.config import load_config
from saerepro.provenance import (
    HASH_NEUTRAL_DEFAULTS,
    METRIC_MOVING_CODE,
    METRIC_MOVING_PATHS,
    NEUTRAL_LEDGER,
    config_hash,
    git_commit,
    git_history_unavailable,
    package_versions,
    provenance,
    stale_reasons,
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

    cfg = _cfg()
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
    assert config_hash(_cfg(**{"reference.precision": "bfloat16"})) != before
    assert config_hash(_cfg(**{"train.resample_rewarm_shape": "cosine"})) != before
    assert config_hash(_cfg(**{"train.resample_rewarm_start_factor": 0.1})) != before
    assert config_hash(_cfg(**{"train.resample_rewarm_steps": 1000})) != before
    assert config_hash(_cfg(**{"train.compile": True})) != before


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


# --------------------------------------------------------------------------- stale_reasons


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
    _commit(root, {"src/saerepro/training.py": "lr = 1\n", "config/config.yaml": "a: 1\n", "README.md": "hi\n"}, "code")
    return root


def _rows(commit: str, cfg=None, n: int = 2) -> list[dict]:
    return [{"config_hash": config_hash(cfg or _cfg()), "git_commit": commit}] * n


def test_fresh_rows_have_no_stale_reason(repo):
    made = _git(repo, "rev-parse", "HEAD")
    assert git_history_unavailable(repo) is None
    assert stale_reasons(_rows(made), _cfg(), repo) == []
    # a later commit that touches no metric-moving path keeps them fresh
    _commit(repo, {"README.md": "more\n", "src/saerepro/plotting.py": "x = 1\n"}, "docs")
    assert stale_reasons(_rows(made), _cfg(), repo) == []
    # uncommitted changes are not looked at: only commits are compared
    (repo / "src/saerepro/training.py").write_text("lr = 2\n")
    assert stale_reasons(_rows(made), _cfg(), repo) == []


def test_a_wrong_config_hash_is_stale(repo):
    made = _git(repo, "rev-parse", "HEAD")
    rows = _rows(made) + _rows(made, _cfg(**{"train.lr": 0.001}), n=1)
    (reason,) = stale_reasons(rows, _cfg(), repo)
    assert "1 of 3 row(s) have config_hash" in reason and config_hash(_cfg()) in reason


def test_a_dirty_commit_is_stale(repo):
    made = _git(repo, "rev-parse", "HEAD")
    (reason,) = stale_reasons(_rows(made + "-dirty"), _cfg(), repo)
    assert "uncommitted code" in reason and made in reason


def test_a_commit_that_is_not_an_ancestor_is_stale(repo):
    # a commit beside HEAD (same tree, no parent), and one the repository does not have
    side = _git(repo, "commit-tree", "HEAD^{tree}", "-m", "side")
    (reason,) = stale_reasons(_rows(side), _cfg(), repo)
    assert "not an ancestor of HEAD" in reason
    (reason,) = stale_reasons(_rows("0123456789" * 4), _cfg(), repo)
    assert "not in this repository" in reason
    (reason,) = stale_reasons(_rows("unknown"), _cfg(), repo)
    assert "no git commit" in reason


@pytest.mark.parametrize(
    "path",
    ["src/saerepro/training.py", "config/config.yaml", "src/saerepro/sae/gated.py", "src/saerepro/training/loop.py"],
)
def test_a_metric_moving_change_after_the_commit_is_stale(repo, path):
    made = _git(repo, "rev-parse", "HEAD")
    _commit(repo, {path: "changed\n"}, "move a metric")
    (reason,) = stale_reasons(_rows(made), _cfg(), repo)
    assert "metric-moving" in reason and path in reason
    # the paths checked are a parameter: another run's config is not this run's
    other = tuple(p for p in METRIC_MOVING_PATHS if not path.startswith(p))
    assert stale_reasons(_rows(made), _cfg(), repo, other) == []


def _ledger(repo: Path, *entries: tuple[str, str]) -> None:
    import json

    (repo / NEUTRAL_LEDGER).parent.mkdir(parents=True, exist_ok=True)
    (repo / NEUTRAL_LEDGER).write_text(json.dumps([{"base": b, "head": h, "identical": True} for b, h in entries]))


def test_metric_moving_commits_the_ledger_records_as_neutral_keep_rows_fresh(repo):
    made = _git(repo, "rev-parse", "HEAD")
    refactor = _commit(repo, {"src/saerepro/training.py": "lr = 1  # same\n"}, "refactor")
    _ledger(repo, (made, refactor))
    assert stale_reasons(_rows(made), _cfg(), repo) == []
    # a later metric-moving commit outside every recorded range is stale, and only it is named
    moved = _commit(repo, {"src/saerepro/evaluate.py": "x = 2\n"}, "move")
    (reason,) = stale_reasons(_rows(made), _cfg(), repo)
    assert moved[:12] in reason and refactor[:12] not in reason and "1 commit(s)" in reason
    # entries chain: (refactor, moved] recorded too -> fresh again
    _ledger(repo, (made, refactor), (refactor, moved))
    assert stale_reasons(_rows(made), _cfg(), repo) == []


def test_a_ledger_range_that_starts_after_the_change_does_not_cover_it(repo):
    made = _git(repo, "rev-parse", "HEAD")
    moved = _commit(repo, {"src/saerepro/training.py": "lr = 2\n"}, "move")
    later = _commit(repo, {"src/saerepro/training.py": "lr = 2  # same\n"}, "refactor")
    _ledger(repo, (moved, later))  # checks later against moved, says nothing of made -> moved
    (reason,) = stale_reasons(_rows(made), _cfg(), repo)
    assert moved[:12] in reason and later[:12] not in reason


def test_comment_docstring_and_layout_changes_keep_rows_fresh_code_changes_do_not(repo):
    code = 'def f(x):\n    """Adds one."""\n    return x + 1\n\n\nclass C:\n    a: int = 1\n'
    made = _commit(repo, {"src/saerepro/evaluate.py": code}, "code")
    reworded = (
        '"""Module doc."""\n\n\ndef f(x):\n    """Adds one (why: a reason)."""\n    # a comment\n    return (x +\n'
        '            1)\n\n\nclass C:\n    a: int = 1\n    """An attribute docstring."""\n'
    )
    _commit(repo, {"src/saerepro/evaluate.py": reworded}, "comments, docstrings, layout")
    assert stale_reasons(_rows(made), _cfg(), repo) == []
    moved = _commit(repo, {"src/saerepro/evaluate.py": reworded.replace("1)", "2)")}, "move")
    (reason,) = stale_reasons(_rows(made), _cfg(), repo)
    assert moved[:12] in reason and "1 commit(s)" in reason


def test_a_change_a_later_commit_reverts_keeps_rows_fresh_and_a_ledger_entry_cannot_launder_one(repo):
    made = _git(repo, "rev-parse", "HEAD")
    moved = _commit(repo, {"src/saerepro/training.py": "lr = 2\n"}, "move")
    assert moved[:12] in stale_reasons(_rows(made), _cfg(), repo)[0]
    _commit(repo, {"src/saerepro/training.py": "lr = 1  # back\n"}, "revert")
    assert stale_reasons(_rows(made), _cfg(), repo) == []
    # a neutral-checked commit after an unchecked change does not make that change checked
    again = _commit(repo, {"src/saerepro/training.py": "lr = 3\n"}, "move again")
    refactor = _commit(repo, {"src/saerepro/training.py": "lr = 3 + 0\n"}, "refactor")
    _ledger(repo, (again, refactor))
    (reason,) = stale_reasons(_rows(made), _cfg(), repo)
    assert again[:12] in reason and refactor[:12] not in reason and "training.py" in reason


@pytest.mark.parametrize(
    "files",
    [
        {"config/config.yaml": "a: 1  # a comment, but in a config\n"},
        {"src/saerepro/sae/new.py": "# a new file\n"},
        {"src/saerepro/training.py": "lr = (1\n"},  # no longer parses
    ],
    ids=["config", "added-file", "syntax-error"],
)
def test_what_is_never_taken_as_a_comment_only_change(repo, files):
    made = _git(repo, "rev-parse", "HEAD")
    moved = _commit(repo, files, "change")
    (reason,) = stale_reasons(_rows(made), _cfg(), repo)
    assert moved[:12] in reason


def test_history_unavailable_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "sdist"
    plain.mkdir()
    assert "not a git checkout" in git_history_unavailable(plain)


def test_a_checked_schema_change_must_be_applied_to_the_committed_table(repo):
    import json

    made = _git(repo, "rev-parse", "HEAD")
    change = _commit(repo, {"src/saerepro/pipeline.py": "corpus = 'c'\n"}, "corpus column")
    (repo / NEUTRAL_LEDGER).parent.mkdir(parents=True, exist_ok=True)
    entry = {"base": made, "head": change, "identical": True, "columns_added": {"corpus": "wiki"}}
    (repo / NEUTRAL_LEDGER).write_text(json.dumps([{**entry, "columns_removed": ["n_tokens"]}]))
    old = [dict(r, n_tokens=1) for r in _rows(made)]
    (reason,) = stale_reasons(old, _cfg(), repo)
    assert "'corpus'" in reason and "'n_tokens'" in reason and "--migrate" in reason
    migrated = [{k: v for k, v in r.items() if k != "n_tokens"} | {"corpus": "wiki"} for r in old]
    assert stale_reasons(migrated, _cfg(), repo) == []
    # rows made at or after the change already have the new schema: nothing to apply
    assert stale_reasons(_rows(change), _cfg(), repo) == []


def test_a_config_committed_after_its_rows_is_judged_by_the_config_hash(repo):
    """A run made from a config still in the working tree, committed afterwards: the rows' commit
    lacks the file, and their config_hash is what says which values they were made with."""
    made = _git(repo, "rev-parse", "HEAD")
    path = "config/experiments/new.yaml"
    _commit(repo, {path: "a: 1\n"}, "the run's config, committed after the run")
    paths = METRIC_MOVING_CODE + (path,)
    assert stale_reasons(_rows(made), _cfg(), repo, paths) == []
    # other values: stale by the hash, and the late config is named too
    reasons = stale_reasons(_rows(made, _cfg(**{"train.lr": 0.001})), _cfg(), repo, paths)
    assert len(reasons) == 2 and "config_hash" in reasons[0] and path in reasons[1]
    # code is never excused: a metric-moving change after the rows is still stale
    _commit(repo, {"src/saerepro/training.py": "lr = 2\n"}, "move a metric")
    (reason,) = stale_reasons(_rows(made), _cfg(), repo, paths)
    assert "src/saerepro/training.py" in reason and path not in reason.split("since:")[1].split("(")[0]
