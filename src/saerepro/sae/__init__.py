"""SAE architectures compared by saerepro, as sae-lens SAEs.

Importing this package registers every architecture with sae-lens, after which
``sae_lens.SAE.load_from_disk(path)`` loads any SAE saved by :func:`saerepro.training.train_sae`.
sae-lens has no plugin discovery: without ``import saerepro`` it fails with
``KeyError: 'saerepro_<architecture>'``. A run folder of the DAG is exported
(:mod:`saerepro.sae.export`) so that this SAE takes raw hook activations; :func:`load_sae` reads
the SAE as trained, on normalised activations.

=========================  =============================================  ==========================
name                       what                                           coefficient
=========================  =============================================  ==========================
``gated``                  Gated SAE, Rajamanoharan et al. 2024 (paper)   λ, L1 on ReLU(π_gate)
``baseline``               ReLU SAE + L1, unit-norm decoder (paper)       λ, L1 on f
``topk``                   TopK + AuxK, Gao et al. 2024                   k
``jumprelu``               JumpReLU + L0 via STE, Rajamanoharan 2024b     λ, L0
``gated_unfrozen_decoder`` ablation: aux term trains W_dec, b_dec        λ
``gated_no_rmag``          ablation: r_mag ≡ 0                            λ
``gated_untied``           ablation: independent W_mag                    λ
``gated_strict_aux``       ablation: aux term trains W_gate, b_gate only  λ
``baseline_rescale_shift`` ablation: frozen baseline + rescale & shift    λ of the baseline (label)
=========================  =============================================  ==========================

Conventions (input normalisation, how loss terms are reduced) are in :mod:`saerepro.sae.common`.
"""

from ..architectures import GATED_FAMILY, RESAMPLE_ARCHITECTURES
from .baseline import BaselineRescaleShiftSAE, BaselineSAE
from .common import (
    SAE_LENS_PREFIX,
    ArchTrainingConfig,
    LossOutput,
    SaeReproMixin,
    l0_norm,
    l1_penalty,
    reconstruction_loss,
)
from .gated import (
    GatedNoRmagSAE,
    GatedSAE,
    GatedStrictAuxSAE,
    GatedUnfrozenDecoderSAE,
    GatedUntiedSAE,
)
from .jumprelu import JumpReLUSAE, JumpReLUTrainingConfig
from .registry import (
    ARCHITECTURES,
    TRAINING_CONFIGS,
    check_architecture,
    load_sae,
    make_sae,
    register_architecture,
    register_with_sae_lens,
    sae_lens_architecture,
)
from .resample import resample_dead_latents
from .topk import TopKSAE, TopKTrainingConfig

register_with_sae_lens()

__all__ = [
    "ARCHITECTURES",
    "GATED_FAMILY",
    "RESAMPLE_ARCHITECTURES",
    "SAE_LENS_PREFIX",
    "TRAINING_CONFIGS",
    "ArchTrainingConfig",
    "BaselineRescaleShiftSAE",
    "BaselineSAE",
    "GatedNoRmagSAE",
    "GatedSAE",
    "GatedStrictAuxSAE",
    "GatedUnfrozenDecoderSAE",
    "GatedUntiedSAE",
    "JumpReLUSAE",
    "JumpReLUTrainingConfig",
    "LossOutput",
    "SaeReproMixin",
    "TopKSAE",
    "TopKTrainingConfig",
    "check_architecture",
    "l0_norm",
    "l1_penalty",
    "load_sae",
    "make_sae",
    "reconstruction_loss",
    "register_architecture",
    "register_with_sae_lens",
    "resample_dead_latents",
    "sae_lens_architecture",
]
