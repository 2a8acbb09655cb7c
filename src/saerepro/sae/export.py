"""A trained run folder as a drop-in sae-lens SAE on raw hook activations.

The SAEs are trained on normalised activations ``x_norm = s · x_raw`` (``s`` =
``activation_scale``: E‖x_norm‖² = d_in, see :mod:`saerepro.activations`). :func:`export_sae_lens`
folds ``s`` into the weights, as sae-lens' own trainer does when it saves
(``SAE.fold_activation_norm_scaling_factor``), so that ``sae_lens.SAE.load_from_disk(run_dir)``
encodes raw activations and reconstructs them in raw units. With x̃ = x_norm − b_dec =
s (x_raw − b_dec / s)::

    W_enc' = s W_enc      W_mag' = s W_mag (gated_untied)      b_dec' = b_dec / s
    W_dec' = W_dec / s    every other parameter unchanged

Every pre-activation (x̃ W + b) is unchanged, so biases, gates (b_gate, b_mag, r_mag), JumpReLU
thresholds and TopK's choice stay as they are; the latents equal those of the normalised SAE and
the reconstruction is the normalised one divided by s.

After export a run folder holds::

    cfg.json, sae_weights.safetensors                  raw-activation SAE (sae-lens drop-in)
    cfg.normalised.json, sae_weights.normalised.safetensors
                                                       the SAE as trained, on x_norm; what
                                                       :func:`saerepro.sae.load_sae` (evaluation,
                                                       the API, inference_opt) reads

Training (:mod:`saerepro.training`) writes the normalised SAE as ``cfg.json`` /
``sae_weights.safetensors``; the export renames those and writes the folded pair in their place.
A folded ``cfg.json`` says so in ``metadata.saerepro_export``, which is how :func:`load_sae` and a
second export tell the two apart (a retrained folder is unfolded again until it is exported).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .files import (
    EXPORT_KEY,
    NORMALISED_CFG_FILE,
    NORMALISED_WEIGHTS_FILE,
    SAE_CFG_FILE,
    SAE_WEIGHTS_FILE,
    is_exported,
)
from .registry import load_sae

#: What a user who opens cfg.json reads: sae-lens has no plugin discovery, so the architectures
#: (``saerepro_*``) exist only once saerepro is imported.
LOAD_NOTE = (
    "import saerepro (registers the saerepro_* architectures with sae-lens), then "
    "sae_lens.SAE.load_from_disk(this folder); inputs are raw hook activations"
)

#: Parameters multiplied (W_enc, W_mag) or divided (W_dec, b_dec) by the scale; all others are kept.
_MULTIPLIED = ("W_enc", "W_mag")
_DIVIDED = ("W_dec", "b_dec")
#: Parameters a fold leaves alone: each enters only after x̃ W (biases, gates, thresholds).
_UNCHANGED = ("b_enc", "b_gate", "b_mag", "r_mag", "threshold", "log_threshold")


@torch.no_grad()
def fold_activation_scale(sae: Any, scale: float) -> None:
    """Fold ``x_norm = scale · x_raw`` into ``sae``'s weights in place (see the module docstring).

    Refuses a parameter it does not know, so a new architecture gets its fold checked."""
    if not scale > 0:
        raise ValueError(f"activation scale must be > 0, got {scale}")
    for name, param in sae.named_parameters():
        if name in _MULTIPLIED:
            param.mul_(scale)
        elif name in _DIVIDED:
            param.div_(scale)
        elif name not in _UNCHANGED:
            raise ValueError(f"{type(sae).__name__}: no known fold for parameter {name!r}")
    sae.cfg.normalize_activations = "none"


def _scale_of(run_dir: Path, sae: Any) -> float:
    info = run_dir / "train_info.json"
    if info.exists():
        return float(json.loads(info.read_text())["activation_scale"])
    scale = sae.cfg.metadata.activation_scale
    if scale is None:
        raise FileNotFoundError(f"{run_dir}: no train_info.json and no activation_scale in cfg.json's metadata")
    return float(scale)


def export_sae_lens(run_dir: str | Path) -> Path:
    """Write the raw-activation sae-lens SAE of a finished run folder (idempotent). Returns the folder.

    The SAE as trained is kept as ``cfg.normalised.json`` / ``sae_weights.normalised.safetensors``
    (byte for byte what training wrote); ``cfg.json`` / ``sae_weights.safetensors`` become the
    folded SAE. A folder already exported is left as it is."""
    run_dir = Path(run_dir)
    if is_exported(run_dir):
        return run_dir
    # Renamed first (cfg.json last): a crash before the folded pair is written leaves a folder that
    # load_sae reads and a second export completes.
    if (run_dir / SAE_CFG_FILE).exists():
        if (run_dir / SAE_WEIGHTS_FILE).exists():
            os.replace(run_dir / SAE_WEIGHTS_FILE, run_dir / NORMALISED_WEIGHTS_FILE)
        os.replace(run_dir / SAE_CFG_FILE, run_dir / NORMALISED_CFG_FILE)
    sae = load_sae(str(run_dir))
    scale = _scale_of(run_dir, sae)
    fold_activation_scale(sae, scale)
    meta = sae.cfg.metadata
    meta.activation_scale = 1.0
    meta[EXPORT_KEY] = {
        "activation_scale_folded": scale,
        "inputs": "raw hook activations (the normalisation x_norm = activation_scale * x is folded into the weights)",
        "normalised_sae": [NORMALISED_CFG_FILE, NORMALISED_WEIGHTS_FILE],
        "load": LOAD_NOTE,
    }
    tmp = run_dir / f".tmp-export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    sae.save_model(tmp)
    os.replace(tmp / SAE_WEIGHTS_FILE, run_dir / SAE_WEIGHTS_FILE)
    os.replace(tmp / SAE_CFG_FILE, run_dir / SAE_CFG_FILE)  # last: marks the export done
    shutil.rmtree(tmp, ignore_errors=True)
    return run_dir
