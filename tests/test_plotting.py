"""Tests of saerepro.figures: every figure is written and draws the data it should."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from saerepro import figures as P
from saerepro import verdicts as V
from saerepro.figures.panels import _log_axis
from saerepro.pareto import half_l0, pareto_frontier
from saerepro.sites import SITES
from saerepro.tables import ARCHITECTURES, aggregate_seeds, read_metrics_table
from tests.synthetic import synthetic_metrics_table

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
    assert set(P.FIGURES) == {
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
    }


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


def test_fig01_draws_dominated_points_visibly(agg, tmp_path):
    """Every SAE is a marker, the dominated ones too, opaque enough to read and inside the axes
    (issue 12: faint dominated points had hidden a negative loss recovered)."""
    layer5 = agg[agg.layer == 5]
    worst = layer5[(layer5.site == "mlp") & (layer5.architecture == "gated")].iloc[[0]]
    dominated = worst.assign(l0=worst["l0"] * 2, loss_recovered=-0.4, coefficient=worst["coefficient"] / 7)
    df = pd.concat([layer5, dominated], ignore_index=True)
    fig = P.plot_pareto_headline(df, tmp_path / "d", layer=5)
    ax = fig.axes[1]  # mlp
    pts = df[(df.site == "mlp") & (df.architecture == "gated")]
    (points,) = [c for c in ax.collections if c.get_gid() == "points:gated"]
    drawn = sorted(map(tuple, np.asarray(points.get_offsets())))
    assert drawn == sorted(zip(pts["l0"], pts["loss_recovered"], strict=True))
    assert len(drawn) > len(pareto_frontier(pts, "l0", "loss_recovered"))
    assert points.get_alpha() >= 0.5
    assert ax.get_ylim()[0] < -0.4 < ax.get_ylim()[1]


def test_fig01_default_layer_and_missing_data(agg, tmp_path):
    df = agg[~((agg.site == "attn") | ((agg.site == "mlp") & (agg.architecture == "gated")))]
    fig = P.plot_pareto_headline(df, tmp_path / "f")
    assert "layer 2" in fig._suptitle.get_text()  # middle (lower) of layers 2, 5
    resid, mlp, attn = fig.axes
    assert _texts(attn) == ["no data"] and not attn.get_lines()
    assert set(_lines(mlp, "frontier:")) == {"frontier:baseline"}
    assert "(no data: Gated)" in mlp.get_title()  # outside the axes, over no point
    assert not mlp.texts  # and no verdict note: verdicts live in verdicts.md and the caption
    only_base = P.plot_pareto_headline(agg[agg.architecture == "baseline"], tmp_path / "g")
    assert "Gated (no data)" in [t.get_text() for t in only_base.legends[0].get_texts()]


def test_fig01_of_a_neuron_site_run_draws_only_that_site(agg, tmp_path):
    """A run of MLP neurons alone (config/experiments/neurons.yaml, paper Fig. 5) gets one panel,
    not three empty paper-site panels beside it; with a paper site present, all three are drawn."""
    neurons = agg[agg.site == "mlp"].assign(site="mlp_post")
    fig = P.plot_pareto_headline(neurons, tmp_path / "n")
    assert [ax.get_title().split("\n")[0] for ax in fig.axes] == [P.SITE_LABELS["mlp_post"]]
    assert set(_lines(fig.axes[0], "frontier:")) == {"frontier:gated", "frontier:baseline"}
    both = P.plot_pareto_headline(pd.concat([agg[agg.site == "resid"], neurons]), tmp_path / "b")
    assert len(both.axes) == 4 and _texts(both.axes[1]) == ["no data"]


def test_an_sae_that_diverged_in_training_is_crossed_out_and_named_in_the_legend(tmp_path):
    table = synthetic_metrics_table(layers=(5,), coefficients=(1, 2, 4), seeds=(0, 1))
    bad = (table.architecture == "topk") & (table.site == "resid") & (table.coefficient == 4) & (table.seed == 1)
    table = table.assign(diverged=bad)
    agg = aggregate_seeds(table)  # one diverged seed marks its (mean) point
    assert int(agg["diverged"].sum()) == 1
    fig = P.plot_delta_lm_loss(agg, tmp_path / "d", layer=5)
    resid = fig.axes[0]
    (cross,) = [c for c in resid.collections if c.get_gid() == "diverged:topk"]
    point = agg[agg.diverged].iloc[0]
    np.testing.assert_allclose(cross.get_offsets(), [[point.l0, point.delta_lm_loss]])
    assert not any(str(c.get_gid()).startswith("diverged:") for ax in fig.axes[1:] for c in ax.collections)
    assert P.DIVERGED_LABEL in [t.get_text() for t in fig.legends[0].get_texts()]
    clean = P.plot_delta_lm_loss(aggregate_seeds(table.drop(columns="diverged")), tmp_path / "c", layer=5)
    assert P.DIVERGED_LABEL not in [t.get_text() for t in clean.legends[0].get_texts()]


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
    _log_axis(ax, "x", values)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(labels) == 3 and len(set(labels)) == 3
    assert all(48.2 <= float(t) <= 48.3 for t in labels)


def test_log_axis_of_a_single_value_gets_one_short_label_and_a_window_around_it():
    """A panel with one SAE (a partial run): its L0 is not printed to 7 digits, and its error bar
    does not set the axis limits."""
    fig, ax = plt.subplots()
    ax.errorbar([98.63856], [0.7277], xerr=[[97.0], [300.0]], fmt="o")
    _log_axis(ax, "x", [98.63856])
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels == ["98.6"]
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(98.63856 / 1.5) and hi == pytest.approx(98.63856 * 1.5)


# --------------------------------------------------------------------------- this run's verdicts
# Each claim-bearing figure states, above each panel, this run's verdict on the paper's claim there
# (saerepro.verdicts, the cells of results/tables/verdicts.md). Drawn from the committed default
# run, the notes must be the verdict table's cells at their panel's (layer, site), and what they
# state must be what the committed table shows, checked here without saerepro's own frontier,
# interpolation or verdict code.

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "tables" / "metrics.csv"
_SITE_OF_TITLE = {label: site for site, label in P.SITE_LABELS.items()}


@pytest.fixture(scope="module")
def committed():
    """The committed default run as make_all_figures draws it (seeds averaged), its verdict table
    and the raw table (for the independent checks)."""
    raw = read_metrics_table(COMMITTED)
    agg = aggregate_seeds(raw)
    return agg, V.verdict_table(agg), raw


def _cell(table, layer: int, site: str, claim: str) -> str:
    row = table[(table["Layer"] == layer) & (table["Site"] == site)]
    assert len(row) == 1
    return str(row.iloc[0][claim])


def _panels(fig, agg, per_layer_rows: bool):
    """(ax, layer, site) of every panel with data: the site from the column's title, the layer from
    the row (grids: one row per layer, in order) or the figure's single layer."""
    layers = sorted(int(v) for v in agg["layer"].unique())
    sites = [s for s in SITES if s in set(agg["site"])]
    n_rows = len(fig.axes) // len(sites)
    grid = np.array(fig.axes).reshape(n_rows, len(sites))
    assert [_SITE_OF_TITLE[ax.get_title().split("\n")[0]] for ax in grid[0]] == sites
    for i, row in enumerate(grid):
        for ax, site in zip(row, sites, strict=True):
            yield ax, layers[i] if per_layer_rows else layers[(len(layers) - 1) // 2], site


def _assert_no_verdict_on_the_panels(fig):
    """Issue 28, point 7: a panel is titled by its hook point; the verdict is in verdicts.md and
    the caption, not on the figure."""
    assert not [t for ax in fig.axes for t in ax.texts if t.get_gid() == "verdict"]
    for ax in fig.axes:
        assert "C1" not in ax.get_title() and "C2" not in ax.get_title() and "This run" not in ax.get_title()


def _frontier(pts):
    """The loss-recovered Pareto frontier, written out: in order of L0, each SAE that recovers more
    than every sparser one."""
    pts = pts[pts["l0"] > 0].sort_values("l0")
    best, keep = -np.inf, []
    for l0, lr in zip(pts["l0"], pts["loss_recovered"], strict=True):
        if lr > best:
            keep.append((l0, lr))
            best = lr
    return np.array(keep)


def _at_l0(curve, l0):
    """``curve`` (rows of L0, y) read at ``l0``, linearly in log L0."""
    return np.interp(np.log(l0), np.log(curve[:, 0]), curve[:, 1])


def _seed_means(raw, layer, site, arch):
    pts = raw[(raw["layer"] == layer) & (raw["site"] == site) & (raw["architecture"] == arch)]
    return pts.groupby("coefficient")[["l0", "loss_recovered", "gamma_c"]].mean().reset_index()


NUM = r"([+-]?\d+\.\d+)"


@pytest.mark.parametrize(
    "func",
    [
        P.plot_pareto_headline,
        P.plot_pareto_grid,
        P.plot_shrinkage,
        P.plot_gamma_grid,
        P.plot_gated_ablations,
        P.plot_baseline_rescale_shift,
    ],
)
def test_committed_figures_are_titled_by_hook_point_with_no_verdict_on_them(committed, tmp_path, func):
    agg, table, raw = committed
    fig = func(agg, tmp_path / "f")
    panels = list(_panels(fig, agg, per_layer_rows=func in (P.plot_pareto_grid, P.plot_gamma_grid)))
    assert len(panels) >= len(table)
    _assert_no_verdict_on_the_panels(fig)


def _fits(raw, layer, site, metric):
    """Gated's and baseline's fitted frontiers of ``metric``, refitted here from the raw rows."""
    from saerepro.frontier import fit

    pts = raw[(raw["layer"] == layer) & (raw["site"] == site)]
    return (fit(pts[pts["architecture"] == a], metric, V.RULES.n_boot, V.RULES.seed) for a in ("gated", "baseline"))


SHARES = r"\(ahead on (\d+)%, behind on (\d+)% of L0 (\d+)–(\d+)\)"


def test_committed_c2_cells_state_what_the_fitted_frontiers_show(committed):
    agg, table, raw = committed
    checked = 0
    for layer, site in zip(table["Layer"], table["Site"], strict=True):
        text = _cell(table, layer, site, "C2")
        m = re.fullmatch(
            rf"(shown|shown at some L0|not shown|reversed|reversed at some L0|mixed): {NUM} ± {NUM} at L0 (\d+) {SHARES}",
            text,
        )
        assert m, text
        word, diff, x, ahead, behind = m[1], float(m[2]), float(m[4]), int(m[5]), int(m[6])
        g, b = _fits(raw, layer, site, "loss_recovered")
        # the stated difference is the two fitted frontiers' gap at the stated L0 (rounded to an integer)
        assert float(g.predict([x])[0] - b.predict([x])[0]) == pytest.approx(diff, abs=0.01), (site, text)
        # the label says where the band excludes 0: all of the range, part of it, or none
        expected = {
            "shown": ahead == 100 and behind == 0,
            "reversed": behind == 100 and ahead == 0,
            "mixed": ahead > 0 and behind > 0,
            "shown at some L0": 0 < ahead < 100 and behind == 0,
            "reversed at some L0": 0 < behind < 100 and ahead == 0,
            "not shown": ahead == behind == 0,
        }
        assert expected[word], (site, text)
        checked += 1
    assert checked == len(table)


def test_committed_c1_cells_state_what_the_fitted_gammas_show(committed):
    agg, table, raw = committed
    for layer, site in zip(table["Layer"], table["Site"], strict=True):
        text = _cell(table, layer, site, "C1")
        band = rf"{NUM} \[{NUM}, {NUM}\]"
        m = re.fullmatch(
            rf"(shown|not shown|reversed): γ_c gated {band}, baseline {band} at L0 (\d+); baseline below 1 on "
            rf"(\d+)%, gated within ±(\d+\.\d+) of 1 on (\d+)% of L0 (\d+)–(\d+)",
            text,
        )
        assert m, text
        word, g_said, b_said, x = m[1], float(m[2]), float(m[5]), float(m[8])
        base_below, tolerance, gated_near = int(m[9]), float(m[10]), int(m[11])
        g, b = _fits(raw, layer, site, "gamma_c")
        assert float(g.predict([x])[0]) == pytest.approx(g_said, abs=0.01), (site, text)
        assert float(b.predict([x])[0]) == pytest.approx(b_said, abs=0.01), (site, text)
        assert tolerance == V.RULES.gamma_tolerance
        # both halves of the claim, over the whole range
        assert (word == "shown") == (base_below == 100 and gated_near == 100), (site, text)


def test_committed_c3_cells_state_what_the_fitted_frontiers_need(committed, tmp_path):
    agg, table, raw = committed
    fig = P.plot_half_l0(half_l0(agg), tmp_path / "f")
    _assert_no_verdict_on_the_panels(fig)
    for layer, site in zip(table["Layer"], table["Site"], strict=True):
        text = _cell(table, layer, site, "C3")
        if text == "no overlap":  # no stated level lies inside both architectures' observed loss recovered
            g, b = _fits(raw, layer, site, "loss_recovered")
            lo, hi = max(g.y_range[0], b.y_range[0]), min(g.y_range[1], b.y_range[1])
            assert not any(lo <= level <= hi for level in (0.7, 0.8, 0.9)), (site, lo, hi)
            continue
        bound = r"(-?inf|[+-]?\d+\.\d+)"
        m = re.fullmatch(
            rf"(shown|not shown|reversed): (\d+\.\d+|undefined \(a fit not monotone\)) \[{bound}, {bound}\] at "
            rf"loss recovered {NUM} \((≈2 not excluded|2 excluded)(; undefined in \d+% of draws)?\)",
            text,
        )
        assert m, text
        low, high, level = float(m[3]), float(m[4]), float(m[5])
        # the L0 each fitted frontier needs at that level, as a ratio
        g, b = _fits(raw, layer, site, "loss_recovered")
        if m[2][0].isdigit():
            assert b.l0_at(level)[0] / g.l0_at(level)[0] == pytest.approx(float(m[2]), abs=0.01), (site, text)
        assert (m[1] == "shown") == (low > 1) and (m[1] == "reversed") == (high < 1), (site, text)
        assert (m[6] == "≈2 not excluded") == (low <= 2 <= high)


@pytest.mark.parametrize("claim,ablation", [("C4", "gated_unfrozen_decoder"), ("C5", "baseline_rescale_shift")])
def test_ablation_verdicts_follow_where_the_ablation_was_trained(agg, claim, ablation):
    # trained at resid only (as in the long run): resid has a verdict with numbers, mlp and attn "not run"
    df = agg[(agg["architecture"] != ablation) | (agg["site"] == "resid")]
    table = V.verdict_table(df)
    cells = {s: _cell(table, 5, s, claim) for s in ("resid", "mlp", "attn")}
    assert cells["mlp"] == cells["attn"] == "not run" and " at L0 " in cells["resid"]


def test_missing_architectures_are_named_where_the_run_trains_them_and_wrapped(agg, tmp_path):
    # the four ablations at resid only (as the long run trains them): not "missing" at mlp and attn
    resid_only = agg[~agg["architecture"].str.startswith("gated_") | (agg["site"] == "resid")]
    fig = P.plot_gated_ablations(resid_only, tmp_path / "f", layer=5)
    assert "no data" not in fig.axes[1].get_title() + fig.axes[2].get_title()
    # trained at resid and attn but lost at mlp: all four named there, wrapped so that the titles
    # and the notes stay apart
    lost = agg[~agg["architecture"].str.startswith("gated_") | (agg["site"] != "mlp")]
    fig = P.plot_gated_ablations(lost, tmp_path / "g", layer=5)
    assert fig.axes[1].get_title().count(";") == 3 and "no data" not in fig.axes[2].get_title()
    r = fig.canvas.get_renderer()
    titles = [ax.title.get_window_extent(r) for ax in fig.axes]
    assert not any(a.overlaps(b) for k, a in enumerate(titles) for b in titles[k + 1 :])
    assert all(fig.bbox.containsx(t.x0) and fig.bbox.containsx(t.x1) for t in titles)


def test_verdicts_come_from_their_own_panel(agg):
    # the synthetic sites differ: moving one site's gated SAEs changes that site's verdict only
    moved = agg.copy()
    sel = (moved["site"] == "mlp") & (moved["architecture"] == "gated")
    moved.loc[sel, "loss_recovered"] -= 0.2
    cells = [[_cell(V.verdict_table(a), 5, s, "C2") for s in ("resid", "mlp", "attn")] for a in (agg, moved)]
    assert cells[0][0] == cells[1][0] and cells[0][2] == cells[1][2]
    assert cells[0][1].startswith("shown") and cells[1][1].startswith("reversed")


def test_half_l0_ci_of_a_lone_level_is_drawn_as_a_bar(agg, tmp_path):
    """A shaded band between undefined neighbours has no width, so each defined level's 95% interval
    is also an error bar (the neurons run has one level inside both frontiers)."""
    half = half_l0(agg)
    half = half[half.site == "resid"].assign(ratio=np.nan, ci_low=np.nan, ci_high=np.nan)
    lone = half.index[(half.layer == 5)][1]
    half.loc[lone, ["ratio", "ci_low", "ci_high"]] = [1.3, 0.9, 1.6]
    fig = P.plot_half_l0(half, tmp_path / "lone")
    ys = [
        seg[:, 1]
        for col in fig.axes[0].collections
        if str(col.get_gid()).startswith("ratio_ci_bars")
        for seg in col.get_segments()
    ]
    assert len(ys) == 1 and np.allclose(sorted(ys[0]), [0.9, 1.6])


def test_half_l0_says_why_a_defined_ratio_has_no_bar(agg, tmp_path):
    """A ratio whose interval is unbounded (a refit that never reaches the level counts as ±∞) gets
    no bar; the panel says so instead of leaving a bare point (the default's mlp panel)."""
    half = half_l0(agg)
    half = half[half.site == "resid"].assign(ratio=np.nan, ci_low=np.nan, ci_high=np.nan)
    lone = half.index[(half.layer == 5)][1]
    half.loc[lone, ["ratio", "ci_low", "ci_high"]] = [1.3, -np.inf, np.inf]
    level = float(half.loc[lone, "level"])
    fig = P.plot_half_l0(half, tmp_path / "unbounded")
    note = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "undefined_levels"]
    assert len(note) == 1 and f"no bar at {level:g} (unbounded interval)" in note[0], note
    bars = [c for c in fig.axes[0].collections if str(c.get_gid()).startswith("ratio_ci_bars")]
    assert all(len(c.get_segments()) == 0 for c in bars)


def test_toy_figures_draw_their_tables(tmp_path):
    from saerepro import toys

    shrink = pd.DataFrame(
        {
            "architecture": ["baseline", "baseline", "gated", "gated"],
            "coefficient": [0.5, 1.0, 0.5, 1.0],
            "reconstruction": [0.75, 0.5, 1.0, 1.0],
            "optimum": [0.75, 0.5, 1.0, 1.0],
        }
    )
    fig = P.plot_shrinkage_toy(shrink, tmp_path / "f2")
    _assert_written(tmp_path / "f2")
    (ax,) = fig.axes
    lines = _lines(ax, "toy:")
    np.testing.assert_allclose(lines["toy:baseline"].get_ydata(), [0.75, 0.5])
    np.testing.assert_allclose(lines["toy:gated"].get_ydata(), [1.0, 1.0])

    jump = toys.jumprelu_toy(n=20_000)
    fig = P.plot_jumprelu_toy(jump, tmp_path / "f15")
    _assert_written(tmp_path / "f15")
    frontier = _lines(fig.axes[2], "toy_frontier:")
    for encoder in ("relu", "jumprelu"):
        pts = jump[(jump.encoder == encoder) & (jump.setting == "fitted")].sort_values("fire_rate_off")
        np.testing.assert_allclose(frontier[f"toy_frontier:{encoder}"].get_ydata(), pts["relative_mse"])
    encoders = _lines(fig.axes[1], "toy_encoder:")
    assert set(encoders) == {"toy_encoder:relu:fitted", "toy_encoder:jumprelu:fitted", "toy_encoder:jumprelu:app_f"}
    with pytest.raises(P.FigureDataError, match="relative_mse"):
        P.plot_jumprelu_toy(jump.drop(columns="relative_mse"), tmp_path / "bad")


def test_pareto_and_shrinkage_panels_draw_the_fitted_frontiers_with_bands_and_every_seed(tmp_path):
    """Issue 28, point 7: the curve is the fit the verdicts read, its band is drawn, and with several
    seeds each seed's SAE stays visible beside the seed means."""
    from saerepro.frontier import fit

    raw = synthetic_metrics_table(layers=(6,), sites=("resid",), architectures=("gated", "baseline"), seeds=(0, 1, 2))
    agg3 = aggregate_seeds(raw)
    fig = P.plot_pareto_headline(agg3, tmp_path / "f", sites=["resid"])
    (ax,) = fig.axes
    for arch in ("gated", "baseline"):
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == f"fit:{arch}"]
        f = fit(raw[raw["architecture"] == arch], "loss_recovered", V.RULES.n_boot, V.RULES.seed)
        x, y = line.get_data()
        assert np.allclose(y, f.predict(x)) and x.min() == pytest.approx(f.l0_range[0])
        assert [c for c in ax.collections if c.get_gid() == f"band:{arch}"]
        (seeds,) = [c for c in ax.collections if c.get_gid() == f"seeds:{arch}"]
        assert len(seeds.get_offsets()) == len(raw[raw["architecture"] == arch]) == 3 * 6
    shrink = P.plot_shrinkage(agg3, tmp_path / "s", sites=["resid"])
    gamma_c = shrink.axes[1]
    assert {ln.get_gid() for ln in gamma_c.get_lines()} >= {"fit:gated", "fit:baseline"}
    assert not [
        ln for ln in shrink.axes[0].get_lines() if str(ln.get_gid()).startswith("fit:")
    ]  # raw γ: no verdict, no fit


def test_figures_of_a_run_show_only_the_sites_it_asked_for(tmp_path, monkeypatch):
    """Issue 28, point 7: a run of layer-6 mlp alone (make repro-mlp-seeds) gets no empty resid and
    attn panels; a site whose SAEs are only missing (a partial run) still shows as "no data"."""
    raw = synthetic_metrics_table(
        layers=(6,), sites=("mlp",), architectures=("gated", "baseline"), coefficients=(1, 2, 4)
    )
    tables = tmp_path / "tables"
    tables.mkdir()
    raw.to_csv(tables / "metrics.csv", index=False)
    pd.DataFrame(columns=["model", "corpus", "layer", "site", "architecture", "coefficient", "seed"]).to_csv(
        tables / "missing_runs.csv", index=False
    )
    panels = []
    draw = P.FIGURES["fig1_pareto_headline"]

    def spy(df, stem, **kwargs):
        fig = draw(df, stem, **kwargs)
        panels.append([ax.get_title().split("\n")[0] for ax in fig.axes])
        return fig

    monkeypatch.setitem(P.FIGURES, "fig1_pareto_headline", spy)
    P.figures_from_tables(tables, tmp_path / "figs", headline_layer=6)
    assert panels[-1] == [P.SITE_LABELS["mlp"]]
    pd.DataFrame([{"model": "gemma-3-270m", "corpus": "wiki-offline", "layer": 6, "site": "attn"}]).to_csv(
        tables / "missing_runs.csv", index=False
    )
    P.figures_from_tables(tables, tmp_path / "partial", headline_layer=6)
    assert panels[-1] == [P.SITE_LABELS["mlp"], P.SITE_LABELS["attn"]]  # the missing site is a panel again
    assert len(draw(aggregate_seeds(raw), tmp_path / "direct").axes) == 3  # called directly: the paper's three


def test_the_half_l0_figure_plots_the_fitted_ratios_the_c3_verdict_reads(tmp_path, monkeypatch):
    raw = synthetic_metrics_table(
        layers=(6,), sites=("resid",), architectures=("gated", "baseline"), coefficients=(1, 2, 4, 8)
    )
    seen = []
    draw = P.FIGURES["half_l0_ratios"]
    monkeypatch.setitem(
        P.FIGURES, "half_l0_ratios", lambda half, stem, **kw: seen.append(half) or draw(half, stem, **kw)
    )
    P.make_all_figures(raw, tmp_path, headline_layer=6)
    (half,) = seen
    pd.testing.assert_frame_equal(half, V.fitted_half_l0(raw))
    row = half[half["level"] == 0.9].iloc[0]
    assert (
        f"{row.ratio:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}] at loss recovered 0.9"
        in V.verdict_table(raw).iloc[0]["C3"]
    )
