"""ds2ta_ref.plotting on small inputs (Agg), and figures/make_figures.py into a tmp dir."""
import importlib.util
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
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    assert all(drawn(ax) > 0 for ax in fig.axes)
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
    assert_figure(fig, 3)
    assert f"{nsad.sparsity(A[0]):.1%}" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="square"):
        plotting.plot_attention_maps(S[0], A[0, :5])


def load_make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", FIGURES_DIR / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_figures_writes_every_committed_png(tmp_path):
    make_figures = load_make_figures()
    written = make_figures.main(["--out", str(tmp_path)])
    names = {p.name for p in written}
    assert names == set(make_figures.FIGURES)
    assert {"fig2_tasa.png", "fig4_nsad.png", "lif_membrane.png", "attention_denoising.png"} <= names
    for path in written:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG"), path
        assert 1_000 < len(data) < 200_000, (path, len(data))
    # Every PNG under figures/ comes from the script (STYLE item 8).
    committed = {p.name for p in FIGURES_DIR.glob("*.png")}
    assert committed <= names, f"PNGs under figures/ that make_figures.py does not write: {committed - names}"
