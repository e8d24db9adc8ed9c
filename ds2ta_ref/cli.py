"""The ``ds2ta-ref`` command line (also ``python -m ds2ta_ref``).

Subcommands: ``train`` (the main job), ``evaluate``, ``ablate`` and ``gradcheck``.

Every mistake in what is asked (an option, a path, a file) ends the command
with one line on stderr, ``ds2ta-ref: error: ...``, naming the option or file
and what was expected, and exit status 2, before any data is loaded or any
file written. A run that diverges ends with one such line and status 1;
Ctrl-C with one line naming the last checkpoint and the command that resumes
it, and status 130. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np

from . import __version__, checkpoint, cifar, data, devices, fingerprint, gradcheck, memory, model
from .config import PRESETS, differing_overrides, parse_overrides, preset
from .energy import format_table
from .train import (CHECKPOINT, DATA_SHAPES, DATASET_DEFAULTS, SPLIT_SIZES, VARIANTS, ConfigError, RunFolderError,
                    TrainConfig, TrainingError, build_data, check_data_files, check_data_matches, default_out,
                    evaluate, load_run, resume_conflicts, train, variant_name)

PROG = "ds2ta-ref"
USER_ERRORS = (ConfigError, RunFolderError, checkpoint.CheckpointError,
               memory.MemoryRequestError)  # issue 18 item 6: a request too large for memory


class UsageError(Exception):
    """A mistake on the command line; ``main`` prints it as one line and exits with status 2."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the same single line as every other error."""

    def error(self, message):
        sys.stderr.write(f"{PROG}: error: {_one_line(message)} (see '{self.prog} --help')\n")
        sys.exit(2)


# --------------------------------------------------------------------------- train
TRAIN_FIELDS = ("dataset", "preset", "tasa", "nsad", "model", "epochs", "batch_size", "lr", "min_lr", "weight_decay",
                "warmup_epochs", "label_smoothing", "clip_grad", "shift", "seed", "data_seed", "dtype",
                "train_subset", "test_subset", "data_dir")


def option(field: str) -> str:
    """The command-line option of a ``TrainConfig`` field."""
    return {"tasa": "--no-tasa", "nsad": "--no-nsad", "model": "--set"}.get(field, "--" + field.replace("_", "-"))


def _given(args) -> dict:
    """The training settings given on the command line (every train option defaults to None);
    ``--set`` items become ``model``, (field, value) pairs sorted by field like ``TrainConfig.model``."""
    given = {f: getattr(args, f) for f in TRAIN_FIELDS if getattr(args, f) is not None}
    if "model" in given:
        try:
            given["model"] = tuple(sorted(parse_overrides(given["model"], "--set").items()))
        except ValueError as exc:
            raise UsageError(f"argument {exc}") from None
    return given


def _check_out(out) -> None:
    """issue 18 item 6: ``--out ""`` is an error, not the default folder (nor the current one)."""
    if out is not None and not out.strip():
        raise UsageError(f"argument --out: expected a folder path, got {out!r}")


def _check_memory(tc: TrainConfig) -> None:
    """issue 18 item 6: refuse (``MemoryRequestError``, one line with the estimated size) a NumPy run whose
    training step cannot fit in the memory available (ds2ta_ref.memory's estimate), before any work."""
    cfg = preset(tc.preset, **dict(tc.model), tasa=tc.tasa, nsad=tc.nsad, **DATA_SHAPES[tc.dataset])
    batch = min(tc.batch_size, tc.train_subset or SPLIT_SIZES[tc.dataset][0])
    sets = "".join(f" --set {k}={v}" for k, v in tc.model)
    memory.check(memory.train_bytes(cfg, batch, tc.dtype),
                 f"training {tc.preset}{sets} on {tc.dataset} with batches of {batch} ({tc.dtype})")


def _check_sklearn(tc: TrainConfig, where: str) -> None:
    """issue 18 item 6: the digits need scikit-learn (the 'digits' extra); one line naming it."""
    if tc.dataset == "digits":
        try:
            data.require_sklearn()
        except ImportError as exc:
            raise UsageError(f"{where}digits {exc}") from None


def _config_error(exc: ConfigError, names=None) -> UsageError:
    flag = (names or {}).get(exc.field, option(exc.field))
    return UsageError(f"argument {flag}: {exc.problem}")


def _interrupted(out: str | None, epochs: int | None) -> int:
    """After Ctrl-C: one line naming the last checkpoint and the command that
    resumes it (with ``--add-epochs`` if an extension had not saved an epoch yet)."""
    path = os.path.join(out or ".", CHECKPOINT)
    try:
        _, meta = checkpoint.load(path, verify=False)
        done, total = int(meta["epoch"]), int(meta["train_config"]["epochs"])
    except (ValueError, KeyError, TypeError):
        print(f"{PROG}: interrupted before the first checkpoint was written; nothing to resume", file=sys.stderr)
        return 130
    more = f" --add-epochs {epochs - total}" if epochs is not None and epochs > total else ""
    print(f"{PROG}: interrupted; the last checkpoint is {path} (epoch {done} of {total}); continue with: "
          f"{PROG} train --resume {path}{more}", file=sys.stderr)
    return 130


def cmd_train(args) -> int:
    try:  # issue 18 item 4: --device and torchrun checked before any work (no data, folder or lock)
        devices.check_device(args.device, backend=args.backend)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    _check_out(args.out)  # issue 18 item 6
    given = _given(args)
    if args.resume is None:
        if args.add_epochs is not None:
            raise UsageError("argument --add-epochs: extends the run given by --resume, so it needs --resume")
        try:
            tc = TrainConfig(**given)
        except ConfigError as exc:
            raise _config_error(exc) from None
        out, resume, epochs = args.out or default_out(tc), None, tc.epochs
    else:
        if args.overwrite:
            raise UsageError("argument --overwrite: not allowed with --resume, which continues a run in its own "
                             "folder")
        if args.add_epochs is not None and args.add_epochs < 1:
            raise UsageError(f"argument --add-epochs: must be an integer >= 1, got {args.add_epochs}")
        resume = os.path.join(args.resume, CHECKPOINT) if os.path.isdir(args.resume) else args.resume
        recorded, recorded_cfg, _, _, _, meta = load_run(resume)
        fingerprint.verify(meta.get("data"), recorded, resume)  # issue 18 item 5: CIFAR files moved or changed
        if given.get("data_dir"):  # issue 18 item 5: compared with the absolute path a checkpoint records
            given["data_dir"] = os.path.abspath(given["data_dir"])
        if "model" in given and not differing_overrides(recorded_cfg, given["model"]):
            given["model"] = recorded.model  # issue 18 item 6: a --set equal to the checkpoint's value is accepted
        conflicts = resume_conflicts(recorded, given)
        if conflicts:
            listed = "; ".join(f"{option(f)} (checkpoint: {_show(f, old)}, given: {_show(f, new)})"
                               for f, old, new in conflicts)
            hint = "; to train more epochs use --add-epochs N" if any(f == "epochs" for f, _, _ in conflicts) else ""
            raise UsageError(f"--resume continues {resume} with its recorded settings, which these options "
                             f"contradict: {listed}{hint}")
        folder = os.path.dirname(os.path.abspath(resume))
        if args.out is not None and os.path.abspath(args.out) != folder:
            raise UsageError(f"argument --out: a resumed run continues in its checkpoint's folder {folder}, "
                             f"not in {args.out}; leave out --out")
        done, total = int(meta["epoch"]), recorded.epochs
        if done >= total and not args.add_epochs:
            last = meta["history"][-1] if meta["history"] else None
            acc = f", final test accuracy {100 * last['test_acc']:.2f}%" if last else ""
            print(f"{resume} is a finished run ({done} of {total} epochs{acc}); nothing to do. To train more "
                  f"epochs: {PROG} train --resume {resume} --add-epochs N")
            return 0
        out = os.path.dirname(resume) or "."  # for messages, as the user wrote it
        tc, epochs = None, total + (args.add_epochs or 0)
    try:
        check_data_files(tc or recorded)
        if tc is not None and args.backend == "numpy":  # issue 18 item 6 (the estimate is the NumPy backend's;
            _check_memory(tc)  # torch keeps other arrays, on a GPU in the GPU's memory)
    except ConfigError as exc:
        raise _config_error(exc) from None
    run = train
    if args.backend == "torch":
        try:
            from .torch.train import train_torch  # torch is imported only here
        except ImportError as exc:
            raise UsageError(f"argument --backend torch: PyTorch is not installed ({exc}); "
                             f"pip install 'ds2ta_ref[torch]'") from None
        run = functools.partial(train_torch, device=args.device, sync_bn=args.sync_bn)
    elif args.device != "cpu" or args.sync_bn:
        raise UsageError("arguments --device and --sync-bn: need --backend torch")
    t0 = time.perf_counter()
    try:
        result = run(tc, out if resume is None else None, resume=resume,
                     add_epochs=args.add_epochs or 0, overwrite=args.overwrite, progress=not args.no_progress)
        if int(os.environ.get("RANK", "0")) != 0:
            return 0  # under torchrun, rank 0 alone reports
    except KeyboardInterrupt:
        return _interrupted(out, epochs)
    except TrainingError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a full disk: the files written before are intact (atomic writes)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{PROG}: error: cannot write{where}: {exc.strerror or exc}; files already written in {out}/ are "
              f"intact", file=sys.stderr)
        return 1
    last = result.history[-1]
    print(f"final test accuracy: {100 * last['test_acc']:.2f}% after {last['epoch']} epochs "
          f"({time.perf_counter() - t0:.0f} s); parameters: {model.count_params(result.params):,}")
    return 0


def _show(field: str, value) -> str:
    if field in ("tasa", "nsad"):
        return f"{field.upper()} {'on' if value else 'off'}"
    if field == "model":
        return " ".join(f"{k}={v}" for k, v in value) or "no --set"
    return str(value)


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args) -> int:
    runs = []  # every checkpoint is read and checked before anything is evaluated
    twice = sorted({p for p in args.checkpoints if args.checkpoints.count(p) > 1})
    if twice:  # issue 18 sweep: the table would show it once
        raise UsageError(f"argument CHECKPOINT: {twice[0]} given twice; give each checkpoint once")
    for path in args.checkpoints:
        tc, cfg, params, state, _, meta = load_run(path)
        _check_sklearn(tc, f"checkpoint {path!r} is a digits run: ")  # issue 18 item 6
        fingerprint.verify(meta.get("data"), tc, path)  # issue 18 item 5: CIFAR files missing, moved or changed
        runs.append((path, tc, cfg, params, state, meta))
    datasets = {}
    for path, tc, cfg, _, _, meta in runs:
        key = (tc.dataset, tc.data_seed, tc.train_subset, tc.test_subset)
        if key not in datasets:
            datasets[key] = build_data(tc)
        check_data_matches(cfg, datasets[key], path)
        fingerprint.verify(meta.get("data"), tc, path, datasets[key])  # issue 18 item 5: digits/events arrays
    rows = {}
    for path, tc, cfg, params, state, meta in runs:
        ds = datasets[(tc.dataset, tc.data_seed, tc.train_subset, tc.test_subset)]
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
    _check_out(args.out)  # issue 18 item 6
    for flag, values in (("--seeds", args.seeds), ("--datasets", args.datasets)):  # issue 18 item 6
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise UsageError(f"argument {flag}: {', '.join(map(str, twice))} given twice; give each once")
    if args.data_dir is not None and not any(d in cifar.FILES for d in args.datasets):
        raise UsageError(f"argument --data-dir: only for {' and '.join(sorted(cifar.FILES))} in --datasets")
    plan = []  # (dataset, variant, seed, TrainConfig, folder), all checked before the first run
    for dataset in args.datasets:
        for name, (tasa_on, nsad_on) in VARIANTS.items():
            for seed in args.seeds:
                try:
                    tc = TrainConfig(dataset=dataset, tasa=tasa_on, nsad=nsad_on, seed=seed, epochs=args.epochs,
                                     data_dir=(args.data_dir or "") if dataset in cifar.FILES else "")
                    check_data_files(tc)  # issue 18 item 6: the data of every run, before the first
                    _check_memory(tc)
                except ConfigError as exc:
                    raise _config_error(exc, {"seed": "--seeds", "dataset": "--datasets"}) from None
                plan.append((dataset, name, seed, tc, os.path.join(args.out, dataset, name.replace(" ", "_"),
                                                                   f"seed{seed}")))
    taken = [out for *_, out in plan if os.path.exists(os.path.join(out, CHECKPOINT))]
    if taken and not args.overwrite:
        raise UsageError(f"argument --out: {args.out} already holds {len(taken)} of the {len(plan)} runs "
                         f"(e.g. {taken[0]}); choose another --out or pass --overwrite to replace them")
    results = {}  # (variant, dataset) -> [accuracy per seed]
    energy = {}  # (variant, dataset) -> [list of BlockEnergy per seed]
    for dataset, name, seed, tc, out in plan:
        print(f"--- {dataset}: {name}, seed {seed}")
        try:
            result = train(tc, out, overwrite=args.overwrite, progress=not args.no_progress)
        except KeyboardInterrupt:
            return _interrupted(out, tc.epochs)
        except TrainingError as exc:
            print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
            return 1
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


# --------------------------------------------------------------------------- gradcheck
def cmd_gradcheck(args) -> int:
    if args.seed < 0:  # issue 18 sweep: numpy's own message named KERNEL
        raise UsageError(f"argument --seed: must be an integer >= 0, got {args.seed}")
    try:
        results = list(gradcheck.run_cases(args.kernels, seed=args.seed))
    except ValueError as exc:
        raise UsageError(f"argument KERNEL: {exc}") from None
    worst = 0.0
    for name, report, tol in results:
        print(gradcheck.format_report(name, report, tol))
        worst = max(worst, max(report.values()) / tol)
    print(f"worst relative error / tolerance: {worst:.2e} ({'ok' if worst <= 1 else 'FAIL'})")
    return 0 if worst <= 1 else 1


# --------------------------------------------------------------------------- parser
def _by_dataset(field: str) -> str:
    return ", ".join(f"{DATASET_DEFAULTS[d][field]:g} for {d}" for d in DATASET_DEFAULTS)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """The training settings. Every one defaults to None here, so that ``--resume``
    can tell which were given; the help states the real default."""
    d = TrainConfig()

    def add(*flags, default_text, help, **kwargs):
        p.add_argument(*flags, default=None, help=f"{help} (default: {default_text})", **kwargs)

    add("--dataset", choices=sorted(DATASET_DEFAULTS), default_text=d.dataset,
        help="digits: scikit-learn's 8x8 handwritten digits upsampled to 16x16 (static, repeated over T); "
             "events: generated DVS-like clips whose class is the direction of a moving square; "
             "cifar10, cifar100: the official binary files in --data-dir, with crop and flip augmentation")
    add("--preset", choices=sorted(PRESETS), default_text=d.preset, help="model preset")
    add("--no-tasa", dest="tasa", action="store_const", const=False, default_text="TASA on",
        help="switch TASA off: spatial-only attention inputs (T_AW = 1)")
    add("--no-nsad", dest="nsad", action="store_const", const=False, default_text="NSAD on",
        help="switch the attention denoiser NSAD off")
    add("--set", dest="model", action="append", metavar="FIELD=VALUE", default_text="the preset's values",
        help="override a model setting of the preset (a ModelConfig field, docs/spec.md §8), e.g. --set depth=2 "
             "--set frozen_u=true (repeatable); the data decides in_channels, img_size, num_classes and, for "
             "events, T; TASA and NSAD have --no-tasa and --no-nsad")
    add("--epochs", type=int, metavar="N", default_text=_by_dataset("epochs"), help="epochs")
    add("--batch-size", type=int, metavar="N", default_text=_by_dataset("batch_size"), help="minibatch size")
    add("--lr", type=float, default_text=_by_dataset("lr"), help="peak learning rate of AdamW")
    add("--min-lr", type=float, default_text=d.min_lr, help="learning rate at the end of the cosine")
    add("--weight-decay", type=float, default_text=d.weight_decay,
        help="decoupled weight decay (not on biases, BatchNorm, tau, NSAD)")
    add("--warmup-epochs", type=float, default_text=d.warmup_epochs, help="linear warmup length in epochs")
    add("--label-smoothing", type=float, default_text=d.label_smoothing,
        help="cross-entropy label smoothing (0: none)")
    add("--clip-grad", type=float, default_text=d.clip_grad, help="max gradient norm (0: no clipping)")
    add("--shift", type=int, metavar="N", default_text=d.shift,
        help="augmentation: random translation of each training sample by up to N pixels (0: none)")
    add("--seed", type=int, default_text=d.seed, help="parameters and minibatch order")
    add("--data-seed", type=int, default_text=d.data_seed, help="train/test split and generated events")
    add("--dtype", choices=["float32", "float64"], default_text=d.dtype, help="floating-point type")
    add("--train-subset", type=int, metavar="N", default_text=d.train_subset,
        help="train on the first N training samples only (0: all)")
    add("--test-subset", type=int, metavar="N", default_text=d.test_subset,
        help="test on the first N test samples only (0: all)")
    add("--data-dir", metavar="DIR", default_text="none; needed for cifar10 and cifar100",
        help="cifar10/cifar100: the folder holding cifar-10-batches-bin/ or cifar-100-binary/ (the official "
             "binary files; nothing is downloaded)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to an option's help unless it is None or the help states it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpFormatter
    parser = _Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, description=(
        "DS2TA, a pure-NumPy reference implementation: train, evaluate, ablate, gradient-check.\n\n"
        "A mistake in a command (an option, a path, a file) is one line, 'ds2ta-ref: error: ...', with exit\n"
        "status 2, before any data is loaded or any file written. A diverging run ends with one such line\n"
        "and status 1; Ctrl-C with one line naming the last checkpoint and the command that resumes it,\n"
        "and status 130."))
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", formatter_class=fmt, help="train a model (the main job)",
                       description="Train DS2TA (or an ablation) on built-in data with AdamW and a cosine "
                                   "schedule; a checkpoint and metrics are written after every epoch. A folder "
                                   "that holds a run is never overwritten without --overwrite, and a lock file "
                                   "(run.lock) keeps a second process out while a run is going.")
    _add_train_options(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: runs/<dataset>-<variant>-seed<seed>, e.g. runs/digits-ds2ta-seed0; "
                        "with --resume: the checkpoint's own folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in the output folder (default: refuse)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue the run stored in this checkpoint (or folder), in its folder and with its "
                        "recorded settings: any other training option must agree with them (default: a new run)")
    p.add_argument("--add-epochs", type=int, default=None, metavar="N",
                   help="with --resume: train N epochs more than the run was set to (a finished run too). The "
                        "cosine schedule is stretched over the new total, so the learning rate rises from where "
                        "it stood to the new curve's value and decays to --min-lr at the new end; the warmup is "
                        "not repeated (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: show one)")
    p.add_argument("--backend", choices=["numpy", "torch"], default="numpy",
                   help="numpy: this reference; torch: the same run with ds2ta_ref.torch (GPU, torchrun; "
                        "pip install 'ds2ta_ref[torch]'; docs/torch.md)")
    p.add_argument("--device", default="cpu",
                   help="with --backend torch: cpu, cuda, cuda:1, ... (under torchrun, cuda means cuda:LOCAL_RANK)")
    p.add_argument("--sync-bn", action="store_true",
                   help="with --backend torch under torchrun: BatchNorm statistics over the global batch "
                        "(default: per process)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", formatter_class=fmt, help="test accuracy, sparsity and energy of checkpoints",
                       description="Evaluate training checkpoints on their test split and print attention-map "
                                   "sparsity and energy per block side by side (paper Table 3 form). Every "
                                   "checkpoint is checked before any is evaluated.")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="training checkpoints (checkpoint.npz)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("ablate", formatter_class=fmt, help="Spikformer vs NSAD only vs DS2TA over seeds",
                       description="Train Spikformer (both switches off), NSAD only and DS2TA on the same data "
                                   "and seeds, and print the paper's Table 4 and Table 3 forms.")
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASET_DEFAULTS), default=["digits", "events"],
                   help="data sets (default: digits events)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help=f"epochs per run (default: train's, {_by_dataset('epochs')})")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="cifar10/cifar100 in --datasets: the folder holding cifar-10-batches-bin/ or "
                        "cifar-100-binary/, as for train (default: none)")
    p.add_argument("--out", default=os.path.join("runs", "ablate"), metavar="DIR",
                   help="output folder, one subfolder per data set, model and seed")
    p.add_argument("--overwrite", action="store_true", help="replace runs already in --out (default: refuse)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: show one)")
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
    from . import golden  # golden and compare: reference tensors for other implementations
    golden.add_commands(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (2 after a one-line error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        message = str(exc)
    except USER_ERRORS as exc:  # raised before any work: bad settings, folder or checkpoint
        message = str(_config_error(exc)) if isinstance(exc, ConfigError) else str(exc)
    except KeyboardInterrupt:  # outside a run (a run's own handler names its checkpoint)
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
