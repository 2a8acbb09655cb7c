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


def test_hub_model_without_network_fails_fast_with_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    spec = ModelSpec(name="pythia-test", source="hub", location="EleutherAI/pythia-70m-deduped",
                     tl_name=None, n_layers=6, d_model=512, n_heads=8, d_head=64, max_context=2048)
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
