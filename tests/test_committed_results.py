"""The committed default-run tables regenerate every figure and table (what CI checks).

`results/tables/metrics.csv` is committed so a reader sees the default reproduction without
running it; these tests fail if a column is missing, a value is NaN, or any figure or derived
table can no longer be produced from it, and if a committed run
carries no manifest its rows confirm, or its config no longer has the values it was made with.
What changed in the code since each committed run is listed in docs/results.md by
saerepro.manifest, and checked here to be that script's listing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from saerepro.config import load_config
from saerepro.figures import FIGURES, make_all_figures
from saerepro.manifest import (
    COMMITTED_RUNS,
    build_manifest,
    doc_block,
    freshness_markdown,
    get_run,
    read_manifest,
)
from saerepro.provenance import config_hash, git_history_unavailable
from saerepro.tables import ALL_COLUMNS, read_metrics_table, write_half_l0_table, write_model_tables

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "results" / "tables" / "metrics.csv"
LONG_TABLE = REPO / "results" / "long" / "tables" / "metrics.csv"
#: The previous long design's tables: the inference-time optimisation was run on its SAEs.
LONG_PREVIOUS_TABLES = REPO / "results" / "long_previous" / "tables"
NEURONS_TABLES = REPO / "results" / "neurons" / "tables"
SITES = ("resid", "mlp", "attn")

#: Every committed run with a full tables folder (the captions' tests read them too).
RUNS = [run for run in COMMITTED_RUNS if run.metrics == "metrics.csv"]
RUN_TABLE_DIRS = [run.tables for run in RUNS]
#: Manifest fields recomputed from the tables (the rest, date, wall time and note, are recorded facts).
DERIVED = ("config", "config_hash", "commits", "newest_commit", "machines", "package_versions", "n_saes", "job_seconds")


@pytest.mark.parametrize("run", COMMITTED_RUNS, ids=[r.name for r in COMMITTED_RUNS])
def test_every_committed_run_carries_a_manifest_its_tables_confirm(run):
    """Each committed run says which commits, config hash, machines and packages made it, when, and
    how long it took; a table replaced without `make promote` (which rewrites the manifest) fails."""
    manifest = read_manifest(run, REPO)
    rebuilt = build_manifest(run, REPO)
    assert {k: manifest[k] for k in DERIVED} == {k: rebuilt[k] for k in DERIVED}
    assert manifest["run"] == run.name and manifest["made"][:4] == "2026"
    assert manifest["wall_seconds"] is not None or manifest["note"], "say why the wall time is unknown"
    assert not any(c.endswith("-dirty") for c in manifest["commits"]), "rows made from uncommitted code"


@pytest.mark.parametrize("run", COMMITTED_RUNS, ids=[r.name for r in COMMITTED_RUNS])
def test_committed_rows_were_made_under_their_configs_current_values(run):
    """A committed run's config may not change a value (its hash) without the run being redone."""
    rows = pd.read_csv(REPO / run.table_path, dtype=str)
    assert set(rows["config_hash"]) == {config_hash(load_config(REPO / run.config))}, (
        f"{run.config} no longer describes {run.table_path}: rerun `make {run.make}` and `make promote RUN={run.name}`"
    )


def test_results_doc_lists_the_metric_moving_files_changed_since_each_committed_run():
    """docs/results.md says, per committed run, which metric-moving files changed since its rows'
    commits: the listing is the script's (saerepro.manifest), never written by hand."""
    unavailable = git_history_unavailable(REPO)
    if unavailable:
        pytest.skip(unavailable)
    assert doc_block(REPO / "docs/results.md") == freshness_markdown(REPO), (
        "docs/results.md's freshness listing is out of date: run "
        "`.venv/bin/python -m saerepro.manifest freshness --update docs/results.md` and commit it"
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
    """The captions and the README send readers to verdicts.md for what
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
    the long run); a row whose site is ``mlp_post`` (with its layer) quotes the neurons run; every
    row under a ``## `` heading that names ``repro-extras`` quotes the extras run."""
    verdict = re.compile(r"^(shown|reversed|not shown|not judged|mixed|not run|no overlap)\b")
    cells: dict[str, set[tuple[str, str, str]]] = {
        "default": set(),
        "long": set(),
        "neurons": set(),
        "extras": set(),
    }
    in_extras = False
    for line in text.splitlines():
        if line.startswith("## "):
            in_extras = "repro-extras" in line
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
        if in_extras:
            run = "extras"
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
    runs = (
        ("default", TABLE.parent),
        ("long", LONG_TABLE.parent),
        ("neurons", NEURONS_TABLES),
        ("extras", REPO / "results" / "extras" / "tables"),
    )
    for run, table in runs:
        if not quoted[run]:
            continue
        assert (table / "verdicts.csv").exists(), f"{doc} quotes {run}-run verdicts, but {table} has none"
        wrong = sorted(quoted[run] - _committed_verdict_cells(table / "verdicts.csv"))
        assert not wrong, f"{doc} quotes {run}-run verdicts that {table}/verdicts.csv does not have: {wrong}"


def test_the_readmes_results_block_is_written_from_the_committed_verdict_tables():
    """Every number in the README's results block is a committed one: the block is what
    ``python -m saerepro.manifest readme`` writes from the verdict tables and manifests now."""
    from saerepro.manifest import README_BEGIN, README_END, readme_results_markdown

    assert doc_block(REPO / "README.md", README_BEGIN, README_END) == readme_results_markdown(REPO), (
        "the README's results block is out of date: run "
        "`.venv/bin/python -m saerepro.manifest readme --update README.md` and commit it"
    )


def test_the_readme_stays_short():
    """A newcomer reads it in a minute; facts live in docs/ (issue 32: at most ~8 kB)."""
    assert (REPO / "README.md").stat().st_size <= 8 * 1024


def test_the_numbers_in_the_readmes_prose_are_the_long_runs_design_and_the_verdict_rules():
    """Outside the generated block the README quotes the long run's design and one verdict rule:
    each is read from config/long.yaml and saerepro.verdicts here, so a redesign moves the prose."""
    from saerepro.verdicts import RULES

    text = " ".join((REPO / "README.md").read_text().split())
    long = load_config(REPO / "config" / "long.yaml")
    grids = {
        len(a.grid_at(site, layer)) for a in long.architectures.values() for layer in long.layers for site in long.sites
    }
    words = {1: "one", 2: "two", 3: "three", 4: "four"}
    layers = " and ".join(str(layer) for layer in long.layers)
    assert grids == {3} and long.seeds == (0, 1), (grids, long.seeds)
    assert f"(layers {layers}, {words[grids.pop()]} λ × {words[len(long.seeds)]} seeds per architecture)" in text
    assert f"γ_c is not within ±{RULES.gamma_tolerance:g} of 1" in text
    assert f"{long.train.tokens / 2**20:g}M tokens is not shown to be settled" in text


def test_the_readme_quotes_the_long_runs_verdicts_once_they_are_committed():
    """The long run is the README's headline: once its verdicts are committed, every (layer, site) row
    of them is quoted there."""
    if not (LONG_TABLE.parent / "verdicts.csv").exists():
        pytest.skip("the long run's tables are not committed yet")
    rows = pd.read_csv(LONG_TABLE.parent / "verdicts.csv")
    quoted = {(layer, site) for layer, site, _ in _quoted_verdict_cells((REPO / "README.md").read_text())["long"]}
    assert {(str(r.Layer), r.Site) for _, r in rows.iterrows()} <= quoted


def test_committed_inference_opt_tables_are_fresh():
    """Each committed inference-time-optimisation table was made under the previous long config, at
    a commit of this history, by the pursuit code at HEAD (``ito_code``); the SAEs it reads are that
    run's (whose freshness docs/results.md lists)."""
    from saerepro.inference_opt import ito_code_hash

    tables = sorted((LONG_PREVIOUS_TABLES / "inference_opt").glob("*.csv"))
    if not tables:
        pytest.skip("no inference-time-optimisation table is committed yet")
    unavailable = git_history_unavailable(REPO)
    if unavailable:
        pytest.skip(unavailable)
    expected = config_hash(load_config(REPO / get_run("long_previous").config))  # that run's own config
    for path in tables:
        rows = pd.read_csv(path, dtype=str)
        assert set(rows["config_hash"]) == {expected}, path
        for commit in set(rows["git_commit"]):
            assert not commit.endswith("-dirty"), path
            assert (
                subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", commit, "HEAD"]).returncode == 0
            )
        assert set(rows["ito_code"]) == {ito_code_hash()}, (
            f"{path.relative_to(REPO)} was made by other pursuit code: rerun `snakemake inference_opt` "
            "with config/experiments/long_previous.yaml and copy its tables here"
        )


def test_inference_opt_rows_quoted_in_results_md_are_what_the_committed_tables_say():
    """docs/results.md quotes, per pursuit k, the best gated and baseline dictionaries of the previous
    long run's committed inference-time-optimisation tables; a rerun that moves them must move the quote."""
    from saerepro.verdicts import compare_dictionaries

    tables = sorted((LONG_PREVIOUS_TABLES / "inference_opt").glob("*.csv"))
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


#: docs/results.md's seed-spread table: the long run's two seeds per setting, summarised per hook point.
SEED_SPREAD_HEADER = (
    "| layer | site | settings | loss recovered: seed SD, RMS over settings | eval SE, median | "
    "SD / SE, range | L0: SD / SE, median |"
)


def seed_spread_rows(spread: pd.DataFrame) -> list[str]:
    """The rows of :data:`SEED_SPREAD_HEADER`'s table from a committed ``seed_spread.csv``."""
    rows = []
    for (layer, site), g in spread.groupby(["layer", "site"], sort=True):
        rms = float((g["loss_recovered_seed_sd"] ** 2).mean() ** 0.5)
        ratio = g["loss_recovered_sd_over_se"]
        rows.append(
            f"| {layer} | {site} | {len(g)} | {rms:.3f} | {g['loss_recovered_eval_se'].median():.4f} | "
            f"{ratio.min():.1f}–{ratio.max():.1f} | {g['l0_sd_over_se'].median():.1f} |"
        )
    return rows


def test_the_seed_spread_quoted_in_results_md_is_the_long_runs():
    """docs/results.md summarises the long run's seed spread per hook point (two seeds at every
    setting); a rerun that moves a number must move the quote."""
    path = LONG_TABLE.parent / "seed_spread.csv"
    if not path.exists():
        pytest.skip("the long run's seed spread is not committed yet")
    text = (REPO / "docs" / "results.md").read_text()
    assert SEED_SPREAD_HEADER in text
    quoted = [ln for ln in text.split(SEED_SPREAD_HEADER, 1)[1].splitlines()[2:]]
    quoted = quoted[: next((i for i, ln in enumerate(quoted) if not ln.startswith("|")), len(quoted))]
    assert quoted == seed_spread_rows(pd.read_csv(path))


def test_cross_machine_table_in_reliability_doc_is_what_the_two_committed_tables_say():
    """docs/reliability.md quotes, per site, the largest moves between the default run of 2026-12-02
    (AMD EPYC, dense steps; its rows kept in results/cross_machine/default_amd_metrics.csv) and its
    rerun on the AMX Xeon (results/cross_machine/): recomputed here from both tables."""
    amx = REPO / "results" / "cross_machine" / "default_amx_metrics.csv"
    if not amx.exists():
        pytest.skip("no cross-machine rerun committed")
    amd = REPO / "results" / "cross_machine" / "default_amd_metrics.csv"
    keys = ["model", "layer", "site", "architecture", "coefficient", "seed"]
    both = pd.read_csv(amd).merge(pd.read_csv(amx), on=keys, suffixes=("_old", "_new"))
    assert len(both) == 24
    assert (both["config_hash_old"] == both["config_hash_new"]).all()
    doc = (REPO / "docs" / "reliability.md").read_text()
    for site, g in both.groupby("site"):
        d = {m: (g[f"{m}_new"] - g[f"{m}_old"]).abs().max() for m in ("loss_recovered", "l0", "gamma_c")}
        row = f"| {site} | {d['loss_recovered']:.3f} | {d['l0']:.1f} | {d['gamma_c']:.3f} |"
        assert row in doc, row


@pytest.mark.parametrize("run", [r for r in COMMITTED_RUNS if r.compare_with], ids=lambda r: r.name)
def test_a_committed_reruns_comparison_is_what_both_committed_tables_say(run):
    """results/<rerun>/tables/rerun_comparison.csv is recomputed from the two committed metrics
    tables; a re-promoted first run makes it stale (`python -m saerepro.manifest compare <rerun>`)."""
    from saerepro.manifest import RERUN_COMPARISON, rerun_comparison_table

    committed = (REPO / run.tables / f"{RERUN_COMPARISON}.csv").read_text()
    assert rerun_comparison_table(run).to_csv(index=False) == committed
