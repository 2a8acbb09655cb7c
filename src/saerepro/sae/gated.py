"""Gated SAE (Rajamanoharan et al. 2024, arXiv 2404.16014) and its ablations.

Conventions (normalised inputs, summed-over-d_in / averaged-over-batch terms, unit-norm decoder)
are those of :mod:`saerepro.sae.common`. Encoder, with x̃ = x − b_dec::

    π_gate = x̃ W_gate + b_gate                      (W_gate is stored as ``W_enc``)
    π_mag  = x̃ W_mag + b_mag,   W_mag = W_gate ⊙ exp(r_mag)   (per latent, "weight tying")
    f      = 1[π_gate > 0] ⊙ ReLU(π_mag),   x̂ = f W_dec + b_dec

Loss (``recon``, ``sparsity``, ``aux`` below)::

    L = ‖x − x̂(f)‖² + λ ‖ReLU(π_gate)‖₁ + ‖x − x̂_frozen(ReLU(π_gate))‖²

x̂_frozen uses W_dec and b_dec with gradients stopped, *including* the b_dec inside π_gate's
centring, so the aux term is a function of (W_gate, b_gate) only: its gradient w.r.t. W_dec and
b_dec is exactly zero, as the paper states ("gradients from L_aux do not propagate back to W_dec
or b_dec"). [Differs from sae-lens' GatedTrainingSAE and common re-implementations, which stop
gradients only in the decoder copy, so b_dec gets an aux gradient through x̃.] The sparsity term
does see b_dec through x̃.

Because the weights are tied, W_mag x̃ is computed as (x̃ W_gate) ⊙ exp(r_mag): one encoder matmul,
so a training step costs one encoder and two decoder matmuls forward (the paper's reason for giving
the baseline 1.5× as many latents at equal compute). In training x̃ W_gate is computed as
x W_gate − b_dec W_gate, so that the aux term can stop b_dec's gradient without a second matmul.

Ablations (paper Fig. 9): ``gated_unfrozen_decoder`` (the aux term also updates W_dec and b_dec),
``gated_no_rmag`` (r_mag ≡ 0: no ``r_mag`` parameter), ``gated_untied`` (independent ``W_mag``
[d_in, d_sae], initialised to a copy of W_gate, no ``r_mag``).

Inference of ``gated`` and ``gated_unfrozen_decoder`` is identical to sae-lens' stock ``GatedSAE``
(same parameter names); :meth:`GatedSAE.as_jumprelu` gives the equivalent JumpReLU SAE (App. E).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAE, SAEConfig
from torch import nn
from typing_extensions import override

from .common import (
    SAE_LENS_PREFIX,
    LossOutput,
    SaeReproMixin,
    l1_penalty,
    reconstruction_loss,
)


def gated_aux_reconstruction_loss(
    x: torch.Tensor, gate_acts: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """‖x − (ReLU(π_gate) W_dec + b_dec)‖² averaged over the batch.

    Pass detached ``W_dec``/``b_dec`` for the paper's frozen-decoder aux term.
    """
    return reconstruction_loss(x, gate_acts @ W_dec + b_dec)


# --------------------------------------------------------------------------- configs


@dataclass
class GatedSAEConfig(SAEConfig):
    """sae-lens config of the paper's Gated SAE (no extra fields)."""

    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "gated"


@dataclass
class GatedUnfrozenDecoderSAEConfig(GatedSAEConfig):
    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "gated_unfrozen_decoder"


@dataclass
class GatedNoRmagSAEConfig(GatedSAEConfig):
    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "gated_no_rmag"


@dataclass
class GatedUntiedSAEConfig(GatedSAEConfig):
    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "gated_untied"


# --------------------------------------------------------------------------- modules


class GatedSAE(SaeReproMixin, SAE[GatedSAEConfig]):
    """The paper's Gated SAE with tied weights, r_mag, and frozen decoder in the aux term."""

    short_name = "gated"
    config_class = GatedSAEConfig
    loss_term_names = ("recon", "sparsity", "aux")
    coefficient_meaning = "λ (L1 on ReLU(π_gate))"

    #: W_mag = exp(r_mag) ⊙ W_gate (True) or an independent matrix (False).
    tied: ClassVar[bool] = True
    #: Whether r_mag is a parameter (False: r_mag ≡ 0).
    use_r_mag: ClassVar[bool] = True
    #: Whether the aux term's decoder (and b_dec) are gradient-stopped.
    freeze_decoder_in_aux: ClassVar[bool] = True

    b_gate: nn.Parameter
    b_mag: nn.Parameter
    r_mag: nn.Parameter
    W_mag: nn.Parameter

    def __init__(self, cfg: GatedSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self._check_cfg()

    @override
    def initialize_weights(self) -> None:
        self._init_unit_decoder()
        zeros = lambda: nn.Parameter(  # noqa: E731
            torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device)
        )
        self.b_gate = zeros()
        self.b_mag = zeros()
        if self.tied and self.use_r_mag:
            self.r_mag = zeros()
        if not self.tied:
            self.W_mag = nn.Parameter(self.W_enc.data.clone())

    def _pre_acts(self, sae_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(π_gate, π_mag) from the centred input x̃ = x − b_dec (inference path)."""
        return self._pre_acts_from_z(sae_in @ self.W_enc, sae_in)

    def _pre_acts_from_z(self, z: torch.Tensor, sae_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pi_gate = z + self.b_gate
        if not self.tied:
            pi_mag = sae_in @ self.W_mag + self.b_mag
        elif self.use_r_mag:
            pi_mag = z * self.r_mag.exp() + self.b_mag
        else:
            pi_mag = z + self.b_mag
        return pi_gate, pi_mag

    @override
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = self.process_sae_in(x)
        pi_gate, pi_mag = self._pre_acts(sae_in)
        pi_mag = self.hook_sae_acts_pre(pi_mag)
        feature_acts = (pi_gate > 0).to(pi_mag.dtype) * torch.relu(pi_mag)
        return self.hook_sae_acts_post(feature_acts)

    @override
    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self._linear_decode(feature_acts)

    @override
    def loss_terms(
        self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None
    ) -> LossOutput:
        x = x.to(self.dtype)
        # x̃ W_gate computed as x W_gate − b_dec W_gate, so that the aux term can use a frozen b_dec
        # (its gradient w.r.t. b_dec is then exactly 0) without a second [batch, d_in] matmul.
        zx = x @ self.W_enc
        b_dec_proj = self.b_dec @ self.W_enc
        sae_in = x - self.b_dec if not self.tied else x  # sae_in only used by the untied W_mag
        pi_gate, pi_mag = self._pre_acts_from_z(zx - b_dec_proj, sae_in)
        feature_acts = (pi_gate > 0).to(pi_mag.dtype) * torch.relu(pi_mag)
        x_hat = feature_acts @ self.W_dec + self.b_dec
        gate_acts = torch.relu(pi_gate)
        if self.freeze_decoder_in_aux:
            aux_gate_acts = torch.relu(zx - self.b_dec.detach() @ self.W_enc + self.b_gate)
            aux = gated_aux_reconstruction_loss(
                x, aux_gate_acts, self.W_dec.detach(), self.b_dec.detach()
            )
        else:
            aux = gated_aux_reconstruction_loss(x, gate_acts, self.W_dec, self.b_dec)
        terms = {
            "recon": reconstruction_loss(x, x_hat),
            "sparsity": coefficient * l1_penalty(gate_acts),
            "aux": aux,
        }
        total = terms["recon"] + terms["sparsity"] + terms["aux"]
        return LossOutput(total=total, terms=terms, feature_acts=feature_acts, x_hat=x_hat)

    @torch.no_grad()
    def jumprelu_threshold(self) -> torch.Tensor:
        """θ = b_mag − exp(r_mag) ⊙ b_gate of the equivalent JumpReLU SAE (paper App. E)."""
        if not self.tied:
            raise ValueError("only a Gated SAE with tied weights is a JumpReLU SAE")
        scale = self.r_mag.exp() if self.use_r_mag else torch.ones_like(self.b_mag)
        return self.b_mag - scale * self.b_gate

    @torch.no_grad()
    def as_jumprelu(self) -> JumpReLUSAE:
        """The sae-lens JumpReLU SAE with the same encodings (paper App. E).

        W_enc' = W_gate ⊙ exp(r_mag), b_enc' = b_mag, θ = b_mag − exp(r_mag) ⊙ b_gate; sae-lens'
        JumpReLU computes ReLU(z)·1[z > θ], equal to 1[π_gate > 0]·ReLU(π_mag) for any θ.
        """
        threshold = self.jumprelu_threshold()
        scale = self.r_mag.exp() if self.use_r_mag else torch.ones_like(self.b_mag)
        cfg = JumpReLUSAEConfig(
            d_in=self.cfg.d_in,
            d_sae=self.cfg.d_sae,
            dtype=self.cfg.dtype,
            device=str(self.W_enc.device),
            metadata=self.cfg.metadata,
        )
        out = JumpReLUSAE(cfg)
        out.W_enc.data.copy_(self.W_enc * scale)
        out.b_enc.data.copy_(self.b_mag)
        out.threshold.data.copy_(threshold)
        out.W_dec.data.copy_(self.W_dec)
        out.b_dec.data.copy_(self.b_dec)
        return out

    @override
    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        norms = self.fold_and_get_W_dec_norm()  # W_dec /= n, W_enc *= n
        self.b_gate.data.mul_(norms)
        self.b_mag.data.mul_(norms)
        if not self.tied:
            self.W_mag.data.mul_(norms)

    @override
    @torch.no_grad()
    def fold_activation_norm_scaling_factor(self, scaling_factor: float) -> None:
        super().fold_activation_norm_scaling_factor(scaling_factor)
        if not self.tied:
            self.W_mag.data.mul_(scaling_factor)


class GatedUnfrozenDecoderSAE(GatedSAE):
    """Ablation: the aux term's gradients also update W_dec and b_dec."""

    short_name = "gated_unfrozen_decoder"
    config_class = GatedUnfrozenDecoderSAEConfig
    freeze_decoder_in_aux = False


class GatedNoRmagSAE(GatedSAE):
    """Ablation: r_mag ≡ 0, i.e. W_mag = W_gate (no r_mag parameter)."""

    short_name = "gated_no_rmag"
    config_class = GatedNoRmagSAEConfig
    use_r_mag = False


class GatedUntiedSAE(GatedSAE):
    """Ablation: W_mag is an independent [d_in, d_sae] matrix (two encoder matmuls)."""

    short_name = "gated_untied"
    config_class = GatedUntiedSAEConfig
    tied = False
