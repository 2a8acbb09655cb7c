"""Gated SAE (Rajamanoharan et al. 2024, arXiv 2404.16014) and its ablations.

Conventions (normalised inputs, summed-over-d_in / averaged-over-batch terms, unit-norm decoder)
are those of :mod:`saerepro.sae.common`. Encoder::

    x̃      = x − b_dec
    π_gate = x̃ W_gate + b_gate                      (W_gate is stored as ``W_enc``)
    π_mag  = x̃ W_mag + b_mag,   W_mag = W_gate ⊙ exp(r_mag)   (per latent, "weight tying")
    f      = 1[π_gate > 0] ⊙ ReLU(π_mag),   x̂ = f W_dec + b_dec

Training follows the paper's pseudo-code (its appendix figure "Pseudo-code for Gated SAEs and the
Gated SAE loss function"), paraphrased here, not quoted::

    x_center  = x - b_dec                                   # live b_dec, computed once
    pi_gate   = x_center @ W_gate + b_gate
    f         = (pi_gate > 0) * relu(x_center @ W_mag + b_mag)
    x_hat     = f @ W_dec + b_dec
    L_recon   = sum((x - x_hat)**2, -1)
    L_sparse  = l1_coef * sum(relu(pi_gate), -1)            # L1 on the gate path only
    x_hat_aux = relu(pi_gate) @ stop_gradient(W_dec) + stop_gradient(b_dec)
    L_aux     = sum((x - x_hat_aux)**2, -1)
    loss      = mean over the batch of L_recon + L_sparse + L_aux

i.e. here ``recon``, ``sparsity`` and ``aux``. Gradients are stopped only in the aux term's decoder
copy, so the aux term's gradient w.r.t. W_dec is zero but it *does* reach b_dec, through the
centring x̃ = x − b_dec inside π_gate. dictionary_learning's ``GatedSAETrainer`` (trainers/gdm.py)
does the same. sae-lens' ``GatedTrainingSAE`` (6.54) differs: its aux reconstruction stops no
gradient at all (our ``gated_unfrozen_decoder``) and it weights the L1 term by the decoder-row norms.

π_gate is computed in the centred order (subtract b_dec first, then one matmul). Under bf16
autocast this matters: x W − b_dec W rounds both products to bf16 before they cancel, so its error
scales with ‖x W‖ rather than ‖x̃ W‖; where the activations' mean (≈ b_dec) is 20× their spread the
relative error of π_gate is ~20× larger than the centred order's (tests/sae/test_sae_gated.py).

Because the weights are tied, W_mag x̃ is computed as (x̃ W_gate) ⊙ exp(r_mag): one encoder matmul,
so a training step costs one encoder and two decoder matmuls forward (the paper's reason for giving
the baseline 1.5× as many latents at equal compute).

Ablations (paper Fig. 9, plus one of ours), each a subclass of :class:`GatedSAE`:

* ``gated_unfrozen_decoder``: no stop-gradient in the aux term, which then also trains W_dec and
  b_dec (through its decoder copy as well as through x̃).
* ``gated_no_rmag``: r_mag ≡ 0 (no ``r_mag`` parameter), W_mag = W_gate.
* ``gated_untied``: independent ``W_mag`` [d_in, d_sae], initialised to a copy of W_gate, no
  ``r_mag``; π_mag = x̃ W_mag + b_mag with the same live x̃.
* ``gated_strict_aux``: the aux term is a function of (W_gate, b_gate) only: besides the decoder
  copy, the b_dec inside the aux term's π_gate is gradient-stopped too, so the aux gradient w.r.t.
  W_dec and b_dec is exactly zero (a literal reading of the paper's main text, which describes
  x̂_frozen as a frozen copy of the decoder meant to keep L_aux's gradients off W_dec and b_dec;
  saerepro's ``gated`` was this until it was made to follow the pseudo-code). Its forward
  values equal ``gated``'s bit for bit: π_gate and the aux term's π_gate are two outputs of one
  matmul (:class:`_GateProjection`), whose backward sends the aux copy's gradient to W_gate only.
  Same cost as ``gated``.

Inference of ``gated``, ``gated_unfrozen_decoder`` and ``gated_strict_aux`` is identical to sae-lens'
stock ``GatedSAE`` (same parameter names); :meth:`GatedSAE.as_jumprelu` gives the equivalent
JumpReLU SAE of every tied variant (App. E).
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
    l1_penalty_active,
    reconstruction_loss,
    sparse_output,
)
from .sparse import ActivePairs, active_encoder_values, decode_active, sampled_product


def gated_aux_reconstruction_loss(
    x: torch.Tensor, gate_acts: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """‖x − (ReLU(π_gate) W_dec + b_dec)‖² averaged over the batch.

    Pass detached ``W_dec``/``b_dec`` for the paper's frozen-decoder aux term.
    """
    return reconstruction_loss(x, gate_acts @ W_dec + b_dec)


class _GateProjection(torch.autograd.Function):
    """(z, z_aux) = (x̃ W_gate, the same values) from one matmul, for ``gated_strict_aux``.

    Backward: both copies' gradients train W_gate (one weight-gradient matmul on their sum), but only
    z's gradient flows on into x̃ (and so into b_dec); z_aux's never does, so a loss term built from
    z_aux has exactly zero gradient w.r.t. b_dec. The cost is that of a plain ``x̃ @ W_gate``.

    Under autocast the matmul runs as autocast would run it (inputs other than float64 cast to the
    autocast dtype), and the cast operands are kept for backward, which runs outside autocast.
    """

    @staticmethod
    def forward(ctx, sae_in: torch.Tensor, W: torch.Tensor):  # type: ignore[override]
        device = sae_in.device.type
        a, b = sae_in, W
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            a = a if a.dtype == torch.float64 else a.to(dtype)
            b = b if b.dtype == torch.float64 else b.to(dtype)
        with torch.autocast(device_type=device, enabled=False):
            z = a @ b
        ctx.save_for_backward(a, b)
        ctx.in_dtypes = (sae_in.dtype, W.dtype)
        return z, z.view_as(z)

    @staticmethod
    def backward(ctx, grad_z: torch.Tensor, grad_z_aux: torch.Tensor):  # type: ignore[override]
        a, b = ctx.saved_tensors
        grad_in = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_in = (grad_z.to(b.dtype) @ b.mT).to(ctx.in_dtypes[0])
        if ctx.needs_input_grad[1]:
            g = (grad_z + grad_z_aux).to(a.dtype)
            grad_w = (a.reshape(-1, a.shape[-1]).mT @ g.reshape(-1, g.shape[-1])).to(ctx.in_dtypes[1])
        return grad_in, grad_w


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


@dataclass
class GatedStrictAuxSAEConfig(GatedSAEConfig):
    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "gated_strict_aux"


# --------------------------------------------------------------------------- modules


class GatedSAE(SaeReproMixin, SAE[GatedSAEConfig]):
    """The paper's Gated SAE (its pseudo-code): tied weights, r_mag, and an aux term whose decoder
    copy (W_dec, b_dec) is gradient-stopped while its π_gate uses the live centring x − b_dec."""

    short_name = "gated"
    config_class = GatedSAEConfig
    loss_term_names = ("recon", "sparsity", "aux")

    #: W_mag = exp(r_mag) ⊙ W_gate (True) or an independent matrix (False).
    tied: ClassVar[bool] = True
    #: Whether r_mag is a parameter (False: r_mag ≡ 0).
    use_r_mag: ClassVar[bool] = True
    #: Whether the aux term's decoder copy (W_dec and b_dec in x̂_frozen) is gradient-stopped.
    freeze_decoder_in_aux: ClassVar[bool] = True
    #: Whether the aux term's gradient reaches b_dec through the centring x̃ = x − b_dec in π_gate
    #: (the paper's pseudo-code: True; ``gated_strict_aux``: False).
    aux_grad_through_centring: ClassVar[bool] = True

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

    def training_pre_acts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(π_gate, π_mag, π_gate for the aux term) of the training path.

        x̃ = x − b_dec is computed once with the live b_dec, then π_gate = x̃ W_gate + b_gate (one
        matmul, centred first: no bf16 cancellation). The aux copy of π_gate is the same tensor,
        except for ``gated_strict_aux`` where it has the same values but passes no gradient to b_dec.
        """
        sae_in = self._center(x)
        if self.aux_grad_through_centring and self.tied:
            # Same values as sae_in @ W_enc. Autograd would get b_dec's gradient through x̃ as
            # −Σ_batch(∂L/∂z Wᵀ): a [batch, d_sae] x [d_sae, d_in] matmul, 1/7 of the step. The
            # zero-valued second term routes it as −(Σ_batch ∂L/∂z) Wᵀ, one vector-matrix product.
            b_dec = self.b_dec
            z = (x.to(self.dtype) - b_dec.detach()) @ self.W_enc - (b_dec - b_dec.detach()) @ self.W_enc
            pi_gate, pi_mag = self._pre_acts_from_z(z, sae_in)
            return pi_gate, pi_mag, pi_gate
        if self.aux_grad_through_centring:
            z = sae_in @ self.W_enc
            pi_gate, pi_mag = self._pre_acts_from_z(z, sae_in)
            return pi_gate, pi_mag, pi_gate
        z, z_aux = _GateProjection.apply(sae_in, self.W_enc)
        pi_gate, pi_mag = self._pre_acts_from_z(z, sae_in)
        return pi_gate, pi_mag, z_aux + self.b_gate

    @override
    def loss_terms(self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None) -> LossOutput:
        x = x.to(self.dtype)
        pi_gate, pi_mag, pi_gate_aux = self.training_pre_acts(x)
        feature_acts = (pi_gate > 0).to(pi_mag.dtype) * torch.relu(pi_mag)
        x_hat = feature_acts @ self.W_dec + self.b_dec
        gate_acts = torch.relu(pi_gate)
        aux_gate_acts = gate_acts if pi_gate_aux is pi_gate else torch.relu(pi_gate_aux)
        if self.freeze_decoder_in_aux:
            aux = gated_aux_reconstruction_loss(x, aux_gate_acts, self.W_dec.detach(), self.b_dec.detach())
        else:
            aux = gated_aux_reconstruction_loss(x, aux_gate_acts, self.W_dec, self.b_dec)
        terms = {
            "recon": reconstruction_loss(x, x_hat),
            "sparsity": coefficient * l1_penalty(gate_acts),
            "aux": aux,
        }
        total = terms["recon"] + terms["sparsity"] + terms["aux"]
        return LossOutput(total=total, terms=terms, feature_acts=feature_acts, x_hat=x_hat)

    has_sparse_step = True

    @override
    def sparse_loss_terms(
        self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None
    ) -> LossOutput:
        """:meth:`loss_terms` on the open gates only.

        The one dense product is z = x̃ W_gate (under autocast as in :meth:`loss_terms`). A gate is
        open where π_gate = z + b_gate > 0; there f = ReLU(π_mag) and ReLU(π_gate) = π_gate, and
        everywhere else both are exactly 0 with zero gradient (the Heaviside passes none, and
        ReLU's is 0 below 0). So the decoder, the aux decoder, the L1 term and every backward
        product need only the open pairs: the encoder's weight gradient is a sparse × dense product
        and b_dec's a vector–matrix product (:func:`active_encoder_values`), both decoders are
        ``embedding_bag`` s (:func:`decode_active`). For ``gated_strict_aux`` the aux copy of the
        pairs' π_gate passes no gradient to b_dec, as :class:`_GateProjection` does densely.
        """
        x = x.to(self.dtype)
        b_dec = self.b_dec
        with torch.no_grad():
            x_centered = x - b_dec
            z = x_centered @ self.W_enc  # bf16 under autocast, as loss_terms' product
            pairs = ActivePairs.from_mask(z > -self.b_gate)  # = (z + b_gate > 0) in IEEE arithmetic, one pass
            z_open = z[pairs.rows, pairs.cols].to(self.dtype)
        z_open, z_open_aux = active_encoder_values(
            z_open, x_centered, self.W_enc, b_dec, pairs, aux_reaches_b_dec=self.aux_grad_through_centring
        )
        cols = pairs.cols
        gate_acts = z_open + self.b_gate[cols]  # π_gate > 0 at every pair: ReLU(π_gate) = π_gate
        if not self.tied:
            mag = active_encoder_values(
                sampled_product(x_centered, self.W_mag, pairs), x_centered, self.W_mag, b_dec, pairs
            )
            pi_mag = mag[0] + self.b_mag[cols]
        elif self.use_r_mag:
            pi_mag = z_open * self.r_mag.exp()[cols] + self.b_mag[cols]
        else:
            pi_mag = z_open + self.b_mag[cols]
        values = torch.relu(pi_mag)
        x_hat = decode_active(pairs, values, self.W_dec) + b_dec
        aux_gate_acts = gate_acts if self.aux_grad_through_centring else z_open_aux + self.b_gate[cols]
        if self.freeze_decoder_in_aux:
            x_hat_aux = decode_active(pairs, aux_gate_acts, self.W_dec.detach()) + b_dec.detach()
        else:
            x_hat_aux = decode_active(pairs, aux_gate_acts, self.W_dec) + b_dec
        terms = {
            "recon": reconstruction_loss(x, x_hat),
            "sparsity": coefficient * l1_penalty_active(gate_acts, pairs.batch),
            "aux": reconstruction_loss(x, x_hat_aux),
        }
        return sparse_output(terms, pairs, values, x_hat)

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
    """Ablation: no stop-gradient in the aux term: it also updates W_dec, and b_dec through both its
    decoder copy and the centring (sae-lens' GatedTrainingSAE aux term, without its norm-weighted L1)."""

    short_name = "gated_unfrozen_decoder"
    config_class = GatedUnfrozenDecoderSAEConfig
    freeze_decoder_in_aux = False


class GatedNoRmagSAE(GatedSAE):
    """Ablation: r_mag ≡ 0, i.e. W_mag = W_gate (no r_mag parameter)."""

    short_name = "gated_no_rmag"
    config_class = GatedNoRmagSAEConfig
    use_r_mag = False


class GatedUntiedSAE(GatedSAE):
    """Ablation: W_mag is an independent [d_in, d_sae] matrix (two encoder matmuls, both on the same
    live x̃ = x − b_dec)."""

    short_name = "gated_untied"
    config_class = GatedUntiedSAEConfig
    tied = False
    # Its separate W_mag needs a sampled product per active pair: sparse steps were 0.47-0.82x the
    # dense step between densities 0.02 and 0.06 (docs/performance.md, AMD EPYC, bf16).
    sparse_max_density = 0.02


class GatedStrictAuxSAE(GatedSAE):
    """Ablation: the aux term is a function of (W_gate, b_gate) only.

    Its gradient w.r.t. W_dec and b_dec is exactly zero: the decoder copy is detached as in ``gated``
    and, unlike ``gated``, so is the b_dec inside the aux term's π_gate. Implemented with
    :class:`_GateProjection` (one matmul, two outputs), so every forward value equals ``gated``'s bit
    for bit and the cost is ``gated``'s. (saerepro's ``gated`` used to get this by computing
    x̃ W_gate as x W_gate − b_dec W_gate, which cancels badly under bf16 autocast where the mean
    dominates the activations; not used any more.)
    """

    short_name = "gated_strict_aux"
    config_class = GatedStrictAuxSAEConfig
    aux_grad_through_centring = False
