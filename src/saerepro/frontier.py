"""Fitted frontiers with bootstrap bands: the uncertainty the verdicts rest on.

Why fit. A frontier drawn point to point through single noisy SAEs picks the lucky ones, and the
noisier architecture gains from it; at layer-6 resid and mlp, retraining moves loss recovered 5–12
times more than the evaluation tokens do (docs/results.md, seed spread), so a verdict's uncertainty must
include what retraining moves. Here each (hook point, architecture) gets one smooth monotone curve
fitted to all its SAEs and seeds, and its band comes from refitting resampled data.

Model (:data:`TRANSFORMS`). Over the L0s we study, reconstruction error falls as a power of L0:

* loss recovered y: 1 − y = A·L0^(−β), a straight line in (log L0, log(1 − y)); where an SAE
  reaches 1 or more (attn, where splicing the SAE in can beat the clean model by noise) the ceiling 1
  is raised to the highest fitted value + :data:`CEILING_MARGIN`;
* NMSE y: y = A·L0^(−β), a straight line in (log L0, log y);
* γ_c: a straight line in log L0.

Each is fitted by ordinary least squares on the transformed scale and is monotone in L0 (for the two
power laws, increasing fidelity wherever β > 0).

Bands (:func:`fit`, ``n_boot`` refits). Where some λ has several seeds, the seeds are resampled
with replacement within each λ (the λ design is kept; the band is what retraining moves). Where
every λ has one seed, the band comes from the fit's residual scatter: fitted values plus residuals
resampled with replacement and inflated by √(n / (n − 2)) (the two fitted parameters), i.e. the
residual scatter about the fitted frontier stands in for the seed spread it mostly is. How well these
bands hold their level with 4–8 SAEs per architecture is measured by simulation
(``tests/test_frontier.py``; docs/metrics.md prints the rates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: metric -> (to the fitted scale, back to the metric's scale), given the fit's ceiling c (loss
#: recovered only: 1, or just above the highest value fitted where an SAE exceeds 1).
TRANSFORMS: dict[str, tuple[Callable[[np.ndarray, float], np.ndarray], Callable[[np.ndarray, float], np.ndarray]]] = {
    "loss_recovered": (lambda y, c: np.log(np.clip(c - y, 1e-6, None)), lambda u, c: c - np.exp(u)),
    "nmse": (lambda y, c: np.log(np.clip(y, 1e-9, None)), lambda u, c: np.exp(u)),
    "gamma_c": (lambda y, c: y, lambda u, c: u),
}
#: How far above the highest fitted loss recovered the ceiling goes when that value is at least 1.
CEILING_MARGIN = 0.01


@dataclass(frozen=True)
class Fit:
    """One fitted frontier: u = a + b·log L0 on the metric's fitted scale, with bootstrap refits."""

    metric: str
    a: float
    b: float
    draws: np.ndarray
    """[n_boot, 2]: (a, b) of each bootstrap refit."""
    l0_range: tuple[float, float]
    """Smallest and largest L0 of the fitted SAEs."""
    y_range: tuple[float, float]
    """Smallest and largest metric value of the fitted SAEs."""
    n: int
    """SAEs fitted (every seed counts)."""
    resid_sd: float
    """Residual SD about the fit on the metric's own scale (n − 2 degrees of freedom)."""
    scheme: str
    """``seeds`` (resampled within λ) or ``residuals``."""
    ceiling: float
    """Loss recovered: the power law's asymptote c (1 − y becomes c − y); 1 unless an SAE reached 1."""
    df: int
    """Degrees of freedom of the spread: n − 2 (residuals) or n − the number of λs (seeds)."""

    def predict(self, l0) -> np.ndarray:
        return TRANSFORMS[self.metric][1](self.a + self.b * np.log(np.asarray(l0, dtype=float)), self.ceiling)

    def predict_draws(self, l0) -> np.ndarray:
        """[n_boot, len(l0)]: every refit's curve at ``l0``."""
        x = np.log(np.asarray(l0, dtype=float))
        return TRANSFORMS[self.metric][1](self.draws[:, :1] + self.draws[:, 1:] * x[None, :], self.ceiling)

    def l0_at(self, y: float) -> tuple[float, np.ndarray]:
        """The L0 at which the fit reaches ``y``, and each refit's (NaN where a refit is not
        monotone in the metric's direction: the level is not reached once and only once)."""
        u = float(TRANSFORMS[self.metric][0](np.asarray([y]), self.ceiling)[0])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            point = np.exp((u - self.a) / self.b) if self._monotone(self.b) else np.nan
            draws = np.where(
                self._monotone(self.draws[:, 1]), np.exp((u - self.draws[:, 0]) / self.draws[:, 1]), np.nan
            )
        return float(point), draws

    def _monotone(self, b):
        # fidelity rises with L0: loss recovered up (1 − y down: b < 0), NMSE down (b < 0)
        return np.asarray(b) < 0 if self.metric in ("loss_recovered", "nmse") else np.isfinite(b)


def _z(p: float) -> float:
    """The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile: exact for 1 and 2 degrees of freedom, a four-term Cornish–Fisher
    expansion above (within 1% of the exact value from 3 degrees of freedom at p = 0.975)."""
    if df <= 1:
        return float(np.tan(np.pi * (p - 0.5)))
    if df <= 2:
        return float((2 * p - 1) / np.sqrt(2 * p * (1 - p)))
    z = _z(p)
    return float(
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def small_sample_factor(df: float, level: float = 0.95) -> float:
    """How much wider a t-based interval with ``df`` degrees of freedom is than a normal one: the
    bootstrap's spread is an estimate from few SAEs, which its own quantiles do not know."""
    p = 1 - (1 - level) / 2
    return t_quantile(p, df) / _z(p)


def _ols(x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise least squares u = a + b·x over the last axis: (a, b)."""
    xm, um = x.mean(-1, keepdims=True), u.mean(-1, keepdims=True)
    sxx = ((x - xm) ** 2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(sxx > 0, ((x - xm) * (u - um)).sum(-1) / sxx, np.nan)
    return um[..., 0] - b * xm[..., 0], b


def fit(points: pd.DataFrame, metric: str, n_boot: int = 1000, seed: int = 0) -> Fit | None:
    """The frontier of one architecture at one hook point from its SAEs (columns ``l0``,
    ``metric``, ``coefficient``, and ``seed`` if any); None with fewer than 3 SAEs or fewer than 2
    coefficients (seeds of one λ differ in L0 by chance only: no frontier to fit)."""
    pts = points[np.isfinite(points["l0"].astype(float)) & (points["l0"].astype(float) > 0)]
    pts = pts[np.isfinite(pts[metric].astype(float))]
    if len(pts) < 3 or pts["coefficient"].nunique() < 2:
        return None
    to, back = TRANSFORMS[metric]
    x = np.log(pts["l0"].to_numpy(dtype=float))
    y = pts[metric].to_numpy(dtype=float)
    ceiling = max(1.0, float(y.max()) + CEILING_MARGIN) if float(y.max()) >= 1.0 else 1.0
    u = to(y, ceiling)
    a_fit, b_fit = _ols(x, u)
    a, b = float(a_fit), float(b_fit)
    rng = np.random.default_rng(seed)
    groups = pts.groupby("coefficient", sort=False).indices
    if max(len(ix) for ix in groups.values()) > 1:
        scheme = "seeds"
        picks = np.concatenate([ix[rng.integers(0, len(ix), size=(n_boot, len(ix)))] for ix in groups.values()], axis=1)
        da, db = _ols(x[picks], u[picks])
        # resampling m seeds shrinks their variance by (m − 1)/m: undo it
        m = float(np.mean([len(ix) for ix in groups.values() if len(ix) > 1]))
        da, db = a + (da - a) * np.sqrt(m / (m - 1)), b + (db - b) * np.sqrt(m / (m - 1))
        dof = len(pts) - len(groups)
    else:
        scheme = "residuals"
        fitted = a + b * x
        resid = (u - fitted) * np.sqrt(len(u) / max(1, len(u) - 2))
        ustar = fitted[None, :] + resid[rng.integers(0, len(u), size=(n_boot, len(u)))]
        da, db = _ols(np.broadcast_to(x, ustar.shape), ustar)
        dof = len(pts) - 2
    resid_y = y - back(a + b * x, ceiling)
    return Fit(
        metric=metric,
        a=a,
        b=b,
        draws=np.stack([da, db], axis=1),
        l0_range=(float(np.exp(x.min())), float(np.exp(x.max()))),
        y_range=(float(y.min()), float(y.max())),
        n=len(pts),
        resid_sd=float(np.sqrt((resid_y**2).sum() / max(1, len(y) - 2))),
        scheme=scheme,
        ceiling=ceiling,
        df=max(1, dof),
    )


def simultaneous_band(
    center: np.ndarray, draws: np.ndarray, level: float = 0.95, df: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """A band around ``center`` [G] that holds at all G points at once with probability ``level``
    under the bootstrap ``draws`` [B, G] (sup-t: the ``level`` quantile of each draw's largest
    standardised deviation, times each point's SD), widened by :func:`small_sample_factor` of
    ``df``. Draws with non-finite values count as exceeding any band."""
    with np.errstate(invalid="ignore"):
        sd = np.nanstd(np.where(np.isfinite(draws), draws, np.nan), axis=0, ddof=1)
    sd = np.where(sd > 0, sd, np.finfo(float).tiny)
    with np.errstate(invalid="ignore"):
        t = np.abs(draws - center[None, :]) / sd[None, :]
    t = np.sort(np.where(np.isfinite(t), t, np.inf).max(axis=1))
    q = float(t[int(np.ceil(level * (len(t) - 1)))]) * (small_sample_factor(df, level) if np.isfinite(df) else 1.0)
    return center - q * sd, center + q * sd


def interval_counting_undefined(
    point_draws: np.ndarray, level: float = 0.95, center: float | None = None, df: float = np.inf
) -> tuple[float, float, float]:
    """(low, high, share undefined) of a percentile interval of positive draws where undefined
    (NaN, infinite or non-positive) draws count as −∞ for the lower bound and +∞ for the upper one,
    instead of being dropped: a statistic undefined in 3% of draws has no finite 95% interval. With
    a positive ``center`` the draws' log-deviations from it are first widened by
    :func:`small_sample_factor` of ``df``."""
    n = len(point_draws)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        undefined = ~(np.isfinite(point_draws) & (point_draws > 0))
        if center is not None and np.isfinite(center) and center > 0 and np.isfinite(df):
            c = small_sample_factor(df, level)
            point_draws = np.where(undefined, np.nan, center * np.exp(c * np.log(point_draws / center)))
    alpha = (1 - level) / 2
    lows = np.sort(np.where(undefined, -np.inf, point_draws))
    highs = np.sort(np.where(undefined, np.inf, point_draws))
    lo = lows[int(np.floor(alpha * (n - 1)))]
    hi = highs[int(np.ceil((1 - alpha) * (n - 1)))]
    return float(lo), float(hi), float(undefined.mean())


__all__ = [
    "TRANSFORMS",
    "Fit",
    "fit",
    "interval_counting_undefined",
    "simultaneous_band",
    "small_sample_factor",
    "t_quantile",
]
