"""The paper's Figure 4 (NSAD, Eq. 6-7): each head's denoising curve, its hashmap, and the maps it denoises."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import nsad
from .style import axes_for, integer_axes, integer_ticks, percent, root_figure

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


def plot_nsad(
    params,
    head_dim: int,
    *,
    labels: Sequence[str] | None = None,
    rounding: str = "nearest",
    ncols: int = 3,
    legend: str = "auto",
    ax=None,
) -> Figure:
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
    axes = axes_for(ax, H, nrows=nrows, figsize=(3.7 * ncols, 1.2 + 3.5 * nrows))
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
        ax_h.plot(s_fine[~above], g[h, ~above], color="C0", ls="--", lw=0.8, label="$g_h(s)$ (Eq. 7), gated off")
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
        root_figure(axes[0]).legend(
            *axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=5, fontsize="small", frameon=False
        )
    elif legend == "axes":
        axes[0].legend(fontsize="x-small", loc="upper left")
    elif legend != "none":
        raise ValueError(f"legend must be 'auto', 'figure', 'axes' or 'none', got {legend!r}")
    return root_figure(axes[0])


def plot_hashmap_table(params_h, head_dim: int, *, rounding: str = "nearest", ax=None) -> Figure:
    """One head's hashmap ``AD_h`` drawn as a table: a row of scores ``s`` over a row of ``AD_h[s]``.

    Cells of ``AD_h[s]`` are grey where a non-zero score becomes 0 (the score is removed),
    orange where the entry differs from ``s`` otherwise (the score is changed) and
    white where NSAD keeps the score as it is. ``s = 0`` maps to 0 in every head: nothing is
    removed there, so it is white (a head with ``u < 1`` removes nothing at all).
    """
    params_h = np.asarray(params_h, dtype=float).reshape(1, 6)
    table = nsad.hashmap(params_h, head_dim=head_dim, rounding=rounding)[0]  # (d+1,)
    (ax_t,) = axes_for(ax, 1, figsize=(0.32 * (head_dim + 1) + 1.2, 1.2))
    s = np.arange(head_dim + 1)
    kind = np.where((table == 0) & (s != 0), 2, np.where(table != s, 1, 0))  # 0 kept, 1 changed, 2 removed
    colours = ["white", "#fdd49e", "#bdbdbd"]  # kept, changed, removed
    ax_t.imshow(
        np.vstack([np.full(head_dim + 1, -1), kind]),
        cmap=ListedColormap(["#eeeeee"] + colours),
        vmin=-1.5,
        vmax=2.5,
        aspect="auto",
    )
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
    return root_figure(ax_t)


def plot_nsad_pipeline(
    S, params, head_dim: int, *, labels: Sequence[str] | None = None, rounding: str = "nearest", ax=None
) -> Figure:
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
    axes = axes_for(
        ax,
        4 * H,
        nrows=H,
        figsize=(15.5, 0.4 + 3.4 * H),
        gridspec_kw=dict(width_ratios=[1.0, 1.7, 0.95, 0.95]) if ax is None else None,
    )
    plot_nsad(params, head_dim, labels=labels, rounding=rounding, legend="figure", ax=axes[0::4])
    for h in range(H):
        ax_t, ax_s, ax_a = axes[4 * h + 1 : 4 * h + 4]
        plot_hashmap_table(params[h], head_dim, rounding=rounding, ax=ax_t)
        ax_t.set_title(f"{labels[h]}: hashmap $AD_h$ (Eq. 6-7, rounded)", fontsize="small")
        vmax = max(1.0, S[h].max(), A[h].max())
        vmin = min(0.0, A[h].min())
        for ax_i, M, name in (
            (ax_s, S[h], r"score map $S_h = Q_h K_h^\top$"),
            (ax_a, A[h], r"denoised $A_h = AD_h[S_h]$"),
        ):
            image = ax_i.imshow(M, cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax_i.set_title(f"{name}\nsparsity {percent(nsad.sparsity(M))}", fontsize="small")
            ax_i.set_xlabel("key token $j$")
            ax_i.set_ylabel("query token $i$")
            integer_axes(ax_i)
        ax_a.figure.colorbar(image, ax=[ax_s, ax_a], shrink=0.8, label="count", **integer_ticks())
    return root_figure(axes[0])
