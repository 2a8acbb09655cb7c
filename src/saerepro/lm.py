"""Language-model forward passes for CE-based metrics: clean, zero-ablated and SAE-spliced.

Interventions replace the site at every position except 0 (BOS), the positions the SAEs are
trained on (BOS activations are never cached; see :mod:`saerepro.activations`). The CE is the
mean next-token cross-entropy over all predicted positions of the held-out sequences.

The 262k-vocabulary unembed dominates the cost, so the logits are never materialised whole:
the final hidden states are unembedded one vocabulary chunk at a time and reduced with a
running log-sum-exp (:func:`saerepro.metrics.chunked_cross_entropy`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

from .metrics import chunked_cross_entropy, mean_and_se
from .sites import hook_name

Hook = tuple[str, Callable]


def final_hidden(model, tokens: torch.Tensor, fwd_hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """Residual stream after the final norm, [batch, pos, d_model], with ``fwd_hooks`` applied."""
    resid = model.run_with_hooks(tokens, stop_at_layer=model.cfg.n_layers, fwd_hooks=list(fwd_hooks))
    return model.ln_final(resid)


def token_ce(model, tokens: torch.Tensor, fwd_hooks: Sequence[Hook] = ()) -> torch.Tensor:
    """Next-token CE at every predicted position, [batch, pos - 1]."""
    hidden = final_hidden(model, tokens, fwd_hooks)[:, :-1]
    b, p, d = hidden.shape
    softcap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    ce = chunked_cross_entropy(
        hidden.reshape(b * p, d),
        model.W_U,
        model.b_U,
        tokens[:, 1:].reshape(-1),
        softcap=softcap if softcap > 0 else None,
    )
    return ce.reshape(b, p)


def zero_ablation_hook(act: torch.Tensor, hook) -> torch.Tensor:
    """Replace the site with zeros at every position but BOS."""
    act = act.clone()
    act[:, 1:] = 0.0
    return act


def batches(tokens: np.ndarray, batch_size: int, device="cpu") -> Iterable[torch.Tensor]:
    for start in range(0, len(tokens), batch_size):
        yield torch.as_tensor(tokens[start : start + batch_size], dtype=torch.long, device=device)


@torch.no_grad()
def reference_ce(
    model,
    eval_tokens: np.ndarray,
    hook_points: list[tuple[int, str]],
    batch_size: int = 8,
    progress: bool = True,
    clean_ce: torch.Tensor | None = None,
) -> dict:
    """Clean CE once, and zero-ablation CE for every (layer, site), on the same tokens.

    ``clean_ce`` (per-token, sequences in order) skips the clean pass when the caller has it.

    Returns ``{"ce_clean": .., "ce_clean_se": .., "n_tokens": .., "zero": {(layer, site):
    {"ce_zero": .., "ce_zero_se": ..}}}``.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    passes = ([None] if clean_ce is None else []) + list(hook_points)
    per_pass: dict = {p: [] for p in passes}
    n_batches = (len(eval_tokens) + batch_size - 1) // batch_size
    bar = tqdm(total=n_batches * len(passes), desc="reference_ce", unit="fwd", disable=not progress)
    for batch in batches(eval_tokens, batch_size, device):
        for p in passes:
            hooks = [] if p is None else [(hook_name(*p), zero_ablation_hook)]
            per_pass[p].append(token_ce(model, batch, hooks))
            bar.update(1)
    bar.close()
    clean = torch.cat(per_pass[None]) if clean_ce is None else clean_ce.reshape(-1)
    ce_clean, se_clean = mean_and_se(clean)
    out: dict = {"ce_clean": ce_clean, "ce_clean_se": se_clean, "n_tokens": int(clean.numel()), "zero": {}}
    for p in hook_points:
        ce_zero, se_zero = mean_and_se(torch.cat(per_pass[p]))
        out["zero"][p] = {"ce_zero": ce_zero, "ce_zero_se": se_zero}
    return out


def eval_token_subset(eval_tokens: np.ndarray, n_tokens: int) -> np.ndarray:
    """The fixed held-out sequences every metric uses: the first ``n_tokens // ctx`` rows."""
    ctx = eval_tokens.shape[1]
    n_seq = max(1, n_tokens // ctx)
    if n_seq > len(eval_tokens):
        raise ValueError(f"asked for {n_seq} eval sequences, the eval split has {len(eval_tokens)}")
    return eval_tokens[:n_seq]
