"""The paper's baseline ReLU SAE, its neuron resampling, and the "baseline + rescale & shift" ablation.

Conventions are those of :mod:`saerepro.sae.common`.

``baseline`` (Rajamanoharan et al. 2024, Sec. 2; Bricken et al. 2023)::

    f = ReLU((x − b_dec) W_enc + b_enc),   x̂ = f W_dec + b_dec
    L = ‖x − x̂‖² + λ ‖f‖₁                 (terms ``recon``, ``sparsity``), unit-norm decoder

[Differs from sae-lens' ``standard``: that weights the L1 term by decoder row norms and does not
constrain them.] Optional neuron resampling (:func:`saerepro.sae.resample.resample_dead_latents`)
follows Bricken et al. "Towards Monosemanticity" (resampling appendix); the trainer re-warms the
learning rate after each resample.

``baseline_rescale_shift`` (paper Sec. 5.1 / Fig. 9, "Baseline + rescale & shift"): a trained
baseline SAE is frozen (W_enc, b_enc, W_dec, b_dec) and only a per-latent rescale exp(r_mag) and
shift b_mag of the *active* latents' magnitudes are learned::

    π = (x − b_dec) W_enc + b_enc            (the frozen baseline's pre-activation)
    f = 1[π > 0] ⊙ ReLU(exp(r_mag) ⊙ π + b_mag)
    L = ‖x − x̂‖²                              (term ``recon`` only)

The active set (hence L0) is exactly the baseline's; at r_mag = b_mag = 0 (the initialisation) the
SAE *is* the baseline. It equals a tied-weight Gated SAE with W_gate = W_enc, b_gate = b_enc frozen
and b_mag' = b_mag + exp(r_mag)⊙b_enc, i.e. it fixes shrinkage without changing which latents fire.
No sparsity penalty: the frozen gate already fixes the sparsity, and an L1 on f would reintroduce
shrinkage. (Our precise reading of the paper's one-paragraph description.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
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
from .sparse import ActivePairs, active_encoder_values, decode_active


@dataclass
class BaselineSAEConfig(SAEConfig):
    """sae-lens config of the paper's baseline SAE (no extra fields)."""

    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "baseline"


@dataclass
class BaselineRescaleShiftSAEConfig(SAEConfig):
    """sae-lens config of the frozen baseline + learned rescale & shift."""

    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "baseline_rescale_shift"


class BaselineSAE(SaeReproMixin, SAE[BaselineSAEConfig]):
    """ReLU SAE with an L1 penalty and unit-norm decoder (the paper's baseline)."""

    short_name = "baseline"
    config_class = BaselineSAEConfig
    loss_term_names = ("recon", "sparsity")

    b_enc: nn.Parameter

    def __init__(self, cfg: BaselineSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self._check_cfg()

    @override
    def initialize_weights(self) -> None:
        self._init_unit_decoder()
        self.b_enc = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))

    @override
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(torch.relu(hidden_pre))

    @override
    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self._linear_decode(feature_acts)

    @override
    def loss_terms(self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None) -> LossOutput:
        feature_acts = torch.relu(self._center(x) @ self.W_enc + self.b_enc)
        x_hat = feature_acts @ self.W_dec + self.b_dec
        terms = {
            "recon": reconstruction_loss(x, x_hat),
            "sparsity": coefficient * l1_penalty(feature_acts),
        }
        return LossOutput(
            total=terms["recon"] + terms["sparsity"],
            terms=terms,
            feature_acts=feature_acts,
            x_hat=x_hat,
        )

    has_sparse_step = True

    @override
    def sparse_loss_terms(
        self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None
    ) -> LossOutput:
        """:meth:`loss_terms` on the active pairs: the one dense product is z = x̃ W_enc; f = z + b_enc
        where that is positive and exactly 0 (with zero gradient) elsewhere, so the decoder, the L1
        term and every backward product need only those pairs (:mod:`saerepro.sae.sparse`)."""
        x = x.to(self.dtype)
        with torch.no_grad():
            x_centered = x - self.b_dec
            z = x_centered @ self.W_enc  # bf16 under autocast, as loss_terms' product
            pairs = ActivePairs.from_mask(z > -self.b_enc)  # = (z + b_enc > 0) in IEEE arithmetic, one pass
            z_active = z[pairs.rows, pairs.cols].to(self.dtype)
        z_active, _ = active_encoder_values(z_active, x_centered, self.W_enc, self.b_dec, pairs)
        values = z_active + self.b_enc[pairs.cols]  # > 0 at every pair: ReLU is the identity there
        x_hat = decode_active(pairs, values, self.W_dec) + self.b_dec
        terms = {
            "recon": reconstruction_loss(x, x_hat),
            "sparsity": coefficient * l1_penalty_active(values, pairs.batch),
        }
        return sparse_output(terms, pairs, values, x_hat)


class BaselineRescaleShiftSAE(SaeReproMixin, SAE[BaselineRescaleShiftSAEConfig]):
    """A frozen baseline SAE with learned per-latent rescale exp(r_mag) and shift b_mag."""

    short_name = "baseline_rescale_shift"
    config_class = BaselineRescaleShiftSAEConfig
    loss_term_names = ("recon",)
    unit_norm_decoder = False  # the decoder is frozen (and unit-norm from the baseline)
    frozen_parameter_names = ("W_enc", "b_enc", "W_dec", "b_dec")

    b_enc: nn.Parameter
    r_mag: nn.Parameter
    b_mag: nn.Parameter

    def __init__(self, cfg: BaselineRescaleShiftSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self._check_cfg()
        self.freeze_frozen_parameters_()

    @override
    def initialize_weights(self) -> None:
        self._init_unit_decoder()
        for name in ("b_enc", "r_mag", "b_mag"):
            setattr(
                self,
                name,
                nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device)),
            )

    @torch.no_grad()
    def load_baseline_(self, baseline: BaselineSAE) -> None:
        """Copy (and freeze) a trained baseline's weights; reset r_mag = b_mag = 0."""
        if (baseline.cfg.d_in, baseline.cfg.d_sae) != (self.cfg.d_in, self.cfg.d_sae):
            raise ValueError(
                f"baseline has d_in={baseline.cfg.d_in}, d_sae={baseline.cfg.d_sae}; this SAE "
                f"has d_in={self.cfg.d_in}, d_sae={self.cfg.d_sae}"
            )
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(self, name).data.copy_(getattr(baseline, name).data)
        self.r_mag.data.zero_()
        self.b_mag.data.zero_()
        self.freeze_frozen_parameters_()

    def _acts(self, pi: torch.Tensor) -> torch.Tensor:
        return (pi > 0).to(pi.dtype) * torch.relu(pi * self.r_mag.exp() + self.b_mag)

    @override
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = self.process_sae_in(x)
        pi = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(self._acts(pi))

    @override
    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self._linear_decode(feature_acts)

    @override
    def loss_terms(self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None) -> LossOutput:
        feature_acts = self._acts(self._center(x) @ self.W_enc + self.b_enc)
        x_hat = feature_acts @ self.W_dec + self.b_dec
        recon = reconstruction_loss(x, x_hat)
        return LossOutput(total=recon, terms={"recon": recon}, feature_acts=feature_acts, x_hat=x_hat)

    @override
    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        norms = self.fold_and_get_W_dec_norm()  # also scales b_enc
        self.b_mag.data.mul_(norms)
