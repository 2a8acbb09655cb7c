"""The shape facts of a language model (:class:`ModelSpec`): where its weights come from and
what config validation needs, with no torch import. :mod:`saerepro.models` holds the registry of
named models and the code that loads them; :mod:`saerepro.own_model` builds a spec from a model
folder or GGUF file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Source = Literal["gguf_package", "hub", "local", "gguf_file"]
SOURCES: tuple[str, ...] = ("gguf_package", "hub", "local", "gguf_file")
WeightsFormat = Literal["hf", "transformer_lens"]
WEIGHTS_FORMATS: tuple[str, ...] = ("hf", "transformer_lens")


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's weights come from and the shape facts config validation needs."""

    name: str
    """Short name used in config files, paths and result tables."""
    source: Source
    """One of ``gguf_package``, ``hub``, ``local`` or ``gguf_file`` (see :mod:`saerepro.models`)."""
    location: str
    """Hub id for ``hub``, a folder for ``local``, the PyPI distribution for ``gguf_package``, the
    file for ``gguf_file``."""
    tl_name: str | None
    """TransformerLens official name. Needed when TransformerLens infers the architecture from
    the name (Gemma 3); ``None`` converts the folder's own ``config.json`` instead."""
    n_layers: int
    """Number of transformer blocks; layers are valid in ``[0, n_layers)``."""
    d_model: int
    """Residual-stream width."""
    n_heads: int
    """Query heads; the ``attn`` site has width ``n_heads * d_head``."""
    d_head: int
    """Per-head width."""
    max_context: int
    """Longest context the model was trained on; the config's context size may not exceed it."""
    dtype: str = "float32"
    """Dtype the LM runs in. float32 on CPU: bf16 matmuls are slow there."""
    dataset: str | None = None
    """Default training text for online configs (a HF dataset id), if any."""
    d_mlp: int | None = None
    """MLP hidden width: the width of the ``mlp_post`` site (None: that site is unavailable)."""
    gated_mlp: bool = False
    """Whether the MLP has a gate projection (GeGLU, SwiGLU: three d_model x d_mlp matrices, not
    two). Only the cost estimate (:mod:`saerepro.costs`) uses it."""
    d_vocab: int | None = None
    """Vocabulary size (the unembedding's width); only the cost estimate uses it."""
    weights_format: WeightsFormat = "hf"
    """``hf`` (a transformers folder) or ``transformer_lens`` (TransformerLens-native checkpoint)."""
    tokenizer: str | None = None
    """Hub id or folder of the tokenizer when the weights folder holds none (TransformerLens-native
    checkpoints); None: the weights folder's own."""
    add_bos: bool = True
    """The model's sequence convention: whether its tokenizer starts every sequence with BOS
    (Gemma: yes; Qwen2.5: ``add_bos_token`` false). Corpus rows are packed with BOS first, or with
    no prefix at all; the first position is left out of caches and metrics either way (it has no
    context). A model given by path reads it from its tokenizer or GGUF metadata
    (:mod:`saerepro.own_model`); registry models state it."""
    notes: str = field(default="", compare=False)
    """Free text shown in the model table of docs/models-and-corpora.md."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"model {self.name!r}: source {self.source!r} not in {SOURCES}")
        if self.weights_format not in WEIGHTS_FORMATS:
            raise ValueError(f"model {self.name!r}: weights_format {self.weights_format!r} not in {WEIGHTS_FORMATS}")
        if self.weights_format == "transformer_lens" and self.source in ("gguf_package", "gguf_file"):
            raise ValueError(f"model {self.name!r}: a gguf_package is never a TransformerLens checkpoint")
        for attr in ("n_layers", "d_model", "n_heads", "d_head", "max_context"):
            if getattr(self, attr) <= 0:
                raise ValueError(f"model {self.name!r}: {attr} must be positive")
        for attr in ("d_mlp", "d_vocab"):
            if getattr(self, attr) is not None and getattr(self, attr) <= 0:
                raise ValueError(f"model {self.name!r}: {attr} must be positive")
