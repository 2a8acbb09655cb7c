"""Tests of saerepro.tables: validation of metrics.csv and the derived tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from saerepro import tables as T
from tests.synthetic import synthetic_metrics_table


@pytest.fixture(scope="module")
def table():
    return synthetic_metrics_table(layers=(3, 6), coefficients=(1, 2, 4, 8), seeds=(0, 1))


def test_constants():
    assert T.KEY_COLUMNS == ("model", "corpus", "layer", "site", "architecture", "coefficient", "seed")
    assert set(T.RUN_COLUMNS) == {"width", "tokens_trained", "epochs", "lr"}
    # wall-clock times would make two identical runs' metrics.csv differ: they live in timings.csv
    assert not set(T.TIMING_COLUMNS) & set(T.ALL_COLUMNS)
    assert set(T.PROVENANCE_COLUMNS) == {"config_hash", "git_commit", "package_versions", "cache_sha256"}
    assert set(T.METRIC_COLUMNS) == {
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
    }
    assert {c.removesuffix("_se") for c in T.SE_COLUMNS if c.endswith("_se")} <= set(T.METRIC_COLUMNS)
    assert T.ALL_COLUMNS == (T.KEY_COLUMNS + T.RUN_COLUMNS + T.METRIC_COLUMNS + T.SE_COLUMNS + T.PROVENANCE_COLUMNS)
    assert len(set(T.ARCHITECTURES)) == 9


def test_synthetic_table_is_valid(table):
    out = T.validate_metrics_table(table)
    assert list(out.columns) == list(T.ALL_COLUMNS)
    assert len(out) == 1 * 2 * 3 * 9 * 4 * 2


def test_missing_columns_are_named(table):
    with pytest.raises(T.MetricsTableError, match="gamma_c, kl"):
        T.validate_metrics_table(table.drop(columns=["kl", "gamma_c"]))


@pytest.mark.parametrize("bad,match", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_nan_and_inf_are_rejected_with_the_row_key(table, bad, match):
    df = table.copy()
    df.loc[5, "gamma_c"] = bad
    with pytest.raises(T.MetricsTableError, match=match) as e:
        T.validate_metrics_table(df)
    msg = str(e.value)
    assert "'gamma_c'" in msg and repr(df.loc[5, "architecture"]) in msg


def test_other_invalid_tables(table):
    df = table.copy()
    df.loc[0, "alive_frac"] = 1.5
    with pytest.raises(T.MetricsTableError, match="alive_frac"):
        T.validate_metrics_table(df)
    with pytest.raises(T.MetricsTableError, match="duplicate"):
        T.validate_metrics_table(pd.concat([table, table.iloc[[3]]]))
    df = table.copy().astype({"l0": object})
    df.loc[2, "l0"] = "many"
    with pytest.raises(T.MetricsTableError, match="non-numeric"):
        T.validate_metrics_table(df)
    df = table.copy()
    df.loc[1, "site"] = ""
    with pytest.raises(T.MetricsTableError, match="'site' is empty"):
        T.validate_metrics_table(df)
    with pytest.raises(T.MetricsTableError):
        T.validate_metrics_table("metrics.csv")


def test_read_metrics_table_roundtrip(table, tmp_path):
    path = tmp_path / "metrics.csv"
    table.assign(extra_col=1).to_csv(path, index=False)
    df = T.read_metrics_table(path)
    assert list(df.columns) == [*T.ALL_COLUMNS, "extra_col"]
    assert df["layer"].dtype == np.int64 and df["width"].dtype == np.int64
    pd.testing.assert_frame_equal(df[list(T.ALL_COLUMNS)], table, check_dtype=False)


def test_aggregate_seeds(table):
    agg = T.aggregate_seeds(table)
    assert len(agg) == len(table) // 2
    assert "seed" not in agg.columns and (agg["n_seeds"] == 2).all()
    row = agg.iloc[0]
    sel = table
    for k in ("model", "layer", "site", "architecture", "coefficient"):
        sel = sel[sel[k] == row[k]]
    assert row["l0"] == pytest.approx(sel["l0"].mean())
    assert row["l0_sem"] == pytest.approx(sel["l0"].std(ddof=1) / math.sqrt(2))
    one = T.aggregate_seeds(table[table.seed == 0])
    assert one["gamma_sem"].isna().all() and (one["n_seeds"] == 1).all()
    # one seed: the SE is the evaluation SE; several: the seed mean's SE includes their spread
    np.testing.assert_array_equal(one["loss_recovered_se"], table[table.seed == 0]["loss_recovered_se"])
    np.testing.assert_array_equal(one["loss_recovered_se"], one["loss_recovered_eval_se"])
    eval_rms = np.sqrt((sel["loss_recovered_se"] ** 2).mean())
    assert row["loss_recovered_eval_se"] == pytest.approx(eval_rms)
    assert row["loss_recovered_se"] == pytest.approx(
        np.hypot(eval_rms, sel["loss_recovered"].std(ddof=1) / math.sqrt(2))
    )
    assert (agg["l0_se"] >= agg["l0_eval_se"]).all() and (agg["l0_se"] > agg["l0_eval_se"]).any()


def test_paper_table(table):
    pt = T.paper_table(table, "gemma-3-270m")
    assert list(pt.columns) == [
        "Architecture",
        "Site",
        "Layer",
        "λ",
        "LR",
        "L0",
        "% CE recovered",
        "Clean CE loss",
        "SAE CE loss",
        "0-abl. CE loss",
        "Width",
        "% alive",
        "γ",
        "γ_c",
        "Pareto-optimal",
        "Seeds",
    ]
    assert len(pt) == 2 * 3 * 9 * 4
    assert pt["Architecture"].iloc[0] == "gated" and pt["Site"].iloc[0] == "resid"
    assert list(pt["Site"].unique()) == ["resid", "mlp", "attn"]  # paper order, not alphabetical
    agg = T.aggregate_seeds(table)
    r = agg[(agg.architecture == "gated") & (agg.site == "resid") & (agg.layer == 3) & (agg.coefficient == 1)].iloc[0]
    assert pt["% CE recovered"].iloc[0] == pytest.approx(100 * r["loss_recovered"])
    assert pt["% alive"].iloc[0] == pytest.approx(100 * r["alive_frac"])
    only = T.paper_table(table[table.seed == 0], "gemma-3-270m", architectures=["baseline", "gated"])
    assert "Seeds" not in only.columns and list(only["Architecture"].unique()) == ["baseline", "gated"]
    with pytest.raises(ValueError, match="no rows for model"):
        T.paper_table(table, "gpt2")


def test_markdown_and_latex(table, tmp_path):
    import jinja2  # noqa: F401  (DataFrame.to_latex needs it; it comes with snakemake)

    pt = T.paper_table(table, "gemma-3-270m")
    md = T.table_to_markdown(pt)
    assert md.splitlines()[0].startswith("| Architecture") and "3.0e-04" in md and "gated_no_rmag" in md
    tex = T.table_to_latex(pt, caption="c", label="tab:x")
    assert r"\begin{tabular}" in tex and r"\toprule" in tex
    assert r"gated\_no\_rmag" in tex and r"\% CE rec." in tex and r"$\gamma_c$" in tex and r"$\lambda$" in tex
    paths = T.write_model_tables(table.assign(model="google/gemma-3-270m"), tmp_path / "tables")
    assert sorted(p.name for p in paths) == ["google_gemma-3-270m.md", "google_gemma-3-270m.tex"]
    assert all(p.stat().st_size > 1000 for p in paths)


def _exact_family():
    """Baseline reaches loss recovered 1 - 1/sqrt(L0); gated the same at half the L0."""
    rows = []
    for arch, m in (("baseline", 1), ("gated", 2), ("topk", 3)):
        for seed in (0, 1):
            for c, base_l0 in enumerate([4.0, 16.0, 64.0, 256.0]):
                l0 = base_l0 / m  # each architecture hits the same loss-recovered values at L0 / m
                lr = 1 - 1 / math.sqrt(base_l0)
                rows.append(
                    dict(
                        model="m",
                        corpus="c",
                        layer=2,
                        site="mlp",
                        architecture=arch,
                        coefficient=float(c),
                        seed=seed,
                        width=64,
                        tokens_trained=1000,
                        epochs=1.0,
                        lr=1e-3,
                        l0=l0,
                        loss_recovered=lr,
                        delta_lm_loss=0.1,
                        ce_clean=3.0,
                        ce_sae=3.1,
                        ce_zero=4.0,
                        gamma=1.0,
                        gamma_c=1.0,
                        alive_frac=1.0,
                        nmse=0.1,
                        kl=0.1,
                        loss_recovered_bos_zeroed=lr,
                        ce_zero_bos_zeroed=4.0,
                        l0_se=0.0,
                        gamma_se=0.0,
                        gamma_c_se=0.0,
                        loss_recovered_se=0.0,
                        delta_lm_loss_se=0.0,
                        kl_se=0.0,
                        loss_recovered_bos_zeroed_se=0.0,
                        n_eval_sequences=8,
                        config_hash="h",
                        git_commit="c",
                        package_versions="v",
                        cache_sha256="s",
                    )
                )
    return pd.DataFrame(rows)


def test_half_l0_table(tmp_path):
    df = _exact_family()
    # both frontiers hit loss recovered 0.5, 0.75, 0.875, 0.9375; baseline at L0 4..256, gated at 2..128
    ht = T.half_l0_table(df, levels=[0.4, 0.75, 0.8, 0.875, 0.95])
    assert list(ht.columns) == [
        "Model",
        "Layer",
        "Site",
        "Level",
        "L0 gated",
        "L0 baseline",
        "Ratio",
        "Ratio CI low",
        "Ratio CI high",
        "Note",
    ]
    h = ht.set_index("Level")
    assert h.loc[0.75, "L0 baseline"] == pytest.approx(16)
    assert h.loc[0.75, "L0 gated"] == pytest.approx(8)
    assert h.loc[0.75, "Ratio"] == pytest.approx(2)
    assert h.loc[0.8, "Ratio"] == pytest.approx(2)  # between points: same log-linear segment shape
    assert h.loc[0.875, "Ratio"] == pytest.approx(2)
    for level in (0.4, 0.95):
        assert math.isnan(h.loc[level, "Ratio"]) and h.loc[level, "Note"] == "outside gated and baseline frontiers"
    paths = T.write_half_l0_table(df, tmp_path / "half_l0", levels=[0.4, 0.75])
    assert [p.name for p in paths] == ["half_l0.csv", "half_l0.md", "half_l0.tex"]
    back = pd.read_csv(paths[0])
    assert back["Ratio"].iloc[1] == pytest.approx(2)
    assert "—" in paths[1].read_text() and "--" in paths[2].read_text()


def test_half_l0_on_synthetic_table_is_about_two(table):
    ht = T.half_l0_table(synthetic_metrics_table(seeds=(0,), coefficients=(0.5, 1, 2, 4, 8, 16, 32)))
    ratios = ht["Ratio"].dropna()
    assert len(ratios) > 10 and ratios.between(1.5, 2.6).all()


def test_half_l0_ratio_interval_widens_with_the_standard_errors():
    df = _exact_family()
    exact = T.half_l0_table(df, levels=[0.75, 0.95]).set_index("Level")
    assert exact.loc[0.75, "Ratio CI low"] == pytest.approx(2) and exact.loc[0.75, "Ratio CI high"] == pytest.approx(2)
    assert math.isnan(exact.loc[0.95, "Ratio CI low"])  # outside the frontiers: no interval
    only_outside = T.half_l0_table(df.assign(loss_recovered_se=0.01, l0_se=0.1), levels=[0.99])
    assert only_outside[["Ratio CI low", "Ratio CI high"]].isna().all().all()
    noisy = T.half_l0_table(df.assign(loss_recovered_se=0.02, l0_se=0.5), levels=[0.75]).iloc[0]
    assert noisy["Ratio CI low"] < 2 < noisy["Ratio CI high"]
    wider = T.half_l0_table(df.assign(loss_recovered_se=0.05, l0_se=0.5), levels=[0.75]).iloc[0]
    assert wider["Ratio CI high"] - wider["Ratio CI low"] > noisy["Ratio CI high"] - noisy["Ratio CI low"]


def test_pareto_optimal_saes_are_bold_in_markdown_and_italic_in_latex():
    df = _exact_family()
    # a dominated baseline: more L0 than the λ=1 baseline for less loss recovered
    worse = df[(df.architecture == "baseline") & (df.coefficient == 1.0)].assign(
        coefficient=9.0, l0=20.0, loss_recovered=0.5
    )
    pt = T.paper_table(pd.concat([df, worse], ignore_index=True), "m")
    flags = pt.set_index(["Architecture", "λ"])[T.PARETO_COLUMN]
    assert not flags[("baseline", 9.0)] and flags[("baseline", 1.0)] and flags[("gated", 3.0)]
    md = T.table_to_markdown(pt).splitlines()
    assert T.PARETO_COLUMN not in md[0]
    row = {
        float(line.split("|")[4].strip(" *")): line
        for line in md[2:]
        if line.startswith("|") and "baseline" in line.split("|")[1]
    }
    assert "**" in row[1.0] and "**" not in row[9.0]
    tex = T.table_to_latex(pt, caption="c")
    assert r"\textit{baseline}" in tex and "Italic rows: Pareto-optimal" in tex


def test_a_table_without_the_corpus_column_is_refused_naming_it(table, tmp_path):
    """No guessed corpus: a table from before the column is migrated (benchmarks/neutral_check.py
    --migrate) or regenerated."""
    table.drop(columns=["corpus"]).to_csv(tmp_path / "metrics.csv", index=False)
    with pytest.raises(T.MetricsTableError, match="corpus"):
        T.read_metrics_table(tmp_path / "metrics.csv")


def test_seed_spread_sets_each_settings_spread_across_seeds_beside_its_evaluation_se(tmp_path):
    table = synthetic_metrics_table(layers=(6,), coefficients=(1.0, 2.0), seeds=(0, 1, 2), architectures=("gated",))
    spread = T.seed_spread_table(table)
    assert len(spread) == 6 and set(spread["n_seeds"]) == {3}  # 3 sites x 2 coefficients
    one = table[(table.site == "mlp") & (table.coefficient == 2.0)]
    row = spread[(spread.site == "mlp") & (spread.coefficient == 2.0)].iloc[0]
    assert row["loss_recovered_seed_sd"] == pytest.approx(one["loss_recovered"].std(ddof=1))
    assert row["loss_recovered_eval_se"] == pytest.approx(float(np.sqrt((one["loss_recovered_se"] ** 2).mean())))
    assert row["loss_recovered_sd_over_se"] == pytest.approx(
        row["loss_recovered_seed_sd"] / row["loss_recovered_eval_se"]
    )
    assert T.write_seed_spread_table(table, tmp_path / "seed_spread")[1].read_text().startswith("# Seed-to-seed")
    # one seed per setting: no spread to report, no files
    assert T.seed_spread_table(table[table.seed == 0]).empty
    assert T.write_seed_spread_table(table[table.seed == 0], tmp_path / "none") == []
    assert not (tmp_path / "none.csv").exists()


def test_half_l0_interval_of_a_hook_point_is_its_own_and_brackets_its_ratio():
    from saerepro.pareto import half_l0

    agg = T.aggregate_seeds(synthetic_metrics_table(layers=(3, 6), architectures=("gated", "baseline")))
    levels = (0.8, 0.9)
    ci = T.half_l0_ratio_ci(agg, levels, n_boot=60)
    base = half_l0(agg, levels)
    ok = np.isfinite(ci[:, 0])
    assert ok.sum() >= 6 and (ci[ok, 0] <= base["ratio"][ok]).all() and (base["ratio"][ok] <= ci[ok, 1]).all()
    # the same hook point alone, or beside other hook points, gets the same interval
    one = agg[(agg.layer == 6) & (agg.site == "mlp")]
    rows = ((base.layer == 6) & (base.site == "mlp")).to_numpy()
    np.testing.assert_array_equal(T.half_l0_ratio_ci(one, levels, n_boot=60), ci[rows])
    # larger evaluation SEs, wider intervals
    noisier = one.assign(loss_recovered_se=one["loss_recovered_se"] * 4)
    wide, narrow = T.half_l0_ratio_ci(noisier, levels, n_boot=60), ci[rows]
    both = np.isfinite(wide[:, 0]) & np.isfinite(narrow[:, 0])
    assert both.any() and ((wide[both, 1] - wide[both, 0]) > (narrow[both, 1] - narrow[both, 0])).all()
