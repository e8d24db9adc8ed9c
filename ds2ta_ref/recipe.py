"""The training recipe both backends follow: settings, data, model, schedule, augmentation.

A run is described by one :class:`TrainConfig`; everything else is derived
from it here, so the NumPy trainer (:mod:`ds2ta_ref.train`) and the PyTorch
trainer (:mod:`ds2ta_ref.torch.train`) build the very same run:

* data: :func:`build_data` (digits upsampled to 16x16, the generated events,
  or CIFAR from its binary files), checked before loading by :func:`check_data_files`;
* model: :func:`model_config`, the preset with the run's overrides adapted to the data;
* optimizer: AdamW with decoupled weight decay, none where :func:`no_decay` says
  (biases, BatchNorm, ``tau``, NSAD parameters; docs/spec.md §4.11);
* schedule: :func:`schedule`, a cosine with linear warmup over the run's steps
  (:func:`ds2ta_ref.optim.cosine_lr`);
* augmentation: :func:`augment_batch`, drawn from the run's generator in a fixed order.

Run folders, checkpoints, metrics and the resume rules are :mod:`ds2ta_ref.runs`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from . import checkpoint, cifar, data, optim
from .config import PRESETS, ModelConfig, check_override, preset

__all__ = [
    "TrainConfig",
    "ConfigError",
    "EvalResult",
    "Schedule",
    "DATASET_DEFAULTS",
    "DATA_DECIDED",
    "SPLIT_SIZES",
    "DATA_SHAPES",
    "VARIANTS",
    "build_data",
    "check_data_files",
    "check_data_matches",
    "model_config",
    "model_input",
    "augment_batch",
    "schedule",
    "no_decay",
    "variant_name",
    "default_out",
]

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
DATA_SHAPES = {
    "digits": dict(in_channels=1, img_size=16, num_classes=10),
    "events": dict(in_channels=2, img_size=16, num_classes=4, T=8),
    "cifar10": dict(in_channels=3, img_size=32, num_classes=10),
    "cifar100": dict(in_channels=3, img_size=32, num_classes=100),
}


class ConfigError(ValueError):
    """A training setting is invalid. ``field`` names the :class:`TrainConfig`
    field (the command line shows it as its option, ``min_lr`` as ``--min-lr``)."""

    def __init__(self, field: str, problem: str, *value):
        self.field = field
        self.problem = problem + (f", got {value[0]!r}" if value else "")
        super().__init__(f"{field} {self.problem}")


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
        for name, minimum in (
            ("epochs", 1),
            ("batch_size", 1),
            ("seed", 0),
            ("data_seed", 0),
            ("train_subset", 0),
            ("test_subset", 0),
            ("shift", 0),
        ):
            value = getattr(self, name)
            need(
                isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum,
                name,
                f"must be an integer >= {minimum}",
            )
        for name in ("lr", "min_lr", "weight_decay", "warmup_epochs", "label_smoothing", "clip_grad"):
            value = getattr(self, name)
            need(
                isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0,
                name,
                "must be a finite number >= 0",
            )
        need(self.lr > 0, "lr", "must be > 0")
        need(self.min_lr <= self.lr, "min_lr", f"must be <= the peak learning rate lr={self.lr}")
        need(self.label_smoothing < 1, "label_smoothing", "must be < 1")
        need(isinstance(self.data_dir, str), "data_dir", "must be a path")
        need(
            bool(self.data_dir) == (self.dataset in cifar.FILES),
            "data_dir",
            f"is needed for {sorted(cifar.FILES)} (the folder of the official binary files) and only for them",
        )
        if self.data_dir:  # issue 18 item 5: stored absolute, so the checkpoint names the files wherever it is used
            object.__setattr__(self, "data_dir", os.path.abspath(self.data_dir))
        for field, available in zip(("train_subset", "test_subset"), SPLIT_SIZES[self.dataset]):
            need(
                getattr(self, field) <= available,
                field,
                f"must be <= {available}, the size of the {self.dataset} split (0: all of it)",
            )
        # issue 18 item 6: a warmup longer than the run, and a shift that can move the whole image out
        need(
            self.warmup_epochs < self.epochs,
            "warmup_epochs",
            f"must be < epochs={self.epochs} (the warmup is part of the run; the cosine decay needs the rest)",
        )
        side = DATA_SHAPES[self.dataset]["img_size"]
        need(
            self.shift < side,
            "shift",
            f"must be < {side}, the image size of {self.dataset}: a shift by the whole image leaves a blank sample",
        )

    def _check_model(self):
        """Normalize ``model`` to a tuple of ``(field, value)`` pairs sorted by field, each
        value checked for its type, the fields the data decides refused, and the preset with
        these overrides checked by ``ModelConfig``; a ``ConfigError`` on ``model`` names the field."""
        items = self.model
        if isinstance(items, Mapping):
            items = list(items.items())
        if not isinstance(items, (tuple, list)) or not all(
            isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) for item in items
        ):
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


@dataclass
class EvalResult:
    """What an evaluation measures (either backend): eval-mode accuracy, mean loss, firing rate
    and per-block attention sparsity and energy."""

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
        ds = dataclasses.replace(
            ds, train_x=ds.train_x[:n], train_y=ds.train_y[:n], test_x=ds.test_x[:m], test_y=ds.test_y[:m]
        )
    return ds


def model_config(tc: TrainConfig, ds: data.Dataset) -> ModelConfig:
    """The preset with the run's ``model`` overrides, adapted to the data's channels, size,
    classes and (for events) time steps."""
    C, H = ds.sample_shape[-3], ds.sample_shape[-1]
    overrides = dict(tc.model, tasa=tc.tasa, nsad=tc.nsad, in_channels=C, img_size=H, num_classes=ds.num_classes)
    if ds.time_steps is not None:
        overrides["T"] = ds.time_steps
    return preset(tc.preset, **overrides)


def check_data_matches(cfg: ModelConfig, ds: data.Dataset, path) -> None:
    """Raise ``CheckpointError`` naming ``path`` if the model stored there cannot
    take this data (channels, image size, classes or, for events, time steps)."""
    C, H = ds.sample_shape[-3], ds.sample_shape[-1]
    wanted = dict(in_channels=C, img_size=H, num_classes=ds.num_classes)
    if ds.time_steps is not None:
        wanted["T"] = ds.time_steps
    wrong = [f"{k}={getattr(cfg, k)} (the data needs {v})" for k, v in wanted.items() if getattr(cfg, k) != v]
    if wrong:
        raise checkpoint.CheckpointError(
            f"checkpoint {str(path)!r}: its model does not fit its own data set: {', '.join(wrong)}"
        )


def model_input(xb: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """A minibatch as the model takes it: images ``(B, C, H, W)`` as they are, event clips
    ``(B, T, C, H, W)`` time-major ``(T, B, C, H, W)``."""
    return data.to_time_major(xb, cfg.T) if xb.ndim == 5 else xb


def augment_batch(xb: np.ndarray, ds: data.Dataset, tc: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """A training batch's augmentation, drawn from the run's ``rng`` in this order (both
    backends call this, so they draw the same numbers): the random ``shift``, then for
    CIFAR a random crop with padding 4 and a horizontal flip (:func:`ds2ta_ref.cifar.augment`)."""
    if tc.shift:
        xb = data.random_shift(xb, tc.shift, rng)
    if ds.name in cifar.FILES:
        xb = cifar.augment(xb, rng, fill=cifar.black(ds.name))
    return xb


# --------------------------------------------------------------------------- optimizer and schedule
def no_decay(name: str, shape: tuple) -> bool:
    """No weight decay on biases, BatchNorm, tau and NSAD parameters (timm / Spikformer practice)."""
    return len(shape) <= 1 or name.endswith(".nsad")


@dataclass(frozen=True)
class Schedule:
    """The learning rate of every step of a run: linear warmup over ``warmup_steps``, then a
    cosine down to ``min_lr`` at ``total_steps`` (:func:`ds2ta_ref.optim.cosine_lr`)."""

    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    base_lr: float
    min_lr: float

    def lr(self, step: int) -> float:
        return optim.cosine_lr(
            step, total_steps=self.total_steps, warmup_steps=self.warmup_steps, base_lr=self.base_lr, min_lr=self.min_lr
        )


def schedule(tc: TrainConfig, n_train: int) -> Schedule:
    """The schedule of a run of ``tc.epochs`` epochs over ``n_train`` training samples. A run
    extended by ``add_epochs`` gets the schedule of its new total (the cosine is stretched);
    the warmup never takes the whole run (at most ``total_steps - 1`` steps)."""
    # None in these fields means "the data set's default", which TrainConfig.__post_init__ filled in
    assert tc.epochs is not None and tc.batch_size is not None and tc.lr is not None
    steps_per_epoch = math.ceil(n_train / tc.batch_size)
    total_steps = tc.epochs * steps_per_epoch
    warmup = min(int(round(tc.warmup_epochs * steps_per_epoch)), total_steps - 1)
    return Schedule(steps_per_epoch, total_steps, warmup, tc.lr, tc.min_lr)


# --------------------------------------------------------------------------- names
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
