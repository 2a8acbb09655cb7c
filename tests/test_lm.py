"""CE computation: chunked log-sum-exp equals the full softmax; interventions behave."""

from __future__ import annotations

import numpy as np
import torch

from saerepro.lm import reference_ce, token_ce


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
