"""The unit-norm decoder constraint and the initialisation shared by every architecture."""

from __future__ import annotations

import pytest
import torch

from saerepro.sae import ARCHITECTURES, make_sae
from saerepro.sae.common import SaeReproMixin


def test_parallel_gradient_removed_exactly():
    torch.manual_seed(0)
    sae = make_sae("baseline", 5, 7, dtype="float64")
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(7, 1, dtype=torch.float64) + 0.5)  # also works off unit norm
    w = sae.W_dec.detach().clone()
    g = torch.randn(7, 5, dtype=torch.float64)
    sae.W_dec.grad = g.clone()
    sae.remove_parallel_decoder_grad_()
    out = sae.W_dec.grad
    # no component along each row is left, and the perpendicular part is untouched
    assert (out * w).sum(-1).abs().max() < 1e-12
    expected = g - ((g * w).sum(-1, keepdim=True) / (w * w).sum(-1, keepdim=True)) * w
    torch.testing.assert_close(out, expected)
    assert float((out - g).norm()) > 0.1


def test_normalize_decoder():
    sae = make_sae("gated", 5, 7)
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    sae.normalize_decoder_()
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(7))


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_initialisation(name):
    torch.manual_seed(0)
    sae = make_sae(name, 12, 30, **({"k": 4} if name == "topk" else {}))
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(30))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    assert torch.count_nonzero(sae.b_dec) == 0
    if name == "gated_untied":
        assert torch.equal(sae.W_mag, sae.W_enc)


def test_trainer_projects_then_renormalises(monkeypatch, tmp_path):
    """Each step calls remove_parallel_decoder_grad_ (after backward) and normalize_decoder_ (after
    the optimiser step), in that order."""
    import numpy as np

    from saerepro.training import TrainConfig, train_sae

    calls: list[str] = []
    original_remove = SaeReproMixin.remove_parallel_decoder_grad_
    original_norm = SaeReproMixin.normalize_decoder_

    def remove(self):
        assert self.W_dec.grad is not None
        calls.append("project")
        original_remove(self)

    def norm(self):
        calls.append("normalise")
        original_norm(self)

    monkeypatch.setattr(SaeReproMixin, "remove_parallel_decoder_grad_", remove)
    monkeypatch.setattr(SaeReproMixin, "normalize_decoder_", norm)
    cache = tmp_path / "cache"
    cache.mkdir()
    arr = np.lib.format.open_memmap(cache / "activations.npy", mode="w+", dtype=np.float16, shape=(512, 4))
    arr[:] = np.random.default_rng(0).standard_normal((512, 4))
    arr.flush()
    (cache / "meta.json").write_text('{"shape": [512, 4], "dtype": "float16", "scale": 1.0}')
    cfg = TrainConfig(
        architecture="gated",
        coefficient=0.1,
        d_sae=8,
        batch_size=64,
        total_tokens=64 * 3,
        shuffle_chunk_tokens=64,
        device="cpu",
    )
    train_sae(cfg, cache, tmp_path / "out", progress=False)
    assert calls == ["project", "normalise"] * 3
    calls.clear()
    cfg = TrainConfig(
        architecture="baseline_rescale_shift",
        coefficient=0.1,
        batch_size=64,
        total_tokens=64 * 3,
        shuffle_chunk_tokens=64,
        device="cpu",
        baseline_path=str(tmp_path / "base"),
    )
    base = TrainConfig(
        architecture="baseline",
        coefficient=0.1,
        d_sae=8,
        batch_size=64,
        total_tokens=64,
        shuffle_chunk_tokens=64,
        device="cpu",
    )
    train_sae(base, cache, tmp_path / "base", progress=False)
    calls.clear()
    train_sae(cfg, cache, tmp_path / "rs", progress=False)
    assert calls == []  # frozen decoder: nothing to constrain
