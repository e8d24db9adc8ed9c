"""Training, evaluation and the ablation study on small built-in data (issue 6).

The recipe is the paper's (SPEC §4) scaled to a CPU: AdamW with decoupled
weight decay (none on biases, BatchNorm, ``tau`` and NSAD parameters), a
cosine schedule with linear warmup, optional label smoothing and gradient
clipping, cross-entropy on the time- and token-averaged logits.

Everything random comes from one seed: the parameters from
``default_rng(seed)``, the minibatch order from a second generator whose state
is saved in every checkpoint, so a resumed run ends with the same parameters,
bit for bit, as an uninterrupted one.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import checkpoint, data, layers, model, optim
from .config import ModelConfig, preset
from .energy import BlockEnergy, block_energy, count_zeros

__all__ = ["TrainConfig", "TrainingError", "TrainResult", "build_data", "model_config", "train",
           "evaluate", "load_run", "EvalResult"]

CHECKPOINT = "checkpoint.npz"
# What fits the 2-minute budget on 2 cores (measured; see the README).
DATASET_DEFAULTS = {
    "digits": dict(epochs=12, batch_size=64, lr=4e-3),
    "events": dict(epochs=10, batch_size=32, lr=3e-3),
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run: data, model switches and the optimizer recipe."""

    dataset: str = "digits"  # "digits" (scikit-learn, static) or "events" (generated, temporal)
    preset: str = "tiny"
    tasa: bool = True
    nsad: bool = True
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

    def __post_init__(self):
        if self.dataset not in DATASET_DEFAULTS:
            raise ValueError(f"dataset must be 'digits' or 'events', got {self.dataset!r}")
        for name, value in DATASET_DEFAULTS[self.dataset].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "test_subset", "shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "weight_decay", "warmup_epochs", "label_smoothing", "clip_grad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be < 1, got {self.label_smoothing}")


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or gradient); the message names the epoch and step."""


@dataclass
class TrainResult:
    params: dict
    state: dict
    cfg: ModelConfig
    history: list  # one dict per epoch
    out_dir: str | None


@dataclass
class EvalResult:
    accuracy: float
    loss: float
    spike_rate: float
    energy: list  # [BlockEnergy] per block


# --------------------------------------------------------------------------- data and model
def build_data(tc: TrainConfig) -> data.Dataset:
    """The data set of a run: digits upsampled to 16x16, or the generated events."""
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
    """The preset, adapted to the data's channels, size, classes and (for events) time steps."""
    C, H = ds.sample_shape[-3], ds.sample_shape[-1]
    overrides = dict(tasa=tc.tasa, nsad=tc.nsad, in_channels=C, img_size=H, num_classes=ds.num_classes)
    if ds.time_steps is not None:
        overrides["T"] = ds.time_steps
    return preset(tc.preset, **overrides)


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
def _save(path, tc, cfg, params, state, opt, rng, epoch, step, history):
    arrays = {f"param.{k}": v for k, v in params.items()}
    arrays.update({f"state.{k}": v for k, v in state.items()})
    arrays.update({f"optim.{k}": v for k, v in opt.state_dict().items()})
    arrays.update(checkpoint.rng_state_to_arrays(rng, prefix="rng."))
    meta = dict(epoch=epoch, step=step, train_config=dataclasses.asdict(tc),
                model_config=dataclasses.asdict(cfg), history=history)
    checkpoint.save(path, arrays, meta)


def load_run(path) -> tuple[TrainConfig, ModelConfig, dict, dict, dict, dict]:
    """Read a training checkpoint: ``(train_config, model_config, params, state, arrays, meta)``.

    Every parameter and BatchNorm statistic is validated by name and shape
    against the stored model config; problems raise ``ValueError`` naming the
    file and each offending entry.
    """
    arrays, meta = checkpoint.load(path)
    try:
        tc = TrainConfig(**meta["train_config"])
        cfg = ModelConfig(**meta["model_config"])
        int(meta["epoch"]), int(meta["step"]), list(meta["history"])
    except (KeyError, TypeError, ValueError) as exc:
        raise checkpoint.CheckpointError(f"checkpoint {str(path)!r} has invalid metadata: {exc}") from None
    params = {k[len("param."):]: v for k, v in arrays.items() if k.startswith("param.")}
    state = {k[len("state."):]: v for k, v in arrays.items() if k.startswith("state.")}
    checkpoint.validate(params, model.param_shapes(cfg), what=f"checkpoint {str(path)!r} parameters")
    checkpoint.validate(state, model.state_shapes(cfg), what=f"checkpoint {str(path)!r} BatchNorm state")
    return tc, cfg, params, state, arrays, meta


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
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(history, f, indent=1)
    with open(os.path.join(out_dir, "metrics.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def train(tc: TrainConfig, out_dir: str | None = None, *, resume: str | None = None,
          stop_after: int | None = None, progress: bool = True,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train a model; checkpoint and metrics go to ``out_dir`` after every epoch.

    Args:
        tc: the run's settings (ignored when resuming: the checkpoint's own are used).
        out_dir: where ``checkpoint.npz``, ``metrics.csv`` and ``metrics.json`` go (None: nowhere).
        resume: a checkpoint to continue from.
        stop_after: stop after this many epochs in total (to interrupt a run on purpose).
        progress: show a tqdm progress bar per epoch.
        log: receives one summary line per epoch.

    Raises:
        TrainingError: a non-finite loss or gradient, naming the epoch and step;
            the last checkpoint written stays intact.
    """
    if resume is not None:
        tc, cfg, params, state, arrays, meta = load_run(resume)
        ds = build_data(tc)
        opt = _optimizer(params, cfg, tc)
        opt.load_state_dict({k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")})
        rng = checkpoint.rng_from_arrays(arrays, prefix="rng.")
        start_epoch, step, history = int(meta["epoch"]), int(meta["step"]), list(meta["history"])
        log(f"resuming {resume} after epoch {start_epoch} (step {step})")
    else:
        ds = build_data(tc)
        cfg = model_config(tc, ds)
        dtype = np.dtype(tc.dtype)
        params = model.init_params(cfg, np.random.default_rng(tc.seed), dtype=dtype)
        state = model.init_state(cfg, dtype=dtype)
        opt = _optimizer(params, cfg, tc)
        rng = np.random.default_rng([tc.seed, 1])  # minibatch order
        start_epoch, step, history = 0, 0, []
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)

    steps_per_epoch = math.ceil(len(ds.train_y) / tc.batch_size)
    total_steps = tc.epochs * steps_per_epoch
    warmup = min(int(round(tc.warmup_epochs * steps_per_epoch)), total_steps - 1)
    last_epoch = tc.epochs if stop_after is None else min(tc.epochs, stop_after)
    for epoch in range(start_epoch + 1, last_epoch + 1):
        t0 = time.perf_counter()
        loss_sum, correct, rate_sum, seen = 0.0, 0, 0.0, 0
        batches = data.iterate_minibatches(ds.train_x, ds.train_y, tc.batch_size, rng=rng)
        for i, (xb, yb) in enumerate(_progress(batches, steps_per_epoch, f"epoch {epoch}", progress), 1):
            if tc.shift:
                xb = data.random_shift(xb, tc.shift, rng)
            logits, state, cache = model.forward(params, state, _model_input(xb, cfg), cfg, training=True)
            loss, dlogits = layers.cross_entropy(logits, yb, label_smoothing=tc.label_smoothing)
            if not np.isfinite(loss):
                raise TrainingError(f"non-finite loss ({loss}) at epoch {epoch}, step {i} "
                                    f"(global step {step + 1}); the last checkpoint is intact")
            grads = model.backward(dlogits, cache)
            bad = [k for k, g in grads.items() if not np.all(np.isfinite(g))]
            if bad:
                raise TrainingError(f"non-finite gradient for {bad[:5]} at epoch {epoch}, step {i} "
                                    f"(global step {step + 1}); the last checkpoint is intact")
            if tc.clip_grad > 0:
                optim.clip_grad_norm(grads, tc.clip_grad)
            lr = optim.cosine_lr(step, total_steps=total_steps, warmup_steps=warmup,
                                 base_lr=tc.lr, min_lr=tc.min_lr)
            opt.step({n: params[n] for n in grads}, grads, lr=lr)  # in place
            step += 1
            loss_sum += loss * len(yb)
            correct += int(np.sum(np.argmax(logits, axis=1) == yb))
            rate_sum += cache.record.firing_rate * len(yb)
            seen += len(yb)
        test = evaluate(params, state, cfg, ds.test_x, ds.test_y)
        seconds = time.perf_counter() - t0
        row = dict(epoch=epoch, step=step, lr=lr, loss=loss_sum / seen, train_acc=correct / seen,
                   test_acc=test.accuracy, test_loss=test.loss, firing_rate=rate_sum / seen,
                   attention_sparsity=float(np.mean([e.sparsity for e in test.energy])), seconds=seconds)
        history.append(row)
        log(f"epoch {epoch:3d}/{tc.epochs}  loss {row['loss']:.4f}  train {100 * row['train_acc']:.2f}%  "
            f"test {100 * row['test_acc']:.2f}%  firing {row['firing_rate']:.3f}  "
            f"attn sparsity {100 * row['attention_sparsity']:.1f}%  {seconds:.1f}s")
        if out_dir is not None:
            _save(os.path.join(out_dir, CHECKPOINT), tc, cfg, params, state, opt, rng, epoch, step, history)
            _write_metrics(out_dir, history)
    return TrainResult(params, state, cfg, history, out_dir)
