"""The files of a trained SAE folder, before and after its sae-lens export
(:mod:`saerepro.sae.export`): their names and which pair holds the SAE as trained. No torch:
training writes these names, :func:`saerepro.sae.load_sae` reads them and the export renames them.
"""

from __future__ import annotations

import json
from pathlib import Path

SAE_CFG_FILE = "cfg.json"
SAE_WEIGHTS_FILE = "sae_weights.safetensors"
NORMALISED_CFG_FILE = "cfg.normalised.json"
NORMALISED_WEIGHTS_FILE = "sae_weights.normalised.safetensors"
#: Key of ``cfg.json``'s metadata that marks a folded (raw-activation) export.
EXPORT_KEY = "saerepro_export"


def is_exported(run_dir: str | Path) -> bool:
    """Whether ``run_dir/cfg.json`` is a folded export (else it is the SAE as trained)."""
    path = Path(run_dir) / SAE_CFG_FILE
    if not path.exists():
        return False
    cfg = json.loads(path.read_text())
    return EXPORT_KEY in (cfg.get("metadata") or {})


def normalised_files(run_dir: str | Path) -> tuple[Path, Path]:
    """(cfg, weights) of the SAE as trained, on normalised activations: the ``*.normalised.*`` pair
    once the folder is exported (or an export was interrupted), else ``cfg.json`` and its weights."""
    run_dir = Path(run_dir)
    if is_exported(run_dir) or not (run_dir / SAE_CFG_FILE).exists():
        return run_dir / NORMALISED_CFG_FILE, run_dir / NORMALISED_WEIGHTS_FILE
    weights = run_dir / SAE_WEIGHTS_FILE
    return run_dir / SAE_CFG_FILE, weights if weights.exists() else run_dir / NORMALISED_WEIGHTS_FILE
