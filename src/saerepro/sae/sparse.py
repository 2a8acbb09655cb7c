"""Sparse kernels for SAE training steps: everything after the encoder product on the active pairs.

At the L0s we study (5–100 of 2,560 latents) more than 96% of every post-encoder tensor is zero.
Only the encoder's forward product needs every latent (each gate or pre-activation must be
evaluated); the decoder, the aux decoder, the L1 term and every backward product are non-zero only
at the active (row, latent) pairs. These kernels are plain PyTorch, CPU and GPU alike:

* :class:`ActivePairs`: the active pairs of a batch in row-major order (``rows``, ``cols``) with the
  ``offsets`` of each row's first pair, as ``embedding_bag`` takes them;
* :func:`active_encoder_values`: the encoder product's values at the pairs, computed densely by
  the caller, with a backward that is a sparse × dense product (the encoder's weight gradient,
  ``Gᵀ x̃``) and a vector–matrix product (the pre-encoder bias, ``−W_enc Σ_rows G``);
* :func:`sampled_product`: ``(x̃ W)[rows, cols]`` for a second encoder matrix (the untied gated
  ablation's W_mag) without the dense product;
* :func:`decode_active`: ``f W_dec`` from the pairs' values by ``embedding_bag`` (autograd gives
  the gradients of W_dec's active rows and of the values).

The maths these kernels speed up stays in each architecture's file (``sparse_loss_terms`` beside
the dense ``loss_terms``, which remains the readable reference; ``tests/sae/test_sae_sparse.py``
checks the two give equal losses and gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ActivePairs:
    """The non-zero (row, latent) pairs of a [batch, width] activation tensor, row-major."""

    rows: torch.Tensor
    """[nnz] int64 row of each pair, non-decreasing."""
    cols: torch.Tensor
    """[nnz] int64 latent of each pair."""
    offsets: torch.Tensor
    """[batch] int64 index of each row's first pair (``embedding_bag`` offsets)."""
    batch: int
    width: int

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> ActivePairs:
        """The pairs where the [batch, width] bool ``mask`` is True."""
        rows, cols = mask.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=mask.shape[0])
        offsets = torch.zeros_like(counts)
        offsets[1:] = counts.cumsum(0)[:-1]
        return cls(rows, cols, offsets, mask.shape[0], mask.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.rows.numel())

    @property
    def density(self) -> float:
        """Share of the batch's (row, latent) entries that are active."""
        return self.nnz / max(1, self.batch * self.width)

    def column_sum(self, values: torch.Tensor) -> torch.Tensor:
        """[width]: the sum of ``values`` (one per pair) over the rows, per latent."""
        return torch.zeros(self.width, dtype=values.dtype, device=values.device).index_add_(0, self.cols, values)

    def fired(self, values: torch.Tensor) -> torch.Tensor:
        """[width] bool: latents with a positive value in some row."""
        out = torch.zeros(self.width, dtype=torch.bool, device=values.device)
        out[self.cols[values > 0]] = True
        return out

    def l0(self, values: torch.Tensor) -> torch.Tensor:
        """Mean number of non-zero values per row."""
        return (values != 0).sum(dtype=torch.float32) / self.batch

    def to_dense(self, values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.batch, self.width, dtype=values.dtype, device=values.device)
        out[self.rows, self.cols] = values
        return out


class _ActiveEncoderValues(torch.autograd.Function):
    """Values of ``z = (x − b_dec) W`` at the active pairs, with a sparse backward.

    Forward returns the values the caller computed (twice: for the main terms and for an aux term).
    Backward: ``∂L/∂W = x̃ᵀ G`` as a sparse × dense product over the pairs (G: [batch, width] with
    the pairs' gradients; ``embedding_bag`` per latent, faster on the CPU than ``torch.sparse.mm``),
    and ``∂L/∂b_dec = −W Σ_rows G``; the aux copy's gradient reaches W always and b_dec only when
    ``aux_reaches_b_dec``.
    """

    @staticmethod
    def forward(ctx, values, x_centered, W, b_dec, rows, cols, aux_reaches_b_dec):  # type: ignore[override]
        ctx.save_for_backward(x_centered, W, rows, cols)
        ctx.aux_reaches_b_dec = aux_reaches_b_dec
        return values.clone(), values.clone()

    @staticmethod
    def backward(ctx, grad, grad_aux):  # type: ignore[override]
        x_centered, W, rows, cols = ctx.saved_tensors
        if grad is None:  # an output the loss did not use
            grad = torch.zeros(rows.shape, dtype=W.dtype, device=W.device)
        if grad_aux is None:
            grad_aux = torch.zeros_like(grad)
        grad_W = grad_b_dec = None
        width = W.shape[1]
        if ctx.needs_input_grad[2]:
            # ∂L/∂W[:, j] = Σ over latent j's pairs of g · x̃[row]: an embedding_bag over the rows of
            # x̃ with one bag per latent (pairs sorted by latent), then one transposing copy.
            g = (grad + grad_aux).to(x_centered.dtype)
            order = torch.argsort(cols, stable=True)
            counts = torch.bincount(cols, minlength=width)
            offsets = torch.zeros_like(counts)
            offsets[1:] = counts.cumsum(0)[:-1]
            grad_Wt = F.embedding_bag(rows[order], x_centered, offsets, mode="sum", per_sample_weights=g[order])
            grad_W = grad_Wt.mT.to(W.dtype).contiguous()
        if ctx.needs_input_grad[3]:
            g = grad + grad_aux if ctx.aux_reaches_b_dec else grad
            column = torch.zeros(width, dtype=W.dtype, device=W.device).index_add_(0, cols, g.to(W.dtype))
            grad_b_dec = -(W @ column)
        return None, None, grad_W, grad_b_dec, None, None, None


def active_encoder_values(
    values: torch.Tensor,
    x_centered: torch.Tensor,
    W: torch.Tensor,
    b_dec: torch.Tensor,
    pairs: ActivePairs,
    aux_reaches_b_dec: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_a, z_a for an aux term): ``values`` = ((x − b_dec) W)[pairs] as computed by the caller,
    made differentiable in W and b_dec by a sparse backward (:class:`_ActiveEncoderValues`).

    ``x_centered`` is x − b_dec, detached, in the dtype the weight gradient is computed in."""
    out = _ActiveEncoderValues.apply(values, x_centered, W, b_dec, pairs.rows, pairs.cols, aux_reaches_b_dec)
    return out[0], out[1]


@torch.no_grad()
def sampled_product(x_centered: torch.Tensor, W: torch.Tensor, pairs: ActivePairs, chunk: int = 8192) -> torch.Tensor:
    """``(x_centered @ W)[pairs.rows, pairs.cols]`` without the dense product (nnz dot products of
    length d_in, in chunks of ``chunk`` pairs)."""
    out = torch.empty(pairs.nnz, dtype=torch.promote_types(x_centered.dtype, W.dtype), device=W.device)
    Wt = W.mT
    for start in range(0, pairs.nnz, chunk):
        r, c = pairs.rows[start : start + chunk], pairs.cols[start : start + chunk]
        out[start : start + chunk] = (x_centered[r] * Wt[c]).sum(-1)
    return out


def decode_active(pairs: ActivePairs, values: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """[batch, d_in] = f W_dec for f non-zero only at ``pairs`` (``values``), by ``embedding_bag``."""
    return F.embedding_bag(
        pairs.cols,
        W_dec,
        pairs.offsets,
        mode="sum",
        per_sample_weights=values.to(W_dec.dtype),
        include_last_offset=False,
    )


__all__ = ["ActivePairs", "active_encoder_values", "decode_active", "sampled_product"]
