"""Where every stage of the DAG reads and writes. One place, shared by Snakemake and tests.

Patterns use Snakemake's ``{wildcard}`` syntax; :func:`fill` formats them for one run.
Resources (weights, corpus, caches) live under ``resources_dir`` and are shared between
configs when their inputs agree; results live under the working directory's ``results/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .config import Config, SaeKey, format_coefficient


def source_sha256(path: str | Path) -> str:
    """SHA-256 of a local corpus: of a file's bytes; of a folder's files (every file below it, hidden
    ones too, in sorted order of relative path), each as its relative path, a NUL and its bytes."""
    path = Path(path).expanduser()
    digest = hashlib.sha256()
    if path.is_file():
        files = [(path.name, path)]
    else:
        files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())
    for rel, file in files:
        if not path.is_file():
            digest.update(rel.encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def corpus_name(cfg: Config) -> str:
    """The corpus' folder level in result paths (:attr:`saerepro.config.CorpusConfig.name`)."""
    return cfg.corpus.name


def corpus_tag(cfg: Config) -> str:
    """Names the corpus variant: every setting that changes the token arrays. A local file or
    folder adds the first 12 hex digits of its content's SHA-256 (:func:`source_sha256`), so that
    edited text is a new corpus (tokens, caches and every SAE downstream are rebuilt). Registry and
    Hub corpora keep the tags they always had (``wiki-offline-ctx128-n524288-e0.05``); a model that
    starts sequences without BOS (:attr:`saerepro.model_spec.ModelSpec.add_bos`) adds ``-nobos``."""
    source = cfg.corpus.name
    if cfg.corpus.is_local:
        source += f"-{source_sha256(cfg.corpus.source)[:12]}"
    # a model without BOS gets other rows (no prefix): its own caches
    bos = "" if cfg.spec.add_bos else "-nobos"
    return f"{source}-ctx{cfg.corpus.context_size}-n{cfg.corpus.train_tokens}-e{cfg.corpus.eval_fraction:g}{bos}"


def model_dir(cfg: Config) -> str:
    return f"{cfg.resources_dir}/models/{cfg.model}"


def corpus_dir(cfg: Config) -> str:
    return f"{cfg.resources_dir}/corpus/{cfg.model}/{corpus_tag(cfg)}"


def cache_root(cfg: Config) -> str:
    return f"{cfg.resources_dir}/cache/{cfg.model}/{corpus_tag(cfg)}-{cfg.cache.dtype}"


def cache_dir(cfg: Config, layer: int | str, site: str) -> str:
    return f"{cache_root(cfg)}/L{layer}/{site}"


RESULTS = "results"
#: {corpus}: :func:`corpus_name`, so SAEs of two corpora of one model never share a folder.
HOOK_DIR = RESULTS + "/{model}/{corpus}/L{layer}/{site}"
REFERENCE_CE = HOOK_DIR + "/reference_ce.json"
CLEAN_REFERENCE = RESULTS + "/{model}/{corpus}/clean_reference.pt"
RUN_DIR = HOOK_DIR + "/{architecture}/c{coefficient}/s{seed}"
TRAIN_INFO = RUN_DIR + "/train_info.json"
PROVENANCE = RUN_DIR + "/provenance.json"
METRICS = RUN_DIR + "/metrics.json"
#: Pilot mode (saerepro.pilot): the chosen grid of one (layer, site, architecture), and its probes.
PILOT = HOOK_DIR + "/{architecture}/pilot.json"
PILOT_PROBE_DIR = HOOK_DIR + "/{architecture}/pilot_probes/c{coefficient}"
TABLES = RESULTS + "/tables"
METRICS_TABLE = TABLES + "/metrics.csv"
FIGURES = "figures"


def fill(pattern: str, run: SaeKey) -> str:
    return pattern.format(
        model=run.model,
        corpus=run.corpus,
        layer=run.layer,
        site=run.site,
        architecture=run.architecture,
        coefficient=format_coefficient(run.coefficient),
        seed=run.seed,
    )
