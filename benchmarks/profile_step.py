"""Where one NumPy training step spends its time, kernel by kernel, and the convolutions against PyTorch's.

    python benchmarks/profile_step.py                          # tiny preset, batch 64, float32, 2 threads
    python benchmarks/profile_step.py --preset cifar10 --batch 8
    python benchmarks/profile_step.py --smoke                  # seconds: batch 2, 1 step (CI)

Run it with the kernel to be profiled: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python
benchmarks/profile_step.py`` profiles the kernel OpenBLAS picks for this CPU (the header says which).

Two tables:

* **Kernels of the step.** Every kernel the model calls (convolution, BatchNorm, LIF, max-pool,
  linear, TASA, NSAD, ...; forward and backward apart) is wrapped by a timer that keeps its
  *exclusive* time (a kernel that calls another, e.g. the BN+LIF unit, is charged only for its
  own work), over ``--steps`` training steps after a warm-up step; times are per step. The
  matrix products of a convolution or linear map are counted to that kernel, with its FLOPs
  and rate, against the rate of a large matmul measured here (the floor).
* **Convolutions at the model's shapes, NumPy against PyTorch** (with torch installed): each
  convolution of the step, forward and backward, as :func:`ds2ta_ref.layers.conv_forward` and
  ``conv_backward`` and as ``torch.nn.functional.conv2d`` with autograd, each side in its own
  fresh process with the same threads (in one process the two libraries' thread pools spin on
  the cores the other needs), ``--rounds`` alternated pairs of processes; medians.

Both sides call :func:`ds2ta_ref.memory.reuse_freed_memory` first and run with
``OPENBLAS_THREAD_TIMEOUT=12``, as ``ds2ta-ref train`` does.
Nothing here is asserted; the numbers go in the benchmark page with this command beside them.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_model import BLAS_THREAD_TIMEOUT, matmul_gflops, step_inputs  # noqa: E402
from main_job import cpu_model  # noqa: E402


def _threads(n: int) -> None:
    """Before NumPy loads: ``n`` threads, and OpenBLAS's idle threads sleeping as in the command."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n)
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)


class KernelTimer:
    """Wraps module functions with a timer that keeps each kernel's exclusive time."""

    def __init__(self):
        self.total = collections.defaultdict(float)  # label -> seconds, exclusive
        self.calls = collections.Counter()
        self.flops = collections.defaultdict(float)
        self._stack: list[float] = []  # time spent in children of each open call
        self.labels: list[str] = []  # every wrapped kernel, called or not

    def uncalled(self) -> list[str]:
        """Wrapped kernels that no call reached: the code calls them by another name now, so
        their time went to their callers' "rest" rows."""
        return [label for label in self.labels if not self.calls[label]]

    def wrap(self, module, name: str, label: str, flops=None) -> None:
        inner = getattr(module, name)
        self.labels.append(label)

        def timed(*args, **kwargs):
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - t0
                children = self._stack.pop()
                self.total[label] += elapsed - children
                self.calls[label] += 1
                if flops is not None:
                    self.flops[label] += flops(*args)
                if self._stack:
                    self._stack[-1] += elapsed

        setattr(module, name, timed)

    def reset(self) -> None:
        self.total.clear()
        self.calls.clear()
        self.flops.clear()


def conv_flops(x, weight):  # forward: 2 C_out C_in k^2 per output pixel
    m, _, h, w = x.shape
    return 2.0 * weight.size * m * h * w


def conv_back_flops(dout, cache):  # dweight and dx: two products of the forward's size
    return 2 * conv_flops(dout, cache.weight) * 1.0


def linear_flops(x, weight, *rest):  # also TASA's product x_mix @ W^T
    return 2.0 * (x.size // x.shape[-1]) * weight.size


def linear_back_flops(dout, cache, *rest):  # also TASA's product backward (dweight, dx_mix)
    return 2 * 2.0 * (dout.size // dout.shape[-1]) * cache.weight.size


def instrument(timer: KernelTimer) -> None:
    """Wrap the kernels where the blocks look them up (module attributes)."""
    from ds2ta_ref import attention, bnlif, layers, lif, mlp, model, nsad, sps, tasa

    timer.wrap(layers, "conv_forward_unchecked", "conv forward (im2col + matmul)", conv_flops)
    timer.wrap(layers, "conv_backward_unchecked", "conv backward (dW, dx)", conv_back_flops)
    timer.wrap(layers, "batchnorm_forward_unchecked", "BatchNorm forward")
    timer.wrap(layers, "batchnorm_backward_unchecked", "BatchNorm backward")
    timer.wrap(layers, "maxpool_forward_unchecked", "max-pool forward")
    timer.wrap(layers, "maxpool_backward_unchecked", "max-pool backward")
    timer.wrap(layers, "linear_forward_unchecked", "linear forward", linear_flops)
    timer.wrap(layers, "linear_backward_unchecked", "linear backward (dW, dx)", linear_back_flops)
    timer.wrap(lif, "forward_unchecked", "LIF forward")
    timer.wrap(lif, "backward_unchecked", "LIF backward")
    timer.wrap(bnlif, "forward_unchecked", "BN+LIF unit (rest: finiteness check)")
    timer.wrap(bnlif, "backward_unchecked", "BN+LIF unit backward (rest)")
    # the attention block mixes q, k and v's input once (mix_unchecked) and runs their product
    # backwards apart and the shared mix backward once; the proj site runs both in one call
    timer.wrap(tasa, "mix_unchecked", "TASA mix forward (shared by q, k, v)")
    timer.wrap(tasa, "forward_unchecked", "TASA forward (q/k/v/proj matmul; proj's mix)", linear_flops)
    timer.wrap(tasa, "product_backward_unchecked", "TASA backward, product (dW, dx_mix)", linear_back_flops)
    timer.wrap(tasa, "mix_backward_unchecked", "TASA backward, mix (ds, dtau)")
    timer.wrap(nsad, "forward_unchecked", "NSAD forward")
    timer.wrap(nsad, "backward_unchecked", "NSAD backward")
    timer.wrap(attention, "forward_unchecked", "attention forward (rest: q k^T, A v)")
    timer.wrap(attention, "backward", "attention backward (rest)")
    timer.wrap(mlp, "forward_unchecked", "MLP forward (rest)")
    timer.wrap(mlp, "backward", "MLP backward (rest)")
    timer.wrap(sps, "forward_unchecked", "SPS forward (rest)")
    timer.wrap(sps, "backward", "SPS backward (rest)")
    timer.wrap(model, "forward", "model forward (rest: head, mean)")
    timer.wrap(model, "backward", "model backward (rest)")


def build(args):
    import numpy as np

    import ds2ta_ref

    cfg = ds2ta_ref.preset(args.preset)
    return (cfg, *step_inputs(cfg, np.dtype(args.dtype), args.batch))


def kernel_table(args, gflops_floor: float) -> tuple[list[str], list[tuple]]:
    """Per-kernel exclusive times of the NumPy step; also returns the convolutions' shapes."""
    from ds2ta_ref import layers, model

    timer = KernelTimer()
    instrument(timer)
    cfg, params, state, x, y = build(args)
    convs: list[tuple] = []
    record = layers.conv_forward_unchecked

    def step():
        logits, _, cache = model.forward(x, params, state, cfg, training=True)
        _, dlogits = layers.cross_entropy(logits, y)
        model.backward(dlogits, cache)

    # the shapes of the step's convolutions, from one forward
    def spy(xx, w):
        convs.append((tuple(xx.shape), tuple(w.shape)))
        return record(xx, w)

    layers.conv_forward_unchecked = spy
    model.forward(x, params, state, cfg, training=True)
    layers.conv_forward_unchecked = record
    step()  # warm-up
    timer.reset()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    wall = (time.perf_counter() - t0) / args.steps
    uncalled = timer.uncalled()
    if uncalled:
        raise SystemExit(
            f"profile_step: the step never called these wrapped kernels: {uncalled}; "
            "update instrument() to the functions the blocks call now"
        )
    rows = sorted(timer.total.items(), key=lambda kv: -kv[1])
    lines = [
        f"One step: {1e3 * wall:.1f} ms (mean of {args.steps} steps after a warm-up); "
        f"large matmul {gflops_floor:.0f} GFLOP/s.",
        "",
        "| kernel | calls per step | ms per step | share | GFLOP per step | GFLOP/s | floor / this |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, seconds in rows:
        per = seconds / args.steps
        fl = timer.flops.get(label, 0.0) / args.steps / 1e9
        rate = f"{fl / per:.0f}" if fl else ""
        gap = f"{gflops_floor / (fl / per):.1f}x" if fl else ""
        cells = [label, str(timer.calls[label] // args.steps), f"{1e3 * per:.2f}", f"{100 * per / wall:.0f}%"]
        cells += [f"{fl:.3g}", rate, gap] if fl else ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, convs


def conv_child(args) -> None:
    """Time each convolution of ``--shapes`` (forward + backward) on one side; print JSON medians (s)."""
    import json

    import numpy as np

    convs = json.loads(args.shapes)
    rng = np.random.default_rng(1)
    if args.conv_child == "torch":
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(args.threads)
    else:
        from ds2ta_ref import layers
    medians = []
    for xs, ws in convs:
        x = (rng.random(xs) < 0.2).astype(args.dtype)  # spikes, as the model's convolutions see (but the first)
        w = rng.standard_normal(ws).astype(args.dtype) * 0.1
        dout = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(args.dtype)
        if args.conv_child == "torch":
            xt, wt, dt = (torch.tensor(a) for a in (x, w, dout))
            xt.requires_grad_(True)
            wt.requires_grad_(True)

            def side():
                F.conv2d(xt, wt, padding=ws[2] // 2).backward(dt)
                xt.grad = wt.grad = None
        else:

            def side():
                _, cache = layers.conv_forward_unchecked(x, w)
                layers.conv_backward_unchecked(dout, cache)

        side()  # warm-up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            side()
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    print(json.dumps(medians))


def conv_table(args, convs: list[tuple]) -> list[str]:
    """Each convolution of the step, forward + backward, NumPy against torch.nn.functional.conv2d, each
    side in its own fresh process (in one process the two libraries' thread pools take turns spinning
    on the cores the other needs), alternated ``--rounds`` times; medians over the rounds."""
    import json
    import subprocess

    shapes = json.dumps(convs)
    sides: dict[str, list[list[float]]] = {"numpy": [], "torch": []}
    for _ in range(args.rounds):
        for side in sides:
            cmd = [sys.executable, os.path.abspath(__file__), "--conv-child", side, "--shapes", shapes]
            cmd += ["--threads", str(args.threads), "--repeat", str(args.repeat), "--dtype", args.dtype]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if proc.returncode != 0:
                raise SystemExit(f"profile_step: the {side} child failed: {proc.stderr.strip()[-400:]}")
            sides[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    lines = [
        f"Each side in its own process, {args.rounds} alternated rounds of {args.repeat} runs per convolution; "
        "medians over the rounds.",
        "",
        "| convolution (M, C_in, H, W) -> C_out | NumPy ms (fwd + bwd) | PyTorch ms (fwd + bwd) | NumPy / PyTorch |",
        "|---|---|---|---|",
    ]
    med = {side: [statistics.median(r[i] for r in runs) for i in range(len(convs))] for side, runs in sides.items()}
    for (xs, ws), a, b in zip(convs, med["numpy"], med["torch"]):
        lines.append(f"| {tuple(xs)} -> {ws[0]} | {1e3 * a:.2f} | {1e3 * b:.2f} | {a / b:.2f} |")
    a, b = sum(med["numpy"]), sum(med["torch"])
    lines.append(f"| all {len(convs)} | {1e3 * a:.1f} | {1e3 * b:.1f} | {a / b:.2f} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per convolution in each process (default 7)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated process pairs (default 3)")
    parser.add_argument("--smoke", action="store_true", help="seconds: batch 2, 1 step, 1 repeat, 1 round")
    parser.add_argument("--conv-child", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--shapes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.conv_child:
        _threads(args.threads)
        if args.conv_child == "numpy":
            from ds2ta_ref import memory

            memory.reuse_freed_memory()
        conv_child(args)
        return 0
    if args.smoke:
        args.batch, args.steps, args.repeat, args.rounds = 2, 1, 1, 1
    if min(args.batch, args.steps, args.repeat, args.rounds, args.threads) < 1:
        parser.error("--batch, --steps, --repeat, --rounds and --threads must be >= 1")
    _threads(args.threads)  # before NumPy loads OpenBLAS

    import numpy as np

    from ds2ta_ref import memory

    memory.reuse_freed_memory()
    try:
        import threadpoolctl

        blas = "; ".join(
            f"{i['internal_api']} {i['version']} {i['architecture']}, {i['num_threads']} threads"
            for i in threadpoolctl.threadpool_info()
            if i.get("user_api") == "blas"
        )
    except ImportError:
        blas = "unknown (pip install threadpoolctl)"
    print(f"Command: `python benchmarks/profile_step.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip())
    print(f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs; NumPy {np.__version__}; BLAS loaded: {blas}")
    print(f"Step: `{args.preset}` preset, batch {args.batch}, {args.dtype}, {args.threads} threads")
    print()
    lines, convs = kernel_table(args, matmul_gflops(args.dtype))
    print("\n".join(lines))
    print()
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        print("Convolutions against PyTorch: skipped (torch is not installed).")
        return 0
    print("\n".join(conv_table(args, convs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
