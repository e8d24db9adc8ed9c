"""One training step (forward + loss + backward) of the NumPy model against the package's PyTorch model.

    python benchmarks/bench_model.py                 # the full table (~10-20 minutes on 2 cores)
    python benchmarks/bench_model.py --smoke         # seconds: tiny sizes, 1 repeat (CI)
    python benchmarks/bench_model.py --repeat 7 --out bench.md
    python benchmarks/bench_model.py --matmul        # seconds: is the machine as quiet as a recorded run?

Method, chosen so that a burst of load on a shared machine cannot decide a ratio:

* every measurement runs in its own fresh child process (as a user runs the
  model), with ``--threads`` BLAS/torch threads; the child builds seeded
  parameters and a batch, runs one warm-up step, then times one step;
* the two sides alternate (NumPy, PyTorch, NumPy, PyTorch, ...) ``--repeat``
  times; a ratio is the median over the pairs of NumPy time / PyTorch time,
  shown with its spread (min .. max), and times are medians with their spread;
* FLOPs are the matrix products of the step (convolutions, linear maps,
  attention products; forward x 3 for forward + backward), and the floor is
  FLOPs / the rate of a large NumPy matmul measured by this same run;
* peak memory is the child's peak resident set (``VmHWM`` of ``/proc/self/status``;
  not ``ru_maxrss``, which after ``fork`` + ``exec`` also counts the parent's resident
  set, so that a parent holding PyTorch made every small NumPy step look 180 MB) minus its
  resident set before the first step (so the size of the imported libraries
  does not count); cache is the bytes of the distinct arrays the NumPy cache
  keeps, against the distinct storages autograd saves for the backward;
* page faults and system time are those of the timed step in the child;
* ``--malloc reuse`` (the default) has both children call
  :func:`ds2ta_ref.memory.reuse_freed_memory` first, as ``ds2ta-ref train`` does, so
  that neither side page-faults its step's memory in anew each step (``--malloc
  default`` leaves glibc as it is; both sides gain from ``reuse``);
* the children run with ``OPENBLAS_THREAD_TIMEOUT=12`` unless it is set, as the
  ``ds2ta-ref`` command does (:func:`ds2ta_ref._startup.tune_blas_for_command`): OpenBLAS's
  idle threads then sleep at once instead of spinning on the cores that the NumPy side's
  elementwise work (:mod:`ds2ta_ref.parallel`) needs.

The PyTorch side is the package's own PyTorch model, :mod:`ds2ta_ref.torch`, holding
the NumPy side's parameters and state (:func:`torch_side`; checked equal to the NumPy
model in float64 by ``tests/test_benchmark.py``). It replaced a benchmark-only twin,
which was slower and kept more memory than the package model. Without torch the NumPy
side is measured and the comparison is reported as skipped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

# ----------------------------------------------------------------------- FLOPs


def step_flops(cfg, batch: int) -> dict[str, float]:
    """Multiply-adds x 2 of the matrix products of one training step, by kind.

    Forward products: every convolution ``2 C_out C_in k^2 M H W`` (``M = T*B``),
    every linear map ``2 rows D_in D_out`` (``rows = T*B*N``; TASA mixes before
    its one product), and ``S = q k^T``, ``A v``: ``2 T B H N^2 d`` each. The
    backward of each product is two products of the same size (input and weight
    gradients), so the step is 3 x the forward. Elementwise work is not counted.
    """
    m = cfg.T * batch
    ch = [cfg.in_channels, cfg.dim // 8, cfg.dim // 4, cfg.dim // 2, cfg.dim]
    pools = (False, False, True, True) if cfg.sps == "cifar" else (True,) * 4
    res, conv = cfg.img_size, 0.0
    for i, pool in enumerate(pools):
        conv += 2 * ch[i + 1] * ch[i] * 9 * m * res * res
        res = res // 2 if pool else res
    conv += 2 * cfg.dim * cfg.dim * 9 * m * res * res  # relative position conv
    n = res * res
    rows = m * n
    linear = cfg.depth * (4 * 2 * rows * cfg.dim * cfg.dim + 2 * 2 * rows * cfg.dim * cfg.dim * cfg.mlp_ratio)
    attn = cfg.depth * 2 * 2 * m * cfg.heads * n * n * (cfg.dim // cfg.heads)
    head = 2 * batch * cfg.dim * cfg.num_classes
    return {"conv": 3 * conv, "linear": 3 * (linear + head), "attention": 3 * attn}


# ----------------------------------------------------------------------- child


def _peak_kb() -> int:
    """This process's peak resident set in KiB: ``VmHWM`` (Linux), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _numpy_bytes(obj) -> int:
    """Bytes of the distinct arrays reachable from ``obj`` (views count once, with their base)."""
    import numpy as np

    seen_objects, bases, total, stack = set(), set(), 0, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen_objects or isinstance(o, (str, bytes, int, float, bool, type(None), type)):
            continue
        seen_objects.add(id(o))
        if isinstance(o, np.ndarray):
            base = o
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in bases:
                bases.add(id(base))
                total += base.nbytes
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif hasattr(o, "__dict__"):
            stack.extend(vars(o).values())
    return total


def torch_side(params: dict, state: dict, cfg):
    """The PyTorch side: :func:`ds2ta_ref.torch.from_numpy` of the NumPy side's ``params`` and
    ``state`` (in their float dtype), in training mode; ``net(x)`` gives the logits."""
    from ds2ta_ref.torch import from_numpy

    return from_numpy(params, state, cfg).train()


def step_inputs(cfg, dtype, batch: int):
    """Seeded ``(params, state, x, y)`` of one training step of ``cfg`` (also ``profile_step``'s)."""
    import numpy as np

    import ds2ta_ref

    rng = np.random.default_rng(0)
    params = ds2ta_ref.init_params(cfg, rng, dtype=dtype)
    state = ds2ta_ref.init_state(cfg, dtype=dtype)
    x = rng.uniform(0, 1, (batch, cfg.in_channels, cfg.img_size, cfg.img_size)).astype(dtype)
    y = rng.integers(0, cfg.num_classes, batch)
    return params, state, x, y


def child(args) -> None:
    """Build the model of one side, warm up, time one step; print one JSON line."""
    import numpy as np

    import ds2ta_ref
    from ds2ta_ref import layers, model

    if args.malloc == "reuse":  # as ds2ta-ref train runs; the same on both sides
        from ds2ta_ref import memory

        memory.reuse_freed_memory()
    cfg = ds2ta_ref.preset(args.preset, T=args.T, window=args.window)
    dtype = np.dtype(args.dtype)
    params, state, x, y = step_inputs(cfg, dtype, args.batch)
    result = {}

    if args.child == "numpy":

        def step(measure=False):
            logits, _, cache = model.forward(x, params, state, cfg, training=True)
            if measure:
                result["cache_bytes"] = _numpy_bytes(cache)
            _, dlogits = layers.cross_entropy(logits, y)
            model.backward(dlogits, cache)
    else:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(args.threads)
        tdtype = {np.float32: torch.float32, np.float64: torch.float64}[dtype.type]
        net = torch_side(params, state, cfg)
        xt, yt = torch.tensor(x, dtype=tdtype), torch.tensor(y)

        def step(measure=False):
            net.zero_grad(set_to_none=True)
            if not measure:
                logits = net(xt)
            else:
                storages = {}

                def pack(t):
                    s = t.untyped_storage()
                    storages[s.data_ptr()] = s.nbytes()
                    return t

                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    logits = net(xt)
                result["cache_bytes"] = sum(storages.values())
            F.cross_entropy(logits, yt).backward()

    # Libraries allocate fixed pools on their first call (OpenBLAS's GEMM buffers, oneDNN's
    # kernels): prime them with a small product, so that the peak below is the model's.
    a = np.ones((256, 256), dtype)
    a @ a
    if args.child == "torch":
        t = torch.ones((2, 8, 16, 16), dtype=tdtype)
        F.conv2d(t, torch.ones((8, 8, 3, 3), dtype=tdtype), padding=1).sum()
        torch.tensor(a) @ torch.tensor(a)
    rss0 = _rss_kb()
    step(measure=True)  # warm-up; also measures the cache
    times = []
    for _ in range(args.inner):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    result.update(
        time=statistics.median(times),
        peak_bytes=(_peak_kb() - rss0) * 1024,
        minor_faults=r1.ru_minflt - r0.ru_minflt,
        sys_time=r1.ru_stime - r0.ru_stime,
    )
    print(json.dumps(result))


def gemm_child(args) -> None:
    """GFLOP/s of a large NumPy matmul (n = 2048), median of 5 after a warm-up."""
    print(json.dumps({"gflops": matmul_gflops(args.dtype)}))


def matmul_gflops(dtype) -> float:
    """GFLOP/s of a large NumPy matmul (n = 2048) in this process, median of 5 after a warm-up."""
    import numpy as np

    n = 2048
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    a @ b
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


# The OpenBLAS kernel: "env" runs the children with this environment as it is (this project's
# machines set OPENBLAS_CORETYPE=Haswell, which old OpenBLAS builds needed on some CPUs);
# "native" unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, so OpenBLAS picks the kernel a
# user's machine picks (SkylakeX or Zen on the AMD EPYC machines, Haswell or SkylakeX on Intel).
KERNEL_ENV_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
BLAS_THREAD_TIMEOUT = "12"  # ds2ta_ref._startup.BLAS_THREAD_TIMEOUT (not imported: the parent stays light)

_BLAS_PROBE = """
import json, numpy, threadpoolctl
print(json.dumps([{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                  for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]))
"""


def child_env(threads: int, kernel: str) -> dict[str, str]:
    env = dict(
        os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)
    )
    if kernel == "native":
        for name in KERNEL_ENV_UNSET:
            env.pop(name, None)
    # OpenBLAS's idle threads sleep at once, as in the ds2ta-ref command (ds2ta_ref._startup); both sides
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)
    return env


def blas_kernel(threads: int, kernel: str) -> str:
    """What threadpoolctl reports in a child of this kernel setting: ``openblas 0.3.31 SkylakeX, 2 threads``."""
    proc = subprocess.run(
        [sys.executable, "-c", _BLAS_PROBE], env=child_env(threads, kernel), capture_output=True, text=True
    )
    if proc.returncode != 0:
        return "unknown (threadpoolctl not installed: pip install threadpoolctl)"
    return (
        "; ".join(
            f"{b['internal_api']} {b['version']} {b['architecture']}, {b['num_threads']} threads"
            for b in json.loads(proc.stdout)
        )
        or "no BLAS reported"
    )


def run_child(kind: str, threads: int, kernel: str = "env", **kw) -> dict:
    env = child_env(threads, kernel)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--threads", str(threads)]
    for key, value in kw.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(cmd)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- parent


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def measure(points: list[tuple], args, sides: list[str], repeat: int, kernel: str = "env") -> dict:
    """``repeat`` rounds; each round runs every point ``(preset, batch, dtype, T, window)``
    once per side, the sides back to back (A B A B): a burst of load hits one round of
    every point instead of every run of one point, and ratios pair neighbouring runs."""
    runs = {point: {side: [] for side in sides} for point in points}
    for _ in range(repeat):
        for point in points:
            preset, batch, dtype, T, window = point
            for side in sides:
                runs[point][side].append(
                    run_child(
                        side,
                        args.threads,
                        kernel,
                        preset=preset,
                        batch=batch,
                        dtype=dtype,
                        T=T,
                        window=window,
                        inner=args.inner,
                        malloc=args.malloc,
                    )
                )
    return runs


def med_spread(values, fmt="{:.3g}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))} .. {fmt.format(max(values))})"


def machine() -> str:
    import numpy as np

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = "?"
    try:
        blas = ", ".join(
            f"{v['name']} {v.get('version', '')}".strip()
            for k, v in np.show_config(mode="dicts")["Build Dependencies"].items()
            if k == "blas"
        )
    except Exception:  # noqa: BLE001 - the BLAS name is informative only
        pass
    versions = f"Python {platform.python_version()}, NumPy {np.__version__} ({blas})"
    if have_torch():
        import torch

        versions += f", PyTorch {torch.__version__}"
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}; {versions}"


KERNEL_LABELS = {"env": "the environment as it is", "native": "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset"}


def main_table(args, sides, torch_ok, gemm, all_runs) -> list[str]:
    """The table of one kernel: time, ratio to PyTorch, FLOP floor, memory, per (preset, batch, dtype)."""
    import ds2ta_ref

    lines = []
    lines += [
        "| preset | batch | dtype | NumPy s | PyTorch s | NumPy / PyTorch | GFLOP (conv/linear/attn) "
        "| NumPy GFLOP/s | NumPy / floor | peak MB NumPy / PyTorch | cache MB NumPy / PyTorch "
        "| page faults NumPy / PyTorch |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for preset, batch in args.points:
        cfg = ds2ta_ref.preset(preset)
        fl = step_flops(cfg, batch)
        total = sum(fl.values()) / 1e9
        for dt in args.dtypes:
            runs = all_runs[(preset, batch, dt, cfg.T, cfg.window)]
            t_np = [r["time"] for r in runs["numpy"]]
            row = [preset, str(batch), dt, med_spread(t_np)]
            floor = total / gemm[dt]
            if torch_ok:
                t_pt = [r["time"] for r in runs["torch"]]
                ratios = [a / b for a, b in zip(t_np, t_pt)]
                row += [med_spread(t_pt), med_spread(ratios, "{:.2f}")]
            else:
                row += ["skipped", "skipped"]
            mib = lambda side, k: statistics.median(r[k] for r in runs[side]) / 2**20  # noqa: E731
            med = lambda side, k: statistics.median(r[k] for r in runs[side])  # noqa: E731
            pair = (
                (lambda k, f: f"{f(mib('numpy', k))} / {f(mib('torch', k))}")
                if torch_ok
                else (lambda k, f: f"{f(mib('numpy', k))} / -")
            )
            faults = f"{med('numpy', 'minor_faults'):.0f}" + (
                f" / {med('torch', 'minor_faults'):.0f}" if torch_ok else " / -"
            )
            row += [
                f"{total:.3g} ({fl['conv'] / 1e9:.3g} / {fl['linear'] / 1e9:.3g} / {fl['attention'] / 1e9:.2g})",
                f"{total / statistics.median(t_np):.3g}",
                f"{statistics.median(t_np) / floor:.2f}",
                pair("peak_bytes", "{:.0f}".format),
                pair("cache_bytes", "{:.0f}".format),
                faults,
            ]
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], file=sys.stderr, flush=True)

    return lines


def report(args, argv) -> list[str]:
    import ds2ta_ref

    load_start = os.getloadavg()[0]
    torch_ok = have_torch()
    sides = ["numpy", "torch"] if torch_ok else ["numpy"]
    lines = [
        f"Command: `{' '.join(['python', 'benchmarks/' + os.path.basename(__file__)] + argv)}`",
        f"Machine: {machine()}",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
        f"{args.threads} threads; one training step (forward + cross-entropy + backward), "
        f"{args.repeat} alternated fresh-process pairs after a warm-up step; "
        f"medians with (min .. max); malloc `{args.malloc}` on both sides.",
        "",
    ]
    if not torch_ok:
        lines += ["PyTorch comparison skipped: torch is not installed (only the NumPy side is measured).", ""]
    main_points = [
        (preset, batch, dt, ds2ta_ref.preset(preset).T, ds2ta_ref.preset(preset).window)
        for preset, batch in args.points
        for dt in args.dtypes
    ]
    for kernel in args.kernels:
        lines += [f"Kernel `{kernel}` ({KERNEL_LABELS[kernel]}): {blas_kernel(args.threads, kernel)}", ""]
        # the floor of each row comes from a matmul of the same kernel, in the same run
        gemm = {dt: run_child("gemm", args.threads, kernel, dtype=dt)["gflops"] for dt in args.dtypes}
        lines += ["Large matmul (NumPy, n = 2048): " + ", ".join(f"{dt} {g:.0f} GFLOP/s" for dt, g in gemm.items()), ""]
        lines += main_table(args, sides, torch_ok, gemm, measure(main_points, args, sides, args.repeat, kernel))
        lines.append("")
    preset, batch, dt = args.sweep
    cfg = ds2ta_ref.preset(preset)
    T1, w1, w_last = args.Ts[0], args.windows[0], args.windows[-1]
    kernel = args.kernels[-1]
    lines += [
        f"Time vs T and window: `{preset}`, batch {batch}, {dt}, kernel `{kernel}`, {args.sweep_repeat} "
        "rounds over "
        "all the points below; the last two columns are medians of ratios within a round.",
        "",
        f"| T | window | NumPy s | PyTorch s | NumPy / PyTorch | NumPy s per time step / at T = {T1} "
        f"| NumPy window {w_last} / window {w1} |",
        "|---|---|---|---|---|---|---|",
    ]
    points = [(T, cfg.window) for T in args.Ts] + [(cfg.T, w) for w in args.windows if w != cfg.window]
    sweep = measure([(preset, batch, dt, T, w) for T, w in points], args, sides, args.sweep_repeat, kernel)
    times = {(T, w): [r["time"] for r in sweep[(preset, batch, dt, T, w)]["numpy"]] for T, w in points}
    for T, w in points:
        t_np = times[(T, w)]
        row = [str(T), str(w), med_spread(t_np)]
        if torch_ok:
            t_pt = [r["time"] for r in sweep[(preset, batch, dt, T, w)]["torch"]]
            row += [med_spread(t_pt), med_spread([a / b for a, b in zip(t_np, t_pt)], "{:.2f}")]
        else:
            row += ["skipped", "skipped"]
        row.append(
            med_spread([a / T / (b / T1) for a, b in zip(t_np, times[(T1, cfg.window)])], "{:.2f}")
            if (T1, cfg.window) in times and w == cfg.window
            else ""
        )
        if T == cfg.T and w == w_last and (cfg.T, w1) in times and (cfg.T, w_last) in times:
            row.append(med_spread([a / b for a, b in zip(t_np, times[(cfg.T, w1)])], "{:.2f}"))
        else:
            row.append("")
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines[2] += (
        f" Load average (1 min) at start {load_start:.1f}, at end {os.getloadavg()[0]:.1f}, "
        f"on {os.cpu_count()} logical CPUs."
    )
    return lines


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="seconds: tiny preset, batch 2, float32, 1 repeat")
    parser.add_argument("--repeat", type=int, default=5, help="alternated process pairs per point (default 5)")
    parser.add_argument("--sweep-repeat", type=int, default=None, help="pairs per T/window point (default --repeat)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inner", type=int, default=1, help="timed steps per process (their median)")
    parser.add_argument(
        "--kernels",
        nargs="+",
        choices=sorted(KERNEL_LABELS),
        default=["env", "native"],
        help="OpenBLAS kernel settings to measure, each its own table: env = the environment as "
        "it is, native = OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset (default: env native; "
        "the T/window sweep runs on the last)",
    )
    parser.add_argument(
        "--malloc",
        choices=["reuse", "default"],
        default="reuse",
        help="reuse: both sides call ds2ta_ref.memory.reuse_freed_memory() first, as ds2ta-ref train "
        "does (freed memory is reused, not page-faulted in anew each step); default: glibc as it is",
    )
    parser.add_argument(
        "--matmul",
        action="store_true",
        help="only print the large float32 matmul rate of each --kernels setting, each in a fresh "
        "child as the floor is measured, and exit (seconds): against a recorded run's 'Large "
        "matmul' line it tells whether the machine is as quiet now",
    )
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    for name in ("child", "preset", "batch", "dtype", "T", "window"):  # child-process arguments
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS, type=int if name in ("batch", "T", "window") else str)
    args = parser.parse_args(argv)
    if args.child == "gemm":
        gemm_child(args)
        return 0
    if args.child:
        child(args)
        return 0
    if args.repeat < 1 or args.inner < 1:
        parser.error("--repeat and --inner must be >= 1")
    if args.matmul:
        for kernel in args.kernels:
            rate = run_child("gemm", args.threads, kernel, dtype="float32")["gflops"]
            print(f"{kernel}: {blas_kernel(args.threads, kernel)}: large float32 matmul {rate:.0f} GFLOP/s")
        return 0
    if args.out and os.path.exists(args.out) and not args.force:
        parser.error(f"argument --out: {args.out} exists (a recorded run); pass --force to replace it")
    if args.smoke:
        args.repeat, args.sweep_repeat = 1, 1
        args.points, args.dtypes = [("tiny", 2)], ["float32"]
        args.sweep, args.Ts, args.windows = ("tiny", 2, "float32"), (1, 2), (1, 3)
    else:
        args.points, args.dtypes = [("tiny", 64), ("cifar10", 8)], ["float32", "float64"]
        args.sweep, args.Ts, args.windows = ("cifar10", 8, "float32"), (1, 2, 4, 8), (1, 3)
    args.sweep_repeat = args.sweep_repeat or args.repeat
    lines = report(args, argv)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
