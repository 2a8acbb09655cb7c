"""Inference-time optimisation (paper Figs. 10–11): sparse codes for a trained SAE's frozen decoder.

The paper asks whether gated SAEs learn better *dictionaries* and not only better encoders: it
freezes each trained SAE's decoder (W_dec, b_dec), finds sparse codes for the evaluation
activations with an optimiser instead of the SAE's encoder, and compares the L0 / loss-recovered
frontiers of those codes between architectures. The optimiser here is gradient pursuit
(Blumensath & Davies 2008), the one Smith (2024) used to replace SAE encoders at inference time:
k greedy iterations, each adding the atom most correlated with the residual to the support and
taking an exact line-search step along the gradient restricted to the support. Codes are kept
non-negative (SAE latents are), so the atom chosen is the one with the largest *positive*
correlation and negative coefficients are clipped after each step; the result has L0 ≤ k.

:class:`PursuitSAE` wraps a trained SAE so that :func:`saerepro.evaluate.evaluate_sae` evaluates
the pursuit codes exactly as it evaluates the SAE's own encoder (same splice, same metrics).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from .evaluate import subset_clean


@torch.no_grad()
def gradient_pursuit(
    x: torch.Tensor, dictionary: torch.Tensor, k: int, nonnegative: bool = True, refine: int = 0
) -> torch.Tensor:
    """Codes [N, F] with at most ``k`` non-zeros per row such that codes @ dictionary ≈ x.

    ``x`` [N, d] (already centred by the decoder bias), ``dictionary`` [F, d] (rows are atoms; any
    norms). Each of the k iterations: c = r Dᵀ for the residual r; add argmax c (argmax |c| if not
    ``nonnegative``) to the support S; g = c on S (0 elsewhere); step
    α = ⟨r, gD⟩ / ‖gD‖² (the exact minimiser of ‖x − (a + αg)D‖² over α); a ← a + α g, clipped at
    0 if ``nonnegative``. ``refine`` more such steps then follow on the final support without
    adding atoms (gradient pursuit's coefficients are not least-squares optimal after k steps).
    Computed in float32 at least.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if x.ndim != 2 or dictionary.ndim != 2 or x.shape[1] != dictionary.shape[1]:
        raise ValueError(
            f"x [N, d] and dictionary [F, d] must share d; got {tuple(x.shape)}, {tuple(dictionary.shape)}"
        )
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, D = x.to(dtype), dictionary.to(dtype)
    n, f = x.shape[0], D.shape[0]
    n_select = min(k, f)
    # Only the atom scoring r Dᵀ needs every atom; the step and the residual need only the support's
    # atoms, gathered once per pick into ``atoms`` [N, k, d]: 2.4x faster than dense products over
    # [N, F] at the long run's shapes (F = 3,840, k <= 64).
    support = torch.zeros(n, n_select, dtype=torch.long, device=x.device)
    coef = torch.zeros(n, n_select, dtype=dtype, device=x.device)
    atoms = torch.zeros(n, n_select, D.shape[1], dtype=dtype, device=x.device)
    resid = x.clone()
    for it in range(n_select + max(0, int(refine))):
        corr = resid @ D.T
        s = min(it + 1, n_select)
        if it < n_select:
            score = (corr if nonnegative else corr.abs()).scatter(1, support[:, :it], -torch.inf)
            support[:, it] = score.argmax(dim=1)
            atoms[:, it] = D[support[:, it]]
        g = corr.gather(1, support[:, :s])
        gd = torch.einsum("ns,nsd->nd", g, atoms[:, :s])
        denom = (gd * gd).sum(dim=1)
        step = torch.where(
            denom > 0,
            (resid * gd).sum(dim=1) / denom.clamp_min(torch.finfo(dtype).tiny),
            torch.zeros((), dtype=dtype, device=x.device),
        )
        coef[:, :s] += step[:, None] * g
        if nonnegative:
            coef.clamp_(min=0)
        resid = x - torch.einsum("ns,nsd->nd", coef[:, :s], atoms[:, :s])
    return torch.zeros(n, f, dtype=dtype, device=x.device).scatter_(1, support, coef)


class PursuitSAE:
    """A trained SAE whose encoder is replaced by :func:`gradient_pursuit` on its frozen decoder.

    ``encode(x)`` = gradient_pursuit(x − b_dec, W_dec, k, refine); ``decode(f)`` = f W_dec + b_dec (the
    SAE's own decoder). Has the ``cfg.d_in`` / ``cfg.d_sae`` that :func:`~saerepro.evaluate.evaluate_sae`
    reads.
    """

    def __init__(self, sae, k: int, refine: int = 10):
        self.sae = sae
        self.k = int(k)
        self.refine = int(refine)
        self.cfg = SimpleNamespace(d_in=int(sae.cfg.d_in), d_sae=int(sae.cfg.d_sae))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return gradient_pursuit(x - self.sae.b_dec, self.sae.W_dec, self.k, refine=self.refine)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.to(self.sae.W_dec.dtype) @ self.sae.W_dec + self.sae.b_dec


__all__ = ["PursuitSAE", "gradient_pursuit"]


#: Target L0s of the pursuit codes; the paper sweeps the same kind of range (Figs. 10–11).
DEFAULT_KS = (4, 8, 16, 32, 64)

#: Held-out tokens per pursuit evaluation: a prefix of the run's eval sequences. Each (SAE, k) costs
#: one spliced LM pass over them plus k pursuit iterations per token: measured on 2 cores (AMD EPYC,
#: no AMX), a hook point of 10 SAEs x (5 k + own encoder) took 54 min: ~22 s for a pass with the
#: SAE's own encoder, the pursuit adding ~1 s per unit of k (~90 s at k = 64). SEs are paired and
#: sequence-aware over these sequences.
EVAL_TOKENS = 4096


def ito_code_hash() -> str:
    """16 hex digits of the sha256 of the source of :func:`gradient_pursuit`, :class:`PursuitSAE`,
    :func:`subset_clean` and :func:`run_inference_opt`, and of :data:`DEFAULT_KS` and
    :data:`EVAL_TOKENS`: what computes an inference-time-optimisation table beyond the SAEs and
    their evaluation (whose code :data:`saerepro.provenance.METRIC_MOVING_CODE` lists). Every row
    records it (``ito_code``), so a committed table goes stale when the pursuit or its settings
    change; comments outside those functions do not count."""
    import hashlib
    import inspect

    parts = [inspect.getsource(obj) for obj in (gradient_pursuit, PursuitSAE, subset_clean, run_inference_opt)]
    parts.append(repr((tuple(DEFAULT_KS), int(EVAL_TOKENS))))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def run_inference_opt(
    cfg,
    layer: int,
    site: str,
    corpus,
    clean_path,
    out_csv,
    ks=DEFAULT_KS,
    n_tokens: int = EVAL_TOKENS,
    architectures=("gated", "baseline"),
    progress: bool = True,
):
    """Pursuit codes on every trained SAE of (layer, site) in ``architectures``, at each k.

    One row per (SAE, k): the SAE's key, ``k``, and the metrics of :func:`saerepro.evaluate.evaluate_sae`
    with paired SEs (``l0`` is the codes' actual L0 ≤ k). Also one row per SAE with ``k`` = 0 for its
    own encoder on the same tokens, so both frontiers are compared on equal data. Every row also
    carries ``config_hash`` and ``git_commit`` (as metrics rows do) and :func:`ito_code_hash`, which
    the freshness test of committed tables reads. Writes ``out_csv``.
    """
    import json
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from . import paths
    from .evaluate import evaluate_sae, paired_metrics
    from .lm import eval_token_subset
    from .models import load_model, resolve_device
    from .on_the_fly import hook_point_runs
    from .pipeline import activation_scale, load_clean_reference
    from .provenance import config_hash, git_commit
    from .sae import load_sae

    device = str(resolve_device(cfg.device))
    tokens_all = eval_token_subset(np.load(Path(corpus) / "eval.npy"), cfg.reference.eval_tokens)
    clean_all = load_clean_reference(clean_path, tokens_all)
    n_pred = tokens_all.shape[1] - 1
    n_seq = max(1, min(len(tokens_all), n_tokens // tokens_all.shape[1]))
    tokens, clean = tokens_all[:n_seq], subset_clean(clean_all, n_seq, n_pred)
    ref = json.loads(
        Path(paths.REFERENCE_CE.format(model=cfg.model, corpus=cfg.corpus.name, layer=layer, site=site)).read_text()
    )
    model = load_model(cfg.spec, cfg.resources_dir, device)
    rows = []
    for run in hook_point_runs(cfg, layer, site):
        if run.architecture not in architectures:
            continue
        run_dir = Path(paths.fill(paths.TRAIN_INFO, run)).parent
        sae = load_sae(str(run_dir), device=device)
        scale = activation_scale(paths.cache_dir(cfg, layer, site) if cfg.activations.mode != "on_the_fly" else run_dir)
        for k in (0, *ks):
            encoder = sae if k == 0 else PursuitSAE(sae, k)
            metrics, per_token = evaluate_sae(
                model,
                encoder,
                layer,
                site,
                scale,
                tokens,
                ref,
                batch_size=cfg.reference.batch_size,
                clean=clean,
                per_token=True,
                progress=progress,
            )
            metrics.update(paired_metrics(per_token, clean, layer, site, n_pred))
            rows.append(
                {
                    "model": run.model,
                    "layer": layer,
                    "site": site,
                    "architecture": run.architecture,
                    "coefficient": run.coefficient,
                    "seed": run.seed,
                    "k": k,
                    "encoder": "sae" if k == 0 else "gradient_pursuit",
                    **metrics,
                }
            )
    table = pd.DataFrame(rows).assign(config_hash=config_hash(cfg), git_commit=git_commit(), ito_code=ito_code_hash())
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False)
    return table
