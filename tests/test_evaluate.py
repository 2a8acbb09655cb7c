"""Evaluation: single-pass CE+KL equals the full softmax; splicing behaves at the extremes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saerepro.evaluate import evaluate_sae, spliced_ce_and_kl
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
    out = evaluate_sae(tiny_model, ScaledIdentitySAE(d_in), 1, site, scale=3.7, eval_tokens=tiny_tokens,
                       reference=reference[(1, site)], batch_size=4, progress=False)
    assert out["loss_recovered"] == pytest.approx(1.0, abs=1e-4)
    assert out["delta_lm_loss"] == pytest.approx(0.0, abs=1e-4)
    assert out["kl"] == pytest.approx(0.0, abs=1e-5)
    assert out["gamma"] == pytest.approx(1.0, abs=1e-5) and out["nmse"] == pytest.approx(0.0, abs=1e-6)


def test_zero_reconstruction_recovers_nothing(tiny_model, tiny_tokens, reference):
    out = evaluate_sae(tiny_model, ZeroSAE(64), 1, "resid", scale=1.0, eval_tokens=tiny_tokens,
                       reference=reference[(1, "resid")], batch_size=4, progress=False)
    assert out["loss_recovered"] == pytest.approx(0.0, abs=1e-4)
    assert out["l0"] == 0.0 and out["alive_frac"] == 0.0


def test_shrunk_reconstruction_shows_gamma_below_one(tiny_model, tiny_tokens, reference):
    out = evaluate_sae(tiny_model, ScaledIdentitySAE(64, factor=0.8), 1, "resid", scale=1.0,
                       eval_tokens=tiny_tokens, reference=reference[(1, "resid")], batch_size=4,
                       progress=False)
    assert out["gamma"] == pytest.approx(0.8, abs=1e-4)
    assert out["gamma_c"] == pytest.approx(0.8, abs=1e-4)
    assert 0.0 < out["loss_recovered"] < 1.0
