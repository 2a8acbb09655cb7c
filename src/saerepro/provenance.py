"""Where a number came from: config hash, code version, package versions, input hashes.

Every trained SAE gets a ``provenance.json`` beside its weights and every row of
``results/tables/metrics.csv`` carries the same fields, so a table row can be traced to the code,
the packages, the settings and the activations that produced it, and ``aggregate`` can refuse to
mix rows from different experiments.

``config_hash`` covers the settings every SAE of a sweep shares (model, corpus, cache, reference
tokens, training defaults, device), not the sweep axes (layers, sites, seeds, architecture grids):
adding a coefficient to a sweep does not change the hash of the SAEs already trained, whereas
changing e.g. ``train.tokens`` does, and rows trained before and after such a change are refused
together.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

#: Config fields that are sweep axes or locations, not settings: left out of the hash.
SWEEP_FIELDS = ("layers", "sites", "seeds", "architectures", "headline_layer", "resources_dir",
                "allow_mixed_configs")

#: Packages whose versions can change a number in the table.
PACKAGES = ("saerepro", "torch", "numpy", "sae-lens", "transformer-lens", "transformers")

#: The provenance columns of every metrics row, in table order.
PROVENANCE_COLUMNS = ("config_hash", "git_commit", "package_versions", "cache_sha256")


def config_hash(cfg) -> str:
    """First 16 hex digits of the SHA-256 of the config's shared settings (canonical JSON)."""
    data = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in SWEEP_FIELDS}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the saerepro checkout in use, ``-dirty`` if it has uncommitted changes to
    tracked files, or ``unknown`` outside a git checkout (e.g. an installed wheel)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def package_versions() -> str:
    """``name=version`` of :data:`PACKAGES`, ``;``-joined (one CSV cell)."""
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name}=absent")
    return ";".join(out)


def provenance(cfg, cache_sha256: str | None) -> dict[str, str]:
    """The provenance fields of one SAE trained now under ``cfg`` on a cache with that hash."""
    return {
        "config_hash": config_hash(cfg),
        "git_commit": git_commit(),
        "package_versions": package_versions(),
        "cache_sha256": cache_sha256 or "none",
    }


__all__ = ["PROVENANCE_COLUMNS", "SWEEP_FIELDS", "config_hash", "git_commit", "package_versions", "provenance"]
