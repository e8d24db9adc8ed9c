"""Plots shared by the tutorials (``tutorials/*.ipynb``) and ``figures/make_figures.py``.

Which figure each function draws:

* :func:`plot_membrane`: one LIF neuron over time (Eq. 2-3): input current,
  membrane before and after the reset, threshold, spikes. Not a paper figure;
  the snnTorch-tutorial view of a neuron built by hand.
* :func:`plot_surrogates`: the step and the two surrogates of SPEC §1, primals
  and derivatives.
* :func:`plot_tasa`: the idea of the paper's **Figure 2** (TASA, Eq. 1, 4, 5):
  the decay factors ``2^(-tau*lag)`` per lag, the weight replicas
  ``W(lag) = W(0) * 2^(-tau*lag)``, and the causal banded ``T x T`` matrix that
  says how much a spike at time ``m`` adds to the input at time ``t``, for
  several ``tau``.
* :func:`plot_nsad`: the idea of the paper's **Figure 4** (NSAD, Eq. 6-7): per
  head the continuous ``f_h(s)``, the rounded hashmap ``AD_h[s]``, the threshold
  ``u_h`` and the identity line.
* :func:`plot_attention_maps`: a spiking score map ``S`` next to its denoised
  ``A = NSAD(S)``, with the sparsity of each (paper Table 3's quantity).

Conventions: every function takes data (arrays or parameters) and optionally
the axes to draw into, and returns the :class:`~matplotlib.figure.Figure`.
New figures are made with :class:`matplotlib.figure.Figure` directly, not
through ``pyplot``: nothing is registered globally, nothing is shown, and the
code runs under any backend (``Agg`` included). In a notebook, end the cell
with the returned figure to display it; in a script, call ``fig.savefig``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import nsad, surrogate, tasa

__all__ = [
    "plot_membrane",
    "plot_surrogates",
    "tasa_mixing_matrix",
    "plot_tasa",
    "NSAD_EXAMPLES",
    "plot_nsad",
    "plot_attention_maps",
]


def _axes(ax, n: int, *, nrows: int = 1, figsize=(6.0, 4.0), **subplot_kw) -> list[Axes]:
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


# ----------------------------------------------------------------------------- LIF (Eq. 2-3)


def plot_membrane(x, spikes, h, v, v_threshold: float, ax=None, *, title: str | None = None) -> Figure:
    """Input current, membrane before and after the reset, threshold and spikes of LIF neurons.

    Args:
        x: input current ``I``, shape ``(T,)`` for one neuron or ``(T, n)`` for ``n``.
        spikes: 0/1 spikes, same shape (from :func:`ds2ta_ref.lif.membrane`).
        h: membrane before reset (the paper's ``V``, Eq. 2), same shape.
        v: membrane after reset, same shape.
        v_threshold: the firing threshold ``theta`` (Eq. 3).
        ax: ``None`` (a new figure) or three Axes: input, membrane, spike raster.
        title: optional title above the input panel.

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
    t = np.arange(T)
    if ax is None:
        fig = Figure(figsize=(7.0, 5.5), layout="constrained")
        axes = list(fig.subplots(3, 1, sharex=True, height_ratios=[1, 2, 0.4 + 0.25 * n]))
    else:
        axes = _axes(ax, 3)
    ax_in, ax_v, ax_s = axes
    colors = [f"C{i % 10}" for i in range(n)]

    for i in range(n):
        ax_in.step(t, x[:, i], where="mid", color=colors[i])
    ax_in.axhline(0, color="0.7", lw=0.8)
    ax_in.set_ylabel("input I[t]")
    if title:
        ax_in.set_title(title)

    for i in range(n):
        ax_v.plot(t, h[:, i], "o-", color=colors[i], ms=4, lw=1,
                  label="h[t], before reset (Eq. 2's V)" if i == 0 else None)
        ax_v.plot(t, v[:, i], "x--", color=colors[i], ms=5, lw=0.8, alpha=0.7,
                  label="v[t], after reset" if i == 0 else None)
    ax_v.axhline(v_threshold, color="k", ls=":", lw=1.2, label=f"threshold = {v_threshold:g}")
    ax_v.set_ylabel("membrane")
    ax_v.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=3, fontsize="small", frameon=False)

    times = [t[spikes[:, i] > 0] for i in range(n)]
    ax_s.eventplot(times, lineoffsets=np.arange(n), linelengths=0.8, colors=colors)
    ax_s.set_ylim(-0.6, n - 0.4)
    ax_s.set_yticks(np.arange(n))
    ax_s.set_ylabel("spikes" if n == 1 else "neuron")
    if n == 1:
        ax_s.set_yticklabels([""])
    ax_s.set_xlabel("time step t")
    ax_s.set_xlim(-0.5, T - 0.5)
    return ax_in.figure


def plot_surrogates(x=None, *, alphas: dict | None = None, ax=None) -> Figure:
    """The Heaviside step with each surrogate's primal (left) and derivative ``sg(x)`` (right).

    Args:
        x: points at which to evaluate, default ``linspace(-2, 2, 401)``.
        alphas: ``{name: alpha}``, default each surrogate's conventional alpha
            (sigmoid 4, atan 2).
        ax: ``None`` or two Axes.

    Returns:
        The figure (two axes).
    """
    x = np.linspace(-2, 2, 401) if x is None else np.asarray(x, dtype=float)
    if alphas is None:
        alphas = {name: sg.default_alpha for name, sg in surrogate.SURROGATES.items()}
    ax_p, ax_g = _axes(ax, 2, figsize=(8.0, 3.2))
    ax_p.plot(x, surrogate.heaviside(x), color="k", lw=1.5, label="Heaviside 1(x >= 0)")
    for name, alpha in alphas.items():
        sg = surrogate.get(name, alpha)
        ax_p.plot(x, sg.primal(x, alpha), label=f"{name} primal, alpha={alpha:g}")
        ax_g.plot(x, sg.grad(x, alpha), label=f"{name} sg(x), alpha={alpha:g}")
    ax_p.set_title("forward: step, and the smooth primals")
    ax_g.set_title("backward: surrogate derivatives sg(x)")
    for a in (ax_p, ax_g):
        a.set_xlabel("x = h - threshold")
        a.legend(fontsize="small")
    return ax_p.figure


# ----------------------------------------------------------------------------- TASA (Figure 2)


def tasa_mixing_matrix(tau: float, window: int, T: int) -> np.ndarray:
    """The ``(T, T)`` matrix ``M`` with ``x_mix = M @ s`` along time (Eq. 1, 4, 5).

    ``M[t, m] = 2^(-tau_used * (t - m))`` for ``0 <= t - m < window``, else 0: row
    ``t`` says how much each past spike adds to the input at ``t``; column ``m``
    says where a spike at ``m`` lands. It is computed by :func:`ds2ta_ref.tasa.forward`
    itself (on the identity), so the figure shows what the code does, rounding
    of ``tau`` included.
    """
    eye = np.eye(T)  # s[t', j] = 1 if t' == j: one spike per input feature j
    out, _ = tasa.forward(eye, eye, None, tau=tau, window=window)  # out[t, j] = x_mix[t, j]
    return out  # (T, T)


def _power_of_two_label(value: float) -> str:
    """``1`` or ``1/2^k`` for the decay factors of an integer ``tau`` (``tasa.tau_used`` is one)."""
    return "1" if value == 1 else f"1/{round(1 / value)}"


def _annotate_powers_of_two(ax: Axes, M: np.ndarray) -> None:
    for (i, j), value in np.ndenumerate(M):
        if value != 0:
            text = _power_of_two_label(value)
            ax.text(j, i, text, ha="center", va="center", fontsize=7 if len(text) < 5 else 6,
                    color="w" if value > 0.5 else "k")


def plot_tasa(tau, window: int, T: int, *, weight=None, seed: int = 0, ax=None) -> Figure:
    """Figure 2 (the idea): temporally attenuated weights, one row per ``tau``.

    Columns, for each ``tau`` (rounded as the forward rounds it, ``tasa.tau_used``):

    1. the decay factors ``df(lag) = 2^(-tau*lag)``, ``lag = 0 .. window-1`` (Eq. 5);
    2. the weight replicas ``W(lag) = W(0) * df(lag)`` side by side (Eq. 4):
       one weight matrix, fading with the lag;
    3. the causal banded matrix ``M[t, m]`` of :func:`tasa_mixing_matrix`: how
       much a spike at time ``m`` adds to the input at ``t = m .. m+window-1`` (Eq. 1).

    Args:
        tau: one decay exponent or a sequence of them (e.g. ``(0, 1, 2, 4)``).
        window: ``T_AW >= 1``.
        T: number of time steps of the banded matrix.
        weight: ``W(0)``, ``(D_out, D_in)``; default a seeded random ``(4, 4)``.
        seed: seed of the default weight.
        ax: ``None`` or ``3 * len(tau)`` Axes, row-major.

    Returns:
        The figure (``3 * len(tau)`` axes).
    """
    taus = [float(t) for t in np.atleast_1d(tau)]
    if weight is None:
        weight = np.random.default_rng(seed).standard_normal((4, 4))
    weight = np.asarray(weight, dtype=float)
    rows = len(taus)
    axes = _axes(ax, 3 * rows, nrows=rows, figsize=(10.0, 1.1 + 2.2 * rows))
    wmax = np.abs(weight).max()
    lags = np.arange(window)
    for r, tau_r in enumerate(taus):
        ax_df, ax_w, ax_m = axes[3 * r: 3 * r + 3]
        tau_u = tasa.tau_used(tau_r)
        df = tasa.decay_factors(tau_u, window)  # (window,)
        name = f"tau = {tau_u:g}" + (f" (from {tau_r:g})" if tau_u != tau_r else "")

        ax_df.bar(lags, df, color="C0")
        for lag, value in zip(lags, df):
            ax_df.text(lag, value + 0.03, _power_of_two_label(value), ha="center", va="bottom",
                        fontsize=8)
        ax_df.set_ylim(0, 1.2)
        ax_df.set_xticks(lags)
        ax_df.set_ylabel(name, fontsize="large")
        ax_df.set_xlabel("lag = t - m")

        d_out, d_in = weight.shape
        gap = np.full((d_out, 1), np.nan)  # a blank column between replicas
        replicas = np.concatenate(
            [np.concatenate([weight * f, gap], axis=1) for f in df], axis=1)[:, :-1]
        ax_w.imshow(replicas, cmap="RdBu_r", vmin=-wmax, vmax=wmax)
        ax_w.set_xticks([(d_in + 1) * lag + (d_in - 1) / 2 for lag in lags])
        ax_w.set_xticklabels([f"W({lag})" for lag in lags])
        ax_w.set_yticks([])

        M = tasa_mixing_matrix(tau_u, window, T)  # (T, T)
        ax_m.imshow(M, cmap="Blues", vmin=0, vmax=1)
        _annotate_powers_of_two(ax_m, M)
        ax_m.set_xticks(range(T))
        ax_m.set_yticks(range(T))
        ax_m.set_xlabel("spike time m")
        ax_m.set_ylabel("input time t")
    titles = ("decay factors df(lag) = 2^(-tau*lag)\n(Eq. 5)",
              "weight replicas W(lag) = W(0) df(lag)\n(Eq. 4, one colour scale)",
              "weight of a spike s[m] in the input I[t]\n(Eq. 1, x_mix = M s)")
    for ax_c, text in zip(axes[:3], titles):
        ax_c.set_title(text, fontsize="medium")
    axes[0].figure.suptitle(f"TASA: temporally attenuated weights, window T_AW = {window}")
    return axes[0].figure


# ----------------------------------------------------------------------------- NSAD (Figure 4)

# Labelled parameter sets (a, b, c, d, e, u) drawn in figures/fig4_nsad.png and tutorial 03:
# the initialisation of SPEC §3 with the paper's CIFAR threshold, and two nonlinear shapes.
NSAD_EXAMPLES = (
    ("initialisation: identity above u", (1.0, 0.0, 0.0, 0.0, 0.0, 3.0)),
    ("b, d != 0: low scores pushed down", (1.0, 0.03, 8.0, -3.0, 5.0, 2.0)),
    ("b < 0, d > 0: high scores compressed", (1.2, -0.04, 0.0, 2.0, 4.0, 1.0)),
)


def plot_nsad(params, head_dim: int, *, labels: Sequence[str] | None = None,
              rounding: str = "nearest", ncols: int = 3, ax=None) -> Figure:
    """Figure 4 (the idea): each head's denoising function and its hashmap.

    One panel per head ``h``: the continuous ``f_h(s) = 1(s > u_h) g_h(s)``
    (Eq. 6-7, :func:`ds2ta_ref.nsad.curve`) as a line, ``g_h`` alone below the
    threshold (where the gate switches it off) as a thin dashed line, the table ``AD_h[s] = round(f_h(s))``
    (:func:`ds2ta_ref.nsad.hashmap`) as markers, the threshold ``u_h`` as a
    vertical line, and the identity ``s`` for reference.

    Args:
        params: ``(H, 6)``, columns ``a, b, c, d, e, u``.
        head_dim: ``d``; scores ``s = 0 .. head_dim``.
        labels: one title per head (default ``"head h"``); the parameters are
            always listed under it.
        rounding: ``"nearest"`` or ``"floor"``, as in :func:`ds2ta_ref.nsad.hashmap`.
        ncols: panels per row of a new figure.
        ax: ``None`` or ``H`` Axes.

    Returns:
        The figure (``H`` axes).
    """
    params = np.asarray(params, dtype=float)
    table = nsad.hashmap(params, head_dim=head_dim, rounding=rounding)  # (H, d+1), validates params
    H = params.shape[0]
    if labels is None:
        labels = [f"head {h}" for h in range(H)]
    if len(labels) != H:
        raise ValueError(f"labels must have one entry per head (H = {H}), got {len(labels)}")
    ncols = min(ncols, H)
    nrows = -(-H // ncols)
    axes = _axes(ax, H, nrows=nrows, figsize=(3.6 * ncols, 0.6 + 3.4 * nrows))
    s_fine = np.linspace(0, head_dim, 40 * head_dim + 1)  # (S,)
    f = nsad.curve(params, s_fine)  # (H, S)
    no_gate = params.copy()
    no_gate[:, 5] = -1.0  # every s >= 0 is above u = -1: the curve is g itself
    g = nsad.curve(no_gate, s_fine)  # (H, S)
    s_int = np.arange(head_dim + 1)
    for h, ax_h in enumerate(axes):
        u = params[h, 5]
        above = s_fine > u
        ax_h.plot(s_int, s_int, color="0.65", ls=":", lw=1.2, label="identity s")
        ax_h.plot(s_fine[~above], g[h, ~above], color="C0", ls="--", lw=0.8,
                  label="g_h(s) (Eq. 7), gated off")
        ax_h.plot(s_fine[above], f[h, above], color="C0", lw=1.5, label="f_h(s) (Eq. 6)")
        ax_h.plot(s_fine[~above], f[h, ~above], color="C0", lw=1.5)
        ax_h.plot(s_int, table[h], "o", color="C3", ms=3.5, label="AD_h[s] = round f_h(s)")
        ax_h.axvline(u, color="k", ls="-.", lw=0.8, label="threshold u_h")
        a, b, c, d, e, _ = params[h]
        ax_h.set_title(f"{labels[h]}\na={a:g} b={b:g} c={c:g} d={d:g} e={e:g} u={u:g}",
                       fontsize="medium")
        ax_h.set_xlabel("score s = (QK^T)_ij")
        ax_h.grid(alpha=0.3)
    axes[0].set_ylabel("denoised score")
    axes[0].legend(fontsize="x-small", loc="upper left")
    return axes[0].figure


def plot_attention_maps(S, A, *, title: str | None = None, ax=None) -> Figure:
    """A spiking score map ``S`` and its denoised ``A = NSAD(S)`` side by side.

    Args:
        S: ``(N, N)`` score map of one time step, sample and head (integer counts).
        A: ``(N, N)`` the same map after NSAD.
        title: optional figure title (e.g. where the map comes from).
        ax: ``None`` or two Axes (a shared colour bar is added to a new figure only).

    Returns:
        The figure (two axes, plus a colour bar axes for a new figure). Each
        panel's title gives its sparsity, the fraction of zero entries.
    """
    S, A = np.asarray(S, dtype=float), np.asarray(A, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or A.shape != S.shape:
        raise ValueError(f"S and A must be square (N, N) maps of the same shape, got {S.shape} and {A.shape}")
    new = ax is None
    ax_s, ax_a = _axes(ax, 2, figsize=(8.0, 4.4))
    vmin, vmax = min(0.0, S.min(), A.min()), max(1.0, S.max(), A.max())
    for ax_i, M, name in ((ax_s, S, "score map S = QK^T"), (ax_a, A, "after NSAD, A = AD[S]")):
        image = ax_i.imshow(M, cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax_i.set_title(f"{name}\nsparsity {nsad.sparsity(M):.1%}", fontsize="medium")
        ax_i.set_xlabel("key token j")
        ax_i.set_ylabel("query token i")
        for axis in (ax_i.xaxis, ax_i.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))
    fig = ax_s.figure
    if new:
        fig.colorbar(image, ax=[ax_s, ax_a], shrink=0.85, label="value", ticks=MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    return fig
