"""The report's captions (workflow/report/*.rst) state facts about the committed data; each such
fact is checked here against every committed run's tables, so a rerun that breaks one fails."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saerepro.figures import FIGURES, TOY_FIGURES
from saerepro.manifest import COMMITTED_RUNS

#: The committed runs whose figures carry these captions (the table-only reruns, reseed and budget,
#: draw none).
RUN_TABLES = [run.tables for run in COMMITTED_RUNS if run.figures]

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "workflow" / "report"


def _committed(name: str) -> list[tuple[str, pd.DataFrame]]:
    out = [(t, pd.read_csv(REPO / t / name)) for t in RUN_TABLES if (REPO / t / name).exists()]
    assert out or name != "metrics.csv", "no committed metrics table"
    return out


def _gated_and_baseline(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["architecture"].isin(["gated", "baseline"])]


def test_fig6_raw_gamma_sits_near_one_at_resid_and_hides_the_shrinkage_gamma_c_shows():
    caption = (REPORT / "fig6_shrinkage.rst").read_text()
    assert "raw γ sits near 1 for every SAE" in caption
    checked = 0
    for table, df in _committed("metrics.csv"):
        resid = df[(df["model"] == "gemma-3-270m") & (df["site"] == "resid")]
        if resid.empty:
            continue
        checked += 1
        assert resid["gamma"].between(0.97, 1.03).all(), (table, resid["gamma"].agg(["min", "max"]).tolist())
        # ... while the centred γ_c of the same SAEs spreads well below it
        assert resid["gamma_c"].min() < resid["gamma"].min() - 0.05, table
    assert checked >= 2


def test_nmse_caption_low_nmse_with_poor_loss_recovered_at_layer_6_mlp():
    caption = (REPORT / "nmse_frontier.rst").read_text()
    assert "NMSE ≤ 0.12, yet their loss recovered goes down to 0.70 or below" in caption
    checked = 0
    for table, df in _committed("metrics.csv"):
        mlp = _gated_and_baseline(df[(df["model"] == "gemma-3-270m") & (df["layer"] == 6) & (df["site"] == "mlp")])
        if len(mlp) < 8:  # a sweep, not a handful of seeds at one λ
            continue
        checked += 1
        assert mlp["nmse"].max() <= 0.12, table
        assert mlp["loss_recovered"].min() <= 0.70, table
    assert checked >= 2


def test_training_health_caption_healthy_runs_stay_within_three_fold():
    caption = (REPORT / "training_health.rst").read_text()
    assert "5x or more" in caption and "Healthy runs stay within ~3x" in caption
    health = _committed("training_health.csv")
    assert health, "no committed training_health.csv"
    above = []
    for table, df in health:
        assert (df["diverged"] == (df["max_loss_spike"] >= 5)).all(), table
        high = df[~df["diverged"] & (df["max_loss_spike"] >= 3)]
        above += [
            (r.layer, r.site, r.architecture, r.coefficient, round(r.max_loss_spike, 1)) for r in high.itertuples()
        ]
    # the one exception the caption names
    assert above == [(6, "mlp", "jumprelu", 0.03, 4.1)], above
    assert "JumpReLU at λ 0.03 at layer-6 mlp of the extras run, which peaked at 4.1x" in " ".join(caption.split())


def test_metrics_table_caption_names_every_table_the_figures_read():
    caption = (REPORT / "metrics_table.rst").read_text()
    assert "drawn from this table alone" not in caption
    assert "training_health.csv" in caption and "inference_opt/" in caption


def test_the_paper_map_names_every_figure_the_suite_draws():
    paper_map = (REPO / "docs" / "paper-map.md").read_text()
    stems = set(re.findall(r"figures/(?:long/)?(\w+)\.\{png,pdf\}", paper_map))
    missing = set(FIGURES) | set(TOY_FIGURES) | {"fig10_inference_opt_decoders", "fig11_inference_opt_frontiers"}
    assert not missing - stems, f"docs/paper-map.md does not list {sorted(missing - stems)}"


@pytest.mark.parametrize("stem", sorted(p.stem for p in REPORT.glob("*.rst")))
def test_captions_send_readers_to_files_that_exist(stem):
    """A caption that names a benchmark script or a table must name one that exists."""
    text = (REPORT / f"{stem}.rst").read_text()
    for script in re.findall(r"benchmarks/\w+\.py", text):
        assert (REPO / script).exists(), (stem, script)


TOYS = REPO / "results" / "tables" / "toys"


def test_fig2_caption_every_trained_toy_sae_sits_on_its_loss_optimum():
    caption = (REPORT / "fig2_shrinkage_toy.rst").read_text()
    assert "to within 0.001 of the dashed optimum" in caption and "(0.5 at λ = 1)" in caption
    table = pd.read_csv(TOYS / "shrinkage_toy.csv")
    assert (table["reconstruction"] - table["optimum"]).abs().max() < 1e-3
    base = table[table["architecture"] == "baseline"].set_index("coefficient")
    assert base.loc[1.0, "reconstruction"] == pytest.approx(0.5, abs=1e-3)
    assert (table.loc[table["architecture"] == "gated", "optimum"] == 1.0).all()


def test_fig15_caption_quotes_the_committed_toy_table():
    caption = " ".join((REPORT / "fig15_jumprelu_toy.rst").read_text().split())
    table = pd.read_csv(TOYS / "jumprelu_toy.csv")
    fitted = table[table["setting"] == "fitted"]

    def at(encoder: str, t: float) -> pd.Series:
        return fitted[(fitted["encoder"] == encoder) & np.isclose(fitted["t"], t)].iloc[0]

    relu1, jump1, relu15, jump15 = at("relu", 1.0), at("jumprelu", 1.0), at("relu", 1.5), at("jumprelu", 1.5)
    assert f"the best ReLU (m {relu1['m']:.2f}) has relative MSE {relu1['relative_mse']:.3f}" in caption
    assert f"the best JumpReLU (d {jump1['d']:.2f}, m {jump1['m']:.2f}) {jump1['relative_mse']:.3f}" in caption
    assert (
        f"t = 1.5, {relu15['fire_rate_off']:.0%} false firing: {jump15['relative_mse']:.3f} against "
        f"{relu15['relative_mse']:.3f}"
    ) in caption
    paper = table[(table["encoder"] == "jumprelu") & (table["setting"] == "app_f")].iloc[0]
    assert f"has {paper['relative_mse']:.3f}: no better than the best ReLU at the same threshold" in caption
    assert abs(paper["relative_mse"] - relu1["relative_mse"]) < 0.005
    relu = fitted[fitted["encoder"] == "relu"]
    best = relu.loc[relu["relative_mse"].idxmin()]
    jump_best = fitted.loc[fitted.loc[fitted["encoder"] == "jumprelu", "relative_mse"].idxmin()]
    assert f"about {best['fire_rate_off']:.0%} false firing, both {best['relative_mse']:.3f}" in caption
    assert f"{jump_best['relative_mse']:.3f}" == f"{best['relative_mse']:.3f}"
    by_t = fitted.pivot(index="t", columns="encoder", values="relative_mse")
    assert (by_t["jumprelu"] <= by_t["relu"] + 1e-4).all()  # "at most the ReLU's"


def test_committed_toy_tables_are_what_the_current_code_computes(tmp_path):
    from saerepro.toys import write_toy_tables

    for fresh in write_toy_tables(tmp_path):
        committed = pd.read_csv(TOYS / fresh.name)
        new = pd.read_csv(fresh)
        assert list(new.columns) == list(committed.columns) and len(new) == len(committed), fresh.name
        for col in new.columns:
            if new[col].dtype.kind in "fi":
                np.testing.assert_allclose(new[col], committed[col], rtol=1e-5, atol=1e-6, err_msg=col)
            else:
                assert new[col].equals(committed[col]), col
