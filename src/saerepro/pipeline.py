"""The DAG's stages as plain functions of a :class:`~saerepro.config.Config` and paths.

``workflow/scripts/*.py`` only unpack Snakemake's ``snakemake`` object and call these, so every
stage runs and is tested without Snakemake.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from . import paths
from .config import Config
from .io import atomic_write_json, sha256_file

log = logging.getLogger("saerepro")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device is 'cuda' but torch sees no GPU; use device: auto or cpu")
    return device


def prepare_model(cfg: Config, marker: str | Path) -> dict:
    """Make the model's weights loadable offline; write ``marker`` (JSON) when done."""
    from .models import prepare_gguf_model, weights_folder

    spec = cfg.spec
    start = time.time()
    if spec.source == "gguf_package":
        folder = prepare_gguf_model(paths.model_dir(cfg), gguf_dir=Path(cfg.resources_dir) / "gguf")
    else:
        folder = weights_folder(spec, cfg.resources_dir)  # downloads hub models, fails fast offline
    info = {
        "model": spec.name,
        "source": spec.source,
        "folder": str(folder),
        "weights_sha256": {p.name: sha256_file(p) for p in sorted(Path(folder).glob("*.safetensors"))},
        "seconds": round(time.time() - start, 1),
    }
    atomic_write_json(marker, info)
    return info


def load_documents(cfg: Config):
    from .corpus import fetch_wiki_wheel, hf_documents, wiki_documents

    if cfg.corpus.source == "wiki-offline":
        return wiki_documents(fetch_wiki_wheel(Path(cfg.resources_dir) / "corpus"))
    return list(hf_documents(cfg.corpus.source, text_field=cfg.corpus.text_field,
                             max_documents=None))


def prepare_corpus(cfg: Config, out_dir: str | Path) -> dict:
    from .corpus import prepare_corpus as _prepare
    from .models import load_tokenizer

    tokenizer = load_tokenizer(cfg.spec, cfg.resources_dir)
    # Eval needs only reference.eval_tokens; keep 4x so a config can raise it without re-tokenising.
    meta = _prepare(tokenizer, out_dir, cfg.corpus.context_size, load_documents(cfg),
                    eval_fraction=cfg.corpus.eval_fraction,
                    max_train_tokens=cfg.corpus.train_tokens,
                    max_eval_tokens=max(4 * cfg.reference.eval_tokens, 65536),
                    source=cfg.corpus.source)
    train_tokens = meta["splits"]["train"]["tokens"]
    if train_tokens < cfg.corpus.train_tokens * 0.99 - cfg.corpus.context_size:
        log.warning("corpus holds only %d training tokens, config asked for %d",
                    train_tokens, cfg.corpus.train_tokens)
    return meta


def cache_activations(cfg: Config, corpus: str | Path, out_dirs: dict[tuple[int, str], str]) -> list[dict]:
    """One LM pass over the training split, writing the cache of every configured hook point."""
    from .activations import cache_activations as _cache
    from .activations import check_free_space, estimate_cache_bytes
    from .models import load_model
    from .sites import site_dim

    spec = cfg.spec
    tokens = np.load(Path(corpus) / "train.npy", mmap_mode="r")
    n_tok = tokens.shape[0] * (tokens.shape[1] - 1)
    hook_points = list(out_dirs)
    dims = [site_dim(site, spec.d_model, spec.n_heads, spec.d_head) for _, site in hook_points]
    check_free_space(Path(next(iter(out_dirs.values()))).parent.parent,
                     estimate_cache_bytes(n_tok, dims, cfg.cache.dtype))
    corpus_meta = json.loads((Path(corpus) / "meta.json").read_text())
    model = load_model(spec, cfg.resources_dir, resolve_device(cfg.device))
    hashes = {"train_tokens_sha256": corpus_meta["splits"]["train"]["sha256"],
              "model": spec.name, "model_source": spec.location}
    start = time.time()
    metas = _cache(model, np.asarray(tokens), hook_points, [out_dirs[h] for h in hook_points],
                   batch_size=cfg.cache.batch_size, dtype=cfg.cache.dtype,
                   input_hashes=hashes, model_name=spec.name)
    seconds = time.time() - start
    log.info("cached %d tokens x %d hook points in %.1f s (%.0f tokens/s)",
             n_tok, len(hook_points), seconds, n_tok / seconds)
    return metas


def reference_ce(cfg: Config, corpus: str | Path, out_paths: dict[tuple[int, str], str]) -> dict:
    """Clean and zero-ablation CE on the fixed eval tokens, one JSON per hook point."""
    from .lm import eval_token_subset
    from .lm import reference_ce as _reference
    from .models import load_model

    model = load_model(cfg.spec, cfg.resources_dir, resolve_device(cfg.device))
    eval_tokens = eval_token_subset(np.load(Path(corpus) / "eval.npy"), cfg.reference.eval_tokens)
    start = time.time()
    result = _reference(model, eval_tokens, list(out_paths), batch_size=cfg.reference.batch_size)
    seconds = time.time() - start
    for (layer, site), path in out_paths.items():
        atomic_write_json(path, {
            "model": cfg.model, "layer": layer, "site": site,
            "ce_clean": result["ce_clean"], "ce_clean_se": result["ce_clean_se"],
            **result["zero"][(layer, site)],
            "n_tokens": result["n_tokens"], "n_sequences": int(len(eval_tokens)),
            "eval_tokens_sha256": _array_sha256(eval_tokens),
            "seconds_all_hook_points": round(seconds, 1),
        })
    return result


def _array_sha256(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
