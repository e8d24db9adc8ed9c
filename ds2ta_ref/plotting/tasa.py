"""The paper's Figure 2 (TASA, Eq. 1, 4, 5): the attenuated weights, and their effect on spikes."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import lif, tasa
from .style import axes_for, power_of_two_label, root_figure


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
    axes = axes_for(
        ax, 3 * rows, nrows=rows, figsize=(11.0, 1.3 + 2.5 * rows), gridspec_kw=dict(width_ratios=[0.8, 1.6, 1.0])
    )
    wmax = np.abs(weight).max()
    lags = np.arange(window)
    d_out, d_in = weight.shape
    band_cmap = ListedColormap(["#dbe9f6", "#9ecae1", "#4292c6", "#08519c"][::-1])  # 2^0 dark .. 2^-3+ light
    for r, tau_r in enumerate(taus):
        ax_df, ax_w, ax_m = axes[3 * r : 3 * r + 3]
        fig_r = ax_df.figure
        tau_u = tasa.tau_used(tau_r)
        df = tasa.decay_factors(tau_u, window)  # (window,)
        name = rf"$\tau$ = {tau_u:g}" + (f" (from {tau_r:g})" if tau_u != tau_r else "")

        ax_df.bar(lags, df, color="C0", width=0.6)
        for lag, value in zip(lags, df):
            ax_df.text(float(lag), value + 0.04, power_of_two_label(value), ha="center", va="bottom", fontsize=9)
        ax_df.set_ylim(0, 1.3)
        ax_df.set_xticks(lags)
        ax_df.set_ylabel(f"{name}\n" + r"$df(\mathrm{lag})$", fontsize="medium")
        ax_df.set_xlabel(r"lag $= t - m$")

        gap = np.full((d_out, 1), np.nan)  # a blank column between replicas
        replicas = np.concatenate([np.concatenate([weight * f, gap], axis=1) for f in df], axis=1)[:, :-1]
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
                ax_m.text(
                    j,
                    i,
                    power_of_two_label(value),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="w" if value > 0.4 else "k",
                )
        ax_m.set_xticks(range(T))
        ax_m.set_yticks(range(T))
        ax_m.set_xlabel("spike time $m$")
        ax_m.set_ylabel("input time $t$")
        bar = fig_r.colorbar(image, ax=ax_m, shrink=0.9, ticks=[0, 1, 2, 3])
        bar.ax.set_yticklabels(["$1$", "$2^{-1}$", "$2^{-2}$", r"$\leq 2^{-3}$"])
        bar.set_label("weight of $s[m]$ in $I[t]$")
    titles = (
        r"decay factors $df(\mathrm{lag}) = 2^{-\tau \cdot \mathrm{lag}}$ (Eq. 5)",
        r"weight replicas $W(\mathrm{lag}) = W(0)\,df(\mathrm{lag})$ (Eq. 4)",
        r"$M[t, m]$: $x_{mix} = M s$ (Eq. 1), blank = 0",
    )
    for ax_c, text in zip(axes[:3], titles):
        ax_c.set_title(text, fontsize="medium")
    return root_figure(axes[0])


def plot_tasa_spikes(
    s,
    weight,
    bias=None,
    *,
    tau: float,
    window: int,
    tau_m: float = 2.0,
    v_threshold: float = 1.0,
    neurons: int = 3,
    ax=None,
) -> Figure:
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
        axes = list(
            fig.subplots(2 + n, 1, sharex=True, height_ratios=[0.25 * D_in + 0.5] + [1.0] * n + [0.3 * n + 0.3])
        )
    else:
        axes = axes_for(ax, 2 + n)
    ax_in, ax_cur, ax_q = axes[0], axes[1 : 1 + n], axes[-1]
    t = np.arange(T)

    ax_in.eventplot([t[s[:, j] > 0] for j in range(D_in)], lineoffsets=np.arange(D_in), linelengths=0.8, colors="k")
    ax_in.set_ylim(-0.6, D_in - 0.4)
    ax_in.set_yticks(np.arange(D_in))
    ax_in.set_ylabel("input $j$")
    ax_in.set_title(
        rf"input spikes $s_j[t]$; TASA with $\tau$ = {cache.tau_used:g}, $T_{{AW}}$ = {window}", fontsize="medium"
    )

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
    return root_figure(ax_in)
