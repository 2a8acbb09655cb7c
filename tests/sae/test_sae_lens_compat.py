"""Every architecture is a sae-lens SAE: save_model + sae_lens.SAE.load_from_disk round-trips."""

from __future__ import annotations

import json

import pytest
import torch
from sae_lens import SAE
from sae_lens.registry import SAE_CLASS_REGISTRY
from sae_lens.saes.jumprelu_sae import JumpReLUSAE as StockJumpReLUSAE

from saerepro.sae import ARCHITECTURES, SAE_LENS_PREFIX, make_sae, register_with_sae_lens

HOOK = "blocks.3.hook_resid_post"


def _random_sae(name: str, d_in: int = 8, d_sae: int = 24, seed: int = 0, **meta):
    kwargs = {"k": 5} if name == "topk" else {}
    torch.manual_seed(seed)
    sae = make_sae(name, d_in, d_sae, metadata={"hook_name": HOOK, **meta}, **kwargs)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if name == "jumprelu":
            sae.log_threshold.copy_(torch.randn(d_sae).mul(0.3).add(-1.0))
    return sae


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_save_and_load_from_disk_identical(name, tmp_path):
    sae = _random_sae(name)
    x = torch.randn(50, 8)
    sae.save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == SAE_LENS_PREFIX + name

    loaded = SAE.load_from_disk(tmp_path)
    assert type(loaded) is type(sae)
    assert loaded.cfg.metadata.hook_name == HOOK
    assert loaded.cfg.d_sae == 24
    assert set(loaded.state_dict()) == set(sae.state_dict())
    for key, value in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    acts = sae.encode(x)
    assert 0 < int((acts != 0).sum()) < acts.numel()
    assert torch.equal(loaded.encode(x), acts)
    assert torch.equal(loaded.decode(acts), sae.decode(acts))
    assert torch.equal(loaded(x), sae(x))
    # the training path computes the same latents as sae-lens' encode
    torch.testing.assert_close(sae.loss_terms(x, 0.1).feature_acts, acts)


def test_every_architecture_registered_once_and_idempotently():
    register_with_sae_lens()
    register_with_sae_lens()
    for name, cls in ARCHITECTURES.items():
        assert SAE_CLASS_REGISTRY[SAE_LENS_PREFIX + name] == (cls, cls.config_class)
    # sae-lens' own architectures keep their stock classes
    assert SAE_CLASS_REGISTRY["gated"][0].__module__.startswith("sae_lens")


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if n != "topk"])
def test_fold_W_dec_norm_preserves_outputs(name):
    sae = _random_sae(name, seed=2)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(24, 1) * 2 + 0.2)  # non-unit decoder rows
    x = torch.randn(40, 8)
    before = sae(x)
    sae.fold_W_dec_norm()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(24))
    torch.testing.assert_close(sae(x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_fold_activation_scale_gives_model_unit_sae(name):
    """Folding the cache's normalisation scale s gives an SAE on raw activations: f'(x) = f(s·x),
    x̂'(x) = x̂(s·x)/s."""
    s = 0.37
    sae = _random_sae(name, seed=4)
    x_raw = torch.randn(40, 8) / s
    acts, recon = sae.encode(s * x_raw), sae(s * x_raw) / s
    sae.fold_activation_norm_scaling_factor(s)
    torch.testing.assert_close(sae.encode(x_raw), acts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae(x_raw), recon, rtol=1e-5, atol=1e-5)


def test_jumprelu_exports_to_stock_sae_lens(tmp_path):
    sae = _random_sae("jumprelu", seed=5)
    x = torch.randn(60, 8)
    stock = sae.as_sae_lens_jumprelu()
    assert isinstance(stock, StockJumpReLUSAE)
    stock.save_model(tmp_path)
    reloaded = SAE.load_from_disk(tmp_path)
    assert isinstance(reloaded, StockJumpReLUSAE)
    assert torch.equal(reloaded.encode(x) != 0, sae.encode(x) != 0)
    torch.testing.assert_close(reloaded(x), sae(x))


def test_hook_z_sae_reshapes_like_sae_lens(tmp_path):
    """An attention-output (hook_z) SAE loads with sae-lens' hook_z reshaping on."""
    torch.manual_seed(0)
    sae = make_sae("gated", 8, 16, metadata={"hook_name": "blocks.1.attn.hook_z"})
    sae.cfg.reshape_activations = "hook_z"
    sae.save_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    x = torch.randn(3, 5, 2, 4)  # [batch, pos, n_heads, d_head]
    out = loaded(x)
    assert out.shape == x.shape
    flat = x.reshape(3, 5, 8)
    torch.testing.assert_close(out.reshape(3, 5, 8), sae(flat))
