"""How far two metrics tables of the same SAEs disagree: a rerun on another machine, thread count
or commit against the committed table.

    .venv/bin/python benchmarks/compare_tables.py OLD NEW [--query "k == 0"] [--csv OUT]

OLD and NEW are ``metrics.csv`` files, or ``REF:path`` for a file as git stores it at REF (e.g.
``HEAD:results/long/tables/metrics.csv``); an inference-time-optimisation table works too, cut by
``--query`` to one k. For the SAEs both hold (same key columns) it prints each
metric's differences NEW − OLD, in its own units and in units of the OLD row's paired standard
error where the table has one (``<metric>_se``), and which provenance columns differ (CPU model,
activation cache, commit). An evaluation SE measures the noise of the eval-token sample, so
|Δ| / SE well below 1 means the two tables would support the same claims at that SE.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from saerepro.tables import KEY_COLUMNS  # noqa: E402

METRICS = (
    "l0",
    "loss_recovered",
    "delta_lm_loss",
    "gamma",
    "gamma_c",
    "alive_frac",
    "nmse",
    "kl",
    "ce_zero",
    "ce_clean",
)
PROVENANCE = ("cpu_model", "cpu_capability", "cache_sha256", "git_commit", "config_hash")


def read(spec: str) -> pd.DataFrame:
    """A metrics table from a path, or from ``REF:path`` in this repository's history."""
    if ":" in spec and not Path(spec).exists():
        text = subprocess.run(["git", "show", spec], cwd=REPO, check=True, capture_output=True, text=True).stdout
        return pd.read_csv(io.StringIO(text))
    return pd.read_csv(spec)


def compare(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One row per shared SAE key: ``d_<metric>`` = new − old and ``z_<metric>`` = d / old SE."""
    key = [c for c in KEY_COLUMNS if c in old and c in new]
    both = old.merge(new, on=key, suffixes=("_old", "_new"), validate="one_to_one")
    out = both[key].copy()
    for m in METRICS:
        if f"{m}_old" not in both or f"{m}_new" not in both:
            continue
        out[f"d_{m}"] = both[f"{m}_new"] - both[f"{m}_old"]
        if f"{m}_se_old" in both:
            out[f"z_{m}"] = out[f"d_{m}"] / both[f"{m}_se_old"]
    for p in PROVENANCE:
        if f"{p}_old" in both and f"{p}_new" in both:
            out[f"same_{p}"] = both[f"{p}_old"].astype(str) == both[f"{p}_new"].astype(str)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--query", help="pandas query both tables are cut to first, e.g. 'k == 0'")
    ap.add_argument("--csv", help="write the per-SAE differences here")
    args = ap.parse_args(argv)
    old, new = read(args.old), read(args.new)
    if args.query:
        old, new = old.query(args.query), new.query(args.query)
    diff = compare(old, new)
    print(f"{len(diff)} SAEs in both ({len(old)} in OLD, {len(new)} in NEW)")
    for p in PROVENANCE:
        if f"same_{p}" in diff:
            same = int(diff[f"same_{p}"].sum())
            print(f"  {p:15s} same in {same} of {len(diff)}", end="")
            if p.startswith("cpu") and f"{p}" in old and p in new:
                print(
                    f"  (OLD: {', '.join(sorted(set(old[p].astype(str))))}; NEW: {', '.join(sorted(set(new[p].astype(str))))})"
                )
            else:
                print()
    print(f"\n{'metric':16s} {'median |d|':>11s} {'max |d|':>10s} {'median |d|/SE':>14s} {'max |d|/SE':>11s}")
    for m in METRICS:
        if f"d_{m}" not in diff:
            continue
        d = diff[f"d_{m}"].abs()
        z = diff[f"z_{m}"].abs() if f"z_{m}" in diff else None
        zs = f"{z.median():14.2f} {z.max():11.2f}" if z is not None else f"{'':14s} {'':11s}"
        print(f"{m:16s} {d.median():11.3g} {d.max():10.3g} {zs}")
    if "z_loss_recovered" in diff:
        worst = diff.reindex(diff["z_loss_recovered"].abs().sort_values(ascending=False).index).head(5)
        cols = [c for c in KEY_COLUMNS[2:6] if c in diff] + ["d_l0", "d_loss_recovered", "z_loss_recovered"]
        print("\nlargest loss-recovered differences:\n" + worst[cols].to_string(index=False))
    if args.csv:
        diff.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
