"""Regenerate every PNG under ``figures/``, byte for byte.

Usage::

    python figures/make_figures.py [--out figures] [--retrain]

Figures that need trained models read two committed files written by
``--retrain`` (15 training runs on one BLAS thread; 12 to 22 minutes on the shared, loaded
2-core machine; the DS2TA model of Figures 3 and 4 alone 67 to 90 s):

* ``trained.npz``: the parameters and BatchNorm statistics of two ``tiny``
  models with two encoder blocks (DS2TA and Spikformer, seed 0, 3 epochs on
  the digits), 1.2 MB in float32;
* ``results.json``: the numbers of the training runs (learning curves, the
  Table 4 ablation over two seeds, the NSAD denoising sweep).

A committed checkpoint rather than a cache: the figures script then takes a
few seconds, and the tests can check that every PNG is regenerated
byte-identically without training anything. ``--retrain`` recomputes both
files from their seeds; it reports whether every array came out identical to
the committed one (its SHA-256 is stored in the file), which it does on the
same machine type, single-threaded.

Writes (150 dpi, no timestamps or version strings in the files), and ``environment.json``
with the matplotlib, FreeType and numpy versions that drew them:

* ``lif_membrane.png``: a LIF neuron driven by a noisy step current (Eq. 2-3).
* ``surrogates.png``: the step, the sigmoid and atan primals and their derivatives.
* ``fig1_architecture.png``: Figure 1 as a diagram with the tensor shapes of the
  ``tiny`` two-block model.
* ``fig2_tasa.png``: Figure 2: attenuated weights for tau = 0, 1, 2, 4 at
  T_AW = 3 (left) and, on seeded spikes, I[t] and the Q spikes with a window of
  1 vs 3 at tau = 1 (right).
* ``fig3_attention.png``: Figure 3: attention maps of the trained DS2TA model,
  heads across, blocks down, first time step, one test digit.
* ``fig4_nsad.png``: Figure 4 as a pipeline per head, curve -> hashmap ->
  score map -> denoised map, for the initialisation, a nonlinear example and
  learned heads of the trained model.
* ``table3_energy.png``: per-block attention sparsity and energy, Spikformer vs DS2TA.
* ``table4_ablation.png``: test accuracy of the four TASA/NSAD switches, two seeds.
* ``nsad_sweep.png``: what keeps NSAD removing scores: u0 and a frozen u.
* ``learning_curves.png``: loss, accuracy, firing rate, sparsity per epoch.

Every plot is drawn by :mod:`ds2ta_ref.plotting`, the code the tutorials use.
"""

from __future__ import annotations

import os

# One BLAS thread: results depend on the BLAS thread count (a matrix product splits its sums
# differently over threads, and training amplifies the last-bit differences: with one thread the
# committed numbers reproduce, with two they differ). The variables must be set before numpy is
# imported; threadpoolctl (in main) also pins a BLAS that is already loaded.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

try:
    import ds2ta_ref
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import ds2ta_ref
from ds2ta_ref import checkpoint, config, energy, lif, nsad, plotting, train

HERE = Path(__file__).resolve().parent
DPI = 150
SEED = 0
RC = {"svg.hashsalt": "ds2ta_ref", "figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 10}
TRAINED = "trained.npz"
RESULTS = "results.json"
ENVIRONMENT = "environment.json"  # the versions the PNGs were drawn with

MAIN_RUN = dict(preset="tiny", model=(("depth", 2),), epochs=3, seed=0)  # the models of Figures 3 and 4 and Table 3
SMALL_RUN = dict(preset="tiny", epochs=3)  # Table 4 and the sweep (depth 1, all 1438 training digits)
ABLATION = {"Spikformer": (False, False), "TASA only": (True, False), "NSAD only": (False, True), "DS2TA": (True, True)}
ABLATION_SEEDS = (0, 1)
SWEEP = ((1.0, False), (1.0, True), (2.0, False), (2.0, True), (3.0, False), (3.0, True))  # (u0, frozen u)


# ----------------------------------------------------------------------------- training runs
def scores_and_maps(params, state, cfg, x):
    """Eval-mode forward: per block the score maps ``S = QKᵀ`` and the maps ``A``, ``(T, B, H, N, N)``."""
    _, _, cache = ds2ta_ref.model_forward(x, params, state, cfg, training=False, need_backward=False)
    return cache.record.scores, cache.record.attention_maps


def denoising_row(label, result, ds, u0, frozen):
    """Accuracy and sparsity of S and A on the test set for one trained run."""
    ev = train.evaluate(result.params, result.state, result.cfg, ds.test_x, ds.test_y)
    S, A = scores_and_maps(result.params, result.state, result.cfg, ds.test_x)
    u = np.concatenate([result.params[k][:, 5] for k in result.params if k.endswith(".nsad")])
    return dict(
        label=label,
        u0=u0,
        frozen=frozen,
        accuracy=ev.accuracy,
        sparsity_scores=float(np.mean([nsad.sparsity(s) for s in S])),
        sparsity_maps=float(np.mean([nsad.sparsity(a) for a in A])),
        u_final=[float(v) for v in u],
    )


def retrain(out: Path) -> None:
    """Train every model the figures need and write ``trained.npz`` and ``results.json``."""
    log = lambda line: print("   ", line)  # noqa: E731
    arrays, results = {}, {"histories": {}, "ablation": {}, "sweep": []}
    for name, on in (("Spikformer", False), ("DS2TA", True)):
        print(f"{name}: {MAIN_RUN}")
        r = train.train(train.TrainConfig(tasa=on, nsad=on, **MAIN_RUN), None, progress=False, log=log)
        arrays.update({f"{name}.param.{k}": v for k, v in r.params.items()})
        arrays.update({f"{name}.state.{k}": v for k, v in r.state.items()})
        results["histories"][name] = r.history
    ds = train.build_data(train.TrainConfig(**SMALL_RUN))
    ds2ta_seed0 = None
    for name, (use_tasa, use_nsad) in ABLATION.items():
        for seed in ABLATION_SEEDS:
            print(f"ablation {name}, seed {seed}")
            r = train.train(
                train.TrainConfig(tasa=use_tasa, nsad=use_nsad, seed=seed, **SMALL_RUN), None, progress=False, log=log
            )
            results["ablation"].setdefault(name, []).append(r.history[-1]["test_acc"])
            if name == "DS2TA" and seed == 0:
                ds2ta_seed0 = r
    tiny_u0 = config.PRESETS["tiny"].u0
    for u0, frozen in SWEEP:
        label = f"u0 = {u0:g}, {'frozen' if frozen else 'learned'} u"
        print(f"sweep {label}")
        if u0 == tiny_u0 and not frozen:  # the same run as the ablation's DS2TA, seed 0
            r = ds2ta_seed0
        else:
            tc = train.TrainConfig(**SMALL_RUN, model=dict(u0=u0, frozen_u=frozen))
            r = train.train(tc, None, progress=False, log=log)
        results["sweep"].append(denoising_row(label, r, ds, u0, frozen))
    meta = dict(main_run=MAIN_RUN, small_run=SMALL_RUN)
    path = out / TRAINED
    old = checkpoint.load(path)[0] if path.exists() else None  # the arrays (the meta names the settings)
    checkpoint.save(path, arrays, meta)
    if old is not None:
        new = checkpoint.load(path)[0]
        same = set(old) == set(new) and all(
            old[k].dtype == new[k].dtype and np.array_equal(old[k], new[k]) for k in new
        )
        print(f"{path}: every array identical to the previous file: {same}")
    text = json.dumps(results, indent=1, sort_keys=True) + "\n"
    tmp = out / (RESULTS + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out / RESULTS)


def load_trained(out: Path):
    """``{name: (params, state, cfg)}`` of the committed models, and the results of the runs."""
    path, rpath = out / TRAINED, out / RESULTS
    if not path.exists() or not rpath.exists():
        raise SystemExit(f"{path} or {rpath} is missing: run `python figures/make_figures.py --retrain`")
    arrays, meta = checkpoint.load(path)
    models = {}
    ds = train.build_data(train.TrainConfig(**meta["main_run"]))
    for name, on in (("Spikformer", False), ("DS2TA", True)):
        tc = train.TrainConfig(tasa=on, nsad=on, **meta["main_run"])
        cfg = train.model_config(tc, ds)
        params = {k.split(".param.", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}.param.")}
        state = {k.split(".state.", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}.state.")}
        models[name] = (params, state, cfg)
    return models, ds, json.loads(rpath.read_text())


# ----------------------------------------------------------------------------- figures
# Notebook 01's input current (its parameters cell and section 1): the same figure as the notebook's.
LIF_CURRENT = dict(T=40, seed=0, t_on=3, I_on=0.55, noise=0.25)


def lif_membrane(ctx):
    c = LIF_CURRENT
    rng = np.random.default_rng(c["seed"])
    x = np.where(np.arange(c["T"]) >= c["t_on"], c["I_on"], 0.0) + c["noise"] * rng.standard_normal(c["T"])
    spikes, h, v = lif.membrane(x, tau_m=2.0, v_threshold=1.0)
    return plotting.plot_membrane(
        x, spikes, h, v, 1.0, title=r"LIF neuron, $\tau_m$ = 2, hard reset to 0 (Eq. 2-3, decay_input=False)"
    )


def surrogates(ctx):
    return plotting.plot_surrogates()


def fig1_architecture(ctx):
    _, _, cfg = ctx["models"]["DS2TA"]
    fig = plotting.plot_architecture(cfg, batch=8)
    fig.suptitle(f"Figure 1: DS2TA, tiny preset with {cfg.depth} blocks, a batch of B = 8 digits")
    return fig


def tasa_spikes_example(seed=SEED, T=10, D_in=6, D_out=3, p=0.35):
    """The seeded input spikes, W(0) and bias of Figure 2's spike panels (and notebook 02's defaults)."""
    rng = np.random.default_rng(seed)
    s = (rng.random((T, D_in)) < p).astype(float)
    W0 = rng.standard_normal((D_out, D_in)) * 0.8
    b = np.full(D_out, 0.1)
    return s, W0, b


def fig2_tasa(ctx):
    fig = Figure(figsize=(18.0, 11.0), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[11, 6.5])
    taus = (0, 1, 2, 4)
    axes = left.subplots(len(taus), 3, gridspec_kw=dict(width_ratios=[0.8, 1.6, 1.0]))
    plotting.plot_tasa(taus, window=3, T=6, seed=SEED, ax=axes)
    left.suptitle("the attenuated weights (Eq. 1, 4, 5), $T_{AW}$ = 3")
    s, W0, b = tasa_spikes_example()
    n = 3
    axes = right.subplots(2 + n, 1, sharex=True, height_ratios=[2.0] + [1.6] * n + [1.6])
    plotting.plot_tasa_spikes(s, W0, b, tau=1, window=3, neurons=n, ax=axes)
    right.suptitle("on spikes: $I[t]$ and Q spikes, window 1 vs $T_{AW}$ (no BatchNorm)")
    fig.suptitle("Figure 2: TASA, temporally attenuated spatiotemporal attention", fontsize="x-large")
    return fig


def _test_digit(ctx):
    """The first test digit (16x16) and its label."""
    ds = ctx["data"]
    return ds.test_x[:1], int(ds.test_y[0])


def fig3_attention(ctx):
    params, state, cfg = ctx["models"]["DS2TA"]
    x, label = _test_digit(ctx)
    _, A = scores_and_maps(params, state, cfg, x)
    t = 0
    fig = plotting.plot_attention_grid(x[0, 0], [a[t, 0] for a in A])
    fig.suptitle(
        f"Figure 3: attention maps $A$ of the trained DS2TA tiny model (2 blocks, 4 heads), "
        f"time step t = {t}, a test digit '{label}'"
    )
    return fig


def fig4_nsad(ctx):
    params, state, cfg = ctx["models"]["DS2TA"]
    x, label = _test_digit(ctx)
    S, _ = scores_and_maps(params, state, cfg, x)
    t = 0
    init = nsad.init_params(1, 3.0)[0]
    example = np.array(plotting.NSAD_EXAMPLES[1][1])
    rows = [
        (0, 0, init, "initialisation u = 3, on block 0 head 0"),
        (0, 1, example, "hand-set (b, d != 0), on block 0 head 1"),
        (0, 2, None, "learned: block 0, head 2"),
        (1, 3, None, "learned: block 1, head 3"),
    ]
    maps, table, labels = [], [], []
    for blk, head, p, name in rows:
        maps.append(S[blk][t, 0, head])
        table.append(params[f"block.{blk}.attn.nsad"][head] if p is None else p)
        labels.append(name)
    fig = plotting.plot_nsad_pipeline(np.stack(maps), np.stack(table), cfg.head_dim, labels=labels)
    fig.suptitle(
        f"Figure 4: NSAD per head, $f_h$ -> hashmap $AD_h$ -> score map $QK^\\top$ -> denoised map "
        f"(trained DS2TA tiny, test digit '{label}', t = {t}, head_dim d = {cfg.head_dim})"
    )
    return fig


def table3_energy(ctx):
    """Per-block sparsity and energy as ``train.evaluate`` computes them, from one forward per model."""
    ds = ctx["data"]
    rows = {}
    for name in ("Spikformer", "DS2TA"):
        params, state, cfg = ctx["models"][name]
        S, A = scores_and_maps(params, state, cfg, ds.test_x)
        rows[name] = energy.block_energy(cfg, *energy.count_zeros(A))
    fig = plotting.plot_block_energy(rows, scores_sparsity=[nsad.sparsity(s) for s in S])  # DS2TA's S
    fig.suptitle(f"Table 3 as a chart: trained tiny models ({cfg.depth} blocks), test set of {len(ds.test_y)} digits")
    return fig


def table4_ablation(ctx):
    fig = plotting.plot_ablation(ctx["results"]["ablation"])
    fig.suptitle(f"Table 4 as a chart: tiny model (1 block), digits, {SMALL_RUN['epochs']} epochs", fontsize="medium")
    return fig


def nsad_sweep(ctx):
    fig = plotting.plot_denoising_sweep(ctx["results"]["sweep"])
    fig.suptitle(
        f"What keeps NSAD denoising: tiny model (1 block, head_dim 16), digits, "
        f"{SMALL_RUN['epochs']} epochs, measured on the test set"
    )
    return fig


def learning_curves(ctx):
    fig = plotting.plot_learning_curves(ctx["results"]["histories"])
    fig.suptitle("training the tiny 2-block models (digits, 3 epochs, seed 0)")
    return fig


FIGURES = {
    "lif_membrane.png": lif_membrane,
    "surrogates.png": surrogates,
    "fig1_architecture.png": fig1_architecture,
    "fig2_tasa.png": fig2_tasa,
    "fig3_attention.png": fig3_attention,
    "fig4_nsad.png": fig4_nsad,
    "table3_energy.png": table3_energy,
    "table4_ablation.png": table4_ablation,
    "nsad_sweep.png": nsad_sweep,
    "learning_curves.png": learning_curves,
}


def environment() -> dict:
    """The versions that decide the PNG bytes: the renderer (matplotlib, its FreeType) and numpy."""
    from matplotlib import ft2font

    return {"matplotlib": matplotlib.__version__, "freetype": ft2font.__freetype_version__, "numpy": np.__version__}


def save_png(fig: Figure, path: Path) -> None:
    """Write ``fig`` atomically, without the metadata that would change between runs."""
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    os.replace(tmp, path)


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="output directory (default: the figures/ directory of this script)"
    )
    parser.add_argument(
        "--retrain", action="store_true", help=f"retrain the models and rewrite {TRAINED} and {RESULTS} in --out first"
    )
    parser.add_argument("--only", nargs="*", default=None, help="write only these PNGs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(limits=1, user_api="blas"):  # one BLAS thread, as the environment variables above
        return _run(args)


def _run(args) -> list[Path]:
    if args.retrain:
        retrain(args.out)
    source = args.out if (args.out / TRAINED).exists() else HERE
    models, ds, results = load_trained(source)
    ctx = dict(models=models, data=ds, results=results)
    written = []
    with matplotlib.rc_context(RC):
        for name, make in FIGURES.items():
            if args.only is not None and name not in args.only:
                continue
            path = args.out / name
            save_png(make(ctx), path)
            print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
            written.append(path)
    if args.only is None:
        tmp = args.out / (ENVIRONMENT + ".tmp")
        tmp.write_text(json.dumps(environment(), indent=1, sort_keys=True) + "\n")
        os.replace(tmp, args.out / ENVIRONMENT)
    return written


if __name__ == "__main__":
    main()
