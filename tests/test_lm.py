"""CE computation: chunked log-sum-exp equals the full softmax; interventions behave."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from saerepro.lm import chunked_token_ce, reference_ce, token_ce


def test_chunked_ce_equals_full_cross_entropy():
    g = torch.Generator().manual_seed(0)
    hidden, W_U, b_U = torch.randn(50, 16, generator=g), torch.randn(16, 1000, generator=g), torch.randn(1000, generator=g)
    targets = torch.randint(0, 1000, (50,), generator=g)
    full = F.cross_entropy(hidden @ W_U + b_U, targets, reduction="none")
    chunked = chunked_token_ce(hidden, W_U, b_U, targets, vocab_chunk=97)
    assert torch.allclose(full, chunked, atol=1e-5)


def test_chunked_ce_applies_the_softcap():
    g = torch.Generator().manual_seed(1)
    hidden, W_U = torch.randn(20, 8, generator=g) * 10, torch.randn(8, 300, generator=g)
    targets = torch.randint(0, 300, (20,), generator=g)
    capped = 5.0 * torch.tanh((hidden @ W_U) / 5.0)
    expected = F.cross_entropy(capped, targets, reduction="none")
    assert torch.allclose(chunked_token_ce(hidden, W_U, None, targets, 64, softcap=5.0), expected, atol=1e-5)


def test_token_ce_matches_transformer_lens_loss(tiny_model, tiny_tokens):
    tokens = torch.as_tensor(tiny_tokens, dtype=torch.long)
    with torch.no_grad():
        expected = tiny_model(tokens, return_type="loss", loss_per_token=True)
        ours = token_ce(tiny_model, tokens)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_reference_ce_zero_ablation_hurts_and_clean_is_shared(tiny_model, tiny_tokens):
    result = reference_ce(tiny_model, tiny_tokens, [(0, "resid"), (1, "mlp")], batch_size=3, progress=False)
    assert result["n_tokens"] == tiny_tokens.shape[0] * (tiny_tokens.shape[1] - 1)
    assert np.isfinite(result["ce_clean"]) and result["ce_clean_se"] > 0
    # Zeroing the whole residual stream after block 0 destroys the prediction.
    assert result["zero"][(0, "resid")]["ce_zero"] != result["ce_clean"]
