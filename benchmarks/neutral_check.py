"""Check that commits which touch metric-moving files leave the metrics as they were.

The committed default-run table goes stale (``saerepro.provenance.stale_reasons``) as soon as a
metric-moving file changes after the commit it was made at, and regenerating it takes hours. A
refactor, a new option whose default keeps the old behaviour, or dead-code removal does not move
a metric; this script shows that it does not:

1. it shrinks the default config (config/config.yaml of each commit) to a run of minutes that keeps
   every setting but the sizes (tokens, eval tokens, one coefficient per architecture and site);
2. it runs that config through the whole DAG at BASE and at HEAD (git worktrees, same machine,
   same threads, shared resources/);
3. it compares the two metrics tables byte for byte, every column but the commit and the timings
   (the config hash included).

A change of the table's schema is allowed when every column both tables have is identical: a
removed column, or an added one whose value is the same in every row (a key such as ``corpus``).
With ``--record`` and identical tables it appends an entry to results/neutral_changes.json; commit
that file, and the freshness test treats the metric-moving commits in (BASE, HEAD] as checked. If
the schema changed, ``--migrate results/tables/metrics.csv`` applies the recorded change to a
committed table (drops the removed columns, adds the added ones with their one value); the
freshness test fails while a committed table still has the old schema.
What it cannot see: code paths the shrunk config does not reach (another architecture, a size
threshold); bit-identity is only asserted on one machine (BLAS rounding differs across CPUs).

    .venv/bin/python benchmarks/neutral_check.py <base-commit> [<head-commit>] [--record]
    .venv/bin/python benchmarks/neutral_check.py --migrate results/tables/metrics.csv
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: Columns that differ between two runs of the same code: where and how long it ran.
IGNORED_COLUMNS = ("git_commit", "train_seconds", "eval_seconds")


def shrink(raw: dict) -> dict:
    """The default config at minutes' scale: every setting kept but the sizes."""
    raw = json.loads(json.dumps(raw))
    raw["corpus"]["train_tokens"] = 8192
    raw["reference"]["eval_tokens"] = 512
    raw["reference"]["batch_size"] = 4
    raw["train"]["tokens"] = 8192
    raw["train"]["batch_size"] = 256
    raw["train"]["warmup_steps"] = 4
    raw["train"]["checkpoint_every_steps"] = 8
    for arch in raw["architectures"].values():
        arch["coefficients"] = arch["coefficients"][:1]
        for site, coefficients in arch.get("site_coefficients", {}).items():
            arch["site_coefficients"][site] = coefficients[:1]
    return raw


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def run_at(commit: str, work: Path, resources: Path, cores: int) -> Path:
    """The shrunk default config run at ``commit``; returns its metrics.csv."""
    tree = work / commit[:12]
    if not tree.exists():
        git("worktree", "add", "--detach", str(tree), commit)
    raw = yaml.safe_load((tree / "config" / "config.yaml").read_text())
    config = work / f"{commit[:12]}.yaml"
    config.write_text(yaml.safe_dump(shrink(raw)))
    run_dir = tree / "runs" / "neutral"
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", MPLBACKEND="Agg")
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile",
        str(tree / "Snakefile"),
        "-d",
        str(run_dir),
        "--configfile",
        str(config),
        "--config",
        f"resources_dir={resources}",
        "--cores",
        str(cores),
        # a fresh working directory has no Snakemake metadata: without this, the shared model and
        # corpus in resources/ would be rebuilt by every check
        "--rerun-triggers",
        "mtime",
    ]
    print(f"[neutral_check] {commit[:12]}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, env=env, check=True)
    return run_dir / "results" / "tables" / "metrics.csv"


KEYS = ("model", "corpus", "layer", "site", "architecture", "coefficient", "seed")


def comparable(path: Path, columns: list[str] | None = None) -> tuple[list[str], str]:
    """The table's columns that must match (``columns`` if given), and their canonical text (rows
    sorted by the key columns)."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    cols = [c for c in df.columns if c not in IGNORED_COLUMNS and (columns is None or c in columns)]
    keys = [c for c in KEYS if c in cols]
    return cols, df[cols].sort_values(keys).to_csv(index=False)


def schema_change(base: Path, head: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """(columns added at head with their one value, columns removed, problems): an added column
    must hold one value in every row, or it could not be added to a committed table without a rerun."""
    import pandas as pd

    a = pd.read_csv(base, dtype=str, keep_default_na=False)
    b = pd.read_csv(head, dtype=str, keep_default_na=False)
    added, problems = {}, []
    for c in b.columns:
        if c in a.columns or c in IGNORED_COLUMNS:
            continue
        values = sorted(set(b[c]))
        if len(values) == 1:
            added[c] = values[0]
        else:
            problems.append(f"added column {c!r} holds {len(values)} values ({values[:3]}...): rerun instead")
    removed = [c for c in a.columns if c not in b.columns and c not in IGNORED_COLUMNS]
    return added, removed, problems


def migrate(table: Path, ledger_entries: list[dict]) -> list[str]:
    """Apply every recorded schema change to a committed ``table`` in place; returns what changed."""
    import pandas as pd

    df = pd.read_csv(table, dtype=str, keep_default_na=False)
    done = []
    for e in ledger_entries:
        for c in e.get("columns_removed", []):
            if c in df.columns:
                df = df.drop(columns=c)
                done.append(f"dropped {c}")
        for c, value in e.get("columns_added", {}).items():
            if c not in df.columns:
                at = list(df.columns).index("model") + 1 if c in KEYS and "model" in df.columns else len(df.columns)
                df.insert(at, c, value)
                done.append(f"added {c}={value}")
    if done:
        df.to_csv(table, index=False)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?")
    parser.add_argument("head", nargs="?", default="HEAD")
    parser.add_argument("--migrate", metavar="TABLE", help="apply the ledger's schema changes to a committed table")
    parser.add_argument("--record", action="store_true", help="append the result to results/neutral_changes.json")
    parser.add_argument("--resources", default=str(REPO / "resources"), help="shared resources/ (absolute)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--work",
        help="keep the worktrees and runs in this folder (default: a temporary one, removed): a later "
        "check against the same base then finds the base's run up to date",
    )
    args = parser.parse_args()
    if args.migrate:
        from saerepro.provenance import read_neutral_ledger

        done = migrate(Path(args.migrate), read_neutral_ledger(REPO))
        print(f"[neutral_check] {args.migrate}: {', '.join(done) or 'already in the current schema'}")
        return 0
    if args.base is None:
        parser.error("base is required (or --migrate TABLE)")
    base, head = git("rev-parse", args.base), git("rev-parse", args.head)
    with tempfile.TemporaryDirectory(prefix="neutral-") as tmp:
        work = Path(args.work).resolve() if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            tables = [run_at(c, work, Path(args.resources).resolve(), args.cores) for c in (base, head)]
            added, removed, problems = schema_change(tables[0], tables[1])
            common = [c for c in comparable(tables[1])[0] if c not in added]
            (cols_a, text_a), (cols_b, text_b) = comparable(tables[0], common), comparable(tables[1], common)
        finally:
            for c in (base, head) if not args.work else ():
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / c[:12])], capture_output=True
                )
    identical = cols_a == cols_b and text_a == text_b and not problems
    n_rows = text_b.count("\n") - 1
    print(
        f"[neutral_check] {base[:12]} -> {head[:12]}: {n_rows} rows x {len(cols_b)} common columns "
        f"{'IDENTICAL' if identical else 'DIFFER'}; columns added {added or 'none'}, removed {removed or 'none'}"
    )
    for p in problems:
        print(f"[neutral_check] {p}")
    if not identical:
        import difflib

        sys.stdout.writelines(
            difflib.unified_diff(text_a.splitlines(True), text_b.splitlines(True), base[:12], head[:12], n=0)
        )
        return 1
    if args.record:
        from saerepro.provenance import NEUTRAL_LEDGER, cpu_model

        ledger = REPO / NEUTRAL_LEDGER
        entries = json.loads(ledger.read_text()) if ledger.exists() else []
        entries.append(
            {
                "base": base,
                "head": head,
                "identical": True,
                "subjects": git("log", "--format=%h %s", f"{base}..{head}").splitlines(),
                "rows": n_rows,
                "columns": len(cols_b),
                "columns_added": added,
                "columns_removed": removed,
                "ignored_columns": list(IGNORED_COLUMNS),
                "table_sha256": hashlib.sha256(text_b.encode()).hexdigest(),
                "cpu_model": cpu_model(),
                "cores": args.cores,
                "checked": datetime.date.today().isoformat(),
            }
        )
        ledger.write_text(json.dumps(entries, indent=1) + "\n")
        print(f"[neutral_check] recorded in {NEUTRAL_LEDGER}: commit it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
