"""The figure list: each per-run figure registers itself under its stem with :func:`figure`, and
:data:`FIGURES` is what the ``figures`` rule writes and the report captions (``workflow/report/<stem>.rst``)."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt

#: Figure stem -> function, in registration order. Per-model figures take
#: ``(aggregated_table, stem, model=...)``; ``half_l0_ratios`` takes the half-L0 table.
FIGURES: dict[str, Callable[..., plt.Figure]] = {}


def figure(stem: str) -> Callable[[Callable[..., plt.Figure]], Callable[..., plt.Figure]]:
    """Register a figure function under ``stem``: every run then writes ``<stem>.{png,pdf}`` and the
    report captions it with ``workflow/report/<stem>.rst`` (tests/test_report_captions.py)."""

    def register(func: Callable[..., plt.Figure]) -> Callable[..., plt.Figure]:
        if stem in FIGURES:
            raise ValueError(f"figure {stem!r} is registered twice")
        FIGURES[stem] = func
        return func

    return register
