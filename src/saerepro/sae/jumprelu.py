"""JumpReLU SAE trained with an L0 penalty and straight-through estimators.

Rajamanoharan et al. 2024b, "Jumping Ahead" (arXiv 2407.14435), as used for Gemma Scope.
Conventions are those of :mod:`saerepro.sae.common`. With x̃ = x − b_dec and θ = exp(log_threshold)::

    z = x̃ W_enc + b_enc,   f = z ⊙ H(z − θ),   x̂ = f W_dec + b_dec
    L = ‖x − x̂‖² + λ ‖f‖₀ = ‖x − x̂‖² + λ Σ_i H(z_i − θ_i)      (terms ``recon``, ``sparsity``)

H is the Heaviside step. Gradients w.r.t. θ use the paper's pseudo-derivatives with a rectangle
kernel K of bandwidth ε (``bandwidth``, default 0.001): ∂f/∂θ = −(θ/ε) K((z − θ)/ε) and
∂H/∂θ = −(1/ε) K((z − θ)/ε); no straight-through gradient flows to z (∂H/∂z = 0, ∂f/∂z = H). These
are sae-lens' ``JumpReLU``/``Step`` autograd functions with ``ste_to_input=False``, reused here.
θ is trained as log θ (paper), initialised to ``init_threshold`` (paper: 0.001). The decoder is held
at unit norm like every SAE here. [sae-lens' ``JumpReLUTrainingSAE`` instead trains θ directly,
clamped at 0, and does not hold the decoder at unit norm; hence our own training class.]

Inference: f = ReLU(z)·1[z > θ], which equals z·1[z > θ] since θ > 0 (what sae-lens' ``JumpReLUSAE``
computes); the weights export to it with :meth:`JumpReLUSAE.as_sae_lens_jumprelu`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from sae_lens.saes.jumprelu_sae import JumpReLU, Step
from sae_lens.saes.jumprelu_sae import JumpReLUSAE as StockJumpReLUSAE
from sae_lens.saes.jumprelu_sae import JumpReLUSAEConfig as StockJumpReLUSAEConfig
from sae_lens.saes.sae import SAE, SAEConfig
from torch import nn
from typing_extensions import override

from .common import (
    SAE_LENS_PREFIX,
    ArchTrainingConfig,
    LossOutput,
    SaeReproMixin,
    reconstruction_loss,
    sparse_output,
)
from .sparse import ActivePairs, active_encoder_values, decode_active


def step_l0_penalty(hidden_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """mean_b Σ_i H(z_bi − θ_i) with the rectangle-kernel pseudo-derivative w.r.t. θ (unweighted)."""
    # a plain sum, not l1_penalty: |·| has zero gradient at H = 0, which would cut the STE there
    steps = Step.apply(hidden_pre, threshold, bandwidth, False)
    return steps.to(torch.promote_types(steps.dtype, torch.float32)).sum(dim=-1).mean()  # type: ignore[union-attr]


def jumprelu_ste(hidden_pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """z ⊙ H(z − θ) with the rectangle-kernel pseudo-derivative w.r.t. θ."""
    return JumpReLU.apply(hidden_pre, threshold, bandwidth, False)  # type: ignore[return-value]


@dataclass
class JumpReLUTrainingConfig(ArchTrainingConfig):
    """JumpReLU's training settings (``TrainConfig.arch`` for architecture ``jumprelu``).

    Both are in units where E‖x‖² = d_in (normalised activations); the paper's 0.001 is for
    E‖x‖² = 1.
    """

    bandwidth: float = 0.001
    """Bandwidth ε of the straight-through estimators' rectangle kernel."""

    init_threshold: float = 0.001
    """Initial threshold θ of every latent (``jumprelu_init_threshold`` in ``TrainConfig.to_dict()``)."""

    flat_keys: ClassVar[dict[str, str]] = {"init_threshold": "jumprelu_init_threshold"}

    def __post_init__(self) -> None:
        for name in ("bandwidth", "init_threshold"):
            value = getattr(self, name)
            if not self._finite(value) or value <= 0:
                self._bad(name, value, "a finite number > 0")


@dataclass
class JumpReLUSAEConfig(SAEConfig):
    """sae-lens config of the JumpReLU SAE.

    Args:
        bandwidth: ε of the rectangle kernel in the straight-through estimators.
        init_threshold: initial θ of every latent.
    """

    bandwidth: float = 0.001
    init_threshold: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        JumpReLUTrainingConfig(bandwidth=self.bandwidth, init_threshold=self.init_threshold)

    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "jumprelu"


class JumpReLUSAE(SaeReproMixin, SAE[JumpReLUSAEConfig]):
    """JumpReLU SAE with an L0 penalty (STE), log-parameterised thresholds, unit-norm decoder."""

    short_name = "jumprelu"
    config_class = JumpReLUSAEConfig
    training_config_class = JumpReLUTrainingConfig
    loss_term_names = ("recon", "sparsity")

    b_enc: nn.Parameter
    log_threshold: nn.Parameter

    def __init__(self, cfg: JumpReLUSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self._check_cfg()

    @override
    def initialize_weights(self) -> None:
        self._init_unit_decoder()
        d_sae = self.cfg.d_sae
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=self.dtype, device=self.device))
        self.log_threshold = nn.Parameter(
            torch.full((d_sae,), math.log(self.cfg.init_threshold), dtype=self.dtype, device=self.device)
        )

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    @override
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        acts = torch.relu(hidden_pre) * (hidden_pre > self.threshold).to(hidden_pre.dtype)
        return self.hook_sae_acts_post(acts)

    @override
    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        return self._linear_decode(feature_acts)

    @override
    def loss_terms(self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None) -> LossOutput:
        hidden_pre = self._center(x) @ self.W_enc + self.b_enc
        threshold = self.threshold.to(hidden_pre.dtype)
        bandwidth = self.cfg.bandwidth
        feature_acts = jumprelu_ste(hidden_pre, threshold, bandwidth)
        x_hat = feature_acts @ self.W_dec + self.b_dec
        terms = {
            "recon": reconstruction_loss(x, x_hat),
            "sparsity": coefficient * step_l0_penalty(hidden_pre, threshold, bandwidth),
        }
        return LossOutput(total=terms["recon"] + terms["sparsity"], terms=terms, feature_acts=feature_acts, x_hat=x_hat)

    has_sparse_step = True

    @override
    def sparse_loss_terms(
        self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None
    ) -> LossOutput:
        """:meth:`loss_terms` on the pairs where z − θ > −ε/2: above θ the latent is active, and
        within ε/2 below it only the straight-through estimators' rectangle kernel is non-zero;
        everywhere else f, H and every gradient are exactly 0. The pairs are passed to sae-lens'
        ``JumpReLU``/``Step`` functions as one row ([1, nnz], each pair with its latent's θ), so
        their per-latent θ gradient becomes a per-pair one, summed into θ by the gather's backward."""
        x = x.to(self.dtype)
        bandwidth = self.cfg.bandwidth
        with torch.no_grad():
            x_centered = x - self.b_dec
            z = x_centered @ self.W_enc  # bf16 under autocast, as loss_terms' product
            hidden_pre = z + self.b_enc
            pairs = ActivePairs.from_mask((hidden_pre - self.threshold.to(hidden_pre.dtype)) / bandwidth > -0.5)
            z_near = z[pairs.rows, pairs.cols].to(self.dtype)
        z_near, _ = active_encoder_values(z_near, x_centered, self.W_enc, self.b_dec, pairs)
        pre = (z_near + self.b_enc[pairs.cols])[None]
        threshold = self.threshold.to(pre.dtype)[pairs.cols]
        values = jumprelu_ste(pre, threshold, bandwidth)[0]
        x_hat = decode_active(pairs, values, self.W_dec) + self.b_dec
        steps = Step.apply(pre, threshold, bandwidth, False)
        l0 = steps.to(torch.promote_types(steps.dtype, torch.float32)).sum() / pairs.batch  # type: ignore[union-attr]
        terms = {"recon": reconstruction_loss(x, x_hat), "sparsity": coefficient * l0}
        return sparse_output(terms, pairs, values, x_hat)

    @override
    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        norms = self.fold_and_get_W_dec_norm()  # W_enc, b_enc *= n
        self.log_threshold.data.add_(norms.log())

    @torch.no_grad()
    def as_sae_lens_jumprelu(self) -> StockJumpReLUSAE:
        """The same SAE as sae-lens' stock ``jumprelu`` architecture (threshold = exp(log θ))."""
        cfg = StockJumpReLUSAEConfig(
            d_in=self.cfg.d_in,
            d_sae=self.cfg.d_sae,
            dtype=self.cfg.dtype,
            device=str(self.W_enc.device),
            metadata=self.cfg.metadata,
        )
        out = StockJumpReLUSAE(cfg)
        state: dict[str, Any] = {k: v.clone() for k, v in self.state_dict().items() if k != "log_threshold"}
        state["threshold"] = self.threshold.clone()
        out.load_state_dict(state)
        return out
