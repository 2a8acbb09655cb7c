"""Dead-latent resampling (Bricken et al. 2023, "Towards Monosemanticity") for the baseline and the
gated family.

The procedure is Bricken et al.'s, applied to each architecture's parameters: score a sample of
inputs by the SAE's squared reconstruction error, draw one input per dead latent with probability
∝ (that error)², and point the latent at it:

* decoder row W_dec[i] = the input, normalised to unit norm;
* encoder column = the same direction × ``encoder_scale`` (0.2) × the mean encoder-column norm of
  the alive latents (1 if none is alive), bias 0 — for ``baseline`` W_enc / b_enc; for the gated
  family the gate path W_gate (``W_enc``) / b_gate and the magnitude path: tied with r_mag, r_mag[i]
  = the alive latents' mean r_mag (so ‖W_mag[:, i]‖ is 0.2 × their mean ‖W_mag‖ as well, up to
  the spread of their gate norms); ``gated_untied``, W_mag[:, i] = the direction × 0.2 × the alive
  latents' mean ‖W_mag‖; ``gated_no_rmag`` has no r_mag (W_mag = W_gate); b_mag[i] = 0 throughout;
* every modified entry's Adam moments are zeroed.

With zero biases a resampled latent's gate and magnitude pre-activations are both
0.2·c·(x − b_dec)·d, so it fires (in every architecture) on inputs whose centred projection on its
new direction d is positive, in particular on the input it was drawn from, once b_dec is small
against it. The paper (arXiv 2404.16014, App. D.1.1) resamples as a general training detail of
"our SAE training", its Gated SAEs included.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .baseline import BaselineSAE
from .gated import GatedSAE


@torch.no_grad()
def resample_dead_latents(
    sae: BaselineSAE | GatedSAE,
    optimizer: torch.optim.Optimizer,
    dead_mask: torch.Tensor,
    inputs: torch.Tensor,
    generator: torch.Generator,
    encoder_scale: float = 0.2,
    batch_size: int = 4096,
) -> int:
    """Resample the latents of ``dead_mask`` as in the module docstring; returns how many.

    ``inputs`` are normalised activations [n, d_in] (float32). ``sae`` is a ``baseline`` or any of
    the gated family (other architectures raise TypeError).
    """
    if not isinstance(sae, (BaselineSAE, GatedSAE)):
        raise TypeError(f"resampling supports baseline and the gated family, not {type(sae).__name__}")
    dead = torch.nonzero(dead_mask.to(sae.W_dec.device)).flatten()
    n_dead = int(dead.numel())
    if n_dead == 0:
        return 0
    directions = _pick_directions(sae, inputs, n_dead, generator, batch_size)
    alive = ~dead_mask.to(sae.W_dec.device)
    any_alive = bool(alive.any())

    def alive_mean_norm(W: torch.Tensor) -> torch.Tensor:
        return W.norm(dim=0)[alive].mean() if any_alive else torch.tensor(1.0, device=W.device)

    sae.W_dec.data[dead] = directions
    _zero_adam_state(optimizer, sae.W_dec, lambda t: t.__setitem__(dead, 0.0))
    sae.W_enc.data[:, dead] = directions.T * (encoder_scale * alive_mean_norm(sae.W_enc))
    _zero_adam_state(optimizer, sae.W_enc, lambda t: t.__setitem__((slice(None), dead), 0.0))
    biases = ["b_enc"] if isinstance(sae, BaselineSAE) else ["b_gate", "b_mag"]
    if isinstance(sae, GatedSAE):
        if not sae.tied:
            sae.W_mag.data[:, dead] = directions.T * (encoder_scale * alive_mean_norm(sae.W_mag))
            _zero_adam_state(optimizer, sae.W_mag, lambda t: t.__setitem__((slice(None), dead), 0.0))
        elif sae.use_r_mag:
            sae.r_mag.data[dead] = sae.r_mag[alive].mean() if any_alive else 0.0
            biases.append("r_mag")
    for name in biases:
        param = getattr(sae, name)
        if name != "r_mag":
            param.data[dead] = 0.0
        _zero_adam_state(optimizer, param, lambda t: t.__setitem__(dead, 0.0))
    return n_dead


def _pick_directions(
    sae: BaselineSAE | GatedSAE, inputs: torch.Tensor, n: int, generator: torch.Generator, batch_size: int
) -> torch.Tensor:
    """``n`` inputs drawn with probability ∝ (squared reconstruction error)², unit-normed [n, d_in]."""
    losses = []
    for start in range(0, inputs.shape[0], batch_size):
        x = inputs[start : start + batch_size].to(sae.W_dec.device, sae.dtype)
        out = sae.loss_terms(x, 0.0)
        losses.append((x - out.x_hat).pow(2).sum(-1))
    weights = torch.cat(losses).float().pow(2)
    if not torch.isfinite(weights).all() or float(weights.sum()) <= 0:
        weights = torch.ones_like(weights)
    replace = n > int((weights > 0).sum())
    pick = torch.multinomial(weights.cpu(), n, replacement=replace, generator=generator)
    directions = inputs[pick].to(sae.W_dec.device, sae.dtype)
    return directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _zero_adam_state(optimizer: torch.optim.Optimizer, param: nn.Parameter, zero: Any) -> None:
    state = optimizer.state.get(param)
    if not state:
        return
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        if key in state and isinstance(state[key], torch.Tensor):
            zero(state[key])
