"""Committed runs: where each one lives, the manifest that says what made it, and how fresh it is.

A run's tables and figures are written under its working folder (``runs/<name>/``, never over a
tracked file) and reach ``results/`` and ``figures/`` only through :func:`promote` (``make
promote RUN=<name>``), which also writes ``manifest.json`` beside the tables: the commits, config
hashes, machines and package versions of its rows (with how many rows each), when it was made and
how long it took. :func:`freshness_markdown` lists, per committed run, the metric-moving files
(:func:`saerepro.provenance.changed_since`) that changed since the commits its rows were made at:
``docs/results.md`` carries that listing between :data:`FRESHNESS_BEGIN` and :data:`FRESHNESS_END`,
and a test keeps it equal to what this module computes now (``python -m saerepro.manifest
freshness --update docs/results.md`` rewrites it).

    python -m saerepro.manifest promote default        # runs/default -> results/tables, figures/
    python -m saerepro.manifest write long --wall-seconds 4012 --note "..."
    python -m saerepro.manifest freshness [--update docs/results.md]
    python -m saerepro.manifest readme [--update README.md]   # the README's results block
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .config import load_config
from .provenance import METRIC_MOVING_CODE, changed_since, config_hash
from .tables import table_to_markdown
from .verdicts import rerun_comparison, rules_from_config

REPO = Path(__file__).resolve().parents[2]
MANIFEST = "manifest.json"
#: Written by the Makefile beside a run's outputs: the wall seconds of each ``make`` call that ran
#: in its folder, one line per call (:func:`wall_invocations`).
WALL_FILE = "wall_seconds"
FRESHNESS_BEGIN = "<!-- freshness: begin (python -m saerepro.manifest freshness --update docs/results.md) -->"
FRESHNESS_END = "<!-- freshness: end -->"
README_BEGIN = "<!-- results: begin (python -m saerepro.manifest readme --update README.md) -->"
README_END = "<!-- results: end -->"
#: The claims the README's results block reads, with what each verdict cell tests (docs/metrics.md).
README_CLAIMS = {
    "C1": "C1 shrinkage (γ_c)",
    "C2": "C2 Pareto improvement (gated − baseline loss recovered)",
    "C3": "C3 L0 baseline / gated at equal loss recovered [95% CI]",
}
_VERDICT_ORDER = (
    "shown",
    "shown at some L0",
    "mixed",
    "reversed at some L0",
    "reversed",
    "not shown",
    "not judged",
    "not run",
)
#: the same words, longest first, so a prefix match finds "shown at some L0" before "shown"
_VERDICT_WORDS = tuple(sorted(_VERDICT_ORDER, key=len, reverse=True))


@dataclass(frozen=True)
class CommittedRun:
    """One committed run of the pipeline."""

    name: str
    """Its name: ``make promote RUN=<name>`` and the folder ``runs/<name>/`` it is made in."""
    tables: str
    """Repository folder of its tables and ``manifest.json``."""
    config: str
    """The config it was made from (repository path)."""
    figures: str | None
    """Repository folder of its figures, None for a table-only run."""
    make: str | None
    """The make target that makes it, None where no target does (a one-off comparison)."""
    metrics: str = "metrics.csv"
    """The metrics table's file name in :attr:`tables`."""
    compare_with: str | None = None
    """A rerun of another committed run (other seeds, another machine): that run's name. Promoting
    it writes ``rerun_comparison.csv``/``.md`` (:func:`saerepro.verdicts.rerun_comparison`) beside
    its tables."""

    @property
    def table_path(self) -> str:
        return f"{self.tables}/{self.metrics}"

    @property
    def paths(self) -> tuple[str, ...]:
        """What its rows depend on: the metric-moving code and its config."""
        return (*METRIC_MOVING_CODE, self.config)


#: Every committed run, the default first.
COMMITTED_RUNS = (
    CommittedRun("default", "results/tables", "config/config.yaml", "figures", "repro"),
    CommittedRun("long", "results/long/tables", "config/long.yaml", "figures/long", "repro-long"),
    CommittedRun("extras", "results/extras/tables", "config/extras.yaml", "figures/extras", "repro-extras"),
    # The previous long design (94 SAEs, one seed, assembled over five sessions): it still holds what the
    # new long run does not (TopK, JumpReLU, the ablations, the inference-time optimisation) until
    # `make repro-extras` does.
    CommittedRun(
        "long_previous",
        "results/long_previous/tables",
        "config/experiments/long_previous.yaml",
        "figures/long_previous",
        None,
    ),
    CommittedRun(
        "neurons", "results/neurons/tables", "config/experiments/neurons.yaml", "figures/neurons", "repro-neurons"
    ),
    CommittedRun("reseed", "results/reseed/tables", "config/config.yaml", None, "repro-reseed", compare_with="default"),
    CommittedRun(
        "budget",
        "results/budget/tables",
        "config/experiments/budget_2x.yaml",
        None,
        "repro-budget",
        compare_with="default",
    ),
    CommittedRun(
        "cross_machine",
        "results/cross_machine",
        "config/experiments/default_dense.yaml",
        None,
        None,
        metrics="default_amx_metrics.csv",
    ),
)


def get_run(name: str) -> CommittedRun:
    for run in COMMITTED_RUNS:
        if run.name == name:
            return run
    raise KeyError(f"no committed run named {name!r}; known: {', '.join(r.name for r in COMMITTED_RUNS)}")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30).stdout.strip()


def _counts(rows: pd.DataFrame, column: str) -> dict[str, int]:
    if column not in rows:
        return {"unknown": len(rows)}
    return dict(sorted(Counter(rows[column].fillna("unknown").astype(str)).items()))


def _machines(rows: pd.DataFrame) -> dict[str, int]:
    if "cpu_model" not in rows:
        return {"unknown": len(rows)}
    capability = rows["cpu_capability"] if "cpu_capability" in rows else "unknown"
    labels = (
        rows["cpu_model"].fillna("unknown").astype(str)
        + " ("
        + pd.Series(capability, index=rows.index).astype(str)
        + ")"
    )
    return dict(sorted(Counter(labels).items()))


def _commit_date(repo: Path, commit: str) -> str | None:
    return _git(repo, "show", "-s", "--format=%cI", commit.removesuffix("-dirty")) or None


def _newest(repo: Path, commits) -> str:
    """The commit among ``commits`` that every other one is an ancestor of (else the latest dated)."""
    bases = sorted({c.removesuffix("-dirty") for c in commits})
    for c in bases:
        if all(
            subprocess.run(
                ["git", "-C", str(repo), "merge-base", "--is-ancestor", o, c], capture_output=True
            ).returncode
            == 0
            for o in bases
        ):
            return c
    return max(bases, key=lambda c: _commit_date(repo, c) or "")


def wall_invocations(path: Path) -> list[float]:
    """The wall seconds of each ``make`` call recorded in a run folder's :data:`WALL_FILE` (empty
    when there is none)."""
    if not path.exists():
        return []
    return [float(line) for line in path.read_text().split()]


def build_manifest(
    run: CommittedRun,
    repo: Path = REPO,
    *,
    made: str | None = None,
    wall_seconds: float | None = None,
    note: str = "",
    wall_calls: list[float] | None = None,
) -> dict:
    """The manifest of ``run`` from its committed metrics table (and ``timings.csv`` if present).

    ``made``: when the run finished (ISO date); by default the date of the newest commit its rows
    name, i.e. the earliest the last SAE can have been made. ``wall_seconds``: measured wall time,
    summed over the ``make`` calls that ran in its folder (``wall_calls``, each call's seconds, when
    there were several); None where it was not measured."""
    rows = pd.read_csv(repo / run.table_path, dtype=str)
    commits = _counts(rows, "git_commit")
    timings = repo / run.tables / "timings.csv"
    job_seconds = None
    if timings.exists():
        t = pd.read_csv(timings)
        job_seconds = round(float(t[[c for c in ("train_seconds", "eval_seconds") if c in t]].sum().sum()), 1)
    newest = _newest(repo, commits)
    return {
        "run": run.name,
        "config": run.config,
        "config_hash": _counts(rows, "config_hash"),
        "commits": commits,
        "newest_commit": newest,
        "machines": _machines(rows),
        "package_versions": _counts(rows, "package_versions"),
        "n_saes": len(rows),
        "made": made or (_commit_date(repo, newest) or "unknown")[:10],
        "wall_seconds": wall_seconds,
        **({"wall_calls": wall_calls} if wall_calls and len(wall_calls) > 1 else {}),
        "job_seconds": job_seconds,
        "tables": run.tables,
        "figures": run.figures,
        "make": f"make {run.make}" if run.make else None,
        "note": note,
    }


def write_manifest(run: CommittedRun, repo: Path = REPO, **kwargs) -> Path:
    path = repo / run.tables / MANIFEST
    path.write_text(json.dumps(build_manifest(run, repo, **kwargs), indent=2) + "\n")
    return path


def read_manifest(run: CommittedRun, repo: Path = REPO) -> dict:
    return json.loads((repo / run.tables / MANIFEST).read_text())


def promote(run: CommittedRun, repo: Path = REPO, run_dir: Path | None = None, note: str = "") -> Path:
    """Copy a finished run's tables and figures from its working folder (``runs/<name>/``) over the
    committed ones and write its manifest (wall time: the sum of the calls in :data:`WALL_FILE`, when
    the Makefile wrote it). The only step that writes the committed results."""
    run_dir = run_dir or repo / "runs" / run.name
    source = run_dir / "results" / "tables"
    if not (source / run.metrics).exists():
        raise FileNotFoundError(f"{source / run.metrics} does not exist: run `make {run.make}` first")
    target = repo / run.tables
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    if run.figures:
        (repo / run.figures).mkdir(parents=True, exist_ok=True)
        for figure in (run_dir / "figures").glob("*.*"):
            shutil.copy2(figure, repo / run.figures / figure.name)
    write_rerun_comparison(run, repo)
    calls = wall_invocations(run_dir / WALL_FILE)
    return write_manifest(
        run,
        repo,
        made=datetime.date.today().isoformat(),
        wall_seconds=sum(calls) if calls else None,
        wall_calls=calls,
        note=note,
    )


RERUN_COMPARISON = "rerun_comparison"


def rerun_comparison_table(run: CommittedRun, repo: Path = REPO) -> pd.DataFrame:
    """The committed rerun ``run`` against the committed run it repeats (:attr:`CommittedRun.compare_with`),
    judged with that run's config's verdict rules."""

    if run.compare_with is None:
        raise ValueError(f"{run.name} is not a rerun of another committed run")
    first = get_run(run.compare_with)
    rules = rules_from_config(load_config(repo / first.config))
    return rerun_comparison(pd.read_csv(repo / first.table_path), pd.read_csv(repo / run.table_path), rules)


def write_rerun_comparison(run: CommittedRun, repo: Path = REPO) -> list[Path]:
    """``rerun_comparison.csv`` and ``.md`` beside a rerun's committed tables (nothing for a run
    that repeats none)."""

    if run.compare_with is None:
        return []
    table = rerun_comparison_table(run, repo)
    stem = repo / run.tables / RERUN_COMPARISON
    table.to_csv(stem.with_suffix(".csv"), index=False)
    claims = table[table["claim"].str.fullmatch(r"C\d")]
    inside, within = claims["inside"].dropna(), claims["within"].dropna()
    stem.with_suffix(".md").write_text(
        f"# {run.name} against {run.compare_with}\n\n"
        f"Per cell, two shares of the common L0 range (C3: 1 or 0 at its loss-recovered level). `inside`: "
        f"where this rerun's fitted estimate lies inside the {run.compare_with} run's simultaneous 95% band "
        f"(C1: gated's and baseline's γ_c both; C2: gated − baseline loss recovered; C3: the ratio in the "
        f"{run.compare_with} run's interval; frontier rows: that architecture's loss recovered). `within`: "
        f"where it moved from the {run.compare_with} run's estimate by less than that band's width, the "
        f"calibrated rule: a correct rerun of the default's 4-λ design meets it in 92–97% of simulated cells, `inside` "
        f'in 74–89% (docs/metrics.md, "Reruns and budgets").\n\n'
        f"C1–C3: same verdict word in {int(claims['same_verdict'].sum())} of {len(claims)}; `inside` 1 in "
        f"{int((inside == 1).sum())} of {len(inside)} judged cells, `within` 1 in {int((within == 1).sum())} of "
        f"{len(within)}.\n\n" + table_to_markdown(table) + "\n"
    )
    return [stem.with_suffix(".csv"), stem.with_suffix(".md")]


def run_summary(workdir: str | Path) -> str:
    """What a finished run shows on the terminal: its verdict table (or, for a sweep without one,
    the SAEs' count) and the absolute paths of its tables and figures; empty before aggregation."""
    workdir = Path(workdir).resolve()
    tables, figures = workdir / "results" / "tables", workdir / "figures"
    if not (tables / "metrics.csv").exists():
        return ""
    lines = []
    verdicts = tables / "verdicts.md"
    if verdicts.exists():
        body = verdicts.read_text().split("\n\n")
        table = next((b for b in body if b.lstrip().startswith("|")), "")
        lines += ["saerepro: the paper's claims judged on this run (verdicts.md):", table.rstrip(), ""]
    else:
        n = len(pd.read_csv(tables / "metrics.csv"))
        lines.append(f"saerepro: {n} SAE(s) evaluated (metrics.csv)")
    lines.append(f"saerepro: tables in {tables}")
    if figures.is_dir():
        lines.append(f"saerepro: figures in {figures}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- freshness


def freshness(run: CommittedRun, repo: Path = REPO) -> dict:
    """What changed since ``run``'s rows were made: per commit its rows name, the metric-moving
    files that differ now, and whether the rows' config hash is still the config's."""

    rows = pd.read_csv(repo / run.table_path, dtype=str)
    changed: dict[str, list[str]] = {}
    for commit in sorted(set(rows["git_commit"])):
        base = commit.removesuffix("-dirty")
        try:
            changed[commit] = changed_since(repo, base, run.paths)
        except ValueError:
            changed[commit] = ["(commit not in this repository)"]
    now = config_hash(load_config(repo / run.config))
    return {"changed": changed, "config_hash_now": now, "config_hash_rows": sorted(set(rows["config_hash"]))}


def freshness_markdown(repo: Path = REPO) -> str:
    """The listing ``docs/results.md`` carries: one entry per committed run."""
    lines = []
    for run in COMMITTED_RUNS:
        if not (repo / run.table_path).exists():
            continue
        f = freshness(run, repo)
        files = sorted({p for ps in f["changed"].values() for p in ps})
        commits = ", ".join(f"`{c[:10]}`" for c in f["changed"])
        head = f"- **{run.name}** (`{run.table_path}`, made at {commits})"
        if f["config_hash_rows"] != [f["config_hash_now"]]:
            head += f"; config hash now `{f['config_hash_now']}`, rows `{'`, `'.join(f['config_hash_rows'])}`"
        if any(c.endswith("-dirty") for c in f["changed"]):
            head += "; some rows were made from uncommitted code"
        if not files:
            lines.append(head + ": fresh, no metric-moving file changed since.")
            continue
        same_hash = f["config_hash_rows"] == [f["config_hash_now"]]
        named = [f"`{p}` (same config hash)" if p == run.config and same_hash else f"`{p}`" for p in files]
        lines.append(head + f": {len(files)} metric-moving file(s) changed since:")
        lines.append("  " + ", ".join(named) + ".")
    return "\n".join(lines) + "\n"


def _verdict_word(cell: str) -> str:
    for word in _VERDICT_WORDS:
        if cell.startswith(word):
            return word
    return cell.split(":")[0]


def _hook_points(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def readme_results_markdown(repo: Path = REPO) -> str:
    """The README's results block, written from the committed verdict tables and manifests of the
    long run (the headline: a table and one line per claim) and the default run (a table), so every
    number the README quotes is a committed one (a test keeps the README equal to this)."""
    out = []
    for name, heading in (("long", "Long run"), ("default", "Default run")):
        run = get_run(name)
        verdicts = pd.read_csv(repo / run.tables / "verdicts.csv", dtype=str)
        m = read_manifest(run, repo)
        machines = ", ".join(m["machines"])
        wall = f", {m['wall_seconds'] / 60:.0f} min" if m.get("wall_seconds") else ""
        out.append(
            f"**{heading}** ({f'`make {run.make}`, ' if run.make else ''}`{run.config}`: {m['n_saes']} SAEs, "
            f"made {m['made']} on {machines}"
            f"{wall}; verdicts with their reasons in `{run.tables}/verdicts.md`, figures in `{run.figures}/`):"
        )
        out.append("")
        keyed = name == "long"
        cols = (["layer", "site"] if keyed else ["site"]) + list(README_CLAIMS.values())
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + " --- |" * len(cols))
        for _, r in verdicts.iterrows():
            key = [r["Layer"], r["Site"]] if keyed else [r["Site"]]
            out.append("| " + " | ".join(key + [r[c] for c in README_CLAIMS]) + " |")
        out.append("")
        if not keyed:
            continue
        # the ablations' claims come from the extras run once it is committed (the long run has none)
        extras = get_run("extras")
        ablations = repo / extras.tables / "verdicts.csv"
        for claim in [*README_CLAIMS, "C4", "C5"]:
            source, where = verdicts, ""
            if claim in ("C4", "C5") and ablations.exists():
                source, where = pd.read_csv(ablations, dtype=str), f" (`make {extras.make}`)"
            by_word: dict[str, list[str]] = {}
            for _, r in source.iterrows():
                by_word.setdefault(_verdict_word(r[claim]), []).append(f"layer-{r['Layer']} {r['Site']}")
            if where and set(by_word) != {"not run"}:
                by_word.pop("not run", None)
            order = sorted(
                by_word, key=lambda w: _VERDICT_ORDER.index(w) if w in _VERDICT_ORDER else len(_VERDICT_ORDER)
            )
            said = "; ".join(f"{w} at {_hook_points(by_word[w])}" for w in order)
            out.append(f"- **{claim}**{where}: {said}.")
        out.append("")
    return "\n".join(out)


def update_doc(doc: Path, text: str, begin: str = FRESHNESS_BEGIN, end: str = FRESHNESS_END) -> bool:
    """Replace the block between the ``begin`` and ``end`` markers of ``doc`` by ``text``; True if it changed."""
    old = doc.read_text()
    start, stop = old.index(begin) + len(begin), old.index(end)
    new = old[:start] + "\n" + text + old[stop:]
    doc.write_text(new)
    return new != old


def doc_block(doc: Path, begin: str = FRESHNESS_BEGIN, end: str = FRESHNESS_END) -> str:
    text = doc.read_text()
    return text[text.index(begin) + len(begin) : text.index(end)].lstrip("\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saerepro.manifest", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("promote", help="copy runs/<run>/ into the committed results and write its manifest")
    p.add_argument("run")
    p.add_argument("--note", default="")
    w = sub.add_parser("write", help="(re)write the manifest of a committed run from its tables")
    w.add_argument("run")
    w.add_argument("--wall-seconds", type=float)
    w.add_argument("--made", help="ISO date the run finished (default: the date of its newest commit)")
    w.add_argument("--note", default="")
    f = sub.add_parser("freshness", help="print (or --update a doc with) what changed since each committed run")
    f.add_argument("--update", type=Path)
    r = sub.add_parser("readme", help="print (or --update README.md with) the results block from the verdict tables")
    r.add_argument("--update", type=Path)
    c = sub.add_parser("compare", help="(re)write a committed rerun's comparison with the run it repeats")
    c.add_argument("run")
    args = parser.parse_args(argv)
    if args.command == "promote":
        print(f"saerepro: wrote {promote(get_run(args.run), note=args.note)}")
    elif args.command == "write":
        path = write_manifest(get_run(args.run), made=args.made, wall_seconds=args.wall_seconds, note=args.note)
        print(f"saerepro: wrote {path}")
    elif args.command == "compare":
        for path in write_rerun_comparison(get_run(args.run)):
            print(f"saerepro: wrote {path}")
    elif args.command == "readme":
        if args.update:
            changed = update_doc(args.update, readme_results_markdown(), README_BEGIN, README_END)
            print(f"saerepro: {args.update} {'updated' if changed else 'already up to date'}")
        else:
            sys.stdout.write(readme_results_markdown())
    elif args.update:
        changed = update_doc(args.update, freshness_markdown())
        print(f"saerepro: {args.update} {'updated' if changed else 'already up to date'}")
    else:
        sys.stdout.write(freshness_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
