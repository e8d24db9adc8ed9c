"""Plots shared by the tutorials (``tutorials/*.ipynb``) and ``figures/make_figures.py``.

Which figure each function draws:

* :func:`plot_membrane`: LIF neurons over time (Eq. 2-3): input current,
  membrane before and after the reset, threshold, spikes. Not a paper figure;
  the snnTorch-tutorial view of a neuron built by hand.
* :func:`plot_surrogates`: the step and the two surrogates of ``docs/spec.md §1.2``,
  primals and derivatives.
* :func:`plot_tasa`: the weights of the paper's **Figure 2** (TASA, Eq. 1, 4, 5):
  the decay factors ``2^(-tau*lag)``, the weight replicas ``W(lag) = W(0) df(lag)``
  and the causal banded ``T x T`` matrix, one row per ``tau``.
* :func:`plot_tasa_spikes`: Figure 2 on spikes: an input raster, the current
  ``I[t]`` of a few Q neurons with a window of 1 (Spikformer) and of ``T_AW``
  (TASA), and the Q spikes each produces.
* :func:`plot_nsad`: the mechanism of the paper's **Figure 4** (NSAD, Eq. 6-7): per
  head ``f_h``, ``g_h``, the rounded hashmap ``AD_h[s]`` and the threshold ``u_h``.
* :func:`plot_hashmap_table`: one head's hashmap drawn as the table it is.
* :func:`plot_nsad_pipeline`: per head, curve -> table -> score map ``QKᵀ`` ->
  denoised map, with the sparsity of each map.
* :func:`plot_attention_maps`: a score map ``S`` next to its denoised ``A = NSAD(S)``.
* :func:`plot_attention_grid`: the paper's **Figure 3**: attention maps of a
  trained model, heads across, blocks down, the input masked by the last head.
* :func:`plot_architecture`: the paper's **Figure 1** as a block diagram with
  this package's tensor shapes on the arrows.
* :func:`plot_learning_curves`, :func:`plot_block_energy` (the paper's
  **Table 3** as a chart), :func:`plot_ablation` (**Table 4** with seed error
  bars) and :func:`plot_denoising_sweep`: results of training runs.

Conventions: every function takes data (arrays, parameters, results) and
optionally the axes to draw into, and returns the root
:class:`~matplotlib.figure.Figure`. New figures are made with
:class:`matplotlib.figure.Figure` directly, not through ``pyplot``: nothing is
registered globally, nothing is shown, and the code runs under any backend
(``Agg`` included). In a notebook, end the cell with the returned figure to
display it; in a script, call ``fig.savefig``. Integer-valued maps (score
counts, hashmap entries) get colour bars with integer ticks.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

try:
    from matplotlib.axes import Axes
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.ticker import MaxNLocator
except ImportError:  # one line naming the extra, not a traceback into matplotlib
    raise ImportError("ds2ta_ref.plotting needs matplotlib: pip install 'ds2ta_ref[plot]'") from None

from . import lif, nsad, surrogate, tasa

__all__ = [
    "plot_membrane",
    "plot_surrogates",
    "tasa_mixing_matrix",
    "plot_tasa",
    "plot_tasa_spikes",
    "NSAD_EXAMPLES",
    "plot_nsad",
    "plot_hashmap_table",
    "plot_nsad_pipeline",
    "plot_attention_maps",
    "token_mask",
    "plot_attention_grid",
    "plot_architecture",
    "plot_learning_curves",
    "plot_block_energy",
    "plot_ablation",
    "plot_denoising_sweep",
]

def _int_ticks() -> dict:
    """Colour-bar keyword arguments for an integer map (a fresh locator: one per axis)."""
    return dict(ticks=MaxNLocator(integer=True))


def _root(ax: Axes) -> Figure:
    """The top-level figure of an Axes (which may sit in a SubFigure)."""
    return ax.get_figure(root=True)


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


def _integer_axes(ax: Axes) -> None:
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))


# ----------------------------------------------------------------------------- LIF (Eq. 2-3)


def plot_membrane(x, spikes, h, v, v_threshold: float, ax=None, *, title: str | None = None,
                  labels: Sequence[str] | None = None) -> Figure:
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
        axes = _axes(ax, 3)
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
        ax_v.plot(t, h[:, i], "o-", color=colors[i], ms=4, lw=1,
                  label="$h[t]$, before reset (Eq. 2's $V$)" if i == 0 else None)
        ax_v.plot(t, v[:, i], "x--", color=colors[i], ms=5, lw=0.8, alpha=0.7,
                  label="$v[t]$, after reset" if i == 0 else None)
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
    return _root(ax_in)


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
    ax_p, ax_g = _axes(ax, 2, figsize=(8.0, 3.8))
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
    return _root(ax_p)


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
    """``$1$`` or ``$2^{-k}$`` for the decay factors of an integer ``tau`` (``tasa.tau_used`` is one)."""
    k = round(-np.log2(value))
    return "$1$" if k == 0 else f"$2^{{-{k}}}$"


def plot_tasa(tau, window: int, T: int, *, weight=None, seed: int = 0, ax=None) -> Figure:
    """Figure 2 (the weights): temporally attenuated weights, one row per ``tau``.

    Columns, for each ``tau`` (rounded as the forward rounds it, ``tasa.tau_used``):

    1. the decay factors ``df(lag) = 2^(-tau*lag)``, ``lag = 0 .. window-1`` (Eq. 5);
    2. the weight replicas ``W(lag) = W(0) * df(lag)`` side by side (Eq. 4):
       one weight matrix, fading with the lag, on one colour scale;
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
        The figure (``3 * len(tau)`` axes plus one colour bar per heat map).
    """
    taus = [float(t) for t in np.atleast_1d(tau)]
    if weight is None:
        weight = np.random.default_rng(seed).standard_normal((4, 4))
    weight = np.asarray(weight, dtype=float)
    rows = len(taus)
    axes = _axes(ax, 3 * rows, nrows=rows, figsize=(11.0, 1.3 + 2.5 * rows),
                 gridspec_kw=dict(width_ratios=[0.8, 1.6, 1.0]))
    wmax = np.abs(weight).max()
    lags = np.arange(window)
    d_out, d_in = weight.shape
    band_cmap = ListedColormap(["#dbe9f6", "#9ecae1", "#4292c6", "#08519c"][::-1])  # 2^0 dark .. 2^-3+ light
    for r, tau_r in enumerate(taus):
        ax_df, ax_w, ax_m = axes[3 * r: 3 * r + 3]
        fig_r = ax_df.figure
        tau_u = tasa.tau_used(tau_r)
        df = tasa.decay_factors(tau_u, window)  # (window,)
        name = rf"$\tau$ = {tau_u:g}" + (f" (from {tau_r:g})" if tau_u != tau_r else "")

        ax_df.bar(lags, df, color="C0", width=0.6)
        for lag, value in zip(lags, df):
            ax_df.text(lag, value + 0.04, _power_of_two_label(value), ha="center", va="bottom", fontsize=9)
        ax_df.set_ylim(0, 1.3)
        ax_df.set_xticks(lags)
        ax_df.set_ylabel(f"{name}\n" + r"$df(\mathrm{lag})$", fontsize="medium")
        ax_df.set_xlabel(r"lag $= t - m$")

        gap = np.full((d_out, 1), np.nan)  # a blank column between replicas
        replicas = np.concatenate(
            [np.concatenate([weight * f, gap], axis=1) for f in df], axis=1)[:, :-1]
        image = ax_w.imshow(replicas, cmap="RdBu_r", vmin=-wmax, vmax=wmax)
        ax_w.set_xticks([(d_in + 1) * lag + (d_in - 1) / 2 for lag in lags])
        ax_w.set_xticklabels([f"$W({lag})$" for lag in lags])
        ax_w.set_yticks(range(d_out))
        ax_w.set_ylabel("output neuron $k$")
        ax_w.set_xlabel(f"replica per lag ({d_in} input neurons $j$ each)")
        fig_r.colorbar(image, ax=ax_w, shrink=0.9, label="$w_{kj}$(lag)")

        M = tasa_mixing_matrix(tau_u, window, T)  # (T, T)
        with np.errstate(divide="ignore"):
            exponent = np.where(M > 0, -np.log2(np.where(M > 0, M, 1.0)), np.nan)  # k of 2^-k
        image = ax_m.imshow(np.minimum(exponent, 3), cmap=band_cmap, vmin=-0.5, vmax=3.5)
        for (i, j), value in np.ndenumerate(M):
            if value != 0:
                ax_m.text(j, i, _power_of_two_label(value), ha="center", va="center", fontsize=8,
                          color="w" if value > 0.4 else "k")
        ax_m.set_xticks(range(T))
        ax_m.set_yticks(range(T))
        ax_m.set_xlabel("spike time $m$")
        ax_m.set_ylabel("input time $t$")
        bar = fig_r.colorbar(image, ax=ax_m, shrink=0.9, ticks=[0, 1, 2, 3])
        bar.ax.set_yticklabels(["$1$", "$2^{-1}$", "$2^{-2}$", r"$\leq 2^{-3}$"])
        bar.set_label("weight of $s[m]$ in $I[t]$")
    titles = (r"decay factors $df(\mathrm{lag}) = 2^{-\tau \cdot \mathrm{lag}}$ (Eq. 5)",
              r"weight replicas $W(\mathrm{lag}) = W(0)\,df(\mathrm{lag})$ (Eq. 4)",
              r"$M[t, m]$: $x_{mix} = M s$ (Eq. 1), blank = 0")
    for ax_c, text in zip(axes[:3], titles):
        ax_c.set_title(text, fontsize="medium")
    return _root(axes[0])


def plot_tasa_spikes(s, weight, bias=None, *, tau: float, window: int, tau_m: float = 2.0,
                     v_threshold: float = 1.0, neurons: int = 3, ax=None) -> Figure:
    """Figure 2 on spikes: input raster, ``I[t]`` with window 1 vs ``T_AW``, and the Q spikes.

    Panels, sharing the time axis:

    1. the input spike raster ``s[t, j]`` (the previous block's spikes);
    2. one panel per shown output neuron ``k``: its current ``I_k[t]`` with a
       window of 1 (Spikformer, ``s[t] W^T + b``) and of ``window`` (TASA,
       Eq. 1 with ``tau``), both from :func:`ds2ta_ref.tasa.forward`, and the
       threshold;
    3. the spikes a LIF neuron (:func:`ds2ta_ref.lif.forward`, ``tau_m``,
       ``v_threshold``) emits from each current: two rows per neuron.

    The model puts a BatchNorm between the linear map and the LIF; this figure
    feeds ``I`` to the LIF directly so that the effect of the window is not
    rescaled away.

    Args:
        s: ``(T, D_in)`` 0/1 input spikes.
        weight: ``W(0)``, ``(D_out, D_in)``; bias: ``(D_out,)`` or ``None``.
        tau, window: TASA's decay exponent and window ``T_AW``.
        tau_m, v_threshold: the Q neurons' LIF.
        neurons: how many output neurons to show (the first ones).
        ax: ``None`` or ``2 + neurons`` Axes (raster, one per neuron, Q raster).

    Returns:
        The figure.
    """
    s = np.asarray(s, dtype=float)
    weight = np.asarray(weight, dtype=float)
    if s.ndim != 2 or s.shape[1] != weight.shape[1]:
        raise ValueError(f"s must be (T, D_in) with D_in = weight.shape[1] = {weight.shape[1]}, got {s.shape}")
    n = min(int(neurons), weight.shape[0])
    T, D_in = s.shape
    I_1, _ = tasa.forward(s, weight, bias, tau=tau, window=1)  # (T, D_out) spatial only
    I_w, cache = tasa.forward(s, weight, bias, tau=tau, window=window)  # (T, D_out) TASA
    q_1, _ = lif.forward(I_1, tau_m=tau_m, v_threshold=v_threshold)
    q_w, _ = lif.forward(I_w, tau_m=tau_m, v_threshold=v_threshold)
    if ax is None:
        fig = Figure(figsize=(6.4, 2.0 + 1.25 * n + 0.35 * n), layout="constrained")
        axes = list(fig.subplots(2 + n, 1, sharex=True,
                                 height_ratios=[0.25 * D_in + 0.5] + [1.0] * n + [0.3 * n + 0.3]))
    else:
        axes = _axes(ax, 2 + n)
    ax_in, ax_cur, ax_q = axes[0], axes[1:1 + n], axes[-1]
    t = np.arange(T)

    ax_in.eventplot([t[s[:, j] > 0] for j in range(D_in)], lineoffsets=np.arange(D_in),
                    linelengths=0.8, colors="k")
    ax_in.set_ylim(-0.6, D_in - 0.4)
    ax_in.set_yticks(np.arange(D_in))
    ax_in.set_ylabel("input $j$")
    ax_in.set_title(rf"input spikes $s_j[t]$; TASA with $\tau$ = {cache.tau_used:g}, $T_{{AW}}$ = {window}",
                    fontsize="medium")

    spatial = dict(color="0.45", ls="--", marker="s", ms=3.5, lw=1)
    temporal = dict(color="C0", ls="-", marker="o", ms=4, lw=1.4)
    for k, ax_k in enumerate(ax_cur):
        ax_k.plot(t, I_1[:, k], label=r"$T_{AW}$ = 1 (Spikformer)", **spatial)
        ax_k.plot(t, I_w[:, k], label=rf"$T_{{AW}}$ = {window} (TASA)", **temporal)
        ax_k.axhline(v_threshold, color="k", ls=":", lw=1, label=rf"threshold $\theta$ = {v_threshold:g}")
        ax_k.set_ylabel(f"$I_{k}[t]$")
        ax_k.grid(alpha=0.3)
    ax_cur[0].legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=3, fontsize="small", frameon=False)

    rows, colors, names = [], [], []
    for k in range(n):
        rows += [t[q_1[:, k] > 0], t[q_w[:, k] > 0]]
        colors += ["0.45", "C0"]
        names += [f"$Q_{k}$, $T_{{AW}}$=1", f"$Q_{k}$, $T_{{AW}}$={window}"]
    ax_q.eventplot(rows, lineoffsets=np.arange(2 * n), linelengths=0.75, colors=colors)
    ax_q.set_ylim(2 * n - 0.4, -0.6)
    ax_q.set_yticks(np.arange(2 * n))
    ax_q.set_yticklabels(names, fontsize="small")
    ax_q.set_ylabel("Q spikes")
    ax_q.set_xlabel("time step $t$")
    ax_q.set_xlim(-0.5, T - 0.5)
    ax_q.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _root(ax_in)


# ----------------------------------------------------------------------------- NSAD (Figure 4)

# Labelled parameter sets (a, b, c, d, e, u) drawn in figures/fig4_nsad.png and tutorial 03:
# the initialisation of docs/spec.md §3.2 with the paper's CIFAR threshold, and two nonlinear shapes.
NSAD_EXAMPLES = (
    ("initialisation, u = 3", (1.0, 0.0, 0.0, 0.0, 0.0, 3.0)),
    ("b, d != 0: low scores pushed down", (1.0, 0.03, 8.0, -3.0, 5.0, 2.0)),
    ("b < 0, d > 0: high scores compressed", (1.2, -0.04, 0.0, 2.0, 4.0, 1.0)),
)


def _param_text(p) -> str:
    a, b, c, d, e, u = p
    return f"a={a:.3g}  b={b:.3g}  c={c:.3g}\nd={d:.3g}  e={e:.3g}  u={u:.4g}"


def plot_nsad(params, head_dim: int, *, labels: Sequence[str] | None = None,
              rounding: str = "nearest", ncols: int = 3, legend: str = "auto", ax=None) -> Figure:
    """Figure 4 (the mechanism): each head's denoising function and its hashmap.

    One panel per head ``h``: the continuous ``f_h(s) = 1(s > u_h) g_h(s)``
    (Eq. 6-7, :func:`ds2ta_ref.nsad.curve`) as a line, ``g_h`` alone below the
    threshold (where the gate switches it off) as a thin dashed line, the table
    ``AD_h[s] = round(f_h(s))`` (:func:`ds2ta_ref.nsad.hashmap`) as markers, the
    threshold ``u_h`` as a vertical line, and the identity ``s`` for reference.
    All panels share one y scale.

    Args:
        params: ``(H, 6)``, columns ``a, b, c, d, e, u``.
        head_dim: ``d``; scores ``s = 0 .. head_dim``.
        labels: one title per head (default ``"head h"``); the parameters are
            always listed under it.
        rounding: ``"nearest"`` or ``"floor"``, as in :func:`ds2ta_ref.nsad.hashmap`.
        ncols: panels per row of a new figure.
        legend: ``"figure"`` (under the panels), ``"axes"`` (in the first
            panel), ``"none"``, or ``"auto"``: ``"figure"`` for a new figure,
            else ``"axes"``.
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
    new = ax is None
    ncols = min(ncols, H)
    nrows = -(-H // ncols)
    axes = _axes(ax, H, nrows=nrows, figsize=(3.7 * ncols, 1.2 + 3.5 * nrows))
    s_fine = np.linspace(0, head_dim, 40 * head_dim + 1)  # (S,)
    f = nsad.curve(params, s_fine)  # (H, S)
    no_gate = params.copy()
    no_gate[:, 5] = -1.0  # every s >= 0 is above u = -1: the curve is g itself
    g = nsad.curve(no_gate, s_fine)  # (H, S)
    s_int = np.arange(head_dim + 1)
    lo = min(0.0, f.min(), g.min(), table.min())
    hi = max(float(head_dim), f.max(), g.max(), table.max())
    pad = 0.05 * (hi - lo)
    for h, ax_h in enumerate(axes):
        u = params[h, 5]
        above = s_fine > u
        ax_h.plot(s_int, s_int, color="0.65", ls=":", lw=1.2, label="identity $s$")
        ax_h.plot(s_fine[~above], g[h, ~above], color="C0", ls="--", lw=0.8,
                  label="$g_h(s)$ (Eq. 7), gated off")
        ax_h.plot(s_fine[above], f[h, above], color="C0", lw=1.5, label="$f_h(s)$ (Eq. 6)")
        ax_h.plot(s_fine[~above], f[h, ~above], color="C0", lw=1.5)
        ax_h.plot(s_int, table[h], "o", color="C3", ms=3.5, label="$AD_h[s]$ = round $f_h(s)$")
        ax_h.axvline(u, color="k", ls="-.", lw=0.8, label="threshold $u_h$")
        ax_h.set_title(f"{labels[h]}\n{_param_text(params[h])}", fontsize="small")
        ax_h.set_xlabel(r"score $s = (QK^\top)_{ij}$")
        ax_h.set_ylabel("denoised score")
        ax_h.set_ylim(lo - pad, hi + pad)
        ax_h.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_h.grid(alpha=0.3)
    if legend == "auto":
        legend = "figure" if new else "axes"
    if legend == "figure":
        _root(axes[0]).legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                              ncol=5, fontsize="small", frameon=False)
    elif legend == "axes":
        axes[0].legend(fontsize="x-small", loc="upper left")
    elif legend != "none":
        raise ValueError(f"legend must be 'auto', 'figure', 'axes' or 'none', got {legend!r}")
    return _root(axes[0])


def plot_hashmap_table(params_h, head_dim: int, *, rounding: str = "nearest", ax=None) -> Figure:
    """One head's hashmap ``AD_h`` drawn as a table: a row of scores ``s`` over a row of ``AD_h[s]``.

    Cells of ``AD_h[s]`` are grey where the entry is 0 (the score is removed),
    orange where it differs from ``s`` otherwise (the score is changed) and
    white where NSAD keeps the score as it is.
    """
    params_h = np.asarray(params_h, dtype=float).reshape(1, 6)
    table = nsad.hashmap(params_h, head_dim=head_dim, rounding=rounding)[0]  # (d+1,)
    (ax_t,) = _axes(ax, 1, figsize=(0.32 * (head_dim + 1) + 1.2, 1.2))
    s = np.arange(head_dim + 1)
    kind = np.where(table == 0, 2, np.where(table != s, 1, 0))  # 0 kept, 1 changed, 2 removed
    colours = ListedColormap(["white", "#fdd49e", "#bdbdbd"])
    ax_t.imshow(np.vstack([np.full(head_dim + 1, -1), kind]), cmap=ListedColormap(["#eeeeee"] + list(colours.colors)),
                vmin=-1.5, vmax=2.5, aspect="auto")
    size = 8 if head_dim <= 16 else 6
    for j in range(head_dim + 1):
        ax_t.text(j, 0, f"{s[j]}", ha="center", va="center", fontsize=size)
        ax_t.text(j, 1, f"{table[j]:g}", ha="center", va="center", fontsize=size)
    ax_t.set_xticks(np.arange(head_dim + 2) - 0.5, minor=True)
    ax_t.set_yticks([-0.5, 0.5, 1.5], minor=True)
    ax_t.grid(which="minor", color="0.6", lw=0.5)
    ax_t.tick_params(which="both", length=0)
    ax_t.set_xticks([])
    ax_t.set_yticks([0, 1])
    ax_t.set_yticklabels(["$s$", "$AD_h[s]$"])
    ax_t.set_xlabel("hashmap: grey = removed, orange = changed, white = kept", fontsize="small")
    return _root(ax_t)


def plot_nsad_pipeline(S, params, head_dim: int, *, labels: Sequence[str] | None = None,
                       rounding: str = "nearest", ax=None) -> Figure:
    """Figure 4 as a pipeline: per head, ``f_h`` -> hashmap table -> score map -> denoised map.

    One row per head ``h``: the curve of :func:`plot_nsad`, the table of
    :func:`plot_hashmap_table`, the score map ``S_h = Q_h K_hᵀ`` and
    ``A_h = AD_h[S_h]`` (:func:`ds2ta_ref.nsad.forward`), each map titled with
    its sparsity (fraction of zeros) and both on one integer colour bar.

    Args:
        S: ``(H, N, N)`` integer score maps (one time step and sample).
        params: ``(H, 6)`` NSAD parameters, one row per head.
        head_dim: ``d``.
        labels: one name per head (default ``"head h"``).
        rounding: as in :func:`ds2ta_ref.nsad.hashmap`.
        ax: ``None`` or ``4 * H`` Axes, row-major.

    Returns:
        The figure.
    """
    S = np.asarray(S, dtype=float)
    params = np.asarray(params, dtype=float)
    H = params.shape[0]
    if S.ndim != 3 or S.shape[0] != H or S.shape[1] != S.shape[2]:
        raise ValueError(f"S must be (H, N, N) with H = {H} heads (rows of params), got {S.shape}")
    A, _ = nsad.forward(S, params, head_dim=head_dim, rounding=rounding)  # (H, N, N)
    if labels is None:
        labels = [f"head {h}" for h in range(H)]
    axes = _axes(ax, 4 * H, nrows=H, figsize=(15.5, 0.4 + 3.4 * H),
                 gridspec_kw=dict(width_ratios=[1.0, 1.7, 0.95, 0.95]) if ax is None else None)
    plot_nsad(params, head_dim, labels=labels, rounding=rounding, legend="figure", ax=axes[0::4])
    for h in range(H):
        ax_t, ax_s, ax_a = axes[4 * h + 1: 4 * h + 4]
        plot_hashmap_table(params[h], head_dim, rounding=rounding, ax=ax_t)
        ax_t.set_title(f"{labels[h]}: hashmap $AD_h$ (Eq. 6-7, rounded)", fontsize="small")
        vmax = max(1.0, S[h].max(), A[h].max())
        vmin = min(0.0, A[h].min())
        for ax_i, M, name in ((ax_s, S[h], r"score map $S_h = Q_h K_h^\top$"),
                              (ax_a, A[h], r"denoised $A_h = AD_h[S_h]$")):
            image = ax_i.imshow(M, cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax_i.set_title(f"{name}\nsparsity {nsad.sparsity(M):.1%}", fontsize="small")
            ax_i.set_xlabel("key token $j$")
            ax_i.set_ylabel("query token $i$")
            _integer_axes(ax_i)
        ax_a.figure.colorbar(image, ax=[ax_s, ax_a], shrink=0.8, label="count", **_int_ticks())
    return _root(axes[0])


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
    for ax_i, M, name in ((ax_s, S, r"score map $S = QK^\top$"), (ax_a, A, "after NSAD, $A = AD[S]$")):
        image = ax_i.imshow(M, cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax_i.set_title(f"{name}\nsparsity {nsad.sparsity(M):.1%}", fontsize="medium")
        ax_i.set_xlabel("key token $j$")
        ax_i.set_ylabel("query token $i$")
        _integer_axes(ax_i)
    fig = _root(ax_s)
    if new:
        fig.colorbar(image, ax=[ax_s, ax_a], shrink=0.85, label="count", **_int_ticks())
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- Figure 3


def token_mask(A, size: int) -> np.ndarray:
    """How much attention each key token receives, as a ``(size, size)`` image mask in ``[0, 1]``.

    ``A`` is one head's ``(N, N)`` map at one time step; the weight of key token
    ``j`` is its column sum ``sum_i A[i, j]`` divided by the largest one (all
    zeros if the map is empty), and each token's weight covers its patch of
    the ``sqrt(N) x sqrt(N)`` token grid.
    """
    A = np.asarray(A, dtype=float)
    N = A.shape[-1]
    grid = int(round(np.sqrt(N)))
    if A.shape != (N, N) or grid * grid != N or size % grid:
        raise ValueError(f"A must be (N, N) with N a square whose root divides size={size}, got {A.shape}")
    w = A.sum(axis=0)  # (N,) attention received per key token
    w = w / w.max() if w.max() > 0 else w
    return np.kron(w.reshape(grid, grid), np.ones((size // grid, size // grid)))  # (size, size)


def plot_attention_grid(image, maps: Sequence, *, ax=None) -> Figure:
    """Figure 3: attention maps of every head (across) and block (down) for one input.

    The leftmost column shows the input image masked by the last head's map
    of that block (:func:`token_mask`); the other columns the maps ``A_h`` of
    one time step, with one integer colour bar per block.

    Args:
        image: ``(S, S)`` the input (e.g. a digit).
        maps: one ``(H, N, N)`` array per block (one time step and sample).
        ax: ``None`` or ``depth * (H + 1)`` Axes, row-major.

    Returns:
        The figure.
    """
    image = np.asarray(image, dtype=float)
    maps = [np.asarray(m, dtype=float) for m in maps]
    depth, H = len(maps), maps[0].shape[0]
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"image must be a square (S, S) array, got {image.shape}")
    if any(m.ndim != 3 or m.shape != maps[0].shape for m in maps):
        raise ValueError(f"maps must be (H, N, N) arrays of one shape, got {[m.shape for m in maps]}")
    new = ax is None
    axes = np.asarray(_axes(ax, depth * (H + 1), nrows=depth, figsize=(2.3 * (H + 1) + 0.8, 0.5 + 2.3 * depth)))
    axes = axes.reshape(depth, H + 1)
    for i, A in enumerate(maps):
        masked = image * token_mask(A[-1], image.shape[0])
        ax_img = axes[i, 0]
        ax_img.imshow(masked, cmap="gray", vmin=0, vmax=max(masked.max(), 1e-12))  # brightest = 1
        ax_img.set_ylabel(f"block {i}\npixel row")
        ax_img.set_xlabel("pixel column")
        vmax = max(1.0, A.max())
        for h in range(H):
            ax_h = axes[i, 1 + h]
            im = ax_h.imshow(A[h], cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            ax_h.set_xlabel(f"key $j$ (sparsity {nsad.sparsity(A[h]):.0%})", fontsize="small")
            ax_h.set_ylabel("query $i$", fontsize="small")
            _integer_axes(ax_h)
        if new:
            _root(ax_img).colorbar(im, ax=list(axes[i, 1:]), shrink=0.85, label="$A$ count", **_int_ticks())
    axes[0, 0].set_title(f"input × head {H - 1}'s map", fontsize="medium")
    for h in range(H):
        axes[0, 1 + h].set_title(f"head {h}", fontsize="medium")
    return _root(axes[0, 0])


# ----------------------------------------------------------------------------- Figure 1


def _shape(names: str, sizes: Mapping[str, int]) -> str:
    """``"(T, B, N, D) = (2, 8, 16, 64)"`` from ``"T B N D"``."""
    letters = names.split()
    return f"({', '.join(letters)}) = ({', '.join(str(sizes[k]) for k in letters)})"


def plot_architecture(cfg, *, batch: int = 8, ax=None) -> Figure:
    """Figure 1 as a block diagram, with this package's tensor shapes on every arrow.

    Left: the model (input, direct encoding, SPS, encoder blocks, pooling,
    head); middle: one encoder block opened up (TASA q/k/v, ``QKᵀ``, NSAD,
    ``A V``, projection, MLP); right: which presynaptic spikes drive a Q
    neuron at time ``t``, spatial-only (Spikformer) vs spatiotemporal (TASA,
    line width ``2^(-tau*lag)`` with ``cfg.tau0``). Shapes use the letters of
    the docstrings (time-major ``T, B, N, D``, heads ``H`` of size ``d``) and
    the sizes of ``cfg`` for a batch of ``batch``.
    """
    (ax_d,) = _axes(ax, 1, figsize=(16.5, 7.6))
    z = dict(T=cfg.T, B=batch, C=cfg.in_channels, S=cfg.img_size, N=cfg.num_tokens, D=cfg.dim,
             H=cfg.heads, d=cfg.head_dim, K=cfg.num_classes)
    z["4D"] = cfg.dim * cfg.mlp_ratio
    ax_d.set_xlim(0, 16.5)
    ax_d.set_ylim(0, 7.6)
    ax_d.axis("off")

    def box(x, y, w, h, text, colour="#e8eef7", **kw):
        ax_d.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04",
                                      fc=colour, ec="0.3", lw=1, **kw))
        ax_d.text(x, y, text, ha="center", va="center", fontsize=8.5)

    def arrow(x, y0, y1, label, side=1):
        ax_d.add_patch(FancyArrowPatch((x, y0), (x, y1), arrowstyle="-|>", mutation_scale=12, color="0.2"))
        ax_d.text(x + 0.1 * side, (y0 + y1) / 2, label, ha="left" if side > 0 else "right",
                  va="center", fontsize=7.5, color="C3", family="monospace")

    # left column: the model
    xl, w = 2.1, 3.5
    ys = [7.1, 5.95, 4.55, 3.0, 1.75, 0.45]
    box(xl, ys[0], w, 0.5, "input image (static digit)", "#f5f5f5")
    box(xl, ys[1], w, 0.55, "direct encoding: repeat $T$ times", "#f5f5f5")
    box(xl, ys[2], w, 0.95, "SPS (patch splitting)\n4 × conv3×3-BN-LIF, 2 max-pools,\n"
        "+ LIF(BN(conv)) position embedding", "#fdebd0")
    box(xl, ys[3], w, 0.95, f"encoder block × {cfg.depth}\n$x \\leftarrow x + \\mathrm{{Attn}}(x)$\n"
        "$x \\leftarrow x + \\mathrm{MLP}(x)$", "#e8eef7")
    box(xl, ys[4], w, 0.55, "mean over tokens $N$, then time $T$", "#f5f5f5")
    box(xl, ys[5], w, 0.5, f"head: Linear $D \\to$ {cfg.num_classes} classes", "#f5f5f5")
    labels = [_shape("B C S S", z), _shape("T B C S S", z), _shape("T B N D", z), _shape("T B N D", z),
              _shape("B D", z)]
    heights = [0.5, 0.55, 0.95, 0.95, 0.55, 0.5]
    for i, text in enumerate(labels):
        arrow(xl, ys[i] - heights[i] / 2 - 0.04, ys[i + 1] + heights[i + 1] / 2 + 0.04, text)
    ax_d.text(xl, 0.02, "logits " + _shape("B K", z).replace("K", "classes"), ha="center", va="bottom",
              fontsize=7.5, color="C3", family="monospace")

    # right column: one encoder block
    xr, wr = 8.9, 5.6
    ax_d.add_patch(FancyBboxPatch((xr - wr / 2 - 0.35, 0.1), wr + 0.7, 7.35, boxstyle="round,pad=0.02",
                                  fc="none", ec="#4a6fa5", ls="--", lw=1))
    ax_d.text(xr - wr / 2 - 0.25, 7.3, "one encoder block", fontsize=9, color="#4a6fa5", va="top")
    ax_d.add_patch(FancyArrowPatch((xl + w / 2 + 0.05, ys[3]), (xr - wr / 2 - 0.4, ys[3]), arrowstyle="-",
                                   ls="--", color="#4a6fa5"))
    window = cfg.effective_window
    rs = [6.75, 5.72, 4.72, 3.72, 2.72, 1.72, 0.68]
    rh = [0.75, 0.5, 0.5, 0.55, 0.5, 0.5, 0.5]
    box(xr, rs[0], wr, rh[0], f"TASA $q, k, v$ (Eq. 1, 4, 5): mix $T_{{AW}}$ = {window} steps by "
        r"$2^{-\tau\,\mathrm{lag}}$," + "\nthen Linear $D \\to D$, BN, LIF; split into $H$ heads", "#d5e8d4")
    box(xr, rs[1], wr, rh[1], r"scores $S = Q K^\top$ per head (integer counts $0 .. d$)", "#e8eef7")
    box(xr, rs[2], wr, rh[2], r"NSAD (Eq. 6, 7): $A = AD_h[S]$, one hashmap per head", "#f8cecc")
    box(xr, rs[3], wr, rh[3], f"$A V$ × scale {cfg.scale:g}, merge heads, LIF ($\\theta$ = {cfg.attn_v_threshold:g})",
        "#e8eef7")
    box(xr, rs[4], wr, rh[4], "TASA proj: Linear $D \\to D$, BN, LIF;  $x \\leftarrow x$ + out", "#d5e8d4")
    box(xr, rs[5], wr, rh[5], f"MLP: Linear $D \\to$ {z['4D']}, BN, LIF, Linear {z['4D']} $\\to D$, BN, LIF",
        "#fdebd0")
    box(xr, rs[6], wr, rh[6], "$x \\leftarrow x$ + MLP($x$): spikes to the next block", "#f5f5f5")
    ax_d.text(xr, 7.3, "in: $x$ " + _shape("T B N D", z), ha="center", va="top", fontsize=7.5, color="C3",
              family="monospace")
    right = ["Q, K, V " + _shape("T B H N d", z), "S " + _shape("T B H N N", z), "A " + _shape("T B H N N", z),
             _shape("T B N D", z), _shape("T B N D", z), _shape("T B N D", z)]
    for i, text in enumerate(right):
        arrow(xr, rs[i] - rh[i] / 2 - 0.04, rs[i + 1] + rh[i + 1] / 2 + 0.04, text)
    _connectivity(ax_d, cfg, x0=12.85, y0=4.1, title="spatial-only (Spikformer, $T_{AW}$ = 1)", window=1)
    _connectivity(ax_d, cfg, x0=12.85, y0=0.45, title=f"spatiotemporal (TASA, $T_{{AW}}$ = {cfg.window})",
                  window=cfg.window)
    return _root(ax_d)


def _connectivity(ax_d: Axes, cfg, *, x0: float, y0: float, title: str, window: int) -> None:
    """Presynaptic neurons at t-2, t-1, t and the Q neuron at t they drive (line width = weight)."""
    lags = 3
    xs = [x0 + 0.55 + 0.85 * i for i in range(lags)]  # times t-2, t-1, t
    ys = [y0 + 0.55 + 0.62 * j for j in range(3)]  # three presynaptic neurons
    post = (x0 + 3.25, y0 + 1.17)
    factors = tasa.decay_factors(tasa.tau_used(cfg.tau0), window)
    for i, x in enumerate(xs):
        lag = lags - 1 - i
        for y in ys:
            if lag < window:
                ax_d.plot([x, post[0]], [y, post[1]], color="C0", lw=0.4 + 2.6 * factors[lag], zorder=1)
            ax_d.plot(x, y, "o", ms=9, mfc="white", mec="0.3", zorder=2)
        ax_d.text(x, y0 + 0.15, ["$t-2$", "$t-1$", "$t$"][i], ha="center", va="center", fontsize=8.5)
    ax_d.plot(*post, "o", ms=13, mfc="#d5e8d4", mec="0.3", zorder=2)
    ax_d.text(post[0], post[1] - 0.4, "$Q$ at $t$", ha="center", va="top", fontsize=8.5)
    ax_d.text(x0 + 1.7, y0 + 2.55, title, ha="center", va="bottom", fontsize=9)
    if window > 1:
        weights = ", ".join(f"lag {lag}: {_power_of_two_label(f)}" for lag, f in enumerate(factors))
        ax_d.text(x0 + 1.7, y0 + 2.3, rf"$\tau$ = {tasa.tau_used(cfg.tau0):g}; {weights}", ha="center",
                  va="bottom", fontsize=8)
    else:
        ax_d.text(x0 + 1.7, y0 + 2.3, "only the spikes of the same step", ha="center", va="bottom", fontsize=8)


# ----------------------------------------------------------------------------- training results


def plot_learning_curves(histories, ax=None) -> Figure:
    """Loss, accuracy, firing rate and attention sparsity per epoch of one or more runs.

    Args:
        histories: a run's history (the list of per-epoch dicts of
            :func:`ds2ta_ref.train.train`: ``loss``, ``train_acc``, ``test_acc``,
            ``firing_rate``, ``attention_sparsity``) or ``{name: history}``.
        ax: ``None`` or four Axes.

    Returns:
        The figure.
    """
    if not isinstance(histories, Mapping):
        histories = {"": histories}
    axes = _axes(ax, 4, figsize=(12.0, 3.3))
    for r, (name, history) in enumerate(histories.items()):
        epoch = [row["epoch"] for row in history]
        c = f"C{r}"
        prefix = f"{name}: " if name else ""
        axes[0].plot(epoch, [row["loss"] for row in history], "o-", color=c, label=f"{prefix}train")
        if "test_loss" in history[0]:
            axes[0].plot(epoch, [row["test_loss"] for row in history], "s--", color=c, label=f"{prefix}test")
        axes[1].plot(epoch, [100 * row["train_acc"] for row in history], "o-", color=c, label=f"{prefix}train")
        axes[1].plot(epoch, [100 * row["test_acc"] for row in history], "s--", color=c, label=f"{prefix}test")
        axes[2].plot(epoch, [row["firing_rate"] for row in history], "o-", color=c, label=name or None)
        axes[3].plot(epoch, [100 * row["attention_sparsity"] for row in history], "o-", color=c,
                     label=name or None)
    ylabels = ("cross-entropy loss", "accuracy (%)", "firing rate (spikes / neuron / step)",
               "attention-map sparsity (% zeros of $A$)")
    titles = ("loss", "accuracy", "firing rate (all LIF neurons)", "sparsity of $A$ (test set)")
    for a, yl, ti in zip(axes, ylabels, titles):
        a.set_xlabel("epoch")
        a.set_ylabel(yl)
        a.set_title(ti, fontsize="medium")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()  # train/test per run: covers every panel
    if len(histories) > 1 or handles:
        _root(axes[0]).legend(handles, labels, loc="outside lower center", ncol=len(labels),
                              fontsize="small", frameon=False)
    return _root(axes[0])


def plot_block_energy(rows: Mapping[str, Sequence], *, scores_sparsity: Sequence[float] | None = None,
                      ax=None) -> Figure:
    """Table 3 as a chart: per block, attention-map sparsity and attention energy of each model.

    Args:
        rows: ``{model name: [BlockEnergy per block]}`` (:func:`ds2ta_ref.train.evaluate`'s
            ``energy``); the first model is the baseline (e.g. Spikformer), and
            the energy panel is annotated with the reduction of the last one.
        scores_sparsity: optionally, per block, the sparsity of the last model's
            score maps ``S`` before NSAD, drawn as a black mark on its bars: the
            gap to the bar is what NSAD removed.
        ax: ``None`` or two Axes.

    Returns:
        The figure.
    """
    names = list(rows)
    depth = len(rows[names[0]])
    ax_s, ax_e = _axes(ax, 2, figsize=(10.0, 3.8))
    width = 0.8 / len(names)
    blocks = np.arange(depth)
    for m, name in enumerate(names):
        x = blocks - 0.4 + width * (m + 0.5)
        sp = [100 * e.sparsity for e in rows[name]]
        en = [e.energy_pj for e in rows[name]]
        ax_s.bar(x, sp, width, color=f"C{m}", label=name)
        ax_e.bar(x, en, width, color=f"C{m}", label=name)
        for xi, v in zip(x, sp):
            ax_s.text(xi, v + 1, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    if scores_sparsity is not None:
        x_last = blocks - 0.4 + width * (len(names) - 0.5)
        ax_s.hlines(100 * np.asarray(scores_sparsity), x_last - width / 2, x_last + width / 2, colors="k",
                    lw=2.5, label=f"{names[-1]}: $S = QK^\\top$ before NSAD")
    base, last = rows[names[0]], rows[names[-1]]
    if len(names) > 1:
        for i in range(depth):
            cut = 1 - last[i].energy_pj / base[i].energy_pj if base[i].energy_pj else float("nan")
            top = max(base[i].energy_pj, last[i].energy_pj)
            ax_e.text(i, top * 1.03, f"{-100 * cut:+.1f}%", ha="center", va="bottom", fontsize=9)
    ax_s.set_ylim(0, 115)
    ax_e.set_ylim(0, 1.25 * max(e.energy_pj for r in rows.values() for e in r))
    for a in (ax_s, ax_e):
        a.set_xticks(blocks)
        a.set_xticklabels([f"block {i}" for i in blocks])
        a.set_xlabel("encoder block")
        a.legend(fontsize="small", loc="upper left", ncol=len(names), frameon=False)
    ax_s.set_ylabel("sparsity of $A$ (% zeros)")
    ax_e.set_ylabel("attention energy (pJ / sample)")
    ax_s.set_title("attention-map sparsity", fontsize="medium")
    ax_e.set_title(r"$E_{AC}$ × #OPs × (1 − sparsity), change vs " + names[0], fontsize="medium")
    return _root(ax_s)


def plot_ablation(results: Mapping[str, Sequence[float]], ax=None) -> Figure:
    """Table 4 as a chart: test accuracy per configuration, mean ± std over seeds, each seed a dot.

    Args:
        results: ``{configuration name: [accuracy in [0, 1] per seed]}``.
        ax: ``None`` or one Axes.
    """
    (a,) = _axes(ax, 1, figsize=(6.5, 3.8))
    names = list(results)
    every = 100 * np.concatenate([np.asarray(v, dtype=float) for v in results.values()])
    bottom = max(0.0, 5 * np.floor((every.min() - 5) / 5))  # zoomed in: the differences are a few %
    for i, name in enumerate(names):
        acc = 100 * np.asarray(results[name], dtype=float)
        mean, std = acc.mean(), (acc.std(ddof=1) if len(acc) > 1 else 0.0)
        a.bar(i, mean - bottom, 0.6, bottom=bottom, color=f"C{i}", alpha=0.75, yerr=std, capsize=5)
        a.plot(np.full(len(acc), i) + np.linspace(-0.12, 0.12, len(acc)), acc, "o", color="k", ms=4)
        a.text(i, bottom + 0.5, f"{mean:.1f} ± {std:.1f}", ha="center", va="bottom", fontsize=8)
    a.set_xticks(range(len(names)))
    a.set_xticklabels(names, fontsize="small")
    a.set_ylabel(f"test accuracy (%), axis from {bottom:g}")
    a.set_ylim(bottom, 100)
    n_seeds = sorted({len(v) for v in results.values()})
    a.set_title(f"mean ± std over {'/'.join(map(str, n_seeds))} seeds (dots: each seed)", fontsize="medium")
    a.grid(axis="y", alpha=0.3)
    return _root(a)


def plot_denoising_sweep(rows: Sequence[Mapping], ax=None) -> Figure:
    """What keeps NSAD denoising: sparsity of ``S`` and ``A``, share removed, accuracy per setting.

    Args:
        rows: one mapping per trained setting with ``label``, ``sparsity_scores``
            (zeros of ``S = QKᵀ``), ``sparsity_maps`` (zeros of ``A``),
            ``accuracy`` (test, in ``[0, 1]``), measured on the test set, and
            optionally ``u_final`` (the thresholds after training, their mean
            is printed under the label).
        ax: ``None`` or three Axes.
    """
    ax_s, ax_r, ax_a = _axes(ax, 3, figsize=(14.0, 4.4))
    x = np.arange(len(rows))
    labels = [r["label"].replace(", ", "\n") + (f"\n(u → {np.mean(r['u_final']):.2f})" if "u_final" in r else "")
              for r in rows]
    before = np.array([100 * r["sparsity_scores"] for r in rows])
    after = np.array([100 * r["sparsity_maps"] for r in rows])
    removed = np.where(before < 100, 100 * (after - before) / np.maximum(100 - before, 1e-12), 0.0)
    ax_s.bar(x - 0.2, before, 0.4, color="0.6", label=r"$S = QK^\top$")
    ax_s.bar(x + 0.2, after, 0.4, color="C3", label="$A$ = NSAD($S$)")
    ax_s.set_ylim(0, 115)
    ax_s.set_ylabel("sparsity (% zeros)")
    ax_s.set_title("sparsity before and after NSAD", fontsize="medium")
    ax_s.legend(fontsize="small", loc="upper left", ncol=2, frameon=False)
    ax_r.bar(x, removed, 0.6, color="C3")
    ax_r.set_ylabel("non-zero scores removed (%)")
    ax_r.set_title("what the denoiser removes", fontsize="medium")
    ax_r.set_ylim(0, max(10.0, 1.15 * removed.max()))
    acc = np.array([100 * r["accuracy"] for r in rows])
    bottom = max(0.0, 5 * np.floor((acc.min() - 5) / 5))  # zoomed in: the costs are a few %
    ax_a.bar(x, acc - bottom, 0.6, bottom=bottom, color="C0")
    ax_a.set_ylim(bottom, 100)
    ax_a.set_ylabel(f"test accuracy (%), axis from {bottom:g}")
    ax_a.set_title("its accuracy cost", fontsize="medium")
    for a, values in ((ax_r, removed), (ax_a, acc)):
        for xi, v in zip(x, values):
            a.text(xi, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    for a in (ax_s, ax_r, ax_a):
        a.set_xticks(x)
        a.set_xticklabels(labels, fontsize="x-small")
        a.grid(axis="y", alpha=0.3)
    return _root(ax_s)
