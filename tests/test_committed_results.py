"""The committed default-run tables regenerate every figure and table (what CI checks).

`results/tables/metrics.csv` is committed so a reader sees the default reproduction without
running it; these tests fail if a column is missing, a value is NaN, or any figure or derived
table can no longer be produced from it, and (``test_committed_results_are_fresh``) if the table
is stale: made under another config hash, from uncommitted code or a commit that is not an
ancestor of HEAD, or before a change to a metric-moving file (saerepro.provenance.stale_reasons).
Only commits are compared: uncommitted edits in the working tree are not looked at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from saerepro.config import load_config
from saerepro.plotting import FIGURES, make_all_figures
from saerepro.provenance import METRIC_MOVING_CODE, METRIC_MOVING_PATHS, git_history_unavailable, stale_reasons
from saerepro.tables import ALL_COLUMNS, read_metrics_table, write_half_l0_table, write_model_tables

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "results" / "tables" / "metrics.csv"
LONG_TABLE = REPO / "results" / "long" / "tables" / "metrics.csv"
NEURONS_TABLES = REPO / "results" / "neurons" / "tables"
SITES = ("resid", "mlp", "attn")

#: Each committed run: (table, config, metric-moving paths, how to regenerate it).
COMMITTED_RUNS = [
    pytest.param(
        "results/tables/metrics.csv",
        "config/config.yaml",
        METRIC_MOVING_PATHS,
        "run `make repro`, then commit results/tables and figures",
        id="default",
    ),
    pytest.param(
        "results/long/tables/metrics.csv",
        "config/long.yaml",
        METRIC_MOVING_CODE + ("config/long.yaml",),
        "run `make repro-long`, then commit results/long/tables and figures/long",
        id="long",
    ),
    pytest.param(
        "results/neurons/tables/metrics.csv",
        "config/experiments/neurons.yaml",
        METRIC_MOVING_CODE + ("config/experiments/neurons.yaml",),
        "run `make repro-neurons`, then commit results/neurons/tables and figures/neurons",
        id="neurons",
    ),
    pytest.param(
        "results/seed_spread/tables/metrics.csv",
        "config/experiments/seed_spread.yaml",
        METRIC_MOVING_CODE + ("config/experiments/seed_spread.yaml",),
        "run `make repro-seeds`, then commit results/seed_spread/tables and figures/seed_spread",
        id="seed_spread",
    ),
    pytest.param(
        "results/mlp_seeds/tables/metrics.csv",
        "config/experiments/mlp_seeds.yaml",
        METRIC_MOVING_CODE + ("config/experiments/mlp_seeds.yaml",),
        "run `make repro-mlp-seeds`, then commit results/mlp_seeds/tables and figures/mlp_seeds",
        id="mlp_seeds",
    ),
]

#: Every committed run's tables folder (the captions' tests read them too).
RUN_TABLE_DIRS = [str(Path(run.values[0]).parent) for run in COMMITTED_RUNS]


@pytest.mark.parametrize("table, config, paths, regenerate", COMMITTED_RUNS)
def test_committed_results_are_fresh(table, config, paths, regenerate):
    if not (REPO / table).exists():
        pytest.skip(f"{table} is not committed yet")
    unavailable = git_history_unavailable(REPO)
    if unavailable:
        pytest.skip(unavailable)
    rows = pd.read_csv(REPO / table, dtype=str)
    # what the Snakefile does: CFG = load_config(config); CONFIG_HASH = config_hash(CFG)
    reasons = stale_reasons(rows, load_config(REPO / config), REPO, paths)
    assert not reasons, (
        f"{table} is stale, it is not what the code at HEAD produces from {config}:\n  - "
        + "\n  - ".join(reasons)
        + f"\nTo regenerate: {regenerate}."
    )


def test_committed_metrics_table_has_every_column_and_no_nan():
    assert TABLE.exists(), "results/tables/metrics.csv (the default run's table) must be committed"
    df = read_metrics_table(TABLE)  # validates: columns, NaN/inf, duplicate keys
    assert set(ALL_COLUMNS) <= set(df.columns)
    raw = pd.read_csv(TABLE)
    assert len(raw) == len(df) > 0


def test_every_figure_regenerates_from_the_committed_table(tmp_path):
    df = read_metrics_table(TABLE)
    written = make_all_figures(df, tmp_path, headline_layer=int(df["layer"].min()))
    for stem in FIGURES:
        for ext in ("png", "pdf"):
            path = tmp_path / f"{stem}.{ext}"
            assert path in written and path.stat().st_size > 5_000, path


def test_derived_tables_regenerate(tmp_path):
    df = read_metrics_table(TABLE)
    written = write_model_tables(df, tmp_path) + write_half_l0_table(df, tmp_path / "half_l0")
    suffixes = {p.suffix for p in written}
    assert {".md", ".tex", ".csv"} <= suffixes
    for path in written:
        assert path.stat().st_size > 100, path


@pytest.mark.parametrize("tables", RUN_TABLE_DIRS)
def test_committed_verdicts_are_what_the_committed_table_says(tables, tmp_path):
    """The captions, the figures' in-panel notes and the README send readers to verdicts.md for what
    the data show: for every committed run it must be the verdict table the current code computes
    from that run's committed metrics.csv (the long run's is the only one with C4 and C5)."""
    from saerepro.verdicts import write_verdicts

    committed = REPO / tables / "verdicts.csv"
    if tables != "results/tables" and not committed.exists():
        pytest.skip(f"{tables} is not committed yet")
    assert committed.exists(), "results/tables/verdicts.csv must be committed with the default run"
    csv, _ = write_verdicts(read_metrics_table(REPO / tables / "metrics.csv"), tmp_path / "verdicts")
    assert pd.read_csv(csv).equals(pd.read_csv(committed))


def _quoted_verdict_cells(text: str) -> dict[str, set[tuple[str, str, str]]]:
    """(layer, site, cell) of every verdict-table row quoted in a Markdown document, by run: rows that
    start with a site (README, the default run: layer "6"), with the model, layer and site
    (docs/results.md, a copy of the default run's verdicts.md), or with a layer and a site (README,
    the long run); a row whose site is ``mlp_post`` (with its layer) quotes the neurons run."""
    verdict = re.compile(r"^(shown|reversed|not shown|mixed|not run|no overlap)\b")
    cells: dict[str, set[tuple[str, str, str]]] = {"default": set(), "long": set(), "neurons": set()}
    for line in text.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) >= 5 and parts[0].isdigit() and parts[1] == "mlp_post":
            run, layer, site, quoted = "neurons", parts[0], parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] in SITES:
            run, layer, site, quoted = "default", "6", parts[0], parts[1:]
        elif len(parts) >= 6 and parts[2] in SITES and parts[1].isdigit():
            run, layer, site, quoted = "default", parts[1], parts[2], parts[3:]
        elif len(parts) >= 5 and parts[0].isdigit() and parts[1] in SITES:
            run, layer, site, quoted = "long", parts[0], parts[1], parts[2:]
        else:
            continue
        cells[run] |= {(layer, site, c) for c in quoted if verdict.match(c)}
    return cells


def _committed_verdict_cells(path: Path) -> set[tuple[str, str, str]]:
    verdicts = pd.read_csv(path)
    return {(str(r.Layer), r.Site, str(r[c])) for _, r in verdicts.iterrows() for c in ("C1", "C2", "C3", "C4", "C5")}


@pytest.mark.parametrize("doc", ["README.md", "docs/results.md"])
def test_verdicts_quoted_in_the_docs_are_the_committed_ones(doc):
    """The README and docs/results.md quote the runs' verdicts with their numbers; a rerun that
    moves a number must move the quote too."""
    quoted = _quoted_verdict_cells((REPO / doc).read_text())
    assert len(quoted["default"]) >= 9, f"{doc} quotes no verdict table of the default run"
    for run, table in (("default", TABLE.parent), ("long", LONG_TABLE.parent), ("neurons", NEURONS_TABLES)):
        if not quoted[run]:
            continue
        assert (table / "verdicts.csv").exists(), f"{doc} quotes {run}-run verdicts, but {table} has none"
        wrong = sorted(quoted[run] - _committed_verdict_cells(table / "verdicts.csv"))
        assert not wrong, f"{doc} quotes {run}-run verdicts that {table}/verdicts.csv does not have: {wrong}"


def test_the_readme_quotes_the_long_runs_verdicts_once_they_are_committed():
    """The long run is the README's headline: once its verdicts are committed, every (layer, site) row
    of them is quoted there."""
    if not (LONG_TABLE.parent / "verdicts.csv").exists():
        pytest.skip("the long run's tables are not committed yet")
    rows = pd.read_csv(LONG_TABLE.parent / "verdicts.csv")
    quoted = {(layer, site) for layer, site, _ in _quoted_verdict_cells((REPO / "README.md").read_text())["long"]}
    assert {(str(r.Layer), r.Site) for _, r in rows.iterrows()} <= quoted


def test_committed_inference_opt_tables_are_fresh():
    """Each committed inference-time-optimisation table was made by committed code at an ancestor
    of HEAD, under the long config, with no unchecked metric-moving change since (as the metrics
    tables), and by the pursuit code at HEAD (``ito_code``)."""
    from saerepro.inference_opt import ito_code_hash

    tables = sorted((LONG_TABLE.parent / "inference_opt").glob("*.csv"))
    if not tables:
        pytest.skip("no inference-time-optimisation table is committed yet")
    unavailable = git_history_unavailable(REPO)
    if unavailable:
        pytest.skip(unavailable)
    cfg = load_config(REPO / "config/long.yaml")
    for path in tables:
        rows = pd.read_csv(path, dtype=str)
        reasons = stale_reasons(rows, cfg, REPO, METRIC_MOVING_CODE + ("config/long.yaml",))
        made_by = set(rows["ito_code"]) if "ito_code" in rows else {"no ito_code column"}
        if made_by != {ito_code_hash()}:
            reasons.append(f"made by pursuit code {sorted(made_by)}, HEAD's is {ito_code_hash()}")
        assert not reasons, (
            f"{path.relative_to(REPO)} is stale:\n  - " + "\n  - ".join(reasons) + "\nTo regenerate: run "
            "`make repro-long` (it asks for inference_opt), then commit results/long/tables and figures/long."
        )


def test_inference_opt_rows_quoted_in_results_md_are_what_the_committed_tables_say():
    """docs/results.md quotes, per pursuit k, the best gated and baseline dictionaries of the long
    run's committed inference-time-optimisation tables; a rerun that moves them must move the quote."""
    from saerepro.inference_opt import compare_dictionaries

    tables = sorted((LONG_TABLE.parent / "inference_opt").glob("*.csv"))
    quoted = [
        line for line in (REPO / "docs/results.md").read_text().splitlines() if re.match(r"^\| k = \d+ \| \w+ \|", line)
    ]
    if not tables:
        assert not quoted, "docs/results.md quotes inference-time optimisation rows, but none are committed"
        return
    judged = compare_dictionaries(pd.concat([pd.read_csv(p) for p in tables], ignore_index=True))
    expected = [
        f"| k = {r.k} | {r.site} | {r.gated:.3f} ({r.gated_coefficient:g}) | {r.baseline:.3f} ({r.baseline_coefficient:g}) "
        f"| {r.diff:+.3f} ± {r.diff_se:.3f} | {r.verdict} |"
        for r in judged.itertuples()
    ]
    assert quoted == expected


def test_seed_spread_rows_quoted_in_results_md_are_the_committed_ones():
    """docs/results.md quotes the seed-spread run per setting; a rerun that moves a number must move
    the quote."""
    tables = REPO / "results" / "seed_spread" / "tables"
    if not (tables / "seed_spread.csv").exists():
        pytest.skip("the seed-spread run is not committed yet")
    spread = pd.read_csv(tables / "seed_spread.csv")
    metrics = pd.read_csv(tables / "metrics.csv")
    text = (REPO / "docs" / "results.md").read_text()
    header = "| site | architecture | λ | loss recovered, seeds 0/1/2 | seed SD | eval SE | SD / SE |"
    assert header in text
    rows = []
    for ln in text.split(header, 1)[1].splitlines()[2:]:  # after the header's rest and the rule
        if not ln.startswith("|"):
            break
        rows.append(ln)
    assert len(rows) == len(spread) == 6
    for line in rows:
        site, arch, lam, lr, sd, se, ratio, l0, l0_ratio, gc_ratio = (p.strip() for p in line.strip("|").split("|"))
        r = spread[(spread.site == site) & (spread.architecture == arch) & (spread.coefficient == float(lam))].iloc[0]
        seeds = metrics[(metrics.site == site) & (metrics.architecture == arch)].sort_values("seed")
        assert lr == ", ".join(f"{v:.3f}" for v in seeds["loss_recovered"]), line
        assert l0 == ", ".join(f"{v:.1f}" for v in seeds["l0"]), line
        assert (sd, se, ratio) == (
            f"{r.loss_recovered_seed_sd:.3f}",
            f"{r.loss_recovered_eval_se:.3f}",
            f"{r.loss_recovered_sd_over_se:.1f}",
        ), line
        assert (l0_ratio, gc_ratio) == (f"{r.l0_sd_over_se:.1f}", f"{r.gamma_c_sd_over_se:.1f}"), line


def test_cross_machine_table_in_reliability_doc_is_what_the_two_committed_tables_say():
    """docs/reliability.md quotes, per site, the largest moves between the committed default run (AMD
    EPYC) and its rerun on the AMX Xeon (results/cross_machine/): recomputed here from both tables."""
    amx = REPO / "results" / "cross_machine" / "default_amx_metrics.csv"
    if not amx.exists():
        pytest.skip("no cross-machine rerun committed")
    keys = ["model", "layer", "site", "architecture", "coefficient", "seed"]
    both = pd.read_csv(TABLE).merge(pd.read_csv(amx), on=keys, suffixes=("_old", "_new"))
    assert len(both) == 24
    assert (both["config_hash_old"] == both["config_hash_new"]).all()
    doc = (REPO / "docs" / "reliability.md").read_text()
    for site, g in both.groupby("site"):
        d = {m: (g[f"{m}_new"] - g[f"{m}_old"]).abs().max() for m in ("loss_recovered", "l0", "gamma_c")}
        row = f"| {site} | {d['loss_recovered']:.3f} | {d['l0']:.1f} | {d['gamma_c']:.3f} |"
        assert row in doc, row


def test_mlp_seed_rows_quoted_in_results_md_are_the_committed_ones():
    """docs/results.md quotes the three-seed mlp run per setting (seeds and seed means); a rerun that
    moves a number must move the quote."""
    from saerepro.tables import aggregate_seeds

    tables = REPO / "results" / "mlp_seeds" / "tables"
    if not (tables / "metrics.csv").exists():
        pytest.skip("the three-seed mlp run is not committed yet")
    metrics = pd.read_csv(tables / "metrics.csv")
    agg = aggregate_seeds(metrics)
    text = (REPO / "docs" / "results.md").read_text()
    header = "| architecture | λ | loss recovered, seeds 0/1/2 | seed mean ± SE | eval SE |"
    assert header in text
    rows = []
    for ln in text.split(header, 1)[1].splitlines()[2:]:
        if not ln.startswith("|"):
            break
        rows.append(ln)
    assert len(rows) == len(agg) == 8
    for line in rows:
        arch, lam, lr, mean, eval_se, l0, gamma_c = (p.strip() for p in line.strip("|").split("|"))
        r = agg[(agg.architecture == arch) & (agg.coefficient == float(lam))].iloc[0]
        seeds = metrics[(metrics.architecture == arch) & (metrics.coefficient == float(lam))].sort_values("seed")
        assert lr == ", ".join(f"{v:.3f}" for v in seeds["loss_recovered"]), line
        assert l0 == ", ".join(f"{v:.1f}" for v in seeds["l0"]), line
        assert mean == f"{r.loss_recovered:.3f} ± {r.loss_recovered_se:.3f}", line
        assert eval_se == f"{r.loss_recovered_eval_se:.3f}", line
        assert gamma_c == f"{r.gamma_c:.3f} ± {r.gamma_c_se:.3f}", line
