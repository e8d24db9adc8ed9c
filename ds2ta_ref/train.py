"""The NumPy training loop and evaluation (issue 6).

The recipe is the paper's (docs/spec.md §4.11) scaled to a CPU: AdamW with decoupled
weight decay (none on biases, BatchNorm, ``tau`` and NSAD parameters), a
cosine schedule with linear warmup, optional label smoothing and gradient
clipping, cross-entropy on the time- and token-averaged logits; it is defined
once for both backends in :mod:`ds2ta_ref.recipe`.

Everything random comes from one seed: the parameters from
``default_rng(seed)``, the minibatch order from a second generator whose state
is saved in every checkpoint, so a resumed run ends with the same parameters,
bit for bit, as an uninterrupted one.

Run folders (the lock, ``--overwrite``), checkpoints, metrics and the resume
rules are :mod:`ds2ta_ref.runs`, shared with the PyTorch trainer
(:mod:`ds2ta_ref.torch.train`); the ablation study is :mod:`ds2ta_ref.ablation`.
A diverging run stops naming the epoch, step, learning rate and the first
non-finite tensor, and its last good checkpoint stays as it was.

The names this module exported before the split (``TrainConfig``, ``build_data``,
``load_run``, ``ConfigError``, ...) are still importable from here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import numpy as np

from . import data, fingerprint, layers, model, optim
from ._checks import NonFiniteError
from .config import ModelConfig
from .energy import block_energy, count_zeros
from .recipe import (
    DATA_DECIDED,
    DATA_SHAPES,
    DATASET_DEFAULTS,
    SPLIT_SIZES,
    VARIANTS,
    ConfigError,
    EvalResult,
    TrainConfig,
    augment_batch,
    build_data,
    check_data_files,
    check_data_matches,
    default_out,
    model_config,
    model_input,
    no_decay,
    schedule,
    variant_name,
)
from .runs import (
    CHECKPOINT,
    LOCK,
    METRICS,
    RunFolder,
    RunFolderError,
    TrainingError,
    TrainResult,
    diverged,
    epoch_row,
    load_run,
    plan_resume,
    progress_bar,
    resume_conflicts,
    write_metrics,
)

__all__ = [
    "TrainConfig",
    "ConfigError",
    "RunFolderError",
    "TrainingError",
    "TrainResult",
    "build_data",
    "model_config",
    "train",
    "evaluate",
    "load_run",
    "resume_conflicts",
    "default_out",
    "variant_name",
    "VARIANTS",
    "EvalResult",
    "make_optimizer",
    # re-exported from recipe.py and runs.py, where they moved
    "DATA_DECIDED",
    "DATA_SHAPES",
    "DATASET_DEFAULTS",
    "SPLIT_SIZES",
    "CHECKPOINT",
    "LOCK",
    "METRICS",
    "check_data_files",
    "check_data_matches",
    "epoch_row",
    "augment_batch",
    "write_metrics",
    "plan_resume",
]


def make_optimizer(params: dict, cfg: ModelConfig, tc: TrainConfig) -> optim.AdamW:
    """AdamW over the trainable parameters only (a frozen ``tau`` is never touched), no weight
    decay where :func:`ds2ta_ref.recipe.no_decay` says."""
    names = model.trainable(cfg)
    assert tc.lr is not None  # TrainConfig.__post_init__ fills the data set's default
    return optim.AdamW(
        {n: params[n] for n in names},
        lr=tc.lr,
        weight_decay=tc.weight_decay,
        no_decay=lambda n: no_decay(n, params[n].shape),
    )


# --------------------------------------------------------------------------- evaluation
def evaluate(
    params: dict, state: dict, cfg: ModelConfig, x: np.ndarray, y: np.ndarray, *, batch_size: int = 128
) -> EvalResult:
    """Eval-mode accuracy, loss, firing rate and per-block attention sparsity/energy."""
    correct, loss_sum, rate_sum = 0, 0.0, 0.0
    zeros = np.zeros(cfg.depth, dtype=np.int64)
    entries = np.zeros(cfg.depth, dtype=np.int64)
    for xb, yb in data.iterate_minibatches(x, y, batch_size, rng=None, shuffle=False):
        logits, _, cache = model.forward(model_input(xb, cfg), params, state, cfg, training=False, need_backward=False)
        loss, _ = layers.cross_entropy(logits, yb)
        correct += int(np.sum(np.argmax(logits, axis=1) == yb))
        loss_sum += loss * len(yb)
        rate_sum += cache.record.firing_rate * len(yb)
        z, e = count_zeros(cache.record.attention_maps)
        zeros += z
        entries += e
    n = len(y)
    return EvalResult(correct / n, loss_sum / n, rate_sum / n, block_energy(cfg, zeros, entries))


# --------------------------------------------------------------------------- training
def _first_non_finite(arrays: Mapping[str, np.ndarray]) -> str | None:
    """The first name (in the dict's order) whose array holds NaN or infinity."""
    for name, value in arrays.items():
        if np.asarray(value).dtype.kind == "f" and not np.all(np.isfinite(value)):
            return name
    return None


def _largest(params: Mapping[str, np.ndarray]) -> str:
    name = max(params, key=lambda k: float(np.max(np.abs(params[k]), initial=0.0)))
    return f"the largest parameter is {name!r} with |value| {float(np.max(np.abs(params[name]))):.3g}"


def train(
    tc: TrainConfig | None,
    out_dir: str | None = None,
    *,
    resume: str | None = None,
    add_epochs: int = 0,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
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
        overwrite: a new run may replace the run in ``out_dir``: its files are moved aside to
            ``<out_dir>.old-<timestamp>`` and deleted once this run has written its first
            checkpoint; if it stops before that, they are put back (:class:`ds2ta_ref.runs.RunFolder`).
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
    plan = plan_resume(resume, given=tc, add_epochs=add_epochs, out_dir=out_dir, overwrite=overwrite)
    if plan is not None:
        tc, cfg, params, state, out_dir = plan.tc, plan.cfg, plan.params, plan.state, plan.folder
        start_epoch, step, history = plan.start_epoch, plan.step, plan.history
        if plan.finished:
            log(f"{plan.checkpoint} is a finished run ({start_epoch} of {tc.epochs} epochs); nothing to do")
            return TrainResult(params, state, cfg, history, out_dir, trained_epochs=0)
    elif tc is None:
        raise ValueError("tc (the run's TrainConfig) is required unless resuming")

    with RunFolder(
        out_dir,
        resuming=plan is not None,
        overwrite=overwrite,
        log=log,
        saved_epoch=None if plan is None else plan.start_epoch,
    ) as folder:
        if plan is None:
            log(
                f"training {variant_name(tc.tasa, tc.nsad)} ({tc.preset} preset) on {tc.dataset}, seed {tc.seed}"
                + ("" if out_dir is None else f"; checkpoints and metrics in {out_dir}/")
            )
        ds = build_data(tc)
        if plan is not None:
            check_data_matches(cfg, ds, plan.checkpoint)
            fingerprint.verify(plan.meta.get("data"), tc, plan.checkpoint, ds)  # issue 18 item 5: the data it was
            # trained on
            opt = make_optimizer(params, cfg, tc)
            opt.load_state_dict(plan.optimizer_arrays())
            rng = plan.rng()
            log(f"resuming {plan.checkpoint} after epoch {start_epoch} of {tc.epochs} (step {step})")
        else:
            cfg = model_config(tc, ds)
            dtype = np.dtype(tc.dtype)
            params = model.init_params(cfg, np.random.default_rng(tc.seed), dtype=dtype)
            state = model.init_state(cfg, dtype=dtype)
            opt = make_optimizer(params, cfg, tc)
            rng = np.random.default_rng([tc.seed, 1])  # minibatch order
            start_epoch, step, history = 0, 0, []
        result = _train_epochs(
            tc,
            cfg,
            ds,
            params,
            state,
            opt,
            rng,
            start_epoch,
            step,
            history,
            folder,
            stop_after=stop_after,
            progress=progress,
            log=log,
        )
    return result


def _train_epochs(
    tc, cfg, ds, params, state, opt, rng, start_epoch, step, history, folder: RunFolder, *, stop_after, progress, log
) -> TrainResult:
    """The training loop proper: epochs ``start_epoch + 1 ..``, a checkpoint after each."""
    sched = schedule(tc, len(ds.train_y))
    last_epoch = tc.epochs if stop_after is None else min(tc.epochs, stop_after)
    epoch, i, lr = start_epoch, 0, float("nan")
    data_print = fingerprint.of_data(tc, ds) if folder.writes else None  # issue 18 item 5: in every checkpoint

    def stop(what: str, *, evaluating: bool = False):
        when = (
            f"in the evaluation after its last step (lr {lr:.3g})"
            if evaluating
            else f"step {i} of {sched.steps_per_epoch} (global step {step + 1}, lr {lr:.3g})"
        )
        raise diverged(epoch, when, what, folder.kept())

    def guarded(fn, *args, **kwargs):
        """Run a forward or backward; the kernels reject non-finite inputs with
        ``NonFiniteError`` (``ds2ta_ref._checks``), which finite parameters can still
        produce by overflow."""
        try:
            return fn(*args, **kwargs)
        except NonFiniteError as exc:
            stop(
                f"a tensor inside {fn.__module__.split('.')[-1]}.{fn.__name__} became non-finite "
                f"({exc}; {_largest(params)})",
                evaluating=fn is evaluate,
            )

    for epoch in range(start_epoch + 1, last_epoch + 1):
        t0 = time.perf_counter()
        loss_sum, correct, rate_sum, seen = 0.0, 0, 0.0, 0
        batches = data.iterate_minibatches(ds.train_x, ds.train_y, tc.batch_size, rng=rng)
        # Overflow is caught by the finiteness checks below, which name the tensor;
        # numpy's RuntimeWarnings would only repeat it without saying where.
        with np.errstate(over="ignore", invalid="ignore"):
            for i, (xb, yb) in enumerate(progress_bar(batches, sched.steps_per_epoch, f"epoch {epoch}", progress), 1):  # noqa: B007 (stop() reads i)
                lr = sched.lr(step)
                xb = augment_batch(xb, ds, tc, rng)
                logits, state, cache = guarded(model.forward, model_input(xb, cfg), params, state, cfg, training=True)
                loss, dlogits = layers.cross_entropy(logits, yb, label_smoothing=tc.label_smoothing)
                if not np.isfinite(loss):
                    stop(f"non-finite loss ({loss})")
                _, grads = guarded(model.backward, dlogits, cache)
                bad = _first_non_finite({k: grads[k] for k in params if k in grads})
                if bad:
                    stop(f"non-finite gradient of {bad!r}")
                if tc.clip_grad > 0:
                    optim.clip_grad_norm(grads, tc.clip_grad)
                opt.step({n: params[n] for n in grads}, grads, lr=lr)  # in place
                bad = _first_non_finite(params)
                if bad:
                    stop(f"parameter {bad!r} is non-finite after the optimizer step")
                bad = _first_non_finite(state)
                if bad:
                    stop(f"BatchNorm statistic {bad!r} is non-finite after the forward pass")
                step += 1
                loss_sum += loss * len(yb)
                correct += int(np.sum(np.argmax(logits, axis=1) == yb))
                rate_sum += cache.record.firing_rate * len(yb)
                seen += len(yb)
            test = guarded(evaluate, params, state, cfg, ds.test_x, ds.test_y)
        if not math.isfinite(test.loss):
            stop(f"non-finite test loss ({test.loss})", evaluating=True)
        history.append(
            epoch_row(
                epoch, step, lr, loss_sum, correct, rate_sum, seen, test, time.perf_counter() - t0, tc.epochs, log
            )
        )
        folder.save(tc, cfg, params, state, opt.state_dict(), rng, epoch, step, history, data=data_print)
    return TrainResult(params, state, cfg, history, folder.out_dir, trained_epochs=last_epoch - start_epoch)
