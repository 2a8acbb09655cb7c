"""Model registry and loading: the Pythia (GPT-NeoX) path offline, and the hub's fast failure."""

from __future__ import annotations

import time

import pytest
import torch

from saerepro.models import MODEL_REGISTRY, HubUnreachableError, ModelSpec, get_spec, load_model


def test_registry_covers_the_paper_models_and_the_offline_default():
    assert {"gemma-3-270m", "pythia-2.8b", "gemma-7b", "gelu-1l"} <= set(MODEL_REGISTRY)
    assert get_spec("gemma-3-270m").source == "gguf_package"
    assert get_spec("pythia-2.8b").location.startswith("EleutherAI/pythia-2.8b")


def test_unknown_model_lists_registered_names():
    with pytest.raises(ValueError, match="gemma-3-270m"):
        get_spec("llama-9000")


def test_local_gpt_neox_loads_into_transformer_lens_with_identical_logits(tiny_neox_dir, tiny_spec, tiny_tokens):
    from transformers import AutoModelForCausalLM

    hooked = load_model(tiny_spec)
    hf = AutoModelForCausalLM.from_pretrained(tiny_neox_dir).eval()
    tokens = torch.as_tensor(tiny_tokens, dtype=torch.long)
    with torch.no_grad():
        ours = hooked(tokens)
        theirs = hf(tokens).logits
    assert hooked.cfg.n_layers == 2 and hooked.cfg.d_model == 64
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()


def _same_model(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_pipeline_models_load_without_a_tokenizer_and_with_the_same_weights(tiny_spec, tiny_tokens):
    """The pipeline's jobs feed token ids, so they skip the tokenizer (two loads of it, ~9 s for
    Gemma); the model itself must be the same one users get from ``load_lm``."""
    with_tok = load_model(tiny_spec)
    without = load_model(tiny_spec, tokenizer=False)
    assert with_tok.tokenizer is not None and without.tokenizer is None
    assert _same_model(with_tok, without)
    tokens = torch.as_tensor(tiny_tokens, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(with_tok(tokens), without(tokens))


def test_hub_model_without_network_fails_fast_with_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    spec = ModelSpec(
        name="pythia-test",
        source="hub",
        location="EleutherAI/pythia-70m-deduped",
        tl_name=None,
        n_layers=6,
        d_model=512,
        n_heads=8,
        d_head=64,
        max_context=2048,
    )
    start = time.time()
    with pytest.raises(HubUnreachableError) as info:
        load_model(spec)
    assert time.time() - start < 30
    message = str(info.value)
    assert "EleutherAI/pythia-70m-deduped" in message and "Hugging Face Hub" in message
    assert message.count(".") <= 2 and "\n" not in message


def test_hub_unreachable_without_offline_flag_still_fails_fast(monkeypatch, tmp_path):
    """No HF_HUB_OFFLINE set: the socket probe, not a retry loop, decides."""
    import saerepro.models as models

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(HubUnreachableError, match="google/gemma-7b"):
        models.resolve_hub_snapshot("google/gemma-7b")


def test_missing_prepared_weights_point_to_the_rule(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_model"):
        load_model(get_spec("gemma-3-270m"), resources=tmp_path)


@pytest.fixture(scope="module")
def tiny_tl_checkpoint(tmp_path_factory):
    """A one-layer GELU model saved the way Neel Nanda's toy models (GELU-1L) are published: a
    TransformerLens-layout config.json plus model_final.pth, the tokenizer in another folder."""
    import json

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from tests.conftest import build_tiny_tokenizer

    root = tmp_path_factory.mktemp("tiny-gelu-1l")
    tokenizer = build_tiny_tokenizer(root / "tokenizer")
    cfg_json = {
        "d_model": 32,
        "n_layers": 1,
        "d_mlp": 128,
        "d_head": 8,
        "n_heads": 4,
        "n_ctx": 64,
        "d_vocab": len(tokenizer),
        "act_fn": "gelu",
        "attn_only": False,
        "normalization": "LN",
        "shortformer_pos": False,
        "tokenizer_name": "unused",
    }
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(
        **{k: v for k, v in cfg_json.items() if k not in ("normalization", "shortformer_pos", "tokenizer_name")},
        normalization_type="LN",
    )
    model = HookedTransformer(cfg)
    weights = root / "weights"
    weights.mkdir()
    (weights / "config.json").write_text(json.dumps(cfg_json))
    torch.save(model.state_dict(), weights / "model_final.pth")
    return weights, root / "tokenizer", model


def test_transformer_lens_checkpoint_loads_offline_with_identical_logits(tiny_tl_checkpoint):
    from saerepro.sites import hook_name, site_dim

    weights, tokenizer, original = tiny_tl_checkpoint
    spec = ModelSpec(
        name="tiny-gelu-1l",
        source="local",
        location=str(weights),
        tl_name="gelu-1l",
        n_layers=1,
        d_model=32,
        n_heads=4,
        d_head=8,
        max_context=64,
        d_mlp=128,
        weights_format="transformer_lens",
        tokenizer=str(tokenizer),
    )
    model = load_model(spec)
    tokens = torch.tensor([[model.tokenizer.bos_token_id, 5, 6, 7, 8, 9]])
    assert _same_model(model, load_model(spec, tokenizer=False))
    with torch.no_grad():
        ours, cache = model.run_with_cache(tokens, names_filter=[hook_name(0, "mlp_post")])
        theirs = original(tokens)
    assert torch.allclose(ours, theirs, atol=1e-5)
    # The GELU-1L site of the paper's ablations: the MLP neurons, d_mlp wide.
    assert cache[hook_name(0, "mlp_post")].shape[-1] == site_dim("mlp_post", 32, 4, 8, spec.d_mlp) == 128


def test_gelu_1l_hub_checkpoint_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    spec = get_spec("gelu-1l")
    assert spec.weights_format == "transformer_lens" and spec.d_mlp == 2048
    start = time.time()
    with pytest.raises(HubUnreachableError) as info:
        load_model(spec)
    assert time.time() - start < 30
    assert "NeelNanda/" in str(info.value) and "\n" not in str(info.value)


def test_registry_shapes_give_the_paper_widths():
    from saerepro.sites import site_dim

    pythia, gemma = get_spec("pythia-2.8b"), get_spec("gemma-7b")
    assert site_dim("attn", pythia.d_model, pythia.n_heads, pythia.d_head) == 2560
    assert site_dim("attn", gemma.d_model, gemma.n_heads, gemma.d_head) == 4096
    assert site_dim("mlp_post", 512, 8, 64, get_spec("gelu-1l").d_mlp) == 2048
