"""saerepro: a reproducible benchmark of sparse-autoencoder architectures on LM activations.

Reproduces *Improving Dictionary Learning with Gated Sparse Autoencoders* (Rajamanoharan et al.,
arXiv 2404.16014) and compares against TopK (Gao et al., arXiv 2406.04093) and JumpReLU SAEs.
All logic lives here and is testable without Snakemake; ``workflow/`` only wires it together.
"""

__version__ = "0.1.0"

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

# After `import saerepro`, sae_lens.SAE.load_from_disk(path) rebuilds any SAE this suite trained:
# the saerepro_* architectures are registered with sae-lens (by importing saerepro.sae) as soon as
# sae-lens is imported. Importing saerepro itself does not import torch or sae-lens, so that the
# config validation and the tables (saerepro.config, saerepro.tables) stay light.


def _register_architectures() -> None:
    # saerepro.sae already in sys.modules means it is importing sae-lens itself and registers the
    # architectures at its end
    if "saerepro.sae" not in sys.modules:
        importlib.import_module("saerepro.sae")


class _ThenRegister(importlib.abc.Loader):
    """sae-lens' own loader, followed by :func:`_register_architectures`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _register_architectures()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _OnSaeLensImport(importlib.abc.MetaPathFinder):
    """Finds sae-lens once, as the other finders do, and wraps its loader in :class:`_ThenRegister`."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != "sae_lens":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegister(spec.loader)
        return spec


if "sae_lens" in sys.modules:
    _register_architectures()
elif not any(isinstance(finder, _OnSaeLensImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _OnSaeLensImport())
