"""The ``ds2ta-ref`` command line (also ``python -m ds2ta_ref``).

Subcommands: ``train`` (the main job), ``evaluate``, ``ablate`` and ``gradcheck``;
``golden`` and ``compare`` (reference tensors for another implementation, :mod:`ds2ta_ref.golden`,
docs/golden.md).
The work is done by the run library (:mod:`ds2ta_ref.recipe`, :mod:`ds2ta_ref.runs`,
:mod:`ds2ta_ref.train`, :mod:`ds2ta_ref.ablation`); this module turns options into
its calls and its errors into one line.

Every mistake in what is asked (an option, a path, a file) ends the command
with one line on stderr, ``ds2ta-ref: error: ...``, naming the option or file
and what was expected, and exit status 2, before any data is loaded or any
file written. A run that diverges ends with one such line and status 1.
Ctrl-C ends with one line naming the last checkpoint and the command that
resumes it, and status 130; SIGTERM (``kill``, a batch scheduler) the same
line, saying "terminated", and status 143 (128 + 15, as a shell reports a
process ended by SIGTERM). Ctrl-C while the command is still starting
(importing) is the one line ``ds2ta-ref: interrupted`` and status 130.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from ._startup import interrupted_while_starting

try:  # Ctrl-C while these load (a second or so) is one line, not a traceback
    import argparse
    import functools
    import os
    import signal
    import sys
    import threading
    import time

    from . import ablation, checkpoint, cifar, data, devices, fingerprint, gradcheck, memory, model
    from ._version import __version__
    from .config import PRESETS, parse_overrides, preset
    from .energy import format_table
    from .recipe import (
        DATA_SHAPES,
        DATASET_DEFAULTS,
        SPLIT_SIZES,
        ConfigError,
        TrainConfig,
        build_data,
        check_data_files,
        check_data_matches,
        default_out,
        variant_name,
    )
    from .runs import CHECKPOINT, ResumeConflictError, RunFolderError, TrainingError, plan_resume
    from .train import evaluate, load_run, train
except KeyboardInterrupt:  # pragma: no cover - timing-dependent; tested through __init__'s guard
    interrupted_while_starting()
    raise

PROG = "ds2ta-ref"
USER_ERRORS = (
    ConfigError,
    RunFolderError,
    checkpoint.CheckpointError,
    memory.MemoryRequestError,
)  # issue 18 item 6: a request too large for memory


class UsageError(Exception):
    """A mistake on the command line; ``main`` prints it as one line and exits with status 2."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the same single line as every other error."""

    def error(self, message):
        sys.stderr.write(f"{PROG}: error: {_one_line(message)} (see '{self.prog} --help')\n")
        sys.exit(2)


# --------------------------------------------------------------------------- train
TRAIN_FIELDS = (
    "dataset",
    "preset",
    "tasa",
    "nsad",
    "model",
    "epochs",
    "batch_size",
    "lr",
    "min_lr",
    "weight_decay",
    "warmup_epochs",
    "label_smoothing",
    "clip_grad",
    "shift",
    "seed",
    "data_seed",
    "dtype",
    "train_subset",
    "test_subset",
    "data_dir",
)


def option(field: str) -> str:
    """The command-line option of a ``TrainConfig`` field."""
    return {"tasa": "--no-tasa", "nsad": "--no-nsad", "model": "--set", "out_dir": "--out"}.get(
        field, "--" + field.replace("_", "-")
    )


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
    assert tc.batch_size is not None  # TrainConfig fills its data set's default
    batch = min(tc.batch_size, tc.train_subset or SPLIT_SIZES[tc.dataset][0])
    sets = "".join(f" --set {k}={v}" for k, v in tc.model)
    memory.check(
        memory.train_bytes(cfg, batch, tc.dtype),
        f"training {tc.preset}{sets} on {tc.dataset} with batches of {batch} ({tc.dtype})",
    )


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by :func:`main`'s handler so that a run stops as on
    Ctrl-C (its lock released, an ``--overwrite``'s previous run put back); exit status 143."""


def _terminate(signum, frame):
    raise Terminated()


def _stopped(exc: KeyboardInterrupt) -> tuple[str, int]:
    """The word and exit status of a stop: Ctrl-C (130) or SIGTERM (143)."""
    return ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)


def _interrupted(exc: KeyboardInterrupt, out: str | None, epochs: int | None, before=None) -> int:
    """After Ctrl-C or SIGTERM: one line naming the last checkpoint and the command that
    resumes it (with ``--add-epochs`` if an extension had not saved an epoch yet). ``before``:
    the identity of the checkpoint in ``out`` when a new run started (see :func:`_identity`);
    the same file still there means this run wrote none (an ``--overwrite``'s previous run is back)."""
    word, code = _stopped(exc)
    path = os.path.join(out or ".", CHECKPOINT)
    if before is not None and _identity(path) == before:
        print(
            f"{PROG}: {word} before this run's first checkpoint; the previous run in {out} is as it was "
            f"(--overwrite replaces it only once the new run has written a checkpoint)",
            file=sys.stderr,
        )
        return code
    try:
        _, meta = checkpoint.load(path, verify=False)
        done, total = int(meta["epoch"]), int(meta["train_config"]["epochs"])
    except (ValueError, KeyError, TypeError):
        print(f"{PROG}: {word} before the first checkpoint was written; nothing to resume", file=sys.stderr)
        return code
    more = f" --add-epochs {epochs - total}" if epochs is not None and epochs > total else ""
    print(
        f"{PROG}: {word}; the last checkpoint is {path} (epoch {done} of {total}); continue with: "
        f"{PROG} train --resume {path}{more}",
        file=sys.stderr,
    )
    return code


def _identity(path: str):
    """``(device, inode, size, mtime)`` of a file, or None: what tells a checkpoint put back from a new one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def cmd_train(args) -> int:
    try:  # issue 18 item 4: --device and torchrun checked before any work (no data, folder or lock)
        devices.check_device(args.device, backend=args.backend)
    except devices.DeviceError as exc:
        raise UsageError(str(exc)) from None
    _check_out(args.out)  # issue 18 item 6
    given = _given(args)
    if args.resume is None:
        plan_resume(None, add_epochs=args.add_epochs or 0)  # --add-epochs needs --resume
        try:
            tc = TrainConfig(**given)
        except ConfigError as exc:
            raise _config_error(exc) from None
        out, resume, epochs = args.out or default_out(tc), None, tc.epochs
        recorded = tc
    else:
        if args.add_epochs is not None and args.add_epochs < 1:
            raise UsageError(f"argument --add-epochs: must be an integer >= 1, got {args.add_epochs}")
        try:  # issue 18 items 5, 6: plan_resume compares a given --data-dir as an absolute path, and accepts a
            # --set equal to the checkpoint's value
            plan = plan_resume(
                args.resume, given=given, add_epochs=args.add_epochs or 0, out_dir=args.out, overwrite=args.overwrite
            )
            assert plan is not None  # a resume was asked for
        except ResumeConflictError as exc:
            listed = "; ".join(
                f"{option(f)} (checkpoint: {_show(f, old)}, given: {_show(f, new)})" for f, old, new in exc.conflicts
            )
            hint = "; to train more epochs use --add-epochs N" if any(f == "epochs" for f, *_ in exc.conflicts) else ""
            raise UsageError(
                f"--resume continues {_resolved(args.resume)} with its recorded settings, which "
                f"these options contradict: {listed}{hint}"
            ) from None
        resume, recorded = plan.checkpoint, plan.recorded
        fingerprint.verify(plan.meta.get("data"), recorded, resume)  # issue 18 item 5: CIFAR files moved or changed
        if plan.finished:
            last = plan.history[-1] if plan.history else None
            acc = f", final test accuracy {100 * last['test_acc']:.2f}%" if last else ""
            print(
                f"{resume} is a finished run ({plan.start_epoch} of {plan.tc.epochs} epochs{acc}); nothing to do. "
                f"To train more epochs: {PROG} train --resume {resume} --add-epochs N"
            )
            return 0
        out = os.path.dirname(resume) or "."  # for messages, as the user wrote it
        tc, epochs = None, plan.tc.epochs
    try:
        check_data_files(recorded)
        if resume is None and args.backend == "numpy":  # issue 18 item 6 (the estimate is the NumPy backend's;
            _check_memory(recorded)  # torch keeps other arrays, on a GPU in the GPU's memory)
    except ConfigError as exc:
        raise _config_error(exc) from None
    run = train
    if args.backend == "torch":
        try:
            from .torch.train import train_torch  # torch is imported only here
        except ImportError as exc:
            raise UsageError(
                f"argument --backend torch: PyTorch is not installed ({exc}); pip install 'ds2ta_ref[torch]'"
            ) from None
        run = functools.partial(train_torch, device=args.device, sync_bn=args.sync_bn)
    elif args.device != "cpu" or args.sync_bn:
        raise UsageError("arguments --device and --sync-bn: need --backend torch")
    memory.reuse_freed_memory()  # a step's large arrays are reused, not page-faulted in anew each step
    before = _identity(os.path.join(out, CHECKPOINT)) if resume is None else None
    t0 = time.perf_counter()
    try:
        result = run(
            tc,
            out if resume is None else None,
            resume=resume,
            add_epochs=args.add_epochs or 0,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        if int(os.environ.get("RANK", "0")) != 0:
            return 0  # under torchrun, rank 0 alone reports
    except KeyboardInterrupt as exc:
        return _interrupted(exc, out, epochs, before)
    except TrainingError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a full disk: the files written before are intact (atomic writes)
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"{PROG}: error: cannot write{where}: {exc.strerror or exc}; files already written in {out}/ are intact",
            file=sys.stderr,
        )
        return 1
    last = result.history[-1]
    print(
        f"final test accuracy: {100 * last['test_acc']:.2f}% after {last['epoch']} epochs "
        f"({time.perf_counter() - t0:.0f} s); parameters: {model.count_params(result.params):,}"
    )
    return 0


def _resolved(resume: str) -> str:
    return os.path.join(resume, CHECKPOINT) if os.path.isdir(resume) else resume


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
        print(
            f"{name}: test accuracy {100 * result.accuracy:.2f}% on {tc.dataset} (epoch {meta['epoch']}), "
            f"firing rate {result.spike_rate:.3f}"
        )
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
    try:  # every run checked before the first: settings, data files (issue 18 item 6) and memory
        runs = ablation.plan(args.datasets, args.seeds, args.epochs, args.out, data_dir=args.data_dir or "")
        for r in runs:
            _check_memory(r.tc)  # issue 18 item 6
    except ConfigError as exc:
        raise _config_error(exc, {"seed": "--seeds", "dataset": "--datasets"}) from None
    taken = ablation.taken(runs)
    if taken and not args.overwrite:
        raise UsageError(
            f"argument --out: {args.out} already holds {len(taken)} of the {len(runs)} runs "
            f"(e.g. {taken[0]}); choose another --out or pass --overwrite to replace them"
        )
    results = ablation.results_for(runs)
    for r in runs:
        before = _identity(os.path.join(r.out, CHECKPOINT))
        try:
            ablation.run_one(r, results, overwrite=args.overwrite, progress=not args.no_progress)
        except KeyboardInterrupt as exc:
            return _interrupted(exc, r.out, r.tc.epochs, before)
        except TrainingError as exc:
            print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
            return 1
    print("\n" + ablation.accuracy_table(results))
    print("\n" + ablation.energy_tables(results))
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


# --------------------------------------------------------------------------- golden and compare
def cmd_golden(args) -> int:
    from . import golden

    if args.suite is not None:
        given = [
            flag
            for flag, value in (
                ("--preset", args.preset),
                ("--out", args.out),
                ("--set", args.set),
                ("--seed", args.seed),
                ("--batch", args.batch),
            )
            if value is not None
        ]
        if given:
            raise UsageError(f"argument --suite: the suite's cases fix their own settings; drop {', '.join(given)}")
        try:
            names = golden.write_suite(args.suite, overwrite=args.overwrite)
        except FileExistsError as exc:
            raise UsageError(f"argument --suite: {exc}") from None
        except OSError as exc:
            raise UsageError(f"argument --suite: cannot write into {args.suite!r}: {exc.strerror or exc}") from None
        print(f"wrote {len(names)} cases and suite.json into {args.suite}: {', '.join(names)} (docs/golden.md)")
        return 0
    if args.preset is None or args.out is None:
        raise UsageError("arguments --preset and --out are required (or --suite DIR for the conformance suite)")
    seed = 0 if args.seed is None else args.seed
    batch = 2 if args.batch is None else args.batch
    try:
        cfg = preset(args.preset, **parse_overrides(args.set or []))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        arrays = golden.write(args.out, cfg, seed=seed, batch=batch, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write {args.out!r}: {exc.strerror or exc}") from None
    print(
        f"wrote {args.out}: {len(arrays)} arrays, preset {args.preset!r}, seed {seed}, batch {batch} "
        f"(layout: docs/golden.md)"
    )
    return 0


def cmd_compare(args) -> int:
    from . import golden

    if args.max_rows < 0:
        raise UsageError(f"argument --max-rows: must be >= 0, got {args.max_rows}")
    try:
        if args.suite:
            if args.only:
                raise UsageError("argument --only: not with --suite (a suite compares every key of every case)")
            suite = golden.compare_suite(
                args.reference,
                args.candidate,
                rtol=args.rtol,
                atol=args.atol,
                floor=args.floor,
                skip_missing=args.skip_missing,
            )
            print(suite.table())
            return 0 if suite.passed else 1
        if args.skip_missing:
            raise UsageError("argument --skip-missing: only with --suite")
        result = golden.compare(
            args.reference, args.candidate, rtol=args.rtol, atol=args.atol, floor=args.floor, only=args.only
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(result.table(args.max_rows))
    return 0 if result.passed else 1


def _add_golden_commands(sub) -> None:
    """The ``golden`` and ``compare`` subcommands (docs/golden.md)."""
    p = sub.add_parser(
        "golden",
        help="write a golden file (or the conformance suite): reference tensors for another implementation",
        description="Write one float64 .npz holding a whole training step of the model (input, target, "
        "parameters, BatchNorm state before and after, logits, loss, every gradient, the stem's and "
        "each block's spikes and attention maps) and each kernel alone; or, with --suite DIR, the "
        "conformance suite: several small such files and suite.json. Layout: docs/golden.md.",
    )
    p.add_argument(
        "--suite",
        default=None,
        metavar="DIR",
        help="write the conformance suite into DIR (<case>.npz and suite.json) instead of one file",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="model preset (one file)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of every random draw; the same seed gives the same bytes (default 0)",
    )
    p.add_argument("--out", metavar="FILE", help="the .npz file to write (one file)")
    p.add_argument("--batch", type=int, default=None, help="batch size B, at least 2 (default 2)")
    p.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="FIELD=VALUE",
        help="override a ModelConfig field, e.g. --set depth=2 --set nsad_rounding=floor (repeatable)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace FILE (or the suite's files) if it exists")
    p.set_defaults(func=cmd_golden)

    p = sub.add_parser(
        "compare",
        help="compare another implementation's tensors with a golden file (or a suite)",
        description="Compare CANDIDATE (an .npz with the golden keys your implementation computes) with "
        "REFERENCE (a golden file): max abs and rel error per tensor, worst first, missing and "
        "unexpected keys, and the first tensor in forward order that departs. With --suite, "
        "REFERENCE and CANDIDATE are folders: one line per case and a total. Exit status 0 only "
        "when everything passes, 1 when something departs, 2 on errors.",
    )
    p.add_argument("reference", metavar="REFERENCE", help="a golden file (with --suite: the suite's folder)")
    p.add_argument(
        "candidate", metavar="CANDIDATE", help="your .npz (with --suite: the folder holding <case>.npz for every case)"
    )
    p.add_argument("--suite", action="store_true", help="compare a whole suite: REFERENCE and CANDIDATE are folders")
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="with --suite: skip (and name) cases without a candidate file instead of failing",
    )
    p.add_argument(
        "--rtol",
        type=float,
        default=None,
        help="relative tolerance (default 1e-7, for float64; a float32 candidate fails unless --rtol "
        "is given: try 1e-4)",
    )
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument(
        "--floor",
        type=float,
        default=1e-4,
        help="a tensor whose largest magnitude is below FLOOR times the largest of its group "
        "(grad/, act/, lif/, ...) counts as ~0 and is compared on that scale (default 1e-4)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="PREFIX",
        help="compare only the keys starting with PREFIX, e.g. --only lif/ (repeatable)",
    )
    p.add_argument("--max-rows", type=int, default=25, help="rows of the table, failures first (default 25; 0: all)")
    p.set_defaults(func=cmd_compare)


# --------------------------------------------------------------------------- parser
def _by_dataset(field: str) -> str:
    return ", ".join(f"{DATASET_DEFAULTS[d][field]:g} for {d}" for d in DATASET_DEFAULTS)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """The training settings. Every one defaults to None here, so that ``--resume``
    can tell which were given; the help states the real default."""
    d = TrainConfig()

    def add(*flags, default_text, help, **kwargs):
        p.add_argument(*flags, default=None, help=f"{help} (default: {default_text})", **kwargs)

    add(
        "--dataset",
        choices=sorted(DATASET_DEFAULTS),
        default_text=d.dataset,
        help="digits: scikit-learn's 8x8 handwritten digits upsampled to 16x16 (static, repeated over T); "
        "events: generated DVS-like clips whose class is the direction of a moving square; "
        "cifar10, cifar100: the official binary files in --data-dir, with crop and flip augmentation",
    )
    add("--preset", choices=sorted(PRESETS), default_text=d.preset, help="model preset")
    add(
        "--no-tasa",
        dest="tasa",
        action="store_const",
        const=False,
        default_text="TASA on",
        help="switch TASA off: spatial-only attention inputs (T_AW = 1)",
    )
    add(
        "--no-nsad",
        dest="nsad",
        action="store_const",
        const=False,
        default_text="NSAD on",
        help="switch the attention denoiser NSAD off",
    )
    add(
        "--set",
        dest="model",
        action="append",
        metavar="FIELD=VALUE",
        default_text="the preset's values",
        help="override a model setting of the preset (a ModelConfig field, docs/spec.md §8), e.g. --set depth=2 "
        "--set frozen_u=true (repeatable); the data decides in_channels, img_size, num_classes and, for "
        "events, T; TASA and NSAD have --no-tasa and --no-nsad",
    )
    add("--epochs", type=int, metavar="N", default_text=_by_dataset("epochs"), help="epochs")
    add("--batch-size", type=int, metavar="N", default_text=_by_dataset("batch_size"), help="minibatch size")
    add("--lr", type=float, default_text=_by_dataset("lr"), help="peak learning rate of AdamW")
    add("--min-lr", type=float, default_text=d.min_lr, help="learning rate at the end of the cosine")
    add(
        "--weight-decay",
        type=float,
        default_text=d.weight_decay,
        help="decoupled weight decay (not on biases, BatchNorm, tau, NSAD)",
    )
    add("--warmup-epochs", type=float, default_text=d.warmup_epochs, help="linear warmup length in epochs")
    add("--label-smoothing", type=float, default_text=d.label_smoothing, help="cross-entropy label smoothing (0: none)")
    add("--clip-grad", type=float, default_text=d.clip_grad, help="max gradient norm (0: no clipping)")
    add(
        "--shift",
        type=int,
        metavar="N",
        default_text=d.shift,
        help="augmentation: random translation of each training sample by up to N pixels (0: none)",
    )
    add("--seed", type=int, default_text=d.seed, help="parameters and minibatch order")
    add("--data-seed", type=int, default_text=d.data_seed, help="train/test split and generated events")
    add("--dtype", choices=["float32", "float64"], default_text=d.dtype, help="floating-point type")
    add(
        "--train-subset",
        type=int,
        metavar="N",
        default_text=d.train_subset,
        help="train on the first N training samples only (0: all)",
    )
    add(
        "--test-subset",
        type=int,
        metavar="N",
        default_text=d.test_subset,
        help="test on the first N test samples only (0: all)",
    )
    add(
        "--data-dir",
        metavar="DIR",
        default_text="none; needed for cifar10 and cifar100",
        help="cifar10/cifar100: the folder holding cifar-10-batches-bin/ or cifar-100-binary/ (the official "
        "binary files; nothing is downloaded)",
    )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to an option's help unless it is None or the help states it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpFormatter
    parser = _Parser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "DS2TA, a pure-NumPy reference implementation: train, evaluate, ablate, gradient-check.\n\n"
            "A mistake in a command (an option, a path, a file) is one line, 'ds2ta-ref: error: ...', with exit\n"
            "status 2, before any data is loaded or any file written. A diverging run ends with one such line\n"
            "and status 1; Ctrl-C with one line naming the last checkpoint and the command that resumes it,\n"
            "and status 130; SIGTERM likewise, with status 143."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        formatter_class=fmt,
        help="train a model (the main job)",
        description="Train DS2TA (or an ablation) on built-in data with AdamW and a cosine "
        "schedule; a checkpoint and metrics are written after every epoch. A folder "
        "that holds a run is never overwritten without --overwrite, and a lock file "
        "(run.lock) keeps a second process out while a run is going.",
    )
    _add_train_options(p)
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (default: runs/<dataset>-<variant>-seed<seed>, e.g. runs/digits-ds2ta-seed0; "
        "with --resume: the checkpoint's own folder)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in the output folder: it is moved aside to <out>.old-<timestamp> "
        "and deleted once the new run has written its first checkpoint, put back if the new run "
        "stops before (default: refuse)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue the run stored in this checkpoint (or folder), in its folder and with its "
        "recorded settings: any other training option must agree with them (default: a new run)",
    )
    p.add_argument(
        "--add-epochs",
        type=int,
        default=None,
        metavar="N",
        help="with --resume: train N epochs more than the run was set to (a finished run too). The "
        "cosine schedule is stretched over the new total, so the learning rate rises from where "
        "it stood to the new curve's value and decays to --min-lr at the new end; the warmup is "
        "not repeated (default: 0)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: show one)")
    p.add_argument(
        "--backend",
        choices=["numpy", "torch"],
        default="numpy",
        help="numpy: this reference; torch: the same run with ds2ta_ref.torch (GPU, torchrun; "
        "pip install 'ds2ta_ref[torch]'; docs/torch.md)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="with --backend torch: cpu, cuda, cuda:1, ... (under torchrun, cuda means cuda:LOCAL_RANK)",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="with --backend torch under torchrun: BatchNorm statistics over the global batch (default: per process)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        formatter_class=fmt,
        help="test accuracy, sparsity and energy of checkpoints",
        description="Evaluate training checkpoints on their test split and print attention-map "
        "sparsity and energy per block side by side (paper Table 3 form). Every "
        "checkpoint is checked before any is evaluated.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="training checkpoints (checkpoint.npz)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "ablate",
        formatter_class=fmt,
        help="Spikformer vs NSAD only vs DS2TA over seeds",
        description="Train Spikformer (both switches off), NSAD only and DS2TA on the same data "
        "and seeds, and print the paper's Table 4 and Table 3 forms.",
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        choices=sorted(DATASET_DEFAULTS),
        default=["digits", "events"],
        help="data sets (default: digits events)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help=f"epochs per run (default: train's, {_by_dataset('epochs')})",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="cifar10/cifar100 in --datasets: the folder holding cifar-10-batches-bin/ or "
        "cifar-100-binary/, as for train (default: none)",
    )
    p.add_argument(
        "--out",
        default=os.path.join("runs", "ablate"),
        metavar="DIR",
        help="output folder, one subfolder per data set, model and seed",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace runs already in --out, each as train --overwrite does (default: refuse)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: show one)")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser(
        "gradcheck",
        formatter_class=fmt,
        help="check every hand-written backward against float64 finite differences",
        description="Check the hand-written backward of each kernel and of a small whole model "
        "against central differences in float64, in smooth mode, and print the worst "
        "relative error per argument.",
    )
    p.add_argument(
        "kernels",
        nargs="*",
        metavar="KERNEL",
        help=f"kernels to check, among {', '.join(gradcheck.TOLERANCE)}, or case names (default: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.set_defaults(func=cmd_gradcheck)
    _add_golden_commands(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (2 after a one-line error; 130 after
    Ctrl-C, 143 after SIGTERM, which is handled as Ctrl-C while ``main`` runs)."""
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except UsageError as exc:
        message = str(exc)
    except USER_ERRORS as exc:  # raised before any work: bad settings, folder or checkpoint
        message = str(_config_error(exc)) if isinstance(exc, ConfigError) else str(exc)
    except KeyboardInterrupt as exc:  # outside a run (a run's own handler names its checkpoint)
        word, code = _stopped(exc)
        print(f"{PROG}: {word}", file=sys.stderr)
        return code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
