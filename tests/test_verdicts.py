"""The claims' verdict table on tables whose truth is known by construction."""

from __future__ import annotations

import pandas as pd
import pytest

from saerepro import verdicts as V
from saerepro.tables import aggregate_seeds
from tests.synthetic import synthetic_metrics_table


@pytest.fixture(scope="module")
def agg():
    return aggregate_seeds(synthetic_metrics_table(layers=(6,), coefficients=(1, 2, 4, 8, 16, 32)))


def test_synthetic_claims_hold_where_they_were_built_in(agg):
    table = V.verdict_table(agg)
    assert list(table["Site"]) == ["resid", "mlp", "attn"]
    for _, row in table.iterrows():
        assert row["C1"].startswith("shown"), row["C1"]  # baseline shrinks, gated does not
        assert row["C2"].startswith("shown"), row["C2"]  # gated frontier above at equal L0
        assert row["C3"].startswith("shown"), row["C3"]  # ratio CI above 1 (built as 2)
        ratio = float(row["C3"].split(": ")[1].split(" ")[0])
        assert ratio == pytest.approx(2, rel=0.25)


def test_swapping_the_architectures_reverses_the_verdicts(agg):
    swapped = agg.assign(architecture=agg["architecture"].replace({"gated": "baseline", "baseline": "gated"}))
    row = V.verdict_table(swapped).iloc[0]
    assert row["C2"].startswith("reversed") and row["C3"].startswith("reversed")
    assert not row["C1"].startswith("shown")


def test_seed_like_scatter_larger_than_the_effect_is_not_shown():
    """The verdicts read the SAEs' scatter about the fitted frontier, not their evaluation SEs: a
    scatter of 0.3 in loss recovered and γ_c hides the built-in advantages."""
    import numpy as np

    df = synthetic_metrics_table(layers=(6,), sites=("resid",), coefficients=(1, 2, 4, 8, 16, 32))
    rng = np.random.default_rng(0)
    noisy = df.assign(
        loss_recovered=df["loss_recovered"] + rng.normal(0, 0.3, len(df)),
        gamma_c=df["gamma_c"] + rng.normal(0, 0.3, len(df)),
    )
    row = V.verdict_table(noisy).iloc[0]
    assert row["C2"].startswith("not shown") and row["C1"].startswith("not shown")
    assert row["C3"].startswith("not shown")
    # tiny evaluation SEs change nothing: they are not what the verdicts read
    assert V.verdict_table(noisy.assign(loss_recovered_se=1e-9)).equals(V.verdict_table(noisy))


def test_missing_ablations_and_disjoint_l0_ranges_are_named(agg):
    only = agg[agg["architecture"].isin(["gated", "baseline"])]
    row = V.verdict_table(only).iloc[0]
    assert row["C4"] == "not run" and row["C5"] == "not run"
    far = only.copy()
    far.loc[far["architecture"] == "gated", "l0"] *= 1e4
    assert V.verdict_table(far).iloc[0]["C2"] == "no overlap"


def test_one_lambda_per_architecture_is_not_judged():
    df = synthetic_metrics_table(
        layers=(6,), sites=("resid",), architectures=("gated", "baseline"), coefficients=(1, 4)
    )
    row = V.verdict_table(df).iloc[0]
    assert row["C2"] == row["C3"] == V.NOT_JUDGED  # 2 SAEs per architecture: no frontier to fit


def test_write_verdicts(tmp_path):
    df = synthetic_metrics_table(layers=(6,), sites=("resid",), coefficients=(1, 4, 16))
    csv, md = V.write_verdicts(df, tmp_path / "verdicts")
    assert len(pd.read_csv(csv)) == 1
    text = md.read_text()
    assert "C3" in text and "shown" in text and "Rules" in text and "±0.05" in text


def test_the_l0_range_is_stated_per_hook_point_in_the_config_and_moves_no_hash():
    from saerepro.config import ConfigError, load_config
    from saerepro.provenance import config_hash

    raw = {
        "model": "gemma-3-270m",
        "layers": [5],
        "sites": ["resid", "attn"],
        "architectures": {"gated": {"coefficients": [1.0]}, "baseline": {"coefficients": [1.0]}},
    }
    plain = load_config(raw)
    stated = load_config({**raw, "verdicts": {"l0_range": [12, 120], "site_l0_range": {"attn": [20, 60]}}})
    assert config_hash(plain) == config_hash(stated)  # analysis only: nothing retrains
    rules = V.rules_from_config(stated)
    assert rules.l0_range == (12.0, 120.0) and rules.site_l0_range == {"attn": (20.0, 60.0)}
    df = synthetic_metrics_table(layers=(5,), sites=("resid", "attn"), coefficients=(1, 2, 4, 8, 16, 32))
    table = V.verdict_table(df, rules).set_index("Site")
    assert "of L0 20–60)" in table.loc["attn", "C2"] and "of L0 20–60)" not in table.loc["resid", "C2"]
    with pytest.raises(ConfigError, match=r"verdicts.site_l0_range.attn.*0 < lo < hi"):
        load_config({**raw, "verdicts": {"site_l0_range": {"attn": [60, 20]}}})


def test_a_rerun_with_other_seeds_lies_within_the_first_runs_bands_and_a_moved_one_does_not():
    """rerun_comparison: a rerun drawn from the same frontiers with seed-like scatter lies inside
    the first run's bands (C1-C3 'within' 1); a rerun whose gated frontier lost 0.1 in loss
    recovered lies outside the first's C2 band."""
    import numpy as np

    def run(rng_seed: int, scatter: float = 0.01) -> pd.DataFrame:
        df = synthetic_metrics_table(
            layers=(6,), sites=("resid",), architectures=("gated", "baseline"), rng_seed=rng_seed
        )
        rng = np.random.default_rng(rng_seed)
        return df.assign(loss_recovered=df["loss_recovered"] + rng.normal(0, scatter, len(df)))

    first, rerun = run(0), run(1)
    table = V.rerun_comparison(first, rerun)
    assert list(table["claim"]) == ["C1", "C2", "C3", "gated frontier", "baseline frontier"]
    # inside the first's bands, though a partial call may differ from a whole-range one
    assert table["inside"].tolist()[:3] == [1.0] * 3 and table["within"].tolist() == [1.0] * 5
    moved = rerun.assign(
        loss_recovered=rerun["loss_recovered"] - 0.1 * (rerun["architecture"] == "gated").astype(float)
    )
    moved_table = V.rerun_comparison(first, moved).set_index("claim")
    assert moved_table.loc["C2", "within"] < 0.5 and not moved_table.loc["C2", "same_verdict"]
    # moving by less than the band's width is the weaker condition: inside the band implies it
    assert (moved_table["within"] >= moved_table["inside"]).all() and moved_table.loc["C2", "inside"] < 0.5
    assert moved_table.loc["gated frontier", "within"] < 0.5 and moved_table.loc["baseline frontier", "within"] == 1
    # the convergence rule reads the same table: B against 2B
    assert not V.settled(V.rerun_comparison(first, moved))["settled"].any()
    assert V.settled(V.rerun_comparison(first, first))["settled"].all()
