"""Aggregation: the sweep's per-SAE metrics rows into metrics.csv and the tables beside it.

Also lists the configured SAEs that have no metrics (``missing_runs.csv``), each SAE's training
health (``training_health.csv``, :mod:`saerepro.health`), and refuses rows from more than one
config hash (:class:`MixedConfigError`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from . import paths
from .config import Config
from .health import SPIKE_FLAG, training_health
from .io import atomic_path
from .tables import (
    KEY_COLUMNS,
    TIMING_COLUMNS,
    validate_metrics_table,
    write_half_l0_table,
    write_model_tables,
    write_seed_spread_table,
)
from .verdicts import RULES, VerdictRules, rules_from_config, write_verdicts

log = logging.getLogger("saerepro")


class MixedConfigError(RuntimeError):
    """Rows of one table were produced under different shared settings (config hashes)."""


def check_config_hashes(rows: pd.DataFrame, allow: bool = False) -> None:
    """Refuse rows from more than one config hash unless ``allow`` (config ``allow_mixed_configs``)."""
    counts = rows["config_hash"].value_counts()
    if len(counts) > 1:
        listing = ", ".join(f"{h} ({n} rows)" for h, n in counts.items())
        message = (
            f"metrics rows come from {len(counts)} different config hashes: {listing}. They were "
            "trained under different shared settings (saerepro.provenance); rerun the stale "
            "SAEs (snakemake --forcerun train) or set allow_mixed_configs: true"
        )
        if not allow:
            raise MixedConfigError(message)
        log.warning("%s (allowed by allow_mixed_configs)", message)


MISSING_COLUMNS = ["model", "corpus", "layer", "site", "architecture", "coefficient", "seed", "stage_not_done", "log"]


def missing_runs(cfg: Config) -> tuple[list[str], pd.DataFrame]:
    """The metrics files of the sweep that exist, and a table of the runs that have none.

    A missing run is listed with the stage that did not finish (``train`` if it has no
    train_info.json, else ``evaluate``) and that stage's log file.
    """
    found, missing = [], []
    for run in cfg.runs():
        path = paths.fill(paths.METRICS, run)
        if Path(path).exists():
            found.append(path)
            continue
        stage = "evaluate" if Path(paths.fill(paths.TRAIN_INFO, run)).exists() else "train"
        log_path = f"logs/{stage}/{run.run_dir}.log"
        missing.append(
            {
                "model": run.model,
                "corpus": run.corpus,
                "layer": run.layer,
                "site": run.site,
                "architecture": run.architecture,
                "coefficient": run.coefficient,
                "seed": run.seed,
                "stage_not_done": stage,
                "log": log_path,
            }
        )
    return found, pd.DataFrame(missing, columns=MISSING_COLUMNS)


def _write_missing(missing: pd.DataFrame, tables_dir: Path) -> None:
    with atomic_path(Path(tables_dir) / "missing_runs.csv") as tmp:
        missing.to_csv(tmp, index=False)


def aggregate(
    cfg: Config, metric_files: list[str], table_path: Path, missing: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per SAE into ``metrics.csv``; timings, paper-style, half-the-L0 and claim-verdict
    (:mod:`saerepro.verdicts`) tables beside it.

    ``missing`` (from :func:`missing_runs`) lists configured SAEs without metrics; they are
    written to ``missing_runs.csv`` (header only when none are missing) and named in the log.
    """
    table_path = Path(table_path)
    if missing is None:
        missing = pd.DataFrame(columns=MISSING_COLUMNS)
    if len(missing):
        log.warning(
            "%d configured SAE(s) have no metrics and are not in the tables (see %s):\n%s",
            len(missing),
            table_path.parent / "missing_runs.csv",
            missing.to_string(index=False),
        )
    _write_missing(missing, table_path.parent)
    if not metric_files:
        raise RuntimeError("no SAE has metrics yet: nothing to aggregate")
    rows = pd.DataFrame([json.loads(Path(f).read_text()) for f in metric_files])
    check_config_hashes(rows, allow=cfg.allow_mixed_configs)
    # A fully dead SAE (no latent fires on the eval tokens) has no defined gamma; it is listed,
    # not averaged in. Any other NaN is an error (validate_metrics_table refuses it).
    dead = rows["alive_frac"] == 0
    dead_path = table_path.parent / "dead_saes.csv"
    if dead.any():
        log.warning(
            "%d SAE(s) have no live latent and are left out of the tables:\n%s",
            int(dead.sum()),
            rows.loc[dead, ["site", "architecture", "coefficient", "seed"]],
        )
        with atomic_path(dead_path) as tmp:
            rows[dead].to_csv(tmp, index=False)
    elif dead_path.exists():
        dead_path.unlink()
    timings = rows[list(KEY_COLUMNS) + [c for c in TIMING_COLUMNS if c in rows.columns]]
    df = validate_metrics_table(
        rows[~dead].drop(columns=[c for c in TIMING_COLUMNS if c in rows.columns]).reset_index(drop=True)
    )
    return write_tables(df, timings, training_health(metric_files), table_path, rules_from_config(cfg))


def write_tables(
    df: pd.DataFrame, timings: pd.DataFrame, health: pd.DataFrame, table_path: Path, rules: VerdictRules = RULES
) -> pd.DataFrame:
    """``df`` (validated metrics rows) sorted by key into ``table_path``; ``timings`` and ``health``
    beside it, and the paper-style, half-the-L0, verdict and seed-spread tables derived from ``df``."""
    table_path = Path(table_path)
    df = df.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)
    with atomic_path(table_path) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(table_path.parent / "timings.csv") as tmp:
        timings.sort_values(list(KEY_COLUMNS), kind="stable").to_csv(tmp, index=False)
    write_model_tables(df, table_path.parent)
    write_half_l0_table(df, table_path.parent / "half_l0")
    write_verdicts(df, table_path.parent / "verdicts", rules)
    write_seed_spread_table(df, table_path.parent / "seed_spread")
    _write_health(health, table_path.parent)
    return df


def _write_health(health: pd.DataFrame, tables_dir: Path) -> None:
    """``training_health.csv`` (:mod:`saerepro.health`), and a warning naming each diverged run."""
    with atomic_path(Path(tables_dir) / "training_health.csv") as tmp:
        health.to_csv(tmp, index=False)
    diverged = health[health["diverged"].astype(bool)] if len(health) else health
    if len(diverged):
        log.warning(
            "%d SAE(s) diverged during training (loss >= %gx its best so far; %s): their metrics are "
            "those of a damaged dictionary:\n%s",
            len(diverged),
            SPIKE_FLAG,
            Path(tables_dir) / "training_health.csv",
            diverged.to_string(index=False),
        )


def aggregate_finished(cfg: Config, table_path: Path = Path(paths.METRICS_TABLE)) -> pd.DataFrame | None:
    """Aggregate whatever SAEs finished (after a run with failures, e.g. ``--keep-going``).

    Lists the missing runs in ``missing_runs.csv`` and the log. Returns None (and writes only
    ``missing_runs.csv``) if no SAE finished.
    """
    found, missing = missing_runs(cfg)
    if not found:
        log.warning("no SAE of the sweep has metrics; %d missing, nothing to aggregate", len(missing))
        _write_missing(missing, Path(table_path).parent)
        return None
    return aggregate(cfg, found, table_path, missing=missing)
