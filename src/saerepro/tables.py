"""The long results table and the tables derived from it.

``results/tables/metrics.csv`` has one row per trained SAE, keyed by :data:`KEY_COLUMNS`, with the
training descriptors :data:`RUN_COLUMNS`, the evaluation metrics :data:`METRIC_COLUMNS`
(definitions in :mod:`saerepro.metrics`) and the provenance :data:`PROVENANCE_COLUMNS`
(:mod:`saerepro.provenance`). Wall-clock times (:data:`TIMING_COLUMNS`) go to ``timings.csv``
beside it instead: they differ between two otherwise identical runs, and metrics.csv is meant to
be byte-identical when a run is repeated. Everything else is derived from it:

* :func:`aggregate_seeds` — mean (and SEM) over seeds, the input every figure takes;
* :func:`paper_table` / :func:`write_model_tables` — per-model tables with the columns of the
  paper's Tables 1–8, as Markdown and LaTeX;
* :func:`half_l0_table` / :func:`write_half_l0_table` — the "half the L0" comparison.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .architectures import ARCHITECTURES
from .pareto import DEFAULT_LEVELS, GROUP_COLUMNS, half_l0, pareto_frontiers
from .provenance import PROVENANCE_COLUMNS
from .sites import SITES

__all__ = [
    "ALL_COLUMNS",
    "ARCHITECTURES",
    "KEY_COLUMNS",
    "METRIC_COLUMNS",
    "PAPER_COLUMNS",
    "PARETO_COLUMN",
    "PROVENANCE_COLUMNS",
    "RUN_COLUMNS",
    "SE_COLUMNS",
    "TIMING_COLUMNS",
    "MetricsTableError",
    "aggregate_seeds",
    "flattening",
    "format_table",
    "half_l0_ratio_ci",
    "half_l0_table",
    "paper_table",
    "read_metrics_table",
    "slug",
    "table_to_latex",
    "table_to_markdown",
    "validate_metrics_table",
    "write_half_l0_table",
    "write_model_tables",
]

#: One row per SAE is identified by these columns.
KEY_COLUMNS: tuple[str, ...] = ("model", "corpus", "layer", "site", "architecture", "coefficient", "seed")

#: Training descriptors carried by every row (width = number of latents; epochs = passes over the
#: activation cache; lr = learning rate).
RUN_COLUMNS: tuple[str, ...] = ("width", "tokens_trained", "epochs", "lr")

#: Wall-clock seconds per SAE: written to timings.csv (same keys), not metrics.csv.
TIMING_COLUMNS: tuple[str, ...] = ("train_seconds", "eval_seconds")

#: Evaluation metrics carried by every row; formulas in :mod:`saerepro.metrics`.
#: alive_frac is a fraction in [0, 1]; loss_recovered is a fraction (1 = clean model).
METRIC_COLUMNS: tuple[str, ...] = (
    "l0",
    "loss_recovered",
    "delta_lm_loss",
    "ce_clean",
    "ce_sae",
    "ce_zero",
    "gamma",
    "gamma_c",
    "alive_frac",
    "nmse",
    "kl",
    "loss_recovered_bos_zeroed",
    "ce_zero_bos_zeroed",
)

#: Standard errors of the metrics, paired (per-sequence differences against the clean and
#: zero-ablated model on the same tokens) and sequence-aware (the eval sequences are the independent
#: units): :func:`saerepro.metrics.paired_loss_stats`. n_eval_sequences is their number.
SE_COLUMNS: tuple[str, ...] = (
    "l0_se",
    "gamma_se",
    "gamma_c_se",
    "loss_recovered_se",
    "delta_lm_loss_se",
    "kl_se",
    "loss_recovered_bos_zeroed_se",
    "n_eval_sequences",
)

#: Every column metrics.csv must have, in this order.
ALL_COLUMNS: tuple[str, ...] = KEY_COLUMNS + RUN_COLUMNS + METRIC_COLUMNS + SE_COLUMNS + PROVENANCE_COLUMNS

_STRING_KEYS = ("model", "corpus", "site", "architecture")
_STRING_COLUMNS = _STRING_KEYS + PROVENANCE_COLUMNS
_INT_COLUMNS = ("layer", "seed", "width", "tokens_trained")


class MetricsTableError(ValueError):
    """The results table is malformed (missing columns, NaN/inf values, duplicate keys, ...)."""


def _describe_rows(df: pd.DataFrame, mask: np.ndarray, limit: int = 5) -> str:
    keys = [c for c in KEY_COLUMNS if c in df.columns]
    rows = df.loc[mask, keys].head(limit).to_dict("records")
    more = int(mask.sum()) - len(rows)
    return "; ".join(str(r) for r in rows) + (f"; ... and {more} more" if more > 0 else "")


def validate_metrics_table(df: pd.DataFrame) -> pd.DataFrame:
    """Check the long results table; return it with columns in :data:`ALL_COLUMNS` order first.

    Raises :class:`MetricsTableError` naming the problem if: a required column is missing; a
    numeric column is non-numeric or holds NaN/±inf (the offending rows' keys are named); a string
    key is empty/missing; two rows share a key; or a value is out of its range (l0 < 0,
    alive_frac ∉ [0, 1], width ≤ 0, ce_* < 0, nmse < 0, kl < 0). Extra columns are kept, after the
    required ones.
    """
    if not isinstance(df, pd.DataFrame):
        raise MetricsTableError(f"expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in ALL_COLUMNS if c not in df.columns]
    if missing:
        raise MetricsTableError(f"metrics table lacks required column(s): {', '.join(missing)}")
    problems = []
    for c in _STRING_COLUMNS:
        s = df[c]
        bad = s.isna().to_numpy() | (s.astype(str).str.strip() == "").to_numpy()
        if bad.any():
            problems.append(f"column {c!r} is empty in {int(bad.sum())} row(s): {_describe_rows(df, bad)}")
    numeric = ["layer", "coefficient", "seed", *RUN_COLUMNS, *METRIC_COLUMNS, *SE_COLUMNS]
    for c in numeric:
        vals = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        non_num = pd.isna(vals) & ~df[c].isna().to_numpy()
        if non_num.any():
            problems.append(f"column {c!r} has non-numeric value(s) in rows: {_describe_rows(df, non_num)}")
        nan = np.isnan(vals) & ~non_num
        if nan.any():
            problems.append(f"column {c!r} has NaN in {int(nan.sum())} row(s): {_describe_rows(df, nan)}")
        inf = np.isinf(vals)
        if inf.any():
            problems.append(f"column {c!r} has ±inf in {int(inf.sum())} row(s): {_describe_rows(df, inf)}")
    if problems:
        raise MetricsTableError("invalid metrics table:\n  " + "\n  ".join(problems))
    dup = df.duplicated(list(KEY_COLUMNS), keep=False).to_numpy()
    if dup.any():
        raise MetricsTableError(
            f"metrics table has {int(dup.sum())} rows with duplicate keys: {_describe_rows(df, dup)}"
        )
    ranges = {
        "l0": (0.0, np.inf),
        "alive_frac": (0.0, 1.0),
        "width": (1.0, np.inf),
        "ce_clean": (0.0, np.inf),
        "ce_sae": (0.0, np.inf),
        "ce_zero": (0.0, np.inf),
        "nmse": (0.0, np.inf),
        "kl": (0.0, np.inf),
        "tokens_trained": (0.0, np.inf),
    }
    for c, (lo, hi) in ranges.items():
        v = df[c].to_numpy(dtype=float)
        bad = (v < lo) | (v > hi)
        if bad.any():
            problems.append(f"column {c!r} outside [{lo}, {hi}] in rows: {_describe_rows(df, bad)}")
    if problems:
        raise MetricsTableError("invalid metrics table:\n  " + "\n  ".join(problems))
    extra = [c for c in df.columns if c not in ALL_COLUMNS]
    return df[list(ALL_COLUMNS) + extra]


def read_metrics_table(path: str | Path) -> pd.DataFrame:
    """Read and validate ``metrics.csv``; integer-valued columns come back as int64."""
    df = pd.read_csv(path, dtype={c: str for c in PROVENANCE_COLUMNS})
    df = validate_metrics_table(df)
    df = df.copy()
    for c in _INT_COLUMNS:
        df[c] = df[c].astype("int64")
    for c in _STRING_COLUMNS:
        df[c] = df[c].astype(str)
    return df


def aggregate_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every run/metric column, per (model, layer, site, architecture, coefficient).

    Adds ``n_seeds`` and ``<column>_sem`` (standard error of the mean over seeds; NaN when there
    is a single seed). The evaluation SEs (:data:`SE_COLUMNS`) are carried as ``<metric>_eval_se``,
    their root mean square over seeds (the seeds are evaluated on the same sequences, so their
    evaluation errors are correlated and do not average out), and ``<metric>_se`` becomes the SE
    of the seed mean, sqrt(eval_se² + sem²): with several seeds it includes what retraining moves,
    which at 1M tokens was up to 33x the evaluation SE (docs/results.md, seed spread), so
    the figures' error bars and the verdicts read it; with one seed it is the evaluation SE. A
    ``diverged`` column (:mod:`saerepro.health`) is
    carried as "any seed diverged". The input is validated first. This seed-averaged table is what
    every figure function in :mod:`saerepro.figures` takes.
    """
    df = validate_metrics_table(df)
    keys = [c for c in KEY_COLUMNS if c != "seed"]
    values = list(RUN_COLUMNS + METRIC_COLUMNS)
    g = df.groupby(keys, sort=True)
    mean = g[values].mean()
    sem = g[values].sem(ddof=1).add_suffix("_sem")
    eval_se = [c for c in SE_COLUMNS if c.endswith("_se")]
    rms = df[keys + eval_se].assign(**{c: df[c] ** 2 for c in eval_se}).groupby(keys, sort=True)[eval_se].mean() ** 0.5
    n = g.size().rename("n_seeds")
    combined = pd.DataFrame(index=rms.index)
    for c in eval_se:
        spread = sem.get(f"{c[: -len('_se')]}_sem")
        combined[c] = rms[c] if spread is None else np.sqrt(rms[c] ** 2 + spread.fillna(0.0) ** 2)
    rms = rms.rename(columns={c: f"{c[: -len('_se')]}_eval_se" for c in eval_se})
    parts = [mean, n, sem, combined, rms]
    if "diverged" in df:  # saerepro.health, merged in for the figures: any seed's blow-up shows
        parts.append(df.assign(diverged=df["diverged"].astype(bool)).groupby(keys, sort=True)["diverged"].any())
    out = pd.concat(parts, axis=1).reset_index()
    out.attrs["sae_rows"] = SaeRows(df)  # the verdicts' fitted frontiers need every seed (verdicts.sae_rows)
    return out


class SaeRows:
    """The per-SAE rows a seed-aggregated table was made from, kept in its ``attrs``. Compared by
    identity: pandas compares ``attrs`` when it concatenates frames, and DataFrames do not compare
    to a truth value."""

    def __init__(self, rows: pd.DataFrame):
        self.rows = rows

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__


# --------------------------------------------------------------------------- paper tables

#: Column of :func:`paper_table` -> source column of the metrics table. Names follow the
#: paper's Tables 1–8; "γ_c" is our addition (see :mod:`saerepro.metrics`).
PAPER_COLUMNS: dict[str, str] = {
    "Architecture": "architecture",
    "Site": "site",
    "Layer": "layer",
    "λ": "coefficient",
    "LR": "lr",
    "L0": "l0",
    "% CE recovered": "loss_recovered",
    "Clean CE loss": "ce_clean",
    "SAE CE loss": "ce_sae",
    "0-abl. CE loss": "ce_zero",
    "Width": "width",
    "% alive": "alive_frac",
    "γ": "gamma",
    "γ_c": "gamma_c",
}

_FORMATS = {
    "Layer": "{:d}",
    "λ": "{:.3g}",
    "LR": "{:.1e}",
    "L0": "{:.1f}",
    "% CE recovered": "{:.2f}",
    "Clean CE loss": "{:.3f}",
    "SAE CE loss": "{:.3f}",
    "0-abl. CE loss": "{:.3f}",
    "Width": "{:d}",
    "% alive": "{:.1f}",
    "γ": "{:.3f}",
    "γ_c": "{:.3f}",
    "Seeds": "{:d}",
    "Level": "{:.2f}",
    "L0 gated": "{:.1f}",
    "L0 baseline": "{:.1f}",
    "Ratio": "{:.2f}",
    "Ratio CI low": "{:.2f}",
    "Ratio CI high": "{:.2f}",
}

_LATEX_HEADERS = {
    "λ": r"$\lambda$",
    "% CE recovered": r"\% CE rec.",
    "% alive": r"\% alive",
    "γ": r"$\gamma$",
    "γ_c": r"$\gamma_c$",
    "0-abl. CE loss": r"0-abl.\ CE",
    "Clean CE loss": "Clean CE",
    "SAE CE loss": "SAE CE",
    "L0 gated": r"$L_0$ gated",
    "L0 baseline": r"$L_0$ baseline",
    "L0": r"$L_0$",
}


def _site_rank(site: str) -> int:
    return SITES.index(site) if site in SITES else len(SITES)


def _arch_rank(arch: str) -> int:
    return ARCHITECTURES.index(arch) if arch in ARCHITECTURES else len(ARCHITECTURES)


def paper_table(df: pd.DataFrame, model: str, architectures: Sequence[str] | None = None) -> pd.DataFrame:
    """One model's SAEs with the columns of the paper's Tables 1–8 (numeric, display headers).

    Rows are averaged over seeds (a ``Seeds`` column is added when any row has more than one),
    sorted by architecture, site (resid, mlp, attn), layer, λ. "% CE recovered" and "% alive"
    are percentages. ``architectures`` restricts and orders the architectures shown. The boolean
    column :data:`PARETO_COLUMN` marks the SAEs on their architecture's (L0, loss recovered) Pareto
    frontier at their site and layer; the Markdown and LaTeX writers show it as the paper does
    (bold rows in Markdown, italic rows in LaTeX) instead of as a column.
    """
    agg = aggregate_seeds(df)
    agg = agg[agg["model"] == model]
    if agg.empty:
        raise ValueError(f"paper_table: no rows for model {model!r}; models: {sorted(df['model'].unique())}")
    if architectures is not None:
        agg = agg[agg["architecture"].isin(list(architectures))]
    agg = agg.assign(
        _a=agg["architecture"].map(_arch_rank if architectures is None else list(architectures).index),
        _s=agg["site"].map(_site_rank),
    ).sort_values(["_a", "architecture", "_s", "site", "layer", "coefficient"])
    out = pd.DataFrame({name: agg[src].to_numpy() for name, src in PAPER_COLUMNS.items()})
    on_frontier = pareto_frontiers(agg, "l0", "loss_recovered", by=["architecture", "site", "layer"]).index
    out[PARETO_COLUMN] = agg.index.isin(on_frontier)
    out["% CE recovered"] *= 100
    out["% alive"] *= 100
    out["Layer"] = out["Layer"].astype("int64")
    out["Width"] = out["Width"].round().astype("int64")
    if (agg["n_seeds"] > 1).any():
        out["Seeds"] = agg["n_seeds"].to_numpy().astype("int64")
    return out.reset_index(drop=True)


#: Boolean column of :func:`paper_table`: the SAE is on its architecture's Pareto frontier.
PARETO_COLUMN = "Pareto-optimal"


def _split_pareto(table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    if PARETO_COLUMN not in table.columns:
        return table, np.zeros(len(table), dtype=bool)
    return table.drop(columns=[PARETO_COLUMN]), table[PARETO_COLUMN].to_numpy(dtype=bool)


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """All cells as strings, numbers formatted per column (NaN shown as "—")."""
    out = table.copy()
    for c in out.columns:
        fmt = _FORMATS.get(c)

        def f(v, fmt=fmt):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                return "—"
            if fmt is None:
                return str(v)
            if "d}" in fmt:
                return fmt.format(int(v))
            return fmt.format(float(v))

        out[c] = out[c].map(f).astype(object)
    return out


def table_to_markdown(table: pd.DataFrame) -> str:
    """GitHub Markdown of a table from :func:`paper_table` / :func:`half_l0_table`."""
    table, pareto = _split_pareto(table)
    align = ["right" if pd.api.types.is_numeric_dtype(table[c]) else "left" for c in table.columns]
    cells = format_table(table)
    cells.loc[pareto] = cells.loc[pareto].map(lambda v: f"**{v}**")
    text = cells.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"
    if pareto.any():
        text += "\nBold rows: Pareto-optimal SAEs (no SAE of the same architecture, site and layer has a lower L0 and a higher loss recovered).\n"
    return text


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "—": "--",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_ESCAPES))


def _latex_escape(s: str) -> str:
    return _LATEX_RE.sub(lambda m: _LATEX_ESCAPES[m.group()], s)


def table_to_latex(table: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A LaTeX ``tabular`` (booktabs rules) of a table from :func:`paper_table` / :func:`half_l0_table`.

    Cells are escaped; numeric columns are right-aligned. Written with ``DataFrame.to_latex``.
    """
    table, pareto = _split_pareto(table)
    f = format_table(table).map(_latex_escape)
    f.loc[pareto] = f.loc[pareto].map(lambda v: rf"\textit{{{v}}}")
    if pareto.any() and caption is not None:
        caption += " Italic rows: Pareto-optimal SAEs."
    f.columns = [_LATEX_HEADERS.get(c, _latex_escape(c)) for c in table.columns]
    align = "".join("r" if pd.api.types.is_numeric_dtype(table[c]) else "l" for c in table.columns)
    return f.to_latex(index=False, escape=False, column_format=align, caption=caption, label=label)


def slug(name: str) -> str:
    """``name`` made safe as a file name (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "model"


def write_model_tables(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``<model>.md`` and ``<model>.tex`` (paper-style tables) per model into ``out_dir``.

    Model names are made file-name safe (e.g. ``google/gemma-3-270m`` -> ``google_gemma-3-270m``).
    Returns the written paths.
    """
    df = validate_metrics_table(df)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in sorted(df["model"].unique()):
        table = paper_table(df, model)
        md, tex = out_dir / f"{slug(model)}.md", out_dir / f"{slug(model)}.tex"
        md.write_text(f"# SAEs on {model}\n\n" + table_to_markdown(table))
        tex.write_text(table_to_latex(table, caption=f"SAEs trained on {model}.", label=f"tab:{slug(model)}"))
        paths += [md, tex]
    return paths


# --------------------------------------------------------------------------- half the L0


def half_l0_table(df: pd.DataFrame, levels: Sequence[float] = DEFAULT_LEVELS) -> pd.DataFrame:
    """The "half the L0" comparison of gated vs baseline, from the long results table.

    Seeds are averaged first (:func:`aggregate_seeds`), then :func:`saerepro.pareto.half_l0` is
    applied per (model, layer, site). Columns: Model, Layer, Site, Level, L0 gated, L0 baseline,
    Ratio (= L0 baseline / L0 gated; NaN where a level lies outside a frontier), Ratio CI low /
    high (:func:`half_l0_ratio_ci`), Note.
    """
    agg = aggregate_seeds(df)
    res = half_l0(agg, levels)
    ci = half_l0_ratio_ci(agg, levels)
    res = res.assign(ci_low=ci[:, 0], ci_high=ci[:, 1])
    res = res.assign(_s=res["site"].map(_site_rank)).sort_values(["model", "layer", "_s", "site", "level"])
    out = pd.DataFrame(
        {
            "Model": res["model"].to_numpy(),
            "Layer": res["layer"].astype("int64").to_numpy(),
            "Site": res["site"].to_numpy(),
            "Level": res["level"].to_numpy(),
            "L0 gated": res["l0_gated"].to_numpy(),
            "L0 baseline": res["l0_baseline"].to_numpy(),
            "Ratio": res["ratio"].to_numpy(),
            "Ratio CI low": res["ci_low"].to_numpy(),
            "Ratio CI high": res["ci_high"].to_numpy(),
            "Note": res["note"].to_numpy(),
        }
    )
    return out.reset_index(drop=True)


def half_l0_ratio_ci(
    agg: pd.DataFrame,
    levels: Sequence[float] = DEFAULT_LEVELS,
    n_boot: int = 300,
    seed: int = 0,
    coverage: float = 0.95,
) -> np.ndarray:
    """Bootstrap interval [n_rows, 2] of each ratio of :func:`saerepro.pareto.half_l0` (same row order).

    Parametric bootstrap: each SAE's loss recovered and L0 are redrawn from normals with the
    table's paired, sequence-aware SEs (``loss_recovered_se``, ``l0_se``), independently across SAEs,
    and the frontiers and ratios recomputed. The SAEs share their eval sequences, so their errors
    are positively correlated and independent redraws overstate the noise of a comparison: the
    interval is conservative. Each hook point is redrawn on its own, from a generator seeded by
    ``seed`` and the hook point's name, so its interval does not depend on what else the table
    holds. NaN where fewer than half the redraws give a defined ratio, or where the table has no
    SE columns (e.g. a table from before they existed).
    """
    base = half_l0(agg, levels)
    out = np.full((len(base), 2), np.nan)
    if not {"loss_recovered_se", "l0_se"} <= set(agg.columns):
        return out
    n_levels = len(list(levels))
    sub = agg[agg["architecture"].isin(["gated", "baseline"])]
    start = 0  # half_l0 gives each hook point, in this groupby's order, one row per level
    for key, g in sub.groupby(list(GROUP_COLUMNS), sort=True, dropna=False):
        name = "|".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        out[start : start + n_levels] = _ratio_interval(g, levels, n_boot, rng, coverage)
        start += n_levels
    assert start == len(base), "half_l0 and its bootstrap disagree on the hook points"
    return out


def _ratio_interval(g: pd.DataFrame, levels, n_boot: int, rng: np.random.Generator, coverage: float) -> np.ndarray:
    """[n_levels, 2] bootstrap interval of one hook point's half-L0 ratios (NaN where undefined)."""
    n_levels = len(list(levels))
    out = np.full((n_levels, 2), np.nan)
    draws = np.empty((n_boot, n_levels))
    for b in range(n_boot):
        noisy = g.assign(
            loss_recovered=g["loss_recovered"] + rng.standard_normal(len(g)) * g["loss_recovered_se"],
            l0=np.maximum(g["l0"] + rng.standard_normal(len(g)) * g["l0_se"], 1e-6),
        )
        draws[b] = half_l0(noisy, levels)["ratio"].to_numpy(dtype=float)
    ok = np.isfinite(draws).mean(axis=0) >= 0.5
    if not ok.any():
        return out
    tail = 100 * (1 - coverage) / 2
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(np.where(np.isfinite(draws), draws, np.nan)[:, ok], [tail, 100 - tail], axis=0)
    out[ok, 0], out[ok, 1] = lo, hi
    return out


def write_half_l0_table(df: pd.DataFrame, stem: str | Path, levels: Sequence[float] = DEFAULT_LEVELS) -> list[Path]:
    """Write ``<stem>.csv`` (machine-readable, unformatted), ``<stem>.md`` and ``<stem>.tex``."""
    table = half_l0_table(df, levels)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, md, tex = (stem.with_name(stem.name + s) for s in (".csv", ".md", ".tex"))
    table.to_csv(csv, index=False)
    md.write_text(
        "# L0 needed to reach a given loss recovered (ratio = baseline / gated)\n\n" + table_to_markdown(table)
    )
    tex.write_text(
        table_to_latex(
            table,
            caption="$L_0$ gated and baseline SAEs need to reach each loss-recovered "
            "level, interpolated along their Pareto frontiers; ratio = baseline / gated.",
            label="tab:half_l0",
        )
    )
    return [csv, md, tex]


#: Metrics whose seed-to-seed spread :func:`seed_spread_table` reports beside their evaluation SE.
SEED_SPREAD_METRICS: tuple[str, ...] = ("loss_recovered", "delta_lm_loss", "l0", "gamma_c")


def seed_spread_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per SAE setting trained with several seeds (model, layer, site, architecture, coefficient):
    ``n_seeds`` and, for each metric of :data:`SEED_SPREAD_METRICS`, its mean over seeds, its
    standard deviation across seeds (``<m>_seed_sd``: how far one retraining moves it) and its
    evaluation SE (``<m>_eval_se``, the seeds' root mean square), with ``<m>_sd_over_se``, their
    ratio. A ratio near 1 means a single SAE's evaluation SE already covers what retraining moves;
    well above 1, compare architectures across seeds, not within one. Empty without repeated seeds."""
    df = validate_metrics_table(df)
    keys = [c for c in KEY_COLUMNS if c != "seed"]
    rows = []
    for key, g in df.groupby(keys, sort=True):
        if len(g) < 2:
            continue
        row = dict(zip(keys, key, strict=True), n_seeds=len(g))
        for m in SEED_SPREAD_METRICS:
            sd = float(g[m].std(ddof=1))
            se = float(np.sqrt((g[f"{m}_se"] ** 2).mean())) if f"{m}_se" in g else float("nan")
            row.update(
                {
                    m: float(g[m].mean()),
                    f"{m}_seed_sd": sd,
                    f"{m}_eval_se": se,
                    f"{m}_sd_over_se": sd / se if se > 0 else float("nan"),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def write_seed_spread_table(df: pd.DataFrame, stem: str | Path) -> list[Path]:
    """``<stem>.csv`` and ``<stem>.md`` of :func:`seed_spread_table`; nothing (and no files) when
    no setting has more than one seed."""
    table = seed_spread_table(df)
    stem = Path(stem)
    if table.empty:
        return []
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, md = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    table.to_csv(csv, index=False)
    md.write_text(
        "# Seed-to-seed spread beside the evaluation SE\n\n"
        "`<metric>_seed_sd`: standard deviation across seeds; `<metric>_eval_se`: the paired, sequence-aware "
        "evaluation SE (root mean square over the seeds); `_sd_over_se`: their ratio.\n\n" + table_to_markdown(table)
    )
    return [csv, md]


def flattening(table: pd.DataFrame, metric: str = "loss_recovered") -> pd.DataFrame:
    """Per SAE, the change of ``metric`` and of L0 over the last budget doubling-or-more.

    Columns: site, architecture, from_tokens, to_tokens, change, change_se (√ of the summed squared
    SEs: conservative, the two evaluations share their sequences), l0_change (relative),
    flat: |change| < 2·change_se and L0 moved by less than 5%. An SAE whose loss recovered holds
    while its L0 keeps falling is still moving along the frontier, so it is not flat.
    """
    out = []
    for (site, arch), g in table.groupby(["site", "architecture"], sort=False):
        g = g.sort_values("budget_tokens")
        if len(g) < 2:
            continue
        a, b = g.iloc[-2], g.iloc[-1]
        se = float(np.hypot(a[f"{metric}_se"], b[f"{metric}_se"]))
        change = float(b[metric] - a[metric])
        l0_change = float(b["l0"] / a["l0"] - 1.0) if "l0" in g and float(a["l0"]) > 0 else 0.0
        out.append(
            {
                "site": site,
                "architecture": arch,
                "from_tokens": int(a["budget_tokens"]),
                "to_tokens": int(b["budget_tokens"]),
                "change": change,
                "change_se": se,
                "l0_change": l0_change,
                "flat": abs(change) < 2 * se and abs(l0_change) < 0.05,
            }
        )
    return pd.DataFrame(out)
