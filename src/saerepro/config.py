"""Typed, validated configuration of one saerepro sweep.

:func:`load_config` first validates the raw mapping against
``workflow/schemas/config.schema.yaml`` (keys, types, ranges; defaults filled in), then builds
the dataclasses below, whose ``__post_init__`` checks what needs the model registry: the model
exists, layers are in range, the context fits the model, each architecture gets the kind of
sparsity grid it takes. Every failure is one :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import itertools
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .architectures import (
    ARCHITECTURES,
    DERIVED_ARCHITECTURES,
    K_ARCHITECTURES,
    RESAMPLE_ARCHITECTURES,
    default_expansion,
)
from .corpus import LOCAL_DATA_BUILDERS
from .model_spec import ModelSpec
from .models import get_spec
from .own_model import absolute_model_path, is_model_path
from .paper import round_significant
from .sites import ALL_SITES

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def pilot_key(architecture: str, layer: int | str, site: str) -> str:
    """Key of :attr:`Config.pilot_grids`: one piloted (architecture, layer, site)."""
    return f"{architecture}/L{layer}/{site}"


def log_spaced_probes(grid: Sequence[float], factor: float, n: int) -> list[float]:
    """``n`` λs log-spaced from ``min(grid) / factor`` to ``max(grid) * factor`` (rounded): the
    probes a pilot trains (:mod:`saerepro.pilot`) around a configured grid."""
    lo, hi = min(grid) / factor, max(grid) * factor
    return [round_significant(float(v)) for v in np.exp(np.linspace(math.log(lo), math.log(hi), n))]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


# --------------------------------------------------------------------------- schema


def _load_schema() -> dict:
    """The config schema, its architecture names filled in from :data:`saerepro.architectures.SPECS`."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    schema["properties"]["architectures"]["propertyNames"]["enum"] = list(ARCHITECTURES)
    return schema


def _fill_defaults(instance: Any, schema: dict) -> None:
    """Insert schema ``default`` values for absent keys, recursively (as Snakemake does)."""
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra)


def _describe(error, schema: dict) -> str:
    """One sentence naming the key and, where the schema lists them, the allowed values."""
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    validator = error.validator
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        where = "" if path == "<top level>" else f" under '{path}'"
        return f"unknown key(s) {', '.join(repr(u) for u in unexpected)}{where}; allowed keys: {', '.join(allowed)}"
    if validator == "enum":
        plugin_hint = "; an architecture of your own: name its file under 'plugins' (docs/contributing.md)"
        return (
            f"config key '{path}': {error.instance!r} is not allowed; "
            f"allowed values: {', '.join(map(str, error.validator_value))}"
            + (plugin_hint if path == "architectures" else "")
        )
    if validator == "propertyNames":
        allowed = error.schema.get("propertyNames", {}).get("enum", [])
        return f"config key '{path}': unknown name {error.instance!r}; allowed values: {', '.join(allowed)}"
    if validator == "type":
        return (
            f"config key '{path}': expected {error.validator_value}, "
            f"got {type(error.instance).__name__} {error.instance!r}"
        )
    if validator == "required":
        return f"config is missing required key {error.message.split()[0]} (at '{path}')"
    return f"config key '{path}': {error.message}"


def validate_against_schema(raw: dict) -> dict:
    """Validate a raw config mapping; return a copy with defaults filled in."""
    import jsonschema

    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping, got {type(raw).__name__}")
    schema = _load_schema()
    instance = copy.deepcopy(raw)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # jsonschema reports the error for a bad propertyName with the property as instance.
        best = errors[0]
        if best.validator == "propertyNames" or (best.parent is not None and best.parent.validator == "propertyNames"):
            best = best.parent or best
        raise ConfigError(_describe(best, schema))
    _fill_defaults(instance, schema)
    return instance


# --------------------------------------------------------------------------- plugins


def import_plugins(plugins: Any) -> None:
    """Import each of a config's ``plugins`` once: a Python file (absolute, or relative to the
    working directory) or an importable module name. A plugin defines an architecture in one file and
    registers it on import (:func:`saerepro.sae.register_architecture`; docs/contributing.md), so
    validation below knows its name. This is the one place config validation may load torch."""
    if plugins is None:
        return
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise ConfigError(f"config key 'plugins': expected a list of file paths or module names, got {plugins!r}")
    for plugin in plugins:
        path = Path(plugin).expanduser()
        try:
            if plugin.endswith(".py"):
                if not path.is_file():
                    raise ConfigError(
                        f"config key 'plugins': no file {str(path)!r} (a relative path is read from {Path.cwd()})"
                    )
                resolved = path.resolve()
                name = f"saerepro_plugin_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
                if name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(name, resolved)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(plugin)
        except ConfigError:
            raise
        except Exception as err:  # a plugin's own error, said with the key that named it
            raise ConfigError(
                f"config key 'plugins': importing {plugin!r} failed: {type(err).__name__}: {err}"
            ) from err


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class CorpusConfig:
    source: str = "wiki-offline"
    """``wiki-offline``, a Hugging Face dataset id (streamed), or a local copy of one."""
    dataset_config: str | None = None
    """The HF dataset's configuration name (``en`` for ``allenai/c4``), None for its default."""
    split: str = "train"
    """Split of the HF dataset the documents come from (both our splits are cut from it)."""
    text_field: str = "text"
    """Column holding the text in a HF dataset."""
    context_size: int = 128
    """Tokens per sequence, BOS included."""
    eval_fraction: float = 0.05
    """Fraction of documents held out for evaluation."""
    train_tokens: int = 600_000
    """Tokens kept in the training split (and cached, minus the BOS positions)."""

    def __post_init__(self) -> None:
        path = Path(self.source).expanduser()
        if _looks_like_path(self.source) and not path.exists():
            raise ConfigError(
                f"config key 'corpus.source': {self.source!r} looks like a file or folder but there is "
                f"none at {path.resolve()} (relative paths start at the working "
                "directory); a Hugging Face dataset id is owner/name, without a file extension"
            )
        if self.is_local and path.is_file() and path.suffix not in LOCAL_DATA_BUILDERS:
            raise ConfigError(
                f"config key 'corpus.source': {self.source!r} is a file of unknown type {path.suffix!r}; "
                f"allowed: {', '.join(LOCAL_DATA_BUILDERS)} files, or a folder of them"
            )
        if self.is_local and path.is_file():
            problem = _first_document_problem(path, self.text_field)
            if problem:
                raise ConfigError(f"config key 'corpus.source': {self.source!r} {problem}")

    @property
    def is_local(self) -> bool:
        """A file or folder on this machine (its content hash is part of the corpus tag)."""
        return self.source != "wiki-offline" and Path(self.source).expanduser().exists()

    @property
    def name(self) -> str:
        """Short filesystem-safe name of the corpus, a folder level of the result paths:
        ``wiki-offline``, a Hub id with its configuration (``allenai-c4-en``), or a local file or
        folder's own name (``mytext-jsonl``)."""
        source = Path(self.source).expanduser().resolve().name if self.is_local else self.source
        # Only when set: the names (and tags) of existing offline corpora stay what they were.
        if self.dataset_config is not None:
            source += f"-{self.dataset_config}"
        if self.split != "train":
            source += f"-{self.split}"
        return re.sub(r"[^A-Za-z0-9]+", "-", source).strip("-")


#: A source starting like this, or ending in ".<letters>", is taken for a path, not a Hub id.
_PATH_PREFIXES = ("/", "./", "../", "~")


def _first_document_problem(path: Path, text_field: str) -> str | None:
    """What is wrong with a local text file before any job reads it: empty, no text, or (JSON lines,
    CSV) no ``text_field``; None when its first document looks usable. Reads a few lines only."""
    import csv
    import json

    if path.stat().st_size == 0:
        return "is empty: there is no text to train or evaluate on"
    if path.suffix == ".txt":
        with path.open(encoding="utf-8", errors="replace") as fh:
            if not any(line.strip() for _, line in zip(range(10_000), fh, strict=False)):
                return "holds no text in its first 10,000 lines (one document per line)"
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = next((line for line in fh if line.strip()), "")
        try:
            row = json.loads(first)
        except json.JSONDecodeError as err:
            return f"is not JSON lines: its first line does not parse ({err})"
        if not isinstance(row, dict) or text_field not in row:
            keys = ", ".join(sorted(row)) if isinstance(row, dict) else type(row).__name__
            return f"has no field {text_field!r} (config key corpus.text_field) in its first record; it has: {keys}"
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            header = next(csv.reader(fh), [])
        if text_field not in header:
            return f"has no column {text_field!r} (config key corpus.text_field); columns: {', '.join(header)}"
    return None


def _looks_like_path(source: str) -> bool:
    """A local path rather than a Hub dataset id: starts like a path or ends in a file extension."""
    if source == "wiki-offline":
        return False
    suffix = Path(source).suffix
    return source.startswith(_PATH_PREFIXES) or (1 < len(suffix) <= 9 and suffix[1:].isalpha())


@dataclass(frozen=True)
class CacheConfig:
    batch_size: int = 16
    """Sequences per LM forward while caching."""
    dtype: str = "float16"
    """Stored dtype of the normalised activations (see saerepro.activations)."""


@dataclass(frozen=True)
class ReferenceConfig:
    eval_tokens: int = 4096
    """Held-out tokens every CE metric uses; rounded down to whole sequences."""
    site_eval_tokens: dict[str, int] = field(default_factory=dict)
    """Per-site override of ``eval_tokens`` (e.g. ``{attn: 16384}``): each hook point is evaluated
    on the first ``site_eval_tokens[site]`` held-out tokens, a prefix of the largest set, so the
    clean pass runs once. Spend eval tokens where the eval SE, not the seed, dominates a point's
    variance (docs/metrics.md)."""
    batch_size: int = 8
    """Sequences per LM forward during evaluation."""
    precision: str = "float32"
    """Unembed precision of every spliced pass (SAE and zero-ablation): ``bfloat16`` screens the
    vocabulary with a bf16 matmul centred on the clean log-sum-exp and recomputes the tokens that
    carry the log-sum-exp in float32 (``saerepro.evaluate.LowPrecisionUnembed``); all else stays
    float32. ``benchmarks/bench_eval_precision.py`` measures its speed and what it moves."""

    def tokens_for(self, site: str) -> int:
        """Eval tokens of ``site``'s hook points (before rounding down to whole sequences)."""
        return self.site_eval_tokens.get(site, self.eval_tokens)

    def max_tokens(self, sites) -> int:
        """Eval tokens of the largest of ``sites``' sets: what the clean pass covers."""
        return max(self.tokens_for(site) for site in sites)


@dataclass(frozen=True)
class TrainDefaults:
    tokens: int = 500_000
    """Training tokens per SAE."""
    site_tokens: dict[str, int] = field(default_factory=dict)
    """Per-site override of ``tokens`` (e.g. ``{attn: 524288}``, where the frontier has settled at
    a smaller budget); an architecture's own ``tokens`` overrides both."""
    batch_size: int = 1024
    """Activations per optimiser step."""
    lr: float = 3e-3
    """Peak Adam learning rate."""
    warmup_steps: int = 50
    """Linear warm-up steps."""
    adam_beta1: float = 0.0
    """The paper's Adam(0, 0.999)."""
    adam_beta2: float = 0.999
    """The paper's Adam(0, 0.999)."""
    checkpoint_every_steps: int = 100
    """Steps between resumable checkpoints."""
    b_dec_init: str = "geometric_median"
    """Initial decoder bias: zeros, mean or geometric_median of a sample of the cache. With
    Adam's per-step moves of ~lr, a zero-initialised b_dec cannot reach a data mean with
    coordinates of order 10 in a few hundred steps (see docs/results.md)."""
    autocast_bf16: bool = False
    """bf16 autocast for SAE matmuls."""
    compile: bool = False
    """``torch.compile`` each SAE's loss (saerepro.training.TrainConfig.compile): faster steps,
    not bit-identical to uncompiled ones."""
    sparse_step: bool = False
    """Sparse training steps (saerepro.training.TrainConfig.sparse_step): the same loss and
    gradients on the active pairs only; faster at low L0, not bit-identical to dense steps."""
    resample_rewarm_shape: str = "linear"
    """LR re-warm-up after each dead-latent resample (architectures with ``resample``): ``linear``
    or ``cosine`` (saerepro.training.schedule.resample_rewarm_factor)."""
    resample_rewarm_start_factor: float = 0.0
    """LR right after a resample as a fraction of the scheduled LR, in [0, 1). The paper's
    re-warm-up (App. D.1.1: "reducing learning rate to 0.1x the ordinary value, and, increasing it
    with a cosine schedule back to the ordinary value over the next 1000 training steps"):
    ``cosine``, 0.1, ``resample_rewarm_steps: 1000``. The default (linear from 0 over
    ``warmup_steps``) is the suite's original behaviour."""
    resample_rewarm_steps: int | None = None
    """Length of the re-warm-up in steps (None: ``warmup_steps``; 0: none)."""

    def __post_init__(self) -> None:
        if self.resample_rewarm_shape not in RESAMPLE_REWARM_SHAPES:
            raise ConfigError(
                f"config key 'train.resample_rewarm_shape': expected one of "
                f"{', '.join(RESAMPLE_REWARM_SHAPES)}, got {self.resample_rewarm_shape!r}"
            )
        start = self.resample_rewarm_start_factor
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 <= start < 1:
            raise ConfigError(
                f"config key 'train.resample_rewarm_start_factor': expected a number in [0, 1), got {start!r}"
            )
        steps = self.resample_rewarm_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
            raise ConfigError(
                f"config key 'train.resample_rewarm_steps': expected null or an integer >= 0, got {steps!r}"
            )

    def tokens_for(self, site: str) -> int:
        """Training tokens of an SAE at ``site`` (unless its architecture sets its own)."""
        return self.site_tokens.get(site, self.tokens)


RESAMPLE_REWARM_SHAPES = ("linear", "cosine")


ACTIVATION_MODES = ("cached", "on_the_fly")


@dataclass(frozen=True)
class ActivationsConfig:
    """Where training activations come from, how they are shuffled, and the LM's precision."""

    mode: str = "cached"
    """``cached``: one ``cache_activations`` job writes every hook point to disk, one ``train`` job
    per SAE reads it. ``on_the_fly``: one job per hook point runs the LM and trains every SAE of
    that hook point on the stream, nothing is cached (see :mod:`saerepro.streaming`)."""
    shuffle_buffer_tokens: int = 1_000_000
    """Activations shuffled together token-wise (the paper: 10^6), in both modes."""
    shuffle_chunk_tokens: int | None = None
    """Contiguous activations (in corpus order) that fill the buffer one at a time. None: 4096 when
    cached; one LM batch (``cache.batch_size`` sequences) when on_the_fly. Set it to the same value
    in both modes for the same data order."""
    norm_tokens: int = 1_000_000
    """on_the_fly: E‖x‖² (hence the normalisation scale) is estimated on the first this many training
    tokens, in corpus order. Cached mode uses every cached token; the two scales are identical when
    this is at least the training split."""
    match_cache_rounding: bool = False
    """on_the_fly: round every activation exactly as a float16 cache stores it (two roundings, see
    saerepro.activations) so training equals cached mode bit for bit; for tests. Off: one rounding
    to ``cache.dtype``."""
    lm_autocast_bf16: bool = False
    """bf16 autocast for every LM forward: caching, on-the-fly, reference CE, evaluation (weights
    stay in the model's dtype). Changes activations by ~1% relative; 2.6x faster on the
    development CPU (bf16 matrix units), slower on CPUs without them (benchmarks/bench_gpu.py)."""

    def __post_init__(self) -> None:
        if self.mode not in ACTIVATION_MODES:
            raise ConfigError(
                f"config key 'activations.mode': {self.mode!r} is not allowed; "
                f"allowed values: {', '.join(ACTIVATION_MODES)}"
            )
        for key in ("shuffle_buffer_tokens", "norm_tokens"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config key 'activations.{key}': expected an integer >= 1, got {value!r}")
        chunk = self.shuffle_chunk_tokens
        if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
            raise ConfigError(
                f"config key 'activations.shuffle_chunk_tokens': expected null or an integer >= 1, got {chunk!r}"
            )
        if self.match_cache_rounding and self.mode != "on_the_fly":
            raise ConfigError(
                "config key 'activations.match_cache_rounding': only meaningful with activations.mode: on_the_fly"
            )


@dataclass(frozen=True)
class ResampleConfig:
    """Dead-latent resampling (Bricken et al. 2023, "Towards Monosemanticity") of a baseline or
    gated-family SAE (saerepro.sae.RESAMPLE_ARCHITECTURES); the LR re-warm-up after each event is
    set by ``train.resample_rewarm_*``. Defaults are Bricken et al.'s: resample at steps
    25k, 50k, 75k and 100k, scoring 819,200 training activations."""

    every_steps: int = 25_000
    """Steps between resampling events."""
    max_count: int = 4
    """At most this many resampling events."""
    n_inputs: int = 819_200
    """Training activations scored (squared reconstruction loss) to pick the new directions."""

    def __post_init__(self) -> None:
        for name in ("every_steps", "max_count", "n_inputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"config key 'resample.{name}': expected an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class ArchitectureConfig:
    name: str
    """Architecture name (see ARCHITECTURES)."""
    grid: tuple[float, ...]
    """Sparsity coefficients (lambda), or k for TopK."""
    expansion: float
    """Width as a multiple of d_in (ignored when width is set)."""
    width: int | None = None
    """Absolute number of latents."""
    site_grids: dict[str, tuple[float, ...]] | None = None
    """Coefficients per site, replacing ``grid`` at those sites (None: ``grid`` everywhere)."""
    layer_grids: dict[int, dict[str, tuple[float, ...]]] | None = None
    """Coefficients per layer and site, replacing ``site_grids`` and ``grid`` at those hook points:
    the same λ gives another L0 at another layer (at layer 3 about twice layer 6's)."""
    widths: dict[str, int] | None = None
    """Absolute number of latents per site; overrides ``width`` and ``expansion`` at those sites."""
    resample: ResampleConfig | None = None
    """Dead-latent resampling (baseline and the gated family); None: no resampling."""
    sites: tuple[str, ...] | None = None
    """Restrict to these sites (None: all config sites)."""
    layers: tuple[int, ...] | None = None
    """Restrict to these layers (None: all config layers)."""
    lr: float | None = None
    """Learning-rate override."""
    adam_beta1: float | None = None
    """Adam β1 override (None: ``train.adam_beta1``, the paper's 0 for gated SAEs). TopK wants 0.9:
    with β1 = 0 at lr 0.003 some TopK SAEs diverge (docs/architectures.md)."""
    tokens: int | None = None
    """Training-token override."""
    bandwidth: float | None = None
    """jumprelu: STE kernel bandwidth ε (None: the trainer's default)."""
    init_threshold: float | None = None
    """jumprelu: initial threshold θ (None: the trainer's default)."""

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise ConfigError(
                f"config key 'architectures': unknown architecture {self.name!r}; "
                f"allowed values: {', '.join(ARCHITECTURES)}"
            )
        for key in ("bandwidth", "init_threshold"):
            if getattr(self, key) is not None and self.name != "jumprelu":
                raise ConfigError(
                    f"config key 'architectures.{self.name}.{key}': only jumprelu "
                    "takes it; allowed architectures: jumprelu"
                )
        # The trainer resamples these only (saerepro.training.TrainConfig.resample).
        if self.resample is not None and self.name not in RESAMPLE_ARCHITECTURES:
            raise ConfigError(
                f"config key 'architectures.{self.name}.resample': only {', '.join(RESAMPLE_ARCHITECTURES)} "
                "resample dead latents"
            )
        for key, grids in (("site_coefficients", self.site_grids), ("layer_coefficients", self.layer_grids)):
            if grids is not None and self.name in K_ARCHITECTURES:
                raise ConfigError(
                    f"config key 'architectures.{self.name}.{key}': {self.name} takes 'k', not coefficients"
                )
        for site in self.widths or {}:
            if site not in ALL_SITES:
                raise ConfigError(
                    f"config key 'architectures.{self.name}.widths': unknown site "
                    f"{site!r}; allowed values: {', '.join(ALL_SITES)}"
                )

    def training_settings(self) -> dict[str, Any]:
        """The architecture's own training settings this entry sets (jumprelu: ``bandwidth``,
        ``init_threshold``), named as the fields of its ``ArchTrainingConfig``, which checks them."""
        return {
            k: v for k, v in (("bandwidth", self.bandwidth), ("init_threshold", self.init_threshold)) if v is not None
        }

    def grid_at(self, site: str, layer: int | None = None) -> tuple[float, ...]:
        """The coefficients (or k) trained at ``site`` (of ``layer``, where it has its own)."""
        if layer is not None and self.layer_grids and site in self.layer_grids.get(layer, {}):
            return self.layer_grids[layer][site]
        if self.site_grids and site in self.site_grids:
            return self.site_grids[site]
        return self.grid

    def d_sae(self, d_in: int, site: str | None = None) -> int:
        """Latents at ``site``: its ``widths`` entry, else ``width``, else ``expansion`` × d_in."""
        if site is not None and self.widths and site in self.widths:
            return self.widths[site]
        return self.width if self.width is not None else int(round(self.expansion * d_in))


@dataclass(frozen=True)
class VerdictsConfig:
    """The pre-stated L0 range of the verdicts (:class:`saerepro.verdicts.VerdictRules`); analysis
    only, outside the config hash."""

    l0_range: tuple[float, float] = (10.0, 150.0)
    """(lo, hi) L0 range every claim is judged over, clipped to where both fits have SAEs."""
    site_l0_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    """(lo, hi) per site, replacing ``l0_range`` at those sites."""

    def __post_init__(self) -> None:
        ranges = {"l0_range": self.l0_range, **{f"site_l0_range.{s}": r for s, r in self.site_l0_range.items()}}
        for key, (lo, hi) in ranges.items():
            if not 0 < lo < hi:
                raise ConfigError(f"config key 'verdicts.{key}': need 0 < lo < hi, got [{lo}, {hi}]")


@dataclass(frozen=True)
class PilotConfig:
    """Pilot mode (:mod:`saerepro.pilot`): short probe runs over a wide λ range at each hook point
    choose the λ grid whose L0s span a target range, replacing ``coefficients``."""

    target_l0: tuple[float, float]
    """(lo, hi) L0 the chosen grid spans, log-spaced."""
    site_target_l0: dict[str, tuple[float, float]] | None = None
    """(lo, hi) per site, replacing ``target_l0`` at those sites."""
    n_coefficients: int = 4
    """Coefficients chosen per (layer, site, architecture)."""
    tokens: int = 100_000
    """Training tokens of each probe SAE."""
    n_probes: int = 7
    """Probe λs per (layer, site, architecture) when derived from the architecture's grid."""
    probe_factor: float = 10.0
    """Probes span min(grid) / factor .. max(grid) × factor of the architecture's coefficients."""
    probe_coefficients: dict[str, tuple[float, ...]] | None = None
    """Explicit probe λs per architecture (replaces the derived range for it)."""
    architectures: tuple[str, ...] | None = None
    """Architectures piloted (None: every configured one that takes coefficients and is not derived)."""
    l0_rows: int = 4096
    """Cached activation rows (seeded sample) each probe's L0 is measured on."""

    def target_at(self, site: str) -> tuple[float, float]:
        if self.site_target_l0 and site in self.site_target_l0:
            return self.site_target_l0[site]
        return self.target_l0


@dataclass(frozen=True)
class SaeKey:
    """One SAE to train: the key of a row of the results table."""

    model: str
    layer: int
    site: str
    architecture: str
    coefficient: float
    seed: int
    corpus: str = "wiki-offline"
    """:attr:`CorpusConfig.name` of the text it is trained and evaluated on."""

    @property
    def coefficient_str(self) -> str:
        return format_coefficient(self.coefficient)

    @property
    def run_dir(self) -> str:
        """Path fragment under results/ (mirrors the Snakemake wildcards)."""
        return (
            f"{self.model}/{self.corpus}/L{self.layer}/{self.site}/{self.architecture}/"
            f"c{self.coefficient_str}/s{self.seed}"
        )


def format_coefficient(value: float) -> str:
    """Canonical text of a coefficient for paths: 32, 0.25, 1e-05."""
    if float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class Config:
    model: str
    """Registered model name, or (as given) the path of a model folder or GGUF file, which
    validation replaces by the model's tag (:func:`saerepro.own_model.model_tag`)."""
    layers: tuple[int, ...]
    """Layers to train at."""
    sites: tuple[str, ...]
    """Sites to train at."""
    architectures: dict[str, ArchitectureConfig]
    """Architecture name -> its grid and width."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds."""
    headline_layer: int | None = None
    """Layer of the Fig 1 analogue (default: first layer)."""
    resources_dir: str = "resources"
    """Prepared weights, corpus and caches."""
    device: str = "auto"
    """auto, cpu or cuda."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """Corpus settings."""
    cache: CacheConfig = field(default_factory=CacheConfig)
    """Activation-cache settings."""
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    """Evaluation-token settings."""
    train: TrainDefaults = field(default_factory=TrainDefaults)
    """Training defaults."""
    allow_mixed_configs: bool = False
    """Let aggregate combine rows with different config hashes (saerepro.provenance)."""
    activations: ActivationsConfig = field(default_factory=ActivationsConfig)
    """Cached or on-the-fly activations, shuffling, LM precision."""
    model_path: str | None = None
    """Absolute path of a model given by path (``model`` then holds its tag); None for a name."""
    pilot: PilotConfig | None = None
    """Pilot mode (None: off): piloted architectures train the λ grids their pilots choose."""
    verdicts: VerdictsConfig = field(default_factory=VerdictsConfig)
    """The verdicts' pre-stated L0 range (analysis only)."""
    pilot_grids: dict[str, tuple[float, ...]] | None = None
    """Grids chosen by pilots so far, by :func:`pilot_key` (``saerepro.pilot.apply_pilot``)."""
    plugins: tuple[str, ...] = ()
    """Files or modules imported before validation, each registering an architecture
    (:func:`import_plugins`)."""

    def __post_init__(self) -> None:
        spec = self._resolve_model()
        self._check_against_model(spec)
        self._check_budgets()
        self._check_architectures()
        self._check_pilot()

    def _resolve_model(self) -> ModelSpec:
        """The model's spec; ``model`` becomes its name (a path's tag), ``model_path`` the path."""
        if self.model_path is None and is_model_path(self.model):
            object.__setattr__(self, "model_path", absolute_model_path(self.model))
        try:
            spec = get_spec(self.model_path or self.model)
        except ValueError as err:
            raise ConfigError(f"config key 'model': {err}") from None
        object.__setattr__(self, "model", spec.name)
        return spec

    def _check_against_model(self, spec: ModelSpec) -> None:
        """Layers, sites and context within what the model has."""
        shown = self.model_path or self.model
        for i, layer in enumerate(self.layers):
            if not 0 <= layer < spec.n_layers:
                raise ConfigError(
                    f"config key 'layers[{i}]': layer {layer} is out of range for "
                    f"{shown} (n_layers {spec.n_layers}); allowed values: 0..{spec.n_layers - 1}"
                )
        if self.headline_layer is not None and self.headline_layer not in self.layers:
            raise ConfigError(
                f"config key 'headline_layer': {self.headline_layer} is not one of "
                f"the configured layers {list(self.layers)}"
            )
        for site in self.sites:
            if site not in ALL_SITES:
                raise ConfigError(f"config key 'sites': unknown site {site!r}; allowed values: {', '.join(ALL_SITES)}")
            if site == "mlp_post" and spec.d_mlp is None:
                raise ConfigError(
                    f"config key 'sites': {self.model} has no known MLP width "
                    "(ModelSpec.d_mlp), so it has no 'mlp_post' site"
                )
        if self.corpus.context_size > spec.max_context:
            raise ConfigError(
                f"config key 'corpus.context_size': {self.corpus.context_size} exceeds "
                f"{self.model}'s context of {spec.max_context}"
            )

    def _check_budgets(self) -> None:
        """Eval and per-site token budgets: at least one sequence, at configured sites."""
        if self.reference.eval_tokens < self.corpus.context_size:
            raise ConfigError(
                f"config key 'reference.eval_tokens': {self.reference.eval_tokens} is "
                f"less than one sequence of corpus.context_size={self.corpus.context_size}"
            )
        for site in self.train.site_tokens:
            if site not in self.sites:
                raise ConfigError(
                    f"config key 'train.site_tokens': {site!r} is not one of the configured sites {list(self.sites)}"
                )
        for site, n_tokens in self.reference.site_eval_tokens.items():
            if site not in self.sites:
                raise ConfigError(
                    f"config key 'reference.site_eval_tokens': {site!r} is not one of the configured "
                    f"sites {list(self.sites)}"
                )
            if n_tokens < self.corpus.context_size:
                raise ConfigError(
                    f"config key 'reference.site_eval_tokens.{site}': {n_tokens} is less than one "
                    f"sequence of corpus.context_size={self.corpus.context_size}"
                )

    def _check_architectures(self) -> None:
        """Each architecture's sites, layers and per-site settings within the sweep; a derived
        architecture's coefficients among its parent's."""
        for name, arch in self.architectures.items():
            for site in arch.sites or ():
                if site not in self.sites:
                    raise ConfigError(
                        f"config key 'architectures.{name}.sites': {site!r} is not one "
                        f"of the configured sites {list(self.sites)}"
                    )
            for layer in arch.layers or ():
                if layer not in self.layers:
                    raise ConfigError(
                        f"config key 'architectures.{name}.layers': {layer} is not one "
                        f"of the configured layers {list(self.layers)}"
                    )
            for layer in arch.layer_grids or {}:
                if layer not in (arch.layers or self.layers):
                    raise ConfigError(
                        f"config key 'architectures.{name}.layer_coefficients.{layer}': {layer} is not one "
                        f"of the layers {name} trains at {list(arch.layers or self.layers)}"
                    )
            layer_sites = [(f"layer_coefficients.{lay}", g) for lay, g in (arch.layer_grids or {}).items()]
            for key, per_site in (("widths", arch.widths), ("site_coefficients", arch.site_grids), *layer_sites):
                for site in per_site or {}:
                    if site not in (arch.sites or self.sites):
                        raise ConfigError(
                            f"config key 'architectures.{name}.{key}.{site}': {site!r} is "
                            f"not one of the sites {name} trains at {list(arch.sites or self.sites)}"
                        )
            parent = DERIVED_ARCHITECTURES.get(name)
            if parent is not None and not self.piloted(parent):
                parent_cfg = self.architectures.get(parent)
                for layer, site in itertools.product(arch.layers or self.layers, arch.sites or self.sites):
                    if parent_cfg is None or not set(arch.grid_at(site, layer)) <= set(parent_cfg.grid_at(site, layer)):
                        key = "site_coefficients" if arch.site_grids and site in arch.site_grids else "coefficients"
                        raise ConfigError(
                            f"config key 'architectures.{name}.{key}': each must also "
                            f"be a coefficient of '{parent}' at {site}, whose trained SAEs it builds on"
                        )

    def _check_pilot(self) -> None:
        pilot = self.pilot
        if pilot is None:
            return
        if self.activations.mode == "on_the_fly":
            raise ConfigError("config key 'pilot': needs the activation cache; not with activations.mode: on_the_fly")
        for name in pilot.architectures or ():
            if name not in self.architectures:
                raise ConfigError(
                    f"config key 'pilot.architectures': {name!r} is not a configured architecture "
                    f"{list(self.architectures)}"
                )
            if name in K_ARCHITECTURES or name in DERIVED_ARCHITECTURES:
                raise ConfigError(
                    f"config key 'pilot.architectures': {name} cannot be piloted (k sets L0 directly; "
                    "a derived architecture follows its parent's grid)"
                )
        for name in pilot.probe_coefficients or {}:
            if not self.piloted(name):
                raise ConfigError(f"config key 'pilot.probe_coefficients.{name}': {name} is not piloted")
        for site in pilot.site_target_l0 or {}:
            if site not in self.sites:
                raise ConfigError(
                    f"config key 'pilot.site_target_l0.{site}': not one of the configured sites {list(self.sites)}"
                )
        for key, (lo, hi) in [("target_l0", pilot.target_l0)] + [
            (f"site_target_l0.{s}", t) for s, t in (pilot.site_target_l0 or {}).items()
        ]:
            if not 0 < lo <= hi:
                raise ConfigError(f"config key 'pilot.{key}': expected [lo, hi] with 0 < lo <= hi, got {[lo, hi]}")

    def piloted(self, name: str) -> bool:
        """Whether ``name``'s grid comes from pilots (pilot mode on, and ``name`` piloted)."""
        if self.pilot is None or name not in self.architectures:
            return False
        if self.pilot.architectures is not None:
            return name in self.pilot.architectures
        return name not in K_ARCHITECTURES and name not in DERIVED_ARCHITECTURES

    def pilot_points(self) -> list[tuple[str, int, str]]:
        """Every (architecture, layer, site) a pilot chooses the grid of (none without pilot mode)."""
        return [
            (name, layer, site)
            for name, arch in self.architectures.items()
            if self.piloted(name)
            for layer in arch.layers or self.layers
            for site in arch.sites or self.sites
        ]

    def probe_coefficients(self, name: str, site: str) -> list[float]:
        """The λs a pilot of ``name`` at ``site`` probes."""
        assert self.pilot is not None
        explicit = (self.pilot.probe_coefficients or {}).get(name)
        if explicit is not None:
            return sorted(explicit)
        return log_spaced_probes(self.architectures[name].grid_at(site), self.pilot.probe_factor, self.pilot.n_probes)

    def grid(self, name: str, layer: int, site: str) -> tuple[float, ...] | None:
        """The coefficients (or k) of ``name`` at (layer, site): the pilot's choice for a piloted
        architecture (its parent's for a derived one), None while that pilot has not run."""
        source = DERIVED_ARCHITECTURES.get(name, name)
        if self.piloted(source):
            return (self.pilot_grids or {}).get(pilot_key(source, layer, site))
        return self.architectures[name].grid_at(site, layer)

    @property
    def spec(self) -> ModelSpec:
        return get_spec(self.model_path or self.model)

    @property
    def headline(self) -> int:
        return self.headline_layer if self.headline_layer is not None else self.layers[0]

    def hook_points(self) -> list[tuple[int, str]]:
        """Every (layer, site) the sweep caches activations for."""
        return [(layer, site) for layer in self.layers for site in self.sites]

    def runs(self) -> list[SaeKey]:
        """Every SAE of the sweep, in a stable order (in pilot mode, those whose pilot has run)."""
        out = []
        for name, arch in self.architectures.items():
            for layer in arch.layers or self.layers:
                for site in arch.sites or self.sites:
                    for coef in self.grid(name, layer, site) or ():
                        for seed in self.seeds:
                            out.append(SaeKey(self.model, layer, site, name, coef, seed, self.corpus.name))
        return out


def _architecture(name: str, raw: dict) -> ArchitectureConfig:
    takes_k = name in K_ARCHITECTURES
    if takes_k and "coefficients" in raw:
        raise ConfigError(
            f"config key 'architectures.{name}.coefficients': {name} takes 'k' "
            "(active latents per token), not a coefficient grid"
        )
    if not takes_k and "k" in raw:
        raise ConfigError(
            f"config key 'architectures.{name}.k': only {', '.join(sorted(K_ARCHITECTURES))} "
            "takes 'k'; give 'coefficients' instead"
        )
    key = "k" if takes_k else "coefficients"
    if key not in raw:
        raise ConfigError(f"config key 'architectures.{name}.{key}' is required")
    site_grids = raw.get("site_coefficients")
    return ArchitectureConfig(
        name=name,
        grid=tuple(raw[key]),
        site_grids={s: tuple(g) for s, g in site_grids.items()} if site_grids is not None else None,
        layer_grids=(
            {int(lay): {s: tuple(g) for s, g in per.items()} for lay, per in raw["layer_coefficients"].items()}
            if "layer_coefficients" in raw
            else None
        ),
        expansion=float(raw.get("expansion", default_expansion(name))),
        width=raw.get("width"),
        widths=dict(raw["widths"]) if "widths" in raw else None,
        resample=ResampleConfig(**raw["resample"]) if "resample" in raw else None,
        sites=tuple(raw["sites"]) if "sites" in raw else None,
        layers=tuple(raw["layers"]) if "layers" in raw else None,
        lr=raw.get("lr"),
        adam_beta1=raw.get("adam_beta1"),
        tokens=raw.get("tokens"),
        bandwidth=raw.get("bandwidth"),
        init_threshold=raw.get("init_threshold"),
    )


#: A config whose ``model:`` is a path may leave an architecture's ``coefficients`` out: a pilot
#: (:mod:`saerepro.pilot`) then chooses them, aiming at this L0 range (the paper's SAEs span
#: ~20-100 at most sites), unless the config's own ``pilot:`` says otherwise.
OWN_MODEL_TARGET_L0 = (20.0, 100.0)
#: ...probing λ from min / ``pilot.probe_factor`` to max × it (0.01 to 30 by default): that holds
#: every λ our SAEs have needed (Gemma-3-270M 0.3-25 across sites; Qwen2.5-Coder-0.5B's λ 1 gave
#: L0 470 of 1,792 latents, issue 31).
OWN_MODEL_PROBE_GRID = (0.1, 3.0)


def piloted_by_default(raw: dict) -> list[str]:
    """The architectures of a raw config whose λs a pilot chooses because ``model:`` is a path and
    they give no ``coefficients`` (none for a registered model: there they are required)."""
    if not isinstance(raw, dict):
        return []
    model, archs, pilot = raw.get("model"), raw.get("architectures"), raw.get("pilot")
    if not (isinstance(model, str) and is_model_path(model) and isinstance(archs, dict)):
        return []
    piloted = pilot.get("architectures") if isinstance(pilot, dict) else None
    return [
        name
        for name, arch in archs.items()
        if isinstance(arch, dict)
        and "coefficients" not in arch
        and name not in K_ARCHITECTURES
        and name not in DERIVED_ARCHITECTURES
        and (piloted is None or name in piloted)
    ]


def default_pilot_note(raw: dict, cfg: Config) -> str | None:
    """What the terminal says when :func:`piloted_by_default` applies to ``raw`` (None otherwise)."""
    names = piloted_by_default(raw)
    if not names or cfg.pilot is None:
        return None
    lo, hi = cfg.pilot.target_l0
    return (
        f"no coefficients for {', '.join(names)} (a model given by path): a pilot chooses "
        f"{cfg.pilot.n_coefficients} λ each for L0 {lo:g}-{hi:g} from {cfg.pilot.n_probes} probes of "
        f"{cfg.pilot.tokens:,} tokens (set coefficients, or pilot.target_l0, to change this)"
    )


def _with_default_pilot(raw: dict) -> dict:
    """``raw`` with :func:`piloted_by_default`'s architectures probed around
    :data:`OWN_MODEL_PROBE_GRID`, and a pilot aiming at :data:`OWN_MODEL_TARGET_L0` if it has none."""
    names = piloted_by_default(raw)
    if not names:
        return raw
    raw = copy.deepcopy(raw)
    for name in names:
        raw["architectures"][name]["coefficients"] = list(OWN_MODEL_PROBE_GRID)
    raw.setdefault("pilot", {"target_l0": list(OWN_MODEL_TARGET_L0), "architectures": names})
    return raw


def load_config(raw: dict | str | Path) -> Config:
    """Validate a config (a mapping or a YAML path) and return the typed :class:`Config`."""
    if isinstance(raw, (str, Path)):
        raw = yaml.safe_load(Path(raw).read_text())
    if isinstance(raw, dict):
        import_plugins(raw.get("plugins"))
    data = validate_against_schema(_with_default_pilot(raw))  # type: ignore[arg-type]  # a YAML path was read above
    return Config(
        model=data["model"],
        layers=tuple(data["layers"]),
        sites=tuple(data["sites"]),
        architectures={n: _architecture(n, a) for n, a in data["architectures"].items()},
        seeds=tuple(data["seeds"]),
        headline_layer=data.get("headline_layer"),
        resources_dir=data["resources_dir"],
        device=data["device"],
        corpus=CorpusConfig(**data["corpus"]),
        cache=CacheConfig(**data["cache"]),
        reference=ReferenceConfig(**data["reference"]),
        train=TrainDefaults(**data["train"]),
        allow_mixed_configs=data["allow_mixed_configs"],
        plugins=tuple(data["plugins"]),
        activations=ActivationsConfig(**data["activations"]),
        pilot=_pilot(data["pilot"]) if "pilot" in data else None,
        verdicts=VerdictsConfig(
            l0_range=(float(data["verdicts"]["l0_range"][0]), float(data["verdicts"]["l0_range"][1])),
            site_l0_range={s: (float(r[0]), float(r[1])) for s, r in data["verdicts"]["site_l0_range"].items()},
        ),
    )


def _pilot(raw: dict) -> PilotConfig:
    site_targets = raw.get("site_target_l0")
    probes = raw.get("probe_coefficients")
    return PilotConfig(
        target_l0=(float(raw["target_l0"][0]), float(raw["target_l0"][1])),
        site_target_l0={s: (float(t[0]), float(t[1])) for s, t in site_targets.items()} if site_targets else None,
        n_coefficients=raw["n_coefficients"],
        tokens=raw["tokens"],
        n_probes=raw["n_probes"],
        probe_factor=float(raw["probe_factor"]),
        probe_coefficients={a: tuple(float(c) for c in g) for a, g in probes.items()} if probes else None,
        architectures=tuple(raw["architectures"]) if "architectures" in raw else None,
        l0_rows=raw["l0_rows"],
    )
