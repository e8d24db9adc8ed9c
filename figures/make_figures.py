"""Regenerate every PNG under ``figures/`` (deterministic: all randomness is seeded).

Usage::

    python figures/make_figures.py [--out figures]

Writes:

* ``lif_membrane.png``: a LIF neuron driven by a noisy step current (Eq. 2-3).
* ``surrogates.png``: the step, the sigmoid and atan primals and their derivatives.
* ``fig2_tasa.png``: the paper's Figure 2 idea, attenuated weights for tau = 0, 1, 2, 4
  at the paper's window T_AW = 3 (Eq. 1, 4, 5).
* ``fig4_nsad.png``: the paper's Figure 4 idea, f_h and the hashmap for the
  initialisation and two nonlinear parameter sets, head_dim 16 (Eq. 6-7).
* ``attention_denoising.png``: a real score map of an untrained ``tiny`` model
  on seeded random input, before and after NSAD with the preset's ``u0``.

Every plot is drawn by :mod:`ds2ta_ref.plotting`, the code the tutorials use.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import ds2ta_ref
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import ds2ta_ref
from ds2ta_ref import lif, nsad, plotting

DPI = 100
SEED = 0

def lif_membrane():
    rng = np.random.default_rng(SEED)
    T = 40
    x = np.where(np.arange(T) >= 5, 0.55, 0.0) + 0.25 * rng.standard_normal(T)  # noisy step current
    spikes, h, v = lif.membrane(x, tau_m=2.0, v_threshold=1.0)
    return plotting.plot_membrane(
        x, spikes, h, v, 1.0, title="LIF neuron, tau_m = 2, hard reset to 0 (Eq. 2-3, decay_input=False)")


def surrogates():
    return plotting.plot_surrogates()


def fig2_tasa():
    return plotting.plot_tasa((0, 1, 2, 4), window=3, T=6, seed=SEED)


def fig4_nsad():
    labels = [label for label, _ in plotting.NSAD_EXAMPLES]
    params = np.array([p for _, p in plotting.NSAD_EXAMPLES])  # (3, 6): one "head" per example
    fig = plotting.plot_nsad(params, head_dim=16, labels=labels)
    fig.suptitle("NSAD: f_h(s) = 1(s > u_h) g_h(s) and its hashmap AD_h[s], head_dim = 16")
    return fig


def attention_denoising():
    """Block 0 of an untrained DS2TA tiny model on seeded random images: S = Q K^T and the model's A."""
    cfg = ds2ta_ref.preset("tiny")
    rng = np.random.default_rng(SEED)
    params = ds2ta_ref.init_params(cfg, rng)  # NSAD at its initialisation: a = 1, u = cfg.u0
    state = ds2ta_ref.init_state(cfg)
    x = rng.random((2, cfg.in_channels, cfg.img_size, cfg.img_size))  # (B, C, H, W) in [0, 1)
    _, _, cache = ds2ta_ref.model_forward(params, state, x, cfg, training=True)
    attn = cache.blocks[0][0]  # block 0's attention cache
    S = attn.q @ attn.k.swapaxes(-1, -2)  # (T, B, H, N, N) the score map before NSAD
    A = cache.attention_maps[0]  # (T, B, H, N, N) after NSAD
    report = nsad.sparsity_report(S, A)
    t, b, h = cfg.T - 1, 0, 0
    return plotting.plot_attention_maps(
        S[t, b, h], A[t, b, h],
        title=(f"untrained tiny model, block 0, t={t}, head {h}; NSAD at init u = {cfg.u0:g}\n"
               f"whole block (all t, samples, heads): sparsity {report.before:.1%} -> {report.after:.1%}"))


FIGURES = {
    "lif_membrane.png": lif_membrane,
    "surrogates.png": surrogates,
    "fig2_tasa.png": fig2_tasa,
    "fig4_nsad.png": fig4_nsad,
    "attention_denoising.png": attention_denoising,
}


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output directory (default: the figures/ directory of this script)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in FIGURES.items():
        path = args.out / name
        # No "Software" entry: the PNG bytes then do not change with the matplotlib version string.
        make().savefig(path, dpi=DPI, metadata={"Software": None})
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
        written.append(path)
    return written


if __name__ == "__main__":
    main()
