"""Run folders, checkpoints, metrics and the resume rules, for both backends and the command line.

A run lives in one folder: ``checkpoint.npz``, ``metrics.csv`` and
``metrics.json``, all written atomically after every epoch (:meth:`RunFolder.save`).
The folder is never overwritten by accident:

* a new run refuses a folder that holds a run unless ``overwrite``; with
  ``overwrite`` the previous run's files are first *moved aside* into the
  sibling folder ``<out>.old-<YYYYmmdd-HHMMSS>`` and deleted only once the new
  run has written its first checkpoint. If the new run stops before that
  (bad data, divergence, Ctrl-C, SIGTERM), they are put back where they were;
  if it is killed (SIGKILL), the next start in that folder refuses and names
  the folder that holds them;
* a lock file ``run.lock`` (pid, host, start time) keeps a second process out
  while a run is going; a lock whose process is gone is reported with the
  command that clears it and what the folder holds, never taken over;
* a resumed run continues in its checkpoint's own folder with its recorded
  settings (:func:`plan_resume` holds every rule).

A checkpoint holds ``param.*``, ``state.*``, ``optim.*`` (the NumPy AdamW's
names: ``m.<name>``, ``v.<name>``, ``step``) and ``rng.*`` arrays plus metadata
(``epoch``, ``step``, ``train_config``, ``model_config``, ``history``, and ``data``: the data
fingerprint of :mod:`ds2ta_ref.fingerprint`); either
backend writes and reads the same names (:func:`checkpoint_arrays`, :func:`load_run`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import io
import json
import numbers
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from . import checkpoint, model
from .config import ModelConfig, differing_overrides
from .recipe import ConfigError, EvalResult, TrainConfig

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "LOCK",
    "RunFolderError",
    "TrainingError",
    "ResumeConflictError",
    "TrainResult",
    "ResumePlan",
    "RunFolder",
    "plan_resume",
    "load_run",
    "resume_conflicts",
    "checkpoint_arrays",
    "save_checkpoint",
    "write_metrics",
    "epoch_row",
    "describe_run",
    "check_lock",
    "find_moved_aside",
    "progress_bar",
    "diverged",
]

CHECKPOINT = "checkpoint.npz"
METRICS = ("metrics.csv", "metrics.json")
LOCK = "run.lock"
RUN_FILES = (CHECKPOINT, *METRICS)
ASIDE = ".old-"  # <out>.old-<YYYYmmdd-HHMMSS>[-n]: a previous run moved aside by --overwrite
_ASIDE_NAME = re.compile(r"\.old-\d{8}-\d{6}(-\d+)?$")


class RunFolderError(ValueError):
    """An output folder cannot take this run: it holds another run, another
    process holds its lock (or left a stale one), or it cannot be written.
    Raised before any work is done; the message says what to do instead."""


class TrainingError(RuntimeError):
    """Training diverged: the message names the epoch, step, learning rate, the
    first non-finite tensor and the last good checkpoint (left as it was)."""


class ResumeConflictError(ConfigError):
    """Settings given to a resumed run contradict its checkpoint's; ``conflicts`` lists
    them as ``(field, checkpoint's value, given value)``."""

    def __init__(self, conflicts: list[tuple[str, object, object]]):
        super().__init__(
            conflicts[0][0],
            "and the other settings must be the checkpoint's, but "
            + "; ".join(f"{f} is {old!r} in the checkpoint, {new!r} given" for f, old, new in conflicts),
        )
        self.conflicts = conflicts


@dataclass
class TrainResult:
    params: dict
    state: dict
    cfg: ModelConfig
    history: list  # one dict per epoch, from the first epoch of the run
    out_dir: str | None
    trained_epochs: int = 0  # epochs trained by this call (0: a finished run resumed, nothing to do)


# --------------------------------------------------------------------------- checkpoints
def checkpoint_arrays(params: Mapping, state: Mapping, optim_arrays: Mapping, rng: np.random.Generator) -> dict:
    """A training checkpoint's arrays: ``param.*``, ``state.*``, ``optim.*``, ``rng.*``."""
    arrays = {f"param.{k}": v for k, v in params.items()}
    arrays.update({f"state.{k}": v for k, v in state.items()})
    arrays.update({f"optim.{k}": v for k, v in optim_arrays.items()})
    arrays.update(checkpoint.rng_state_to_arrays(rng, prefix="rng."))
    return arrays


def save_checkpoint(
    path,
    tc: TrainConfig,
    cfg: ModelConfig,
    params: Mapping,
    state: Mapping,
    optim_arrays: Mapping,
    rng: np.random.Generator,
    epoch: int,
    step: int,
    history: list,
    *,
    data: dict | None = None,
    **extra,
) -> None:
    """Write a training checkpoint atomically; ``data`` (the data fingerprint, :mod:`ds2ta_ref.fingerprint`)
    is stored as ``meta["data"]`` unless None; ``extra`` metadata (e.g. ``backend``) is added to the standard's."""
    meta = dict(
        epoch=epoch,
        step=step,
        train_config=dataclasses.asdict(tc),
        model_config=dataclasses.asdict(cfg),
        history=history,
        **extra,
    )
    if data is not None:  # issue 18 item 5: the data fingerprint
        meta["data"] = data
    checkpoint.save(path, checkpoint_arrays(params, state, optim_arrays, rng), meta)


def load_run(path) -> tuple[TrainConfig, ModelConfig, dict, dict, dict, dict]:
    """Read a training checkpoint: ``(train_config, model_config, params, state, arrays, meta)``.

    Every parameter and BatchNorm statistic is validated by name and shape
    against the stored model config, every array must be numbers without NaN
    or infinity, and parameters must have the run's dtype. Every problem
    raises ``CheckpointError`` (a ``ValueError``) naming the file and the entry.
    """
    arrays, meta = checkpoint.load(path)
    where = f"checkpoint {str(path)!r}"
    try:
        tc = TrainConfig(**meta["train_config"])
        cfg = ModelConfig(**meta["model_config"])
        int(meta["epoch"]), int(meta["step"]), list(meta["history"])
    except (KeyError, TypeError, ValueError) as exc:
        raise checkpoint.CheckpointError(f"{where} has invalid metadata: {exc}") from None
    checkpoint.check_numeric({k: v for k, v in arrays.items() if k != "rng.bit_generator"}, path=path)
    params = {k[len("param.") :]: v for k, v in arrays.items() if k.startswith("param.")}
    state = {k[len("state.") :]: v for k, v in arrays.items() if k.startswith("state.")}
    try:
        checkpoint.validate(params, model.param_shapes(cfg), what=f"{where} parameters")
        checkpoint.validate(state, model.state_shapes(cfg), what=f"{where} BatchNorm state")
    except ValueError as exc:
        raise checkpoint.CheckpointError(str(exc)) from None
    for name, value in params.items():
        if value.dtype != np.dtype(tc.dtype):
            raise checkpoint.CheckpointError(
                f"{where}: array 'param.{name}' has dtype {value.dtype}, but the run's dtype is {tc.dtype}"
            )
    shapes = model.param_shapes(cfg)  # issue 18 item 7: variances, optimizer and RNG state, epoch <= epochs
    assert tc.epochs is not None  # TrainConfig fills its data set's default
    checkpoint.check_training_arrays(
        arrays, meta, path, trainable={n: shapes[n] for n in model.trainable(cfg)}, epochs=tc.epochs
    )
    return tc, cfg, params, state, arrays, meta


# --------------------------------------------------------------------------- resume
def resume_conflicts(recorded: TrainConfig, given: Mapping[str, object]) -> list[tuple[str, object, object]]:
    """The settings in ``given`` (field -> value) that differ from a checkpoint's
    ``recorded`` ones, as ``(field, recorded value, given value)``; a resumed
    run keeps its recorded settings, so each of these is an error."""
    conflicts = []
    for field, value in given.items():
        old = getattr(recorded, field)
        if value is not None and value != old:
            conflicts.append((field, old, value))
    return conflicts


@dataclass
class ResumePlan:
    """A checked resume: where the run continues and from what."""

    checkpoint: str  # the checkpoint file, as given (a folder given is resolved to its checkpoint.npz)
    folder: str  # the checkpoint's folder (absolute), where the run continues
    recorded: TrainConfig  # the checkpoint's settings
    tc: TrainConfig  # the settings of the continued run: recorded, with epochs + add_epochs
    cfg: ModelConfig
    params: dict
    state: dict
    arrays: dict  # every array of the checkpoint
    meta: dict
    start_epoch: int  # epochs done
    step: int  # optimizer steps done
    history: list

    @property
    def finished(self) -> bool:
        """True if the continued run has no epoch left to train."""
        assert self.tc.epochs is not None  # TrainConfig.__post_init__ fills the data set's default
        return self.start_epoch >= self.tc.epochs

    def optimizer_arrays(self) -> dict[str, np.ndarray]:
        """The optimizer state (``m.<name>``, ``v.<name>``, ``step``), names without ``optim.``."""
        return {k[len("optim.") :]: v for k, v in self.arrays.items() if k.startswith("optim.")}

    def rng(self) -> np.random.Generator:
        """The minibatch/augmentation generator, where the checkpoint left it."""
        return checkpoint.rng_from_arrays(self.arrays, prefix="rng.")


def plan_resume(
    resume, *, given: TrainConfig | Mapping | None = None, add_epochs=0, out_dir=None, overwrite: bool = False
) -> ResumePlan | None:
    """Every rule of continuing a run (both trainers and the command line call this).

    Args:
        resume: a checkpoint file or its folder; None for a new run (then the function
            only checks that nothing asks for a resume and returns None).
        given: the settings given with it: a ``TrainConfig`` (each field must equal the
            checkpoint's, except ``epochs`` when ``add_epochs`` is given), or a mapping of
            only the fields given (the command line's options; ``epochs`` included), or None.
            In a mapping, ``data_dir`` is compared as an absolute path, and ``model`` overrides that
            each equal the checkpoint's model value are accepted (``--set depth=2`` on a depth-2 run).
        add_epochs: train this many epochs more than the run was set to (an integer >= 0:
            Python's or NumPy's). The cosine schedule is stretched over the new total.
        out_dir: must be None or the checkpoint's own folder (a run continues there).
        overwrite: must be False (a resumed run continues its own folder).

    Raises:
        ConfigError: ``add_epochs`` or ``overwrite`` invalid; ``ResumeConflictError`` (a
            ``ConfigError``) if ``given`` contradicts the checkpoint.
        RunFolderError: ``out_dir`` is another folder, or the checkpoint's folder holds another run's checkpoint.
        CheckpointError: the checkpoint cannot be read or fails its checks.
    """
    if isinstance(add_epochs, bool) or not isinstance(add_epochs, numbers.Integral) or add_epochs < 0:
        raise ConfigError("add_epochs", "must be an integer >= 0", add_epochs)
    add_epochs = int(add_epochs)
    if resume is None:
        if add_epochs:
            raise ConfigError("add_epochs", "extends a resumed run, so it needs resume (--resume)", add_epochs)
        return None
    if overwrite:
        raise ConfigError("overwrite", "is not allowed with resume (--resume), which continues a run in its own folder")
    resume = os.fspath(resume)
    if os.path.isdir(resume):
        resume = os.path.join(resume, CHECKPOINT)
    recorded, cfg, params, state, arrays, meta = load_run(resume)  # first: a missing file is the first mistake
    folder = os.path.dirname(os.path.abspath(resume))
    if out_dir is not None and os.path.abspath(out_dir) != folder:
        raise RunFolderError(
            f"a resumed run continues in its checkpoint's folder {folder!r}, "
            f"not in {os.fspath(out_dir)!r}; leave out --out"
        )
    here = os.path.join(folder, CHECKPOINT)
    if os.path.exists(here) and os.path.exists(resume) and not os.path.samefile(here, resume):
        raise RunFolderError(
            f"{resume!r} would continue in {folder!r}, which holds another run's "
            f"{CHECKPOINT}; copy {resume!r} into an empty folder and resume it there"
        )
    if isinstance(given, TrainConfig):
        given = dataclasses.asdict(given)
        if add_epochs:
            given.pop("epochs")
    else:  # only the fields given (the command line's)
        given = dict(given or {})
        if given.get("data_dir"):  # issue 18 item 5: compared with the absolute path a checkpoint records
            given["data_dir"] = os.path.abspath(given["data_dir"])
        if given.get("model") and not differing_overrides(cfg, given["model"]):
            given["model"] = recorded.model  # issue 18 item 6: a --set equal to the checkpoint's value is accepted
    conflicts = resume_conflicts(recorded, given)
    if conflicts:
        raise ResumeConflictError(conflicts)
    tc = dataclasses.replace(recorded, epochs=recorded.epochs + add_epochs)
    return ResumePlan(
        resume,
        folder,
        recorded,
        tc,
        cfg,
        params,
        state,
        arrays,
        meta,
        int(meta["epoch"]),
        int(meta["step"]),
        list(meta["history"]),
    )


# --------------------------------------------------------------------------- metrics
def epoch_row(
    epoch, step, lr, loss_sum, correct, rate_sum, seen, test: EvalResult, seconds, epochs, log: Callable[[str], None]
) -> dict:
    """One epoch's line of ``metrics.csv``/``metrics.json``, logged as one summary line
    (both backends write the same rows from their sums over the epoch's samples)."""
    row = dict(
        epoch=epoch,
        step=step,
        lr=lr,
        loss=loss_sum / seen,
        train_acc=correct / seen,
        test_acc=test.accuracy,
        test_loss=test.loss,
        firing_rate=rate_sum / seen,
        attention_sparsity=float(np.mean([e.sparsity for e in test.energy])),
        seconds=seconds,
    )
    log(
        f"epoch {epoch:3d}/{epochs}  loss {row['loss']:.4f}  train {100 * row['train_acc']:.2f}%  "
        f"test {100 * row['test_acc']:.2f}%  firing {row['firing_rate']:.3f}  "
        f"attn sparsity {100 * row['attention_sparsity']:.1f}%  {seconds:.1f}s"
    )
    return row


def write_metrics(out_dir: str, history: list) -> None:
    """``metrics.json`` and ``metrics.csv``, each written atomically (a full disk leaves the old file)."""
    with checkpoint.atomic_write(os.path.join(out_dir, "metrics.json")) as f:
        f.write(json.dumps(history, indent=1).encode())
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    with checkpoint.atomic_write(os.path.join(out_dir, "metrics.csv")) as f:
        f.write(text.getvalue().encode())


def progress_bar(iterable, total, desc, enabled):
    """A tqdm progress bar on stderr if ``enabled`` and tqdm is installed (the "digits" extra), else ``iterable``."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


def diverged(epoch: int, when: str, what: str, kept: str) -> TrainingError:
    """The error of a diverging run (both backends): ``training diverged at epoch E, <when>: <what>; <kept>``."""
    return TrainingError(f"training diverged at epoch {epoch}, {when}: {what}; {kept}")


# --------------------------------------------------------------------------- run folders
def describe_run(out_dir: str) -> str:
    """What the run files in ``out_dir`` hold, in a few words (for messages)."""
    path = os.path.join(out_dir, CHECKPOINT)
    if not os.path.exists(path):
        return "metrics of a run" if any(os.path.exists(os.path.join(out_dir, m)) for m in METRICS) else "no run"
    try:
        _, meta = checkpoint.load(path, verify=False)
        return (
            f"checkpoint at epoch {meta['epoch']} of {meta['train_config']['epochs']}, "
            f"{meta['train_config']['dataset']}, seed {meta['train_config']['seed']}"
        )
    except (ValueError, KeyError, TypeError):
        return "a checkpoint that cannot be read"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _holds_run(folder: str) -> list[str]:
    return [name for name in RUN_FILES if os.path.exists(os.path.join(folder, name))]


def find_moved_aside(out_dir: str) -> list[str]:
    """The folders ``<out_dir>.old-<timestamp>`` holding a previous run that ``overwrite`` moved
    aside and that is still there (its new run was killed before its first checkpoint)."""
    base = os.path.abspath(out_dir)
    return [
        p
        for p in sorted(glob.glob(glob.escape(base) + ASIDE + "*"))
        if _ASIDE_NAME.search(p[len(base) :]) and os.path.isdir(p) and _holds_run(p)
    ]


def _aside_advice(out_dir: str, aside: str) -> str:
    q_aside, q_out = shlex.quote(aside), shlex.quote(os.path.abspath(out_dir))
    if os.path.exists(os.path.join(out_dir, CHECKPOINT)):
        return (
            f"the previous run that --overwrite moved aside is in {aside} (the new run in {out_dir} wrote a "
            f"checkpoint, so it is no longer needed: delete it with: rm -r {q_aside})"
        )
    return (
        f"the previous run that --overwrite moved aside is in {aside} (the new run never wrote a checkpoint): "
        f"put it back with: mv {q_aside}/* {q_out}/ && rmdir {q_aside}; or delete it with: rm -r {q_aside}"
    )


def check_lock(out_dir: str) -> None:
    """Raise ``RunFolderError`` if ``out_dir`` holds a lock: a live run's, or a stale one. A stale
    lock (its process gone, same host) is reported with the command that clears it, and says
    whether the folder holds a checkpoint (and where a run moved aside by ``overwrite`` is)."""
    path = os.path.join(out_dir, LOCK)
    try:
        with open(path) as f:
            holder = json.load(f)
        pid, host, started = int(holder["pid"]), str(holder["host"]), str(holder["started"])
    except (FileNotFoundError, NotADirectoryError):
        return
    except (OSError, ValueError, KeyError, TypeError):
        raise RunFolderError(
            f"{out_dir!r} has a lock file {path!r} that cannot be read; if no run is using "
            f"this folder, delete it with: rm {shlex.quote(path)}; then start again"
        ) from None
    who = f"process {pid} on {host}, started {started}"
    if host != socket.gethostname():
        raise RunFolderError(
            f"{out_dir!r} is locked by {who} ({path!r}); this machine cannot tell whether it "
            f"still runs: if not, delete the lock with: rm {shlex.quote(path)}; then start again"
        )
    if _pid_alive(pid):
        raise RunFolderError(
            f"{out_dir!r} is in use by another training run ({who}); wait for it to end "
            f"or choose another output folder (--out)"
        )
    ckpt = os.path.join(out_dir, CHECKPOINT)
    if os.path.exists(ckpt):
        holds = f"the folder holds a {describe_run(out_dir)} ({ckpt}), which --resume continues"
    else:
        holds = f"the folder holds no checkpoint ({ckpt} does not exist)"
    aside = holder.get("moved_aside")
    if isinstance(aside, str) and os.path.isdir(aside) and _holds_run(aside):
        holds += "; " + _aside_advice(out_dir, aside)
    raise RunFolderError(
        f"{out_dir!r} has a stale lock: {who}, is no longer running (it was killed or "
        f"crashed); {holds}; clear the lock with: rm {shlex.quote(path)}; then start again"
    )


class RunFolder:
    """The output folder of one run, held from ``__enter__`` to ``__exit__``; refuses
    (``RunFolderError``) before writing anything.

    A new run refuses a folder that holds a run's files unless ``overwrite``; then, once
    the lock is held, those files are moved into ``<out_dir>.old-<timestamp>`` (the
    sibling folder, named in the lock file and the log) and deleted when :meth:`save`
    writes the new run's first checkpoint. If the run ends before that, however it
    ends (an exception, Ctrl-C, SIGTERM), they are put back. The lock file ``run.lock``
    (pid, host, start time) is created with ``O_EXCL``, so of two processes only one gets
    it; it is removed when the run ends. Temporary files of an interrupted save are
    removed. A folder created here and left empty is removed again.

    With ``out_dir=None`` (or ``writes=False``: a DDP process other than rank 0) nothing is
    held or written; :meth:`save` does nothing.
    """

    def __init__(
        self,
        out_dir: str | None,
        *,
        resuming: bool = False,
        overwrite: bool = False,
        saved_epoch: int | None = None,
        writes: bool = True,
        log: Callable[[str], None] = print,
    ):
        self.out_dir = out_dir
        self.writes = out_dir is not None and writes
        self.path = os.path.join(self._held(), CHECKPOINT) if self.writes else None
        self.saved_epoch = saved_epoch  # the epoch of the checkpoint in the folder (None: none of this run)
        self.aside: str | None = None  # where the previous run waits until the first checkpoint
        self._moved: list[str] = []
        self._resuming, self._overwrite, self._log = resuming, overwrite, log
        self._created = False

    # ---- holding
    def _held(self) -> str:
        """The folder, for the methods that run only when it ``writes`` (which implies an ``out_dir``)."""
        assert self.out_dir is not None, "RunFolder: a folder that writes has an out_dir"
        return self.out_dir

    def __enter__(self) -> RunFolder:
        if not self.writes:
            return self
        out_dir = self._held()
        check_lock(out_dir)
        waiting = find_moved_aside(out_dir)  # a previous run left aside by a killed --overwrite
        if waiting:
            raise RunFolderError(
                f"{out_dir!r} cannot take a run yet: {_aside_advice(out_dir, waiting[0])}; then start again"
            )
        existing = _holds_run(out_dir)
        if existing and not self._resuming and not self._overwrite:
            raise RunFolderError(
                f"output folder {out_dir!r} already holds a run ({describe_run(out_dir)}); continue or extend it "
                f"with --resume {os.path.join(out_dir, CHECKPOINT)}, choose another --out, or pass --overwrite to "
                f"replace it"
            )
        self._created = not os.path.isdir(out_dir)
        lock = os.path.join(out_dir, LOCK)
        try:
            os.makedirs(out_dir, exist_ok=True)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not os.path.isdir(out_dir):
                raise RunFolderError(
                    f"output folder {out_dir!r} cannot be created: a file of that name exists"
                ) from None
            check_lock(out_dir)  # another process took the lock between the first check and here
            raise RunFolderError(f"{out_dir!r} was locked by another run at the same moment; try again") from None
        except OSError as exc:
            raise RunFolderError(f"output folder {out_dir!r} cannot be written ({exc.strerror or exc})") from None
        try:
            replacing = existing and self._overwrite and not self._resuming
            aside = self._make_aside() if replacing else None
            self.aside = aside
            with os.fdopen(fd, "w") as f:
                json.dump(
                    dict(
                        pid=os.getpid(),
                        host=socket.gethostname(),
                        started=time.strftime("%Y-%m-%d %H:%M:%S"),
                        command=" ".join(sys.argv),
                        moved_aside=self.aside,
                    ),
                    f,
                )
            for tmp in checkpoint.remove_stale_temporary_files(out_dir, RUN_FILES):
                self._log(f"removed {tmp}, a temporary file left by an interrupted save")
            if aside is not None:  # replacing
                for name in existing:
                    os.rename(os.path.join(out_dir, name), os.path.join(aside, name))
                    self._moved.append(name)
                self._log(
                    f"--overwrite: moved the previous run's {', '.join(existing)} from {out_dir}/ to "
                    f"{aside}/; they are deleted once this run has written its first checkpoint"
                )
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.writes:
            self._release()

    def _make_aside(self) -> str:
        base = os.path.abspath(self._held()) + ASIDE + time.strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            aside = base if n == 1 else f"{base}-{n}"
            try:
                os.mkdir(aside)
                return aside
            except FileExistsError:
                continue
        raise RunFolderError(f"cannot find a free name {base}-N to move the previous run aside")

    def _release(self) -> None:
        """Put a previous run back if the new one never wrote a checkpoint, then unlock."""
        try:
            if self.aside is not None:
                self._put_back(self.aside)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self._held(), LOCK))
            if self._created:
                with contextlib.suppress(OSError):
                    os.rmdir(self._held())  # only succeeds if the run left nothing there

    def _put_back(self, aside: str) -> None:
        try:
            for name in list(self._moved):
                os.replace(os.path.join(aside, name), os.path.join(self._held(), name))
                self._moved.remove(name)
            os.rmdir(aside)
        except OSError as exc:
            self._log(f"--overwrite: the previous run could not be put back ({exc.strerror or exc}); it is in {aside}/")
            return
        self._log(
            f"--overwrite: this run stopped before its first checkpoint; the previous run is back in "
            f"{self.out_dir}/ as it was"
        )
        self.aside = None

    # ---- writing
    def save(
        self,
        tc: TrainConfig,
        cfg: ModelConfig,
        params: Mapping,
        state: Mapping,
        optim_arrays: Mapping,
        rng: np.random.Generator,
        epoch: int,
        step: int,
        history: list,
        *,
        data: dict | None = None,
        **extra,
    ) -> None:
        """After an epoch: the checkpoint (with the data fingerprint ``data``, :func:`save_checkpoint`), then
        (the first time, with ``overwrite``) the previous run's files deleted, then the metrics; each file
        written atomically."""
        if not self.writes:
            return
        save_checkpoint(self.path, tc, cfg, params, state, optim_arrays, rng, epoch, step, history, data=data, **extra)
        self.saved_epoch = epoch
        if self.aside is not None:
            for name in self._moved:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.aside, name))
            with contextlib.suppress(OSError):
                os.rmdir(self.aside)
            self._log(f"--overwrite: this run wrote its first checkpoint; deleted the previous run from {self.aside}/")
            self.aside, self._moved = None, []
        write_metrics(self._held(), history)

    def kept(self) -> str:
        """What a run that stops now leaves behind, for a divergence message."""
        if self.saved_epoch is not None and self.path is not None:
            return f"the last good checkpoint {self.path} (epoch {self.saved_epoch}) is intact"
        if self.aside is not None:
            return (
                f"no checkpoint was written; the previous run (moved aside by --overwrite) is put back in "
                f"{self.out_dir}"
            )
        if self.out_dir is not None and not self.writes:
            return "no checkpoint was written by this process"
        return "no checkpoint was written"
