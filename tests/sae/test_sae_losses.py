"""Every loss term of every architecture against values computed by hand at tiny dimensions.

Weights are set by hand (float64) and the expected numbers are worked out in the comments; the
batch has two tokens so the batch averaging is exercised too.
"""

from __future__ import annotations

import math

import pytest
import torch

from saerepro.sae import make_sae

X = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
I2 = torch.eye(2, dtype=torch.float64)


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def _set(sae, **params):
    with torch.no_grad():
        for name, value in params.items():
            getattr(sae, name).copy_(_t(value) if not isinstance(value, torch.Tensor) else value)
    return sae


def _terms(out):
    return {k: float(v.detach()) for k, v in out.terms.items()}


def test_gated_terms_by_hand():
    sae = _set(
        make_sae("gated", 2, 2, dtype="float64"),
        W_enc=I2,
        b_gate=[0.0, -1.0],
        r_mag=[math.log(2.0), 0.0],
        b_mag=[0.5, 0.0],
        W_dec=I2,
        b_dec=[0.0, 0.0],
    )
    out = sae.loss_terms(X, coefficient=0.1)
    # x1=[1,2]: π_gate=[1,1], π_mag=[2*1+.5, 2]=[2.5,2], f=[2.5,2], x̂=[2.5,2]: ‖x−x̂‖²=2.25,
    #           ‖ReLU(π_gate)‖₁=2, x̂_frozen=[1,1]: aux=1
    # x2=[-1,.5]: π_gate=[-1,-.5] closed, f=0, x̂=0: ‖x‖²=1.25, L1=0, aux=1.25
    t = _terms(out)
    assert t["recon"] == pytest.approx((2.25 + 1.25) / 2)
    assert t["sparsity"] == pytest.approx(0.1 * (2 + 0) / 2)
    assert t["aux"] == pytest.approx((1 + 1.25) / 2)
    assert float(out.total.detach()) == pytest.approx(1.75 + 0.1 + 1.125)
    assert out.feature_acts.tolist() == [[2.5, 2.0], [0.0, 0.0]]


def test_gated_no_rmag_and_untied_by_hand():
    no_rmag = _set(
        make_sae("gated_no_rmag", 2, 2, dtype="float64"),
        W_enc=I2,
        b_gate=[0.0, -1.0],
        b_mag=[0.5, 0.0],
        W_dec=I2,
        b_dec=[0.0, 0.0],
    )
    assert not hasattr(no_rmag, "r_mag") or not isinstance(getattr(no_rmag, "r_mag", None), torch.nn.Parameter)
    # x1: π_mag=[1.5,2] -> x̂=[1.5,2]: 0.25; x2: 1.25
    assert _terms(no_rmag.loss_terms(X, 0.1))["recon"] == pytest.approx((0.25 + 1.25) / 2)

    untied = _set(
        make_sae("gated_untied", 2, 2, dtype="float64"),
        W_enc=I2,
        W_mag=[[2.0, 0.0], [0.0, 1.0]],
        b_gate=[0.0, -1.0],
        b_mag=[0.5, 0.0],
        W_dec=I2,
        b_dec=[0.0, 0.0],
    )
    # W_mag = diag(2,1) is the tied r_mag=[ln 2, 0] case: same numbers as test_gated_terms_by_hand
    t = _terms(untied.loss_terms(X, 0.1))
    assert t == pytest.approx({"recon": 1.75, "sparsity": 0.1, "aux": 1.125})


@pytest.mark.parametrize("name", ["gated_unfrozen_decoder", "gated_strict_aux"])
def test_gated_aux_variants_same_values(name):
    kwargs = dict(
        W_enc=I2, b_gate=[0.0, -1.0], r_mag=[math.log(2.0), 0.0], b_mag=[0.5, 0.0], W_dec=I2, b_dec=[0.0, 0.0]
    )
    a = _set(make_sae(name, 2, 2, dtype="float64"), **kwargs)
    assert _terms(a.loss_terms(X, 0.1)) == pytest.approx({"recon": 1.75, "sparsity": 0.1, "aux": 1.125})


def test_baseline_terms_by_hand():
    sae = _set(make_sae("baseline", 2, 2, dtype="float64"), W_enc=I2, b_enc=[0.0, -1.0], W_dec=I2, b_dec=[1.0, 0.0])
    out = sae.loss_terms(X, coefficient=0.1)
    # x1: x−b_dec=[0,2], pre=[0,1], f=[0,1], x̂=[0,1]+[1,0]=[1,1]: recon 1, L1 1
    # x2: x−b_dec=[-2,.5], pre=[-2,-.5], f=0, x̂=b_dec=[1,0]: recon 4+.25=4.25, L1 0
    t = _terms(out)
    assert t == pytest.approx({"recon": (1 + 4.25) / 2, "sparsity": 0.1 * 0.5})
    assert float(out.total.detach()) == pytest.approx(2.625 + 0.05)


def test_baseline_rescale_shift_by_hand():
    sae = _set(
        make_sae("baseline_rescale_shift", 2, 2, dtype="float64"),
        W_enc=I2,
        b_enc=[0.0, -1.0],
        W_dec=I2,
        b_dec=[0.0, 0.0],
        r_mag=[math.log(2.0), 0.0],
        b_mag=[0.5, 0.25],
    )
    out = sae.loss_terms(X, coefficient=0.1)
    # x1: π=[1,1] both active, f=[2*1+.5, 1+.25]=[2.5,1.25]: recon (1-2.5)²+(2-1.25)²=2.25+.5625
    # x2: π=[-1,-.5] inactive, f=0: recon 1.25. No sparsity term.
    assert _terms(out) == pytest.approx({"recon": (2.8125 + 1.25) / 2})
    assert out.feature_acts.tolist() == [[2.5, 1.25], [0.0, 0.0]]


def _topk_sae():
    sae = make_sae("topk", 2, 3, dtype="float64", k=1, k_aux=1, auxk_coefficient=1 / 32)
    return _set(
        sae,
        W_enc=[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]],
        b_enc=[0.0, 0.0, 0.0],
        W_dec=[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]],
        b_dec=[0.0, 0.0],
    )


XT = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)


def test_topk_terms_by_hand():
    sae = _topk_sae()
    # x1=[1,2]: pre=[1,2,.5], top-1 = latent 1: f=[0,2,0], x̂=[0,2], recon 1, residual e=[1,0]
    # x2=[3,-1]: pre=[3,-1,1.5], top-1 = latent 0: f=[3,0,0], x̂=[3,0], recon 1, e=[0,-1]
    out = sae.loss_terms(XT, coefficient=1, dead_mask=None)
    assert _terms(out) == pytest.approx({"recon": 1.0, "auxk": 0.0})
    assert out.feature_acts.tolist() == [[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]]

    # latent 2 dead: z_aux = ReLU(pre_2) = .5 and 1.5; ê = z_aux*[0,1]
    # x1: ‖[1,0]-[0,.5]‖² = 1.25; x2: ‖[0,-1]-[0,1.5]‖² = 6.25; mean 3.75, times α = 1/32
    out = sae.loss_terms(XT, coefficient=1, dead_mask=torch.tensor([False, False, True]))
    assert _terms(out) == pytest.approx({"recon": 1.0, "auxk": 3.75 / 32})

    # latent 1 dead: x1 z_aux = 2 -> ê=[0,2], ‖[1,-2]‖² = 5; x2 pre_1 = -1 -> ReLU -> 0, ‖e‖² = 1
    out = sae.loss_terms(XT, coefficient=1, dead_mask=torch.tensor([False, True, False]))
    assert _terms(out)["auxk"] == pytest.approx(3.0 / 32)


def test_topk_auxk_default_k_aux_is_half_d_in():
    sae = make_sae("topk", 8, 16, k=2)
    assert sae.k_aux == 4


def test_topk_auxk_does_not_train_through_main_reconstruction():
    sae = _topk_sae()
    out = sae.loss_terms(XT, coefficient=1, dead_mask=torch.tensor([False, False, True]))
    out.terms["auxk"].backward()
    # the residual e is detached: AuxK moves only the dead latent's encoder and decoder rows
    assert torch.count_nonzero(sae.W_dec.grad[:2]) == 0
    assert torch.count_nonzero(sae.W_dec.grad[2]) > 0
    assert torch.count_nonzero(sae.W_enc.grad[:, :2]) == 0


def _jumprelu_sae(theta=(0.5, 1.5), bandwidth=0.001):
    sae = make_sae("jumprelu", 2, 2, dtype="float64", bandwidth=bandwidth)
    return _set(sae, W_enc=I2, b_enc=[0.0, 0.0], W_dec=I2, b_dec=[0.0, 0.0], log_threshold=_t(theta).log())


def test_jumprelu_terms_by_hand():
    sae = _jumprelu_sae()
    x = _t([[1.0, 2.0], [0.4, 1.0]])
    # x1: pre=[1,2] > θ=[.5,1.5]: f=x, recon 0, L0 2; x2: pre=[.4,1] below θ: f=0, recon .16+1, L0 0
    out = sae.loss_terms(x, coefficient=0.1)
    assert _terms(out) == pytest.approx({"recon": 1.16 / 2, "sparsity": 0.1 * 1.0})


@pytest.mark.parametrize("z0", [0.5004, 0.4996])
def test_jumprelu_threshold_gradient_by_hand(z0):
    """Within ε/2 of θ the STE gives ∂(λ·H)/∂θ = −λ/ε, above *and* below the threshold."""
    sae = _jumprelu_sae()
    x = _t([[z0, 0.0]])
    out = sae.loss_terms(x, coefficient=0.1)
    out.total.backward()
    # above: f0 = z0 = x0, so the reconstruction is exact and contributes no gradient.
    # below: f0 = 0, x̂0 = 0, ∂recon/∂f0 = −2·z0 and ∂f0/∂θ0 = −(θ/ε)·K = −500, so the recon term adds
    #        (−2 z0)(−500) = 1000·z0 to ∂L/∂θ0.
    d_theta0 = -0.1 / 0.001 + (0.0 if z0 > 0.5 else 1000 * z0)
    # ∂L/∂log θ = θ · ∂L/∂θ; latent 1 (z=0, θ=1.5) is far outside the kernel
    assert sae.log_threshold.grad.tolist() == pytest.approx([0.5 * d_theta0, 0.0], rel=1e-6)
    # no straight-through gradient to the encoder from the L0 term
    if z0 > 0.5:
        assert torch.count_nonzero(sae.W_enc.grad) == 0


def test_jumprelu_l0_penalty_counts_active_latents():
    sae = make_sae("jumprelu", 4, 8, init_threshold=0.001)
    x = torch.randn(32, 4)
    out = sae.loss_terms(x, coefficient=1.0)
    n_active = (out.feature_acts != 0).sum(-1).double().mean()
    assert float(out.terms["sparsity"].detach()) == pytest.approx(float(n_active))
