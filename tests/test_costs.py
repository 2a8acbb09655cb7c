"""saerepro.costs on a case small enough to count by hand."""

from __future__ import annotations

import pytest

from saerepro.config import load_config
from saerepro.costs import (
    CONTEXT_BYTES,
    Hardware,
    estimate,
    format_table,
    lm_block_parameters,
    sae_train_flops_per_token,
)
from saerepro.models import get_spec

#: 1 PFLOP/s at 50%: 5e14 FLOP/s in either precision, so every time below is FLOPs / 5e14.
HW = Hardware(name="test", peak_flops={"float32": 1e15, "bfloat16": 1e15}, utilisation=0.5)


def small(**arch) -> dict:
    return {
        "model": "gemma-3-270m",
        "layers": [0],
        "sites": ["resid"],
        "corpus": {"context_size": 128, "train_tokens": 128 * 1000},
        "reference": {"eval_tokens": 1280},
        "train": {"tokens": 1_000_000, "batch_size": 1024},
        "architectures": arch or {"gated": {"coefficients": [1.0], "width": 2560}},
    }


def test_one_gated_sae_by_hand():
    est = estimate(load_config(small()), HW)
    d, m = 640, 2560
    # 7 products of 2dm FLOPs per token (see saerepro.costs), 10^6 tokens, at 5e14 FLOP/s.
    assert est.gpu_hours_by_stage["cached"]["train"] == pytest.approx(7 * 2 * d * m * 1e6 / 5e14 / 3600)
    assert est.jobs == 11 and est.saes == 1 and est.hook_points == 1
    corpus = (128_000 + 65_536) * 4  # int32 tokens: train + the kept eval tokens
    cache = 1000 * 127 * d * 2  # 1000 sequences minus BOS, float16
    sae = 4 * (2 * d * m + 3 * m + d)  # float32 W_enc, W_dec, b_gate, b_mag, r_mag, b_dec
    assert est.disk_bytes == {"cached": corpus + cache + sae, "on_the_fly": corpus + sae}
    params = 2 * d * m + 3 * m + d
    assert est.peak_memory_bytes["cached"] >= CONTEXT_BYTES + 16 * params + 8 * 1024 * m * 4


def test_gated_costs_more_than_a_baseline_of_equal_width_and_less_than_a_compute_matched_one():
    d, m = 640, 2560
    gated, base = sae_train_flops_per_token("gated", d, m), sae_train_flops_per_token("baseline", d, m)
    assert gated / base == pytest.approx(1.4)
    assert gated < sae_train_flops_per_token("baseline", d, int(1.5 * m))


def test_every_architecture_is_costed_and_strict_aux_costs_what_gated_does():
    from saerepro.config import ARCHITECTURES
    from saerepro.costs import ACTIVATION_TENSORS, TRAIN_PRODUCTS, sae_parameters

    assert set(TRAIN_PRODUCTS) == set(ACTIVATION_TENSORS) == set(ARCHITECTURES)
    d, m = 640, 2560
    assert sae_train_flops_per_token("gated_strict_aux", d, m) == sae_train_flops_per_token("gated", d, m)
    assert ACTIVATION_TENSORS["gated_strict_aux"] == ACTIVATION_TENSORS["gated"]
    assert sae_parameters("gated_strict_aux", d, m) == sae_parameters("gated", d, m)


def test_lm_pass_scales_with_the_deepest_layer_and_on_the_fly_pays_it_per_hook_point():
    shallow = estimate(load_config(small()), HW)
    raw = small()
    raw["layers"], raw["sites"] = [0, 9], ["resid", "mlp"]
    deep = estimate(load_config(raw), HW)
    spec = get_spec("gemma-3-270m")
    per_block = 2 * lm_block_parameters(spec) + 2 * 128 * spec.n_heads * spec.d_head
    assert shallow.gpu_hours_by_stage["cached"]["lm"] == pytest.approx(per_block * 128_000 / 5e14 / 3600)
    assert deep.gpu_hours_by_stage["cached"]["lm"] == pytest.approx(10 * per_block * 128_000 / 5e14 / 3600)
    # On the fly: one pass per hook point, each over one SAE's tokens (BOS positions included).
    otf = (1 + 1 + 10 + 10) * per_block * 1e6 * 128 / 127 / 5e14 / 3600
    assert deep.gpu_hours_by_stage["on_the_fly"]["lm"] == pytest.approx(otf)


def test_table_states_its_assumptions():
    text = format_table([estimate(load_config(small()), HW, name="small")], HW)
    assert "small" in text and "50% utilisation" in text and "not measurements" in text


def test_pilots_are_counted_and_a_dry_run_lists_them_before_the_saes_they_choose():
    raw = small(gated={"coefficients": [1.0, 2.0], "width": 65536}, baseline={"coefficients": [0.5], "width": 3840})
    raw["pilot"] = {"target_l0": [10, 150], "n_coefficients": 3, "tokens": 100_000, "n_probes": 4}
    raw["pilot"]["architectures"] = ["gated"]
    est = estimate(load_config(raw), HW)
    d, m = 640, 65536
    assert (est.pilots, est.probes) == (1, 4)
    assert est.saes == 3 + 1  # the gated pilot chooses 3 coefficients; the baseline keeps its grid
    assert est.jobs == 2 * 4 + 9 + 1
    assert est.dry_run_jobs == 2 * 1 + 9 + 1  # the pilot and the baseline's SAE; gated waits for it
    probe_hours = 4 * 7 * 2 * d * m * 100_000 / 5e14 / 3600
    assert est.gpu_hours_by_stage["cached"]["pilot"] == pytest.approx(probe_hours)
    assert est.longest_job_hours["pilot"] == pytest.approx(probe_hours)
    assert est.gpu_hours_by_stage["on_the_fly"]["pilot"] == 0  # pilot mode needs the cache
    assert est.gpu_hours_by_stage["cached"]["train"] == pytest.approx(
        (3 * 7 * 2 * d * m + 5 * 2 * d * 3840) * 1e6 / 5e14 / 3600
    )
    # The pilot holds its four probes (weights, gradients, Adam) and one probe's activations.
    params = 2 * d * m + 3 * m + d
    assert est.peak_memory_job["cached"] == "pilot"
    assert est.peak_memory_bytes["cached"] == CONTEXT_BYTES + 4 * 16 * params + 8 * 1024 * m * 4
    without = estimate(load_config(small(**raw["architectures"])), HW)  # the same sweep, no pilot
    assert est.disk_bytes["cached"] - without.disk_bytes["cached"] == (3 - 2 + 4) * 4 * params
    assert (without.pilots, without.probes, without.dry_run_jobs) == (0, 0, without.jobs)
    assert "pilot" not in without.longest_job_hours
    text = format_table([est, without], HW, lm_note="float32")
    assert "1 (4)" in text and "lists 12 of its 18 jobs before the pilots ran" in text
