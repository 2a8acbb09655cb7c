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

``--prior results/long/tables`` continues a run on a machine that does not have its earlier SAEs
(a new session's machine starts without ``runs/``): the rows of the earlier tables (metrics,
timings, training health, inference-time optimisation) are kept for every SAE this run folder has
not finished, and this folder's rows replace the others. Each row keeps its own provenance
(``git_commit``, ``cpu_model``), and the config hashes must still agree.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from . import paths
from .aggregate import check_config_hashes, write_tables
from .config import Config, load_config
from .pilot import apply_pilot
from .pipeline import aggregate_available
from .tables import KEY_COLUMNS, read_metrics_table, validate_metrics_table
from .verdicts import rules_from_config

log = logging.getLogger(__name__)


def aggregate_partial(
    cfg: Config, tables_dir: Path, figures_dir: Path, prior: PriorTables | None = None
) -> pd.DataFrame | None:
    """Aggregate the finished SAEs of ``cfg``'s run (results/ found from the working directory) into
    ``tables_dir`` and ``figures_dir``, merged with ``prior``'s rows where given (:func:`merge_prior`);
    None if no SAE has finished and there is no prior (then only missing_runs.csv)."""
    from .figures import figures_from_tables, plot_inference_opt, plot_inference_opt_decoders

    tables_dir, figures_dir = Path(tables_dir).resolve(), Path(figures_dir).resolve()
    figures_dir.mkdir(parents=True, exist_ok=True)
    cfg = apply_pilot(cfg)
    df = aggregate_available(cfg, tables_dir / "metrics.csv", figures_dir=None)
    ito = {t.name: pd.read_csv(t) for t in sorted(Path(paths.TABLES, "inference_opt").glob("*.csv"))}
    if prior is not None:
        df = merge_prior(cfg, prior, tables_dir)
        ito = {**prior.ito, **ito}
    if df is not None:
        figures_from_tables(tables_dir, figures_dir, headline_layer=cfg.headline)
    if ito:
        (tables_dir / "inference_opt").mkdir(parents=True, exist_ok=True)
        for name, table in sorted(ito.items()):
            table.to_csv(tables_dir / "inference_opt" / name, index=False)
        rows = pd.concat(list(ito.values()), ignore_index=True)
        plot_inference_opt_decoders(rows, figures_dir / "fig10_inference_opt_decoders", layer=cfg.headline)
        plot_inference_opt(rows, figures_dir / "fig11_inference_opt_frontiers", layer=cfg.headline)
    log.info("%s SAE(s) tabulated, %d inference-time-optimisation table(s)", 0 if df is None else len(df), len(ito))
    return df


@dataclass
class PriorTables:
    """An earlier machine's tables of the same run (read before ``--tables`` is replaced)."""

    metrics: pd.DataFrame
    timings: pd.DataFrame
    health: pd.DataFrame
    ito: dict[str, pd.DataFrame]

    @classmethod
    def read(cls, folder: str | Path) -> PriorTables:
        folder = Path(folder)
        optional = {
            n: pd.read_csv(folder / n) if (folder / n).exists() else pd.DataFrame()
            for n in ("timings.csv", "training_health.csv")
        }
        ito = {t.name: pd.read_csv(t) for t in sorted((folder / "inference_opt").glob("*.csv"))}
        return cls(
            read_metrics_table(folder / "metrics.csv"), optional["timings.csv"], optional["training_health.csv"], ito
        )


def _newest_first(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``new`` and ``old``, one per SAE key, ``new``'s where both have it."""

    frames = [f for f in (new, old) if len(f)]
    if not frames:
        return new
    return pd.concat(frames, ignore_index=True).drop_duplicates(subset=list(KEY_COLUMNS), keep="first")


def merge_prior(cfg: Config, prior: PriorTables, tables_dir: Path) -> pd.DataFrame:
    """``tables_dir``'s tables (this run folder's finished SAEs, possibly none) merged with
    ``prior``'s: every table rewritten, ``missing_runs.csv`` cut to the SAEs neither has."""

    def here(name: str) -> pd.DataFrame:
        path = tables_dir / name
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    new = read_metrics_table(tables_dir / "metrics.csv") if (tables_dir / "metrics.csv").exists() else pd.DataFrame()
    metrics = validate_metrics_table(_newest_first(new, prior.metrics))
    check_config_hashes(metrics, allow=cfg.allow_mixed_configs)
    log.info("%d SAE(s) from this run folder, %d from the prior tables", len(new), len(metrics) - len(new))
    df = write_tables(
        metrics,
        _newest_first(here("timings.csv"), prior.timings),
        _newest_first(here("training_health.csv"), prior.health),
        tables_dir / "metrics.csv",
        rules_from_config(cfg),
    )
    missing = here("missing_runs.csv")
    if len(missing):
        key = list(KEY_COLUMNS)
        done = missing[key].merge(df[key], how="left", indicator=True)["_merge"].eq("both").to_numpy()
        missing[~done].to_csv(tables_dir / "missing_runs.csv", index=False)
    return df


def missing_targets(cfg: Config, metrics: pd.DataFrame) -> list[str]:
    """The ``metrics.json`` path (relative to a run folder) of every SAE of ``cfg`` that has no row
    in ``metrics``: what a run continued on a new machine still has to train and evaluate."""

    def key(model, corpus, layer, site, architecture, coefficient, seed):
        return (str(model), str(corpus), int(layer), str(site), str(architecture), float(coefficient), int(seed))

    columns = list(KEY_COLUMNS)
    done = {key(*row) for row in metrics[columns].itertuples(index=False, name=None)}
    return [
        paths.fill(paths.METRICS, r)
        for r in apply_pilot(cfg).runs()
        if key(*(getattr(r, c) for c in columns)) not in done
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the run's config, e.g. config/long.yaml")
    parser.add_argument("--run-dir", default=".", help="the run's working directory (holds results/)")
    parser.add_argument("--tables", help="folder for the tables (replaced)")
    parser.add_argument("--figures", help="folder for the figures")
    parser.add_argument("--resources-dir", default="resources", help="the shared resources/ folder, relative to here")
    parser.add_argument("--prior", help="an earlier machine's tables of this run to keep rows from (may be --tables)")
    parser.add_argument(
        "--missing-targets",
        metavar="TABLES",
        help="only print the metrics.json target of every SAE of the config that TABLES' metrics.csv lacks",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raw = yaml.safe_load(Path(args.config).read_text())
    raw["resources_dir"] = str(Path(args.resources_dir).resolve())
    if args.missing_targets:
        print("\n".join(missing_targets(load_config(raw), PriorTables.read(args.missing_targets).metrics)))
        return
    if not (args.tables and args.figures):
        parser.error("--tables and --figures are required")
    tables, figures = Path(args.tables).resolve(), Path(args.figures).resolve()
    prior = PriorTables.read(args.prior) if args.prior else None
    if tables.exists():
        shutil.rmtree(tables)
    with _chdir(args.run_dir):
        df = aggregate_partial(load_config(raw), tables, figures, prior=prior)
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
