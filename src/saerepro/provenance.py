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

``provenance.json`` also names the machine that trained the SAE: ``cpu_model``, ``cpu_capability``
(the SIMD level torch dispatches to, which can move float results in the last bits) and
``torch_threads``. The first two are carried into metrics rows too (:data:`MACHINE_COLUMNS`, extra
columns after the required ones); the thread count stays in provenance.json only, since a cached
and an on-the-fly run of the same SAE train with different thread counts and their metrics rows
are meant to be equal.

:func:`changed_since` lists the metric-moving files that changed since a committed run's commit;
:mod:`saerepro.manifest` writes each committed run's manifest and the freshness listing of the
results docs from it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: Written beside every trained SAE: :func:`provenance` plus the run's seed, planned tokens and cache.
PROVENANCE_FILE = "provenance.json"

#: Config fields that are sweep axes or locations, not settings: left out of the hash.
#: ``pilot`` and ``pilot_grids`` choose coefficients (a sweep axis), as ``architectures`` does.
#: ``model_path`` is where a model given by path lies; ``model`` (its tag) names its content.
#: ``verdicts`` only says how finished rows are judged (:mod:`saerepro.verdicts`).
SWEEP_FIELDS = (
    "layers",
    "sites",
    "seeds",
    "architectures",
    "headline_layer",
    "resources_dir",
    "allow_mixed_configs",
    "model_path",
    "pilot",
    "pilot_grids",
    "verdicts",
    "plugins",
)

#: Packages whose versions can change a number in the table.
PACKAGES = ("saerepro", "torch", "numpy", "sae-lens", "transformer-lens", "transformers")

#: The provenance columns of every metrics row, in table order.
PROVENANCE_COLUMNS = ("config_hash", "git_commit", "package_versions", "cache_sha256")

#: Machine fields of provenance.json also copied into every metrics row (not required columns:
#: rows evaluated from an older provenance.json carry ``unknown``).
MACHINE_COLUMNS = ("cpu_model", "cpu_capability")

#: Where code that can move a number in a metrics row lives (repo-relative folders and files): the
#: whole package, the rules and scripts that run it, the Snakefile. A new module counts from its
#: first commit; only :data:`ANALYSIS_ONLY` is left out.
METRIC_MOVING_CODE = (
    "src/saerepro",
    "workflow/rules",
    "workflow/scripts",
    "workflow/schemas",
    "Snakefile",
)

#: Modules that only read finished metrics rows (tables, verdicts, figures, costs, manifests) or
#: make their own tables beside them (toys, learning curves, inference-time optimisation, which
#: carries its own code hash): a change to them cannot move a committed metrics row. (``provenance``
#: computes the rows' ``config_hash``; manifests check that hash directly.) The jobs import some
#: of them (the pipeline imports the aggregation's tables and verdicts), so this list is a
#: judgement, kept short; every other file of the package counts.
ANALYSIS_ONLY = (
    tuple(
        f"src/saerepro/{name}.py"
        for name in (
            "api",
            "costs",
            "frontier",
            "health",
            "inference_opt",
            "learning_curve",
            "manifest",
            "paper",
            "pareto",
            "partial",
            "provenance",
            "tables",
            "toys",
            "verdicts",
        )
    )
    + tuple(
        f"workflow/scripts/{name}.py"
        for name in ("figures", "inference_opt", "inference_opt_figure", "toy_figures", "toy_tables")
    )
    + ("src/saerepro/figures",)
)  # the figures package, every module of it

#: What the default run's committed table depends on: the code above and its config.
METRIC_MOVING_PATHS = METRIC_MOVING_CODE + ("config/config.yaml",)


def metric_moving_pathspec(paths=METRIC_MOVING_PATHS) -> list[str]:
    """``paths`` as git pathspecs, :data:`ANALYSIS_ONLY` excluded."""
    return [*paths, *(f":(exclude){p}" for p in ANALYSIS_ONLY)]


#: Settings added after results were committed, with the value that keeps the behaviour they had
#: before the setting existed: at that value a setting is left out of the hash, so adding it does
#: not change the hash of a config that does not use it (any other value does). Dotted paths.
HASH_NEUTRAL_DEFAULTS: dict[str, object] = {
    "reference.precision": "float32",
    "reference.site_eval_tokens": {},
    "train.site_tokens": {},
    "train.resample_rewarm_shape": "linear",
    "train.resample_rewarm_start_factor": 0.0,
    "train.resample_rewarm_steps": None,
    "train.compile": False,
    "train.sparse_step": False,
}


def _drop_neutral_defaults(data: dict) -> dict:
    for dotted, neutral in HASH_NEUTRAL_DEFAULTS.items():
        *parents, leaf = dotted.split(".")
        node: Any = data
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] == neutral:
            del node[leaf]
    return data


def config_hash(cfg) -> str:
    """First 16 hex digits of the SHA-256 of the config's shared settings (canonical JSON).

    Sweep axes (:data:`SWEEP_FIELDS`) and settings at their :data:`HASH_NEUTRAL_DEFAULTS` value
    are left out."""
    data = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in SWEEP_FIELDS}
    data = _drop_neutral_defaults(data)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _checkout() -> Path:
    return Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def dirty_files() -> tuple[str, ...]:
    """The metric-moving files (:func:`metric_moving_pathspec`, any config under ``config/``) with
    uncommitted changes in the saerepro checkout in use; empty outside a checkout. Untracked files
    and edits elsewhere (docs, tests, committed results that a run copies) do not count: they
    cannot move a number."""
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(_checkout()),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                *metric_moving_pathspec(METRIC_MOVING_CODE + ("config",)),
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(sorted(line[3:].split(" -> ")[-1] for line in out.splitlines() if line.strip()))


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the saerepro checkout in use, ``-dirty`` if a metric-moving file has
    uncommitted changes (:func:`dirty_files`, which provenance.json lists), or ``unknown`` outside
    a git checkout (e.g. an installed wheel)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(_checkout()), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty_files() else head


def package_versions() -> str:
    """``name=version`` of :data:`PACKAGES`, ``;``-joined (one CSV cell)."""
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name}=absent")
    return ";".join(out)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's name: ``model name`` of /proc/cpuinfo, else ``platform.processor()``, else ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor().strip() or "unknown"


def cpu_capability() -> str:
    """The CPU instruction set torch dispatches its kernels to (e.g. ``AVX2``, ``AVX512``)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def provenance(cfg, cache_sha256: str | None) -> dict:
    """The provenance fields of one SAE trained now under ``cfg`` on a cache with that hash."""
    import torch

    return {
        "config_hash": config_hash(cfg),
        "git_commit": git_commit(),
        "dirty_files": list(dirty_files()),
        "package_versions": package_versions(),
        "cache_sha256": cache_sha256 or "none",
        "cpu_model": cpu_model(),
        "cpu_capability": cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------- freshness of results


def _git(repo, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)


def git_history_unavailable(repo) -> str | None:
    """Why ``repo``'s history cannot be checked (no git, not a checkout, a shallow clone), or None."""
    try:
        top = _git(repo, "rev-parse", "--verify", "HEAD")
        if top.returncode != 0:
            return f"{repo} is not a git checkout with commits (e.g. an sdist): cannot check provenance"
        if _git(repo, "rev-parse", "--is-shallow-repository").stdout.strip() == "true":
            return f"{repo} is a shallow clone: fetch the full history to check provenance"
    except (OSError, subprocess.SubprocessError) as e:
        return f"git is not usable here ({e}): cannot check provenance"
    return None


def changed_since(repo, commit: str, paths=METRIC_MOVING_PATHS) -> list[str]:
    """The metric-moving files (:func:`metric_moving_pathspec` of ``paths``) whose content in
    ``repo``'s working tree differs from ``commit``'s, sorted; a plain text diff, nothing excused.

    Raises ValueError when ``commit`` is not a commit of ``repo`` (e.g. ``-dirty`` rows should be
    passed without the suffix by the caller, which says so separately)."""
    if _git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise ValueError(f"{commit} is not a commit of {repo}")
    diff = _git(repo, "diff", "--name-only", commit, "--", *metric_moving_pathspec(paths))
    if diff.returncode != 0:
        raise RuntimeError(f"git diff {commit} failed: {diff.stderr.strip()}")
    return sorted(diff.stdout.split())


__all__ = [
    "ANALYSIS_ONLY",
    "HASH_NEUTRAL_DEFAULTS",
    "MACHINE_COLUMNS",
    "METRIC_MOVING_CODE",
    "METRIC_MOVING_PATHS",
    "PROVENANCE_COLUMNS",
    "SWEEP_FIELDS",
    "changed_since",
    "config_hash",
    "cpu_capability",
    "cpu_model",
    "dirty_files",
    "git_commit",
    "git_history_unavailable",
    "metric_moving_pathspec",
    "package_versions",
    "provenance",
]
