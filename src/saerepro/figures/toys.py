"""The paper's two toy settings (Figs. 2 and 15), from the tables :mod:`saerepro.toys` writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .panels import (
    _require,
)
from .style import (
    ARCH_STYLES,
    _fig_width,
    arch_style,
    save_figure,
)


def plot_shrinkage_toy(table: pd.DataFrame, stem: str | Path) -> plt.Figure:
    """Paper Fig. 2, computed (:func:`saerepro.toys.shrinkage_toy`): our trained single-feature
    baseline and gated SAEs' reconstruction of x = 1 against λ (markers, ``gid="toy:<arch>"``),
    over each loss's optimum (lines, ``gid="optimum:<arch>"``: 1 − λ/2 and 1)."""
    _require(table, ["architecture", "coefficient", "reconstruction", "optimum"], "fig2_shrinkage_toy")
    fig, ax = plt.subplots(figsize=(4.6, 3.4), layout="constrained")
    grid = np.linspace(0.0, float(table["coefficient"].max()) * 1.05, 50)
    for arch, optimum, label in (
        ("baseline", np.maximum(1 - grid / 2, 0), "optimum of (1 − f)² + λf: 1 − λ/2"),
        ("gated", np.ones_like(grid), "optimum without L1 on the magnitude: 1"),
    ):
        st = arch_style(arch)
        pts = table[table["architecture"] == arch].sort_values("coefficient")
        ax.plot(grid, optimum, color=st.color, ls="--", lw=1, alpha=0.8, label=label, gid=f"optimum:{arch}")
        ax.plot(
            pts["coefficient"], pts["reconstruction"], ls="none", marker=st.marker, color=st.color,
            label=f"{st.label}, trained", gid=f"toy:{arch}",
        )  # fmt: skip
    ax.set_xlabel("L1 coefficient λ")
    ax.set_ylabel("reconstruction of x = 1")
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("Shrinkage of a single feature (paper Fig. 2)", fontsize=10)
    save_figure(fig, stem)
    return fig


def _normal_pdf(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))


#: Line styles of the Fig. 15 encoders: (encoder, setting) -> (colour, line style, label).
_TOY_ENCODERS = {
    ("relu", "fitted"): (ARCH_STYLES["baseline"].color, "-", "ReLU, best m"),
    ("jumprelu", "fitted"): (ARCH_STYLES["jumprelu"].color, "-", "JumpReLU, best d and m"),
    ("jumprelu", "app_f"): ("#555555", ":", "JumpReLU of App. F (t = 1, d = 0, m = 1)"),
    ("relu", "app_f"): ("#999999", ":", "ReLU of App. F (t = 0, m = 1)"),
}


def plot_jumprelu_toy(table: pd.DataFrame, stem: str | Path, threshold: float = 1.0) -> plt.Figure:
    """Paper Fig. 15 (App. F), computed (:func:`saerepro.toys.jumprelu_toy`), in three panels:
    (a) the projection's density when the feature is off / on, with the threshold ``threshold``;
    (b) the encoders at that threshold against the projection, beside the wanted reconstruction;
    (c) beyond the paper: each fitted encoder's relative MSE against how often it fires when the
    feature is off, over all thresholds (``gid="toy_frontier:<encoder>"``), App. F's encoders marked."""
    cols = ["encoder", "setting", "t", "d", "m", "relative_mse", "fire_rate_off", "p_on", "on_mean", "on_std"]
    _require(table, [*cols, "off_mean", "off_std"], "fig15_jumprelu_toy")
    first = table.iloc[0]
    fig, axes = plt.subplots(1, 3, figsize=(_fig_width(3.6, 3), 3.5), layout="constrained")
    x = np.linspace(-3.0, 4.0, 701)
    off = (1 - first["p_on"]) * _normal_pdf(x, first["off_mean"], first["off_std"])
    on = first["p_on"] * _normal_pdf(x, first["on_mean"], first["on_std"])
    ax = axes[0]
    ax.fill_between(x, off, color="#56B4E9", alpha=0.5, lw=0, label="feature off: N(0, 1)")
    ax.fill_between(x, on, color="#029E73", alpha=0.5, lw=0, label="feature on: N(2, 1/4)")
    ax.axvline(threshold, color="#555555", ls=":", lw=1, label=f"threshold t = {threshold:g}")
    ax.set_xlabel("projection a·v̂")
    ax.set_ylabel("density (each weighted by its probability)")
    ax.set_title("(a) the toy's projection", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[1]
    ax.plot(x[x > 0.5], x[x > 0.5], color="#029E73", lw=3, alpha=0.35, label="wanted when on: a·v̂")
    ax.axhline(0, color="#56B4E9", lw=3, alpha=0.35, label="wanted when off: 0")
    at_t = table[np.isclose(table["t"], threshold)]
    for (encoder, setting), (color, ls, label) in _TOY_ENCODERS.items():
        row = at_t[(at_t["encoder"] == encoder) & (at_t["setting"] == setting)]
        if row.empty:
            continue
        r = row.iloc[0]
        y = np.where(x > r["t"], r["m"] * (x - r["d"]), 0.0)
        ax.plot(
            x, y, color=color, ls=ls, lw=1.5, gid=f"toy_encoder:{encoder}:{setting}",
            label=f"{label}: rel. MSE {r['relative_mse']:.3f}" + ("" if setting == "app_f" else f" (d {r['d']:.2f}, m {r['m']:.2f})"),
        )  # fmt: skip
    ax.set_xlim(-3, 4)
    ax.set_ylim(-0.5, 5)
    ax.set_xlabel("projection a·v̂")
    ax.set_ylabel("encoder output")
    ax.set_title(f"(b) encoders firing above t = {threshold:g}", fontsize=10)
    ax.legend(fontsize=6, loc="upper left")

    ax = axes[2]
    for (encoder, setting), (color, _ls, label) in _TOY_ENCODERS.items():
        pts = table[(table["encoder"] == encoder) & (table["setting"] == setting)].sort_values("fire_rate_off")
        if setting == "fitted":
            ax.plot(
                pts["fire_rate_off"],
                pts["relative_mse"],
                color=color,
                lw=1.5,
                label=label,
                gid=f"toy_frontier:{encoder}",
            )
        else:
            ax.plot(pts["fire_rate_off"], pts["relative_mse"], ls="none", marker="*", ms=9, color=color, label=label)
    ax.set_xlabel("fires when the feature is off (fraction)")
    ax.set_ylabel("relative MSE (MSE / E[wanted²])")
    ax.set_ylim(0, 0.4)
    ax.set_title("(c) error vs false firing, every threshold", fontsize=10)
    ax.legend(fontsize=6, loc="upper right")
    fig.suptitle(
        "App. F's toy: at equal false firing a JumpReLU reconstructs better than a ReLU (paper Fig. 15)", fontsize=11
    )
    save_figure(fig, stem)
    return fig


#: The toy figures: stem -> (their table in ``<tables>/toys/``, function). Captions:
#: ``workflow/report/<stem>.rst``.
TOY_FIGURES: dict[str, tuple[str, Callable[..., plt.Figure]]] = {
    "fig2_shrinkage_toy": ("shrinkage_toy.csv", plot_shrinkage_toy),
    "fig15_jumprelu_toy": ("jumprelu_toy.csv", plot_jumprelu_toy),
}


def toy_figures_from_tables(toys_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Every figure of :data:`TOY_FIGURES` from the tables :func:`saerepro.toys.write_toy_tables`
    wrote to ``toys_dir``; returns the written paths."""
    written: list[Path] = []
    for stem, (name, plot) in TOY_FIGURES.items():
        fig = plot(pd.read_csv(Path(toys_dir) / name), Path(out_dir) / stem)
        plt.close(fig)
        written += [Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.pdf"]
    return written
