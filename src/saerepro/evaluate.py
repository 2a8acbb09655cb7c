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

from .lm import batches, final_hidden, zero_ablation_hook
from .metrics import (
    ReconstructionStats,
    chunked_cross_entropy,
    cluster_ratio,
    delta_lm_loss,
    loss_recovered,
    mean_and_se,
    paired_loss_stats,
    sequence_mean_and_se,
    softcap_logits,
)
from .sites import hook_name

PRECISIONS = ("float32", "bfloat16")


def spliced_ce_and_kl(
    hidden_clean: torch.Tensor,
    hidden_spliced: torch.Tensor,
    W_U_T: torch.Tensor,
    b_U: torch.Tensor | None,
    targets: torch.Tensor,
    softcap: float | None = None,
    vocab_chunk: int = 32768,
) -> tuple[torch.Tensor, torch.Tensor]:
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
def clean_distribution_stats(
    hidden: torch.Tensor, W_U_T: torch.Tensor, b_U: torch.Tensor | None, targets: torch.Tensor, vocab_chunk: int = 32768
) -> dict[str, torch.Tensor]:
    """What KL(clean ‖ spliced) needs from the clean distribution, so evaluation unembeds once.

    With p = softmax(z), z = W_U h + b the clean logits and w = W_U h' + b the spliced ones,

        KL(p ‖ softmax(w)) = E_p[z] − lse(z) − E_p[w] + lse(w),   E_p[w] = μ·h' + p·b,

    where μ = Σ_v p_v W_U[:, v] is one d-vector per token. So per token we keep ``lse`` = lse(z),
    ``ez`` = E_p[z], ``mu`` = μ [N, d] and ``pb`` = p·b, plus the clean ``ce``; all accumulated
    online over vocabulary chunks like the log-sum-exp itself (sums of e^{z−m}, rescaled when the
    running max m grows). Only valid for models without logit soft-capping (then w is not linear
    in h'); :func:`evaluate_sae` falls back to the two-matmul path there.
    """
    n, vocab = hidden.shape[0], W_U_T.shape[0]
    dev = hidden.device
    m = torch.full((n,), -math.inf, device=dev)
    s = torch.zeros(n, device=dev)
    a = torch.zeros(n, device=dev)
    mu = torch.zeros(n, hidden.shape[1], device=dev)
    pb = torch.zeros(n, device=dev)
    target_z = torch.empty(n, device=dev)
    for v0 in range(0, vocab, vocab_chunk):
        v1 = min(v0 + vocab_chunk, vocab)
        z = (hidden @ W_U_T[v0:v1].T).float()
        if b_U is not None:
            z = z + b_U[v0:v1]
        m_new = torch.maximum(m, z.max(dim=1).values)
        rescale = torch.exp(m - m_new)
        e = torch.exp(z - m_new[:, None])
        s = s * rescale + e.sum(dim=1)
        a = a * rescale + (e * z).sum(dim=1)
        mu = mu * rescale[:, None] + e @ W_U_T[v0:v1].float()
        if b_U is not None:
            pb = pb * rescale + e @ b_U[v0:v1].float()
        m = m_new
        hit = (targets >= v0) & (targets < v1)
        if hit.any():
            rows = hit.nonzero(as_tuple=True)[0]
            target_z[rows] = z[rows, targets[rows] - v0]
    lse = m + torch.log(s)
    return {"ce": lse - target_z, "lse": lse, "ez": a / s, "mu": mu / s[:, None], "pb": pb / s}


def spliced_ce_and_kl_from_stats(
    hidden_spliced: torch.Tensor,
    clean: dict[str, torch.Tensor],
    W_U_T: torch.Tensor,
    b_U: torch.Tensor | None,
    targets: torch.Tensor,
    vocab_chunk: int = 32768,
    low_precision: LowPrecisionUnembed | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token CE of the spliced logits and KL(clean ‖ spliced) from the clean distribution's
    statistics (:func:`clean_distribution_stats`): one unembed matmul per vocabulary chunk.

    With ``low_precision`` the unembed matmul runs in bf16 (:class:`LowPrecisionUnembed`); the
    target logit and E_p[w] stay float32 products.
    """
    n, vocab = hidden_spliced.shape[0], W_U_T.shape[0]
    dev = hidden_spliced.device
    if low_precision is not None:
        # Centre every row's logits on the clean log-sum-exp inside the bf16 matmul (fp32
        # accumulator) so the bf16 rounding of its output acts on w − lse_clean, a few nats, not on
        # logits of tens: rounding error ∝ magnitude (2^-9 relative).
        offset = clean["lse"].to(torch.bfloat16).float()
        h_aug = low_precision.augment(hidden_spliced, offset)
        h32 = hidden_spliced.float()
        lse_s = torch.full((n,), -math.inf, device=dev)
        buf = torch.empty(n * min(vocab_chunk, vocab), device=dev)
        for v0 in range(0, vocab, vocab_chunk):
            v1 = min(v0 + vocab_chunk, vocab)
            w = _chunk(buf, n, v1 - v0).copy_(h_aug @ low_precision.W_aug[v0:v1].T)  # ≈ logit − offset
            # The tokens that carry the log-sum-exp (within `head_nats` of it for some row) get their
            # logits again as float32 products: bf16 noise there would bias lse upward (Jensen).
            # a column's max over rows, not (w > t).any(dim=0): one pass, no [N, V] bool tensor
            head = (w.amax(dim=0) > -low_precision.head_nats).nonzero(as_tuple=True)[0]
            if head.numel():
                exact = h32 @ W_U_T[v0 + head].float().T - offset[:, None]
                if b_U is not None:
                    exact = exact + b_U[v0 + head].float()
                w[:, head] = exact
                low_precision.exact_columns += int(head.numel())
            low_precision.columns += v1 - v0
            lse_s = torch.logaddexp(lse_s, _logsumexp_rows_(w))
        lse_s = lse_s + offset
        target_w = (hidden_spliced.float() * W_U_T[targets].float()).sum(dim=1)
        if b_U is not None:
            target_w = target_w + b_U[targets].float()
    else:
        lse_s = torch.full((n,), -math.inf, device=dev)
        target_w = torch.empty(n, device=dev)
        # A zero bias (Gemma's: TransformerLens gives every model a b_U) would change no logit.
        bias = b_U if b_U is not None and bool(b_U.any()) else None
        in_place = hidden_spliced.dtype == W_U_T.dtype == torch.float32
        logits_buf = torch.empty(n * min(vocab_chunk, vocab), device=dev) if in_place else None
        for v0 in range(0, vocab, vocab_chunk):
            v1 = min(v0 + vocab_chunk, vocab)
            if logits_buf is not None:
                w = torch.mm(hidden_spliced, W_U_T[v0:v1].T, out=_chunk(logits_buf, n, v1 - v0))
            else:
                w = (hidden_spliced @ W_U_T[v0:v1].T).float()
            if bias is not None:
                w.add_(bias[v0:v1])
            hit = (targets >= v0) & (targets < v1)
            if hit.any():
                rows = hit.nonzero(as_tuple=True)[0]
                target_w[rows] = w[rows, targets[rows] - v0]
            lse_s = torch.logaddexp(lse_s, _logsumexp_rows_(w))
    e_w = (clean["mu"] * hidden_spliced.float()).sum(dim=1) + clean["pb"]
    kl = (clean["ez"] - clean["lse"] - e_w + lse_s).clamp_min(0.0)
    return lse_s - target_w, kl


def _chunk(buf: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """A contiguous [rows, cols] view of the front of ``buf``: one buffer for every vocabulary chunk.

    A fresh [1016, 32768] float32 tensor per chunk is a fresh mmap from the allocator, and its page
    faults cost as much as the elementwise pass that fills it (an add into a fresh [1016, 32768]
    tensor took twice as long as one into a reused buffer on the 2-core machine).
    """
    return buf[: rows * cols].view(rows, cols)


def _logsumexp_rows_(w: torch.Tensor) -> torch.Tensor:
    """``torch.logsumexp(w, dim=1)`` for a 2-D ``w``, computed in ``w``'s memory (``w`` is overwritten).

    The same operations in the same order as torch's own (amax, infinite maxima set to 0,
    exp(w − max) summed, log, + max), so the result is bit-identical (tested); torch's allocates
    a second [N, V] tensor for w − max.
    """
    maxes = w.amax(dim=1, keepdim=True)
    maxes.masked_fill_(maxes.abs() == math.inf, 0)
    return w.sub_(maxes).exp_().sum(dim=1).log_().add_(maxes.squeeze(1))


class LowPrecisionUnembed:
    """The unembedding in bf16 for :func:`spliced_ce_and_kl_from_stats`: [W_U^T | b_U | 1], [V, d+2].

    CPU bf16 matmuls accumulate in float32 but round their output to bf16. A row h is augmented
    to [h, 1, −c] so each logit comes out as W_U h + b − c, already centred on c (the clean
    log-sum-exp of that token), and the output rounding acts on a number of a few nats. The bf16
    logits then only screen: every vocabulary column within ``head_nats`` of the log-sum-exp for
    some row of the batch is recomputed in float32, so what bf16 rounding is left sits in tokens of
    probability < e^-head_nats each. ``exact_columns / columns`` counts the recomputed share.
    """

    def __init__(self, W_U_T: torch.Tensor, b_U: torch.Tensor | None, head_nats: float = 10.0):
        self.head_nats = head_nats
        self.columns = 0
        self.exact_columns = 0
        b = (
            torch.zeros(W_U_T.shape[0], 1, dtype=W_U_T.dtype, device=W_U_T.device)
            if b_U is None
            else b_U.reshape(-1, 1).to(W_U_T.dtype)
        )
        ones = torch.ones_like(b)
        self.W_aug = torch.cat([W_U_T, b, ones], dim=1).to(torch.bfloat16).contiguous()

    @staticmethod
    def augment(hidden: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(hidden.shape[0], 1, dtype=hidden.dtype, device=hidden.device)
        return torch.cat([hidden, ones, -offset[:, None].to(hidden.dtype)], dim=1).to(torch.bfloat16)


@torch.no_grad()
def clean_reference(
    model, eval_tokens: np.ndarray, layers: list[int], batch_size: int = 8, progress: bool = True
) -> dict:
    """The clean pass over the eval tokens, kept so no SAE evaluation repeats it.

    Returns ``hidden`` [N, d] (final hidden states at every predicted position, sequences in
    order), ``ce`` [N], ``resid_pre`` {layer: [n_seq, ctx, d]} (the input of each evaluated block,
    so the spliced pass starts there: ``start_at_layer`` gives bit-identical outputs), and
    ``stats`` (:func:`clean_distribution_stats`, None for soft-capped logits).
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    softcap = _softcap(model)
    W_U_T = model.W_U.T.contiguous()
    names = [f"blocks.{layer}.hook_resid_pre" for layer in layers]
    hidden, parts = [], []
    resid_pre: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    n_batches = (len(eval_tokens) + batch_size - 1) // batch_size
    for batch in tqdm(
        batches(eval_tokens, batch_size, device), total=n_batches, desc="clean reference", disable=not progress
    ):
        kept: dict[str, torch.Tensor] = {}

        def keep(act, hook, kept=kept):  # called within this iteration
            kept[hook.name] = act.detach().clone()
            return act

        h = final_hidden(model, batch, [(name, keep) for name in names])[:, :-1].flatten(0, 1)
        targets = batch[:, 1:].reshape(-1)
        hidden.append(h)
        for layer, name in zip(layers, names, strict=False):
            resid_pre[layer].append(kept[name])
        if softcap is None:
            parts.append(clean_distribution_stats(h, W_U_T, model.b_U, targets))
        else:
            parts.append({"ce": chunked_cross_entropy(h, model.W_U, model.b_U, targets, softcap=softcap)})
    out = {"hidden": torch.cat(hidden), "resid_pre": {k: torch.cat(v) for k, v in resid_pre.items()}}
    out["ce"] = torch.cat([p["ce"] for p in parts])
    out["stats"] = (
        None if softcap is not None else {k: torch.cat([p[k] for p in parts]) for k in ("lse", "ez", "mu", "pb")}
    )
    return out


def subset_clean(clean: dict, n_seq: int, n_pred: int) -> dict:
    """The clean reference (:func:`saerepro.evaluate.clean_reference` + zero-ablation CEs) of its
    first ``n_seq`` sequences."""
    rows = n_seq * n_pred
    out = {
        "hidden": clean["hidden"][:rows],
        "ce": clean["ce"][:rows],
        "resid_pre": {k: v[:n_seq] for k, v in clean["resid_pre"].items()},
        "stats": None if clean["stats"] is None else {k: v[:rows] for k, v in clean["stats"].items()},
    }
    for name in ("zero_ce", "zero_bos_ce"):
        out[name] = {k: v[:rows] for k, v in clean.get(name, {}).items()}
    return out


def _softcap(model) -> float | None:
    softcap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    return softcap if softcap and softcap > 0 else None


def hook_key(layer: int, site: str) -> str:
    """Key of a hook point in the clean reference's per-token dicts (``zero_ce``, ``zero_bos_ce``)."""
    return f"L{layer}/{site}"


def _spliced_batches(
    model,
    eval_tokens: np.ndarray,
    layer: int,
    hooks: list,
    batch_size: int,
    clean: dict | None,
    desc: str,
    progress: bool,
):
    """(final hidden states [b·(ctx−1), d] with ``hooks`` applied, targets, row slice) per batch.

    With ``clean`` (from :func:`clean_reference`) the pass starts at ``layer`` from the saved
    block input (``start_at_layer``: the layers below are not recomputed, bit-identical output).
    """

    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    n_pred = eval_tokens.shape[1] - 1
    if clean is not None and clean["hidden"].shape[0] != len(eval_tokens) * n_pred:
        raise ValueError(
            f"the clean reference holds {clean['hidden'].shape[0]} positions, "
            f"the eval tokens {len(eval_tokens) * n_pred}"
        )
    resid_pre = None if clean is None else clean["resid_pre"].get(layer)
    n_batches = (len(eval_tokens) + batch_size - 1) // batch_size
    for i, batch in enumerate(
        tqdm(
            batches(eval_tokens, batch_size, device), total=n_batches, desc=desc, disable=not progress, mininterval=5.0
        )
    ):
        targets = batch[:, 1:].reshape(-1)
        if resid_pre is not None:
            start = resid_pre[i * batch_size : (i + 1) * batch_size].to(device)
            resid = model.run_with_hooks(start, start_at_layer=layer, stop_at_layer=model.cfg.n_layers, fwd_hooks=hooks)
            spliced = model.ln_final(resid)[:, :-1].flatten(0, 1)
        else:
            spliced = final_hidden(model, batch, hooks)[:, :-1].flatten(0, 1)
        rows = slice(i * batch_size * n_pred, i * batch_size * n_pred + targets.shape[0])
        yield batch, spliced, targets, rows


def _ce_and_kl(
    model, batch, spliced, targets, rows, clean, W_U_T, softcap, low_precision: LowPrecisionUnembed | None = None
):
    device = spliced.device
    if clean is not None and clean["stats"] is not None:
        stats = {k: v[rows].to(device) for k, v in clean["stats"].items()}
        return spliced_ce_and_kl_from_stats(spliced, stats, W_U_T, model.b_U, targets, low_precision=low_precision)
    hidden_clean = (
        clean["hidden"][rows].to(device) if clean is not None else final_hidden(model, batch)[:, :-1].flatten(0, 1)
    )
    return spliced_ce_and_kl(hidden_clean, spliced, W_U_T, model.b_U, targets, softcap=softcap)


@torch.no_grad()
def zero_ablation_ce(
    model,
    eval_tokens: np.ndarray,
    clean: dict | None,
    layer: int,
    site: str,
    zero_bos: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    precision: str = "float32",
) -> torch.Tensor:
    """Per-token CE [N] with the site zero-ablated at every position but BOS (``zero_bos``: at BOS
    too, as sae-lens' ``ce_loss_score`` does), sequences in order. ``precision``: see
    :func:`evaluate_sae`."""
    hooks = [(hook_name(layer, site), zero_all_hook if zero_bos else zero_ablation_hook)]
    W_U_T = model.W_U.T.contiguous()
    low = _low_precision_unembed(model, W_U_T, clean, precision)
    parts = []
    for batch, spliced, targets, rows in _spliced_batches(
        model,
        eval_tokens,
        layer,
        hooks,
        batch_size,
        clean,
        f"zero-ablate {hook_name(layer, site)}{' (BOS too)' if zero_bos else ''}",
        progress,
    ):
        parts.append(_ce_and_kl(model, batch, spliced, targets, rows, clean, W_U_T, _softcap(model), low)[0])
    return torch.cat(parts)


def _low_precision_unembed(
    model, W_U_T: torch.Tensor, clean: dict | None, precision: str
) -> LowPrecisionUnembed | None:
    if precision not in PRECISIONS:
        raise ValueError(f"evaluation precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32" or clean is None or clean["stats"] is None:
        return None  # the bf16 unembed needs the clean statistics (no soft-capping)
    return LowPrecisionUnembed(W_U_T, model.b_U)


def zero_all_hook(act: torch.Tensor, hook) -> torch.Tensor:
    """Replace the site with zeros at every position, BOS included (sae-lens' convention)."""
    return torch.zeros_like(act)


@torch.no_grad()
def evaluate_sae(
    model,
    sae,
    layer: int,
    site: str,
    scale: float,
    eval_tokens: np.ndarray,
    reference: dict,
    batch_size: int = 8,
    progress: bool = True,
    clean: dict | None = None,
    per_token: bool = False,
    precision: str = "float32",
):
    """All metrics of ``sae`` at (layer, site); ``reference`` holds ce_clean and ce_zero.

    ``clean`` (from :func:`clean_reference` on the same tokens) saves the clean forward, the
    layers below ``layer`` and, without soft-capping, one of the two unembeds. Without it, the
    clean pass is recomputed per batch; both paths agree to float rounding (tested).

    With ``per_token``, returns ``(metrics, per_token)`` where ``per_token`` holds the per-token
    ``ce_sae``, ``kl``, ``l0``, ``sq_hat`` (‖x̂‖²) and ``dot`` (x·x̂) [N] and the per-sequence
    ``sum_x``, ``sum_x_hat`` [S, d_in] (sequences in order), from which :func:`paired_metrics`
    computes paired, sequence-aware standard errors.

    ``precision`` "bfloat16": the unembed is a bf16 matmul that screens the vocabulary, with the
    log-sum-exp's head recomputed in float32 (:class:`LowPrecisionUnembed`; needs ``clean`` and no
    logit soft-capping). Everything else stays float32: under bf16 autocast the layers above the
    hook point moved the resid zero-ablation CE by 0.09 nats (docs/performance.md).
    """
    device = next(model.parameters()).device
    d_in = int(sae.cfg.d_in)
    recon = ReconstructionStats(d_in=d_in, n_latents=int(sae.cfg.d_sae), device=device)
    ce_parts, kl_parts = [], []
    # per token: L0, ‖x̂‖², x·x̂; per sequence: Σx, Σx̂ (for the SEs of L0, γ and γ_c)
    seq_parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("l0", "sq_hat", "dot", "sum_x", "sum_x_hat")}
    softcap = _softcap(model)

    def splice(act: torch.Tensor, hook) -> torch.Tensor:
        body = act[:, 1:]
        x = body.reshape(-1, d_in).float() * scale
        codes = sae.encode(x)
        x_hat = sae.decode(codes)
        recon.update(x, x_hat, codes)
        if per_token:
            x64, h64 = x.double(), x_hat.double()
            seq_parts["l0"].append((codes != 0).sum(dim=1).cpu())
            seq_parts["sq_hat"].append((h64 * h64).sum(dim=1).cpu())
            seq_parts["dot"].append((x64 * h64).sum(dim=1).cpu())
            seq_parts["sum_x"].append(x64.reshape(body.shape[0], -1, d_in).sum(dim=1).cpu())
            seq_parts["sum_x_hat"].append(h64.reshape(body.shape[0], -1, d_in).sum(dim=1).cpu())
        out = act.clone()
        out[:, 1:] = (x_hat / scale).reshape(body.shape).to(act.dtype)
        return out

    if hasattr(sae, "turn_off_forward_pass_hook_z_reshaping"):
        # sae-lens flattens [.., n_heads, d_head] itself for hook_z SAEs; we pass [N, d_in].
        sae.turn_off_forward_pass_hook_z_reshaping()
    W_U_T = model.W_U.T.contiguous()
    low = _low_precision_unembed(model, W_U_T, clean, precision)
    name = hook_name(layer, site)
    for batch, spliced, targets, rows in _spliced_batches(
        model, eval_tokens, layer, [(name, splice)], batch_size, clean, f"evaluate {name}", progress
    ):
        ce_sae, kl = _ce_and_kl(model, batch, spliced, targets, rows, clean, W_U_T, softcap, low)
        ce_parts.append(ce_sae)
        kl_parts.append(kl)
    ce_all, kl_all = torch.cat(ce_parts), torch.cat(kl_parts)
    out = recon.compute()
    out["ce_sae"], out["ce_sae_se"] = mean_and_se(ce_all)
    out["kl"], out["kl_se"] = mean_and_se(kl_all)
    out["n_eval_tokens"] = int(ce_all.numel())
    out["ce_clean"] = float(reference["ce_clean"])
    out["ce_zero"] = float(reference["ce_zero"])
    out["loss_recovered"] = loss_recovered(out["ce_clean"], out["ce_sae"], out["ce_zero"])
    out["delta_lm_loss"] = delta_lm_loss(out["ce_clean"], out["ce_sae"])
    if per_token:
        return out, {"ce_sae": ce_all.cpu(), "kl": kl_all.cpu(), **{k: torch.cat(v) for k, v in seq_parts.items()}}
    return out


def paired_metrics(per_token: dict, clean: dict, layer: int, site: str, n_pred: int) -> dict[str, float]:
    """CE-based metrics with paired, sequence-aware SEs (:func:`saerepro.metrics.paired_loss_stats`).

    ``per_token`` from :func:`evaluate_sae`; ``clean`` from :func:`clean_reference` with the
    per-token zero-ablation CEs that :func:`saerepro.pipeline.reference_ce` adds (``zero_ce``: BOS
    kept, ``zero_bos_ce``: BOS zeroed too). ``n_pred`` = predicted tokens per sequence. Returns
    loss_recovered, delta_lm_loss, kl, ce_sae with ``_se`` each, loss_recovered_bos_zeroed (+ SE),
    ce_zero_bos_zeroed, the L0's sequence-aware SE ``l0_se`` and ``n_eval_sequences``.
    """
    key = hook_key(layer, site)
    for name in ("zero_ce", "zero_bos_ce"):
        if key not in clean.get(name, {}):
            raise KeyError(f"the clean reference has no per-token {name} for {key}; rerun reference_ce")

    def seqs(v: torch.Tensor) -> torch.Tensor:
        return v.reshape(-1, n_pred)

    c = seqs(clean["ce"])
    s = seqs(per_token["ce_sae"])
    out = paired_loss_stats(c, s, seqs(clean["zero_ce"][key]), kl=seqs(per_token["kl"]))
    bos = paired_loss_stats(c, s, seqs(clean["zero_bos_ce"][key]))
    out["loss_recovered_bos_zeroed"] = bos["loss_recovered"]
    out["loss_recovered_bos_zeroed_se"] = bos["loss_recovered_se"]
    out["ce_zero_bos_zeroed"] = float(clean["zero_bos_ce"][key].double().mean())
    out["l0_se"] = sequence_mean_and_se(seqs(per_token["l0"]))[1]
    out["gamma_se"], out["gamma_c_se"] = _gamma_ses(per_token, n_pred)
    out["n_eval_sequences"] = int(c.shape[0])
    return out


def _gamma_ses(per_token: dict, n_pred: int) -> tuple[float, float]:
    """Sequence-aware SEs of γ = Σ‖x̂‖² / Σ x·x̂ and of γ_c (:mod:`saerepro.metrics`).

    Both are ratios of sums over tokens, so each gets :func:`~saerepro.metrics.cluster_ratio` over
    per-sequence sums. For γ_c the sums are of ‖x̂ − μ̂‖² and (x − μ)·(x̂ − μ̂) with the eval means
    μ, μ̂ held fixed (their own sampling error is second order).
    """
    sq_hat = per_token["sq_hat"].double().reshape(-1, n_pred)
    dot = per_token["dot"].double().reshape(-1, n_pred)
    sx, sh = per_token["sum_x"].double(), per_token["sum_x_hat"].double()
    n = sq_hat.numel()
    mu, mu_hat = sx.sum(dim=0) / n, sh.sum(dim=0) / n
    num_c = sq_hat.sum(dim=1) - 2 * (sh @ mu_hat) + n_pred * (mu_hat @ mu_hat)
    den_c = dot.sum(dim=1) - sh @ mu - sx @ mu_hat + n_pred * (mu @ mu_hat)
    return cluster_ratio(sq_hat.sum(dim=1), dot.sum(dim=1))[1], cluster_ratio(num_c, den_c)[1]
