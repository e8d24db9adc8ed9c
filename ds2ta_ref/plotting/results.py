"""Results of training runs: learning curves, Table 3 (energy) and Table 4 (ablation) as charts, the NSAD sweep.

Model variants (Spikformer, NSAD only, TASA only, DS2TA) keep the colours and the order of
:mod:`.style` in every chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .style import axes_for, in_variant_order, root_figure, variant_color

# Every panel measured on the training batches is drawn like this, every test-set panel like that.
TRAIN_STYLE: dict[str, Any] = dict(marker="o", ls="-")
TEST_STYLE: dict[str, Any] = dict(marker="s", ls="--", mfc="white")


def plot_learning_curves(histories, ax=None) -> Figure:
    """Loss, accuracy, firing rate and attention sparsity per epoch of one or more runs.

    Training-set values (loss, accuracy, firing rate: the epoch's training batches) are solid
    lines with filled circles (:data:`TRAIN_STYLE`), test-set values (loss, accuracy, sparsity of
    the attention maps) dashed lines with open squares (:data:`TEST_STYLE`); model variants keep
    their colours and order (:mod:`.style`).

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
    axes = axes_for(ax, 4, figsize=(12.0, 3.3))
    for r, name in enumerate(in_variant_order(histories)):
        history = histories[name]
        epoch = [row["epoch"] for row in history]
        c = variant_color(name, r)
        prefix = f"{name}: " if name else ""
        axes[0].plot(epoch, [row["loss"] for row in history], color=c, label=f"{prefix}train", **TRAIN_STYLE)
        if "test_loss" in history[0]:
            axes[0].plot(epoch, [row["test_loss"] for row in history], color=c, label=f"{prefix}test", **TEST_STYLE)
        axes[1].plot(epoch, [100 * row["train_acc"] for row in history], color=c, label=f"{prefix}train", **TRAIN_STYLE)
        axes[1].plot(epoch, [100 * row["test_acc"] for row in history], color=c, label=f"{prefix}test", **TEST_STYLE)
        axes[2].plot(epoch, [row["firing_rate"] for row in history], color=c, **TRAIN_STYLE)
        axes[3].plot(epoch, [100 * row["attention_sparsity"] for row in history], color=c, **TEST_STYLE)
    ylabels = (
        "cross-entropy loss",
        "accuracy (%)",
        "firing rate (spikes / neuron / step)",
        "attention-map sparsity (% zeros of $A$)",
    )
    titles = ("loss", "accuracy", "firing rate (training batches)", "sparsity of $A$ (test set)")
    for a, yl, ti in zip(axes, ylabels, titles):
        a.set_xlabel("epoch")
        a.set_ylabel(yl)
        a.set_title(ti, fontsize="medium")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()  # train/test per run: covers every panel
    if len(histories) > 1 or handles:
        root_figure(axes[0]).legend(
            handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small", frameon=False
        )
    return root_figure(axes[0])


def plot_block_energy(
    rows: Mapping[str, Sequence], *, scores_sparsity: Sequence[float] | None = None, ax=None
) -> Figure:
    """Table 3 as a chart: per block, attention-map sparsity and attention energy of each model.

    Args:
        rows: ``{model name: [BlockEnergy per block]}`` (:func:`ds2ta_ref.train.evaluate`'s
            ``energy``), drawn in the order of :data:`~.style.VARIANTS` (other names after,
            as given); the first model is the baseline (e.g. Spikformer), and
            the energy panel is annotated with the reduction of the last one.
        scores_sparsity: optionally, per block, the sparsity of the last model's
            score maps ``S`` before NSAD, drawn as a black mark on its bars: the
            gap to the bar is what NSAD removed.
        ax: ``None`` or two Axes.

    Returns:
        The figure.
    """
    names = in_variant_order(rows)
    depth = len(rows[names[0]])
    ax_s, ax_e = axes_for(ax, 2, figsize=(10.0, 3.8))
    width = 0.8 / len(names)
    blocks = np.arange(depth)
    for m, name in enumerate(names):
        x = blocks - 0.4 + width * (m + 0.5)
        sp = [100 * e.sparsity for e in rows[name]]
        en = [e.energy_pj for e in rows[name]]
        ax_s.bar(x, sp, width, color=variant_color(name, m), label=name)
        ax_e.bar(x, en, width, color=variant_color(name, m), label=name)
        for xi, v in zip(x, sp):
            ax_s.text(xi, v + 1, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    if scores_sparsity is not None:
        x_last = blocks - 0.4 + width * (len(names) - 0.5)
        ax_s.hlines(
            100 * np.asarray(scores_sparsity),
            x_last - width / 2,
            x_last + width / 2,
            colors="k",
            lw=2.5,
            label=f"{names[-1]}: $S = QK^\\top$ before NSAD",
        )
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
    return root_figure(ax_s)


def plot_ablation(results: Mapping[str, Sequence[float]], ax=None) -> Figure:
    """Table 4 as a chart: test accuracy per configuration, mean ± std over seeds, each seed a dot.

    Args:
        results: ``{configuration name: [accuracy in [0, 1] per seed]}``; drawn in the order
            and colours of :data:`~.style.VARIANTS` (other names after, as given).
        ax: ``None`` or one Axes.
    """
    (a,) = axes_for(ax, 1, figsize=(6.5, 3.8))
    names = in_variant_order(results)
    every = 100 * np.concatenate([np.asarray(v, dtype=float) for v in results.values()])
    bottom = max(0.0, 5 * np.floor((every.min() - 5) / 5))  # zoomed in: the differences are a few %
    for i, name in enumerate(names):
        acc = 100 * np.asarray(results[name], dtype=float)
        mean, std = acc.mean(), (acc.std(ddof=1) if len(acc) > 1 else 0.0)
        a.bar(i, mean - bottom, 0.6, bottom=bottom, color=variant_color(name, i), alpha=0.75, yerr=std, capsize=5)
        a.plot(np.full(len(acc), i) + np.linspace(-0.12, 0.12, len(acc)), acc, "o", color="k", ms=4)
        a.text(i, bottom + 0.5, f"{mean:.1f} ± {std:.1f}", ha="center", va="bottom", fontsize=8)
    a.set_xticks(range(len(names)))
    a.set_xticklabels(names, fontsize="small")
    a.set_ylabel(f"test accuracy (%), axis from {bottom:g}")
    a.set_ylim(bottom, 100)
    n_seeds = sorted({len(v) for v in results.values()})
    a.set_title(f"mean ± std over {'/'.join(map(str, n_seeds))} seeds (dots: each seed)", fontsize="medium")
    a.grid(axis="y", alpha=0.3)
    return root_figure(a)


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
    ax_s, ax_r, ax_a = axes_for(ax, 3, figsize=(14.0, 4.4))
    x = np.arange(len(rows))
    labels = [
        r["label"].replace(", ", "\n") + (f"\n(u → {np.mean(r['u_final']):.2f})" if "u_final" in r else "")
        for r in rows
    ]
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
            a.text(float(xi), v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    for a in (ax_s, ax_r, ax_a):
        a.set_xticks(x)
        a.set_xticklabels(labels, fontsize="x-small")
        a.grid(axis="y", alpha=0.3)
    return root_figure(ax_s)
