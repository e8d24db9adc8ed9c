"""Training, evaluation and the ablation study on small built-in data (issue 6).

The recipe is the paper's (docs/spec.md §4.11) scaled to a CPU: AdamW with decoupled
weight decay (none on biases, BatchNorm, ``tau`` and NSAD parameters), a
cosine schedule with linear warmup, optional label smoothing and gradient
clipping, cross-entropy on the time- and token-averaged logits.

Everything random comes from one seed: the parameters from
``default_rng(seed)``, the minibatch order from a second generator whose state
is saved in every checkpoint, so a resumed run ends with the same parameters,
bit for bit, as an uninterrupted one.

A run lives in one folder (``checkpoint.npz``, ``metrics.csv``,
``metrics.json``, all written atomically after every epoch) that is never
overwritten by accident: a new run refuses a folder that holds one, a lock
file ``run.lock`` keeps a second process out while a run is going, and a
resumed run continues in its checkpoint's own folder with its recorded
settings. A diverging run stops naming the epoch, step, learning rate and the
first non-finite tensor, and its last good checkpoint stays as it was.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import numbers
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from . import checkpoint, cifar, data, fingerprint, layers, model, optim
from .config import PRESETS, ModelConfig, check_override, preset
from .energy import BlockEnergy, block_energy, count_zeros

__all__ = ["TrainConfig", "ConfigError", "RunFolderError", "TrainingError", "TrainResult", "build_data",
           "model_config", "train", "evaluate", "load_run", "resume_conflicts", "default_out", "variant_name",
           "VARIANTS", "EvalResult"]

CHECKPOINT = "checkpoint.npz"
METRICS = ("metrics.csv", "metrics.json")
LOCK = "run.lock"
VARIANTS = {  # paper Table 4: name -> (tasa, nsad)
    "Spikformer": (False, False),
    "NSAD only": (False, True),
    "DS2TA": (True, True),
}
# What fits the 2-minute budget on 2 cores (measured; see the README).
DATASET_DEFAULTS = {
    "digits": dict(epochs=12, batch_size=64, lr=4e-3),
    "events": dict(epochs=10, batch_size=32, lr=3e-3),
    # The paper's recipe; a run of this size is for the torch backend on a GPU (docs/torch.md).
    "cifar10": dict(epochs=300, batch_size=256, lr=1e-3),
    "cifar100": dict(epochs=300, batch_size=256, lr=1e-3),
}
# ModelConfig fields that TrainConfig.model cannot set, and what sets them instead.
DATA_DECIDED = {
    "in_channels": "the data set decides it (choose the data with --dataset)",
    "img_size": "the data set decides it (choose the data with --dataset)",
    "num_classes": "the data set decides it (choose the data with --dataset)",
    "T": "the events data set decides it (its clips have their own number of frames)",
    "tasa": "use --no-tasa (TrainConfig.tasa) instead",
    "nsad": "use --no-nsad (TrainConfig.nsad) instead",
}
# (train, test) sizes of each data set's split, so that --train-subset and
# --test-subset are checked before the data is loaded (pinned by a test).
SPLIT_SIZES = {"digits": (1438, 359), "events": (480, 120), "cifar10": (50000, 10000), "cifar100": (50000, 10000)}
# What the data decides in the model of each data set as build_data makes it, so that --shift and the
# memory a run needs are checked before the data is loaded (issue 18 item 6; pinned by a test).
DATA_SHAPES = {"digits": dict(in_channels=1, img_size=16, num_classes=10),
               "events": dict(in_channels=2, img_size=16, num_classes=4, T=8),
               "cifar10": dict(in_channels=3, img_size=32, num_classes=10),
               "cifar100": dict(in_channels=3, img_size=32, num_classes=100)}


@dataclass(frozen=True)
class TrainConfig:
    """One training run: data, model switches and the optimizer recipe."""

    dataset: str = "digits"  # "digits" (scikit-learn, static), "events" (generated, temporal), "cifar10", "cifar100"
    preset: str = "tiny"
    tasa: bool = True
    nsad: bool = True
    # ModelConfig fields to override in the preset, as (field, value) pairs (a dict is accepted
    # and stored sorted by field), e.g. (("depth", 2), ("frozen_u", True)); the command line's --set
    model: tuple = ()
    epochs: int | None = None  # None: the data set's default, DATASET_DEFAULTS
    batch_size: int | None = None  # None: the data set's default
    lr: float | None = None  # peak learning rate; None: the data set's default
    min_lr: float = 1e-5
    weight_decay: float = 0.06
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    clip_grad: float = 1.0  # max gradient norm; 0 turns clipping off
    shift: int = 0  # augmentation: random translation by up to this many pixels (0: none)
    seed: int = 0  # parameters and minibatch order
    data_seed: int = 0  # the train/test split (and the generated events)
    dtype: str = "float32"
    train_subset: int = 0  # use only the first n training samples (0: all); for quick runs and tests
    test_subset: int = 0  # likewise for the test split
    data_dir: str = ""  # cifar10/cifar100: the folder holding the official binary files

    def __post_init__(self):
        def need(ok: bool, field: str, problem: str):
            if not ok:
                raise ConfigError(field, problem, getattr(self, field))

        need(self.dataset in DATASET_DEFAULTS, "dataset", f"must be one of {sorted(DATASET_DEFAULTS)}")
        for name, value in DATASET_DEFAULTS[self.dataset].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        need(self.preset in PRESETS, "preset", f"must be one of {sorted(PRESETS)}")
        self._check_model()
        need(self.dtype in ("float32", "float64"), "dtype", "must be 'float32' or 'float64'")
        for name in ("tasa", "nsad"):
            need(isinstance(getattr(self, name), bool), name, "must be True or False")
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("data_seed", 0),
                              ("train_subset", 0), ("test_subset", 0), ("shift", 0)):
            value = getattr(self, name)
            need(isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum,
                 name, f"must be an integer >= {minimum}")
        for name in ("lr", "min_lr", "weight_decay", "warmup_epochs", "label_smoothing", "clip_grad"):
            value = getattr(self, name)
            need(isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
                 and value >= 0, name, "must be a finite number >= 0")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.min_lr <= self.lr, "min_lr", f"must be <= the peak learning rate lr={self.lr}")
        need(self.label_smoothing < 1, "label_smoothing", "must be < 1")
        need(isinstance(self.data_dir, str), "data_dir", "must be a path")
        need(bool(self.data_dir) == (self.dataset in cifar.FILES), "data_dir",
             f"is needed for {sorted(cifar.FILES)} (the folder of the official binary files) and only for them")
        if self.data_dir:  # issue 18 item 5: stored absolute, so the checkpoint names the files wherever it is used
            object.__setattr__(self, "data_dir", os.path.abspath(self.data_dir))
        for field, available in zip(("train_subset", "test_subset"), SPLIT_SIZES[self.dataset]):
            need(getattr(self, field) <= available, field,
                 f"must be <= {available}, the size of the {self.dataset} split (0: all of it)")
        # issue 18 item 6: a warmup longer than the run, and a shift that can move the whole image out
        need(self.warmup_epochs < self.epochs, "warmup_epochs",
             f"must be < epochs={self.epochs} (the warmup is part of the run; the cosine decay needs the rest)")
        side = DATA_SHAPES[self.dataset]["img_size"]
        need(self.shift < side, "shift",
             f"must be < {side}, the image size of {self.dataset}: a shift by the whole image leaves a blank sample")


    def _check_model(self):
        """Normalize ``model`` to a tuple of ``(field, value)`` pairs sorted by field, each
        value checked for its type, the fields the data decides refused, and the preset with
        these overrides checked by ``ModelConfig``; a ``ConfigError`` on ``model`` names the field."""
        items = self.model
        if isinstance(items, Mapping):
            items = list(items.items())
        if not isinstance(items, (tuple, list)) or not all(
                isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) for item in items):
            raise ConfigError("model", "must be (field, value) pairs or a dict of ModelConfig fields", self.model)
        pairs = {}
        for name, value in items:
            if name in pairs:
                raise ConfigError("model", f"sets {name} twice")
            refused = DATA_DECIDED.get(name)
            if name == "T" and self.dataset != "events":
                refused = None  # static images are repeated T times: T is a model choice
            if refused:
                raise ConfigError("model", f"cannot set {name}: {refused}")
            try:
                pairs[name] = check_override(name, value)
            except ValueError as exc:
                raise ConfigError("model", str(exc)) from None
        try:
            preset(self.preset, **pairs)
        except ValueError as exc:
            raise ConfigError("model", f"does not make a valid {self.preset!r} model: {exc}") from None
        object.__setattr__(self, "model", tuple(sorted(pairs.items())))


class ConfigError(ValueError):
    """A training setting is invalid. ``field`` names the :class:`TrainConfig`
    field (the command line shows it as its option, ``min_lr`` as ``--min-lr``)."""

    def __init__(self, field: str, problem: str, *value):
        self.field = field
        self.problem = problem + (f", got {value[0]!r}" if value else "")
        super().__init__(f"{field} {self.problem}")


class RunFolderError(ValueError):
    """An output folder cannot take this run: it holds another run, another
    process holds its lock (or left a stale one), or it cannot be written.
    Raised before any work is done; the message says what to do instead."""


class TrainingError(RuntimeError):
    """Training diverged: the message names the epoch, step, learning rate, the
    first non-finite tensor and the last good checkpoint (left as it was)."""


@dataclass
class TrainResult:
    params: dict
    state: dict
    cfg: ModelConfig
    history: list  # one dict per epoch, from the first epoch of the run
    out_dir: str | None
    trained_epochs: int = 0  # epochs trained by this call (0: a finished run resumed, nothing to do)


@dataclass
class EvalResult:
    accuracy: float
    loss: float
    spike_rate: float
    energy: list  # [BlockEnergy] per block


# --------------------------------------------------------------------------- data and model
def check_data_files(tc: TrainConfig) -> None:
    """Raise ``ConfigError`` naming ``data_dir`` and the file if a CIFAR run's binary
    files are missing or truncated; cheap (file sizes only), so it runs before any data is loaded."""
    if tc.dataset in cifar.FILES:
        try:  # issue 18 item 5: labels (record index) and subsets vs the records present, too
            cifar.check_files(tc.dataset, tc.data_dir, train_subset=tc.train_subset, test_subset=tc.test_subset)
        except ValueError as exc:
            raise ConfigError("data_dir", str(exc)) from None
    if tc.dataset == "digits":  # issue 18 item 6: a plain `pip install -e .` lacks scikit-learn
        try:
            data.require_sklearn()
        except ImportError as exc:
            raise ConfigError("dataset", f"digits {exc}") from None


def build_data(tc: TrainConfig) -> data.Dataset:
    """The data set of a run: digits upsampled to 16x16, the generated events, or CIFAR from its binary files."""
    if tc.dataset in cifar.FILES:
        return cifar.load(tc.dataset, tc.data_dir, train_subset=tc.train_subset, test_subset=tc.test_subset)
    if tc.dataset == "digits":
        ds = data.load_digits(seed=tc.data_seed, size=16)
    else:
        ds = data.make_events(seed=tc.data_seed, n_per_class=150, num_classes=4, T=8, size=16)
    if tc.train_subset or tc.test_subset:
        n, m = tc.train_subset or len(ds.train_y), tc.test_subset or len(ds.test_y)
        ds = dataclasses.replace(ds, train_x=ds.train_x[:n], train_y=ds.train_y[:n],
                                 test_x=ds.test_x[:m], test_y=ds.test_y[:m])
    return ds


def model_config(tc: TrainConfig, ds: data.Dataset) -> ModelConfig:
    """The preset with the run's ``model`` overrides, adapted to the data's channels, size,
    classes and (for events) time steps."""
    C, H = ds.sample_shape[-3], ds.sample_shape[-1]
    overrides = dict(tc.model, tasa=tc.tasa, nsad=tc.nsad, in_channels=C, img_size=H, num_classes=ds.num_classes)
    if ds.time_steps is not None:
        overrides["T"] = ds.time_steps
    return preset(tc.preset, **overrides)


def epoch_row(epoch, step, lr, loss_sum, correct, rate_sum, seen, test: EvalResult, seconds, epochs,
              log: Callable[[str], None]) -> dict:
    """One epoch's line of ``metrics.csv``/``metrics.json``, logged as one summary line
    (both backends write the same rows from their sums over the epoch's samples)."""
    row = dict(epoch=epoch, step=step, lr=lr, loss=loss_sum / seen, train_acc=correct / seen,
               test_acc=test.accuracy, test_loss=test.loss, firing_rate=rate_sum / seen,
               attention_sparsity=float(np.mean([e.sparsity for e in test.energy])), seconds=seconds)
    log(f"epoch {epoch:3d}/{epochs}  loss {row['loss']:.4f}  train {100 * row['train_acc']:.2f}%  "
        f"test {100 * row['test_acc']:.2f}%  firing {row['firing_rate']:.3f}  "
        f"attn sparsity {100 * row['attention_sparsity']:.1f}%  {seconds:.1f}s")
    return row


def augment_batch(xb: np.ndarray, ds: data.Dataset, tc: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """A training batch's augmentation, drawn from the run's ``rng`` in this order (both
    backends call this, so they draw the same numbers): the random ``shift``, then for
    CIFAR a random crop with padding 4 and a horizontal flip (:func:`ds2ta_ref.cifar.augment`)."""
    if tc.shift:
        xb = data.random_shift(xb, tc.shift, rng)
    if ds.name in cifar.FILES:
        xb = cifar.augment(xb, rng, fill=cifar.black(ds.name))
    return xb


def check_data_matches(cfg: ModelConfig, ds: data.Dataset, path) -> None:
    """Raise ``CheckpointError`` naming ``path`` if the model stored there cannot
    take this data (channels, image size, classes or, for events, time steps)."""
    C, H = ds.sample_shape[-3], ds.sample_shape[-1]
    wanted = dict(in_channels=C, img_size=H, num_classes=ds.num_classes)
    if ds.time_steps is not None:
        wanted["T"] = ds.time_steps
    wrong = [f"{k}={getattr(cfg, k)} (the data needs {v})" for k, v in wanted.items() if getattr(cfg, k) != v]
    if wrong:
        raise checkpoint.CheckpointError(f"checkpoint {str(path)!r}: its model does not fit its own data "
                                         f"set: {', '.join(wrong)}")


def variant_name(tasa_on: bool, nsad_on: bool) -> str:
    """The paper's name of a switch setting (Table 4): DS2TA, NSAD only, Spikformer, or TASA only."""
    for name, switches in VARIANTS.items():
        if switches == (tasa_on, nsad_on):
            return name
    return "TASA only"


def default_out(tc: TrainConfig) -> str:
    """The folder a run goes to when none is given: ``runs/<dataset>-<variant>-seed<seed>``,
    e.g. ``runs/digits-ds2ta-seed0``, so that runs with other seeds or switches do not collide;
    model overrides are appended as given, ``runs/digits-ds2ta-seed0-depth=2-frozen_u=true``."""
    variant = variant_name(tc.tasa, tc.nsad).lower().replace(" ", "-")
    overrides = "".join(f"-{name}={_short(value)}" for name, value in tc.model)
    return os.path.join("runs", f"{tc.dataset}-{variant}-seed{tc.seed}{overrides}")


def _short(value) -> str:
    """A model override's value in a folder name: ``true``, ``none``, ``2``, ``0.5``, ``floor``."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _no_decay(name: str, shape: tuple) -> bool:
    """No weight decay on biases, BatchNorm, tau and NSAD parameters (timm / Spikformer practice)."""
    return len(shape) <= 1 or name.endswith(".nsad")


def _optimizer(params: dict, cfg: ModelConfig, tc: TrainConfig) -> optim.AdamW:
    """AdamW over the trainable parameters only (a frozen ``tau`` is never touched)."""
    names = model.trainable(cfg)
    return optim.AdamW({n: params[n] for n in names}, lr=tc.lr, weight_decay=tc.weight_decay,
                       no_decay=lambda n: _no_decay(n, params[n].shape))


def _model_input(xb: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    return data.to_time_major(xb, cfg.T) if xb.ndim == 5 else xb


# --------------------------------------------------------------------------- evaluation
def evaluate(params: dict, state: dict, cfg: ModelConfig, x: np.ndarray, y: np.ndarray,
             *, batch_size: int = 128) -> EvalResult:
    """Eval-mode accuracy, loss, firing rate and per-block attention sparsity/energy."""
    correct, loss_sum, rate_sum = 0, 0.0, 0.0
    zeros = np.zeros(cfg.depth, dtype=np.int64)
    entries = np.zeros(cfg.depth, dtype=np.int64)
    for xb, yb in data.iterate_minibatches(x, y, batch_size, rng=None, shuffle=False):
        logits, _, cache = model.forward(params, state, _model_input(xb, cfg), cfg, training=False,
                                         need_backward=False)
        loss, _ = layers.cross_entropy(logits, yb)
        correct += int(np.sum(np.argmax(logits, axis=1) == yb))
        loss_sum += loss * len(yb)
        rate_sum += cache.record.firing_rate * len(yb)
        z, n = count_zeros(cache.record.attention_maps)
        zeros += z
        entries += n
    n = len(y)
    return EvalResult(correct / n, loss_sum / n, rate_sum / n, block_energy(cfg, zeros, entries))


# --------------------------------------------------------------------------- checkpoints
def _save(path, tc, cfg, params, state, opt, rng, epoch, step, history, data=None):
    arrays = {f"param.{k}": v for k, v in params.items()}
    arrays.update({f"state.{k}": v for k, v in state.items()})
    arrays.update({f"optim.{k}": v for k, v in opt.state_dict().items()})
    arrays.update(checkpoint.rng_state_to_arrays(rng, prefix="rng."))
    meta = dict(epoch=epoch, step=step, train_config=dataclasses.asdict(tc),
                model_config=dataclasses.asdict(cfg), history=history)
    if data is not None:  # issue 18 item 5: the data fingerprint (ds2ta_ref.fingerprint)
        meta["data"] = data
    checkpoint.save(path, arrays, meta)


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
    params = {k[len("param."):]: v for k, v in arrays.items() if k.startswith("param.")}
    state = {k[len("state."):]: v for k, v in arrays.items() if k.startswith("state.")}
    try:
        checkpoint.validate(params, model.param_shapes(cfg), what=f"{where} parameters")
        checkpoint.validate(state, model.state_shapes(cfg), what=f"{where} BatchNorm state")
    except ValueError as exc:
        raise checkpoint.CheckpointError(str(exc)) from None
    for name, value in params.items():
        if value.dtype != np.dtype(tc.dtype):
            raise checkpoint.CheckpointError(f"{where}: array 'param.{name}' has dtype {value.dtype}, "
                                             f"but the run's dtype is {tc.dtype}")
    shapes = model.param_shapes(cfg)  # issue 18 item 7: variances, optimizer and RNG state, epoch <= epochs
    checkpoint.check_training_arrays(arrays, meta, path, trainable={n: shapes[n] for n in model.trainable(cfg)},
                                     epochs=tc.epochs)
    return tc, cfg, params, state, arrays, meta


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


# --------------------------------------------------------------------------- run folders
def _describe_run(out_dir: str) -> str:
    """What the run files in ``out_dir`` hold, in a few words (for messages)."""
    path = os.path.join(out_dir, CHECKPOINT)
    if not os.path.exists(path):
        return "metrics of a run"
    try:
        _, meta = checkpoint.load(path, verify=False)
        return (f"checkpoint at epoch {meta['epoch']} of {meta['train_config']['epochs']}, "
                f"{meta['train_config']['dataset']}, seed {meta['train_config']['seed']}")
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


def _check_lock(out_dir: str) -> None:
    """Raise ``RunFolderError`` if ``out_dir`` holds a lock: a live run's, or a stale one."""
    path = os.path.join(out_dir, LOCK)
    try:
        with open(path) as f:
            holder = json.load(f)
        pid, host, started = int(holder["pid"]), str(holder["host"]), str(holder["started"])
    except (FileNotFoundError, NotADirectoryError):
        return
    except (OSError, ValueError, KeyError, TypeError):
        raise RunFolderError(f"{out_dir!r} has a lock file {path!r} that cannot be read; if no run is using "
                             f"this folder, delete the lock file and start again") from None
    who = f"process {pid} on {host}, started {started}"
    if host != socket.gethostname():
        raise RunFolderError(f"{out_dir!r} is locked by {who} ({path!r}); this machine cannot tell whether it "
                             f"still runs: if not, delete the lock file and start again")
    if _pid_alive(pid):
        raise RunFolderError(f"{out_dir!r} is in use by another training run ({who}); wait for it to end "
                             f"or choose another output folder (--out)")
    raise RunFolderError(f"{out_dir!r} has a stale lock {path!r}: {who}, is no longer running (it was killed "
                         f"or crashed; its last checkpoint is intact); check the folder, delete the lock file, "
                         f"then resume or start again")


@contextlib.contextmanager
def _hold_run_folder(out_dir: str, *, resuming: bool, overwrite: bool, log: Callable[[str], None]):
    """Hold ``out_dir`` for one run; refuses (``RunFolderError``) before writing anything.

    A new run refuses a folder that holds a run's files unless ``overwrite``
    (then they are deleted once the lock is held). The lock file ``run.lock``
    (pid, host, start time) is created with ``O_EXCL``, so of two processes
    only one gets it; it is removed when the run ends, however it ends. A lock
    left by a dead process is reported, never taken over. Temporary files of
    an interrupted save are removed. A folder created here and left empty (a
    run stopped before its first checkpoint) is removed again.
    """
    _check_lock(out_dir)
    existing = [name for name in (CHECKPOINT, *METRICS) if os.path.exists(os.path.join(out_dir, name))]
    if existing and not resuming and not overwrite:
        raise RunFolderError(
            f"output folder {out_dir!r} already holds a run ({_describe_run(out_dir)}); continue or extend it "
            f"with --resume {os.path.join(out_dir, CHECKPOINT)}, choose another --out, or pass --overwrite to "
            f"replace it")
    created = not os.path.isdir(out_dir)
    lock = os.path.join(out_dir, LOCK)
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        if not os.path.isdir(out_dir):
            raise RunFolderError(f"output folder {out_dir!r} cannot be created: a file of that name exists") from None
        _check_lock(out_dir)  # another process took the lock between the first check and here
        raise RunFolderError(f"{out_dir!r} was locked by another run at the same moment; try again") from None
    except OSError as exc:
        raise RunFolderError(f"output folder {out_dir!r} cannot be written ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(dict(pid=os.getpid(), host=socket.gethostname(),
                           started=time.strftime("%Y-%m-%d %H:%M:%S"), command=" ".join(sys.argv)), f)
        for tmp in checkpoint.remove_stale_temporary_files(out_dir, (CHECKPOINT, *METRICS)):
            log(f"removed {tmp}, a temporary file left by an interrupted save")
        if overwrite and existing and not resuming:
            for name in existing:
                os.unlink(os.path.join(out_dir, name))
            log(f"--overwrite: removed the previous run's {', '.join(existing)} from {out_dir}/")
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)  # only succeeds if the run left nothing there


# --------------------------------------------------------------------------- training
def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the progress bar is optional (the "digits" extra installs tqdm)
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


def _write_metrics(out_dir: str, history: list) -> None:
    """``metrics.json`` and ``metrics.csv``, each written atomically (a full disk leaves the old file)."""
    with checkpoint.atomic_write(os.path.join(out_dir, "metrics.json")) as f:
        f.write(json.dumps(history, indent=1).encode())
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    with checkpoint.atomic_write(os.path.join(out_dir, "metrics.csv")) as f:
        f.write(text.getvalue().encode())


def _first_non_finite(arrays: Mapping[str, np.ndarray]) -> str | None:
    """The first name (in the dict's order) whose array holds NaN or infinity."""
    for name, value in arrays.items():
        if np.asarray(value).dtype.kind == "f" and not np.all(np.isfinite(value)):
            return name
    return None


def _largest(params: Mapping[str, np.ndarray]) -> str:
    name = max(params, key=lambda k: float(np.max(np.abs(params[k]), initial=0.0)))
    return f"the largest parameter is {name!r} with |value| {float(np.max(np.abs(params[name]))):.3g}"


def train(tc: TrainConfig | None, out_dir: str | None = None, *, resume: str | None = None,
          add_epochs: int = 0, overwrite: bool = False, stop_after: int | None = None, progress: bool = True,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train a model; checkpoint and metrics go to ``out_dir`` after every epoch.

    Args:
        tc: the run's settings. With ``resume`` it may be None (the checkpoint's
            settings are used); if given, it must equal them (``ConfigError``
            listing each difference), except for ``epochs`` with ``add_epochs``.
        out_dir: where ``checkpoint.npz``, ``metrics.csv`` and ``metrics.json``
            go (None: nowhere). A new run refuses a folder that already holds a
            run unless ``overwrite``. With ``resume``, the run continues in the
            checkpoint's own folder; ``out_dir`` may be None or that folder.
        resume: a checkpoint (or its folder) to continue from. A finished run
            returns at once (``trained_epochs == 0``), writing nothing.
        add_epochs: with ``resume``, train this many epochs more than the run
            was set to. The cosine schedule is stretched over the new total:
            ``cosine_lr`` is evaluated with the new ``total_steps``, so the
            learning rate at the resume step rises from where the old schedule
            stood (``min_lr`` for a finished run) to the new curve's value and
            decays to ``min_lr`` again at the new end. The warmup is not
            repeated. The result is not the same as a run set to the longer
            length from the start.
        overwrite: a new run may replace the run in ``out_dir`` (its files are deleted).
        stop_after: stop after this many epochs in total (to interrupt a run on purpose).
        progress: show a tqdm progress bar per epoch.
        log: receives one summary line per epoch.

    Raises:
        RunFolderError: ``out_dir`` cannot take this run (before any work).
        ConfigError, CheckpointError: bad settings or checkpoint (before any work).
        TrainingError: a non-finite loss, gradient, parameter, BatchNorm
            statistic or evaluation, naming the epoch, step, learning rate and
            tensor; the last checkpoint written stays intact and is named.
    """
    if resume is not None:
        if os.path.isdir(resume):
            resume = os.path.join(resume, CHECKPOINT)
        folder = os.path.dirname(os.path.abspath(resume))
        if out_dir is not None and os.path.abspath(out_dir) != folder:
            raise RunFolderError(f"a resumed run continues in its checkpoint's folder {folder!r}, "
                                 f"not in {out_dir!r}; leave out --out")
        here = os.path.join(folder, CHECKPOINT)
        if os.path.exists(here) and os.path.exists(resume) and not os.path.samefile(here, resume):
            raise RunFolderError(f"{resume!r} would continue in {folder!r}, which holds another run's "
                                 f"{CHECKPOINT}; copy {resume!r} into an empty folder and resume it there")
        recorded, cfg, params, state, arrays, meta = load_run(resume)
        if isinstance(add_epochs, bool) or not isinstance(add_epochs, numbers.Integral) or add_epochs < 0:
            raise ConfigError("add_epochs", "must be an integer >= 0", add_epochs)
        given = {} if tc is None else dataclasses.asdict(tc)
        if add_epochs:
            given.pop("epochs", None)
        conflicts = resume_conflicts(recorded, given)
        if conflicts:
            raise ConfigError(conflicts[0][0], "and the other settings must be the checkpoint's, but " + "; ".join(
                f"{f} is {old!r} in the checkpoint, {new!r} given" for f, old, new in conflicts))
        tc = dataclasses.replace(recorded, epochs=recorded.epochs + add_epochs)
        out_dir = folder
        start_epoch, step, history = int(meta["epoch"]), int(meta["step"]), list(meta["history"])
        if start_epoch >= tc.epochs:
            log(f"{resume} is a finished run ({start_epoch} of {tc.epochs} epochs); nothing to do")
            return TrainResult(params, state, cfg, history, out_dir, trained_epochs=0)
    elif tc is None:
        raise ValueError("tc (the run's TrainConfig) is required unless resuming")
    elif add_epochs:
        raise ConfigError("add_epochs", "extends a resumed run; it needs resume", add_epochs)

    folder_lock = (_hold_run_folder(out_dir, resuming=resume is not None, overwrite=overwrite, log=log)
                   if out_dir is not None else contextlib.nullcontext())
    with folder_lock:
        if resume is None:
            log(f"training {variant_name(tc.tasa, tc.nsad)} ({tc.preset} preset) on {tc.dataset}, seed {tc.seed}"
                + ("" if out_dir is None else f"; checkpoints and metrics in {out_dir}/"))
        ds = build_data(tc)
        if resume is not None:
            check_data_matches(cfg, ds, resume)
            fingerprint.verify(meta.get("data"), tc, resume, ds)  # issue 18 item 5: the data it was trained on
            opt = _optimizer(params, cfg, tc)
            opt.load_state_dict({k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")})
            rng = checkpoint.rng_from_arrays(arrays, prefix="rng.")
            log(f"resuming {resume} after epoch {start_epoch} of {tc.epochs} (step {step})")
        else:
            cfg = model_config(tc, ds)
            dtype = np.dtype(tc.dtype)
            params = model.init_params(cfg, np.random.default_rng(tc.seed), dtype=dtype)
            state = model.init_state(cfg, dtype=dtype)
            opt = _optimizer(params, cfg, tc)
            rng = np.random.default_rng([tc.seed, 1])  # minibatch order
            start_epoch, step, history = 0, 0, []
        result = _train_epochs(tc, cfg, ds, params, state, opt, rng, start_epoch, step, history, out_dir,
                               stop_after=stop_after, progress=progress, log=log)
    return result


def _train_epochs(tc, cfg, ds, params, state, opt, rng, start_epoch, step, history, out_dir, *,
                  stop_after, progress, log) -> TrainResult:
    """The training loop proper: epochs ``start_epoch + 1 ..``, a checkpoint after each."""
    path = None if out_dir is None else os.path.join(out_dir, CHECKPOINT)
    saved_epoch = start_epoch if path is not None and os.path.exists(path) else None
    steps_per_epoch = math.ceil(len(ds.train_y) / tc.batch_size)
    total_steps = tc.epochs * steps_per_epoch
    warmup = min(int(round(tc.warmup_epochs * steps_per_epoch)), total_steps - 1)
    last_epoch = tc.epochs if stop_after is None else min(tc.epochs, stop_after)
    epoch, i, lr = start_epoch, 0, float("nan")
    data_print = None if path is None else fingerprint.of_data(tc, ds)  # issue 18 item 5: in every checkpoint

    def diverged(what: str, *, evaluating: bool = False):
        kept = (f"the last good checkpoint {path} (epoch {saved_epoch}) is intact" if saved_epoch is not None
                else "no checkpoint was written")
        when = (f"in the evaluation after its last step (lr {lr:.3g})" if evaluating
                else f"step {i} of {steps_per_epoch} (global step {step + 1}, lr {lr:.3g})")
        raise TrainingError(f"training diverged at epoch {epoch}, {when}: {what}; {kept}")

    def guarded(fn, *args, **kwargs):
        """Run a forward or backward; the kernels reject non-finite inputs with
        ``ValueError("<argument> must be finite ...")`` (``ds2ta_ref._checks``),
        which finite parameters can still produce by overflow."""
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            if "must be finite" not in str(exc):
                raise  # not a divergence: a bug, keep its traceback
            diverged(f"a tensor inside {fn.__module__.split('.')[-1]}.{fn.__name__} became non-finite "
                     f"({exc}; {_largest(params)})", evaluating=fn is evaluate)

    for epoch in range(start_epoch + 1, last_epoch + 1):
        t0 = time.perf_counter()
        loss_sum, correct, rate_sum, seen = 0.0, 0, 0.0, 0
        batches = data.iterate_minibatches(ds.train_x, ds.train_y, tc.batch_size, rng=rng)
        # Overflow is caught by the finiteness checks below, which name the tensor;
        # numpy's RuntimeWarnings would only repeat it without saying where.
        with np.errstate(over="ignore", invalid="ignore"):
            for i, (xb, yb) in enumerate(_progress(batches, steps_per_epoch, f"epoch {epoch}", progress), 1):
                lr = optim.cosine_lr(step, total_steps=total_steps, warmup_steps=warmup,
                                     base_lr=tc.lr, min_lr=tc.min_lr)
                xb = augment_batch(xb, ds, tc, rng)
                logits, state, cache = guarded(model.forward, params, state, _model_input(xb, cfg), cfg,
                                               training=True)
                loss, dlogits = layers.cross_entropy(logits, yb, label_smoothing=tc.label_smoothing)
                if not np.isfinite(loss):
                    diverged(f"non-finite loss ({loss})")
                grads = guarded(model.backward, dlogits, cache)
                bad = _first_non_finite({k: grads[k] for k in params if k in grads})
                if bad:
                    diverged(f"non-finite gradient of {bad!r}")
                if tc.clip_grad > 0:
                    optim.clip_grad_norm(grads, tc.clip_grad)
                opt.step({n: params[n] for n in grads}, grads, lr=lr)  # in place
                bad = _first_non_finite(params)
                if bad:
                    diverged(f"parameter {bad!r} is non-finite after the optimizer step")
                bad = _first_non_finite(state)
                if bad:
                    diverged(f"BatchNorm statistic {bad!r} is non-finite after the forward pass")
                step += 1
                loss_sum += loss * len(yb)
                correct += int(np.sum(np.argmax(logits, axis=1) == yb))
                rate_sum += cache.record.firing_rate * len(yb)
                seen += len(yb)
            test = guarded(evaluate, params, state, cfg, ds.test_x, ds.test_y)
        if not math.isfinite(test.loss):
            diverged(f"non-finite test loss ({test.loss})", evaluating=True)
        history.append(epoch_row(epoch, step, lr, loss_sum, correct, rate_sum, seen, test,
                                 time.perf_counter() - t0, tc.epochs, log))
        if path is not None:
            _save(path, tc, cfg, params, state, opt, rng, epoch, step, history, data=data_print)
            saved_epoch = epoch
            _write_metrics(out_dir, history)
    return TrainResult(params, state, cfg, history, out_dir, trained_epochs=last_epoch - start_epoch)
