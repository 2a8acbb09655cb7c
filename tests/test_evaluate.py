"""Evaluation: single-pass CE+KL equals the full softmax; splicing behaves at the extremes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saerepro.evaluate import (
    LowPrecisionUnembed,
    _logsumexp_rows_,
    clean_distribution_stats,
    clean_reference,
    evaluate_sae,
    spliced_ce_and_kl,
    spliced_ce_and_kl_from_stats,
)
from saerepro.lm import reference_ce


def test_single_pass_ce_and_kl_equal_full_softmax():
    g = torch.Generator().manual_seed(0)
    hc, W_U, b_U = torch.randn(40, 12, generator=g), torch.randn(12, 777, generator=g), torch.randn(777, generator=g)
    hs = hc + 0.5 * torch.randn(40, 12, generator=g)
    targets = torch.randint(0, 777, (40,), generator=g)
    ce, kl = spliced_ce_and_kl(hc, hs, W_U.T.contiguous(), b_U, targets, vocab_chunk=50)
    z, w = hc @ W_U + b_U, hs @ W_U + b_U
    expected_kl = F.kl_div(F.log_softmax(w, -1), F.log_softmax(z, -1), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(ce, F.cross_entropy(w, targets, reduction="none"), atol=1e-4)
    assert torch.allclose(kl, expected_kl, atol=1e-4)


def test_kl_from_clean_statistics_equals_full_softmax():
    g = torch.Generator().manual_seed(1)
    # logits of size ~30, like an LM's, so the online max-rescaling matters
    hc, W_U, b_U = (
        3 * torch.randn(40, 12, generator=g),
        torch.randn(12, 777, generator=g),
        torch.randn(777, generator=g),
    )
    hs = hc + 0.5 * torch.randn(40, 12, generator=g)
    targets = torch.randint(0, 777, (40,), generator=g)
    stats = clean_distribution_stats(hc, W_U.T.contiguous(), b_U, targets, vocab_chunk=50)
    ce, kl = spliced_ce_and_kl_from_stats(hs, stats, W_U.T.contiguous(), b_U, targets, vocab_chunk=64)
    z, w = hc @ W_U + b_U, hs @ W_U + b_U
    expected_kl = F.kl_div(F.log_softmax(w, -1), F.log_softmax(z, -1), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(stats["ce"], F.cross_entropy(z, targets, reduction="none"), atol=1e-4)
    assert torch.allclose(ce, F.cross_entropy(w, targets, reduction="none"), atol=1e-4)
    assert torch.allclose(kl, expected_kl, atol=1e-3, rtol=1e-4)
    assert expected_kl.mean() > 0.1  # the perturbation is not trivially small


def test_in_place_logsumexp_is_bit_identical_to_torch():
    g = torch.Generator().manual_seed(3)
    w = 30 * torch.randn(57, 3001, generator=g)
    w[3, 100:] = -math.inf  # a row with masked tokens
    w[5] = -math.inf  # a row with no finite logit: torch gives -inf, not nan
    w[7, 9] = math.inf
    expected = torch.logsumexp(w, dim=1)
    assert torch.equal(_logsumexp_rows_(w.clone()), expected)


def _spliced_ce_and_kl_allocating(hs, stats, W_U_T, b_U, targets, vocab_chunk):
    """The float32 path as it was before it reused one buffer and skipped a zero bias."""
    n, vocab = hs.shape[0], W_U_T.shape[0]
    lse_s, target_w = torch.full((n,), -math.inf), torch.empty(n)
    for v0 in range(0, vocab, vocab_chunk):
        v1 = min(v0 + vocab_chunk, vocab)
        w = (hs @ W_U_T[v0:v1].T).float()
        if b_U is not None:
            w = w + b_U[v0:v1]
        lse_s = torch.logaddexp(lse_s, torch.logsumexp(w, dim=1))
        hit = (targets >= v0) & (targets < v1)
        rows = hit.nonzero(as_tuple=True)[0]
        target_w[rows] = w[rows, targets[rows] - v0]
    e_w = (stats["mu"] * hs).sum(dim=1) + stats["pb"]
    return lse_s - target_w, (stats["ez"] - stats["lse"] - e_w + lse_s).clamp_min(0.0)


@pytest.mark.parametrize("bias", ["zero", "random", "none"])
def test_buffered_float32_unembed_is_bit_identical_to_allocating_one(bias):
    g = torch.Generator().manual_seed(4)
    n, d, vocab = 61, 24, 2999  # the last vocabulary chunk is shorter than the others
    W_U_T, hc = torch.randn(vocab, d, generator=g), 3 * torch.randn(n, d, generator=g)
    b_U = {"zero": torch.zeros(vocab), "random": torch.randn(vocab, generator=g), "none": None}[bias]
    hs = hc + 0.5 * torch.randn(n, d, generator=g)
    targets = torch.randint(0, vocab, (n,), generator=g)
    stats = clean_distribution_stats(hc, W_U_T, b_U, targets, vocab_chunk=500)
    ce, kl = spliced_ce_and_kl_from_stats(hs, stats, W_U_T, b_U, targets, vocab_chunk=500)
    ce_ref, kl_ref = _spliced_ce_and_kl_allocating(hs, stats, W_U_T, b_U, targets, vocab_chunk=500)
    assert torch.equal(ce, ce_ref)
    assert torch.equal(kl, kl_ref)


def test_bf16_unembed_centred_on_clean_lse_is_accurate_where_plain_bf16_is_not():
    g = torch.Generator().manual_seed(2)
    # LM-like logits: tens of nats (Gemma's top logits are ~20-40), a 5000-token vocabulary
    n, d, vocab = 400, 64, 5000
    hc, W_U = 4 * torch.randn(n, d, generator=g), torch.randn(d, vocab, generator=g) / 2
    b_U = 20 + torch.randn(vocab, generator=g)
    hs = hc + 0.3 * torch.randn(n, d, generator=g)
    targets = torch.randint(0, vocab, (n,), generator=g)
    W_U_T = W_U.T.contiguous()
    stats = clean_distribution_stats(hc, W_U_T, b_U, targets, vocab_chunk=700)
    ce32, kl32 = spliced_ce_and_kl_from_stats(hs, stats, W_U_T, b_U, targets, vocab_chunk=700)
    low = LowPrecisionUnembed(W_U_T, b_U)
    ce16, kl16 = spliced_ce_and_kl_from_stats(hs, stats, W_U_T, b_U, targets, vocab_chunk=700, low_precision=low)
    # the uncentred bf16 product rounds logits of ~20 to a 0.125 grid
    w_naive = (hs.bfloat16() @ W_U.bfloat16()).float() + b_U.bfloat16().float()
    ce_naive = F.cross_entropy(w_naive, targets, reduction="none")
    err16, err_naive = (ce16 - ce32).abs().mean(), (ce_naive - ce32).abs().mean()
    assert err16 < 0.01
    assert err16 < err_naive / 3
    assert (kl16 - kl32).abs().mean() < 0.01
    assert kl32.mean() > 0.1  # a perturbation that moves the distribution


class ScaledIdentitySAE:
    """x -> codes = x (one latent per dimension) -> factor * codes. factor < 1 is pure shrinkage."""

    def __init__(self, d_in: int, factor: float = 1.0):
        self.cfg = SimpleNamespace(d_in=d_in, d_sae=d_in)
        self.factor = factor

    def encode(self, x):
        return x

    def decode(self, f):
        return self.factor * f


class ZeroSAE(ScaledIdentitySAE):
    def encode(self, x):
        return torch.zeros_like(x)


@pytest.fixture(scope="module")
def reference(tiny_model, tiny_tokens):
    result = reference_ce(tiny_model, tiny_tokens, [(1, "resid"), (1, "attn")], batch_size=4, progress=False)
    return {hp: {"ce_clean": result["ce_clean"], **result["zero"][hp]} for hp in result["zero"]}


@pytest.mark.parametrize("site", ["resid", "attn"])
def test_perfect_reconstruction_recovers_all_the_loss(tiny_model, tiny_tokens, reference, site):
    d_in = 64
    out = evaluate_sae(
        tiny_model,
        ScaledIdentitySAE(d_in),
        1,
        site,
        scale=3.7,
        eval_tokens=tiny_tokens,
        reference=reference[(1, site)],
        batch_size=4,
        progress=False,
    )
    assert out["loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert out["delta_lm_loss"] == pytest.approx(0.0, abs=1e-4)
    assert out["kl"] == pytest.approx(0.0, abs=1e-5)
    assert out["gamma"] == pytest.approx(1.0, abs=1e-5) and out["nmse"] == pytest.approx(0.0, abs=1e-6)


def test_zero_reconstruction_recovers_nothing(tiny_model, tiny_tokens, reference):
    out = evaluate_sae(
        tiny_model,
        ZeroSAE(64),
        1,
        "resid",
        scale=1.0,
        eval_tokens=tiny_tokens,
        reference=reference[(1, "resid")],
        batch_size=4,
        progress=False,
    )
    assert out["loss_recovered"] == pytest.approx(0.0, abs=1e-4)
    assert out["l0"] == 0.0 and out["alive_frac"] == 0.0


def test_shrunk_reconstruction_shows_gamma_below_one(tiny_model, tiny_tokens, reference):
    out = evaluate_sae(
        tiny_model,
        ScaledIdentitySAE(64, factor=0.8),
        1,
        "resid",
        scale=1.0,
        eval_tokens=tiny_tokens,
        reference=reference[(1, "resid")],
        batch_size=4,
        progress=False,
    )
    assert out["gamma"] == pytest.approx(0.8, abs=1e-4)
    assert out["gamma_c"] == pytest.approx(0.8, abs=1e-4)
    assert 0.0 < out["loss_recovered"] < 1.0


class NoisySAE(ScaledIdentitySAE):
    """A lossy reconstruction: shrink, then add a fixed direction (so CE, KL and γ all move)."""

    def decode(self, f):
        bump = torch.linspace(-1, 1, f.shape[1])
        return self.factor * f + 0.3 * bump


@pytest.mark.parametrize("site", ["resid", "attn"])
def test_saved_clean_pass_gives_the_same_metrics_as_recomputing_it(tiny_model, tiny_tokens, reference, site):
    clean = clean_reference(tiny_model, tiny_tokens, [1], batch_size=4, progress=False)
    sae = NoisySAE(64, factor=0.7)
    kwargs = dict(scale=2.0, eval_tokens=tiny_tokens, reference=reference[(1, site)], progress=False)
    recomputed = evaluate_sae(tiny_model, sae, 1, site, batch_size=4, **kwargs)
    reused = evaluate_sae(tiny_model, sae, 1, site, batch_size=3, clean=clean, **kwargs)
    assert recomputed["kl"] > 1e-4 and abs(recomputed["delta_lm_loss"]) > 1e-3
    for key in ("ce_sae", "kl", "loss_recovered", "l0", "gamma", "gamma_c", "nmse"):
        assert reused[key] == pytest.approx(recomputed[key], rel=1e-4, abs=1e-6), key
    assert clean["ce"].mean().item() == pytest.approx(reference[(1, site)]["ce_clean"], rel=1e-5)


@pytest.mark.parametrize("site", ["resid", "attn"])
def test_bf16_evaluation_moves_ce_and_kl_by_far_less_than_their_paired_se(tiny_model, tiny_tokens, reference, site):
    from saerepro.metrics import sequence_mean_and_se

    clean = clean_reference(tiny_model, tiny_tokens, [1], batch_size=4, progress=False)
    kwargs = dict(
        scale=2.0,
        eval_tokens=tiny_tokens,
        reference=reference[(1, site)],
        progress=False,
        batch_size=4,
        clean=clean,
        per_token=True,
    )
    m32, p32 = evaluate_sae(tiny_model, NoisySAE(64, factor=0.7), 1, site, **kwargs)
    m16, p16 = evaluate_sae(tiny_model, NoisySAE(64, factor=0.7), 1, site, precision="bfloat16", **kwargs)
    n_pred = tiny_tokens.shape[1] - 1
    for key, spread in (("ce_sae", p32["ce_sae"] - clean["ce"]), ("kl", p32["kl"])):
        change = float((p16[key] - p32[key]).double().mean())
        se = sequence_mean_and_se(spread.double().reshape(-1, n_pred))[1]
        assert abs(change) <= 0.1 * se, (key, change, se)
    for key in ("l0", "nmse", "gamma", "gamma_c"):  # the SAE and its inputs are float32 either way
        assert m16[key] == m32[key], key
    with pytest.raises(ValueError, match="precision"):
        evaluate_sae(tiny_model, NoisySAE(64), 1, site, precision="float16", **kwargs)


def test_clean_pass_on_other_tokens_is_refused(tiny_model, tiny_tokens, reference):
    clean = clean_reference(tiny_model, tiny_tokens[:2], [1], batch_size=4, progress=False)
    with pytest.raises(ValueError, match="clean reference holds"):
        evaluate_sae(
            tiny_model,
            NoisySAE(64),
            1,
            "resid",
            scale=1.0,
            eval_tokens=tiny_tokens,
            reference=reference[(1, "resid")],
            batch_size=4,
            progress=False,
            clean=clean,
        )


@pytest.mark.parametrize("site", ["resid", "attn"])
def test_zero_ablation_from_the_saved_block_input_equals_a_full_forward(tiny_model, tiny_tokens, reference, site):
    from saerepro.evaluate import zero_ablation_ce

    clean = clean_reference(tiny_model, tiny_tokens, [1], batch_size=4, progress=False)
    kept_bos = zero_ablation_ce(tiny_model, tiny_tokens, clean, 1, site, batch_size=3, progress=False)
    full = zero_ablation_ce(tiny_model, tiny_tokens, None, 1, site, batch_size=4, progress=False)
    assert kept_bos.numel() == clean["ce"].numel()
    assert torch.allclose(kept_bos, full, atol=1e-5)
    assert kept_bos.mean().item() == pytest.approx(reference[(1, site)]["ce_zero"], rel=1e-5)
    bos_zeroed = zero_ablation_ce(tiny_model, tiny_tokens, clean, 1, site, zero_bos=True, progress=False)
    # zeroing BOS too changes every later position's attention to it
    assert (bos_zeroed - kept_bos).abs().mean() > 1e-3


def test_paired_metrics_carry_both_zero_ablation_conventions_and_sequence_ses(tiny_model, tiny_tokens, reference):
    from saerepro.evaluate import hook_key, paired_metrics, zero_ablation_ce

    clean = clean_reference(tiny_model, tiny_tokens, [1], batch_size=4, progress=False)
    key = hook_key(1, "resid")
    clean["zero_ce"] = {key: zero_ablation_ce(tiny_model, tiny_tokens, clean, 1, "resid", progress=False)}
    clean["zero_bos_ce"] = {
        key: zero_ablation_ce(tiny_model, tiny_tokens, clean, 1, "resid", zero_bos=True, progress=False)
    }
    out, per_token = evaluate_sae(
        tiny_model,
        NoisySAE(64, factor=0.7),
        1,
        "resid",
        scale=2.0,
        eval_tokens=tiny_tokens,
        reference=reference[(1, "resid")],
        batch_size=4,
        progress=False,
        clean=clean,
        per_token=True,
    )
    paired = paired_metrics(per_token, clean, 1, "resid", tiny_tokens.shape[1] - 1)
    assert paired["loss_recovered"] == pytest.approx(out["loss_recovered"], rel=1e-5)
    assert paired["n_eval_sequences"] == len(tiny_tokens)
    for name in ("loss_recovered", "delta_lm_loss", "kl", "loss_recovered_bos_zeroed", "gamma", "gamma_c"):
        assert paired[f"{name}_se"] > 0, name
    assert paired["l0_se"] == 0.0  # this SAE's codes are dense: L0 = d_in on every token
    assert paired["loss_recovered_bos_zeroed"] != pytest.approx(paired["loss_recovered"], abs=1e-6)
    with pytest.raises(KeyError, match="rerun reference_ce"):
        paired_metrics(per_token, clean, 1, "attn", tiny_tokens.shape[1] - 1)


def test_gamma_standard_errors_match_a_bootstrap_over_sequences():
    from saerepro.evaluate import _gamma_ses
    from saerepro.metrics import bootstrap_sequences, centred_relative_reconstruction_bias, relative_reconstruction_bias

    g = torch.Generator().manual_seed(5)
    n_seq, n_pred, d = 300, 16, 8
    offset = 2.0 + torch.randn(n_seq, 1, d, generator=g, dtype=torch.float64)  # sequences differ
    x = offset + torch.randn(n_seq, n_pred, d, generator=g, dtype=torch.float64)
    shrink = 0.8 + 0.1 * torch.randn(n_seq, 1, 1, generator=g, dtype=torch.float64)
    x_hat = shrink * x + 0.3 * torch.randn(n_seq, n_pred, d, generator=g, dtype=torch.float64)
    per_token = {
        "sq_hat": (x_hat * x_hat).sum(-1).reshape(-1),
        "dot": (x * x_hat).sum(-1).reshape(-1),
        "sum_x": x.sum(1),
        "sum_x_hat": x_hat.sum(1),
    }
    gamma_se, gamma_c_se = _gamma_ses(per_token, n_pred)
    draws = bootstrap_sequences(n_seq, n_boot=1000, seed=2)
    boot = np.array(
        [
            [
                relative_reconstruction_bias(x[i].reshape(-1, d), x_hat[i].reshape(-1, d)),
                centred_relative_reconstruction_bias(x[i].reshape(-1, d), x_hat[i].reshape(-1, d)),
            ]
            for i in draws
        ]
    )
    assert gamma_se == pytest.approx(boot[:, 0].std(), rel=0.15)
    assert gamma_c_se == pytest.approx(boot[:, 1].std(), rel=0.15)
