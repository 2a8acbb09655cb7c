"""Pilot mode (saerepro.pilot): the grid choice on synthetic probes, the config, and the DAG."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import yaml
from snakemake_cli import REPO, snakemake

from saerepro.config import ConfigError, load_config
from saerepro.pilot import (
    PilotError,
    apply_pilot,
    choose_coefficients,
    coefficient_for_l0,
    fit_probes,
    pilot_path,
    predict_l0,
    target_l0s,
)
from saerepro.provenance import config_hash


def power_law(lam, a=40.0, b=0.8):
    """A monotone L0(λ) = a · λ^-b, the shape short probes show."""
    return a * lam**-b


PROBES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]


def test_chosen_coefficients_hit_the_target_l0s_of_a_power_law():
    l0s = [power_law(c) for c in PROBES]
    chosen = choose_coefficients(PROBES, l0s, (10.0, 150.0), 4)
    assert [c["coefficient"] for c in chosen] == sorted(c["coefficient"] for c in chosen)
    # log-log interpolation of a power law is exact; rounding to 4 digits moves L0 by < 0.1%
    for c in chosen:
        assert power_law(c["coefficient"]) == pytest.approx(c["target_l0"], rel=2e-3)
        assert c["predicted_l0"] == pytest.approx(c["target_l0"], rel=2e-3)
    targets = sorted(c["target_l0"] for c in chosen)
    assert targets[0] == pytest.approx(10.0) and targets[-1] == pytest.approx(150.0)
    ratios = np.diff(np.log(targets))
    assert np.allclose(ratios, ratios[0])  # log-spaced


def test_one_coefficient_aims_at_the_geometric_mean():
    assert target_l0s((10, 40), 1) == [pytest.approx(20.0)]
    chosen = choose_coefficients(PROBES, [power_law(c) for c in PROBES], (10, 40), 1)
    assert power_law(chosen[0]["coefficient"]) == pytest.approx(20.0, rel=2e-3)


def test_dead_probes_are_dropped_and_small_noise_is_smoothed():
    l0s = [power_law(c) for c in PROBES]
    l0s[-1] = 0.0  # all latents dead at the largest λ
    l0s[2] *= 0.95
    l0s[3] = l0s[2] * 1.05  # within the 25% tolerance
    fit = fit_probes(PROBES, l0s)
    assert len(fit.log_coefficients) == len(PROBES) - 1
    assert np.all(np.diff(fit.log_l0) <= 0)
    assert predict_l0(fit, 0.01) == pytest.approx(l0s[0])


def test_non_monotone_probes_are_refused_with_a_hint():
    l0s = [power_law(c) for c in PROBES]
    l0s[4] = l0s[3] * 1.3  # beyond the 25% tolerance
    with pytest.raises(PilotError, match="not monotone.*raise pilot.tokens"):
        choose_coefficients(PROBES, l0s, (10, 50), 3)


def test_probes_below_the_densest_one_are_dropped():
    # SmolLM2's refused pilot: the L0 of short probes saturated at small λ, then fell again
    probes = [0.01, 0.038, 0.14, 0.54, 2.0]
    l0s = [90.78, 106.5, 60.0, 25.0, 4.0]
    fit = fit_probes(probes, l0s)
    assert np.exp(fit.log_coefficients).tolist() == pytest.approx(probes[1:])
    chosen = choose_coefficients(probes, l0s, (20.0, 100.0), 3)
    assert [c["predicted_l0"] for c in chosen] == pytest.approx([100.0, math.sqrt(2000.0), 20.0], rel=2e-3)
    # a target above what is left is refused with the hint, not fitted on the dropped probe
    with pytest.raises(PilotError, match="outside the probed range"):
        choose_coefficients(probes, l0s, (20.0, 110.0), 3)
    # a rise after the densest probe is still refused
    with pytest.raises(PilotError, match="not monotone"):
        fit_probes(probes, [200.0, 106.5, 30.0, 45.0, 4.0])
    with pytest.raises(PilotError, match="L0 rises with λ"):
        fit_probes([0.1, 1.0], [5.0, 9.0])


@pytest.mark.parametrize("target,hint", [((1.0, 50.0), "higher λ"), ((10.0, 5000.0), "lower λ")])
def test_targets_outside_the_probed_range_are_refused(target, hint):
    l0s = [power_law(c) for c in PROBES]  # L0 from ~6.3 to ~1590
    with pytest.raises(PilotError, match=f"outside the probed range.*{hint}"):
        choose_coefficients(PROBES, l0s, target, 3)


def test_too_few_live_probes_and_bad_inputs_are_refused():
    with pytest.raises(PilotError, match="L0 > 0"):
        fit_probes([0.1, 1.0, 10.0], [5.0, 0.0, 0.0])
    with pytest.raises(PilotError, match="distinct"):
        fit_probes([0.1, 0.1], [5.0, 4.0])
    with pytest.raises(PilotError, match="0 < lo <= hi"):
        target_l0s((50, 10), 3)


def test_a_flat_stretch_inverts_to_its_smallest_coefficient():
    fit = fit_probes([0.1, 1.0, 10.0], [100.0, 20.0, 20.0])
    assert coefficient_for_l0(fit, 20.0) == pytest.approx(1.0)
    assert coefficient_for_l0(fit, math.sqrt(100 * 20)) == pytest.approx(math.sqrt(0.1 * 1.0))


# --------------------------------------------------------------------------- config


def tiny(**pilot):
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    if pilot:
        raw["pilot"] = pilot
    return raw


def test_pilot_absent_or_present_leaves_the_config_hash_alone():
    assert config_hash(load_config(tiny())) == config_hash(load_config(tiny(target_l0=[5, 50])))
    default = load_config(REPO / "config/config.yaml")
    assert default.pilot is None and default.pilot_grids is None


def test_piloted_runs_appear_once_their_pilot_json_exists(tmp_path):
    cfg = load_config(tiny(target_l0=[5, 50], n_coefficients=2, architectures=["gated"]))
    assert {r.architecture for r in cfg.runs()} == {"baseline"}  # gated waits for its pilots
    path = tmp_path / pilot_path(cfg, 2, "mlp", "gated")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"coefficients": [0.5, 2.0]}))
    piloted = apply_pilot(cfg, tmp_path)
    gated = [r for r in piloted.runs() if r.architecture == "gated"]
    assert [(r.site, r.coefficient) for r in gated] == [("mlp", 0.5), ("mlp", 2.0)]
    assert config_hash(piloted) == config_hash(cfg)


def test_derived_architectures_follow_their_parents_pilot(tmp_path):
    raw = tiny(target_l0=[5, 50], n_coefficients=2)
    raw["architectures"]["baseline_rescale_shift"] = {"coefficients": [99.0], "width": 384}
    cfg = load_config(raw)  # 99 is no baseline coefficient, but the baseline is piloted
    assert ("baseline_rescale_shift", 2, "resid") not in cfg.pilot_points()
    path = tmp_path / pilot_path(cfg, 2, "resid", "baseline")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"coefficients": [0.3, 3.0]}))
    runs = apply_pilot(cfg, tmp_path).runs()
    assert [r.coefficient for r in runs if r.architecture == "baseline_rescale_shift"] == [0.3, 3.0]


@pytest.mark.parametrize(
    "pilot,key",
    [
        ({"target_l0": [50, 5]}, "pilot.target_l0"),
        ({"target_l0": [5, 50], "architectures": ["topk"]}, "pilot.architectures"),
        ({"target_l0": [5, 50], "site_target_l0": {"mlp_post": [1, 2]}}, "pilot.site_target_l0"),
        ({"target_l0": [5, 50], "bogus": 1}, "bogus"),
        ({"n_coefficients": 3}, "target_l0"),
    ],
)
def test_bad_pilot_sections_are_refused(pilot, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(tiny(**pilot))


# --------------------------------------------------------------------------- the DAG


def write_pilot_config(tmp_path, **extra):
    raw = tiny(target_l0=[15, 60], n_coefficients=2, tokens=2048, n_probes=5, probe_factor=30, **extra)
    raw["resources_dir"] = str(REPO / "resources")
    path = tmp_path / "pilot.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_dry_run_schedules_one_pilot_checkpoint_per_hook_point_and_architecture(tmp_path):
    config = write_pilot_config(tmp_path)
    result = snakemake("-n", "--cores", "1", "--configfile", str(config), "--forceall", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    # 3 sites x (gated, baseline); train jobs wait for the checkpoints
    assert re.search(r"^pilot\s+6$", out, re.M), out[-3000:]
    assert re.search(r"^aggregate\s+1$", out, re.M)
    assert not re.search(r"^(train|evaluate)\s+\d+$", out, re.M)  # they wait for the checkpoints


@pytest.mark.slow
def test_tiny_pilot_picks_coefficients_whose_l0s_land_near_the_target(tmp_path):
    # one site, gated only: the probes, then the chosen SAEs trained and evaluated with the same budget
    config = write_pilot_config(tmp_path, architectures=["gated"])
    raw = yaml.safe_load(config.read_text())
    raw["sites"] = ["resid"]
    raw["train"]["tokens"] = 2048
    raw["architectures"] = {"gated": raw["architectures"]["gated"]}
    config.write_text(yaml.safe_dump(raw))
    result = snakemake("aggregate", "--cores", "2", "--configfile", str(config), cwd=tmp_path, timeout=1500)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    pilot = json.loads((tmp_path / "results/gemma-3-270m/wiki-offline/L2/resid/gated/pilot.json").read_text())
    assert len(pilot["coefficients"]) == 2
    import pandas as pd

    table = pd.read_csv(tmp_path / "results/tables/metrics.csv")
    assert sorted(table["coefficient"]) == sorted(pilot["coefficients"])
    # measured on the eval tokens, not the cache rows the pilot used: within a factor 2 of [15, 60]
    assert table["l0"].between(7.5, 120).all(), table[["coefficient", "l0"]]
