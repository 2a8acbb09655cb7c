"""Provenance: what the config hash covers, and the code/package fingerprint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from saerepro.config import load_config
from saerepro.provenance import config_hash, git_commit, package_versions, provenance

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
        {"train.tokens": 8192}, {"train.lr": 0.001}, {"train.b_dec_init": "mean"},
        {"train.autocast_bf16": True}, {"corpus.context_size": 32}, {"reference.eval_tokens": 512},
        {"cache.dtype": "float32"}, {"device": "cpu"},
    ]
    hashes = {config_hash(_cfg(**c)) for c in changed}
    assert base not in hashes and len(hashes) == len(changed)


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
