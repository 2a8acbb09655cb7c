"""Fitted frontiers and the verdicts' tests, calibrated by simulation (issue 28, point 5).

The calibration draws synthetic sweeps from a known frontier, 1 − loss recovered = 0.9·L0^(−0.477)
(0.7 at L0 10, 0.9 at L0 100), at the default design's 4 λ per architecture (L0 ≈ 6, 20, 60, 200,
each with 5% seed jitter in L0), with the measured seed SDs of loss recovered at fixed λ: 0.014
(layer-6 resid, gated) and 0.078 (mlp, pooled), one seed or three. docs/metrics.md prints the rates
this test measures (`python tests/test_frontier.py` prints them all).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saerepro.frontier import fit, interval_counting_undefined, simultaneous_band, t_quantile
from saerepro.verdicts import VerdictRules, frontier_claim, ratio_claim, rerun_comparison

A, BETA = 0.9, 0.477
SIMULATIONS = 200
RULES = VerdictRules(n_boot=200)


def truth(l0):
    return 1 - A * np.asarray(l0, dtype=float) ** (-BETA)


def sweep(rng, sigma: float, advantage: float = 1.0, seeds: int = 1, l0s=(6, 20, 60, 200)) -> pd.DataFrame:
    """Gated and baseline SAEs at 4 λ; gated reaches the baseline's loss recovered at 1/advantage its L0."""
    rows = []
    for arch, adv in (("gated", advantage), ("baseline", 1.0)):
        for i, l0 in enumerate(l0s):
            for s in range(seeds):
                jittered = l0 * np.exp(rng.normal(0, 0.05))
                y = float(truth(jittered * adv)) + rng.normal(0, sigma)
                rows.append(
                    dict(
                        model="m",
                        layer=6,
                        site="resid",
                        architecture=arch,
                        coefficient=float(i),
                        seed=s,
                        l0=jittered,
                        loss_recovered=y,
                    )
                )
    return pd.DataFrame(rows)


def rates(sigma: float, advantage: float, seeds: int, n: int = SIMULATIONS) -> dict[str, float]:
    """Share of simulated sweeps with C2 *shown* (the whole range), any positive C2 call (*shown*,
    *shown at some L0* or *mixed*), and C3 *shown* (ratio interval above 1)."""
    rng = np.random.default_rng(1)
    c2, c3 = [], []
    for _ in range(n):
        df = sweep(rng, sigma, advantage, seeds)
        c2.append(frontier_claim(df, "gated", "baseline", RULES).split(":")[0])
        c3.append(ratio_claim(df, RULES).split(":")[0])
    s2, s3 = pd.Series(c2), pd.Series(c3)
    return {
        "C2 shown": float((s2 == "shown").mean()),
        "C2 any positive": float(s2.isin(["shown", "shown at some L0", "mixed"]).mean()),
        "C3 shown": float((s3 == "shown").mean()),
    }


@pytest.mark.parametrize("sigma", [0.014, 0.078], ids=["resid-noise", "mlp-noise"])
@pytest.mark.parametrize("seeds", [1, 3])
def test_equal_architectures_are_called_different_rarely(sigma, seeds):
    r = rates(sigma, 1.0, seeds)
    assert r["C2 shown"] <= 0.05, r
    assert r["C3 shown"] <= 0.06, r  # measured 2.0-5.5% (one-sided 2.5% nominal: the design is small)
    assert r["C2 any positive"] <= 0.08, r  # measured 4.0-7.5%


def test_a_planted_twofold_l0_advantage_is_found_with_the_stated_power():
    """At the resid noise level: three seeds per λ find it (C2 positive somewhere) nearly always and
    C3 in ~90% of sweeps; one seed in about half."""
    three = rates(0.014, 2.0, 3)
    one = rates(0.014, 2.0, 1)
    assert three["C2 any positive"] >= 0.95 and three["C3 shown"] >= 0.8, three
    assert 0.3 <= one["C2 any positive"] <= 0.8 and 0.3 <= one["C3 shown"] <= 0.8, one


def rerun_rates(sigma: float, shift: float = 0.0, seeds: int = 1, n: int = SIMULATIONS) -> pd.DataFrame:
    """Per row of :func:`rerun_comparison` (C1–C3, the two frontiers): the share of simulated
    reruns with ``inside`` 1 and with ``within`` 1, each rerun an independent draw of the same
    design (equal architectures; γ_c scattered by 0.03, about resid's seed SD), its loss recovered
    moved by ``shift``. Undefined cells (no C3 level, say) count as agreeing."""
    rng = np.random.default_rng(3)
    tables = []
    for i in range(n):
        a, b = (sweep(rng, sigma, seeds=seeds) for _ in range(2))
        b["loss_recovered"] += shift
        for d in (a, b):
            d["gamma_c"] = 1.0 + rng.normal(0, 0.03, len(d))
        tables.append(rerun_comparison(a, b, RULES).assign(sim=i))
    t = pd.concat(tables)
    return (
        t.assign(inside=t["inside"].fillna(1) >= 1, within=t["within"].fillna(1) >= 1)
        .groupby("claim")[["inside", "within"]]
        .mean()
    )


def test_a_correct_rerun_moves_less_than_the_band_width_but_often_leaves_the_band():
    """The rerun rule's calibration (docs/metrics.md, "Reruns and budgets"): a rerun drawn from the
    same frontiers lies inside the first run's simultaneous band over the whole range in only
    ~76–86% of cells, because both estimates carry their own error; it moves by less than the band's
    width in ~90–97%. A frontier moved by 0.04 (about two budget doublings at resid) is caught by
    the width rule in about half the reruns: the rule is lenient at 4 λ per architecture."""
    same = rerun_rates(0.014)
    assert (same["within"] >= 0.87).all() and (same["inside"] <= 0.9).all(), same
    assert (same["within"] - same["inside"] >= 0.08).all(), same
    moved = rerun_rates(0.014, shift=0.04, n=100).loc[["gated frontier", "baseline frontier"]]
    assert (moved["within"] <= 0.7).all(), moved


def test_fit_recovers_a_known_power_law_and_its_band_covers_it():
    rng = np.random.default_rng(0)
    df = sweep(rng, 0.005, seeds=3)
    f = fit(df[df.architecture == "gated"], "loss_recovered", n_boot=500)
    assert f is not None and f.scheme == "seeds" and f.df == 12 - 4
    assert f.b == pytest.approx(-BETA, abs=0.05) and np.exp(f.a) == pytest.approx(A, rel=0.1)
    l0, draws = f.l0_at(0.8)
    assert l0 == pytest.approx(((1 - 0.8) / A) ** (-1 / BETA), rel=0.1) and np.isfinite(draws).all()
    one = fit(df[(df.architecture == "gated") & (df.seed == 0)], "loss_recovered", n_boot=50)
    assert one.scheme == "residuals" and one.df == 2
    assert fit(df[df.coefficient == 0.0], "loss_recovered") is None  # one λ: no frontier


@pytest.mark.parametrize("seeds", [1, 3])
def test_simultaneous_bands_cover_the_true_frontier_over_the_whole_range(seeds):
    rng = np.random.default_rng(2)
    grid = np.geomspace(10, 150, 30)
    covered = []
    for _ in range(100):
        df = sweep(rng, 0.014, seeds=seeds)
        f = fit(df[df.architecture == "gated"], "loss_recovered", n_boot=200)
        lo, hi = simultaneous_band(f.predict(grid), f.predict_draws(grid), 0.95, f.df)
        covered.append(bool(((lo < truth(grid)) & (truth(grid) < hi)).all()))
    assert np.mean(covered) >= 0.9, np.mean(covered)


def test_undefined_draws_count_against_the_interval_instead_of_being_dropped():
    draws = np.r_[np.linspace(1.5, 2.5, 97), [np.nan, np.nan, np.nan]]
    lo, hi, undefined = interval_counting_undefined(draws)
    assert undefined == pytest.approx(0.03) and (lo, hi) == (-np.inf, np.inf)  # 3% undefined > 2.5% per tail
    lo, hi, undefined = interval_counting_undefined(np.r_[np.linspace(1.5, 2.5, 99), [np.nan]])
    assert undefined == pytest.approx(0.01) and 1.5 <= lo < hi <= 2.5
    lo, hi, _ = interval_counting_undefined(np.linspace(1.5, 2.5, 100))
    assert 1.5 < lo < hi < 2.5


def test_t_quantiles():
    for df, exact in ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (8, 2.306), (30, 2.042)):
        assert t_quantile(0.975, df) == pytest.approx(exact, rel=0.01), df


if __name__ == "__main__":
    for sigma in (0.014, 0.078):
        for seeds in (1, 3):
            for adv in (1.0, 2.0):
                print(f"sigma {sigma}, seeds {seeds}, L0 advantage {adv:g}: {rates(sigma, adv, seeds)}")
    for sigma, shift in ((0.014, 0.0), (0.078, 0.0), (0.014, 0.02), (0.014, 0.04)):
        print(f"rerun, sigma {sigma}, loss recovered moved by {shift:g}:\n{rerun_rates(sigma, shift)}")
