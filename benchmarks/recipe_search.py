"""Train the main job under other recipes, each over seeds 0-2, and record the test accuracies.

    python benchmarks/recipe_search.py --out runs.jsonl "" "--epochs 16" "--lr 2e-3" "--set dim=96"
    python benchmarks/recipe_search.py --show runs.jsonl          # the table of a record
    python benchmarks/recipe_search.py --smoke --out /tmp/s.jsonl  # seconds (CI)

Each argument is the options added to ``ds2ta-ref train`` (the empty string: the defaults);
each (recipe, seed) runs in its own fresh process with one BLAS thread (``--threads``), so
that the accuracies are those of one machine and kernel, reproducible there. A line of JSON
per run is appended to ``--out`` as it finishes (an interrupted search keeps its finished
runs): the options, seed, final test accuracy, the best epoch's (for reading only: choosing a
recipe by it would fit the test set), the curve, the wall time and the BLAS kernel.

This is how the main job's recipe was searched for issue 22 (mean >= 99% over seeds 0-2): the
record is ``benchmarks/results/recipe_search_haswell_1thread.jsonl`` and the README's
"What the recipe search found" gives its table.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from main_job import blas_kernel, cpu_model, train_child  # noqa: E402


def run(options: str, seed: int, env: dict[str, str], smoke: bool) -> dict:
    extra = shlex.split(options) + (["--epochs", "1", "--train-subset", "64", "--test-subset", "32"] if smoke else [])
    with tempfile.TemporaryDirectory() as tmp:
        what = f"recipe_search: {options!r} seed {seed}"
        history, wall = train_child(seed, os.path.join(tmp, "run"), env, extra, what)
    curve = [h["test_acc"] for h in history]
    return {
        "options": options,
        "seed": seed,
        "test_acc": curve[-1],
        "best_epoch_acc": max(curve),
        "curve": curve,
        "wall_s": round(wall, 1),
    }


def show(path: str) -> list[str]:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = collections.OrderedDict()
    for r in rows:
        by.setdefault(r["options"], []).append(r)
    lines = [
        "| options added to `ds2ta-ref train` | seeds | test accuracy per seed | mean "
        "| best epoch per seed (not a result) |",
        "|---|---|---|---|---|",
    ]
    for options, rs in sorted(by.items(), key=lambda kv: -statistics.mean(r["test_acc"] for r in kv[1])):
        rs = sorted(rs, key=lambda r: r["seed"])
        accs = " / ".join(f"{100 * r['test_acc']:.2f}" for r in rs)
        best = " / ".join(f"{100 * r['best_epoch_acc']:.2f}" for r in rs)
        mean = statistics.mean(100 * r["test_acc"] for r in rs)
        seeds = ", ".join(str(r["seed"]) for r in rs)
        name = f"`{options}`" if options else "(the defaults)"
        lines.append(f"| {name} | {seeds} | {accs} | **{mean:.2f}** | {best} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "recipes", nargs="*", help='options added to ds2ta-ref train, one string per recipe ("": the defaults)'
    )
    parser.add_argument("--out", help="append one JSON line per run to this file")
    parser.add_argument("--show", metavar="FILE", help="print the table of a record and exit")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads of each run (default 1)")
    parser.add_argument("--smoke", action="store_true", help="1 epoch on 64/32 digits per run: checks the script")
    args = parser.parse_args(argv)
    if args.show:
        print("\n".join(show(args.show)))
        return 0
    if not args.out or not args.recipes:
        parser.error('give --out FILE and at least one recipe ("" for the defaults)')
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        parser.error(f"--out: the folder {folder} does not exist")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(args.threads)
    kernel, cpu = blas_kernel(env), cpu_model()
    print(f"{cpu}; {kernel}", flush=True)
    for options in args.recipes:
        for seed in args.seeds:
            row = run(options, seed, env, args.smoke) | {"cpu": cpu, "blas": kernel}
            with open(args.out, "a") as f:  # one whole line per run, appended
                f.write(json.dumps(row) + "\n")
            accuracy = f"{100 * row['test_acc']:.2f}%"
            print(f"{options or '(defaults)'} seed {seed}: {accuracy} ({row['wall_s']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
