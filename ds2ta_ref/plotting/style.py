"""Common style of every figure: axes handling, integer ticks, percentages, one colour per model variant.

The four model variants of the ablation (Table 4) are drawn in one order and one colour in every
figure and notebook: :data:`VARIANTS` (Spikformer, NSAD only, TASA only, DS2TA) and
:data:`VARIANT_COLORS` (grey for the baseline, red for NSAD as in Figure 1's NSAD box, green for TASA as
its TASA boxes, blue for both). Use :func:`variant_color` and :func:`in_variant_order` rather than the
default colour cycle, whose colours depend on the order in which the curves are drawn.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

VARIANTS = ("Spikformer", "NSAD only", "TASA only", "DS2TA")
VARIANT_COLORS = {"Spikformer": "#7f7f7f", "NSAD only": "#d62728", "TASA only": "#2ca02c", "DS2TA": "#1f77b4"}


def variant_color(name: str, fallback: int = 0) -> str:
    """The colour of a model variant (:data:`VARIANT_COLORS`); other names get ``C{fallback}``."""
    return VARIANT_COLORS.get(name, f"C{fallback % 10}")


def in_variant_order(names: Iterable[str]) -> list:
    """``names`` sorted as :data:`VARIANTS` (Spikformer, NSAD only, TASA only, DS2TA); others after, as given."""
    names = list(names)
    rank = {v: i for i, v in enumerate(VARIANTS)}
    return sorted(names, key=lambda n: (rank.get(n, len(VARIANTS)), names.index(n)))


def percent(fraction: float, digits: int = 1) -> str:
    """``fraction`` as a percentage that never rounds a value short of 1 (or above 0) to 100% (or 0%).

    ``percent(255 / 256, 0)`` is ``"99.6%"``, not ``"100%"``: more digits are shown until the text
    differs from the bound (up to 6).
    """
    fraction = float(fraction)
    for d in range(digits, 7):
        text = f"{100 * fraction:.{d}f}"
        if (fraction < 1 and float(text) >= 100) or (fraction > 0 and float(text) <= 0):
            continue
        return text + "%"
    return f"{100 * fraction:.6g}%"


def integer_ticks() -> dict:
    """Colour-bar keyword arguments for an integer map (a fresh locator: one per axis)."""
    return dict(ticks=MaxNLocator(integer=True))


def root_figure(ax: Axes) -> Figure:
    """The top-level figure of an Axes (which may sit in a SubFigure)."""
    fig = ax.get_figure(root=True)
    if fig is None:
        raise ValueError("ax: expected an Axes in a figure, got one in none (removed from its figure)")
    return fig


def axes_for(ax, n: int, *, nrows: int = 1, figsize=(6.0, 4.0), **subplot_kw) -> list[Axes]:
    """``n`` axes to draw into: those given (one Axes or a sequence of ``n``), or a new figure's."""
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        ncols = -(-n // nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw).ravel()
        for extra in axes[n:]:  # a wrapped grid may have a few cells to spare
            extra.remove()
        return list(axes[:n])
    axes = [ax] if isinstance(ax, Axes) else list(np.ravel(ax))
    if len(axes) != n:
        raise ValueError(f"ax must be {n} Axes for this plot, got {len(axes)}")
    return axes


def integer_axes(ax: Axes) -> None:
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))


def power_of_two_label(value: float) -> str:
    """``$1$`` or ``$2^{-k}$`` for the decay factors of an integer ``tau`` (``tasa.tau_used`` is one)."""
    k = round(-np.log2(value))
    return "$1$" if k == 0 else f"$2^{{-{k}}}$"
