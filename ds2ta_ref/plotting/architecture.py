"""The paper's Figure 1 as a block diagram, with this package's tensor shapes on the arrows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .. import tasa
from .style import axes_for, power_of_two_label, root_figure


def _shape(names: str, sizes: Mapping[str, int], prefix: str = "") -> str:
    """``"(T, B, N, D)\n= (2, 8, 16, 64)"`` from ``"T B N D"``: letters over sizes, two short lines."""
    letters = names.split()
    return f"{prefix}({', '.join(letters)})\n= ({', '.join(str(sizes[k]) for k in letters)})"


def _stack(top: float, heights, gap: float) -> list:
    """Centres of boxes of ``heights`` stacked downwards from ``top``, ``gap`` apart."""
    centres, y = [], top
    for h in heights:
        centres.append(y - h / 2)
        y -= h + gap
    return centres


# Font sizes (points) of the diagram; the figure is 13.2 x 8.2 inches, one data unit per inch, so that
# at notebook width (about 1000 px for 13.2 in) a 9.5 pt label is about 10 px high.
BOX_FONT = 10.5
SHAPE_FONT = 9.5


def plot_architecture(cfg, *, batch: int = 8, ax=None) -> Figure:
    """Figure 1 as a block diagram, with this package's tensor shapes on every arrow.

    Left: the model (input, direct encoding, SPS, encoder blocks, pooling,
    head); middle: one encoder block opened up (TASA q/k/v, ``QKᵀ``, NSAD,
    ``A V``, projection, MLP); right: which presynaptic spikes drive a Q
    neuron at time ``t``, spatial-only (Spikformer) vs spatiotemporal (TASA,
    line width ``2^(-tau*lag)`` with ``cfg.tau0``). Shapes use the letters of
    the docstrings (time-major ``T, B, N, D``, heads ``H`` of size ``d``) over
    the sizes of ``cfg`` for a batch of ``batch``. The residual stream between
    blocks holds integers (spikes summed by the residual additions), not spikes.
    """
    W, Hgt = 13.2, 8.2
    (ax_d,) = axes_for(ax, 1, figsize=(W, Hgt))
    z = dict(
        T=cfg.T,
        B=batch,
        C=cfg.in_channels,
        S=cfg.img_size,
        N=cfg.num_tokens,
        D=cfg.dim,
        H=cfg.heads,
        d=cfg.head_dim,
        K=cfg.num_classes,
    )
    z["4D"] = cfg.dim * cfg.mlp_ratio
    ax_d.set_xlim(0, W)
    ax_d.set_ylim(0, Hgt)
    ax_d.axis("off")
    shape_text: dict[str, Any] = dict(fontsize=SHAPE_FONT, color="C3", family="monospace", linespacing=1.1)

    def box(x, y, w, h, text, colour="#e8eef7", **kw):
        ax_d.add_patch(
            FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04", fc=colour, ec="0.3", lw=1, **kw)
        )
        ax_d.text(x, y, text, ha="center", va="center", fontsize=BOX_FONT)

    def arrow(x, y0, y1, label):
        ax_d.add_patch(FancyArrowPatch((x, y0), (x, y1), arrowstyle="-|>", mutation_scale=12, color="0.2"))
        ax_d.text(x + 0.1, (y0 + y1) / 2, label, ha="left", va="center", **shape_text)

    def column(x, w, heights, centres, texts, colours, labels):
        for y, h, text, colour in zip(centres, heights, texts, colours):
            box(x, y, w, h, text, colour)
        for i, label in enumerate(labels):
            arrow(x, centres[i] - heights[i] / 2 - 0.04, centres[i + 1] + heights[i + 1] / 2 + 0.04, label)

    # left column: the model
    xl, w = 1.75, 3.2
    heights = [0.5, 0.5, 1.0, 0.95, 0.5, 0.5]
    ys = _stack(8.0, heights, gap=0.72)
    column(
        xl,
        w,
        heights,
        ys,
        [
            "input image (static digit)",
            "direct encoding: repeat $T$ times",
            "SPS (patch splitting)\n4 × conv3×3-BN-LIF, 2 max-pools,\n+ LIF(BN(conv)) position embedding",
            f"encoder block × {cfg.depth}\n$x \\leftarrow x + \\mathrm{{Attn}}(x)$\n"
            "$x \\leftarrow x + \\mathrm{MLP}(x)$",
            "mean over tokens $N$, then time $T$",
            f"head: Linear $D \\to$ {cfg.num_classes} classes",
        ],
        ["#f5f5f5", "#f5f5f5", "#fdebd0", "#e8eef7", "#f5f5f5", "#f5f5f5"],
        [_shape("B C S S", z), _shape("T B C S S", z), _shape("T B N D", z), _shape("T B N D", z), _shape("B D", z)],
    )
    ax_d.text(
        xl + 0.1,
        ys[-1] - heights[-1] / 2 - 0.08,
        _shape("B K", z, "logits ").replace("K)", "classes)"),
        ha="left",
        va="top",
        **shape_text,
    )

    # middle column: one encoder block
    xr, wr = 6.35, 5.0
    window = cfg.effective_window
    rh = [0.75, 0.45, 0.45, 0.45, 0.45, 0.45, 0.7]
    rs = _stack(7.62, rh, gap=0.6)
    ax_d.add_patch(
        FancyBboxPatch(
            (xr - wr / 2 - 0.25, rs[-1] - rh[-1] / 2 - 0.12),
            wr + 0.5,
            8.12 - (rs[-1] - rh[-1] / 2 - 0.12),
            boxstyle="round,pad=0.02",
            fc="none",
            ec="#4a6fa5",
            ls="--",
            lw=1,
        )
    )
    ax_d.text(xr - wr / 2 - 0.15, 8.02, "one encoder block", fontsize=BOX_FONT, color="#4a6fa5", va="top")
    ax_d.add_patch(
        FancyArrowPatch(
            (xl + w / 2 + 0.05, ys[3]), (xr - wr / 2 - 0.3, ys[3]), arrowstyle="-", ls="--", color="#4a6fa5"
        )
    )
    ax_d.text(
        xr + wr / 2 + 0.15,
        8.02,
        "in: $x$ " + _shape("T B N D", z).replace("\n", " "),
        ha="right",
        va="top",
        **shape_text,
    )
    column(
        xr,
        wr,
        rh,
        rs,
        [
            f"TASA $q, k, v$ (Eq. 1, 4, 5): mix $T_{{AW}}$ = {window} steps by "
            r"$2^{-\tau\,\mathrm{lag}}$," + "\nthen Linear $D \\to D$, BN, LIF; split into $H$ heads",
            r"scores $S = Q K^\top$ per head (integer counts $0 .. d$)",
            r"NSAD (Eq. 6, 7): $A = AD_h[S]$, one hashmap per head",
            f"$A V$ × scale {cfg.scale:g}, merge heads, LIF ($\\theta$ = {cfg.attn_v_threshold:g})",
            "TASA proj: Linear $D \\to D$, BN, LIF;  $x \\leftarrow x$ + out",
            f"MLP: Linear $D \\to$ {z['4D']}, BN, LIF, Linear {z['4D']} $\\to D$, BN, LIF",
            "$x \\leftarrow x$ + MLP($x$) to the next block:\nintegers (spikes summed by the residuals)",
        ],
        ["#d5e8d4", "#e8eef7", "#f8cecc", "#e8eef7", "#d5e8d4", "#fdebd0", "#f5f5f5"],
        [
            _shape("T B H N d", z, "Q, K, V "),
            _shape("T B H N N", z, "S "),
            _shape("T B H N N", z, "A "),
            _shape("T B N D", z),
            _shape("T B N D", z),
            _shape("T B N D", z),
        ],
    )
    _connectivity(ax_d, cfg, x0=9.45, y0=4.55, title="spatial-only (Spikformer, $T_{AW}$ = 1)", window=1)
    _connectivity(
        ax_d, cfg, x0=9.45, y0=0.7, title=f"spatiotemporal (TASA, $T_{{AW}}$ = {cfg.window})", window=cfg.window
    )
    return root_figure(ax_d)


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
        ax_d.text(x, y0 + 0.15, ["$t-2$", "$t-1$", "$t$"][i], ha="center", va="center", fontsize=BOX_FONT)
    ax_d.plot(*post, "o", ms=13, mfc="#d5e8d4", mec="0.3", zorder=2)
    ax_d.text(post[0], post[1] - 0.4, "$Q$ at $t$", ha="center", va="top", fontsize=BOX_FONT)
    ax_d.text(x0 + 1.7, y0 + 2.55, title, ha="center", va="bottom", fontsize=BOX_FONT)
    if window > 1:
        weights = ", ".join(f"lag {lag}: {power_of_two_label(f)}" for lag, f in enumerate(factors))
        ax_d.text(
            x0 + 1.7,
            y0 + 2.3,
            rf"$\tau$ = {tasa.tau_used(cfg.tau0):g}; {weights}",
            ha="center",
            va="bottom",
            fontsize=SHAPE_FONT,
        )
    else:
        ax_d.text(x0 + 1.7, y0 + 2.3, "only the spikes of the same step", ha="center", va="bottom", fontsize=SHAPE_FONT)
