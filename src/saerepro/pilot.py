"""Pilot mode: choose each hook point's λ grid from short probe runs, aiming at a target L0 range.

The paper's λ values do not carry over to another model, site or loss convention without an
assumption (:mod:`saerepro.paper`). The pilot replaces that trust with a measurement: at every
(layer, site, architecture) of the sweep, short *probe* SAEs are trained over a wide, log-spaced λ
range on the hook point's activation cache, their L0 is measured on a fixed sample of cached rows,
log L0 is interpolated against log λ, and ``n_coefficients`` values of λ are chosen whose predicted
L0s are log-spaced over the target range ``[lo, hi]`` (highest L0 first means smallest λ first).

Pure logic (:func:`fit_probes`, :func:`coefficient_for_l0`, :func:`choose_coefficients`) needs only
numpy; :func:`run_pilot` trains the probes and writes ``pilot.json``; :func:`apply_pilot` loads every
``pilot.json`` that exists into a :class:`~saerepro.config.Config`, whose ``runs()`` then lists the
chosen coefficients (Snakemake's ``pilot`` checkpoint re-evaluates the DAG once they exist).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import paths
from .activations import open_cache
from .config import Config, SaeKey, pilot_key
from .io import atomic_write_json
from .paper import round_significant

log = logging.getLogger("saerepro")

#: Written per (model, corpus, layer, site, architecture) by the ``pilot`` checkpoint.
PILOT_JSON = paths.PILOT
#: Where the probe SAEs are trained (beside pilot.json; not results of the sweep).
PROBE_DIR = paths.PILOT_PROBE_DIR

#: An L0 may rise with λ by this relative amount between neighbouring probes (short runs are noisy)
#: before the probes are refused as non-monotone. 25%: SmolLM2-135M's baseline probes at 100k tokens
#: rose 14% (L0 32.8 at λ 0.55, 37.4 at λ 2.1) inside the target range, between a 170.6 and a 1.0.
MONOTONE_RTOL = 0.25


class PilotError(ValueError):
    """The probes cannot give a grid for the target: non-monotone, or the target is out of range."""


@dataclasses.dataclass(frozen=True)
class ProbeFit:
    """Probe λs (ascending) and their L0s made non-increasing, in log space, ready to interpolate."""

    log_coefficients: np.ndarray
    log_l0: np.ndarray

    @property
    def l0_range(self) -> tuple[float, float]:
        """(lowest, highest) L0 the probes reached."""
        return float(np.exp(self.log_l0[-1])), float(np.exp(self.log_l0[0]))


def fit_probes(coefficients: Sequence[float], l0s: Sequence[float], rtol: float = MONOTONE_RTOL) -> ProbeFit:
    """Check the probes and return the monotone log-log fit to interpolate.

    Probes with L0 = 0 (every latent dead, λ far too high) are dropped; at least two must remain.
    Probes at a smaller λ than the densest probe (the highest L0) are dropped too: short probes
    saturate there, and their L0 may fall again as λ shrinks (SmolLM2 at 100k tokens: L0 90.8 at
    λ 0.01 but 106.5 at λ 0.038), which says nothing about the λs above; a target beyond the densest
    probe is then refused by :func:`coefficient_for_l0` with its hint.
    L0 must not increase with λ by more than ``rtol`` (relative) between neighbouring probes;
    within that tolerance the L0s are replaced by their running minimum, so the fit is
    non-increasing and each target L0 has one λ.
    """
    if len(coefficients) != len(l0s):
        raise PilotError(f"{len(coefficients)} probe coefficients but {len(l0s)} L0s")
    pairs = sorted((float(c), float(v)) for c, v in zip(coefficients, l0s, strict=True))
    if any(c <= 0 or not math.isfinite(c) for c, _ in pairs):
        raise PilotError(f"probe coefficients must be positive and finite, got {[c for c, _ in pairs]}")
    if any(not math.isfinite(v) or v < 0 for _, v in pairs):
        raise PilotError(f"probe L0s must be finite and >= 0, got {[v for _, v in pairs]}")
    if len({c for c, _ in pairs}) != len(pairs):
        raise PilotError("probe coefficients must be distinct")
    live = [(c, v) for c, v in pairs if v > 0]
    if len(live) < 2:
        raise PilotError(f"only {len(live)} probe(s) with L0 > 0 (probes: {pairs}); lower probe_coefficients")
    densest = max(range(len(live)), key=lambda i: live[i][1])
    if densest > 0:
        log.info("pilot: probes below λ=%g dropped (L0 falls again there: %s)", live[densest][0], live[:densest])
    live = live[densest:]
    if len(live) < 2:
        raise PilotError(f"L0 is highest at the largest live λ (probes: {pairs}): L0 rises with λ; lower the probes")
    for (c0, v0), (c1, v1) in zip(live, live[1:], strict=False):
        if v1 > v0 * (1 + rtol):
            raise PilotError(
                f"L0 is not monotone in λ: L0 {v0:.4g} at λ={c0:g} but {v1:.4g} at λ={c1:g} (more than "
                f"{rtol:.0%} higher); the probes are too short or too noisy: raise pilot.tokens"
            )
    log_l0 = np.minimum.accumulate(np.log([v for _, v in live]))
    return ProbeFit(np.log([c for c, _ in live]), log_l0)


def predict_l0(fit: ProbeFit, coefficient: float) -> float:
    """L0 at ``coefficient``, interpolated linearly in log-log space (clamped at the probed ends)."""
    # np.interp needs increasing x: log λ is increasing already
    return float(np.exp(np.interp(math.log(coefficient), fit.log_coefficients, fit.log_l0)))


def coefficient_for_l0(fit: ProbeFit, target: float) -> float:
    """The λ whose interpolated L0 is ``target``; refuses a target outside the probed L0 range."""
    lo, hi = fit.l0_range
    if not lo <= target <= hi:
        hint = "lower" if target > hi else "higher"
        raise PilotError(
            f"target L0 {target:g} is outside the probed range [{lo:.4g}, {hi:.4g}]: extend "
            f"probe_coefficients to {hint} λ"
        )
    # log L0 is non-increasing in log λ; np.unique sorts L0 ascending and keeps each value's first
    # occurrence in λ order, i.e. the smallest λ of a flat stretch
    y_unique, first = np.unique(fit.log_l0, return_index=True)
    return float(np.exp(np.interp(math.log(target), y_unique, fit.log_coefficients[first])))


def target_l0s(target: tuple[float, float], n: int) -> list[float]:
    """``n`` L0s log-spaced over ``[lo, hi]``, highest first (one value: their geometric mean)."""
    lo, hi = float(target[0]), float(target[1])
    if not 0 < lo <= hi:
        raise PilotError(f"target L0 range must satisfy 0 < lo <= hi, got {list(target)}")
    if n < 1:
        raise PilotError(f"n_coefficients must be >= 1, got {n}")
    if n == 1:
        return [math.sqrt(lo * hi)]
    return [float(v) for v in np.exp(np.linspace(math.log(hi), math.log(lo), n))]


def choose_coefficients(
    coefficients: Sequence[float],
    l0s: Sequence[float],
    target: tuple[float, float],
    n: int,
    rtol: float = MONOTONE_RTOL,
) -> list[dict[str, float]]:
    """``n`` coefficients (ascending) whose predicted L0s are log-spaced over ``target``.

    Each entry is ``{"coefficient", "target_l0", "predicted_l0"}``; coefficients are rounded to
    :data:`saerepro.paper.SIGNIFICANT_DIGITS` significant digits (they name result folders).
    Raises :class:`PilotError` for non-monotone probes, a target the probes do not bracket, or two
    targets that round to one coefficient.
    """
    fit = fit_probes(coefficients, l0s, rtol)
    chosen = []
    for t in target_l0s(target, n):
        lam = round_significant(coefficient_for_l0(fit, t))
        chosen.append({"coefficient": lam, "target_l0": t, "predicted_l0": predict_l0(fit, lam)})
    lams = [c["coefficient"] for c in chosen]
    if len(set(lams)) != len(lams):
        raise PilotError(
            f"targets {[round(c['target_l0'], 3) for c in chosen]} give repeated coefficients {lams}: the "
            "probed L0 is flat over the target range; widen the target or probe other λs"
        )
    return sorted(chosen, key=lambda c: c["coefficient"])


# --------------------------------------------------------------------------- paths and configs


def pilot_path(cfg: Config, layer: int | str, site: str, architecture: str) -> str:
    """Where the pilot of one (layer, site, architecture) writes its choice."""
    return PILOT_JSON.format(model=cfg.model, corpus=cfg.corpus.name, layer=layer, site=site, architecture=architecture)


def apply_pilot(cfg: Config, root: str | Path = ".") -> Config:
    """``cfg`` with the grids of every ``pilot.json`` that exists under ``root`` (relative paths as
    the DAG writes them); ``cfg`` unchanged when it has no ``pilot`` section."""
    if cfg.pilot is None:
        return cfg
    grids: dict[str, tuple[float, ...]] = {}
    for architecture, layer, site in cfg.pilot_points():
        path = Path(root) / pilot_path(cfg, layer, site, architecture)
        if path.exists():
            data = json.loads(path.read_text())
            grids[pilot_key(architecture, layer, site)] = tuple(float(c) for c in data["coefficients"])
    return dataclasses.replace(cfg, pilot_grids=grids)


# --------------------------------------------------------------------------- the stage


def measure_l0(sae_dir: str | Path, rows: Any) -> float:
    """Mean number of active latents per row of the (normalised) activations ``rows``."""
    import torch

    from .sae import load_sae

    sae = load_sae(str(sae_dir), device="cpu")  # as trained, on normalised activations
    with torch.no_grad():
        codes = sae.encode(rows)
    return float((codes != 0).float().sum(-1).mean())


def run_pilot(
    cfg: Config, layer: int, site: str, architecture: str, cache_dir: str | Path, out_path: str | Path
) -> dict:
    """Train the probes of one (layer, site, architecture) together, measure their L0s, choose the
    grid and write ``out_path`` (pilot.json). A :class:`PilotError` is raised after the probes'
    L0s are written to ``out_path``'s folder as ``pilot_failed.json``, so they can be inspected."""
    from .training import TrainConfig, train_saes
    from .training.data import sample_rows

    pilot = cfg.pilot
    if pilot is None:
        raise ValueError("the config has no pilot section")
    cache = open_cache(cache_dir, verify=True)
    probes = cfg.probe_coefficients(architecture, site)
    target = pilot.target_at(site)
    out_dir = Path(out_path).parent
    runs = [SaeKey(cfg.model, layer, site, architecture, lam, cfg.seeds[0], cfg.corpus.name) for lam in probes]
    tcfgs = [
        dataclasses.replace(
            TrainConfig.from_run(cfg, run, cache.d_in), total_tokens=pilot.tokens, checkpoint_every_steps=0
        )
        for run in runs
    ]
    dirs = [
        PROBE_DIR.format(
            model=cfg.model,
            corpus=cfg.corpus.name,
            layer=layer,
            site=site,
            architecture=architecture,
            coefficient=run.coefficient_str,
        )
        for run in runs
    ]
    log.info(
        "pilot L%s/%s/%s: training %d probes (coefficients %s) on %d tokens each, together",
        layer,
        site,
        architecture,
        len(probes),
        probes,
        pilot.tokens,
    )
    train_saes(tcfgs, cache, dirs)  # a progress bar in the job's log: the probes take minutes
    rows = sample_rows(cache.source, pilot.l0_rows, (cfg.seeds[0], 7919))
    l0s = [measure_l0(d, rows) for d in dirs]
    result: dict[str, Any] = {
        "model": cfg.model,
        "corpus": cfg.corpus.name,
        "layer": layer,
        "site": site,
        "architecture": architecture,
        "target_l0": list(target),
        "probe_tokens": pilot.tokens,
        "l0_rows": pilot.l0_rows,
        "probes": [{"coefficient": c, "l0": v} for c, v in zip(probes, l0s, strict=True)],
    }
    try:
        chosen = choose_coefficients(probes, l0s, target, pilot.n_coefficients)
    except PilotError as err:
        atomic_write_json(out_dir / "pilot_failed.json", {**result, "error": str(err)})
        raise PilotError(f"pilot L{layer}/{site}/{architecture}: {err}") from None
    result["chosen"] = chosen
    result["coefficients"] = [c["coefficient"] for c in chosen]
    atomic_write_json(out_path, result)
    log.info("pilot L%s/%s/%s: probes %s -> coefficients %s", layer, site, architecture, result["probes"], chosen)
    return result
