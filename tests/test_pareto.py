"""Tests of saerepro.pareto on point sets with known frontiers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from saerepro.pareto import half_l0, interpolate_on_frontier, pareto_frontier, pareto_frontiers


def _pts(xy, **extra):
    df = pd.DataFrame(xy, columns=["l0", "loss_recovered"])
    for k, v in extra.items():
        df[k] = v
    return df


def _xy(df):
    return list(zip(df["l0"].tolist(), df["loss_recovered"].tolist(), strict=False))


def test_known_frontier_with_ties_and_duplicates():
    df = _pts([(1, 0.5), (2, 0.7), (3, 0.6), (4, 0.9), (4, 0.8), (5, 0.9), (2, 0.7), (0.5, 0.4), (6, 0.95)])
    fr = pareto_frontier(df, "l0", "loss_recovered")
    assert _xy(fr) == [(0.5, 0.4), (1, 0.5), (2, 0.7), (4, 0.9), (6, 0.95)]
    # exact duplicate (2, 0.7) at rows 1 and 6: the first is kept, index preserved
    assert list(fr.index) == [7, 0, 1, 3, 8]
    # same x, worse y (4, 0.8) dropped; same y, larger x (5, 0.9) dropped
    assert (5, 0.9) not in _xy(fr) and (4, 0.8) not in _xy(fr)


def test_frontier_is_strictly_monotone_and_keeps_columns():
    rng = np.random.default_rng(0)
    df = _pts(rng.integers(1, 8, size=(200, 2)).astype(float), arch="gated")
    fr = pareto_frontier(df, "l0", "loss_recovered")
    assert list(fr.columns) == list(df.columns)
    assert np.all(np.diff(fr["l0"]) > 0) and np.all(np.diff(fr["loss_recovered"]) > 0)


def test_frontier_matches_brute_force_dominance():
    rng = np.random.default_rng(1)
    df = _pts(rng.random((300, 2)))
    fr = pareto_frontier(df, "l0", "loss_recovered")
    x, y = df["l0"].to_numpy(), df["loss_recovered"].to_numpy()
    dominated = [
        any((x[j] <= x[i] and y[j] >= y[i]) and (x[j] < x[i] or y[j] > y[i]) for j in range(len(df)))
        for i in range(len(df))
    ]
    assert sorted(fr.index) == [i for i in range(len(df)) if not dominated[i]]


@pytest.mark.parametrize(
    "minimize_x,maximize_y,want",
    [
        (True, True, [(1, 1), (2, 2), (3, 3)]),
        (True, False, [(1, 1), (2, 0)]),
        (False, True, [(3, 3)]),
        (False, False, [(2, 0), (3, 0.5)]),
    ],
)
def test_frontier_directions(minimize_x, maximize_y, want):
    df = _pts([(1, 1), (2, 0), (3, 3), (3, 0.5), (2, 2)])
    fr = pareto_frontier(df, "l0", "loss_recovered", minimize_x=minimize_x, maximize_y=maximize_y)
    assert _xy(fr) == want


def test_frontier_empty_nan_and_missing_column():
    assert pareto_frontier(_pts([]), "l0", "loss_recovered").empty
    with pytest.raises(ValueError, match="non-finite"):
        pareto_frontier(_pts([(1, 0.5), (float("nan"), 0.6)]), "l0", "loss_recovered")
    with pytest.raises(ValueError, match="non-finite"):
        pareto_frontier(_pts([(1, 0.5), (2, float("inf"))]), "l0", "loss_recovered")
    with pytest.raises(ValueError, match="lacks column"):
        pareto_frontier(_pts([(1, 0.5)]), "l0", "nmse")


def test_frontiers_by_group():
    df = pd.concat([_pts([(1, 0.5), (2, 0.4), (3, 0.9)], arch="a"), _pts([(1, 0.1), (2, 0.2)], arch="b")])
    fr = pareto_frontiers(df, "l0", "loss_recovered", by=["arch"])
    assert _xy(fr[fr.arch == "a"]) == [(1, 0.5), (3, 0.9)]
    assert _xy(fr[fr.arch == "b"]) == [(1, 0.1), (2, 0.2)]


def test_interpolation_is_linear_in_log_l0():
    fr = _pts([(10, 0.8), (40, 0.9), (160, 0.95)])
    got = interpolate_on_frontier(fr, [0.8, 0.85, 0.9, 0.925, 0.95])
    assert got == pytest.approx([10, 20, 40, 80, 160])
    # outside the frontier's range: NaN, never extrapolated
    out = interpolate_on_frontier(fr, [0.79, 0.96, 1.5])
    assert np.isnan(out).all()
    # dominated points do not bend the curve; L0 <= 0 points are ignored
    noisy = pd.concat([fr, _pts([(50, 0.7), (100, 0.85), (0, 0.1)])])
    assert interpolate_on_frontier(noisy, [0.85])[0] == pytest.approx(20)
    assert np.isnan(interpolate_on_frontier(_pts([]), [0.9])).all()
    single = interpolate_on_frontier(_pts([(7, 0.9)]), [0.9, 0.91])
    assert single[0] == pytest.approx(7) and math.isnan(single[1])


def _family(l0s, arch, lr_of_l0, **keys):
    return pd.DataFrame(
        [
            {
                "model": "m",
                "layer": 1,
                "site": "resid",
                **keys,
                "architecture": arch,
                "l0": v,
                "loss_recovered": lr_of_l0(v),
            }
            for v in l0s
        ]
    )


def test_half_l0_exact_factor_two():
    def base(v):
        return 1 - 1 / math.sqrt(v)

    def gated(v):
        return base(2 * v)  # gated reaches any loss recovered with half the L0

    l0s = [4, 8, 16, 32, 64, 128, 256]
    df = pd.concat([_family(l0s, "baseline", base), _family(l0s, "gated", gated)])
    levels = [0.5, 0.8, 0.9, 0.95]
    res = half_l0(df, levels)
    assert list(res.columns) == ["model", "layer", "site", "level", "l0_gated", "l0_baseline", "ratio", "note"]
    res = res.set_index("level")
    # interpolating log L0 linearly in loss recovered is not exact on a curved frontier, so
    # check the levels that sit exactly on sampled points of both frontiers and bound the others.
    # baseline: level 0.75 <-> L0 16; gated: 0.75 <-> 8.
    exact = half_l0(df, [0.75, 0.875])
    assert exact["l0_baseline"].tolist() == pytest.approx([16, 64])
    assert exact["l0_gated"].tolist() == pytest.approx([8, 32])
    assert exact["ratio"].tolist() == pytest.approx([2, 2])
    assert res.loc[0.8, "ratio"] == pytest.approx(2, rel=0.05)
    assert res.loc[0.9, "ratio"] == pytest.approx(2, rel=0.05)
    # 0.5 is the baseline's lowest point (L0 4) but below the gated frontier (min 1 - 1/sqrt(8))
    assert res.loc[0.5, "l0_baseline"] == pytest.approx(4)
    assert math.isnan(res.loc[0.5, "l0_gated"]) and math.isnan(res.loc[0.5, "ratio"])
    assert res.loc[0.5, "note"] == "outside gated frontier"
    # 0.95 is above the baseline frontier (max 1 - 1/16 = 0.9375) but inside the gated one
    assert math.isnan(res.loc[0.95, "l0_baseline"]) and np.isfinite(res.loc[0.95, "l0_gated"])
    assert res.loc[0.95, "note"] == "outside baseline frontier"
    assert res.loc[0.9, "note"] == ""


def test_half_l0_groups_and_missing_architecture():
    def f(v):
        return 1 - 1 / v

    df = pd.concat(
        [
            _family([2, 4, 8], "baseline", f),
            _family([1, 2, 4], "gated", f),
            _family([2, 4, 8], "baseline", f, site="mlp"),  # no gated SAEs at mlp
            _family([2, 4, 8], "topk", f, site="attn"),  # neither architecture: group absent
        ]
    )
    res = half_l0(df, [0.6])
    assert set(res["site"]) == {"resid", "mlp"}
    mlp = res[res.site == "mlp"].iloc[0]
    assert math.isnan(mlp["ratio"]) and mlp["note"] == "no gated SAEs"
    # 0.6 lies 40% of the way from (2, 0.5) to (4, 0.75): log-linear gives 2 · 2^0.4
    assert mlp["l0_baseline"] == pytest.approx(2**1.4)
    resid = res[res.site == "resid"].iloc[0]
    assert resid["ratio"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        half_l0(df, [])
    with pytest.raises(ValueError, match="lacks column"):
        half_l0(df.drop(columns="site"), [0.6])
