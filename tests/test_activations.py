"""Activation cache: one pass, BOS skipped, normalised to E||x||^2 = d_in, values match the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saerepro.activations import (
    CorruptCacheError,
    cache_activations,
    check_free_space,
    estimate_cache_bytes,
    open_cache,
)
from saerepro.sites import hook_name

HOOKS = [(0, "resid"), (1, "mlp"), (1, "attn"), (0, "mlp_post")]


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_model, tiny_tokens):
    root = tmp_path_factory.mktemp("cache")
    dirs = [root / f"L{l}" / s for l, s in HOOKS]
    metas = cache_activations(
        tiny_model, tiny_tokens, HOOKS, dirs, batch_size=3, dtype="float32", progress=False, model_name="tiny"
    )
    return dirs, metas


def test_cache_is_normalised_and_skips_bos(written, tiny_tokens):
    dirs, metas = written
    n_seq, ctx = tiny_tokens.shape
    for d, meta in zip(dirs, metas, strict=False):
        cache = open_cache(d)
        assert cache.n_tokens == n_seq * (ctx - 1)
        mean_sq = np.square(cache.array.astype(np.float64)).sum(1).mean()
        assert mean_sq == pytest.approx(cache.d_in, rel=1e-4)
        assert meta["bos_skipped"] is True
    assert open_cache(dirs[2]).d_in == 4 * 16  # attn = n_heads * d_head
    assert open_cache(dirs[3]).d_in == 256  # mlp_post = d_mlp (the MLP neurons)


def test_cached_values_equal_the_model_activations(written, tiny_model, tiny_tokens):
    dirs, _ = written
    tokens = torch.as_tensor(tiny_tokens, dtype=torch.long)
    _, acts = tiny_model.run_with_cache(tokens)
    for d, (layer, site) in zip(dirs, HOOKS, strict=False):
        cache = open_cache(d)
        expected = acts[hook_name(layer, site)][:, 1:].reshape(cache.n_tokens, -1).numpy()
        np.testing.assert_allclose(cache.array / cache.scale, expected, rtol=1e-4, atol=1e-5)


def test_float16_cache_keeps_relative_error_small(tmp_path, tiny_model, tiny_tokens):
    (d16,) = [tmp_path / "f16"]
    cache_activations(tiny_model, tiny_tokens, [(1, "resid")], [d16], dtype="float16", progress=False)
    cache = open_cache(d16)
    tokens = torch.as_tensor(tiny_tokens, dtype=torch.long)
    _, acts = tiny_model.run_with_cache(tokens)
    exact = acts["blocks.1.hook_resid_post"][:, 1:].reshape(cache.n_tokens, -1).numpy() * cache.scale
    err = np.square(cache.array.astype(np.float64) - exact).sum() / np.square(exact).sum()
    assert err < 1e-6


def test_meta_disagreeing_with_array_is_detected(written, tmp_path):
    import shutil

    src = written[0][0]
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    meta = json.loads((broken / "meta.json").read_text())
    meta["shape"][0] += 1
    (broken / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="inconsistent"):
        open_cache(broken)


def _copy(written, tmp_path, name):
    import shutil

    dst = tmp_path / name
    shutil.copytree(written[0][0], dst)
    return dst


def test_truncated_cache_array_is_detected(written, tmp_path):
    broken = _copy(written, tmp_path, "truncated")
    array = broken / "activations.npy"
    array.write_bytes(array.read_bytes()[:-1000])
    with pytest.raises(CorruptCacheError, match="truncated") as info:
        open_cache(broken)
    assert "forcerun cache_activations" in str(info.value)


def test_altered_cache_bytes_are_caught_by_the_hash_check(written, tmp_path):
    broken = _copy(written, tmp_path, "altered")
    array = broken / "activations.npy"
    data = bytearray(array.read_bytes())
    data[-7] ^= 0x40  # one bit of one float16 activation, same size: only the hash can tell
    array.write_bytes(bytes(data))
    open_cache(broken)  # shape and dtype still agree
    with pytest.raises(CorruptCacheError, match="SHA-256"):
        open_cache(broken, verify=True)
    assert open_cache(written[0][0], verify=True).n_tokens > 0  # the intact original passes


def test_unreadable_cache_metadata_is_detected(written, tmp_path):
    broken = _copy(written, tmp_path, "badmeta")
    (broken / "meta.json").write_text('{"shape": [3')
    with pytest.raises(CorruptCacheError, match="unreadable"):
        open_cache(broken)


def test_training_refuses_a_corrupt_cache(written, tmp_path):
    from saerepro.config import SaeKey, load_config
    from saerepro.pipeline import train_run

    broken = _copy(written, tmp_path, "altered_for_training")
    array = broken / "activations.npy"
    data = bytearray(array.read_bytes())
    data[-3] ^= 0x01
    array.write_bytes(bytes(data))
    cfg = load_config(
        {
            "model": "gemma-3-270m",
            "layers": [1],
            "sites": ["resid"],
            "architectures": {"gated": {"coefficients": [1.0], "width": 16}},
            "train": {"tokens": 64, "batch_size": 32},
        }
    )
    out = tmp_path / "sae"
    with pytest.raises(CorruptCacheError):
        train_run(cfg, SaeKey("gemma-3-270m", 1, "resid", "gated", 1.0, 0), broken, out)
    assert not (out / "train_info.json").exists()


def test_disk_check_names_both_numbers(tmp_path):
    need = estimate_cache_bytes(10**12, [640, 640, 1024], "float16")
    assert need == 10**12 * 2304 * 2
    with pytest.raises(OSError, match=r"need about .* GB .* only .* GB free"):
        check_free_space(tmp_path, need)
