"""Time one training step (forward + backward) of a preset, NumPy against PyTorch.

    python benchmarks/bench_model.py --preset cifar10 --batch 2
    python benchmarks/bench_model.py --preset tiny --batch 32 --dtype float32

Both run in this process on the CPU with the same parameters: the NumPy reference
(``ds2ta_ref.model_forward`` / ``model_backward``) and the PyTorch float twin of
``tests/torch_twin_model.py`` differentiated by autograd (skipped if torch is not
installed). The result is reported as a ratio (NumPy time / PyTorch time), the median of
``--repeat`` runs after one warm-up, because absolute times on a shared machine are noise.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import ds2ta_ref
from ds2ta_ref import layers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def median_time(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cifar10")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    cfg = ds2ta_ref.preset(args.preset)
    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    params = ds2ta_ref.init_params(cfg, rng, dtype=dtype)
    state = ds2ta_ref.init_state(cfg, dtype=dtype)
    x = rng.uniform(0, 1, (args.batch, cfg.in_channels, cfg.img_size, cfg.img_size)).astype(dtype)
    y = rng.integers(0, cfg.num_classes, args.batch)

    def numpy_step():
        logits, _, cache = ds2ta_ref.model_forward(params, state, x, cfg, training=True)
        _, dlogits = layers.cross_entropy(logits, y)
        ds2ta_ref.model_backward(dlogits, cache)

    t_np = median_time(numpy_step, args.repeat)
    print(f"{args.preset}, batch {args.batch}, {args.dtype}: NumPy forward+backward {t_np:.3f} s "
          f"(median of {args.repeat})")
    try:
        import torch
        from torch_twin_model import model as twin
    except ImportError:
        print("torch not installed: no PyTorch reference")
        return 0
    torch.set_num_threads(os.cpu_count() or 1)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64

    def torch_step():
        P = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in params.items()}
        St = {k: torch.tensor(v, dtype=tdtype) for k, v in state.items() if not k.endswith("num_batches_tracked")}
        logits = twin(P, St, torch.tensor(x, dtype=tdtype), cfg, training=True)
        torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()

    t_torch = median_time(torch_step, args.repeat)
    print(f"PyTorch (autograd twin, CPU, {torch.get_num_threads()} threads) {t_torch:.3f} s; "
          f"ratio NumPy / PyTorch = {t_np / t_torch:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
