"""The ``ds2ta-ref`` command line (also ``python -m ds2ta_ref``).

Subcommands: ``train`` (the main job), ``evaluate``, ``ablate`` and ``gradcheck``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

from . import checkpoint, gradcheck, model
from .energy import format_table
from .train import TrainConfig, TrainingError, build_data, evaluate, load_run, train

VARIANTS = {  # paper Table 4: name -> (tasa, nsad)
    "Spikformer": (False, False),
    "NSAD only": (False, True),
    "DS2TA": (True, True),
}


def variant_name(tasa_on: bool, nsad_on: bool) -> str:
    for name, switches in VARIANTS.items():
        if switches == (tasa_on, nsad_on):
            return name
    return "TASA only"


# --------------------------------------------------------------------------- gradcheck
def cmd_gradcheck(args) -> int:
    try:
        results = list(gradcheck.run_cases(args.kernels, seed=args.seed))
    except ValueError as exc:
        raise SystemExit(f"ds2ta-ref gradcheck: {exc}")
    worst = 0.0
    for name, report, tol in results:
        print(gradcheck.format_report(name, report, tol))
        worst = max(worst, max(report.values()) / tol)
    print(f"worst relative error / tolerance: {worst:.2e} ({'ok' if worst <= 1 else 'FAIL'})")
    return 0 if worst <= 1 else 1


# --------------------------------------------------------------------------- train
def _train_config(args) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return TrainConfig(**values)


def cmd_train(args) -> int:
    tc = _train_config(args)
    out = args.out or os.path.join("runs", tc.dataset)
    if args.resume is None:
        print(f"training {variant_name(tc.tasa, tc.nsad)} ({tc.preset} preset) on {tc.dataset}, seed {tc.seed}; "
              f"checkpoints and metrics in {out}/")
    t0 = time.perf_counter()
    try:
        result = train(tc, out, resume=args.resume, progress=not args.no_progress)
    except (TrainingError, checkpoint.CheckpointError) as exc:
        print(f"ds2ta-ref train: {exc}", file=sys.stderr)
        return 1
    if not result.history:
        print("nothing to do: the checkpoint has already run all its epochs")
        return 0
    last = result.history[-1]
    print(f"final test accuracy: {100 * last['test_acc']:.2f}% after {last['epoch']} epochs "
          f"({time.perf_counter() - t0:.0f} s); parameters: {model.count_params(result.params):,}")
    return 0


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    rows = {}
    for path in args.checkpoints:
        try:
            tc, cfg, params, state, _, meta = load_run(path)
        except ValueError as exc:
            print(f"ds2ta-ref evaluate: {exc}", file=sys.stderr)
            return 1
        ds = build_data(tc)
        result = evaluate(params, state, cfg, ds.test_x, ds.test_y)
        name = f"{variant_name(cfg.tasa, cfg.nsad)} [{path}]"
        print(f"{name}: test accuracy {100 * result.accuracy:.2f}% on {tc.dataset} (epoch {meta['epoch']}), "
              f"firing rate {result.spike_rate:.3f}")
        rows[name] = result.energy
    print("\nattention-map sparsity and energy per sample (paper Table 3 form; E_AC = 0.9 pJ):")
    print(format_table(rows))
    return 0


# --------------------------------------------------------------------------- ablate
def cmd_ablate(args) -> int:
    results = {}  # (variant, dataset) -> [accuracy per seed]
    energy = {}  # (variant, dataset) -> [list of BlockEnergy per seed]
    for dataset in args.datasets:
        for name, (tasa_on, nsad_on) in VARIANTS.items():
            for seed in args.seeds:
                tc = TrainConfig(dataset=dataset, tasa=tasa_on, nsad=nsad_on, seed=seed, epochs=args.epochs)
                out = os.path.join(args.out, dataset, name.replace(" ", "_"), f"seed{seed}")
                print(f"--- {dataset}: {name}, seed {seed}")
                result = train(tc, out, progress=not args.no_progress)
                ds = build_data(tc)
                ev = evaluate(result.params, result.state, result.cfg, ds.test_x, ds.test_y)
                results.setdefault((name, dataset), []).append(ev.accuracy)
                energy.setdefault((name, dataset), []).append(ev.energy)
    print(f"\ntest accuracy (%), mean ± std over seeds {list(args.seeds)} (paper Table 4 form):")
    print("model | " + " | ".join(args.datasets))
    print("|".join(["---"] * (1 + len(args.datasets))))
    for name in VARIANTS:
        cells = []
        for dataset in args.datasets:
            acc = 100 * np.array(results[(name, dataset)])
            cells.append(f"{acc.mean():.2f} ± {acc.std(ddof=1) if len(acc) > 1 else 0.0:.2f}")
        print(f"{name} | " + " | ".join(cells))
    for dataset in args.datasets:
        print(f"\n{dataset}: attention-map sparsity and energy per sample, mean over seeds (paper Table 3 form):")
        rows = {}
        for name in VARIANTS:
            per_seed = energy[(name, dataset)]
            rows[name] = [per_seed[0][b]._replace(sparsity=float(np.mean([s[b].sparsity for s in per_seed])),
                                                  energy_pj=float(np.mean([s[b].energy_pj for s in per_seed])))
                          for b in range(len(per_seed[0]))]
        print(format_table(rows))
    return 0


# --------------------------------------------------------------------------- parser
def _add_train_options(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--dataset", choices=["digits", "events"], default=d.dataset,
                   help="digits: scikit-learn's 8x8 handwritten digits upsampled to 16x16 (static, repeated "
                        "over T); events: generated DVS-like clips whose class is the direction of a moving square")
    p.add_argument("--preset", default=d.preset, help="model preset (cifar10, cifar100, dvs, tiny)")
    p.add_argument("--no-tasa", dest="tasa", action="store_false", help="spatial-only attention inputs (T_AW = 1)")
    p.add_argument("--no-nsad", dest="nsad", action="store_false", help="no attention denoiser")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: 12 for digits, 10 for events)")
    p.add_argument("--batch-size", type=int, default=None, help="(default: 64 for digits, 32 for events)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of AdamW (default: 0.004 for digits, 0.003 for events)")
    p.add_argument("--min-lr", type=float, default=d.min_lr, help="learning rate at the end of the cosine")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay (not on biases, BatchNorm, tau, NSAD)")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warmup length")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--clip-grad", type=float, default=d.clip_grad, help="max gradient norm (0: no clipping)")
    p.add_argument("--shift", type=int, default=d.shift,
                   help="augmentation: random translation of each training sample by up to N pixels (0: none)")
    p.add_argument("--seed", type=int, default=d.seed, help="parameters and minibatch order")
    p.add_argument("--data-seed", type=int, default=d.data_seed, help="train/test split and generated events")
    p.add_argument("--dtype", choices=["float32", "float64"], default=d.dtype)
    p.add_argument("--train-subset", type=int, default=d.train_subset,
                   help="train on the first N training samples only (0: all)")
    p.add_argument("--test-subset", type=int, default=d.test_subset,
                   help="test on the first N test samples only (0: all)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where it is None (the help text then says it)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpFormatter
    parser = argparse.ArgumentParser(prog="ds2ta-ref", description=__doc__, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", formatter_class=fmt, help="train a model (the main job)",
                       description="Train DS2TA (or an ablation) on built-in data with AdamW and a cosine "
                                   "schedule; a checkpoint and metrics are written after every epoch.")
    _add_train_options(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/<dataset>)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run stored in this checkpoint, with its own settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", formatter_class=fmt, help="test accuracy, sparsity and energy of checkpoints",
                       description="Evaluate training checkpoints on their test split and print attention-map "
                                   "sparsity and energy per block side by side (paper Table 3 form).")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("ablate", formatter_class=fmt, help="Spikformer vs NSAD only vs DS2TA over seeds",
                       description="Train Spikformer (both switches off), NSAD only and DS2TA on the same data "
                                   "and seeds, and print the paper's Table 4 and Table 3 forms.")
    p.add_argument("--datasets", nargs="+", choices=["digits", "events"], default=["digits", "events"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run (default: train's, 12 for digits and 10 for events)")
    p.add_argument("--out", default=os.path.join("runs", "ablate"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("gradcheck", formatter_class=fmt,
                       help="check every hand-written backward against float64 finite differences",
                       description="Check the hand-written backward of each kernel and of a small whole model "
                                   "against central differences in float64, in smooth mode, and print the worst "
                                   "relative error per argument.")
    p.add_argument("kernels", nargs="*", metavar="KERNEL",
                   help=f"kernels to check, among {', '.join(gradcheck.TOLERANCE)}, or case names (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.set_defaults(func=cmd_gradcheck)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
