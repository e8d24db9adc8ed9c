"""ds2ta_ref.plotting on small inputs (Agg), and figures/make_figures.py into a tmp dir."""

import hashlib
import importlib.util
import json
import struct
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot

import numpy as np
import pytest
from matplotlib.figure import Figure

from ds2ta_ref import lif, nsad, plotting, tasa

FIGURES_DIR = Path(__file__).resolve().parents[1] / "figures"


def drawn(ax) -> int:
    """Number of things drawn in an Axes: lines, patches, images, collections, texts."""
    return len(ax.lines) + len(ax.patches) + len(ax.images) + len(ax.collections) + len(ax.texts)


def assert_figure(fig, n_axes):
    """``n_axes`` panels (colour bars not counted), each with something drawn; the figure renders."""
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == n_axes
    assert all(drawn(ax) > 0 for ax in panels)
    fig.canvas.draw()  # the whole figure renders under Agg


@pytest.mark.parametrize("shape", [(12,), (12, 3)])
def test_plot_membrane(shape):
    x = np.random.default_rng(0).random(shape) * 1.2
    spikes, h, v = lif.membrane(x)
    assert spikes.sum() > 0
    fig = plotting.plot_membrane(x, spikes, h, v, 1.0, title="t")
    assert_figure(fig, 3)
    ax_v = fig.axes[1]
    assert any(np.allclose(line.get_ydata(), 1.0) for line in ax_v.lines)  # the threshold line


def test_plot_membrane_into_given_axes_and_shape_errors():
    fig = Figure()
    axes = fig.subplots(3)
    x = np.linspace(0, 2, 8)
    spikes, h, v = lif.membrane(x)
    assert plotting.plot_membrane(x, spikes, h, v, 1.0, ax=axes) is fig
    with pytest.raises(ValueError, match="3 Axes"):
        plotting.plot_membrane(x, spikes, h, v, 1.0, ax=axes[:2])
    with pytest.raises(ValueError, match="h must have the shape of x"):
        plotting.plot_membrane(x, spikes, h[:-1], v, 1.0)


def test_plot_surrogates():
    assert_figure(plotting.plot_surrogates(), 2)


def test_tasa_mixing_matrix_is_the_causal_band():
    T, window, tau = 6, 3, 2
    M = plotting.tasa_mixing_matrix(tau, window, T)
    lag = np.subtract.outer(np.arange(T), np.arange(T))  # t - m
    expected = np.where((lag >= 0) & (lag < window), 2.0 ** (-tau * lag.clip(0)), 0.0)
    np.testing.assert_array_equal(M, expected)
    s = np.random.default_rng(0).random((T, 4))
    _, cache = tasa.forward(s, np.eye(4), None, tau=tau, window=window)
    np.testing.assert_allclose(M @ s, cache.x_mix, rtol=1e-12)


@pytest.mark.parametrize("taus", [2, (0, 1, 2, 4)])
def test_plot_tasa(taus):
    fig = plotting.plot_tasa(taus, window=3, T=5)
    assert_figure(fig, 3 * len(np.atleast_1d(taus)))


def test_plot_nsad():
    params = np.array([p for _, p in plotting.NSAD_EXAMPLES])
    fig = plotting.plot_nsad(params, head_dim=8, labels=[label for label, _ in plotting.NSAD_EXAMPLES])
    assert_figure(fig, len(params))
    # the markers are the hashmap itself
    markers = [line for line in fig.axes[1].lines if line.get_marker() == "o"]
    np.testing.assert_array_equal(markers[0].get_ydata(), nsad.hashmap(params, head_dim=8)[1])
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_nsad(params, head_dim=8, labels=["one"])


def test_plot_nsad_wraps_heads_into_rows():
    fig = plotting.plot_nsad(nsad.init_params(5, 2.0), head_dim=4, ncols=3)
    assert_figure(fig, 5)


def test_plot_attention_maps():
    rng = np.random.default_rng(0)
    S = rng.integers(0, 5, size=(1, 6, 6)).astype(float)
    A, _ = nsad.forward(S, nsad.init_params(1, 2.0), head_dim=4)
    fig = plotting.plot_attention_maps(S[0], A[0], title="toy")
    assert len(fig.axes) == 3  # S, A and the colour bar
    assert_figure(fig, 2)
    assert f"{nsad.sparsity(A[0]):.1%}" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="square"):
        plotting.plot_attention_maps(S[0], A[0, :5])


def test_plot_membrane_labels_name_each_neuron():
    x = np.linspace(0, 2, 8)[:, None] * np.array([0.8, 1.0])
    fig = plotting.plot_membrane(x, *lif.membrane(x), 1.0, labels=["gain 0.8", "gain 1"])
    assert [t.get_text() for t in fig.axes[2].get_yticklabels()] == ["gain 0.8", "gain 1"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["gain 0.8", "gain 1"]
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_membrane(x, *lif.membrane(x), 1.0, labels=["one"])


def test_plot_tasa_spikes_draws_both_currents():
    rng = np.random.default_rng(0)
    s = (rng.random((6, 4)) < 0.5).astype(float)
    W = rng.standard_normal((3, 4))
    fig = plotting.plot_tasa_spikes(s, W, None, tau=1, window=3, neurons=2)
    assert_figure(fig, 4)  # raster, two currents, Q raster
    I_w, _ = tasa.forward(s, W, None, tau=1, window=3)
    np.testing.assert_allclose(fig.axes[1].lines[1].get_ydata(), I_w[:, 0])
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), s @ W[0])
    with pytest.raises(ValueError, match="D_in"):
        plotting.plot_tasa_spikes(s[:, :3], W, None, tau=1, window=3)


def test_plot_hashmap_table_shows_the_table():
    p = np.array(plotting.NSAD_EXAMPLES[1][1])
    fig = plotting.plot_hashmap_table(p, 6)
    texts = [t.get_text() for t in fig.axes[0].texts]
    table = nsad.hashmap(p[None], head_dim=6)[0]
    assert texts[1::2] == [f"{v:g}" for v in table]
    assert texts[0::2] == [str(s) for s in range(7)]


def test_hashmap_table_greys_only_removed_scores():
    """A score of 0 stays 0 in every head: only a non-zero score mapped to 0 is grey ("removed")."""
    for u, removed in ((0.9, []), (3.0, [1, 2, 3])):
        fig = plotting.plot_hashmap_table(nsad.init_params(1, u)[0], 6)
        kind = fig.axes[0].images[0].get_array()[1]  # row of AD_h[s]: 0 kept, 1 changed, 2 removed
        assert list(np.flatnonzero(kind == 2)) == removed, u
        assert kind[0] == 0


def test_plot_nsad_pipeline_sparsity_in_titles():
    rng = np.random.default_rng(0)
    S = rng.integers(0, 5, size=(2, 4, 4)).astype(float)
    params = nsad.init_params(2, 2.0)
    fig = plotting.plot_nsad_pipeline(S, params, 4, labels=["x", "y"])
    A, _ = nsad.forward(S, params, head_dim=4)
    assert f"{nsad.sparsity(A[1]):.1%}" in fig.axes[7].get_title()
    assert f"{nsad.sparsity(S[1]):.1%}" in fig.axes[6].get_title()
    fig.canvas.draw()
    with pytest.raises(ValueError, match="H = 2"):
        plotting.plot_nsad_pipeline(S[:1], params, 4)


def test_token_mask_and_attention_grid():
    A = np.zeros((4, 4))
    A[:, 1] = 2  # every query attends key token 1 only
    mask = plotting.token_mask(A, 8)
    np.testing.assert_array_equal(mask[:4, 4:], 1.0)
    assert mask.sum() == 16
    maps = [np.random.default_rng(i).integers(0, 3, size=(3, 4, 4)) for i in range(2)]
    fig = plotting.plot_attention_grid(np.ones((8, 8)), maps)
    assert len([a for a in fig.axes if a.images]) == 1 + 2 * 4  # the input once, then per block masked + 3 heads
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), np.ones((8, 8)))  # unmasked
    fig.canvas.draw()
    for columns, with_input in ((4, False), (5, True)):  # into given axes, with or without the input column
        fig = Figure()
        axes = fig.subplots(2, columns)
        assert plotting.plot_attention_grid(np.ones((8, 8)), maps, ax=axes) is fig
        assert axes[0, 0].get_title() == ("input" if with_input else "input × head 2's map")
    with pytest.raises(ValueError, match="10 Axes .* or 8"):
        plotting.plot_attention_grid(np.ones((8, 8)), maps, ax=Figure().subplots(2, 3))


def test_attention_grid_never_rounds_a_nonzero_map_to_full_sparsity():
    A = np.zeros((1, 16, 16))
    A[0, 0, 2] = 1  # one non-zero cell of 256: 99.6 % zeros
    fig = plotting.plot_attention_grid(np.ones((8, 8)), [A])
    assert "sparsity 99.6%" in fig.axes[2].get_xlabel()
    assert plotting.percent(255 / 256, 0) == "99.6%" and plotting.percent(1.0, 0) == "100%"
    assert plotting.percent(0.14, 0) == "14%" and plotting.percent(1e-4, 1) == "0.01%"


def test_plot_architecture_prints_the_shapes():
    from ds2ta_ref import preset

    cfg = preset("tiny")
    fig = plotting.plot_architecture(cfg, batch=3)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert f"(T, B, N, D)\n= ({cfg.T}, 3, {cfg.num_tokens}, {cfg.dim})" in texts
    assert f"(T, B, H, N, N)\n= ({cfg.T}, 3, {cfg.heads}, {cfg.num_tokens}, {cfg.num_tokens})" in texts
    assert "spikes to the next block" not in texts  # the residual stream holds integers
    shapes = [t for t in fig.axes[0].texts if t.get_text().startswith("(T, B")]
    assert shapes and min(t.get_fontsize() for t in shapes) >= 9  # readable at notebook width
    assert fig.get_figwidth() <= 13.5
    fig.canvas.draw()


def test_result_charts():
    from ds2ta_ref.energy import BlockEnergy

    history = [
        dict(
            epoch=e,
            loss=1.0 / e,
            test_loss=1.1 / e,
            train_acc=0.5,
            test_acc=0.4,
            firing_rate=0.1,
            attention_sparsity=0.8,
        )
        for e in (1, 2)
    ]
    assert_figure(plotting.plot_learning_curves({"a": history, "b": history}), 4)
    rows = {"Spikformer": [BlockEnergy(0, 0.5, 100, 45.0)], "DS2TA": [BlockEnergy(0, 0.9, 100, 9.0)]}
    fig = plotting.plot_block_energy(rows)
    assert "-80.0%" in [t.get_text() for t in fig.axes[1].texts]
    fig = plotting.plot_ablation({"x": [0.5, 0.7], "y": [0.9]})
    assert "60.0 ± 14.1" in [t.get_text() for t in fig.axes[0].texts]
    sweep = [dict(label="a", sparsity_scores=0.5, sparsity_maps=0.75, accuracy=0.9)]
    fig = plotting.plot_denoising_sweep(sweep)
    assert "50.0" in [t.get_text() for t in fig.axes[1].texts]  # half of the non-zero scores removed


def test_variants_have_one_order_and_one_colour_everywhere():
    from ds2ta_ref.energy import BlockEnergy

    assert plotting.VARIANTS == ("Spikformer", "NSAD only", "TASA only", "DS2TA")
    shuffled = {"TASA only": [0.9], "DS2TA": [0.95], "Spikformer": [0.9], "NSAD only": [0.92]}
    fig = plotting.plot_ablation(shuffled)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(plotting.VARIANTS)
    bars = [p for p in fig.axes[0].patches]
    assert [matplotlib.colors.to_hex(b.get_facecolor()) for b in bars] == [
        plotting.VARIANT_COLORS[v] for v in plotting.VARIANTS
    ]
    rows = {"DS2TA": [BlockEnergy(0, 0.9, 100, 9.0)], "Spikformer": [BlockEnergy(0, 0.5, 100, 45.0)]}
    fig = plotting.plot_block_energy(rows)
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["Spikformer", "DS2TA"]
    assert matplotlib.colors.to_hex(fig.axes[1].patches[0].get_facecolor()) == plotting.VARIANT_COLORS["Spikformer"]
    history = [
        dict(epoch=e, loss=1.0, train_acc=0.5, test_acc=0.4, firing_rate=0.1, attention_sparsity=0.8) for e in (1, 2)
    ]
    fig = plotting.plot_learning_curves({"DS2TA": history, "Spikformer": history})
    assert [line.get_color() for line in fig.axes[2].lines] == [
        plotting.VARIANT_COLORS[v] for v in ("Spikformer", "DS2TA")
    ]
    assert plotting.variant_color("other", 3) == "C3"


def test_learning_curves_draw_test_panels_in_the_test_style():
    history = [
        dict(epoch=e, loss=1.0, test_loss=1.2, train_acc=0.5, test_acc=0.4, firing_rate=0.1, attention_sparsity=0.8)
        for e in (1, 2)
    ]
    fig = plotting.plot_learning_curves(history)
    train, test = plotting.TRAIN_STYLE, plotting.TEST_STYLE
    assert (train["ls"], train["marker"]) != (test["ls"], test["marker"])
    styles = {ax.get_title(): [(line.get_linestyle(), line.get_marker()) for line in ax.lines] for ax in fig.axes}
    assert styles["sparsity of $A$ (test set)"] == [("--", "s")]
    assert styles["firing rate (training batches)"] == [("-", "o")]
    assert styles["accuracy"] == [("-", "o"), ("--", "s")]


def test_root_figure_refuses_an_axes_in_no_figure():
    from ds2ta_ref.plotting.style import root_figure

    fig = Figure()
    ax = fig.add_subplot()
    assert root_figure(ax) is fig
    ax.remove()
    with pytest.raises(ValueError, match="expected an Axes in a figure"):
        root_figure(ax)


def test_plotting_without_matplotlib_says_what_to_install():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import ds2ta_ref, ds2ta_ref.model, ds2ta_ref.train\n"  # the core imports without matplotlib
        "try:\n    import ds2ta_ref.plotting\nexcept ImportError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.count("\n") == 1 and "pip install 'ds2ta_ref[plot]'" in out


def load_make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", FIGURES_DIR / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_make_figures_regenerates_every_committed_png_byte_for_byte(tmp_path):
    """The committed PNGs are exactly what the script draws today: a changed plot or model fails here."""
    make_figures = load_make_figures()
    written = make_figures.main(["--out", str(tmp_path)])
    assert {p.name for p in written} == set(make_figures.FIGURES)
    committed = {p.name for p in FIGURES_DIR.glob("*.png")}
    assert committed == set(make_figures.FIGURES), "every PNG under figures/ comes from the script (STYLE 8)"
    changed = [
        p.name
        for p in written
        if hashlib.sha256(p.read_bytes()).hexdigest() != hashlib.sha256((FIGURES_DIR / p.name).read_bytes()).hexdigest()
    ]
    drawn_with = json.loads((FIGURES_DIR / make_figures.ENVIRONMENT).read_text())
    if changed and drawn_with != make_figures.environment():
        pytest.skip(
            f"{changed} differ, but the committed PNGs were drawn with {drawn_with}, "
            f"not {make_figures.environment()}: bytes are only comparable with the same versions"
        )
    assert not changed, f"regenerate with `python figures/make_figures.py`: {changed} differ"
    for p in written:
        assert p.read_bytes().startswith(b"\x89PNG")
        width, height = struct.unpack(">II", p.read_bytes()[16:24])
        assert min(width, height) >= 300, (p.name, width, height)  # 150 dpi on a figure of >= 2 inches


def test_lif_membrane_draws_notebook_01s_current():
    """figures/lif_membrane.png and notebook 01 switch the same current on at the same step."""
    c = load_make_figures().LIF_CURRENT
    nb = json.loads((FIGURES_DIR.parent / "tutorials" / "01_lif_neuron.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "code")
    assert f"t_on, I_on, noise = {c['t_on']}, {c['I_on']}, {c['noise']}" in code
    assert f"T = {c['T']} " in code and f"seed = {c['seed']}\n" in code
    assert "np.where(np.arange(T) >= t_on, I_on, 0.0) + noise * rng.standard_normal(T)" in code


def test_committed_checkpoint_is_small():
    assert (FIGURES_DIR / "trained.npz").stat().st_size < 2_000_000


def test_committed_results_say_what_the_course_says():
    """The claims of notebooks 05-06 and figures/README.md about the committed runs hold for them."""
    from ds2ta_ref import checkpoint

    results = json.loads((FIGURES_DIR / "results.json").read_text())
    sweep = {(r["u0"], r["frozen"]): r for r in results["sweep"]}
    off = sweep[(1.0, False)]  # the tiny preset as trained: u0 = 1, learned
    assert max(off["u_final"]) < 1, "the learned u drifts below 1"
    assert off["sparsity_maps"] == off["sparsity_scores"], "... and NSAD removes nothing"
    ablation = results["ablation"]
    seed_spread = max(max(v) - min(v) for v in ablation.values())
    for (u0, frozen), r in sweep.items():
        if (u0, frozen) == (1.0, False):
            continue
        assert r["sparsity_maps"] > r["sparsity_scores"], (u0, frozen, "denoising stays on")
        # (which settings' accuracy differs by more than the seed spread is computed and printed by
        # tutorial 06; the prose claims nothing about it)
        if frozen:
            assert all(u == u0 for u in r["u_final"])
        else:
            assert u0 - 1 < min(r["u_final"]) and max(r["u_final"]) < u0, (u0, "drifts down by < 1 count")
    means = {k: float(np.mean(v)) for k, v in ablation.items()}
    assert seed_spread >= max(means.values()) - min(means.values()), "seeds as far apart as configurations"
    arrays, _ = checkpoint.load(FIGURES_DIR / "trained.npz")
    u = np.concatenate([v[:, 5] for k, v in arrays.items() if k.startswith("DS2TA.param.") and k.endswith(".nsad")])
    assert (u < 1).all(), "the Figure 3/4 model's gates remove nothing"
