"""A small Python API: load trained runs, evaluate many SAEs with one LM, train on activations.

Usable without Snakemake. Every function sets torch's threads (``threads``, default: all cores),
and the LM is loaded once for any number of SAEs::

    import numpy as np
    from saerepro import api

    runs = [api.load_run(d) for d in api.find_runs("results/gemma-3-270m/wiki-offline/L6/resid")]
    lm = api.load_lm("gemma-3-270m")
    tokens = api.eval_tokens("resources/corpus/gemma-3-270m/wiki-offline-ctx128-n524288-e0.05", 4096)
    table, per_token = api.evaluate(runs, tokens, lm=lm)
    print(table[["architecture", "coefficient", "l0", "loss_recovered", "loss_recovered_se"]])
    per_token[0]["ce_sae"]   # per-token CE of the first SAE, sequences in order

:func:`evaluate` computes the clean pass and the zero-ablation CEs once per hook point and gives
every SAE the paired, sequence-aware SEs of the DAG's ``evaluate`` rule, plus the per-token values
(CE, KL, L0) for statistics of your own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .allocator import keep_freed_memory
from .models import get_spec, load_model
from .sites import SITES, hook_name


def set_threads(threads: int | None = None) -> int:
    """torch's intra-op threads: ``threads``, else every core this process may use. Returns it."""
    import torch

    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, int(threads))
    torch.set_num_threads(n)
    return n


@dataclass
class LoadedRun:
    """One trained SAE with what the run wrote beside it."""

    path: Path
    """The run folder (cfg.json + sae_weights.safetensors: the raw-activation sae-lens export;
    the ``*.normalised.*`` pair: the SAE as trained; train_info.json, provenance.json, ...)."""
    sae: Any
    """The sae-lens SAE as trained, on normalised activations (inputs × :attr:`scale`), as every
    saerepro metric uses it; ``sae_lens.SAE.load_from_disk(path)`` gives the raw-activation one."""
    train_info: dict = field(default_factory=dict)
    """train_info.json: tokens trained, epochs, losses, the TrainConfig, activation_scale, ..."""
    metrics: dict | None = None
    """metrics.json if the run was evaluated by the DAG, else None."""
    provenance: dict = field(default_factory=dict)
    """provenance.json: config hash, git commit, package versions, CPU."""

    @property
    def hook_name(self) -> str:
        return str(self.train_info.get("hook_name") or self.sae.cfg.metadata.hook_name)

    @property
    def layer(self) -> int:
        return int(self.hook_name.split(".")[1])

    @property
    def site(self) -> str:
        for site in SITES:
            if hook_name(self.layer, site) == self.hook_name:
                return site
        raise ValueError(f"{self.path}: hook {self.hook_name} is not one of the sites {SITES}")

    @property
    def scale(self) -> float:
        """The factor the SAE's inputs were multiplied by in training (E‖x‖² = d_in)."""
        return float(self.train_info["activation_scale"])


def find_runs(root: str | Path) -> list[Path]:
    """Every trained run folder (one holding train_info.json) under ``root``, sorted."""
    return sorted(p.parent for p in Path(root).rglob("train_info.json"))


def load_run(path: str | Path, device: str = "cpu") -> LoadedRun:
    """The SAE of a run folder and its train_info, metrics (if any) and provenance."""
    from .sae import load_sae

    path = Path(path)
    if not (path / "train_info.json").exists():
        raise FileNotFoundError(f"{path} holds no train_info.json: not a finished saerepro run")

    def read(name: str) -> dict | None:
        f = path / name
        return json.loads(f.read_text()) if f.exists() else None

    return LoadedRun(
        path=path,
        sae=load_sae(str(path), device=device),
        train_info=read("train_info.json") or {},
        metrics=read("metrics.json"),
        provenance=read("provenance.json") or {},
    )


def load_lm(
    model: str = "gemma-3-270m",
    resources_dir: str | Path = "resources",
    device: str = "cpu",
    threads: int | None = None,
):
    """The HookedTransformer of ``model``: a registry name, or a model folder or ``.gguf`` path as a
    config's ``model:`` takes it (prepared under ``resources_dir``, e.g. by the DAG)."""

    set_threads(threads)
    return load_model(get_spec(model), resources_dir, device)


def eval_tokens(corpus_dir: str | Path, n_tokens: int) -> np.ndarray:
    """The held-out sequences the DAG evaluates on: the first ``n_tokens // ctx`` of eval.npy."""
    from .lm import eval_token_subset

    return eval_token_subset(np.load(Path(corpus_dir) / "eval.npy"), n_tokens)


def evaluate(
    runs: Sequence[LoadedRun | str | Path],
    tokens: np.ndarray,
    *,
    lm,
    batch_size: int = 8,
    threads: int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, list[dict]]:
    """Metrics of every SAE on ``tokens`` [n_seq, ctx] with one LM; returns (table, per_token).

    The clean pass and both zero-ablation CEs are computed once per hook point. ``table`` has one
    row per SAE (path, architecture, coefficient, layer, site and the metrics.csv metrics with
    their paired, sequence-aware SEs); ``per_token[i]`` holds SAE i's per-token ``ce_sae``, ``kl``
    and ``l0`` [n_seq · (ctx − 1)] and the clean and zero-ablation CEs they pair with.
    """
    from .evaluate import clean_reference, evaluate_sae, hook_key, paired_metrics, zero_ablation_ce
    from .metrics import sequence_mean_and_se

    set_threads(threads)
    keep_freed_memory()  # as the DAG's jobs: the unembed's large temporaries are not re-faulted per batch
    loaded = [r if isinstance(r, LoadedRun) else load_run(r) for r in runs]
    layers = sorted({r.layer for r in loaded})
    clean = clean_reference(lm, tokens, layers, batch_size=batch_size, progress=progress)
    clean["zero_ce"], clean["zero_bos_ce"] = {}, {}
    n_pred = tokens.shape[1] - 1
    for layer, site in sorted({(r.layer, r.site) for r in loaded}):
        for name, bos in (("zero_ce", False), ("zero_bos_ce", True)):
            clean[name][hook_key(layer, site)] = zero_ablation_ce(
                lm, tokens, clean, layer, site, zero_bos=bos, batch_size=batch_size, progress=progress
            )
    ce_clean = sequence_mean_and_se(clean["ce"].reshape(-1, n_pred))[0]
    rows, per_token = [], []
    for run in loaded:
        key = hook_key(run.layer, run.site)
        reference = {"ce_clean": ce_clean, "ce_zero": float(clean["zero_ce"][key].double().mean())}
        metrics, tok = evaluate_sae(
            lm,
            run.sae,
            run.layer,
            run.site,
            run.scale,
            tokens,
            reference,
            batch_size=batch_size,
            progress=progress,
            clean=clean,
            per_token=True,
        )
        metrics.update(paired_metrics(tok, clean, run.layer, run.site, n_pred))
        rows.append(
            {
                "path": str(run.path),
                "architecture": run.train_info.get("architecture"),
                "coefficient": run.train_info.get("coefficient"),
                "layer": run.layer,
                "site": run.site,
                **metrics,
            }
        )
        per_token.append(
            {
                **tok,
                "ce_clean": clean["ce"],
                "ce_zero": clean["zero_ce"][key],
                "ce_zero_bos_zeroed": clean["zero_bos_ce"][key],
            }
        )
    return pd.DataFrame(rows), per_token


def train(
    architecture: str,
    coefficient: float,
    activations,
    out_dir: str | Path,
    *,
    threads: int | None = None,
    progress: bool = True,
    **settings,
) -> LoadedRun:
    """Train one SAE on ``activations`` (a cache folder, an ActivationCache, or an on-the-fly source)
    with :class:`saerepro.training.TrainConfig` ``settings`` (e.g. total_tokens, batch_size, lr);
    returns the loaded run."""
    from .sae.export import export_sae_lens
    from .training import TrainConfig, train_sae

    set_threads(threads)
    train_sae(
        TrainConfig.from_dict({"architecture": architecture, "coefficient": coefficient, **settings}),
        activations,
        out_dir,
        progress=progress,
    )
    export_sae_lens(out_dir)  # cfg.json works on raw activations in plain sae-lens
    return load_run(out_dir)


__all__ = ["LoadedRun", "eval_tokens", "evaluate", "find_runs", "load_lm", "load_run", "set_threads", "train"]
