"""Gated SAE specifics: the aux term against a from-scratch version of the paper's pseudo-code, the
strict-aux ablation, bf16 centring, and the Gated = JumpReLU equivalence (App. E)."""

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


# which parameters the aux term alone may train: (W_dec, b_dec) gradient non-zero?
AUX_REACHES = {
    "gated": (False, True),  # b_dec through the centring x − b_dec only (paper's pseudo-code)
    "gated_no_rmag": (False, True),
    "gated_untied": (False, True),
    "gated_unfrozen_decoder": (True, True),
    "gated_strict_aux": (False, False),
}


def test_every_gated_architecture_has_an_expected_aux_pattern():
    assert set(AUX_REACHES) == set(GATED_FAMILY)


@pytest.mark.parametrize("name", GATED_FAMILY)
def test_aux_gradient_reaches_decoder_parameters_as_documented(name):
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
    reaches_w_dec, reaches_b_dec = AUX_REACHES[name]
    assert (torch.count_nonzero(w_dec) > 0) == reaches_w_dec
    assert (torch.count_nonzero(b_dec) > 0) == reaches_b_dec


# --------------------------------------------------------------------------- the paper's pseudo-code


def _reference_terms(
    p: dict[str, torch.Tensor], x: torch.Tensor, lam: float, *, stop_decoder: bool = True, strict: bool = False
) -> dict[str, torch.Tensor]:
    """The Gated SAE loss written from scratch after the paper's pseudo-code (App., "Pseudo-code for
    Gated SAEs and the Gated SAE loss function"): centre once with the live b_dec, stop gradients in
    the aux term's decoder copy only. ``stop_decoder=False``: no stop-gradient (the unfrozen ablation);
    ``strict=True``: the aux term's π_gate also uses a detached b_dec."""
    W_gate, b_gate, b_mag, W_dec, b_dec = p["W_gate"], p["b_gate"], p["b_mag"], p["W_dec"], p["b_dec"]
    if "W_mag" in p:
        W_mag = p["W_mag"]
    elif "r_mag" in p:
        W_mag = W_gate * torch.exp(p["r_mag"])
    else:
        W_mag = W_gate
    x_center = x - b_dec
    pi_gate = x_center @ W_gate + b_gate
    f = (pi_gate > 0).to(x.dtype) * torch.relu(x_center @ W_mag + b_mag)
    x_hat = f @ W_dec + b_dec
    via_gate = torch.relu(pi_gate)
    if strict:
        via_gate_aux = torch.relu((x - b_dec.detach()) @ W_gate + b_gate)
    else:
        via_gate_aux = via_gate
    W_dec_aux, b_dec_aux = (W_dec.detach(), b_dec.detach()) if stop_decoder else (W_dec, b_dec)
    x_hat_aux = via_gate_aux @ W_dec_aux + b_dec_aux
    return {
        "recon": ((x - x_hat) ** 2).sum(-1).mean(),
        "sparsity": lam * via_gate.abs().sum(-1).mean(),
        "aux": ((x - x_hat_aux) ** 2).sum(-1).mean(),
    }


_OURS_TO_PAPER = {"W_enc": "W_gate"}


@pytest.mark.parametrize("name", GATED_FAMILY)
def test_loss_and_every_gradient_match_the_papers_pseudo_code(name):
    sae = _randomised(name, d_in=8, d_sae=20, seed=11, dtype="float64")
    x = 1.5 * torch.randn(128, 8, dtype=torch.float64) + 0.5
    lam = 0.7
    ours = sae.loss_terms(x, lam)
    opened = float((ours.feature_acts != 0).double().mean())
    assert 0.1 < opened < 0.9  # both gate regimes are exercised

    names = [n for n, _ in sae.named_parameters()]
    leaves = {_OURS_TO_PAPER.get(n, n): p.detach().clone().requires_grad_(True) for n, p in sae.named_parameters()}
    ref = _reference_terms(
        leaves, x, lam, stop_decoder=name != "gated_unfrozen_decoder", strict=name == "gated_strict_aux"
    )
    ref["total"] = ref["recon"] + ref["sparsity"] + ref["aux"]
    ours_terms = {**ours.terms, "total": ours.total}
    for term in ("recon", "sparsity", "aux", "total"):
        torch.testing.assert_close(ours_terms[term], ref[term], rtol=1e-12, atol=1e-12)
        mine = torch.autograd.grad(ours_terms[term], list(sae.parameters()), retain_graph=True, allow_unused=True)
        theirs = torch.autograd.grad(ref[term], list(leaves.values()), retain_graph=True, allow_unused=True)
        for n, g_mine, g_ref in zip(names, mine, theirs, strict=True):
            g_mine = torch.zeros_like(sae.get_parameter(n)) if g_mine is None else g_mine
            g_ref = torch.zeros_like(g_mine) if g_ref is None else g_ref
            torch.testing.assert_close(g_mine, g_ref, rtol=1e-10, atol=1e-12, msg=f"d{term}/d{n}")
            if name == "gated_strict_aux" and term == "aux" and n in ("W_dec", "b_dec"):
                assert torch.count_nonzero(g_mine) == 0, n

    if name == "gated":
        # the aux term's b_dec gradient is there, and it is the centring's: −Σ_b ∂aux/∂π_gate W_gateᵀ
        (g_b_dec,) = torch.autograd.grad(ours.terms["aux"], [sae.b_dec], retain_graph=True)
        assert float(g_b_dec.norm()) > 1e-3
        pi_gate = (x - sae.b_dec) @ sae.W_enc + sae.b_gate
        pi_gate = pi_gate.detach().requires_grad_(True)
        aux = ((x - (torch.relu(pi_gate) @ sae.W_dec.detach() + sae.b_dec.detach())) ** 2).sum(-1).mean()
        (g_pi,) = torch.autograd.grad(aux, [pi_gate])
        torch.testing.assert_close(g_b_dec, -(g_pi.sum(0) @ sae.W_enc.detach().T), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- gated_strict_aux


@pytest.mark.parametrize("bf16", [False, True])
def test_strict_aux_forward_equals_gated_and_differs_only_in_the_b_dec_gradient(bf16):
    gated = _randomised("gated", seed=3)
    strict = make_sae("gated_strict_aux", 6, 10)
    strict.load_state_dict(gated.state_dict())
    x = torch.randn(32, 6) + 2.0
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        a, b = gated.loss_terms(x, 0.3), strict.loss_terms(x, 0.3)
    for term in ("recon", "sparsity", "aux"):
        assert torch.equal(a.terms[term], b.terms[term]), term
    assert torch.equal(a.feature_acts, b.feature_acts) and torch.equal(a.x_hat, b.x_hat)
    a.total.backward()
    b.total.backward()
    for n, p in strict.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and bool(torch.isfinite(p.grad).all()), n
        if n != "b_dec":
            expected = gated.get_parameter(n).grad
            if bf16:  # the two copies' bf16 gradients are summed in another order: rounding-level
                assert float((p.grad - expected).norm()) <= 2e-3 * float(expected.norm()), n
            else:
                torch.testing.assert_close(p.grad, expected, msg=n)
    # gated's extra b_dec gradient is its aux term's, through the centring
    gated_aux_b_dec = gated.b_dec.grad - strict.b_dec.grad
    assert float(gated_aux_b_dec.norm()) > 1e-3


def test_aux_gate_encoder_gradient_identical_across_aux_variants():
    """Stopping gradients in the aux term changes which parameters it trains, not its value or its
    gradient w.r.t. the gate encoder."""
    frozen = _randomised("gated", seed=3)
    x = torch.randn(32, 6)
    a = frozen.loss_terms(x, 0.3)
    a.terms["aux"].backward()
    for other_name in ("gated_unfrozen_decoder", "gated_strict_aux"):
        other = make_sae(other_name, 6, 10)
        other.load_state_dict(frozen.state_dict())
        b = other.loss_terms(x, 0.3)
        assert torch.equal(a.terms["aux"], b.terms["aux"])
        b.terms["aux"].backward()
        torch.testing.assert_close(frozen.b_gate.grad, other.b_gate.grad)
        torch.testing.assert_close(frozen.W_enc.grad, other.W_enc.grad)


# --------------------------------------------------------------------------- bf16 centring


@pytest.mark.parametrize("name", ["gated", "gated_strict_aux"])
def test_bf16_centred_pi_gate_beats_the_old_uncentred_order(name):
    """x with a dominant mean (‖20 m‖ ≈ 20 ‖noise‖) and b_dec = that mean: under bf16 autocast the
    training path's π_gate ((x − b_dec) W + b_gate) is far closer to float64 than the old
    x W − b_dec W + b_gate, whose two large bf16 products cancel."""
    torch.manual_seed(0)
    d, m = 64, 256
    sae = make_sae(name, d, m)
    x = 20 * torch.randn(d) + torch.randn(512, d)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
        sae.b_gate.copy_(0.1 * torch.randn(m))
    W, b, b_gate = (t.detach().double() for t in (sae.W_enc, sae.b_dec, sae.b_gate))
    exact = (x.double() - b) @ W + b_gate

    with torch.autocast("cpu", dtype=torch.bfloat16):
        pi_gate, _, pi_gate_aux = sae.training_pre_acts(x)
        old = x @ sae.W_enc - sae.b_dec @ sae.W_enc + sae.b_gate

    def rel_err(p: torch.Tensor) -> float:
        return float((p.detach().double() - exact).norm() / exact.norm())

    new_err, old_err = rel_err(pi_gate), rel_err(old)
    assert 1e-4 < new_err < 6e-3  # bf16 was really used (float32 would give ~1e-7), and it is fine
    assert old_err > 5 * new_err
    assert torch.equal(pi_gate_aux, pi_gate)


def test_sparsity_and_recon_do_not_touch_r_mag_b_mag_asymmetrically():
    """The L1 term acts on the gate path only: it gives no gradient to r_mag or b_mag."""
    sae = _randomised("gated")
    out = sae.loss_terms(torch.randn(64, 6), coefficient=0.3)
    out.terms["sparsity"].backward()
    assert sae.r_mag.grad is None or torch.count_nonzero(sae.r_mag.grad) == 0
    assert sae.b_mag.grad is None or torch.count_nonzero(sae.b_mag.grad) == 0
    assert torch.count_nonzero(sae.b_gate.grad) > 0


@pytest.mark.parametrize("name", ["gated", "gated_no_rmag", "gated_unfrozen_decoder", "gated_strict_aux"])
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


@pytest.mark.parametrize("name", ["gated", "gated_unfrozen_decoder", "gated_strict_aux"])
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
