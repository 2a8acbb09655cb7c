"""The figures' shared style: one colour, marker and label per architecture (:data:`ARCH_STYLES`),
site titles, axis labels, how a figure is saved, and the seaborn context every figure is drawn in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import seaborn as sns

from ..architectures import SpecMap


@dataclass(frozen=True)
class ArchStyle:
    """How one architecture is drawn in every figure."""

    color: str
    marker: str
    label: str
    linestyle: str = "-"


#: THE architecture -> style map (seaborn "colorblind" palette); every figure uses it.
#: Each architecture's style, from its spec (:data:`saerepro.architectures.SPECS`).
ARCH_STYLES: SpecMap[ArchStyle] = SpecMap(lambda spec: ArchStyle(spec.color, spec.marker, spec.label, spec.linestyle))

_FALLBACK = ArchStyle("#333333", "*", "?", ":")


#: Panel titles of the sites.
SITE_LABELS: dict[str, str] = {
    "resid": "Residual stream",
    "mlp": "MLP output",
    "attn": "Attention output (pre-W_O)",
    "mlp_post": "MLP neurons (post-nonlinearity)",
}


_LABELS = {
    "l0": "L0 (log scale)",
    "loss_recovered": "Loss recovered",
    "delta_lm_loss": "ΔLM loss (nats)",
    "gamma": r"$\gamma$ (relative reconstruction bias)",
    "gamma_c": r"$\gamma_c$ (mean-centred $\gamma$)",
}


def arch_style(arch: str) -> ArchStyle:
    """The style of ``arch``; unknown architectures get a dark-grey star labelled by their name."""
    if arch in ARCH_STYLES:
        return ARCH_STYLES[arch]
    return ArchStyle(_FALLBACK.color, _FALLBACK.marker, str(arch), _FALLBACK.linestyle)


class FigureDataError(ValueError):
    """The table handed to a figure function cannot produce that figure (e.g. missing column)."""


def save_figure(fig: plt.Figure, stem: str | Path) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` (150 dpi) and ``<stem>.pdf``; returns both paths.

    Metadata dates are left out so reruns give byte-identical PDFs.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")
    fig.savefig(png, dpi=150, metadata={"Software": None})
    fig.savefig(pdf, metadata={"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None})
    return [png, pdf]


#: Narrowest figure (inches): a one-panel figure keeps its title and legend inside it.
MIN_FIG_WIDTH = 8.0


def _fig_width(per_panel: float, n_panels: int) -> float:
    return max(per_panel * n_panels, MIN_FIG_WIDTH)


def _token_label(n: float) -> str:
    """262144 -> '262k', 1048576 -> '1.05M': tick labels for token budgets."""
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k"


#: Drawn over an SAE whose training blew up (``diverged`` of :mod:`saerepro.health`).
DIVERGED_COLOR = "#C00000"


DIVERGED_MARK: dict[str, Any] = {"marker": "x", "color": DIVERGED_COLOR, "s": 70, "linewidths": 1.8}


DIVERGED_LABEL = "diverged in training (training_health.csv)"


def _styled(func: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
            return func(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = func.__name__, func.__doc__
    wrapper.__wrapped__ = func  # type: ignore[attr-defined]  # what functools.wraps sets
    return wrapper
