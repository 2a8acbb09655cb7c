"""The architectures by saerepro name, their registration with sae-lens, and a factory.

Each architecture ``name`` is registered in sae-lens' ``SAE_CLASS_REGISTRY`` as
``"saerepro_" + name`` (sae-lens' own ``gated``/``topk``/``jumprelu``/``standard`` are different
implementations and keep their names). A saved SAE's ``cfg.json`` carries that architecture, so once
:mod:`saerepro.sae` is imported, ``sae_lens.SAE.load_from_disk(path)`` rebuilds our class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sae_lens.loading.pretrained_sae_loaders import read_sae_components_from_disk
from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class
from sae_lens.saes.sae import SAE, SAEMetadata

from ..architectures import ARCHITECTURES as ARCHITECTURE_NAMES
from ..architectures import ArchitectureSpec, check_architecture, register_spec
from .baseline import BaselineRescaleShiftSAE, BaselineSAE
from .common import SAE_LENS_PREFIX, ArchTrainingConfig, SaeReproMixin
from .files import normalised_files
from .gated import (
    GatedNoRmagSAE,
    GatedSAE,
    GatedStrictAuxSAE,
    GatedUnfrozenDecoderSAE,
    GatedUntiedSAE,
)
from .jumprelu import JumpReLUSAE
from .topk import TopKSAE

#: saerepro architecture name -> SAE class (its ``config_class`` is the sae-lens config), in the
#: order of :data:`saerepro.architectures.ARCHITECTURES` (the names, importable without torch).
ARCHITECTURES: dict[str, type[Any]] = {
    cls.short_name: cls
    for cls in (
        GatedSAE,
        BaselineSAE,
        TopKSAE,
        JumpReLUSAE,
        GatedUnfrozenDecoderSAE,
        GatedNoRmagSAE,
        GatedUntiedSAE,
        GatedStrictAuxSAE,
        BaselineRescaleShiftSAE,
    )
}
assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES, "saerepro.architectures.ARCHITECTURES is out of step"

#: Architecture name -> its own training settings (:class:`~saerepro.sae.common.ArchTrainingConfig`),
#: for the architectures that have any, in registry order.
TRAINING_CONFIGS: dict[str, type[ArchTrainingConfig]] = {
    name: cls.training_config_class for name, cls in ARCHITECTURES.items() if cls.training_config_class is not None
}


def register_architecture(cls: type[Any], spec: ArchitectureSpec) -> type[Any]:
    """Add an architecture defined outside the package: its class (a sae-lens SAE with
    :class:`~saerepro.sae.common.SaeReproMixin`, ``short_name`` = ``spec.name``, its config class's
    ``architecture()`` = ``"saerepro_" + spec.name``) and its torch-free spec, after the built-in
    ones. Config validation, training, evaluation, the tables and the figures then know it; a
    config's ``plugins`` file calls this on import (docs/contributing.md). Registering the same
    spec again replaces the class (a re-imported file). Returns ``cls``."""
    if getattr(cls, "short_name", None) != spec.name:
        raise ValueError(
            f"{cls.__name__}.short_name is {getattr(cls, 'short_name', None)!r}, its spec's name {spec.name!r}"
        )
    if not issubclass(cls, SaeReproMixin) or not issubclass(cls, SAE):
        raise TypeError(f"{cls.__name__} must derive from saerepro.sae.common.SaeReproMixin and sae_lens' SAE")
    if spec.name in ARCHITECTURES and ARCHITECTURES[spec.name].__module__.startswith("saerepro."):
        raise ValueError(f"architecture {spec.name!r} is built in; choose another name")
    register_spec(spec)
    ARCHITECTURES[spec.name] = cls
    if cls.training_config_class is not None:
        TRAINING_CONFIGS[spec.name] = cls.training_config_class
    register_with_sae_lens()
    return cls


def sae_lens_architecture(name: str) -> str:
    """The architecture string sae-lens sees in cfg.json for saerepro architecture ``name``."""
    check_architecture(name)
    return SAE_LENS_PREFIX + name


def register_with_sae_lens() -> None:
    """Register every architecture with sae-lens (idempotent; runs on ``import saerepro.sae``)."""
    for name, cls in ARCHITECTURES.items():
        key = SAE_LENS_PREFIX + name
        assert cls.config_class.architecture() == key, (cls, key)
        existing = SAE_CLASS_REGISTRY.get(key)
        if existing is None:
            register_sae_class(key, cls, cls.config_class)
        elif existing != (cls, cls.config_class):
            # a re-imported module (e.g. importlib.reload): the newest definition wins
            SAE_CLASS_REGISTRY[key] = (cls, cls.config_class)


def make_sae(
    architecture: str,
    d_in: int,
    d_sae: int,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    metadata: dict[str, Any] | None = None,
    **arch_kwargs: Any,
) -> SaeReproMixin:
    """A freshly initialised SAE of ``architecture`` (uses torch's global RNG; seed around it).

    ``arch_kwargs`` are the architecture's extra config fields: ``k``, ``k_aux``,
    ``auxk_coefficient`` (topk); ``bandwidth``, ``init_threshold`` (jumprelu); see
    ``ArchTrainingConfig.sae_kwargs``.
    """
    check_architecture(architecture)
    cls = ARCHITECTURES[architecture]
    cfg = cls.config_class(
        d_in=d_in,
        d_sae=d_sae,
        dtype=dtype,
        device=device,
        metadata=SAEMetadata(**(metadata or {})),
        **arch_kwargs,
    )
    return cls(cfg)


def load_sae(path: str, device: str = "cpu") -> SAE[Any]:
    """The SAE of a run folder as trained, on normalised activations (what every saerepro metric
    uses): ``sae_lens.SAE.load_from_disk`` of the folder's normalised pair, after making sure our
    architectures are registered.

    Once a folder is exported (:func:`saerepro.sae.export.export_sae_lens`) its ``cfg.json`` is
    the raw-activation SAE; this reads ``cfg.normalised.json`` / ``sae_weights.normalised.safetensors``
    instead. A folder training has just written (or any plain sae-lens folder) is read as it is."""
    register_with_sae_lens()
    cfg_path, weights_path = normalised_files(path)

    def converter(
        _path: str | Path, device: str = "cpu", cfg_overrides: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        cfg_dict = json.loads(cfg_path.read_text())
        cfg_dict["device"] = device
        cfg_dict.update(cfg_overrides or {})
        return read_sae_components_from_disk(cfg_dict=cfg_dict, weight_path=weights_path, device=device)

    return SAE.load_from_disk(path, device=device, converter=converter)
