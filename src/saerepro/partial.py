"""Tables and figures from whatever SAEs of a run have finished, while it is still running or after
it was stopped. A long run spans sessions on a small machine; this shows where it stands without
waiting for Snakemake's ``aggregate`` rule, which needs every SAE.

    .venv/bin/python -m saerepro.partial config/long.yaml --run-dir runs/long \\
        --tables results/long/tables --figures figures/long        # what `make long-partial` runs

Writes what ``aggregate`` and ``figures`` write (metrics.csv with every finished SAE, the per-model,
half-L0 and verdict tables, ``missing_runs.csv`` listing the rest, every figure), and, when the run
has inference-time-optimisation tables, copies them under ``<tables>/inference_opt/`` and draws
Figs. 10-11 from them. Reads only finished outputs (``metrics.json``, the ``inference_opt`` CSVs),
so it is safe beside a running Snakemake.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import yaml

from . import paths
from .config import Config, load_config

log = logging.getLogger(__name__)


def aggregate_partial(cfg: Config, tables_dir: Path, figures_dir: Path) -> pd.DataFrame | None:
    """Aggregate the finished SAEs of ``cfg``'s run (results/ found from the working directory) into
    ``tables_dir`` and ``figures_dir``; None if no SAE has finished (then only missing_runs.csv)."""
    from .pilot import apply_pilot
    from .pipeline import aggregate_available
    from .plotting import figures_from_tables, plot_inference_opt, plot_inference_opt_decoders

    tables_dir, figures_dir = Path(tables_dir).resolve(), Path(figures_dir).resolve()
    figures_dir.mkdir(parents=True, exist_ok=True)
    df = aggregate_available(apply_pilot(cfg), tables_dir / "metrics.csv", figures_dir=None)
    if df is not None:
        figures_from_tables(tables_dir, figures_dir, headline_layer=cfg.headline)
    ito = sorted(Path(paths.TABLES, "inference_opt").glob("*.csv"))
    if ito:
        (tables_dir / "inference_opt").mkdir(parents=True, exist_ok=True)
        for table in ito:
            shutil.copyfile(table, tables_dir / "inference_opt" / table.name)
        rows = pd.concat([pd.read_csv(t) for t in ito], ignore_index=True)
        plot_inference_opt_decoders(rows, figures_dir / "fig10_inference_opt_decoders", layer=cfg.headline)
        plot_inference_opt(rows, figures_dir / "fig11_inference_opt_frontiers", layer=cfg.headline)
    log.info("%s SAE(s) tabulated, %d inference-time-optimisation table(s)", 0 if df is None else len(df), len(ito))
    return df


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the run's config, e.g. config/long.yaml")
    parser.add_argument("--run-dir", default=".", help="the run's working directory (holds results/)")
    parser.add_argument("--tables", required=True, help="folder for the tables (replaced)")
    parser.add_argument("--figures", required=True, help="folder for the figures")
    parser.add_argument("--resources-dir", default="resources", help="the shared resources/ folder, relative to here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raw = yaml.safe_load(Path(args.config).read_text())
    raw["resources_dir"] = str(Path(args.resources_dir).resolve())
    tables, figures = Path(args.tables).resolve(), Path(args.figures).resolve()
    if tables.exists():
        shutil.rmtree(tables)
    with _chdir(args.run_dir):
        df = aggregate_partial(load_config(raw), tables, figures)
    if df is None:
        raise SystemExit(f"no SAE of {args.config} has finished in {args.run_dir}: see {tables}/missing_runs.csv")


@contextlib.contextmanager
def _chdir(path):
    """``contextlib.chdir`` (Python 3.11+), for 3.10: results/ paths are relative to the run's folder."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


if __name__ == "__main__":
    main()
