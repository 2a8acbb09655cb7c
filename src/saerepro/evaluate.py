"""Evaluate one trained SAE: splice it into the LM on the fixed held-out tokens.

The SAE sees the site's activation at every position but BOS, scaled by the cache's
normalisation factor (E‖x‖² = d_in, the scale it was trained at); its reconstruction is scaled
back to model units and written in place of the activation. Reconstruction metrics (L0, γ, γ_c,
NMSE, % alive) are computed on the same tokens in normalised units (all are scale-free), and the
CE-based ones (loss recovered, ΔLM loss, KL) against the clean and zero-ablation CE that
``reference_ce`` computed once for this hook point.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .lm import batches, final_hidden
from .metrics import ReconstructionStats, mean_and_se, delta_lm_loss, loss_recovered, softcap_logits
from .sites import hook_name


def spliced_ce_and_kl(hidden_clean: torch.Tensor, hidden_spliced: torch.Tensor, W_U_T: torch.Tensor,
                      b_U: torch.Tensor | None, targets: torch.Tensor, softcap: float | None = None,
                      vocab_chunk: int = 32768) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token CE of the spliced logits and KL(clean ‖ spliced), in ONE pass over the vocab.

    With z the clean and w the spliced logits, KL = E_{softmax(z)}[z − w] − lse(z) + lse(w).
    The expectation is accumulated online like the log-sum-exp itself: a running max m of z and
    sums s = Σ e^{z−m}, a = Σ e^{z−m}(z − w), both rescaled by e^{m_old − m_new} when m grows.
    Two unembed matmuls per vocabulary chunk instead of the four a two-pass KL needs: the
    unembed dominates evaluation cost on a 262k vocabulary.

    ``W_U_T`` is the unembedding transposed and contiguous, [V, d]: a row slice of it is
    contiguous, whereas a column slice of W_U hits a slow strided matmul path on CPU (~1.5x).
    """
    n, vocab = hidden_clean.shape[0], W_U_T.shape[0]
    dev = hidden_clean.device
    m_c = torch.full((n,), -math.inf, device=dev)
    s_c = torch.zeros(n, device=dev)
    a_c = torch.zeros(n, device=dev)
    lse_s = torch.full((n,), -math.inf, device=dev)
    target_w = torch.empty(n, device=dev)
    for v0 in range(0, vocab, vocab_chunk):
        v1 = min(v0 + vocab_chunk, vocab)
        z = hidden_clean @ W_U_T[v0:v1].T
        w = hidden_spliced @ W_U_T[v0:v1].T
        if b_U is not None:
            z, w = z + b_U[v0:v1], w + b_U[v0:v1]
        z, w = softcap_logits(z.float(), softcap), softcap_logits(w.float(), softcap)
        m_new = torch.maximum(m_c, z.max(dim=1).values)
        rescale = torch.exp(m_c - m_new)
        e = torch.exp(z - m_new[:, None])
        s_c = s_c * rescale + e.sum(dim=1)
        a_c = a_c * rescale + (e * (z - w)).sum(dim=1)
        m_c = m_new
        lse_s = torch.logaddexp(lse_s, torch.logsumexp(w, dim=1))
        hit = (targets >= v0) & (targets < v1)
        if hit.any():
            rows = hit.nonzero(as_tuple=True)[0]
            target_w[rows] = w[rows, targets[rows] - v0]
    lse_c = m_c + torch.log(s_c)
    kl = (a_c / s_c - lse_c + lse_s).clamp_min(0.0)
    return lse_s - target_w, kl


@torch.no_grad()
def evaluate_sae(model, sae, layer: int, site: str, scale: float, eval_tokens: np.ndarray,
                 reference: dict, batch_size: int = 8, progress: bool = True) -> dict:
    """All metrics of ``sae`` at (layer, site); ``reference`` holds ce_clean and ce_zero."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    d_in = int(sae.cfg.d_in)
    recon = ReconstructionStats(d_in=d_in, n_latents=int(sae.cfg.d_sae), device=device)
    ce_parts, kl_parts = [], []
    softcap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    softcap = softcap if softcap and softcap > 0 else None

    def splice(act: torch.Tensor, hook) -> torch.Tensor:
        body = act[:, 1:]
        x = body.reshape(-1, d_in).float() * scale
        codes = sae.encode(x)
        x_hat = sae.decode(codes)
        recon.update(x, x_hat, codes)
        out = act.clone()
        out[:, 1:] = (x_hat / scale).reshape(body.shape).to(act.dtype)
        return out

    if hasattr(sae, "turn_off_forward_pass_hook_z_reshaping"):
        # sae-lens flattens [.., n_heads, d_head] itself for hook_z SAEs; we pass [N, d_in].
        sae.turn_off_forward_pass_hook_z_reshaping()
    W_U_T = model.W_U.T.contiguous()
    name = hook_name(layer, site)
    n_batches = (len(eval_tokens) + batch_size - 1) // batch_size
    for batch in tqdm(batches(eval_tokens, batch_size, device), total=n_batches,
                      desc=f"evaluate {name}", disable=not progress):
        clean = final_hidden(model, batch)[:, :-1].flatten(0, 1)
        spliced = final_hidden(model, batch, [(name, splice)])[:, :-1].flatten(0, 1)
        ce_sae, kl = spliced_ce_and_kl(clean, spliced, W_U_T, model.b_U,
                                       batch[:, 1:].reshape(-1), softcap=softcap)
        ce_parts.append(ce_sae)
        kl_parts.append(kl)
    out = recon.compute()
    out["ce_sae"], out["ce_sae_se"] = mean_and_se(torch.cat(ce_parts))
    out["kl"], out["kl_se"] = mean_and_se(torch.cat(kl_parts))
    out["n_eval_tokens"] = int(torch.cat(ce_parts).numel())
    out["ce_clean"] = float(reference["ce_clean"])
    out["ce_zero"] = float(reference["ce_zero"])
    out["loss_recovered"] = loss_recovered(out["ce_clean"], out["ce_sae"], out["ce_zero"])
    out["delta_lm_loss"] = delta_lm_loss(out["ce_clean"], out["ce_sae"])
    return out
