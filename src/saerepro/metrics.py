"""Evaluation metrics of Rajamanoharan et al. (arXiv 2404.16014 v2), as pure functions.

Notation: ``x`` [N, d] are the true activations of N eval tokens, ``x_hat`` [N, d] an SAE's
reconstructions, ``f`` [N, F] its latent activations (codes). ``E`` is the empirical mean over the
N eval tokens. CE losses are per-token next-token cross-entropies in nats.

=========================  ==================================================================
metric                     formula
=========================  ==================================================================
L0                         E ‖f(x)‖₀  (mean number of non-zero latents per token)
firing counts              c_i = Σ_tokens 1[f_i(x) ≠ 0]
alive fraction             #{i : c_i > 0} / F  (fires at least once on the eval tokens)
loss recovered             (CE_zero − CE_sae) / (CE_zero − CE_clean)
ΔLM loss                   CE_sae − CE_clean
γ (reconstruction bias)    E‖x̂‖² / E[x · x̂]          (paper v2, after the erratum; γ < 1 = shrinkage)
γ_c (centred)              E‖x̂ − μ̂‖² / E[(x − μ) · (x̂ − μ̂)],  μ = E x, μ̂ = E x̂  (see below)
NMSE (= FVU)               E‖x − x̂‖² / E‖x − E x‖²
KL                         E_tokens KL(P_clean ‖ P_spliced) over the next-token distribution
=========================  ==================================================================

γ is the minimiser of E‖x̂/γ − x‖², so γ < 1 means the reconstructions are systematically too
short (shrinkage), γ > 1 too long.

**Centring convention of γ_c.** x is centred by its own mean μ = E x and x̂ by its own mean
μ̂ = E x̂ (both over the eval tokens). γ_c is then the minimiser of E‖(x̂ − μ̂)/γ − (x − μ)‖²: the
shrinkage of the part of the reconstruction that varies from token to token. Motivation: on
Gemma-3-270M's residual stream ~88% of E‖x‖² lies along the mean direction, which every SAE
reproduces through b_dec, so raw γ ≈ 1 for every SAE; removing the means exposes the shrinkage
of the part the latents actually encode. Why x̂'s own mean and not μ: with μ, any error in the
mean reconstruction adds ‖μ̂ − μ‖² to the numerator only (E‖x̂ − μ‖² = E‖x̂ − μ̂‖² + ‖μ̂ − μ‖²) and
so reads as *negative* shrinkage. For example x̂ = 0.8 x would give γ_c = 0.8 + 0.2²‖μ‖²/(0.8 E‖x − μ‖²)
≈ 1.17 on such activations, hiding the very shrinkage γ_c is meant to show. Errors in the mean
are measured by NMSE, not by γ_c. The cross term needs no care: because E(x − μ) = 0,
Σ(x − μ)·(x̂ − μ̂) = Σ x·x̂ − N μ·μ̂.

All reductions are done in float64. :class:`ReconstructionStats` accumulates sums over batches so
that evaluation can stream over chunks of tokens; its results equal the one-shot functions
(tested). The CE-based metrics and their paired, sequence-aware SEs are :func:`paired_loss_stats`.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch

__all__ = [
    "DEGENERATE_COSINE",
    "ReconstructionStats",
    "alive_fraction",
    "as_float64",
    "bootstrap_sequences",
    "centred_relative_reconstruction_bias",
    "chunked_cross_entropy",
    "chunked_kl_divergence",
    "cluster_ratio",
    "delta_lm_loss",
    "firing_counts",
    "kl_divergence_from_logits",
    "l0",
    "loss_recovered",
    "mean_and_se",
    "nmse",
    "paired_loss_stats",
    "relative_reconstruction_bias",
    "sequence_mean_and_se",
    "softcap_logits",
]

ArrayLike = torch.Tensor | np.ndarray


def as_float64(a: ArrayLike | float) -> torch.Tensor:
    """``a`` as a float64 CPU-or-same-device torch tensor (numpy arrays are converted)."""
    if isinstance(a, torch.Tensor):
        return a.to(torch.float64)
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def _check_pair(x: torch.Tensor, x_hat: torch.Tensor) -> None:
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected non-empty [N, d] activations, got shape {tuple(x.shape)}")


#: |cosine| below which γ / γ_c are reported as NaN (see :func:`_bias_ratio`).
DEGENERATE_COSINE = 1e-6


def _bias_ratio(sq_hat: float, cross: float, sq_x: float) -> float:
    """sq_hat / cross, the γ-type ratio Σ‖x̂‖² / Σ x·x̂ (or its centred version), or NaN if undefined.

    Undefined when the reconstruction is orthogonal to the target: x̂ ≡ 0 (γ = 0/0), or, for γ_c,
    a reconstruction that does not vary with the input (a fully dead SAE outputs b_dec for every
    token, so x̂ − μ̂ = 0 and γ_c = 0/0 up to rounding noise). We treat a cosine
    |cross| / √(sq_hat · sq_x) below :data:`DEGENERATE_COSINE` as orthogonal. No working SAE gets
    near it; callers must decide what to do with such an SAE (a NaN never goes into metrics.csv).
    """
    scale = math.sqrt(max(sq_hat, 0.0) * max(sq_x, 0.0))
    if scale == 0.0 or abs(cross) < DEGENERATE_COSINE * scale:
        return float("nan")
    return sq_hat / cross


# --------------------------------------------------------------------------- sparsity


def l0(codes: ArrayLike) -> float:
    """L0 = E ‖f(x)‖₀: mean over tokens (rows) of the number of non-zero latents."""
    f = torch.as_tensor(codes)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected non-empty [N, F] codes, got shape {tuple(f.shape)}")
    return float((f != 0).sum(dim=1).to(torch.float64).mean())


def firing_counts(codes: ArrayLike) -> torch.Tensor:
    """c_i = number of tokens on which latent i is non-zero; int64 tensor [F]."""
    f = torch.as_tensor(codes)
    if f.ndim != 2:
        raise ValueError(f"expected [N, F] codes, got shape {tuple(f.shape)}")
    return (f != 0).sum(dim=0).to(torch.int64)


def alive_fraction(counts: ArrayLike) -> float:
    """Fraction of latents that fire at least once: #{i : c_i > 0} / F."""
    c = torch.as_tensor(counts)
    if c.ndim != 1 or c.numel() == 0:
        raise ValueError(f"expected non-empty [F] firing counts, got shape {tuple(c.shape)}")
    return float((c > 0).to(torch.float64).mean())


# --------------------------------------------------------------------------- LM loss


def loss_recovered(ce_clean: float, ce_sae: float, ce_zero: float) -> float:
    """Loss recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean).

    1 = the spliced-in SAE is as good as the clean model, 0 = as bad as zero-ablating the site.
    Raises if CE_zero == CE_clean (zero ablation does not hurt: the metric is undefined).
    """
    denom = float(ce_zero) - float(ce_clean)
    if denom == 0.0 or not math.isfinite(denom):
        raise ValueError(f"loss recovered undefined: CE_zero ({ce_zero}) − CE_clean ({ce_clean}) = {denom}")
    return (float(ce_zero) - float(ce_sae)) / denom


def delta_lm_loss(ce_clean: float, ce_sae: float) -> float:
    """ΔLM loss = CE_sae − CE_clean (nats per token; lower is better)."""
    return float(ce_sae) - float(ce_clean)


# --------------------------------------------------------------------------- reconstruction


def relative_reconstruction_bias(x: ArrayLike, x_hat: ArrayLike) -> float:
    """γ = E‖x̂‖² / E[x · x̂] (paper v2 definition; γ < 1 means shrinkage); NaN if x̂ ⟂ x (e.g. x̂ ≡ 0)."""
    x, x_hat = as_float64(x), as_float64(x_hat)
    _check_pair(x, x_hat)
    return _bias_ratio(float((x_hat * x_hat).sum()), float((x * x_hat).sum()), float((x * x).sum()))


def centred_relative_reconstruction_bias(x: ArrayLike, x_hat: ArrayLike) -> float:
    """γ_c = E‖x̂ − μ̂‖² / E[(x − μ) · (x̂ − μ̂)], μ = E x, μ̂ = E x̂ (each centred by its own mean).

    NaN if the centred reconstruction is orthogonal to the centred input, e.g. a fully dead SAE
    whose output b_dec is the same for every token (see :func:`_bias_ratio`)."""
    x, x_hat = as_float64(x), as_float64(x_hat)
    _check_pair(x, x_hat)
    xc, xhc = x - x.mean(dim=0, keepdim=True), x_hat - x_hat.mean(dim=0, keepdim=True)
    return _bias_ratio(float((xhc * xhc).sum()), float((xc * xhc).sum()), float((xc * xc).sum()))


def nmse(x: ArrayLike, x_hat: ArrayLike) -> float:
    """NMSE = FVU = E‖x − x̂‖² / E‖x − E x‖² (fraction of variance unexplained); NaN if x is constant."""
    x, x_hat = as_float64(x), as_float64(x_hat)
    _check_pair(x, x_hat)
    var = float(((x - x.mean(dim=0, keepdim=True)) ** 2).sum())
    return float(((x - x_hat) ** 2).sum()) / var if var > 0 else float("nan")


# --------------------------------------------------------------------------- statistics


def mean_and_se(values: ArrayLike) -> tuple[float, float]:
    """Mean and standard error s/√n (s: sample std, ddof=1) of a 1-D sample.

    For per-token losses this treats tokens as independent, which they are not within a
    sequence; the SE is therefore a lower bound on the sampling error (it is cheap, not exact).
    The SE is NaN for a single value.
    """
    v = as_float64(values).reshape(-1)
    n = v.numel()
    if n == 0:
        raise ValueError("mean_and_se of an empty sample")
    mean = float(v.mean())
    se = float(v.std(correction=1) / math.sqrt(n)) if n > 1 else float("nan")
    return mean, se


# --------------------------------------------------------------------------- sequence-aware statistics


def cluster_ratio(num: ArrayLike, den: ArrayLike) -> tuple[float, float]:
    """R = Σ_j num_j / Σ_j den_j and its cluster-robust (delta-method) standard error.

    ``num``, ``den`` [S] are per-cluster totals (here: per eval sequence). The SE treats the S
    clusters as the independent units, so correlation between the tokens of one sequence is
    accounted for: SE = √(S/(S−1) · Σ_j (num_j − R·den_j)²) / |Σ_j den_j|. A mean over tokens is
    the special case den_j = number of tokens of sequence j. NaN SE for a single cluster.
    """
    a, b = as_float64(num).reshape(-1), as_float64(den).reshape(-1)
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"num and den must be non-empty and of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    total = float(b.sum())
    if total == 0.0:
        raise ValueError("cluster_ratio: the denominators sum to 0")
    r = float(a.sum()) / total
    s = a.numel()
    if s < 2:
        return r, float("nan")
    resid = a - r * b
    return r, math.sqrt(s / (s - 1) * float((resid * resid).sum())) / abs(total)


def _per_sequence(values: ArrayLike, name: str) -> torch.Tensor:
    v = as_float64(values)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise ValueError(f"{name} must be per-token values [n_sequences, tokens], got shape {tuple(v.shape)}")
    return v


def sequence_mean_and_se(values: ArrayLike) -> tuple[float, float]:
    """Mean of per-token ``values`` [S, T] and its SE with the S sequences as independent units."""
    v = _per_sequence(values, "values")
    return cluster_ratio(v.sum(dim=1), torch.full((v.shape[0],), float(v.shape[1]), dtype=torch.float64))


def paired_loss_stats(
    ce_clean: ArrayLike, ce_sae: ArrayLike, ce_zero: ArrayLike, kl: ArrayLike | None = None
) -> dict[str, float]:
    """CE-based metrics of one SAE with paired, sequence-aware standard errors.

    All inputs are per-token values [S, T] on the same S eval sequences of T predicted tokens,
    in the same order (``ce_zero``: the zero-ablation CE of the SAE's hook point). Pairing: every
    SE is computed from per-sequence differences, so the sampling noise shared by the SAE, the
    clean and the zero-ablated model (which sequences happen to be hard) cancels. Sequences, not
    tokens, are the independent units (:func:`cluster_ratio`).

    Returns ce_sae, ce_sae_se, delta_lm_loss, delta_lm_loss_se (per-token CE_sae − CE_clean),
    loss_recovered, loss_recovered_se (the ratio Σ(CE_zero − CE_sae) / Σ(CE_zero − CE_clean)),
    and, with ``kl``, kl, kl_se.
    """
    c, s, z = (_per_sequence(v, n) for v, n in ((ce_clean, "ce_clean"), (ce_sae, "ce_sae"), (ce_zero, "ce_zero")))
    if not (c.shape == s.shape == z.shape):
        raise ValueError(f"per-token loss shapes differ: {tuple(c.shape)}, {tuple(s.shape)}, {tuple(z.shape)}")
    out: dict[str, float] = {}
    out["ce_sae"], out["ce_sae_se"] = sequence_mean_and_se(s)
    out["delta_lm_loss"], out["delta_lm_loss_se"] = sequence_mean_and_se(s - c)
    denom = float((z - c).sum())
    if denom == 0.0 or not math.isfinite(denom):
        raise ValueError(f"loss recovered undefined: Σ(CE_zero − CE_clean) = {denom}")
    out["loss_recovered"], out["loss_recovered_se"] = cluster_ratio((z - s).sum(dim=1), (z - c).sum(dim=1))
    if kl is not None:
        k = _per_sequence(kl, "kl")
        if k.shape != c.shape:
            raise ValueError(f"kl has shape {tuple(k.shape)}, losses {tuple(c.shape)}")
        out["kl"], out["kl_se"] = sequence_mean_and_se(k)
    return out


def bootstrap_sequences(n_sequences: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Indices [n_boot, n_sequences] of sequences drawn with replacement (seeded).

    Use the same draws for every SAE of a comparison so that the bootstrap stays paired.
    """
    if n_sequences < 1 or n_boot < 1:
        raise ValueError(f"need n_sequences >= 1 and n_boot >= 1, got {n_sequences}, {n_boot}")
    return np.random.default_rng(seed).integers(0, n_sequences, size=(n_boot, n_sequences))


# --------------------------------------------------------------------------- logits


def kl_divergence_from_logits(logits_clean: torch.Tensor, logits_spliced: torch.Tensor) -> torch.Tensor:
    """Per-token KL(P_clean ‖ P_spliced) = Σ_v p_v (log p_v − log q_v), from logits [..., V].

    Computed with log-softmax in float64 (numerically stable for any logit scale); returns a
    float64 tensor of shape [...]. Tiny negative values from rounding are clamped to 0.
    """
    if logits_clean.shape != logits_spliced.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_clean.shape)} vs {tuple(logits_spliced.shape)}")
    logp = torch.log_softmax(logits_clean.to(torch.float64), dim=-1)
    logq = torch.log_softmax(logits_spliced.to(torch.float64), dim=-1)
    return (logp.exp() * (logp - logq)).sum(dim=-1).clamp_min(0.0)


def softcap_logits(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Logit soft-capping ``cap * tanh(logits / cap)`` (identity if ``cap`` is None)."""
    if cap is None:
        return logits
    if cap <= 0:
        raise ValueError(f"softcap must be positive, got {cap}")
    return cap * torch.tanh(logits / cap)


def _unembed_args(hidden: torch.Tensor, W_U: torch.Tensor, b_U: torch.Tensor | None):
    if hidden.ndim != 2:
        raise ValueError(f"hidden states must be [N, d], got shape {tuple(hidden.shape)}")
    if W_U.ndim != 2 or W_U.shape[0] != hidden.shape[1]:
        raise ValueError(f"W_U must be [d, V] with d = {hidden.shape[1]}, got shape {tuple(W_U.shape)}")
    if b_U is not None and tuple(b_U.shape) != (W_U.shape[1],):
        raise ValueError(f"b_U must be [V] = [{W_U.shape[1]}], got shape {tuple(b_U.shape)}")


def _logits_chunk(h, W_U, b_U, v0, v1, softcap, dtype):
    # .contiguous(): a matmul with a column-strided slice hits a pathologically slow CPU path.
    z = h @ W_U[:, v0:v1].to(dtype).contiguous()
    if b_U is not None:
        z = z + b_U[v0:v1].to(dtype)
    return softcap_logits(z, softcap)


def _chunked_logsumexp(h, W_U, b_U, softcap, vocab_chunk, dtype) -> torch.Tensor:
    """Online (streaming) log-sum-exp of h @ W_U + b_U over vocab chunks; returns [n]."""
    V = W_U.shape[1]
    m = torch.full((h.shape[0],), -math.inf, dtype=dtype, device=h.device)
    s = torch.zeros(h.shape[0], dtype=dtype, device=h.device)
    for v0 in range(0, V, vocab_chunk):
        z = _logits_chunk(h, W_U, b_U, v0, min(V, v0 + vocab_chunk), softcap, dtype)
        m_new = torch.maximum(m, z.max(dim=1).values)
        s = s * torch.exp(m - m_new) + torch.exp(z - m_new[:, None]).sum(dim=1)
        m = m_new
    return m + torch.log(s)


def chunked_cross_entropy(
    hidden: torch.Tensor,
    W_U: torch.Tensor,
    b_U: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    softcap: float | None = None,
    vocab_chunk: int = 16384,
    token_chunk: int = 1024,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-token CE = logsumexp_v(z_v) − z_target with z = softcap(hidden @ W_U + b_U).

    ``hidden`` [N, d] are the final (post-final-norm) hidden states, ``W_U`` [d, V] the unembedding,
    ``b_U`` [V] or None, ``targets`` [N] next-token ids. The log-sum-exp is computed online over
    vocab chunks of ``vocab_chunk`` columns and over ``token_chunk`` rows at a time, so at most a
    [token_chunk, vocab_chunk] block of logits exists at once (never [N, V]; V = 262144 for
    Gemma-3). Matmuls run in ``dtype`` (float32 by default). Returns float32/``dtype`` [N].
    """
    _unembed_args(hidden, W_U, b_U)
    targets = torch.as_tensor(targets, device=hidden.device).reshape(-1).long()
    if targets.shape[0] != hidden.shape[0]:
        raise ValueError(f"{targets.shape[0]} targets for {hidden.shape[0]} hidden states")
    V = W_U.shape[1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= V):
        raise ValueError(f"target ids must lie in [0, {V})")
    out = torch.empty(hidden.shape[0], dtype=dtype, device=hidden.device)
    for t0 in range(0, hidden.shape[0], token_chunk):
        h = hidden[t0 : t0 + token_chunk].to(dtype)
        tg = targets[t0 : t0 + token_chunk]
        lse = _chunked_logsumexp(h, W_U, b_U, softcap, vocab_chunk, dtype)
        z_t = (h * W_U[:, tg].T.to(dtype)).sum(dim=1)
        if b_U is not None:
            z_t = z_t + b_U[tg].to(dtype)
        out[t0 : t0 + token_chunk] = lse - softcap_logits(z_t, softcap)
    return out


def chunked_kl_divergence(
    hidden_clean: torch.Tensor,
    hidden_spliced: torch.Tensor,
    W_U: torch.Tensor,
    b_U: torch.Tensor | None,
    *,
    softcap: float | None = None,
    vocab_chunk: int = 16384,
    token_chunk: int = 1024,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-token KL(P_clean ‖ P_spliced) from final hidden states, chunked over the vocab.

    With z = clean logits, w = spliced logits (after the same unembed and soft-cap):
    KL = Σ_v softmax(z)_v (z_v − w_v) − lse(z) + lse(w). Two passes over vocab chunks: the first
    computes both log-sum-exps online, the second the expectation. Never materialises [N, V].
    Returns [N] in ``dtype``, clamped at 0.
    """
    _unembed_args(hidden_clean, W_U, b_U)
    if hidden_clean.shape != hidden_spliced.shape:
        raise ValueError(f"hidden shapes differ: {tuple(hidden_clean.shape)} vs {tuple(hidden_spliced.shape)}")
    V = W_U.shape[1]
    out = torch.empty(hidden_clean.shape[0], dtype=dtype, device=hidden_clean.device)
    for t0 in range(0, hidden_clean.shape[0], token_chunk):
        hc = hidden_clean[t0 : t0 + token_chunk].to(dtype)
        hs = hidden_spliced[t0 : t0 + token_chunk].to(dtype)
        lse_c = _chunked_logsumexp(hc, W_U, b_U, softcap, vocab_chunk, dtype)
        lse_s = _chunked_logsumexp(hs, W_U, b_U, softcap, vocab_chunk, dtype)
        acc = torch.zeros(hc.shape[0], dtype=dtype, device=hc.device)
        for v0 in range(0, V, vocab_chunk):
            v1 = min(V, v0 + vocab_chunk)
            z = _logits_chunk(hc, W_U, b_U, v0, v1, softcap, dtype)
            w = _logits_chunk(hs, W_U, b_U, v0, v1, softcap, dtype)
            acc = acc + (torch.exp(z - lse_c[:, None]) * (z - w)).sum(dim=1)
        out[t0 : t0 + token_chunk] = (acc - lse_c + lse_s).clamp_min(0.0)
    return out


# --------------------------------------------------------------------------- streaming


class ReconstructionStats:
    """Streaming accumulator of the reconstruction metrics over batches of eval tokens.

    Accumulates, in float64, N, Σx [d], Σx̂ [d], Σ‖x‖², Σ‖x̂‖², Σ x·x̂, Σ‖x − x̂‖², Σ‖f‖₀,
    Σ‖f‖₀² and per-latent firing counts, then derives (μ = Σx/N, μ̂ = Σx̂/N):

    * γ   = Σ‖x̂‖² / Σ x·x̂
    * γ_c = (Σ‖x̂‖² − N‖μ̂‖²) / (Σ x·x̂ − N μ·μ̂)    [= Σ‖x̂ − μ̂‖² / Σ(x − μ)·(x̂ − μ̂)]
    * NMSE = Σ‖x − x̂‖² / (Σ‖x‖² − N‖μ‖²)
    * L0 = Σ‖f‖₀ / N (± its SE), alive fraction from the firing counts.

    Σ‖x − x̂‖² is accumulated directly (not as Σ‖x‖² − 2Σx·x̂ + Σ‖x̂‖²) to avoid cancellation.
    """

    def __init__(self, d_in: int, n_latents: int | None = None, device: torch.device | str = "cpu"):
        self.d_in = int(d_in)
        self.n_latents = None if n_latents is None else int(n_latents)
        kw: dict[str, Any] = dict(dtype=torch.float64, device=device)
        self.n = 0
        self.sum_x = torch.zeros(self.d_in, **kw)
        self.sum_x_hat = torch.zeros(self.d_in, **kw)
        self.sum_sq_x = torch.zeros((), **kw)
        self.sum_sq_x_hat = torch.zeros((), **kw)
        self.sum_x_dot_x_hat = torch.zeros((), **kw)
        self.sum_sq_err = torch.zeros((), **kw)
        self.sum_l0 = torch.zeros((), **kw)
        self.sum_sq_l0 = torch.zeros((), **kw)
        self.counts: torch.Tensor | None = (
            None if n_latents is None else torch.zeros(int(n_latents), dtype=torch.int64, device=device)
        )

    @torch.no_grad()
    def update(self, x: ArrayLike, x_hat: ArrayLike, codes: ArrayLike | None = None) -> None:
        """Add a batch: ``x``, ``x_hat`` [n, d_in]; ``codes`` [n, n_latents] (needed iff n_latents)."""
        x, x_hat = as_float64(x), as_float64(x_hat)
        _check_pair(x, x_hat)
        if x.shape[1] != self.d_in:
            raise ValueError(f"expected d_in = {self.d_in}, got {x.shape[1]}")
        if (codes is None) != (self.counts is None):
            raise ValueError("pass codes iff the accumulator was created with n_latents")
        dev = self.sum_x.device
        x, x_hat = x.to(dev), x_hat.to(dev)
        self.n += x.shape[0]
        self.sum_x += x.sum(dim=0)
        self.sum_x_hat += x_hat.sum(dim=0)
        self.sum_sq_x += (x * x).sum()
        self.sum_sq_x_hat += (x_hat * x_hat).sum()
        self.sum_x_dot_x_hat += (x * x_hat).sum()
        self.sum_sq_err += ((x - x_hat) ** 2).sum()
        if codes is not None:
            f = torch.as_tensor(codes).to(dev)
            if f.shape != (x.shape[0], self.n_latents):
                raise ValueError(f"codes must be [{x.shape[0]}, {self.n_latents}], got {tuple(f.shape)}")
            nz = f != 0
            per_tok = nz.sum(dim=1).to(torch.float64)
            self.sum_l0 += per_tok.sum()
            self.sum_sq_l0 += (per_tok * per_tok).sum()
            counts = cast(torch.Tensor, self.counts)
            counts += nz.sum(dim=0).to(torch.int64)

    def merge(self, other: ReconstructionStats) -> ReconstructionStats:
        """Add another accumulator's sums into this one (e.g. from parallel workers); returns self."""
        if other.d_in != self.d_in or other.n_latents != self.n_latents:
            raise ValueError("cannot merge accumulators of different shapes")
        self.n += other.n
        for name in (
            "sum_x",
            "sum_x_hat",
            "sum_sq_x",
            "sum_sq_x_hat",
            "sum_x_dot_x_hat",
            "sum_sq_err",
            "sum_l0",
            "sum_sq_l0",
        ):
            getattr(self, name).add_(getattr(other, name).to(self.sum_x.device))
        if self.counts is not None:
            self.counts += cast(torch.Tensor, other.counts).to(self.counts.device)
        return self

    def compute(self) -> dict[str, float]:
        """All metrics as floats: n_tokens, gamma, gamma_c, nmse, mse, and (with codes) l0, l0_se,
        alive_frac. ``mse`` = E‖x − x̂‖² (summed over dims, averaged over tokens)."""
        if self.n == 0:
            raise ValueError("no tokens accumulated")
        n = self.n
        mu, mu_hat = self.sum_x / n, self.sum_x_hat / n
        mu_dot_mu_hat = float(mu @ mu_hat)
        mu_sq = float(mu @ mu)
        sxx, shh, sxh = float(self.sum_sq_x), float(self.sum_sq_x_hat), float(self.sum_x_dot_x_hat)
        var = sxx - n * mu_sq  # Σ‖x − μ‖²
        out = {
            "n_tokens": float(n),
            "gamma": _bias_ratio(shh, sxh, sxx),
            "gamma_c": _bias_ratio(shh - n * float(mu_hat @ mu_hat), sxh - n * mu_dot_mu_hat, var),
            "nmse": float(self.sum_sq_err) / var if var > 0 else float("nan"),
            "mse": float(self.sum_sq_err) / n,
        }
        if self.counts is not None:
            mean_l0 = float(self.sum_l0) / n
            var = (float(self.sum_sq_l0) - n * mean_l0**2) / (n - 1) if n > 1 else float("nan")
            out["l0"] = mean_l0
            out["l0_se"] = math.sqrt(max(var, 0.0) / n) if n > 1 else float("nan")
            out["alive_frac"] = alive_fraction(self.counts)
        return out
