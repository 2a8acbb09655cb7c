"""The Python API on the tiny GPT-NeoX: train two SAEs, load them, evaluate both with one LM; the
numbers equal the DAG's own evaluation path (evaluate_sae + paired_metrics) on the same tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saerepro import api
from saerepro.activations import cache_activations


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    rng = np.random.default_rng(3)
    tokens = rng.integers(4, tiny_model.cfg.d_vocab, size=(64, 16)).astype(np.int32)
    tokens[:, 0] = tiny_model.tokenizer.bos_token_id
    cache_activations(tiny_model, tokens, [(1, "resid")], [root / "cache"], progress=False)
    out = []
    for arch, coef in (("gated", 0.1), ("baseline", 0.05)):
        out.append(
            api.train(
                arch,
                coef,
                str(root / "cache"),
                root / arch,
                threads=1,
                progress=False,
                total_tokens=64 * 15 * 2,
                batch_size=64,
                d_sae=128,
                lr_warmup_steps=2,
                hook_name="blocks.1.hook_resid_post",
            )
        )
    return out


def test_load_run_reads_what_training_wrote(runs):
    run = api.load_run(runs[0].path)
    assert run.layer == 1 and run.site == "resid" and run.scale > 0
    assert run.train_info["architecture"] == "gated" and run.metrics is None
    assert api.find_runs(runs[0].path.parent) == sorted(r.path for r in runs)
    with pytest.raises(FileNotFoundError, match="not a finished"):
        api.load_run(runs[0].path.parent)


def test_evaluate_many_saes_with_one_lm_gives_the_dags_numbers(runs, tiny_model, tiny_tokens):
    from saerepro.evaluate import clean_reference, evaluate_sae, hook_key, paired_metrics, zero_ablation_ce

    table, per_token = api.evaluate(
        [r.path for r in runs], tiny_tokens, lm=tiny_model, batch_size=4, threads=1, progress=False
    )
    assert torch.get_num_threads() == 1
    assert list(table["architecture"]) == ["gated", "baseline"] and len(per_token) == 2
    n = tiny_tokens.shape[0] * (tiny_tokens.shape[1] - 1)
    assert per_token[0]["ce_sae"].shape == (n,) and per_token[0]["ce_zero_bos_zeroed"].shape == (n,)
    # the same computation by hand, as the DAG's evaluate rule does it
    clean = clean_reference(tiny_model, tiny_tokens, [1], batch_size=4, progress=False)
    key = hook_key(1, "resid")
    clean["zero_ce"] = {key: zero_ablation_ce(tiny_model, tiny_tokens, clean, 1, "resid", progress=False)}
    clean["zero_bos_ce"] = {
        key: zero_ablation_ce(tiny_model, tiny_tokens, clean, 1, "resid", zero_bos=True, progress=False)
    }
    ref = {"ce_clean": float(clean["ce"].mean()), "ce_zero": float(clean["zero_ce"][key].mean())}
    run = runs[1]
    metrics, tok = evaluate_sae(
        tiny_model,
        run.sae,
        1,
        "resid",
        run.scale,
        tiny_tokens,
        ref,
        batch_size=4,
        clean=clean,
        per_token=True,
        progress=False,
    )
    metrics.update(paired_metrics(tok, clean, 1, "resid", tiny_tokens.shape[1] - 1))
    row = table.iloc[1]
    for name in ("l0", "loss_recovered", "loss_recovered_se", "delta_lm_loss", "kl", "gamma_c", "nmse"):
        assert row[name] == pytest.approx(metrics[name], rel=1e-5, abs=1e-7), name
