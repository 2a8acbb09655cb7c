"""Building an SAE for a run: construction from its TrainConfig and the b_dec initialisation."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..activations import ActivationCache
from ..sae import BaselineRescaleShiftSAE, BaselineSAE, make_sae
from ..sae.common import SaeReproMixin
from ..sae.registry import load_sae
from .config import TrainConfig
from .data import sample_rows


def geometric_median(points: torch.Tensor, max_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm, started at the mean."""
    y = points.mean(dim=0)
    for _ in range(max_iter):
        w = 1.0 / (points - y).norm(dim=1).clamp_min(1e-8)
        y_new = (w[:, None] * points).sum(dim=0) / w.sum()
        if (y_new - y).norm() <= tol * max(1.0, float(y.norm())):
            return y_new
        y = y_new
    return y


def build_sae(cfg: TrainConfig, cache: ActivationCache, device: torch.device, init_b_dec: bool = True) -> SaeReproMixin:
    d_in = cache.d_in
    hook_name = cfg.hook_name or cache.meta.get("hook_name")
    metadata: dict[str, Any] = {
        "hook_name": hook_name,
        "model_name": cache.meta.get("model"),
        "saerepro_architecture": cfg.architecture,
        "coefficient": cfg.coefficient,
        "activation_scale": cache.scale,
        "activations_normalised": True,
        "cache_sha256": cache.meta.get("array_sha256"),
        "train_config": cfg.to_dict(),
    }
    for key in ("context_size", "prepend_bos", "layer", "site"):
        if key in cache.meta:
            metadata[key] = cache.meta[key]
    arch_kwargs: dict[str, Any] = cfg.arch.sae_kwargs(cfg.coefficient) if cfg.arch is not None else {}

    baseline = None
    d_sae = cfg.resolve_d_sae(d_in)
    if cfg.architecture == "baseline_rescale_shift":
        baseline = load_sae(str(cfg.baseline_path))
        if not isinstance(baseline, BaselineSAE):
            raise ValueError(
                f"TrainConfig.baseline_path {cfg.baseline_path} holds a {type(baseline).__name__}, not a baseline SAE"
            )
        if cfg.d_sae is not None and cfg.d_sae != baseline.cfg.d_sae:
            raise ValueError(f"TrainConfig.d_sae is {cfg.d_sae} but the baseline has {baseline.cfg.d_sae} latents")
        if baseline.cfg.d_in != d_in:
            raise ValueError(f"the baseline has d_in={baseline.cfg.d_in}, the cache {d_in}")
        b_hook = baseline.cfg.metadata.hook_name
        if hook_name and b_hook and b_hook != hook_name:
            raise ValueError(f"the baseline was trained on {b_hook}, this cache is {hook_name}")
        b_coef = baseline.cfg.metadata.coefficient
        if b_coef is not None and not math.isclose(float(b_coef), float(cfg.coefficient), rel_tol=1e-9):
            raise ValueError(
                f"TrainConfig.coefficient must be the baseline's λ ({b_coef}) for baseline_rescale_shift; got {cfg.coefficient}"
            )
        d_sae = baseline.cfg.d_sae
        metadata["baseline_path"] = str(cfg.baseline_path)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sae = make_sae(cfg.architecture, d_in, d_sae, device="cpu", metadata=metadata, **arch_kwargs)
    if hook_name and hook_name.endswith("hook_z"):
        sae.cfg.reshape_activations = "hook_z"  # for sae-lens users; training never reshapes
    if baseline is not None:
        assert isinstance(sae, BaselineRescaleShiftSAE)
        sae.load_baseline_(baseline)
    elif cfg.b_dec_init != "zeros" and init_b_dec:
        sample = sample_rows(cache.source, min(32768, cache.n_tokens), (cfg.seed, 3))
        init = sample.mean(0) if cfg.b_dec_init == "mean" else geometric_median(sample)
        with torch.no_grad():
            sae.b_dec.copy_(init)
    return sae.to(device)  # type: ignore[return-value]
