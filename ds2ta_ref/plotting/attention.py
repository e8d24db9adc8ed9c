"""Attention maps: a score map next to its denoised map, and the paper's Figure 3 (maps of a trained model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .. import nsad
from .style import axes_for, integer_axes, integer_ticks, percent, root_figure


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
    ax_s, ax_a = axes_for(ax, 2, figsize=(8.0, 4.4))
    vmin, vmax = min(0.0, S.min(), A.min()), max(1.0, S.max(), A.max())
    for ax_i, M, name in ((ax_s, S, r"score map $S = QK^\top$"), (ax_a, A, "after NSAD, $A = AD[S]$")):
        image = ax_i.imshow(M, cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax_i.set_title(f"{name}\nsparsity {percent(nsad.sparsity(M))}", fontsize="medium")
        ax_i.set_xlabel("key token $j$")
        ax_i.set_ylabel("query token $i$")
        integer_axes(ax_i)
    fig = root_figure(ax_s)
    if new:
        fig.colorbar(image, ax=[ax_s, ax_a], shrink=0.85, label="count", **integer_ticks())
    if title:
        fig.suptitle(title)
    return fig


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


def plot_attention_grid(image, maps: Sequence, *, show_input: bool | None = None, ax=None) -> Figure:
    """Figure 3: attention maps of every head (across) and block (down) for one input.

    With ``show_input``, column 0 shows the input as it is (first row only; the other rows
    leave it blank). Then, per block, the input masked by the last head's map of that block
    (:func:`token_mask`) and the maps ``A_h`` of one time step, with one integer colour bar
    per block (new figures only). Each map's sparsity (fraction of zeros) is printed under it
    by :func:`percent`, so a map with one non-zero entry never reads 100%.

    Args:
        image: ``(S, S)`` the input (e.g. a digit).
        maps: one ``(H, N, N)`` array per block (one time step and sample).
        show_input: draw the unmasked input column; ``None`` (the default): yes for a new
            figure, and for given axes yes if there are ``depth * (H + 2)`` of them, no if
            ``depth * (H + 1)``.
        ax: ``None`` or ``depth * (H + 2)`` Axes (``depth * (H + 1)`` without the input
            column), row-major.

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
    if show_input is None:
        given = 0 if new else len([ax] if isinstance(ax, Axes) else np.ravel(ax))
        if not new and given not in (depth * (H + 1), depth * (H + 2)):
            raise ValueError(
                f"ax must be {depth * (H + 2)} Axes (with the input column) or {depth * (H + 1)} "
                f"(without) for this plot, got {given}"
            )
        show_input = new or given == depth * (H + 2)
    first = 1 if show_input else 0  # column of the masked input
    ncols = H + 1 + first
    axes = np.asarray(axes_for(ax, depth * ncols, nrows=depth, figsize=(2.3 * ncols + 0.8, 0.5 + 2.3 * depth)))
    axes = axes.reshape(depth, ncols)
    if show_input:
        axes[0, 0].imshow(image, cmap="gray", vmin=0, vmax=max(image.max(), 1e-12))
        axes[0, 0].set_title("input", fontsize="medium")
        axes[0, 0].set_xlabel("pixel column")
        axes[0, 0].set_ylabel("pixel row")
        for ax_blank in axes[1:, 0]:
            ax_blank.axis("off")
    for i, A in enumerate(maps):
        masked = image * token_mask(A[-1], image.shape[0])
        ax_img = axes[i, first]
        ax_img.imshow(masked, cmap="gray", vmin=0, vmax=max(masked.max(), 1e-12))  # brightest = 1
        ax_img.set_ylabel(f"block {i}\npixel row")
        ax_img.set_xlabel("pixel column")
        vmax = max(1.0, A.max())
        for h in range(H):
            ax_h = axes[i, first + 1 + h]
            im = ax_h.imshow(A[h], cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            ax_h.set_xlabel(f"key $j$ (sparsity {percent(nsad.sparsity(A[h]), 0)})", fontsize="small")
            ax_h.set_ylabel("query $i$", fontsize="small")
            integer_axes(ax_h)
        if new:
            root_figure(ax_img).colorbar(
                im, ax=list(axes[i, first + 1 :]), shrink=0.85, label="$A$ count", **integer_ticks()
            )
    axes[0, first].set_title(f"input × head {H - 1}'s map", fontsize="medium")
    for h in range(H):
        axes[0, first + 1 + h].set_title(f"head {h}", fontsize="medium")
    return root_figure(axes[0, 0])
