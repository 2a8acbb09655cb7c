"""Tests of saerepro.metrics: every metric against its formula, and streaming == one-shot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saerepro import metrics as M


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: with 2 cores shared with other processes, torch's thread pool
    makes each small matmul wait for a descheduled worker (~1 s per test instead of ~1 ms)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data(n=257, d=16, mean_scale=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = mean_scale * torch.randn(d, generator=g, dtype=torch.float64)
    x = mu + torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, mu, g


# --------------------------------------------------------------------------- sparsity


def test_l0_firing_counts_alive():
    codes = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0], [0.0, 0.5, 0.0, 0.0]])
    assert M.l0(codes) == pytest.approx((2 + 1 + 1) / 3)
    assert M.firing_counts(codes).tolist() == [0, 2, 0, 2]
    assert M.alive_fraction(M.firing_counts(codes)) == pytest.approx(0.5)
    assert M.l0(np.zeros((5, 3))) == 0.0


def test_l0_rejects_bad_shapes():
    with pytest.raises(ValueError):
        M.l0(torch.zeros(4))
    with pytest.raises(ValueError):
        M.alive_fraction(torch.zeros(0))


# --------------------------------------------------------------------------- LM loss


def test_loss_recovered_and_delta():
    assert M.loss_recovered(ce_clean=3.0, ce_sae=3.5, ce_zero=8.0) == pytest.approx(0.9)
    assert M.loss_recovered(3.0, 3.0, 8.0) == 1.0
    assert M.loss_recovered(3.0, 8.0, 8.0) == 0.0
    assert M.loss_recovered(3.0, 9.0, 8.0) == pytest.approx(-0.2)  # worse than zero ablation
    assert M.delta_lm_loss(3.0, 3.25) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="undefined"):
        M.loss_recovered(3.0, 3.1, 3.0)


def test_mean_and_se():
    m, se = M.mean_and_se([1.0, 2.0, 3.0, 4.0])
    assert m == pytest.approx(2.5)
    assert se == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    m, se = M.mean_and_se([5.0])
    assert m == 5.0 and math.isnan(se)
    with pytest.raises(ValueError):
        M.mean_and_se([])


# --------------------------------------------------------------------------- reconstruction


def test_gamma_of_pure_shrinkage():
    x, _, _ = _data()
    assert M.relative_reconstruction_bias(x, 0.8 * x) == pytest.approx(0.8)
    assert M.relative_reconstruction_bias(x, 1.25 * x) == pytest.approx(1.25)
    assert M.relative_reconstruction_bias(x.numpy(), x.numpy()) == pytest.approx(1.0)


def test_gamma_is_the_optimal_rescaling():
    """γ = argmin_γ E‖x̂/γ − x‖² (paper v2); check against a brute-force grid."""
    x, _, g = _data(seed=1)
    x_hat = 0.7 * x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    gamma = M.relative_reconstruction_bias(x, x_hat)
    grid = np.linspace(0.3, 1.5, 24001)
    err = [float(((x_hat / s - x) ** 2).sum()) for s in grid]
    assert gamma == pytest.approx(grid[int(np.argmin(err))], abs=1e-4)


def test_gamma_c_sees_shrinkage_hidden_by_a_large_mean():
    """Most of E‖x‖² along the mean (which b_dec reproduces): γ ≈ 1 but γ_c shows the shrinkage."""
    x, mu, _ = _data(mean_scale=3.0, seed=2)
    energy_along_mean = float((x.mean(0) ** 2).sum() / (x**2).sum(1).mean())
    assert energy_along_mean > 0.85
    x_hat = x.mean(0) + 0.8 * (x - x.mean(0))  # mean reproduced exactly, deviations shrunk by 0.8
    assert M.centred_relative_reconstruction_bias(x, x_hat) == pytest.approx(0.8)
    assert M.relative_reconstruction_bias(x, x_hat) > 0.95


def test_gamma_c_centres_each_by_its_own_mean():
    x, _, g = _data(seed=3)
    x_hat = 0.9 * x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64) + 0.2
    xc, xhc = x - x.mean(0), x_hat - x_hat.mean(0)
    want = float((xhc**2).sum() / (xc * xhc).sum())
    assert M.centred_relative_reconstruction_bias(x, x_hat) == pytest.approx(want, rel=1e-12)


def test_gamma_c_ignores_errors_in_the_mean():
    """Pure scaling about the origin shrinks the varying part by the same factor, and a constant
    offset of the reconstruction does not change γ_c (it is NMSE's business, not shrinkage)."""
    x, _, _ = _data(mean_scale=3.0, seed=12)
    assert M.centred_relative_reconstruction_bias(x, 0.8 * x) == pytest.approx(0.8)
    assert M.centred_relative_reconstruction_bias(x, 0.8 * x + 5.0) == pytest.approx(0.8)
    assert M.nmse(x, 0.8 * x + 5.0) > M.nmse(x, 0.8 * x)


def test_nmse():
    x, _, _ = _data(seed=4)
    assert M.nmse(x, x) == 0.0
    assert M.nmse(x, x.mean(0).expand_as(x)) == pytest.approx(1.0)
    assert M.nmse(x, 0.5 * x + 0.5 * x.mean(0)) == pytest.approx(0.25)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        M.nmse(torch.zeros(3, 2), torch.zeros(3, 3))


# --------------------------------------------------------------------------- logits


def test_kl_matches_torch_and_is_stable():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(7, 50, generator=g), torch.randn(7, 50, generator=g)
    want = F.kl_div(
        torch.log_softmax(b.double(), -1), torch.log_softmax(a.double(), -1), log_target=True, reduction="none"
    ).sum(-1)
    got = M.kl_divergence_from_logits(a, b)
    torch.testing.assert_close(got, want)
    assert torch.all(M.kl_divergence_from_logits(a, a) == 0)
    big = M.kl_divergence_from_logits(a * 1e4, b * 1e4)
    assert torch.isfinite(big).all() and (big >= 0).all()
    with pytest.raises(ValueError):
        M.kl_divergence_from_logits(a, b[:, :10])


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("with_bias", [False, True])
def test_chunked_cross_entropy_matches_full(softcap, with_bias):
    g = torch.Generator().manual_seed(6)
    N, d, V = 37, 8, 1003  # chunk sizes below do not divide N or V
    h = torch.randn(N, d, generator=g)
    W = torch.randn(d, V, generator=g)
    b = torch.randn(V, generator=g) if with_bias else None
    t = torch.randint(0, V, (N,), generator=g)
    logits = h.double() @ W.double() + (b.double() if b is not None else 0)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    want = F.cross_entropy(logits, t, reduction="none")
    got = M.chunked_cross_entropy(h, W, b, t, softcap=softcap, vocab_chunk=128, token_chunk=10)
    assert got.shape == (N,)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    got64 = M.chunked_cross_entropy(h, W, b, t, softcap=softcap, vocab_chunk=V, token_chunk=N, dtype=torch.float64)
    torch.testing.assert_close(got64, want, rtol=1e-10, atol=1e-10)


def test_chunked_cross_entropy_validates():
    h, W = torch.zeros(3, 4), torch.zeros(4, 10)
    with pytest.raises(ValueError):
        M.chunked_cross_entropy(h, torch.zeros(5, 10), None, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        M.chunked_cross_entropy(h, W, None, torch.tensor([0, 1, 10]))
    with pytest.raises(ValueError):
        M.chunked_cross_entropy(h, W, torch.zeros(9), torch.zeros(3, dtype=torch.long))
    # uniform logits: CE = log V
    ce = M.chunked_cross_entropy(h, W, None, torch.tensor([0, 3, 9]), vocab_chunk=3)
    torch.testing.assert_close(ce, torch.full((3,), math.log(10)))


@pytest.mark.parametrize("softcap", [None, 4.0])
def test_chunked_kl_matches_full(softcap):
    g = torch.Generator().manual_seed(7)
    N, d, V = 23, 6, 517
    hc, hs = torch.randn(N, d, generator=g), torch.randn(N, d, generator=g)
    W, b = torch.randn(d, V, generator=g), torch.randn(V, generator=g)

    def logits(h):
        z = h.double() @ W.double() + b.double()
        return softcap * torch.tanh(z / softcap) if softcap else z

    want = M.kl_divergence_from_logits(logits(hc), logits(hs))
    got = M.chunked_kl_divergence(hc, hs, W, b, softcap=softcap, vocab_chunk=100, token_chunk=7)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    assert torch.all(M.chunked_kl_divergence(hc, hc, W, b, vocab_chunk=100) < 1e-5)


# --------------------------------------------------------------------------- streaming


def test_reconstruction_stats_streaming_equals_one_shot():
    x, _, g = _data(n=301, d=12, mean_scale=3.0, seed=8)
    x_hat = x.mean(0) + 0.85 * (x - x.mean(0)) + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64) + 0.05
    codes = torch.relu(torch.randn(301, 40, generator=g) - 1.0)
    codes[:, 7] = 0  # a dead latent
    stats = M.ReconstructionStats(d_in=12, n_latents=40)
    for lo, hi in [(0, 1), (1, 100), (100, 101), (101, 250), (250, 301)]:  # uneven batches
        stats.update(x[lo:hi].float(), x_hat[lo:hi].float(), codes[lo:hi])
    out = stats.compute()
    xf, xhf = x.float().double(), x_hat.float().double()  # the accumulator saw float32 inputs
    assert out["n_tokens"] == 301
    assert out["gamma"] == pytest.approx(M.relative_reconstruction_bias(xf, xhf), rel=1e-10)
    assert out["gamma_c"] == pytest.approx(M.centred_relative_reconstruction_bias(xf, xhf), rel=1e-9)
    assert out["nmse"] == pytest.approx(M.nmse(xf, xhf), rel=1e-9)
    assert out["mse"] == pytest.approx(float(((xf - xhf) ** 2).sum(1).mean()), rel=1e-12)
    assert out["l0"] == pytest.approx(M.l0(codes))
    per_tok = (codes != 0).sum(1).double()
    assert out["l0_se"] == pytest.approx(M.mean_and_se(per_tok)[1], rel=1e-9)
    assert out["alive_frac"] == pytest.approx(39 / 40)
    assert out["gamma_c"] < 0.9 < out["gamma"]  # the shrinkage is visible only once centred


def test_reconstruction_stats_merge_and_errors():
    x, _, g = _data(n=50, d=4, seed=9)
    x_hat = 0.9 * x
    a, b, whole = M.ReconstructionStats(4), M.ReconstructionStats(4), M.ReconstructionStats(4)
    a.update(x[:20], x_hat[:20])
    b.update(x[20:], x_hat[20:])
    whole.update(x, x_hat)
    merged = a.merge(b).compute()
    for k, v in whole.compute().items():
        assert merged[k] == pytest.approx(v, rel=1e-12)
    assert "l0" not in merged  # no codes given
    with pytest.raises(ValueError):
        M.ReconstructionStats(4).compute()
    with pytest.raises(ValueError):
        whole.update(x, x_hat, codes=torch.zeros(50, 3))
    with pytest.raises(ValueError):
        M.ReconstructionStats(5).update(x, x_hat)


def test_degenerate_reconstructions_give_nan_not_garbage():
    """x̂ ≡ 0 (γ = 0/0) and a dead SAE emitting b_dec for every token (centred cross term = 0):
    the ratios are undefined and come back NaN, one-shot and streaming alike, never ±huge."""
    x, _, _ = _data(n=64, d=8, mean_scale=3.0, seed=11)
    b_dec = x.mean(0) + 0.3
    for x_hat, nan_keys in ((torch.zeros_like(x), {"gamma", "gamma_c"}), (b_dec.expand_as(x).clone(), {"gamma_c"})):
        st = M.ReconstructionStats(8, n_latents=5)
        st.update(x, x_hat, torch.zeros(64, 5))
        out = st.compute()
        for key, fn in (("gamma", M.relative_reconstruction_bias), ("gamma_c", M.centred_relative_reconstruction_bias)):
            assert math.isnan(out[key]) == (key in nan_keys)
            assert math.isnan(fn(x, x_hat)) == (key in nan_keys)
        assert out["l0"] == 0.0 and out["alive_frac"] == 0.0 and np.isfinite(out["nmse"])
    assert math.isnan(M.nmse(torch.ones(5, 3), torch.zeros(5, 3)))


# --------------------------------------------------------------------------- sequence-aware SEs


def _correlated_losses(n_seq=400, n_tok=32, seed=0):
    """Per-token CEs [S, T] with a per-sequence difficulty shared by clean, SAE and zero-ablated
    losses (as in real text), and a per-sequence SAE damage: tokens of a sequence are correlated."""
    g = torch.Generator().manual_seed(seed)
    hard = 1.5 * torch.randn(n_seq, 1, generator=g, dtype=torch.float64)
    clean = 3.0 + hard + torch.randn(n_seq, n_tok, generator=g, dtype=torch.float64)
    damage = 0.3 + 0.2 * torch.randn(n_seq, 1, generator=g, dtype=torch.float64)
    sae = clean + damage + 0.1 * torch.randn(n_seq, n_tok, generator=g, dtype=torch.float64)
    zero = (
        clean
        + 1.0
        + 0.3 * torch.randn(n_seq, 1, generator=g, dtype=torch.float64)
        + 0.2 * torch.randn(n_seq, n_tok, generator=g, dtype=torch.float64)
    )
    return clean, sae, zero


def test_cluster_ratio_with_one_token_per_cluster_is_the_classic_mean_and_se():
    x = torch.randn(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert M.cluster_ratio(x, torch.ones(50, dtype=torch.float64)) == pytest.approx(M.mean_and_se(x), rel=1e-12)


def test_sequence_se_matches_a_bootstrap_over_sequences_and_exceeds_the_per_token_se():
    clean, sae, zero = _correlated_losses()
    stats = M.paired_loss_stats(clean, sae, zero)
    draws = M.bootstrap_sequences(clean.shape[0], n_boot=2000, seed=1)
    boot_lr = [M.loss_recovered(clean[i].mean(), sae[i].mean(), zero[i].mean()) for i in draws]
    boot_delta = [(sae[i] - clean[i]).mean().item() for i in draws]
    assert stats["loss_recovered_se"] == pytest.approx(np.std(boot_lr), rel=0.1)
    assert stats["delta_lm_loss_se"] == pytest.approx(np.std(boot_delta), rel=0.1)
    # tokens of a sequence share its damage: treating them as independent understates the SE
    assert stats["delta_lm_loss_se"] > 3 * M.mean_and_se(sae - clean)[1]


def test_paired_stats_have_the_plain_means_and_pairing_shrinks_the_se():
    clean, sae, zero = _correlated_losses(seed=4)
    stats = M.paired_loss_stats(clean, sae, zero, kl=(sae - clean).abs())
    assert stats["loss_recovered"] == pytest.approx(M.loss_recovered(clean.mean(), sae.mean(), zero.mean()), rel=1e-12)
    assert stats["delta_lm_loss"] == pytest.approx(float((sae - clean).mean()), rel=1e-12)
    assert stats["kl"] == pytest.approx(float((sae - clean).abs().mean()), rel=1e-12)
    # unpaired: the SE of CE_sae alone carries the shared sequence difficulty (sd 1.5)
    assert stats["delta_lm_loss_se"] < 0.25 * stats["ce_sae_se"]


def test_paired_stats_refuse_mismatched_or_flat_inputs():
    clean, sae, zero = _correlated_losses(n_seq=4, n_tok=3)
    with pytest.raises(ValueError, match="shapes differ"):
        M.paired_loss_stats(clean, sae[:3], zero)
    with pytest.raises(ValueError, match=r"\[n_sequences, tokens\]"):
        M.paired_loss_stats(clean.reshape(-1), sae.reshape(-1), zero.reshape(-1))
    with pytest.raises(ValueError, match="undefined"):
        M.paired_loss_stats(clean, sae, clean)
