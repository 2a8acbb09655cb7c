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

:func:`stale_reasons` says why a committed results table no longer matches the code and config
that would produce it now (``tests/test_committed_results.py``).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import platform
import subprocess
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

#: Written beside every trained SAE: :func:`provenance` plus the run's seed, planned tokens and cache.
PROVENANCE_FILE = "provenance.json"

#: Config fields that are sweep axes or locations, not settings: left out of the hash.
#: ``pilot`` and ``pilot_grids`` choose coefficients (a sweep axis), as ``architectures`` does.
#: ``model_path`` is where a model given by path lies; ``model`` (its tag) names its content.
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
)

#: Packages whose versions can change a number in the table.
PACKAGES = ("saerepro", "torch", "numpy", "sae-lens", "transformer-lens", "transformers")

#: The provenance columns of every metrics row, in table order.
PROVENANCE_COLUMNS = ("config_hash", "git_commit", "package_versions", "cache_sha256")

#: Machine fields of provenance.json also copied into every metrics row (not required columns:
#: rows evaluated from an older provenance.json carry ``unknown``).
MACHINE_COLUMNS = ("cpu_model", "cpu_capability")

#: Code whose change can move a number in the metrics table (folders and files, repo-relative).
#: ``src/saerepro/training`` covers training.py becoming a package.
METRIC_MOVING_CODE = (
    "src/saerepro/config.py",
    "src/saerepro/pipeline.py",
    "src/saerepro/sites.py",
    "src/saerepro/sae",
    "src/saerepro/training.py",
    "src/saerepro/training",
    "src/saerepro/evaluate.py",
    "src/saerepro/metrics.py",
    "src/saerepro/lm.py",
    "src/saerepro/activations.py",
    "src/saerepro/streaming.py",
    "src/saerepro/models.py",
    "src/saerepro/corpus.py",
    "src/saerepro/on_the_fly.py",
    "src/saerepro/own_model.py",
    "src/saerepro/allocator.py",
)

#: What the default run's committed table depends on: the code above and its config.
METRIC_MOVING_PATHS = METRIC_MOVING_CODE + ("config/config.yaml",)


#: Settings added after results were committed, with the value that keeps the behaviour they had
#: before the setting existed: at that value a setting is left out of the hash, so adding it does
#: not change the hash of a config that does not use it (any other value does). Dotted paths.
HASH_NEUTRAL_DEFAULTS: dict[str, object] = {
    "reference.precision": "float32",
    "train.resample_rewarm_shape": "linear",
    "train.resample_rewarm_start_factor": 0.0,
    "train.resample_rewarm_steps": None,
    "train.compile": False,
}

#: Checked metric-neutral changes (benchmarks/neutral_check.py): commits that touched metric-moving
#: files but left the tiny default-like config's metrics byte-identical on one machine.
NEUTRAL_LEDGER = "results/neutral_changes.json"


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


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the saerepro checkout in use, ``-dirty`` if it has uncommitted changes to
    tracked files, or ``unknown`` outside a git checkout (e.g. an installed wheel)."""
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
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


def stale_reasons(rows, cfg, repo, paths=METRIC_MOVING_PATHS) -> list[str]:
    """Why the metrics ``rows`` (a DataFrame or dicts) are not what the code at ``repo``'s HEAD
    would produce under ``cfg``; an empty list when they are fresh.

    A row is stale when its ``config_hash`` is not :func:`config_hash` of ``cfg``; when its
    ``git_commit`` is ``-dirty`` (made from uncommitted code), unknown, not in the repository or
    not an ancestor of HEAD; or when the code of one of ``paths`` (:data:`METRIC_MOVING_PATHS`)
    at HEAD is not what it was at that commit, comments, docstrings and layout aside, through
    commits that :data:`NEUTRAL_LEDGER` does not record as checked metric-neutral
    (``benchmarks/neutral_check.py``: the tiny default-like config's metrics byte-identical
    before and after, on one machine; :func:`_unchecked_changes`). A config among ``paths`` that
    did not exist at that commit (a run made from a config committed after it) is judged by the
    ``config_hash`` alone. Only commits are compared:
    uncommitted changes in the working tree are not looked at (they are not yet code anybody
    else runs).
    """
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else [dict(r) for r in rows]
    if not records:
        return ["the table has no rows"]
    ledger = read_neutral_ledger(repo)
    states: dict[tuple[str, str], str | None] = {}  # (commit, file) -> _file_state, shared by all rows
    reasons = []
    expected = config_hash(cfg)
    hashes = Counter(str(r.get("config_hash")) for r in records)
    for h, n in sorted(hashes.items()):
        if h != expected:
            reasons.append(
                f"{n} of {len(records)} row(s) have config_hash {h}, but the current code "
                f"computes {expected} from the config"
            )
    commits = Counter(str(r.get("git_commit")) for r in records)
    for commit, n in sorted(commits.items()):
        where = f"{n} of {len(records)} row(s)"
        base = commit.removesuffix("-dirty")
        if commit != base:
            reasons.append(
                f"{where} were made from uncommitted code (git_commit {commit}): their "
                "numbers cannot be traced to a commit"
            )
        if base in ("unknown", "none", "nan", ""):
            reasons.append(f"{where} record no git commit ({commit!r})")
            continue
        if _git(repo, "cat-file", "-e", f"{base}^{{commit}}").returncode != 0:
            reasons.append(f"{where} name commit {base}, which is not in this repository")
            continue
        if _git(repo, "merge-base", "--is-ancestor", base, "HEAD").returncode != 0:
            reasons.append(f"{where} name commit {base}, which is not an ancestor of HEAD")
            continue
        changed, unchecked = _unchecked_changes(repo, base, paths, ledger, states)
        if changed is None:
            reasons.append(f"git diff {base}..HEAD failed")
            continue
        if all(h == expected for h in hashes):
            # A config committed only after its run (the run read it from the working tree): its
            # values are what the rows' config_hash says, and that hash is the current one.
            changed = [f for f in changed if not _config_added_after(repo, base, f)]
        if changed:
            reasons.append(
                f"{where} were made at commit {base[:12]}; metric-moving file(s) changed "
                f"since: {', '.join(changed)} (in {len(unchecked)} commit(s) that "
                f"{NEUTRAL_LEDGER} does not record as checked metric-neutral: "
                f"{', '.join(c[:12] for c in unchecked)})"
            )
    reasons += _schema_reasons(records, commits, repo, ledger)
    return reasons


def _config_added_after(repo, base: str, path: str) -> bool:
    """Whether ``path`` is a config (not code of :data:`METRIC_MOVING_CODE`) absent at commit ``base``."""
    if any(path == p or path.startswith(p.rstrip("/") + "/") for p in METRIC_MOVING_CODE):
        return False
    return _git(repo, "cat-file", "-e", f"{base}:{path}").returncode != 0


def _schema_reasons(records: list[dict], commits: Counter, repo, ledger: list[dict]) -> list[str]:
    """A ledger entry newer than the rows may record a schema change (columns added with their one
    value, or removed, by a checked neutral change): the table must have it applied
    (``benchmarks/neutral_check.py --migrate``)."""
    columns = set(records[0])
    reasons = []
    for e in ledger:
        if not (e.get("columns_added") or e.get("columns_removed")):
            continue
        newer = any(
            c.removesuffix("-dirty") != e["head"]
            and _git(repo, "merge-base", "--is-ancestor", c.removesuffix("-dirty"), e["head"]).returncode == 0
            for c in commits
        )
        if not newer:
            continue
        missing = sorted(set(e.get("columns_added", {})) - columns)
        extra = sorted(set(e.get("columns_removed", [])) & columns)
        if missing or extra:
            reasons.append(
                f"the table predates the schema change checked neutral in {e['base'][:12]}..{e['head'][:12]} "
                f"(missing columns {missing}, removed columns still present {extra}): run "
                "benchmarks/neutral_check.py --migrate on it"
            )
    return reasons


def _unchecked_changes(
    repo, base: str, paths, ledger: list[dict], states: dict[tuple[str, str], str | None] | None = None
) -> tuple[list[str] | None, list[str]]:
    """The metric-moving files whose code at HEAD is not what the rows were made with, and the
    unchecked commits that changed them (``None`` when git fails).

    Per file, walking its commits since ``base`` oldest first, with the state at ``base``
    accepted: a commit that leaves the file in the accepted state (a comment, docstring or layout
    edit, :func:`_file_state`; or a revert) changes nothing; a commit the ledger records as
    checked metric-neutral, while nothing unchecked precedes it, moves the accepted state to its
    own; any other commit is unchecked until a later one returns the file to the accepted state.
    The file is changed when HEAD's state is not the accepted one. ``states`` caches
    :func:`_file_state` by (commit, file) across calls.
    """
    diff = _git(repo, "diff", "--name-only", base, "HEAD", "--", *paths)
    head = _git(repo, "rev-parse", "HEAD").stdout.strip()
    if diff.returncode != 0 or not head:
        return None, []
    states = {} if states is None else states

    def state_at(commit: str, name: str) -> str | None:
        if (commit, name) not in states:
            states[commit, name] = _file_state(repo, commit, name)
        return states[commit, name]

    changed, unchecked = [], []
    for name in diff.stdout.split():
        accepted = state_at(base, name)
        commits = _git(repo, "rev-list", "--reverse", "--topo-order", f"{base}..HEAD", "--", name).stdout.split()
        pending: list[str] = []
        for c in commits:
            state = state_at(c, name)
            if state == accepted:
                pending = []
            elif not pending and _checked_neutral(repo, c, ledger):
                accepted = state
            else:
                pending.append(c)
        if state_at(head, name) != accepted:
            changed.append(name)
            unchecked += [c for c in pending if c not in unchecked and not _checked_neutral(repo, c, ledger)]
    return changed, unchecked


def _file_state(repo, commit: str, name: str) -> str | None:
    """What of ``name`` at ``commit`` can move a number: a Python file's syntax tree without
    docstrings (:func:`_code_ast`; its raw text if it does not parse), any other file's text, None
    where it does not exist."""
    shown = _git(repo, "show", f"{commit}:{name}")
    if shown.returncode != 0:
        return None
    if name.endswith(".py"):
        try:
            return _code_ast(shown.stdout)
        except SyntaxError:
            return "unparsable\n" + shown.stdout
    return shown.stdout


def _code_ast(source: str) -> str:
    """``ast.dump`` of ``source`` without line numbers and without bare string statements: the
    docstrings of modules, classes and functions and the attribute docstrings under dataclass
    fields, which evaluate to nothing. What a comment or docstring edit leaves alone."""

    class _DropStrings(ast.NodeTransformer):
        def visit_Expr(self, node: ast.Expr) -> ast.Expr | None:
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return None
            return node

    return ast.dump(_DropStrings().visit(ast.parse(source)))


def read_neutral_ledger(repo) -> list[dict]:
    """The entries of :data:`NEUTRAL_LEDGER` at ``repo`` (an empty list if it has none)."""
    path = Path(repo) / NEUTRAL_LEDGER
    if not path.exists():
        return []
    entries = json.loads(path.read_text())
    for e in entries:
        if not e.get("identical") or not e.get("base") or not e.get("head"):
            raise ValueError(f"{path}: every entry needs base, head and identical: true; got {e}")
    return entries


def _checked_neutral(repo, commit: str, ledger: list[dict]) -> bool:
    """Whether ``commit`` lies in (base, head] of a ledger entry: checked metric-neutral."""
    for e in ledger:
        if commit == e["base"]:
            continue
        if (
            _git(repo, "merge-base", "--is-ancestor", e["base"], commit).returncode == 0
            and _git(repo, "merge-base", "--is-ancestor", commit, e["head"]).returncode == 0
        ):
            return True
    return False


__all__ = [
    "HASH_NEUTRAL_DEFAULTS",
    "MACHINE_COLUMNS",
    "METRIC_MOVING_CODE",
    "METRIC_MOVING_PATHS",
    "NEUTRAL_LEDGER",
    "PROVENANCE_COLUMNS",
    "SWEEP_FIELDS",
    "config_hash",
    "cpu_capability",
    "cpu_model",
    "git_commit",
    "git_history_unavailable",
    "package_versions",
    "provenance",
    "read_neutral_ledger",
    "stale_reasons",
]
