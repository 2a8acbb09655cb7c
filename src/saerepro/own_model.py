"""A model given by path in the config (``model: /path/to/folder`` or ``model: /path/to/x.gguf``).

No code edit and no :class:`~saerepro.model_spec.ModelSpec` of one's own: the shape facts config
validation needs (n_layers, d_model, heads, d_mlp, context, architecture) are read from the
folder's ``config.json`` or from the GGUF file's metadata, when the config is validated.

``model`` may be

* a Hugging Face model folder: ``config.json``, the weights (``*.safetensors`` or ``*.bin``) and the
  tokenizer (``tokenizer.json`` or ``tokenizer.model``). The weights are loaded from the folder.
* a GGUF file (llama.cpp's format; any quantisation ``gguf`` can dequantise). The ``prepare_model``
  rule dequantises it to float32 once, with the same code as the packaged Gemma default
  (:func:`saerepro.models.dequantise_gguf`), and saves a plain Hugging Face folder (its tokenizer
  is rebuilt from the GGUF's own vocabulary) under ``<resources_dir>/models/<tag>/``.

The model's name in paths and tables is its *tag*: the folder's or file's name (made
filesystem-safe) plus 8 hex digits of a key of the weights' file sizes and modification times
(:func:`content_key`). Editing, replacing or touching the weights gives a new tag, so nothing
prepared, cached or trained from the old weights is reused; moving or renaming the folder
(``mv``, ``cp -p``) keeps the tag. The key is not a hash of the contents, which would take
seconds per GB at every validation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import re
import struct
from pathlib import Path

from .model_spec import ModelSpec

#: A config ``model`` starting like this, containing a slash or ending in .gguf is a path.
PATH_PREFIXES = ("/", "./", "../", "~")

#: Top-level files of a model folder whose size and mtime make up its :func:`content_key`.
KEYED_SUFFIXES = (".json", ".safetensors", ".bin", ".pth", ".model", ".txt", ".tiktoken")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")

#: HF architectures TransformerLens (3.9) converts from a folder's own config.json.
TL_ARCHITECTURES = frozenset(
    {
        "ApertusForCausalLM",
        "BloomForCausalLM",
        "GPT2LMHeadModel",
        "GPTJForCausalLM",
        "GPTNeoForCausalLM",
        "GPTNeoXForCausalLM",
        "GptOssForCausalLM",
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
        "OPTForCausalLM",
        "Phi3ForCausalLM",
        "PhiForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
    }
)
#: Of those, the ones whose head width TransformerLens takes from the config (``head_dim``); the
#: others use d_model / n_heads.
TL_HEAD_DIM_ARCHITECTURES = frozenset(
    {"ApertusForCausalLM", "GptOssForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM"}
)
#: Gemma models TransformerLens knows only by official name (its config is hard-coded per name),
#: keyed by (architecture, n_layers, d_model).
GEMMA_TL_NAMES: dict[tuple[str, int, int], str] = {
    ("GemmaForCausalLM", 18, 2048): "google/gemma-2b",
    ("GemmaForCausalLM", 28, 3072): "google/gemma-7b",
    ("Gemma2ForCausalLM", 26, 2304): "google/gemma-2-2b",
    ("Gemma3ForCausalLM", 18, 640): "google/gemma-3-270m",
    ("Gemma3ForCausalLM", 26, 1152): "google/gemma-3-1b-pt",
}
#: GGUF ``general.architecture`` -> the HF architecture transformers' GGUF loader builds.
GGUF_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "bloom": "BloomForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
}
#: Architectures whose MLP has a gate projection (only the cost estimate uses it).
GATED_MLP = frozenset(
    {
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Phi3ForCausalLM",
        "GptOssForCausalLM",
        "ApertusForCausalLM",
        "GemmaForCausalLM",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
    }
)


class ModelPathError(ValueError):
    """The config's ``model`` path is missing, malformed or of an unsupported architecture."""


def is_model_path(model: str) -> bool:
    """Whether a config ``model`` is a path rather than a registered name (a registered name never
    contains a slash; a Hugging Face hub id such as owner/name counts as a relative path)."""
    return model.startswith(PATH_PREFIXES) or "/" in model or "\\" in model or model.lower().endswith(".gguf")


def absolute_model_path(model: str) -> str:
    """``model`` as an absolute path when it is a path, unchanged when it is a registered name."""
    return str(Path(model).expanduser().absolute()) if is_model_path(model) else model


def _keyed_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in KEYED_SUFFIXES)


def content_key(path: str | Path) -> str:
    """8 hex digits of the sizes and modification times (ns) of the weights, config and tokenizer
    files of ``path`` (a GGUF file or a model folder); names are relative, so moving keeps it."""
    path = Path(path)
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in _keyed_files(path)]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:8]


def model_tag(path: str | Path) -> str:
    """The model's name in paths and tables: ``<file or folder stem>-<content_key>``."""
    path = Path(path)
    stem = path.stem if path.is_file() else path.name
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"
    return f"{stem}-{content_key(path)}"


# --------------------------------------------------------------------------- GGUF metadata

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf_metadata(path: str | Path) -> dict:
    """The key-value metadata of a GGUF file (v2/v3). Arrays are read as their length only (a
    vocabulary of 10^5 strings would take seconds with ``gguf.GGUFReader``; this takes ms)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ModelPathError(f"{path} is not a GGUF file (it does not start with the GGUF magic)")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version < 2:
            raise ModelPathError(f"{path}: GGUF version {version} is too old (2 or later is read)")
        pos = 24

        def string(at: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", buf, at)
            return bytes(buf[at + 8 : at + 8 + n]).decode("utf-8", "replace"), at + 8 + n

        def skip(vtype: int, at: int) -> int:
            if vtype == 8:
                return at + 8 + struct.unpack_from("<Q", buf, at)[0]
            if vtype == 9:
                item, count = struct.unpack_from("<IQ", buf, at)
                at += 12
                if item in _SCALARS:
                    return at + count * struct.calcsize("<" + _SCALARS[item])
                for _ in range(count):
                    at = skip(item, at)
                return at
            return at + struct.calcsize("<" + _SCALARS[vtype])

        meta: dict = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (vtype,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            if vtype == 8:
                meta[key], pos = string(pos)
            elif vtype == 9:
                meta[key] = struct.unpack_from("<IQ", buf, pos)[1]  # the array's length
                pos = skip(9, pos)
            elif vtype in _SCALARS:
                meta[key] = struct.unpack_from("<" + _SCALARS[vtype], buf, pos)[0]
                pos += struct.calcsize("<" + _SCALARS[vtype])
            else:
                raise ModelPathError(f"{path}: unknown GGUF value type {vtype} for key {key!r}")
        meta["_data_bytes_needed"] = _tensor_data_end(buf, pos, n_tensors, int(meta.get("general.alignment", 32)))
        meta["_file_bytes"] = len(buf)
        return meta


def _tensor_data_end(buf, pos: int, n_tensors: int, alignment: int) -> int:
    """Where the last tensor's data ends: the aligned start of the data section plus the largest
    offset + size in the tensor table (sizes from gguf's block sizes per quantisation type)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    end = 0
    for _ in range(n_tensors):
        (n,) = struct.unpack_from("<Q", buf, pos)
        pos += 8 + n
        (n_dims,) = struct.unpack_from("<I", buf, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        ggml_type, offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        elements = 1
        for d in dims:
            elements *= d
        end = max(end, offset + elements // block * type_size)
    start = (pos + alignment - 1) // alignment * alignment
    return start + end


# --------------------------------------------------------------------------- specs


def _tl_name(arch: str, n_layers: int, d_model: int, where: Path) -> str | None:
    if arch in TL_ARCHITECTURES:
        return None
    if arch in {a for a, _, _ in GEMMA_TL_NAMES}:
        name = GEMMA_TL_NAMES.get((arch, n_layers, d_model))
        if name is None:
            known = ", ".join(f"{n} ({layers} layers, d_model {d})" for (a, layers, d), n in GEMMA_TL_NAMES.items())
            raise ModelPathError(
                f"{where}: TransformerLens loads {arch} models only by official name, and none has "
                f"{n_layers} layers and d_model {d_model}; known: {known}"
            )
        return name
    raise ModelPathError(
        f"{where}: architecture {arch} is not one TransformerLens converts; supported: "
        f"{', '.join(sorted(TL_ARCHITECTURES | {a for a, _, _ in GEMMA_TL_NAMES}))}"
    )


def _first(cfg: dict, keys: tuple[str, ...], what: str, where: Path) -> int:
    for key in keys:
        if cfg.get(key) is not None:
            return int(cfg[key])
    raise ModelPathError(f"{where}/config.json gives no {what} (none of {', '.join(keys)})")


def spec_from_folder(folder: Path) -> ModelSpec:
    """A spec for a Hugging Face model folder, its shape read from ``config.json``."""
    if not (folder / "config.json").is_file():
        raise ModelPathError(
            f"{folder} has no config.json; a model folder holds config.json, the weights "
            "(*.safetensors or *.bin) and the tokenizer (tokenizer.json or tokenizer.model), "
            "as save_pretrained writes them"
        )
    if not any(any(folder.glob(p)) for p in WEIGHT_PATTERNS):
        raise ModelPathError(f"{folder} has config.json but no weights (*.safetensors or *.bin)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelPathError(f"{folder} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); save it beside the weights")
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise ModelPathError(f"{folder}/config.json is not valid JSON: {err}") from None
    cfg = {**cfg, **cfg.get("text_config", {})}  # multimodal configs nest the LM's
    archs = cfg.get("architectures") or []
    if not archs:
        raise ModelPathError(f"{folder}/config.json names no architectures")
    arch = archs[0]
    n_layers = _first(cfg, ("num_hidden_layers", "n_layer", "num_layers"), "layer count", folder)
    d_model = _first(cfg, ("hidden_size", "n_embd", "d_model"), "model width", folder)
    n_heads = _first(cfg, ("num_attention_heads", "n_head"), "head count", folder)
    d_head = d_model // n_heads
    if cfg.get("head_dim") and (arch not in TL_ARCHITECTURES or arch in TL_HEAD_DIM_ARCHITECTURES):
        d_head = int(cfg["head_dim"])
    d_mlp_keys = ("intermediate_size", "n_inner", "ffn_dim", "d_mlp")
    d_mlp = next((int(cfg[k]) for k in d_mlp_keys if cfg.get(k) is not None), 4 * d_model)
    max_context = _first(
        cfg, ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"), "context length", folder
    )
    return ModelSpec(
        name=model_tag(folder),
        source="local",
        location=str(folder),
        tl_name=_tl_name(arch, n_layers, d_model, folder),
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_head,
        max_context=max_context,
        d_mlp=d_mlp,
        gated_mlp=arch in GATED_MLP,
        d_vocab=cfg.get("vocab_size"),
        add_bos=folder_adds_bos(folder),
        notes=f"{arch} from the folder {folder}",
    )


def folder_adds_bos(folder: Path) -> bool:
    """Whether the folder's tokenizer starts a sequence with BOS: its ``tokenizer_config.json``'s
    ``add_bos_token`` where it says, else what the tokenizer does to a short text."""
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text()).get("add_bos_token")
        except json.JSONDecodeError:
            value = None
        if isinstance(value, bool):
            return value
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok("a", add_special_tokens=True)["input_ids"]
    return tok.bos_token_id is not None and bool(ids) and ids[0] == tok.bos_token_id


#: GGUF tokenizer models whose llama.cpp default is to add BOS when the metadata does not say.
GGUF_BOS_BY_DEFAULT = frozenset({"llama", "gemma", "t5"})


def gguf_adds_bos(meta: dict) -> bool:
    """A GGUF's sequence convention: ``tokenizer.ggml.add_bos_token``, else llama.cpp's default for
    its tokenizer model (SentencePiece models add BOS, byte-level BPE ones such as Qwen's do not)."""
    if "tokenizer.ggml.add_bos_token" in meta:
        return bool(meta["tokenizer.ggml.add_bos_token"])
    return meta.get("tokenizer.ggml.model") in GGUF_BOS_BY_DEFAULT


def spec_from_gguf(path: Path) -> ModelSpec:
    """A spec for a GGUF file, its shape read from the GGUF metadata; a file shorter than its own
    tensor table says (a partial download or copy) is refused here, before any job."""
    meta = read_gguf_metadata(path)
    if meta["_data_bytes_needed"] > meta["_file_bytes"]:
        raise ModelPathError(
            f"{path} is truncated: its tensor table needs {meta['_data_bytes_needed']:,} bytes, the file has "
            f"{meta['_file_bytes']:,} (an interrupted download or copy?); fetch or copy it again"
        )
    arch = meta.get("general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise ModelPathError(
            f"{path}: GGUF architecture {arch!r} is not supported; supported: {', '.join(sorted(GGUF_ARCHITECTURES))}"
        )

    def need(key: str) -> int:
        if f"{arch}.{key}" not in meta:
            raise ModelPathError(f"{path}: the GGUF metadata has no {arch}.{key}")
        return int(meta[f"{arch}.{key}"])

    hf_arch = GGUF_ARCHITECTURES[arch]
    n_layers, d_model, n_heads = need("block_count"), need("embedding_length"), need("attention.head_count")
    d_head = d_model // n_heads
    if (hf_arch not in TL_ARCHITECTURES or hf_arch in TL_HEAD_DIM_ARCHITECTURES) and (
        f"{arch}.attention.key_length" in meta
    ):
        d_head = int(meta[f"{arch}.attention.key_length"])
    d_vocab = meta.get(f"{arch}.vocab_size", meta.get("tokenizer.ggml.tokens"))
    return ModelSpec(
        name=model_tag(path),
        source="gguf_file",
        location=str(path),
        tl_name=_tl_name(hf_arch, n_layers, d_model, path),
        n_layers=n_layers,
        d_model=d_model,
        n_heads=n_heads,
        d_head=d_head,
        max_context=need("context_length"),
        d_mlp=need("feed_forward_length"),
        gated_mlp=hf_arch in GATED_MLP,
        d_vocab=int(d_vocab) if d_vocab is not None else None,
        add_bos=gguf_adds_bos(meta),
        notes=f"{hf_arch} from the GGUF {path}",
    )


@functools.lru_cache(maxsize=32)
def _cached_spec(path: str, _key: str) -> ModelSpec:
    p = Path(path)
    return spec_from_gguf(p) if p.is_file() else spec_from_folder(p)


def spec_from_path(model: str) -> ModelSpec:
    """The spec of a model given by path: a Hugging Face folder or a ``.gguf`` file."""
    path = Path(model).expanduser().absolute()
    if not path.exists():
        raise ModelPathError(
            f"{model!r} is not a registered model name, and there is no model folder or GGUF file at "
            f"{path} (relative paths start at the directory snakemake runs in); a Hugging Face hub "
            "id is not accepted here: download the model and give its folder"
        )
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise ModelPathError(f"{path} is a file but not a .gguf; give a GGUF file or a Hugging Face model folder")
    return _cached_spec(str(path), content_key(path))
