"""One training step (forward + backward) of the ``cifar10`` preset: ds2ta_ref.torch against the NumPy model.

Same run, same CPU, same float32 parameters and batch, the same number of
threads for NumPy's BLAS and for PyTorch (``--threads``, default 1: on a
machine shared with other jobs, more threads than free cores makes PyTorch's
OpenMP barriers wait on descheduled threads, and the times scatter by 10x);
each timed ``--repeats`` times after one warm-up step, the best time kept.
Prints one line::

    python benchmarks/bench_torch.py [--batch 4] [--repeats 3] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="threads of NumPy's BLAS and of PyTorch")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-numpy", action="store_true")
    return ap.parse_args()


if __name__ == "__main__":
    ARGS = parse_args()
    if "numpy" in sys.modules:
        raise RuntimeError("the thread count must be set before NumPy is imported")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread count is set)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import ds2ta_ref  # noqa: E402
import ds2ta_ref.torch as dt  # noqa: E402
from ds2ta_ref import layers, model  # noqa: E402


def best_of(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(args):
    torch.set_num_threads(args.threads)
    cfg = ds2ta_ref.preset("cifar10")
    rng = np.random.default_rng(0)
    params = model.init_params(cfg, rng, dtype=np.float32)
    state = model.init_state(cfg, dtype=np.float32)
    x = rng.uniform(-2, 2, (args.batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)

    net = dt.from_numpy(params, state, cfg).to(args.device).train()
    xt, yt = torch.from_numpy(x).to(args.device), torch.from_numpy(y).to(args.device)

    def torch_step():
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(xt), yt).backward()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def numpy_step():
        logits, _, cache = model.forward(x, params, state, cfg, training=True)
        _, dlogits = layers.cross_entropy(logits, y)
        model.backward(dlogits, cache)

    t_torch = best_of(torch_step, args.repeats)
    line = (
        f"cifar10 preset (T=4, D=384, depth 4, 64 tokens), batch {args.batch}, float32, forward+backward: "
        f"ds2ta_ref.torch {t_torch:.3f} s on {args.device}, {args.threads} thread(s)"
    )
    if not args.skip_numpy:
        t_numpy = best_of(numpy_step, args.repeats)
        line += f", NumPy {t_numpy:.3f} s: {t_numpy / t_torch:.1f}x"
    print(line)


if __name__ == "__main__":
    main(ARGS)
