"""A toy architecture in one file, as a config's ``plugins`` entry adds one (docs/contributing.md).

``tanh_relu``: the baseline's ReLU SAE with a saturating sparsity penalty in place of the L1::

    f = ReLU((x − b_dec) W_enc + b_enc),   x̂ = f W_dec + b_dec
    L = ‖x − x̂‖² + λ Σ_i tanh(f_i)          (terms ``recon``, ``sparsity``), unit-norm decoder

tanh(f) ≈ f for small f and saturates at 1, so large activations are penalised less than under the
L1 (less shrinkage, a softer L0). Not one of the paper's architectures: it is here to show, and to
test, that an architecture needs this one file: its class, its torch-free spec and one
:func:`saerepro.sae.register_architecture` call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sae_lens.saes.sae import SAE, SAEConfig
from torch import nn

from saerepro.architectures import ArchitectureSpec
from saerepro.sae import SAE_LENS_PREFIX, LossOutput, SaeReproMixin, reconstruction_loss, register_architecture

NAME = "tanh_relu"


@dataclass
class TanhReluSAEConfig(SAEConfig):
    """sae-lens config of the tanh-penalty ReLU SAE (no extra fields)."""

    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + NAME


class TanhReluSAE(SaeReproMixin, SAE[TanhReluSAEConfig]):
    """ReLU SAE with a tanh sparsity penalty and a unit-norm decoder."""

    short_name = NAME
    config_class = TanhReluSAEConfig
    loss_term_names = ("recon", "sparsity")

    b_enc: nn.Parameter

    def __init__(self, cfg: TanhReluSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self._check_cfg()

    def initialize_weights(self) -> None:
        self._init_unit_decoder()
        self.b_enc = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(torch.relu(hidden_pre))

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self._linear_decode(feature_acts)

    def loss_terms(self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None) -> LossOutput:
        """x [batch, d_in] -> the loss; ``sparsity`` is λ · mean_b Σ_i tanh(f_bi) (≥ float32)."""
        feature_acts = torch.relu(self._center(x) @ self.W_enc + self.b_enc)
        x_hat = feature_acts @ self.W_dec + self.b_dec
        terms = {
            "recon": reconstruction_loss(x, x_hat),
            "sparsity": coefficient * torch.tanh(feature_acts.float()).sum(dim=-1).mean(),
        }
        return LossOutput(total=terms["recon"] + terms["sparsity"], terms=terms, feature_acts=feature_acts, x_hat=x_hat)


SPEC = ArchitectureSpec(
    NAME,
    label="ReLU, tanh penalty",
    color="#7F3C8D",
    marker="d",
    train_products=5,  # as the baseline: one encoder and one decoder product, forward and backward
    activation_tensors=4,
    linestyle=":",
)

register_architecture(TanhReluSAE, SPEC)
