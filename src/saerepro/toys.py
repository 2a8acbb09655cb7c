"""The paper's two toy settings, computed: Fig. 2 (L1 shrinkage) and Fig. 15 (App. F, JumpReLU).

Rajamanoharan et al. (arXiv 2404.16014 v2) draw both as illustrations. Here each becomes a small
table that :mod:`saerepro.figures` draws (``fig2_shrinkage_toy``, ``fig15_jumprelu_toy``):

* **Fig. 2**: "a single-feature SAE (with L1 coefficient λ = 1) reconstructs 1/2 rather than 1
  when minimizing Equation (4)". Minimising (1 − f)² + λf over f ≥ 0 gives f = 1 − λ/2. We train
  our own baseline and gated SAEs (their own ``loss_terms``) on x ≡ 1 with a fixed unit decoder at
  several λ: the baseline lands on 1 − λ/2, the gated SAE, whose magnitude path carries no L1
  term, on 1.
* **Fig. 15** (App. F): a feature X is on half the time; the projection of the activation on a
  fixed unit encoder direction is N(0, 1) when X is off ("noise from non-orthogonal features") and
  N(2, 1/4) when it is on. The reconstruction should be that projection when X is on and 0 when it
  is off. A ReLU encoder ``m·max(p − t, 0)`` ties its threshold to the origin it measures from; a
  JumpReLU ``1[p > t]·m·(p − d)`` does not. App. F hand-sets t = 1, d = 0, m = 1 for the JumpReLU
  and says the numbers "are likely not the mathematically optimal solution". We fit both encoders
  by least squares on samples of the toy at each threshold t (exact in m, a grid in d), which
  gives each a frontier of reconstruction error against how often it fires when X is off.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .io import atomic_path

#: App. F's toy: P(X on), and the projection's mean and standard deviation when X is on / off.
P_ON = 0.5
ON_MEAN, ON_STD = 2.0, 0.5  # N(2, 1/4)
OFF_MEAN, OFF_STD = 0.0, 1.0  # N(0, 1)

#: App. F's hand-set JumpReLU: threshold t = 1, origin d = 0, magnitude m = 1.
PAPER_JUMPRELU = {"t": 1.0, "d": 0.0, "m": 1.0}

#: λs of the Fig. 2 table (the paper's λ = 1 among them).
SHRINKAGE_COEFFICIENTS = (0.25, 0.5, 1.0, 1.5)


def train_single_feature(architecture: str, coefficient: float, steps: int = 3000, average_last: int = 500) -> float:
    """Our ``architecture`` SAE's reconstruction of x = 1 (one feature, unit decoder held fixed),
    trained by Adam on its own loss and averaged over the last ``average_last`` steps: at a
    constant LR, Adam's steps stay ~lr-sized once the gradients are tiny, so the final iterate
    wanders by ±0.005 around the optimum in bursts, while its average sits on it to 1e-5."""
    import torch

    from .sae import make_sae

    torch.manual_seed(0)
    sae: Any = make_sae(architecture, 1, 1, dtype="float64")  # an nn.Module and an SAE
    with torch.no_grad():
        sae.W_dec.fill_(1.0)  # the single unit-norm dictionary element, held fixed
        sae.b_dec.zero_()
        sae.W_enc.fill_(1.0)
    free = [p for n, p in sae.named_parameters() if n not in ("W_dec", "b_dec")]
    opt = torch.optim.Adam(free, lr=0.01)
    x = torch.ones(8, 1, dtype=torch.float64)
    recon = []
    for step in range(steps):
        opt.zero_grad()
        sae.loss_terms(x, coefficient=coefficient).total.backward()
        opt.step()
        if step >= steps - average_last:
            with torch.no_grad():
                recon.append(float(sae.decode(sae.encode(x)).mean()))
    return sum(recon) / len(recon)


def shrinkage_toy(coefficients: Sequence[float] = SHRINKAGE_COEFFICIENTS) -> pd.DataFrame:
    """Fig. 2 as a table: one row per (architecture, λ) with the trained ``reconstruction`` of
    x = 1 and the ``optimum`` of the architecture's loss at a free magnitude (1 − λ/2 for the
    baseline, clipped at 0; 1 for gated while λ < 2 keeps its gate open, else 0)."""
    rows = []
    for arch in ("baseline", "gated"):
        for lam in coefficients:
            # gated: the aux term (1 − ReLU(π))² + λ·ReLU(π) keeps the gate open (π = 1 − λ/2 > 0)
            # only for λ < 2, and the unpenalised magnitude path then reconstructs 1
            optimum = max(1.0 - lam / 2.0, 0.0) if arch == "baseline" else float(lam < 2.0)
            rows.append(
                {
                    "architecture": arch,
                    "coefficient": float(lam),
                    "reconstruction": train_single_feature(arch, lam),
                    "optimum": optimum,
                }
            )
    return pd.DataFrame(rows)


def sample_jumprelu_toy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(projection, target)``, each [n]: the projection a·v̂ of App. F's toy and the
    reconstruction wanted of it (the projection when X is on, 0 when it is off)."""
    rng = np.random.default_rng(seed)
    on = rng.random(n) < P_ON
    p = np.where(on, ON_MEAN + ON_STD * rng.standard_normal(n), OFF_MEAN + OFF_STD * rng.standard_normal(n))
    return p, np.where(on, p, 0.0)


def _best_magnitudes(p: np.ndarray, y: np.ndarray, t: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For encoders ``1[p > t]·m·(p − d)`` on the grid (t [T], d [D]): the least-squares m ≥ 0 and
    the resulting sum of squared errors, both [T, D], from suffix sums over the sorted samples."""
    order = np.argsort(p)
    ps, ys = p[order], y[order]

    def suffix(v: np.ndarray) -> np.ndarray:
        return np.concatenate([np.cumsum(v[::-1])[::-1], [0.0]])

    s1, sp, sp2, sy, syp = suffix(np.ones_like(ps)), suffix(ps), suffix(ps**2), suffix(ys), suffix(ys * ps)
    k = np.searchsorted(ps, t, side="right")[:, None]  # first sample above each threshold
    dd = d[None, :]
    gy = syp[k] - dd * sy[k]  # Σ_{p>t} y (p − d)
    gg = sp2[k] - 2 * dd * sp[k] + dd**2 * s1[k]  # Σ_{p>t} (p − d)²
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(gg > 0, np.maximum(gy, 0.0) / gg, 0.0)
    sse = float((y**2).sum()) - 2 * m * gy + m**2 * gg
    return m, sse


#: Thresholds of the Fig. 15 frontier (a 0.05 grid); the origins d of the JumpReLU fit (a 0.01 grid).
TOY_THRESHOLDS = np.round(np.arange(-0.5, 2.5 + 1e-9, 0.05), 10) + 0.0  # + 0.0: no -0.0
TOY_ORIGINS = np.round(np.arange(-1.0, 3.0 + 1e-9, 0.01), 10) + 0.0  # holds every threshold


def jumprelu_toy(n: int = 400_000, seed: int = 0) -> pd.DataFrame:
    """Fig. 15 as a table, on ``n`` samples of App. F's toy: one row per (encoder, threshold t).

    ``setting`` "fitted": for each t of :data:`TOY_THRESHOLDS`, the ReLU with its least-squares m
    (its origin d is t) and the JumpReLU with its least-squares d ≤ t and m. ``setting`` "app_f":
    the encoders App. F names, its hand-set JumpReLU (t = 1, d = 0, m = 1) and the ReLU at t = 0,
    m = 1. Columns: ``relative_mse`` = MSE / E[target²]; ``fire_rate_off`` / ``fire_rate_on``, how
    often the encoder fires when X is off (a false detection, the toy's sparsity cost) / on; and
    the toy's distribution, so that a figure needs nothing but this table.
    """
    p, y = sample_jumprelu_toy(n, seed)
    on = y != 0
    energy = float((y**2).sum())
    dist = {
        "n_samples": n,
        "p_on": P_ON,
        "on_mean": ON_MEAN,
        "on_std": ON_STD,
        "off_mean": OFF_MEAN,
        "off_std": OFF_STD,
    }

    def row(encoder: str, setting: str, t: float, d: float, m: float) -> dict:
        fires = p > t
        sse = float((((fires * m * (p - d)) - y) ** 2).sum())
        return {
            "encoder": encoder,
            "setting": setting,
            "t": t,
            "d": d,
            "m": m,
            "relative_mse": sse / energy,
            "fire_rate_off": float(fires[~on].mean()),
            "fire_rate_on": float(fires[on].mean()),
            **dist,
        }

    rows = []
    m_relu, _ = _best_magnitudes(p, y, TOY_THRESHOLDS, TOY_THRESHOLDS)
    m_jump, sse_jump = _best_magnitudes(p, y, TOY_THRESHOLDS, TOY_ORIGINS)
    sse_jump = np.where(TOY_ORIGINS[None, :] <= TOY_THRESHOLDS[:, None] + 1e-12, sse_jump, np.inf)
    for i, t in enumerate(TOY_THRESHOLDS):
        rows.append(row("relu", "fitted", float(t), float(t), float(m_relu[i, i])))
        j = int(np.argmin(sse_jump[i]))
        rows.append(row("jumprelu", "fitted", float(t), float(TOY_ORIGINS[j]), float(m_jump[i, j])))
    rows.append(row("jumprelu", "app_f", PAPER_JUMPRELU["t"], PAPER_JUMPRELU["d"], PAPER_JUMPRELU["m"]))
    rows.append(row("relu", "app_f", 0.0, 0.0, 1.0))
    return pd.DataFrame(rows)


TOY_TABLES = ("shrinkage_toy.csv", "jumprelu_toy.csv")


def toys_key() -> str:
    """12 hex digits of the SHA-256 of this module's source: what the toy tables depend on (they
    are seeded; the SAE classes they train are checked against the paper's closed forms)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def write_toy_tables(out_dir: str | Path, machine_cache: str | Path | None = None) -> list[Path]:
    """``shrinkage_toy.csv`` and ``jumprelu_toy.csv`` in ``out_dir``; returns their paths.

    With ``machine_cache`` (the DAG passes ``<resources_dir>/toys``), tables computed once on this
    machine by the same source (:func:`toys_key`) are copied instead of recomputed (~1 min per run
    folder), and fresh ones are left there for the next run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in TOY_TABLES]
    cached = Path(machine_cache) / toys_key() if machine_cache is not None else None
    if cached is not None and all((cached / name).exists() for name in TOY_TABLES):
        for name, path in zip(TOY_TABLES, paths, strict=True):
            shutil.copyfile(cached / name, path)
        return paths
    shrinkage_toy().to_csv(paths[0], index=False, float_format="%.6g")
    jumprelu_toy().to_csv(paths[1], index=False, float_format="%.6g")
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        for name, path in zip(TOY_TABLES, paths, strict=True):
            with atomic_path(cached / name) as tmp:
                shutil.copyfile(path, tmp)
    return paths
