"""Shared fixtures. Everything is offline: the hub is never contacted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]

TINY_TEXT = (
    "The cat sat on the mat. The dog ran in the park. A bird sang in the tree. "
    "Paris is the capital of France. Berlin is the capital of Germany. "
    "Water boils at one hundred degrees. The sun rises in the east and sets in the west. "
) * 4


def build_tiny_tokenizer(folder: Path):
    """A small word-level tokenizer with BOS/EOS/PAD, saved as a HF fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<bos>", "<eos>"])
    tok.train_from_iterator([TINY_TEXT], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return fast


@pytest.fixture(scope="session")
def tiny_neox_dir(tmp_path_factory) -> Path:
    """A 2-layer GPT-NeoX in the Pythia configuration (parallel attention, rotary), saved as a
    local HF folder: exercises the Pythia loading path without any hub access."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    folder = tmp_path_factory.mktemp("tiny-pythia")
    tokenizer = build_tiny_tokenizer(folder)
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=128,
        rotary_pct=0.25,
        use_parallel_residual=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_spec(tiny_neox_dir):
    from saerepro.models import ModelSpec

    return ModelSpec(
        name="tiny-pythia",
        source="local",
        location=str(tiny_neox_dir),
        tl_name=None,
        n_layers=2,
        d_model=64,
        n_heads=4,
        d_head=16,
        max_context=128,
    )


@pytest.fixture(scope="session")
def tiny_model(tiny_spec):
    from saerepro.models import load_model

    return load_model(tiny_spec)


@pytest.fixture(scope="session")
def tiny_tokens(tiny_model):
    """[8, 16] token ids of the tiny model's vocabulary, BOS first."""
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = rng.integers(4, tiny_model.cfg.d_vocab, size=(8, 16)).astype(np.int32)
    tokens[:, 0] = tiny_model.tokenizer.bos_token_id
    return tokens
