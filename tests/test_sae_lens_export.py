"""A run folder is a drop-in sae-lens SAE on RAW hook activations (saerepro.sae.export).

The activation scale is folded into the exported ``cfg.json`` / ``sae_weights.safetensors``;
our own evaluation keeps reading the SAE as trained (``*.normalised.*``), unchanged.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from sae_lens import SAE

from saerepro.sae import ARCHITECTURES, load_sae, make_sae
from saerepro.sae.export import (
    EXPORT_KEY,
    NORMALISED_CFG_FILE,
    NORMALISED_WEIGHTS_FILE,
    export_sae_lens,
    is_exported,
)

SCALE = 0.37


def _random_run(name: str, folder, d_in: int = 8, d_sae: int = 24):
    kwargs = {"k": 5} if name == "topk" else {}
    torch.manual_seed(0)
    sae = make_sae(name, d_in, d_sae, metadata={"hook_name": "blocks.0.hook_resid_post"}, **kwargs)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if name == "jumprelu":
            sae.log_threshold.copy_(torch.randn(d_sae).mul(0.3).add(-1.0))
    sae.save_model(str(folder))
    (folder / "train_info.json").write_text(json.dumps({"activation_scale": SCALE}))
    return sae


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_export_folds_the_scale_for_every_architecture(name, tmp_path):
    sae = _random_run(name, tmp_path)
    trained = {f: (tmp_path / f).read_bytes() for f in ("cfg.json", "sae_weights.safetensors")}
    assert not is_exported(tmp_path)
    export_sae_lens(tmp_path)
    assert is_exported(tmp_path)
    # the SAE as trained is kept byte for byte, and it is what load_sae reads
    assert (tmp_path / NORMALISED_CFG_FILE).read_bytes() == trained["cfg.json"]
    assert (tmp_path / NORMALISED_WEIGHTS_FILE).read_bytes() == trained["sae_weights.safetensors"]
    ours = load_sae(str(tmp_path))
    for key, value in sae.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key

    raw = SAE.load_from_disk(tmp_path)  # plain sae-lens
    assert type(raw) is type(sae)
    assert raw.cfg.normalize_activations == "none"
    assert raw.cfg.metadata[EXPORT_KEY]["activation_scale_folded"] == SCALE
    x_raw = 3.0 * torch.randn(200, 8)
    codes_norm = sae.encode(SCALE * x_raw)
    codes_raw = raw.encode(x_raw)
    assert 0 < int((codes_norm != 0).sum()) < codes_norm.numel()
    torch.testing.assert_close(codes_raw, codes_norm, rtol=1e-5, atol=1e-5)
    assert torch.equal(codes_raw != 0, codes_norm != 0)  # same L0, token by token
    torch.testing.assert_close(raw.decode(codes_norm), sae.decode(codes_norm) / SCALE, rtol=1e-5, atol=1e-5)

    # idempotent: a second export changes nothing
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    export_sae_lens(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_retrained_folder_is_read_as_trained_until_exported_again(tmp_path):
    """Training writes cfg.json over an old export: load_sae must not read the stale normalised pair."""
    _random_run("baseline", tmp_path)
    export_sae_lens(tmp_path)
    other = tmp_path / "other"
    new = _random_run("gated", other)
    for f in ("cfg.json", "sae_weights.safetensors"):
        shutil.copy(other / f, tmp_path / f)
    loaded = load_sae(str(tmp_path))
    assert type(loaded) is type(new)
    export_sae_lens(tmp_path)
    assert type(load_sae(str(tmp_path))) is type(new)
    assert is_exported(tmp_path)


def test_an_interrupted_export_is_completed(tmp_path):
    sae = _random_run("gated", tmp_path)
    (tmp_path / "sae_weights.safetensors").rename(tmp_path / NORMALISED_WEIGHTS_FILE)  # killed here
    assert torch.equal(load_sae(str(tmp_path)).W_enc, sae.W_enc)
    export_sae_lens(tmp_path)
    assert is_exported(tmp_path)
    assert torch.equal(load_sae(str(tmp_path)).W_enc, sae.W_enc)


# --------------------------------------------------------------------------- on a trained SAE

LAYER, SITE, HOOK = 1, "resid", "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def trained_runs(tiny_model, tiny_tokens, tmp_path_factory):
    """A gated and a baseline SAE trained on the tiny model's layer-1 resid, then exported."""
    from saerepro.activations import cache_activations, open_cache
    from saerepro.training import TrainConfig, train_sae

    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(1)
    tokens = rng.integers(4, tiny_model.cfg.d_vocab, size=(32, 16)).astype(np.int32)
    tokens[:, 0] = tiny_model.tokenizer.bos_token_id
    cache_activations(tiny_model, tokens, [(LAYER, SITE)], [root / "cache"], dtype="float32", progress=False)
    cache = open_cache(root / "cache")
    assert abs(cache.scale - 1.0) > 0.05  # a scale that matters
    runs = {}
    for arch, coef in (("gated", 1.0), ("baseline", 1.0)):
        cfg = TrainConfig(
            architecture=arch,
            coefficient=coef,
            d_sae=128,
            total_tokens=10 * cache.n_tokens,
            batch_size=96,
            lr=3e-3,
            lr_warmup_steps=5,
            shuffle_chunk_tokens=96,
            shuffle_buffer_tokens=cache.n_tokens,
            hook_name=HOOK,
            device="cpu",
            seed=0,
            checkpoint_every_steps=0,
        )
        train_sae(cfg, cache, root / arch, progress=False)
        export_sae_lens(root / arch)
        runs[arch] = root / arch
    return runs, cache.scale


@pytest.mark.parametrize("arch", ["gated", "baseline"])
def test_sae_lens_on_raw_activations_gives_our_l0_and_nmse(arch, trained_runs, tiny_model, tiny_tokens):
    from saerepro.evaluate import evaluate_sae
    from saerepro.metrics import nmse

    runs, scale = trained_runs
    ours = evaluate_sae(
        tiny_model,
        load_sae(str(runs[arch])),
        LAYER,
        SITE,
        scale,
        tiny_tokens,
        {"ce_clean": 1.0, "ce_zero": 2.0},
        batch_size=4,
        progress=False,
    )
    # plain sae-lens on the raw hook activations, BOS excluded as in our evaluation
    sae = SAE.load_from_disk(runs[arch])
    _, cache = tiny_model.run_with_cache(torch.as_tensor(tiny_tokens, dtype=torch.long), names_filter=HOOK)
    x = cache[HOOK][:, 1:].reshape(-1, sae.cfg.d_in).float()
    with torch.no_grad():
        codes = sae.encode(x)
        x_hat = sae.decode(codes)
    l0 = float((codes != 0).sum(dim=1).float().mean())
    assert 0 < ours["l0"] < sae.cfg.d_sae
    assert l0 == pytest.approx(ours["l0"], abs=1e-4)
    assert nmse(x.numpy(), x_hat.numpy()) == pytest.approx(ours["nmse"], rel=1e-4)
    # the unfolded weights on raw activations would be wrong: the export is what makes it right
    wrong = load_sae(str(runs[arch]))
    with torch.no_grad():
        wrong_hat = wrong.decode(wrong.encode(x))
    assert abs(nmse(x.numpy(), wrong_hat.numpy()) - ours["nmse"]) > 1e-3


def test_without_import_saerepro_sae_lens_names_the_architecture_and_cfg_json_says_what_to_do(tmp_path):
    """sae-lens 6 has no plugin discovery (no entry point, no hook): the error is sae-lens' own
    KeyError naming ``saerepro_<architecture>``; the exported cfg.json tells a reader what to import."""
    import subprocess
    import sys

    _random_run("gated", tmp_path)
    export_sae_lens(tmp_path)
    note = json.loads((tmp_path / "cfg.json").read_text())["metadata"][EXPORT_KEY]["load"]
    assert note.startswith("import saerepro")
    code = "import sys, sae_lens\nsae_lens.SAE.load_from_disk(sys.argv[1])\n"
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "KeyError: 'saerepro_gated'" in result.stderr
