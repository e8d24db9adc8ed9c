"""LIF neurons over time (Eq. 2-3) and the surrogate derivatives (``docs/spec.md §1.2``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .. import surrogate
from .style import axes_for, root_figure


def plot_membrane(
    x, spikes, h, v, v_threshold: float, ax=None, *, title: str | None = None, labels: Sequence[str] | None = None
) -> Figure:
    """Input current, membrane before and after the reset, threshold and spikes of LIF neurons.

    Args:
        x: input current ``I``, shape ``(T,)`` for one neuron or ``(T, n)`` for ``n``.
        spikes: 0/1 spikes, same shape (from :func:`ds2ta_ref.lif.membrane`).
        h: membrane before reset (the paper's ``V``, Eq. 2), same shape.
        v: membrane after reset, same shape.
        v_threshold: the firing threshold ``theta`` (Eq. 3).
        ax: ``None`` (a new figure) or three Axes: input, membrane, spike raster.
        title: optional title above the input panel.
        labels: one name per neuron (e.g. its gain), shown in a legend of the
            input panel and on the rows of the spike raster.

    Returns:
        The figure (three axes sharing the time axis).
    """
    x, spikes, h, v = (np.asarray(a, dtype=float) for a in (x, spikes, h, v))
    for name, arr in (("spikes", spikes), ("h", h), ("v", v)):
        if arr.shape != x.shape:
            raise ValueError(f"{name} must have the shape of x {x.shape}, got {arr.shape}")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must be (T,) or (T, n), got shape {x.shape}")
    x, spikes, h, v = (a.reshape(len(a), -1) for a in (x, spikes, h, v))  # (T, n)
    T, n = x.shape
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must have one entry per neuron (n = {n}), got {len(labels)}")
    t = np.arange(T)
    if ax is None:
        fig = Figure(figsize=(7.0, 5.8), layout="constrained")
        axes = list(fig.subplots(3, 1, sharex=True, height_ratios=[1, 2, 0.4 + 0.25 * n]))
    else:
        axes = axes_for(ax, 3)
    ax_in, ax_v, ax_s = axes
    colors = [f"C{i % 10}" for i in range(n)]

    for i in range(n):
        ax_in.step(t, x[:, i], where="mid", color=colors[i], label=None if labels is None else labels[i])
    ax_in.axhline(0, color="0.7", lw=0.8)
    ax_in.set_ylabel("input $I[t]$")
    if labels is not None:
        ax_in.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=n, fontsize="small", frameon=False)
    if title:
        ax_in.set_title(title, loc="right" if labels is not None else "center", fontsize="medium")

    for i in range(n):
        ax_v.plot(
            t,
            h[:, i],
            "o-",
            color=colors[i],
            ms=4,
            lw=1,
            label="$h[t]$, before reset (Eq. 2's $V$)" if i == 0 else None,
        )
        ax_v.plot(
            t, v[:, i], "x--", color=colors[i], ms=5, lw=0.8, alpha=0.7, label="$v[t]$, after reset" if i == 0 else None
        )
    ax_v.axhline(v_threshold, color="k", ls=":", lw=1.2, label=rf"threshold $\theta$ = {v_threshold:g}")
    ax_v.set_ylabel("membrane")
    ax_v.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=3, fontsize="small", frameon=False)

    times = [t[spikes[:, i] > 0] for i in range(n)]
    ax_s.eventplot(times, lineoffsets=np.arange(n), linelengths=0.8, colors=colors)
    ax_s.set_ylim(-0.6, n - 0.4)
    ax_s.set_yticks(np.arange(n))
    ax_s.set_ylabel("spikes $s[t]$" if n == 1 else "neuron")
    if labels is not None:
        ax_s.set_yticklabels(labels)
    elif n == 1:
        ax_s.set_yticklabels([""])
    ax_s.set_xlabel("time step $t$")
    ax_s.set_xlim(-0.5, T - 0.5)
    return root_figure(ax_in)


def plot_surrogates(x=None, *, alphas: dict | None = None, ax=None) -> Figure:
    """The Heaviside step with each surrogate's primal (left) and derivative ``sg(x)`` (right).

    Args:
        x: points at which to evaluate, default ``linspace(-2, 2, 401)``.
        alphas: ``{name: alpha}``, default each surrogate's conventional alpha
            (sigmoid 4, atan 2).
        ax: ``None`` or two Axes.

    Returns:
        The figure (two axes; one legend under each).
    """
    x = np.linspace(-2, 2, 401) if x is None else np.asarray(x, dtype=float)
    if alphas is None:
        alphas = {name: sg.default_alpha for name, sg in surrogate.SURROGATES.items()}
    ax_p, ax_g = axes_for(ax, 2, figsize=(8.0, 3.8))
    ax_p.plot(x, surrogate.heaviside(x), color="k", lw=1.5, label=r"step $H(x)$: fires at $x \geq 0$")
    for name, alpha in alphas.items():
        sg = surrogate.get(name, alpha)
        ax_p.plot(x, sg.primal(x, alpha), label=rf"{name} primal, $\alpha$ = {alpha:g}")
        ax_g.plot(x, sg.grad(x, alpha), label=rf"{name} $sg(x)$, $\alpha$ = {alpha:g}")
    ax_p.set_title("forward: the step, and the smooth primals", fontsize="medium")
    ax_g.set_title("backward: surrogate derivatives $sg(x)$", fontsize="medium")
    ax_p.set_ylabel("spike output")
    ax_g.set_ylabel(r"$sg(x)$, used for $\partial s / \partial h$")
    for a in (ax_p, ax_g):
        a.set_xlabel(r"$x = h - \theta$")
        a.grid(alpha=0.3)
        a.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    return root_figure(ax_p)
