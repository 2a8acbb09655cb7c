"""Tests of saerepro.plotting: every figure is written and draws the data it should."""

from __future__ import annotations

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pytest

from saerepro import plotting as P
from saerepro.pareto import half_l0, pareto_frontier
from saerepro.tables import ARCHITECTURES, aggregate_seeds, synthetic_metrics_table

MODEL = "gemma-3-270m"


@pytest.fixture(scope="module")
def agg():
    return aggregate_seeds(synthetic_metrics_table(layers=(2, 5), coefficients=(1, 2, 4, 8, 16), seeds=(0,)))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _lines(ax, prefix):
    return {ln.get_gid(): ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith(prefix)}


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def _assert_written(stem):
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def test_backend_and_style_map():
    assert matplotlib.get_backend().lower() == "agg"
    assert set(P.ARCH_STYLES) == set(ARCHITECTURES)
    colours = [mcolors.to_hex(s.color) for s in P.ARCH_STYLES.values()]
    assert len(set(colours)) == len(colours)
    assert len({s.marker for s in P.ARCH_STYLES.values()}) == len(P.ARCH_STYLES)
    assert P.arch_style("mystery").label == "mystery"
    assert list(P.FIGURES) == [
        "fig1_pareto_headline",
        "fig12_pareto_grid",
        "fig6_shrinkage",
        "fig8_ablations",
        "fig9_rescale_shift",
        "delta_lm_loss_all",
        "nmse_frontier",
        "dead_latents",
        "fig14_gamma_grid",
        "half_l0_ratios",
    ]


def test_fig01_frontier_lines_equal_the_frontier(agg, tmp_path):
    stem = tmp_path / "fig01"
    fig = P.plot_pareto_headline(agg, stem, layer=5)
    _assert_written(stem)
    assert len(fig.axes) == 3
    for ax, site in zip(fig.axes, ["resid", "mlp", "attn"], strict=False):
        assert ax.get_xscale() == "log"
        lines = _lines(ax, "frontier:")
        assert set(lines) == {"frontier:gated", "frontier:baseline"}
        for arch in ("gated", "baseline"):
            pts = agg[(agg.layer == 5) & (agg.site == site) & (agg.architecture == arch)]
            fr = pareto_frontier(pts, "l0", "loss_recovered")
            np.testing.assert_allclose(lines[f"frontier:{arch}"].get_xdata(), fr["l0"])
            np.testing.assert_allclose(lines[f"frontier:{arch}"].get_ydata(), fr["loss_recovered"])
            assert lines[f"frontier:{arch}"].get_color() == P.ARCH_STYLES[arch].color
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["Gated", "Baseline (ReLU)"]
    assert "layer 5" in fig._suptitle.get_text()


def test_fig01_default_layer_and_missing_data(agg, tmp_path):
    df = agg[~((agg.site == "attn") | ((agg.site == "mlp") & (agg.architecture == "gated")))]
    fig = P.plot_pareto_headline(df, tmp_path / "f")
    assert "layer 2" in fig._suptitle.get_text()  # middle (lower) of layers 2, 5
    resid, mlp, attn = fig.axes
    assert _texts(attn) == ["no data"] and not attn.get_lines()
    assert set(_lines(mlp, "frontier:")) == {"frontier:baseline"}
    assert "(no data: Gated)" in mlp.get_title() and not _texts(mlp)  # outside the axes, over no point
    only_base = P.plot_pareto_headline(agg[agg.architecture == "baseline"], tmp_path / "g")
    assert "Gated (no data)" in [t.get_text() for t in only_base.legends[0].get_texts()]


def test_fig02_grid(agg, tmp_path):
    stem = tmp_path / "fig02"
    df = agg[~((agg.layer == 2) & (agg.site == "mlp"))]
    fig = P.plot_pareto_grid(df, stem)
    _assert_written(stem)
    axes = np.array(fig.axes).reshape(2, 3)
    assert _texts(axes[0, 1]) == ["no data"]
    ax = axes[1, 2]  # layer 5, attn
    fr = pareto_frontier(
        agg[(agg.layer == 5) & (agg.site == "attn") & (agg.architecture == "gated")], "l0", "loss_recovered"
    )
    np.testing.assert_allclose(
        _lines(ax, "frontier:")["frontier:gated"].get_xydata(), fr[["l0", "loss_recovered"]].to_numpy()
    )
    assert "Layer 5" in ax.get_ylabel() or "Layer 5" in axes[1, 0].get_ylabel()


def test_fig6_shrinkage(agg, tmp_path):
    stem = tmp_path / "fig03"
    fig = P.plot_shrinkage(agg, stem, layer=2)
    _assert_written(stem)
    axes = np.array(fig.axes).reshape(2, 3)
    for row, metric in enumerate(("gamma", "gamma_c")):
        for col, site in enumerate(("resid", "mlp", "attn")):
            ax = axes[row, col]
            assert ax.get_xscale() == "log"
            one = _lines(ax, "gamma_one")["gamma_one"]
            assert list(one.get_ydata()) == [1.0, 1.0] and one.get_linestyle() == "--"
            pts = agg[(agg.layer == 2) & (agg.site == site) & (agg.architecture == "baseline")].sort_values("l0")
            ln = _lines(ax, f"{metric}:")[f"{metric}:baseline"]
            np.testing.assert_allclose(ln.get_xdata(), pts["l0"])
            np.testing.assert_allclose(ln.get_ydata(), pts[metric])
    assert "mean-centred" in axes[1, 0].get_ylabel()


@pytest.mark.parametrize(
    "func,archs",
    [
        (
            P.plot_gated_ablations,
            ["gated", "gated_unfrozen_decoder", "gated_no_rmag", "gated_untied", "gated_strict_aux"],
        ),
        (P.plot_baseline_rescale_shift, ["baseline", "baseline_rescale_shift", "gated"]),
    ],
)
def test_fig04_fig05_ablation_frontiers(agg, tmp_path, func, archs):
    stem = tmp_path / func.__name__
    fig = func(agg, stem, layer=5)
    _assert_written(stem)
    for ax in fig.axes:
        assert set(_lines(ax, "frontier:")) == {f"frontier:{a}" for a in archs}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [P.ARCH_STYLES[a].label for a in archs]


def test_delta_lm_loss_all(agg, tmp_path):
    stem = tmp_path / "fig06"
    df = agg[agg.architecture != "jumprelu"]
    fig = P.plot_delta_lm_loss(df, stem, layer=5)
    _assert_written(stem)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = _lines(ax, "frontier:")
    assert len(lines) == 8 and "frontier:topk" in lines
    pts = agg[(agg.layer == 5) & (agg.site == "resid") & (agg.architecture == "topk")]
    fr = pareto_frontier(pts, "l0", "delta_lm_loss", maximize_y=False)
    np.testing.assert_allclose(lines["frontier:topk"].get_ydata(), fr["delta_lm_loss"])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    # a figure over every architecture lists only those with data
    assert "TopK" in " ".join(labels) and not any("JumpReLU" in t for t in labels)


def test_half_l0_ratios(agg, tmp_path):
    half = half_l0(agg)
    stem = tmp_path / "fig07"
    fig = P.plot_half_l0(half, stem)
    _assert_written(stem)
    ax = fig.axes[0]  # resid
    one, two = _lines(ax, "ratio_one")["ratio_one"], _lines(ax, "ratio_two")["ratio_two"]
    assert list(one.get_ydata()) == [1, 1] and list(two.get_ydata()) == [2, 2]
    want = half[(half.site == "resid") & (half.layer == 5)].sort_values("level")
    ln = _lines(ax, f"ratio:{MODEL}:5")[f"ratio:{MODEL}:5"]
    np.testing.assert_allclose(ln.get_xdata(), want["level"])
    np.testing.assert_allclose(ln.get_ydata(), want["ratio"])  # NaNs included: they leave gaps
    assert [float(t) for t in ax.get_xticks()] == sorted(half["level"].unique())
    # a panel with no defined ratio, and a missing site
    bad = half.copy()
    bad.loc[bad.site == "mlp", "ratio"] = np.nan
    fig2 = P.plot_half_l0(bad[bad.site != "attn"], tmp_path / "fig07b")
    assert "no level inside" in _texts(fig2.axes[1])[0] and _texts(fig2.axes[2]) == ["no data"]


def test_missing_columns_and_ambiguous_model(agg, tmp_path):
    with pytest.raises(P.FigureDataError, match="gamma_c"):
        P.plot_shrinkage(agg.drop(columns="gamma_c"), tmp_path / "x")
    with pytest.raises(P.FigureDataError, match="loss_recovered"):
        P.plot_pareto_headline(agg.drop(columns="loss_recovered"), tmp_path / "x")
    with pytest.raises(P.FigureDataError, match="ratio"):
        P.plot_half_l0(half_l0(agg).drop(columns="ratio"), tmp_path / "x")
    two = agg.assign(model="other")
    import pandas as pd

    both = pd.concat([agg, two])
    with pytest.raises(P.FigureDataError, match="several models"):
        P.plot_pareto_grid(both, tmp_path / "x")
    with pytest.raises(P.FigureDataError, match="no rows for model"):
        P.plot_pareto_grid(both, tmp_path / "x", model="gpt2")
    fig = P.plot_pareto_grid(both, tmp_path / "y", model="other")
    assert "other" in fig._suptitle.get_text()


def test_make_all_figures(tmp_path):
    df = synthetic_metrics_table(layers=(4,), sites=("resid",), coefficients=(1, 4, 16), seeds=(0, 1))
    paths = P.make_all_figures(df, tmp_path, headline_layer=4)
    assert len(paths) == 2 * len(P.FIGURES) and all(p.exists() for p in paths)
    assert {p.stem for p in paths} == set(P.FIGURES)
    assert (tmp_path / "fig6_shrinkage.png").exists() and (tmp_path / "half_l0_ratios.pdf").exists()
    assert not plt.get_fignums()
    two = synthetic_metrics_table(models=("a", "b/c"), layers=(4,), sites=("resid",), coefficients=(1, 4, 16))
    paths = P.make_all_figures(two, tmp_path / "two", headline_layer={"a": 4})
    assert (tmp_path / "two" / "b_c" / "fig1_pareto_headline.png").exists()
    assert (tmp_path / "two" / "half_l0_ratios.png").exists() and len(paths) == 2 * (2 * (len(P.FIGURES) - 1) + 1)


def test_pareto_and_shrinkage_figures_draw_the_tables_standard_errors(agg, tmp_path):

    pareto = P.plot_pareto_headline(agg, tmp_path / "p", layer=5)
    resid = pareto.axes[0]
    pts = agg[(agg.layer == 5) & (agg.site == "resid") & (agg.architecture == "gated")]
    segments = [c for c in resid.collections if (c.get_gid() or "").startswith("errors:gated")]
    assert segments, "no error bars on the Pareto figure"
    # vertical bars span loss_recovered ± loss_recovered_se, one per SAE
    ys = sorted(
        round(float(abs(s[1][1] - s[0][1])), 6) for c in segments for s in c.get_segments() if s[0][0] == s[1][0]
    )
    assert ys == sorted([round(2 * float(v), 6) for v in pts["loss_recovered_se"]])
    shrink = P.plot_shrinkage(agg, tmp_path / "s", layer=5)
    gids = {c.get_gid() for ax in shrink.axes for c in ax.collections}
    assert {"errors:gamma:gated", "errors:gamma_c:baseline"} <= gids


def test_nmse_dead_latent_and_gamma_grid_figures_draw_the_table(agg, tmp_path):
    fig = P.plot_nmse(agg, tmp_path / "nmse", layer=5)
    lines = _lines(fig.axes[0], "frontier:")
    pts = agg[(agg.layer == 5) & (agg.site == "resid") & (agg.architecture == "gated")]
    fr = pareto_frontier(pts, "l0", "nmse", maximize_y=False)
    np.testing.assert_allclose(lines["frontier:gated"].get_ydata(), fr["nmse"])
    assert fig.axes[0].get_yscale() == "log"
    dead = P.plot_dead_latents(agg, tmp_path / "dead", layer=5)
    line = _lines(dead.axes[1], "dead:baseline")["dead:baseline"]
    mlp = agg[(agg.layer == 5) & (agg.site == "mlp") & (agg.architecture == "baseline")].sort_values("l0")
    np.testing.assert_allclose(line.get_ydata(), 1 - mlp["alive_frac"])
    grid = P.plot_gamma_grid(agg, tmp_path / "g14")
    assert len(grid.axes) == 2 * 3  # layers 2, 5 x three sites
    gamma_c = _lines(grid.axes[3], "gamma_c:gated:5:resid")["gamma_c:gated:5:resid"]
    res = agg[(agg.layer == 5) & (agg.site == "resid") & (agg.architecture == "gated")].sort_values("l0")
    np.testing.assert_allclose(gamma_c.get_ydata(), res["gamma_c"])
    for stem in ("nmse", "dead", "g14"):
        _assert_written(tmp_path / stem)


def test_narrow_log_axis_gets_three_distinct_labels(tmp_path):
    fig, ax = plt.subplots()
    values = [48.21, 48.25, 48.29]
    ax.plot(values, [1, 2, 3])
    P._log_axis(ax, "x", values)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) == 3 and len(set(labels)) == 3
    assert all(48.2 <= float(t) <= 48.3 for t in labels)
