"""Gated SAE specifics: the frozen-decoder aux term, and the Gated = JumpReLU equivalence (App. E)."""

from __future__ import annotations

import pytest
import torch

from saerepro.sae import GATED_FAMILY, make_sae


def _randomised(name: str, d_in: int = 6, d_sae: int = 10, seed: int = 0, dtype: str = "float32"):
    torch.manual_seed(seed)
    sae = make_sae(name, d_in, d_sae, dtype=dtype)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return sae


@pytest.mark.parametrize("name", GATED_FAMILY)
def test_aux_gradient_reaches_decoder_only_when_unfrozen(name):
    sae = _randomised(name)
    x = torch.randn(64, 6)
    out = sae.loss_terms(x, coefficient=0.3)
    assert float(out.terms["aux"].detach()) > 0
    out.terms["aux"].backward()
    w_dec = sae.W_dec.grad if sae.W_dec.grad is not None else torch.zeros_like(sae.W_dec)
    b_dec = sae.b_dec.grad if sae.b_dec.grad is not None else torch.zeros_like(sae.b_dec)
    # the aux term always trains the gate encoder
    assert torch.count_nonzero(sae.W_enc.grad) > 0
    assert torch.count_nonzero(sae.b_gate.grad) > 0
    if name == "gated_unfrozen_decoder":
        assert torch.count_nonzero(w_dec) > 0
        assert torch.count_nonzero(b_dec) > 0
    else:
        assert torch.count_nonzero(w_dec) == 0
        assert torch.count_nonzero(b_dec) == 0


def test_aux_gate_encoder_gradient_identical_frozen_or_not():
    """Freezing the decoder changes which parameters the aux term trains, not its value or its
    gradient w.r.t. the gate encoder."""
    frozen = _randomised("gated", seed=3)
    unfrozen = make_sae("gated_unfrozen_decoder", 6, 10)
    unfrozen.load_state_dict(frozen.state_dict())
    x = torch.randn(32, 6)
    a, b = frozen.loss_terms(x, 0.3), unfrozen.loss_terms(x, 0.3)
    assert torch.equal(a.terms["aux"], b.terms["aux"])
    a.terms["aux"].backward()
    b.terms["aux"].backward()
    torch.testing.assert_close(frozen.b_gate.grad, unfrozen.b_gate.grad)
    torch.testing.assert_close(frozen.W_enc.grad, unfrozen.W_enc.grad)


def test_sparsity_and_recon_do_not_touch_r_mag_b_mag_asymmetrically():
    """The L1 term acts on the gate path only: it gives no gradient to r_mag or b_mag."""
    sae = _randomised("gated")
    out = sae.loss_terms(torch.randn(64, 6), coefficient=0.3)
    out.terms["sparsity"].backward()
    assert sae.r_mag.grad is None or torch.count_nonzero(sae.r_mag.grad) == 0
    assert sae.b_mag.grad is None or torch.count_nonzero(sae.b_mag.grad) == 0
    assert torch.count_nonzero(sae.b_gate.grad) > 0


@pytest.mark.parametrize("name", ["gated", "gated_no_rmag", "gated_unfrozen_decoder"])
def test_tied_gated_is_a_jumprelu(name):
    """Paper App. E: with tied weights, f_gated(x) = JumpReLU_θ(x W_mag + b_mag), θ = b_mag − e^{r_mag} b_gate."""
    sae = _randomised(name, d_in=16, d_sae=48, seed=1, dtype="float64")
    x = 2 * torch.randn(2000, 16, dtype=torch.float64)
    gated = sae.encode(x)

    # by hand from the formula
    scale = sae.r_mag.exp() if name != "gated_no_rmag" else torch.ones(48, dtype=torch.float64)
    theta = sae.b_mag - scale * sae.b_gate
    z = (x - sae.b_dec) @ (sae.W_enc * scale) + sae.b_mag
    by_hand = torch.relu(z) * (z > theta)
    torch.testing.assert_close(sae.jumprelu_threshold(), theta)

    # and via sae-lens' own JumpReLU SAE
    jump = sae.as_jumprelu()
    via_sae_lens = jump.encode(x)

    assert bool((theta < 0).any()) and bool((theta > 0).any())  # both regimes are exercised
    assert 0.05 < float((gated != 0).double().mean()) < 0.95
    assert torch.equal(gated != 0, by_hand != 0)
    assert torch.equal(gated != 0, via_sae_lens != 0)
    torch.testing.assert_close(gated, by_hand)
    torch.testing.assert_close(gated, via_sae_lens)
    torch.testing.assert_close(sae(x), jump(x))


@pytest.mark.parametrize("name", ["gated", "gated_unfrozen_decoder"])
def test_inference_matches_sae_lens_stock_gated(name):
    """Same parameter names and the same encoder as sae-lens' stock GatedSAE (only training differs)."""
    from sae_lens.saes.gated_sae import GatedSAE as StockGatedSAE
    from sae_lens.saes.gated_sae import GatedSAEConfig as StockGatedSAEConfig

    sae = _randomised(name, seed=7)
    stock = StockGatedSAE(StockGatedSAEConfig(d_in=6, d_sae=10))
    stock.load_state_dict(sae.state_dict())
    x = torch.randn(100, 6)
    assert torch.equal(stock.encode(x) != 0, sae.encode(x) != 0)
    torch.testing.assert_close(stock(x), sae(x))


def test_untied_gated_has_no_jumprelu_form():
    with pytest.raises(ValueError, match="tied"):
        _randomised("gated_untied").as_jumprelu()
