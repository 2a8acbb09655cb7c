"""The one-off experiments of config/experiments/: each is the previous long run's settings
(config/experiments/long_previous.yaml, which made their companion tables) with one thing
changed, so its SAEs compare with the long run's, and the neuron-site run (paper Fig. 5) plans its
pilots first and aims where the paper's MLP SAEs sit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from saerepro.config import load_config
from saerepro.paper import lambda_at_l0, paper_target_l0

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "config" / "experiments"
LONG = load_config(EXPERIMENTS / "long_previous.yaml")


@pytest.mark.parametrize("name", ["neurons"])
def test_experiment_trains_and_evaluates_as_the_long_run(name):
    cfg = load_config(EXPERIMENTS / f"{name}.yaml")
    assert cfg.model == LONG.model and cfg.corpus == LONG.corpus  # the long run's corpus is reused
    assert (cfg.cache, cfg.reference, cfg.train) == (LONG.cache, LONG.reference, LONG.train)
    assert set(cfg.layers) <= set(LONG.layers)


def test_neuron_run_is_the_papers_fig5_comparison_at_gemma_mlp_neurons():
    cfg = load_config(EXPERIMENTS / "neurons.yaml")
    assert cfg.sites == ("mlp_post",) and set(cfg.architectures) == {"gated", "baseline"}
    gated, baseline = cfg.architectures["gated"], cfg.architectures["baseline"]
    # baseline 1.5x gated's latents, as the long run and the paper's Section 4.1 compare them
    ratio = LONG.architectures["baseline"].expansion / LONG.architectures["gated"].expansion
    assert baseline.d_sae(2048) == pytest.approx(ratio * gated.d_sae(2048))
    assert cfg.pilot is not None and cfg.pilot.n_coefficients >= 4
    assert cfg.pilot.target_at("mlp_post") == paper_target_l0("gelu-1l", "mlp_post")


def _long_run_mlp_points(family: str) -> list[tuple[float, float]]:
    with open(REPO / "results" / "long_previous" / "tables" / "metrics.csv", newline="") as fh:
        return [
            (float(r["coefficient"]), float(r["l0"]))
            for r in csv.DictReader(fh)
            if r["site"] == "mlp" and r["layer"] == "6" and r["architecture"] == family
        ]


@pytest.mark.parametrize("family", ["gated", "baseline"])
def test_neuron_probes_bracket_what_the_long_runs_mlp_saes_needed(family):
    """No SAE has been trained on these neurons yet; the nearest measured λ -> L0 curve is the long
    run's layer-6 mlp (the same layer's MLP, after W_out). The probes must bracket the λs it needed
    for both ends of the target, with room (x3) for the neurons' curve to sit elsewhere."""
    cfg = load_config(EXPERIMENTS / "neurons.yaml")
    probes = cfg.probe_coefficients(family, "mlp_post")
    for target in cfg.pilot.target_at("mlp_post"):
        needed = lambda_at_l0(_long_run_mlp_points(family), target)
        assert needed is not None, (family, target)
        assert probes[0] * 3 < needed < probes[-1] / 3, (family, target, needed, probes)


def test_neuron_run_plans_its_pilots_before_any_sae(tmp_path):
    from test_paper_dryrun import dry_run, rule_counts

    counts = rule_counts(dry_run(EXPERIMENTS / "neurons.yaml", tmp_path, "--cores", "2"))
    assert counts.get("pilot") == 2 and "train" not in counts and counts.get("cache_activations") == 1


def test_budget_run_is_the_default_at_twice_its_training_tokens():
    """config/experiments/budget_2x.yaml: the convergence rule's 2B run at resid and mlp. Everything
    but the training tokens and the architectures' sites is the default's, so its hook points,
    caches, eval tokens and reference CEs are shared and its frontiers differ from the default's by
    the budget alone (and the seed spread)."""
    import dataclasses

    default = load_config(REPO / "config" / "config.yaml")
    budget = load_config(EXPERIMENTS / "budget_2x.yaml")
    assert budget.train.tokens == 2 * default.train.tokens
    assert {s: 2 * t for s, t in default.train.site_tokens.items()} == dict(budget.train.site_tokens)
    assert budget.hook_points() == default.hook_points()
    assert {(r.site, r.architecture, r.coefficient) for r in budget.runs()} == {
        (r.site, r.architecture, r.coefficient) for r in default.runs() if r.site in ("resid", "mlp")
    }
    for name, arch in budget.architectures.items():
        grids = {s: g for s, g in default.architectures[name].site_grids.items() if s != "attn"}
        assert dataclasses.replace(arch, sites=None, site_grids=grids) == dataclasses.replace(
            default.architectures[name], site_grids=grids
        )
    assert dataclasses.replace(budget, train=default.train, architectures=default.architectures) == default


def test_the_extras_share_the_long_runs_settings_and_its_lambdas_at_resid():
    """config/extras.yaml is what did not fit the long run: its shared settings are the long run's
    (one config hash), its ablations and their comparators train the long run's three resid lambdas
    (a verdict needs a fitted frontier), TopK gets its own beta1, JumpReLU's lambdas are fixed (its
    256-step pilot probes could not see lambda: docs/architectures.md)."""
    from saerepro.provenance import config_hash

    long_cfg, extras = load_config(REPO / "config" / "long.yaml"), load_config(REPO / "config" / "extras.yaml")
    assert config_hash(extras) == config_hash(long_cfg)
    assert extras.layers == (6,) and extras.sites == long_cfg.sites
    for family in ("gated", "baseline"):
        assert extras.architectures[family].grid_at("resid", 6) == long_cfg.architectures[family].grid_at("resid", 6)
        assert extras.architectures[family].sites == ("resid",)
    assert extras.architectures["baseline_rescale_shift"].grid == extras.architectures["baseline"].grid
    for ablation in ("gated_unfrozen_decoder", "gated_no_rmag", "gated_untied", "gated_strict_aux"):
        assert extras.architectures[ablation].grid == extras.architectures["gated"].grid
    assert extras.pilot is None
    assert extras.architectures["topk"].adam_beta1 == 0.9 and extras.architectures["gated"].adam_beta1 is None
    assert len(extras.runs()) == 45  # 12 TopK, 12 JumpReLU, 21 at resid (7 architectures x 3 lambdas)
