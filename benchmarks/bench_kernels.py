"""Time each kernel (forward + backward) of this checkout against another checkout.

    python benchmarks/bench_kernels.py --baseline /path/to/other/checkout
    python benchmarks/bench_kernels.py --baseline ../old --kernels lif,maxpool --repeat 7

Each measurement runs in a fresh child process that imports ``ds2ta_ref`` from
one checkout (``--baseline`` or this one), with 2 BLAS threads and OpenBLAS's kernel as the
environment sets it (``--native``: unset, the kernel OpenBLAS picks for the CPU; the header
names it, as threadpoolctl reports it), builds seeded
inputs at the ``cifar10`` preset's sizes (batch 8, T = 4, float32 by default; ``conv_tiny``:
the ``tiny`` preset's, batch 64, T = 2),
calls the kernel once to warm up and reports the median of ``--inner`` timed
calls. The two sides alternate (baseline, this, baseline, this, ...) and the
result is the median over ``--repeat`` pairs of the ratio baseline / this, with
its spread (min .. max): on a shared machine a ratio of neighbouring runs is
what can be trusted, not an absolute time. Only the public kernel entry points
are called, so any two checkouts with the same kernel signatures can be compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THIS_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_model import blas_kernel, child_env  # noqa: E402

# convolutions, forward and backward, at (M, C_in, H = W, C_out) shapes: spikes in, 3x3 weights
_CONVS = """
cases = []
for m, c_in, h, c_out in {shapes}:
    x = (rng.random((m, c_in, h, h)) < 0.2).astype(dtype)
    w = (rng.standard_normal((c_out, c_in, 3, 3)) * 0.05).astype(dtype)
    cases.append((x, w, rng.standard_normal((m, c_out, h, h)).astype(dtype)))
def step():
    for x, w, d in cases:
        out, cache = layers.conv_forward(x, w)
        layers.conv_backward(d, cache)
"""

# name: (description, setup source building `step`, a zero-argument callable)
KERNELS = {
    "lif": (
        "LIF fwd+bwd (4, 8, 64, 1536)",
        """
x = rng.standard_normal((4, 8, 64, 1536)).astype(dtype) + 0.5
d = rng.standard_normal(x.shape).astype(dtype)
def step():
    s, cache = lif.forward(x)
    lif.backward(d, cache)
""",
    ),
    "bn_tokens": (
        "BatchNorm1d fwd+bwd (4, 8, 64, 1536), axis -1",
        """
x = rng.standard_normal((4, 8, 64, 1536)).astype(dtype)
g, b = np.ones(1536, dtype), np.zeros(1536, dtype)
d = rng.standard_normal(x.shape).astype(dtype)
def step():
    out, m, v, cache = layers.batchnorm_forward(x, g, b, b, g, axis=-1, training=True)
    layers.batchnorm_backward(d, cache)
""",
    ),
    "bn_2d": (
        "BatchNorm2d fwd+bwd (32, 96, 32, 32), axis 1",
        """
x = rng.standard_normal((32, 96, 32, 32)).astype(dtype)
g, b = np.ones(96, dtype), np.zeros(96, dtype)
d = rng.standard_normal(x.shape).astype(dtype)
def step():
    out, m, v, cache = layers.batchnorm_forward(x, g, b, b, g, axis=1, training=True)
    layers.batchnorm_backward(d, cache)
""",
    ),
    "maxpool": (
        "max-pool 3/2/1 fwd+bwd, spikes (32, 192, 32, 32)",
        """
x = (rng.random((32, 192, 32, 32)) < 0.2).astype(dtype)
d = rng.standard_normal((32, 192, 16, 16)).astype(dtype)
def step():
    out, cache = layers.maxpool_forward(x)
    layers.maxpool_backward(d, cache)
""",
    ),
    "tasa": (
        "TASA window 3 fwd+bwd, spikes (4, 8, 64, 384) -> 384",
        """
s = (rng.random((4, 8, 64, 384)) < 0.2).astype(dtype)
w = (rng.standard_normal((384, 384)) * 0.05).astype(dtype)
bias = np.zeros(384, dtype)
d = rng.standard_normal(s.shape).astype(dtype)
def step():
    out, cache = tasa.forward(s, w, bias, tau=2.0, window=3)
    tasa.backward(d, cache)
""",
    ),
    "linear": (
        "linear fwd+bwd (4, 8, 64, 384) -> 1536",
        """
x = (rng.random((4, 8, 64, 384)) < 0.2).astype(dtype)
w = (rng.standard_normal((1536, 384)) * 0.05).astype(dtype)
bias = np.zeros(1536, dtype)
d = rng.standard_normal((4, 8, 64, 1536)).astype(dtype)
def step():
    out, cache = layers.linear_forward(x, w, bias)
    layers.linear_backward(d, cache)
""",
    ),
    "attention": (
        "attention block fwd+bwd (TASA, NSAD, BN+LIF), cifar10 preset, x (4, 8, 64, 384)",
        """
from ds2ta_ref import attention, model, params as P, preset
cfg = preset("cifar10")
params = P.sub(model.init_params(cfg, rng, dtype=dtype), "block.0.attn")
state = P.sub(model.init_state(cfg, dtype=dtype), "block.0.attn")
x = rng.integers(0, 3, (cfg.T, 8, cfg.num_tokens, cfg.dim)).astype(dtype)
d = rng.standard_normal(x.shape).astype(dtype)
def step():
    out, _, cache = attention.forward(x, params, state, cfg, training=True)
    attention.backward(d, cache)
""",
    ),
    "conv": ("conv 3x3 fwd+bwd (32, 96, 32, 32) -> 192", _CONVS.format(shapes=[(32, 96, 32, 192)])),
    "conv_8x8": (
        "conv 3x3 fwd+bwd (32, 384, 8, 8) -> 384 (cifar10's last)",
        _CONVS.format(shapes=[(32, 384, 8, 384)]),
    ),
    "conv_tiny": (
        "the tiny preset's 5 convs fwd+bwd, batch 64, T = 2",
        _CONVS.format(
            shapes=[(128, 1, 16, 8), (128, 8, 16, 16), (128, 16, 16, 32), (128, 32, 8, 64), (128, 64, 4, 64)]
        ),
    ),
}


def child(root: str, kernel: str, dtype_name: str, inner: int) -> None:
    """Import ds2ta_ref from ``root``, time ``kernel``, print the median seconds per call."""
    sys.path.insert(0, root)
    import numpy as np

    from ds2ta_ref import layers, lif, tasa

    assert os.path.dirname(os.path.dirname(os.path.abspath(lif.__file__))) == os.path.abspath(root)
    scope = dict(np=np, layers=layers, lif=lif, tasa=tasa, dtype=np.dtype(dtype_name), rng=np.random.default_rng(0))
    exec(KERNELS[kernel][1], scope)
    step = scope["step"]
    step()  # warm-up
    times = []
    for _ in range(inner):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(statistics.median(times))


def run_child(root: str, kernel: str, dtype: str, inner: int, threads: int, blas: str = "env") -> float:
    # the threads, OpenBLAS kernel setting and idle-thread timeout of bench_model's children
    env = dict(child_env(threads, blas), PYTHONPATH=root)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        kernel,
        "--root",
        root,
        "--dtype",
        dtype,
        "--inner",
        str(inner),
    ]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="the other checkout (a directory holding ds2ta_ref/)")
    parser.add_argument("--kernels", default=",".join(KERNELS), help=f"comma-separated, from {list(KERNELS)}")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeat", type=int, default=5, help="alternated process pairs per kernel (>= 1)")
    parser.add_argument("--inner", type=int, default=3, help="timed calls per process")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--native",
        action="store_true",
        help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the children: the kernel OpenBLAS picks for this CPU",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.root, args.child, args.dtype, args.inner)
        return 0
    if not args.baseline:
        parser.error("--baseline is required")
    kernels = args.kernels.split(",")
    unknown = sorted(set(kernels) - set(KERNELS))
    if unknown:
        parser.error(f"unknown kernels {unknown}; valid: {list(KERNELS)}")
    if args.repeat < 1 or args.inner < 1:
        parser.error(f"--repeat and --inner must be >= 1, got {args.repeat} and {args.inner}")
    baseline = os.path.abspath(args.baseline)
    if not os.path.isdir(os.path.join(baseline, "ds2ta_ref")):
        parser.error(f"--baseline {args.baseline!r} holds no ds2ta_ref/ package directory")
    blas = "native" if args.native else "env"
    print(
        f"`{' '.join([os.path.basename(sys.argv[0])] + (argv if argv is not None else sys.argv[1:]))}`: "
        f"baseline {baseline} vs this checkout {THIS_ROOT}, {args.dtype}, {args.threads} threads, "
        f"{args.repeat} alternated process pairs, median of {args.inner} calls in each; "
        f"BLAS: {blas_kernel(args.threads, blas)}\n"
    )
    print("| kernel | baseline / this (median) | spread (min .. max) |")
    print("|---|---|---|")
    for kernel in kernels:
        ratios = []
        for _ in range(args.repeat):
            t_base = run_child(baseline, kernel, args.dtype, args.inner, args.threads, blas)
            t_this = run_child(THIS_ROOT, kernel, args.dtype, args.inner, args.threads, blas)
            ratios.append(t_base / t_this)
        print(
            f"| {KERNELS[kernel][0]} | {statistics.median(ratios):.2f}x | {min(ratios):.2f} .. {max(ratios):.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
