"""Dead-latent resampling (saerepro.sae.resample) for the baseline and the gated family."""

from __future__ import annotations

import pytest
import torch

from saerepro.sae import GATED_FAMILY, RESAMPLE_ARCHITECTURES, make_sae, resample_dead_latents

D_IN, D_SAE = 8, 12
DEAD = [1, 5, 9]


def _trained_state(name: str):
    """A gated-family or baseline SAE after a few Adam steps, with latents DEAD planted dead."""
    torch.manual_seed(0)
    sae = make_sae(name, D_IN, D_SAE)
    params = list(sae.trainable_parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2, betas=(0.0, 0.999))
    x = torch.randn(64, D_IN)
    for _ in range(3):
        optimizer.zero_grad()
        sae.loss_terms(x, 0.1).total.backward()
        optimizer.step()
    with torch.no_grad():
        sae.b_dec.zero_()  # the resampled inputs' projections are then positive
        gate_bias = sae.b_gate if name != "baseline" else sae.b_enc
        gate_bias[DEAD] = -1e6  # planted: these never fire
    return sae, optimizer


@pytest.mark.parametrize("name", GATED_FAMILY + ("baseline",))
def test_resampled_latents_fire_on_their_inputs_with_fresh_adam_state(name):
    assert name in RESAMPLE_ARCHITECTURES
    sae, optimizer = _trained_state(name)
    inputs = torch.randn(256, D_IN) * 3
    dead_mask = torch.zeros(D_SAE, dtype=torch.bool)
    dead_mask[DEAD] = True
    with torch.no_grad():
        assert float(sae.encode(inputs)[:, DEAD].abs().max()) == 0.0
    alive = ~dead_mask
    before = {n: p.detach().clone() for n, p in sae.named_parameters()}
    adam_before = {n: {k: v.clone() for k, v in optimizer.state[p].items()} for n, p in sae.named_parameters()}

    n = resample_dead_latents(sae, optimizer, dead_mask, inputs, torch.Generator().manual_seed(0))
    assert n == len(DEAD)

    # decoder rows: unit-norm input directions
    directions = sae.W_dec[DEAD]
    assert torch.allclose(directions.norm(dim=-1), torch.ones(len(DEAD)), atol=1e-5)
    unit_inputs = inputs / inputs.norm(dim=-1, keepdim=True)
    match = (directions @ unit_inputs.T).amax(dim=-1)
    assert torch.allclose(match, torch.ones(len(DEAD)), atol=1e-5)  # each is one of the inputs
    # each resampled latent fires on the input it was pointed at
    which = (directions @ unit_inputs.T).argmax(dim=-1)
    with torch.no_grad():
        acts = sae.encode(inputs[which])
    assert (acts[torch.arange(len(DEAD)), torch.tensor(DEAD)] > 0).all()
    # gate bias 0, encoder column along the direction at 0.2 x the alive mean norm
    gate_bias = sae.b_enc if name == "baseline" else sae.b_gate
    assert (gate_bias[DEAD] == 0).all()
    enc = sae.W_enc[:, DEAD]
    expected = 0.2 * before["W_enc"].norm(dim=0)[alive].mean()
    assert torch.allclose(enc.norm(dim=0), expected.expand(len(DEAD)), rtol=1e-5)
    assert torch.allclose(enc / enc.norm(dim=0), directions.T, atol=1e-5)
    if name != "baseline":
        assert (sae.b_mag[DEAD] == 0).all()
        if hasattr(sae, "r_mag") and isinstance(sae.r_mag, torch.nn.Parameter):
            assert torch.allclose(sae.r_mag[DEAD], before["r_mag"][alive].mean().expand(len(DEAD)))
        if name == "gated_untied":
            w_mag = sae.W_mag[:, DEAD]
            assert torch.allclose(w_mag / w_mag.norm(dim=0), directions.T, atol=1e-5)

    # every modified entry's Adam moments are zero; the other latents' weights and moments untouched
    for pname, p in sae.named_parameters():
        if p not in optimizer.state or not optimizer.state[p]:
            continue
        latent_dim = {"W_dec": 0}.get(pname, p.dim() - 1)
        if p.shape[latent_dim] != D_SAE:  # b_dec
            assert torch.equal(p, before[pname])
            continue
        for key in ("exp_avg", "exp_avg_sq"):
            moment = optimizer.state[p][key]
            dead_part = moment.index_select(latent_dim, torch.tensor(DEAD))
            assert float(dead_part.abs().max()) == 0.0, (pname, key)
            keep = torch.nonzero(alive).flatten()
            assert torch.equal(
                moment.index_select(latent_dim, keep), adam_before[pname][key].index_select(latent_dim, keep)
            )
        keep = torch.nonzero(alive).flatten()
        assert torch.equal(p.index_select(latent_dim, keep), before[pname].index_select(latent_dim, keep)), pname


def test_no_dead_latents_changes_nothing():
    sae, optimizer = _trained_state("gated")
    before = {n: p.detach().clone() for n, p in sae.named_parameters()}
    n = resample_dead_latents(
        sae, optimizer, torch.zeros(D_SAE, dtype=torch.bool), torch.randn(16, D_IN), torch.Generator()
    )
    assert n == 0
    assert all(torch.equal(p, before[n]) for n, p in sae.named_parameters())


@pytest.mark.parametrize("name", ["topk", "jumprelu"])
def test_other_architectures_are_refused(name):
    sae = make_sae(name, D_IN, D_SAE, **({"k": 2} if name == "topk" else {}))
    optimizer = torch.optim.Adam(sae.parameters())
    with pytest.raises(TypeError, match="baseline and the gated family"):
        resample_dead_latents(
            sae, optimizer, torch.ones(D_SAE, dtype=torch.bool), torch.randn(16, D_IN), torch.Generator()
        )
