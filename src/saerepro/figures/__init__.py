"""Figures: one style map for all architectures (:mod:`.style`), one function per figure, one module
per family (:mod:`.pareto`, :mod:`.shrinkage`, :mod:`.ablations`, :mod:`.inference_opt`,
:mod:`.learning_curve`, :mod:`.toys`), each per-run figure registered under its stem by
:func:`.registry.figure`.

Every figure function takes the seed-aggregated table (:func:`saerepro.tables.aggregate_seeds`;
the long table works too, each seed is then one point) or, for the last one, the "half the L0"
table (:func:`saerepro.pareto.half_l0`), plus an output path *stem*; it writes ``<stem>.png`` and
``<stem>.pdf`` and returns the open :class:`~matplotlib.figure.Figure` (close it with
``plt.close(fig)`` when done). Missing architectures or sites are drawn as what exists: a panel
without data says "no data", a legend entry of an architecture without data says "(no data)",
and a panel's title names the architectures it lacks where the run trains them (not the ablations
a run trains at one site only: :func:`.panels._missing_note`).
A table lacking a needed column raises :class:`FigureDataError` naming it.

A panel is titled by its hook point only: this run's verdicts are in its ``verdicts.md``
(:func:`saerepro.verdicts.write_verdicts`), which the figures' captions point to, not on the panels.
The figures draw what the verdicts read: each architecture's fitted frontier with its band.

Points with L0 ≤ 0 cannot be shown on the log L0 axis and are left out of the L0 plots.

==========================  ================================================================
stem (:data:`FIGURES`)      content
==========================  ================================================================
``fig1_pareto_headline``    Fig. 1: L0 vs loss recovered, gated vs baseline, one panel per
                            site, headline layer
``fig12_pareto_grid``       Figs. 12–13: the same on a grid layers × sites, one model
``fig6_shrinkage``          Figs. 6/14: γ (top) and γ_c (bottom) vs L0 per site
``fig8_ablations``          Fig. 8: gated vs its ablations, Pareto frontiers
``fig9_rescale_shift``      Fig. 9: baseline vs baseline + rescale & shift vs gated
``delta_lm_loss_all``       beyond the paper: ΔLM loss vs L0, all architectures
``half_l0_ratios``          L0 ratio baseline / gated at equal loss recovered
==========================  ================================================================

:func:`make_all_figures` writes all of them from the long results table; a new figure is a
function decorated with ``@figure(stem)`` in its family's module, plus a caption
``workflow/report/<stem>.rst``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before any figure module imports pyplot

from .ablations import plot_baseline_rescale_shift, plot_gated_ablations
from .inference_opt import best_pursuit_decoders, plot_inference_opt, plot_inference_opt_decoders
from .learning_curve import plot_learning_curve
from .pareto import (
    plot_dead_latents,
    plot_delta_lm_loss,
    plot_half_l0,
    plot_nmse,
    plot_pareto_grid,
    plot_pareto_headline,
)
from .registry import FIGURES, figure
from .render import figures_from_tables, make_all_figures
from .shrinkage import plot_gamma_grid, plot_shrinkage
from .style import ARCH_STYLES, DIVERGED_LABEL, SITE_LABELS, ArchStyle, FigureDataError, arch_style, save_figure
from .toys import TOY_FIGURES, plot_jumprelu_toy, plot_shrinkage_toy, toy_figures_from_tables

__all__ = [
    "ARCH_STYLES",
    "DIVERGED_LABEL",
    "FIGURES",
    "SITE_LABELS",
    "TOY_FIGURES",
    "ArchStyle",
    "FigureDataError",
    "arch_style",
    "best_pursuit_decoders",
    "figure",
    "figures_from_tables",
    "make_all_figures",
    "plot_baseline_rescale_shift",
    "plot_dead_latents",
    "plot_delta_lm_loss",
    "plot_gamma_grid",
    "plot_gated_ablations",
    "plot_half_l0",
    "plot_inference_opt",
    "plot_inference_opt_decoders",
    "plot_jumprelu_toy",
    "plot_learning_curve",
    "plot_nmse",
    "plot_pareto_grid",
    "plot_pareto_headline",
    "plot_shrinkage",
    "plot_shrinkage_toy",
    "save_figure",
    "toy_figures_from_tables",
]
