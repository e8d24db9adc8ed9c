"""The main job (``ds2ta-ref train``, defaults) over seeds, with the machine and BLAS kernel that ran it.

    python benchmarks/main_job.py                      # seeds 0 1 2, the environment as it is
    python benchmarks/main_job.py --native             # OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset
    python benchmarks/main_job.py --smoke              # seconds: 1 epoch on a subset (CI)

Why a script: the main job's accuracy is deterministic for a seed on one machine, but float32
sums differ in their last bits between OpenBLAS kernels (Haswell, SkylakeX, Zen: Intel and AMD
machines pick different ones, and ``OPENBLAS_CORETYPE`` forces one) and between BLAS thread
counts, and a single spike that flips changes the run from there on. So the README gives the
main job as the mean and range over seeds 0-2 and names the CPU, the kernel and the threads,
all printed here. Each seed runs in its own fresh process, one after the other; the wall time
is that process's, start-up included (measure on a quiet machine: the rate of a large float32
matmul, printed and recorded at the start and the end, shows another tenant's load, which the
load average does not).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NATIVE_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

_BLAS_PROBE = """
import json, numpy, threadpoolctl
print(json.dumps([{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                  for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]))
"""


def child_env(native: bool) -> dict[str, str]:
    """The environment of every child: this one, less the forced OpenBLAS kernel with ``native``."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if native:
        for name in NATIVE_UNSET:
            env.pop(name, None)
    return env


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or "unknown CPU"


def blas_kernel(env: dict[str, str]) -> str:
    """``openblas 0.3.31 SkylakeX, 2 threads``: what threadpoolctl reports in a child with ``env``."""
    out = subprocess.run([sys.executable, "-c", _BLAS_PROBE], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"main_job: cannot read the BLAS kernel (pip install threadpoolctl): {out.stderr.strip()}")
    libs = json.loads(out.stdout)
    return (
        "; ".join(f"{b['internal_api']} {b['version']} {b['architecture']}, {b['num_threads']} threads" for b in libs)
        or "no BLAS reported"
    )


def train_child(seed: int, out_dir: str, env: dict[str, str], extra: list[str], what: str) -> tuple[list[dict], float]:
    """One ``ds2ta-ref train --seed N`` in a fresh process: its per-epoch metrics (``metrics.json``)
    and wall time. A failed run stops the script with ``what``, the exit status and the end of stderr."""
    argv = [sys.executable, "-m", "ds2ta_ref", "train", "--seed", str(seed), "--out", out_dir, "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return json.load(f), wall


def run_seed(seed: int, out_dir: str, env: dict[str, str], extra: list[str]) -> dict:
    """One ``ds2ta-ref train --seed N`` in a fresh process; its final test accuracy and wall time."""
    history, wall = train_child(seed, out_dir, env, extra, f"main_job: seed {seed}")
    last = history[-1]
    return {"seed": seed, "epochs": len(history), "test_acc": float(last["test_acc"]), "wall_s": wall}


def table(rows: list[dict]) -> list[str]:
    accs = [100 * r["test_acc"] for r in rows]
    walls = [r["wall_s"] for r in rows]
    lines = ["| seed | epochs | test accuracy | wall s |", "|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['epochs']} | {100 * r['test_acc']:.2f}% | {r['wall_s']:.1f} |" for r in rows]
    lines.append(
        f"| mean (range) | | {statistics.mean(accs):.2f}% ({min(accs):.2f} .. {max(accs):.2f}) | "
        f"{statistics.mean(walls):.1f} ({min(walls):.1f} .. {max(walls):.1f}) |"
    )
    return lines


def matmul_rate(env: dict[str, str]) -> float:
    """GFLOP/s of bench_model's large float32 matmul (the step benchmark's floor, its ``--child
    gemm``) in a child with ``env``: a neighbour's load on a shared machine shows here, not in the
    load average."""
    cmd = [sys.executable, os.path.join(HERE, "bench_model.py"), "--child", "gemm", "--dtype", "float32"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"main_job: the matmul probe failed: {out.stderr.strip()[-500:]}")
    return round(json.loads(out.stdout.strip().splitlines()[-1])["gflops"], 1)


def readme_row(record: dict) -> str:
    """The README's row for one recorded run of this script (``--json``); tests/test_readme.py
    checks that every record in benchmarks/results/ appears in the README exactly so."""
    accs = [100 * r["test_acc"] for r in record["rows"]]
    walls = [r["wall_s"] for r in record["rows"]]
    seeds = " | ".join(f"{a:.2f}%" for a in accs)
    matmul = " / ".join(f"{rate:.0f}" for rate in record["matmul_gflops"])
    return (
        f"| {record['cpu']} | {record['blas']} | {seeds} | **{statistics.mean(accs):.2f}%** "
        f"({min(accs):.2f} .. {max(accs):.2f}) | {statistics.mean(walls):.0f} ({min(walls):.0f} .. "
        f"{max(walls):.0f}) | {matmul} | `{record['command']}` ({record['date']} UTC) |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument(
        "--native",
        action="store_true",
        help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE: the kernel OpenBLAS picks for this CPU",
    )
    parser.add_argument("--smoke", action="store_true", help="1 epoch on 128/64 digits: checks the script, seconds")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the rows and machine as JSON")
    parser.add_argument("--force", action="store_true", help="replace an existing --json record")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"argument --seeds: distinct non-negative seeds expected, got {args.seeds}")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        parser.error(f"argument --json: the folder of {args.json} does not exist")
    if args.json and os.path.exists(args.json) and not args.force:
        parser.error(f"argument --json: {args.json} exists (a recorded run); pass --force to replace it")
    env = child_env(args.native)
    extra = ["--epochs", "1", "--train-subset", "128", "--test-subset", "64"] if args.smoke else []
    kernel = blas_kernel(env)
    command = " ".join(["python benchmarks/main_job.py", *(argv if argv is not None else sys.argv[1:])])
    date, load_start = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), os.getloadavg()[0]
    matmul_start = matmul_rate(env)
    print(f"Command: `{command}`")
    print(f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs; BLAS: {kernel}")
    quiet = f"load average (1 min) at start {load_start:.1f}; large float32 matmul {matmul_start} GFLOP/s"
    print(f"Date: {date} UTC; {quiet}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_seed(seed, os.path.join(tmp, f"seed{seed}"), env, extra) for seed in args.seeds]
    load_end, matmul_end = os.getloadavg()[0], matmul_rate(env)
    print(f"Load average (1 min) at end {load_end:.1f}; large float32 matmul {matmul_end} GFLOP/s")
    print()
    print("\n".join(table(rows)))
    if args.json:
        record = {
            "command": command,
            "cpu": cpu_model(),
            "blas": kernel,
            "date": date,
            "load_average": [load_start, load_end],
            "matmul_gflops": [matmul_start, matmul_end],  # float32, at start and end: how quiet the machine was
            "rows": rows,
        }
        print()
        print("README row:")
        print(readme_row(record))
        tmp_path = args.json + ".tmp"
        with open(tmp_path, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp_path, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
