"""Where every stage of the DAG reads and writes. One place, shared by Snakemake and tests.

Patterns use Snakemake's ``{wildcard}`` syntax; :func:`fill` formats them for one run.
Resources (weights, corpus, caches) live under ``resources_dir`` and are shared between
configs when their inputs agree; results live under the working directory's ``results/``.
"""

from __future__ import annotations

import re

from .config import Config, Run, format_coefficient


def corpus_tag(cfg: Config) -> str:
    """Names the corpus variant: every setting that changes the token arrays."""
    source = cfg.corpus.source
    # Only when set: the tags of existing offline corpora stay what they were.
    if cfg.corpus.dataset_config is not None:
        source += f"-{cfg.corpus.dataset_config}"
    if cfg.corpus.split != "train":
        source += f"-{cfg.corpus.split}"
    source = re.sub(r"[^A-Za-z0-9]+", "-", source).strip("-")
    return f"{source}-ctx{cfg.corpus.context_size}-n{cfg.corpus.train_tokens}-e{cfg.corpus.eval_fraction:g}"


def model_dir(cfg: Config) -> str:
    return f"{cfg.resources_dir}/models/{cfg.model}"


def corpus_dir(cfg: Config) -> str:
    return f"{cfg.resources_dir}/corpus/{cfg.model}/{corpus_tag(cfg)}"


def cache_root(cfg: Config) -> str:
    return f"{cfg.resources_dir}/cache/{cfg.model}/{corpus_tag(cfg)}-{cfg.cache.dtype}"


def cache_dir(cfg: Config, layer: int | str, site: str) -> str:
    return f"{cache_root(cfg)}/L{layer}/{site}"


RESULTS = "results"
HOOK_DIR = RESULTS + "/{model}/L{layer}/{site}"
REFERENCE_CE = HOOK_DIR + "/reference_ce.json"
CLEAN_REFERENCE = RESULTS + "/{model}/clean_reference.pt"
RUN_DIR = HOOK_DIR + "/{architecture}/c{coefficient}/s{seed}"
TRAIN_INFO = RUN_DIR + "/train_info.json"
PROVENANCE = RUN_DIR + "/provenance.json"
METRICS = RUN_DIR + "/metrics.json"
TABLES = RESULTS + "/tables"
METRICS_TABLE = TABLES + "/metrics.csv"
FIGURES = "figures"


def fill(pattern: str, run: Run) -> str:
    return pattern.format(
        model=run.model,
        layer=run.layer,
        site=run.site,
        architecture=run.architecture,
        coefficient=format_coefficient(run.coefficient),
        seed=run.seed,
    )
