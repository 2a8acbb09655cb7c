"""TopK SAE (Gao et al. 2024, arXiv 2406.04093) with the AuxK dead-latent loss.

Conventions are those of :mod:`saerepro.sae.common`. With x̃ = x − b_dec (Gao's b_pre)::

    z = ReLU(TopK_k(x̃ W_enc + b_enc)),   x̂ = z W_dec + b_dec
    e = sg(x − x̂),   ê = z_aux W_dec,   z_aux = ReLU(TopK_{k_aux}(pre-activations of dead latents))
    L = ‖x − x̂‖² + α ‖e − ê‖²              (terms ``recon``, ``auxk``)

with k_aux = d_in/2 (Gao et al. App. A.2; configurable), α = 1/32, a latent dead when it has not
fired for ``dead_tokens_threshold`` tokens (Gao: 10M), unit-norm decoder, encoder initialised to
the decoder's transpose. The coefficient is k.

Inference reuses sae-lens' ``TopKSAE`` (encode/decode and its ``TopK`` activation: top-k of the
pre-activations, then ReLU), with ``rescale_acts_by_decoder_norm=False`` since our decoder rows have
unit norm. Training does not reuse sae-lens' ``TopKTrainingSAE``: [its AuxK hard-codes k_aux =
d_in/2, multiplies it by min(n_dead/k_aux, 1), omits the ReLU on the aux activations, and its
trainer does not hold the decoder at unit norm.] [Unlike OpenAI's code, both terms are plain
(un-normalised) squared errors, as in the paper's formula.]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sae_lens.saes.topk_sae import TopKSAE as StockTopKSAE
from sae_lens.saes.topk_sae import TopKSAEConfig as StockTopKSAEConfig
from torch import nn
from typing_extensions import override

from .common import (
    SAE_LENS_PREFIX,
    ArchTrainingConfig,
    LossOutput,
    SaeReproMixin,
    reconstruction_loss,
    sparse_output,
    zero_like_loss,
)
from .sparse import ActivePairs, active_encoder_values, decode_active


def topk_dead_acts(hidden_pre: torch.Tensor, dead_mask: torch.Tensor, k_aux: int) -> torch.Tensor:
    """ReLU of the ``k_aux`` largest pre-activations among dead latents, zeros elsewhere."""
    k_aux = min(k_aux, int(dead_mask.sum()))
    masked = torch.where(dead_mask[None], hidden_pre, torch.full_like(hidden_pre, -torch.inf))
    top = masked.topk(k_aux, dim=-1, sorted=False)
    acts = torch.zeros_like(hidden_pre)
    return acts.scatter(-1, top.indices, torch.relu(top.values))


def auxk_loss(residual: torch.Tensor, aux_acts: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """‖e − z_aux W_dec‖² averaged over the batch (unweighted); ``residual`` e = x − x̂, detached."""
    return reconstruction_loss(residual, aux_acts @ W_dec)


@dataclass
class TopKTrainingConfig(ArchTrainingConfig):
    """TopK's training settings (``TrainConfig.arch`` for architecture ``topk``); ``k`` is the
    run's coefficient."""

    k_aux: int | None = None
    """Dead latents in the AuxK term (None: d_in // 2, Gao et al.)."""

    auxk_coefficient: float = 1.0 / 32.0
    """α of the AuxK term (Gao et al.: 1/32)."""

    def __post_init__(self) -> None:
        if self.k_aux is not None and (
            not isinstance(self.k_aux, (int, np.integer)) or isinstance(self.k_aux, bool) or self.k_aux < 1
        ):
            self._bad("k_aux", self.k_aux, "None or an integer >= 1")
        if not self._finite(self.auxk_coefficient) or self.auxk_coefficient < 0:
            self._bad("auxk_coefficient", self.auxk_coefficient, "a finite number >= 0")

    @classmethod
    def check_coefficient(cls, coefficient: float, d_sae: int | None) -> float:
        """k: an integer >= 1 (made an int), at most ``d_sae``."""
        if float(coefficient) != int(coefficient) or coefficient < 1:
            raise ValueError(
                f"TrainConfig.coefficient must be an integer k >= 1 for architecture 'topk'; got {coefficient!r}"
            )
        k = int(coefficient)
        if d_sae is not None and k > d_sae:
            raise ValueError(f"TrainConfig.coefficient must be k <= d_sae ({d_sae}); got {k!r}")
        return k

    def sae_kwargs(self, coefficient: float) -> dict[str, Any]:
        return {"k": int(coefficient), "k_aux": self.k_aux, "auxk_coefficient": self.auxk_coefficient}


@dataclass
class TopKSAEConfig(StockTopKSAEConfig):
    """sae-lens TopK config plus the AuxK settings (``k`` is inherited).

    Args:
        k_aux: dead latents used by AuxK (None: d_in // 2, Gao et al.).
        auxk_coefficient: α of the AuxK term (Gao et al.: 1/32).
    """

    k_aux: int | None = None
    auxk_coefficient: float = 1.0 / 32.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rescale_acts_by_decoder_norm:
            raise ValueError("rescale_acts_by_decoder_norm must be False (decoder rows are unit norm)")
        if self.k < 1 or self.k > self.d_sae:
            raise ValueError(f"k must be in [1, d_sae={self.d_sae}], got {self.k}")
        TopKTrainingConfig(k_aux=self.k_aux, auxk_coefficient=self.auxk_coefficient)

    @override
    @classmethod
    def architecture(cls) -> str:
        return SAE_LENS_PREFIX + "topk"


class TopKSAE(SaeReproMixin, StockTopKSAE):
    """TopK SAE with AuxK, unit-norm decoder, encoder initialised to W_dec.T."""

    short_name = "topk"
    config_class = TopKSAEConfig
    training_config_class = TopKTrainingConfig
    loss_term_names = ("recon", "auxk")
    needs_dead_mask = True

    cfg: TopKSAEConfig  # type: ignore[assignment]
    b_enc: nn.Parameter

    def __init__(self, cfg: TopKSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)
        self._check_cfg()

    @override
    def initialize_weights(self) -> None:
        self._init_unit_decoder()
        self.b_enc = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))

    @property
    def k_aux(self) -> int:
        return self.cfg.k_aux if self.cfg.k_aux is not None else self.cfg.d_in // 2

    @override
    def loss_terms(self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None) -> LossOutput:
        hidden_pre = self._center(x) @ self.W_enc + self.b_enc
        feature_acts = self.activation_fn(hidden_pre)
        x_hat = feature_acts @ self.W_dec + self.b_dec
        recon = reconstruction_loss(x, x_hat)
        if dead_mask is not None and bool(dead_mask.any()):
            aux_acts = topk_dead_acts(hidden_pre, dead_mask, self.k_aux)
            residual = (x.to(x_hat.dtype) - x_hat).detach()
            aux = self.cfg.auxk_coefficient * auxk_loss(residual, aux_acts, self.W_dec)
        else:
            aux = zero_like_loss(recon)
        terms = {"recon": recon, "auxk": aux}
        return LossOutput(total=recon + aux, terms=terms, feature_acts=feature_acts, x_hat=x_hat)

    has_sparse_step = True

    @override
    def sparse_loss_terms(
        self, x: torch.Tensor, coefficient: float, dead_mask: torch.Tensor | None = None
    ) -> LossOutput:
        """:meth:`loss_terms` on the k selected latents per token (and the k_aux dead ones of AuxK):
        the one dense product is z = x̃ W_enc, the top-k selection reads it, and the decoders, the
        AuxK decoder and every backward product use only the selected pairs."""
        x = x.to(self.dtype)
        with torch.no_grad():
            x_centered = x - self.b_dec
            z = x_centered @ self.W_enc  # bf16 under autocast, as loss_terms' product
            hidden_pre = z + self.b_enc
            pairs = _topk_pairs(hidden_pre, self.cfg.k)
            z_top = z[pairs.rows, pairs.cols].to(self.dtype)
        z_top, _ = active_encoder_values(z_top, x_centered, self.W_enc, self.b_dec, pairs)
        values = torch.relu(z_top + self.b_enc[pairs.cols])
        x_hat = decode_active(pairs, values, self.W_dec) + self.b_dec
        recon = reconstruction_loss(x, x_hat)
        if dead_mask is not None and bool(dead_mask.any()):
            k_aux = min(self.k_aux, int(dead_mask.sum()))
            with torch.no_grad():
                masked = torch.where(dead_mask[None], hidden_pre, torch.full_like(hidden_pre, -torch.inf))
                aux_pairs = _topk_pairs(masked, k_aux)
                z_aux = z[aux_pairs.rows, aux_pairs.cols].to(self.dtype)
            z_aux, _ = active_encoder_values(z_aux, x_centered, self.W_enc, self.b_dec, aux_pairs)
            aux_values = torch.relu(z_aux + self.b_enc[aux_pairs.cols])
            residual = (x.to(x_hat.dtype) - x_hat).detach()
            aux = self.cfg.auxk_coefficient * reconstruction_loss(
                residual, decode_active(aux_pairs, aux_values, self.W_dec)
            )
        else:
            aux = zero_like_loss(recon)
        terms = {"recon": recon, "auxk": aux}
        return sparse_output(terms, pairs, values, x_hat)


def _topk_pairs(scores: torch.Tensor, k: int) -> ActivePairs:
    """The k highest-scoring latents of each row as pairs (k per row, so the offsets are fixed)."""
    batch, width = scores.shape
    indices = scores.topk(k, dim=-1, sorted=False).indices
    rows = torch.arange(batch, device=scores.device).repeat_interleave(k)
    offsets = torch.arange(batch, device=scores.device) * k
    return ActivePairs(rows, indices.reshape(-1), offsets, batch, width)
