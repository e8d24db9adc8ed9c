"""Training with PyTorch: the NumPy backend's run, on a GPU or on many processes.

:func:`train_torch` is :func:`ds2ta_ref.train.train` with the model, its
gradients and the optimizer step in PyTorch; everything else is shared:

* data: :func:`ds2ta_ref.recipe.build_data` (or the ``data_set`` argument), the
  minibatches of :func:`ds2ta_ref.data.iterate_minibatches` drawn from the same
  ``default_rng([seed, 1])``, the same augmentation draws
  (:func:`ds2ta_ref.recipe.augment_batch`), so a single-process run sees the
  very batches of a NumPy run;
* recipe: the same initialization (:func:`ds2ta_ref.params.init_params` from
  ``default_rng(seed)``), cross-entropy with label smoothing, gradient clipping
  (``torch.nn.utils.clip_grad_norm_``, which :func:`ds2ta_ref.optim.clip_grad_norm`
  follows), ``torch.optim.AdamW`` with the NumPy backend's no-decay rule
  (:func:`ds2ta_ref.recipe.no_decay`) and the learning rate of
  :func:`ds2ta_ref.recipe.schedule` at every step;
* outputs: ``checkpoint.npz`` with the NumPy backend's array names (``param.*``,
  ``state.*``, ``optim.m.*``, ``optim.v.*``, ``optim.step``, ``rng.*``) and
  metadata (:meth:`ds2ta_ref.runs.RunFolder.save`), so :func:`ds2ta_ref.runs.load_run` reads it, the NumPy model
  evaluates it, and either backend resumes it; ``metrics.json``/``metrics.csv``
  with the same columns;
* run folders: the rules of issue 9 (a folder holding a run is refused, a lock
  file keeps a second process out, ``overwrite`` keeps the previous run until the
  first checkpoint, a run resumes in its checkpoint's folder with its recorded
  settings, ``add_epochs`` extends it): :class:`ds2ta_ref.runs.RunFolder` and
  :func:`ds2ta_ref.runs.plan_resume`, the very code of the NumPy backend.

What is left here is PyTorch's own: the process group, the optimizer and its
state as arrays, the evaluation and the loop on the PyTorch model.

Data parallel (``torchrun --nproc-per-node N ...``, which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): the process
group is initialized from those variables (``nccl`` on CUDA, ``gloo`` on the
CPU) and the model wrapped in ``DistributedDataParallel``. Every process draws
the same global minibatch (the same ``rng``) and takes the strided shard
``batch[rank::N]`` of it -- what ``DistributedSampler(shuffle=False)`` does
to a list, without its padding -- so the global batches are the NumPy run's
whatever ``N`` is. The loss of a shard is its summed cross-entropy times
``N / global batch size``, so that DDP's gradient average is the gradient of
the mean loss over the global batch.

BatchNorm statistics are per process unless ``sync_bn=True``: each process
normalizes its shard with the shard's own batch statistics, so a step differs
from a single-process step on the global batch exactly as a smaller batch's
statistics differ (the gradient equals the mean of the per-shard gradients;
see ``ds2ta_ref.torch.distributed.gradient_check``), and the running
statistics are rank 0's (DDP broadcasts rank 0's buffers before every
forward). With ``sync_bn=True``
(:func:`ds2ta_ref.torch.syncbn.convert_sync_batchnorm`: PyTorch's
``SyncBatchNorm`` on CUDA, the package's own on the CPU with gloo) the
statistics are the global batch's and a data-parallel run is the
single-process run, up to round-off. Rank 0 alone writes the checkpoint and
the metrics.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .. import data, devices, fingerprint
from .. import model as np_model
from ..energy import block_energy
from ..recipe import (
    EvalResult,
    TrainConfig,
    augment_batch,
    build_data,
    check_data_matches,
    model_config,
    no_decay,
    schedule,
    variant_name,
)
from ..runs import RunFolder, TrainResult, diverged, epoch_row, plan_resume, progress_bar
from .model import DS2TA, from_numpy, to_numpy
from .syncbn import convert_sync_batchnorm

__all__ = ["train_torch", "evaluate_torch", "make_optimizer", "optimizer_to_arrays", "optimizer_from_arrays"]


# --------------------------------------------------------------------------- process group
def _distributed(device: str) -> tuple[int, int, bool]:
    """``(rank, world_size, created)``: join the torchrun process group if ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _device(device: str, world: int) -> torch.device:
    if device == "cuda" and world > 1:  # one GPU per process
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(device)


def _all_sum(values: list, device) -> list:
    """Sum numbers over the processes (identity in a single process)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- optimizer
def make_optimizer(net: DS2TA, tc: TrainConfig) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over the trainable parameters, no weight decay where the NumPy
    backend has none (:func:`ds2ta_ref.recipe.no_decay`); one parameter per group, keyed by name."""
    groups = []
    for name, p in net.named_parameters():
        if p.requires_grad:  # a frozen tau is never touched
            decay = 0.0 if no_decay(name, tuple(p.shape)) else tc.weight_decay
            groups.append({"params": [p], "weight_decay": decay, "name": name})
    assert tc.lr is not None  # TrainConfig.__post_init__ fills the data set's default
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.999), eps=1e-8, foreach=False)


def optimizer_to_arrays(opt: torch.optim.AdamW) -> dict[str, np.ndarray]:
    """The NumPy :class:`ds2ta_ref.optim.AdamW` state names: ``m.<name>``, ``v.<name>``, ``step``."""
    arrays, step = {}, 0
    for group in opt.param_groups:
        p, name = group["params"][0], group["name"]
        st = opt.state.get(p, {})
        arrays[f"m.{name}"] = (st["exp_avg"] if st else torch.zeros_like(p)).detach().cpu().numpy().copy()
        arrays[f"v.{name}"] = (st["exp_avg_sq"] if st else torch.zeros_like(p)).detach().cpu().numpy().copy()
        step = max(step, int(st["step"]) if st else 0)
    arrays["step"] = np.array(step, dtype=np.int64)
    return arrays


def optimizer_from_arrays(opt: torch.optim.AdamW, arrays: dict) -> None:
    """Load the state written by :func:`optimizer_to_arrays` or by the NumPy optimizer."""
    step = int(arrays["step"])
    for group in opt.param_groups:
        p, name = group["params"][0], group["name"]
        if step:
            opt.state[p] = {
                "step": torch.tensor(float(step)),
                "exp_avg": torch.as_tensor(arrays[f"m.{name}"]).to(p),
                "exp_avg_sq": torch.as_tensor(arrays[f"v.{name}"]).to(p),
            }


# --------------------------------------------------------------------------- evaluation
def _inputs(xb: np.ndarray, cfg, device, dtype) -> torch.Tensor:
    x = data.to_time_major(xb, cfg.T) if xb.ndim == 5 else xb  # events: (T, B, C, H, W)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)


@torch.no_grad()
def evaluate_torch(net: DS2TA, x: np.ndarray, y: np.ndarray, *, batch_size: int = 128, device="cpu") -> EvalResult:
    """:func:`ds2ta_ref.train.evaluate` on the PyTorch model (eval mode); under DDP each process
    evaluates the shard ``[rank::N]`` and the counts are summed."""
    net = getattr(net, "module", net)
    cfg = net.cfg
    dtype = net.head.weight.dtype
    was_training = net.training
    net.eval()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    x, y = x[rank::world], y[rank::world]
    correct, loss_sum, rate_sum = 0, 0.0, 0.0
    zeros = torch.zeros(cfg.depth, dtype=torch.float64, device=device)
    entries = np.zeros(cfg.depth)
    for xb, yb in data.iterate_minibatches(x, y, batch_size, rng=None, shuffle=False):
        logits, rec = net(_inputs(xb, cfg, device, dtype), record=True)
        yt = torch.from_numpy(yb).to(device)
        loss_sum += F.cross_entropy(logits.double(), yt, reduction="sum").item()
        correct += int((logits.argmax(1) == yt).sum())
        rate_sum += rec.spike_count.item() / rec.neuron_count * len(yb)
        zeros += rec.zeros.double()
        entries += rec.entries
    net.train(was_training)
    totals = _all_sum([correct, loss_sum, rate_sum, len(y)] + zeros.tolist() + entries.tolist(), device)
    n = totals[3]
    z, e = np.array(totals[4 : 4 + cfg.depth]), np.array(totals[4 + cfg.depth :])
    return EvalResult(totals[0] / n, totals[1] / n, totals[2] / n, block_energy(cfg, z, e))


# --------------------------------------------------------------------------- training
def train_torch(
    tc: TrainConfig | None,
    out_dir: str | None = None,
    *,
    device: str = "cpu",
    resume: str | None = None,
    add_epochs: int = 0,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    data_set: data.Dataset | None = None,
    sync_bn: bool = False,
) -> TrainResult:
    """Train with PyTorch; arguments, run folders, errors and result are those of :func:`ds2ta_ref.train.train`.

    Args:
        device: ``"cpu"``, ``"cuda"`` (under torchrun: ``cuda:LOCAL_RANK``) or any torch device.
        data_set: use this :class:`~ds2ta_ref.data.Dataset` instead of ``build_data(tc)`` (e.g.
            :func:`ds2ta_ref.cifar.load`); the checkpoint records ``tc`` only, so a resumed run needs
            the same ``data_set`` again.
        sync_bn: BatchNorm statistics over the global batch under DDP; default per process.

    Raises:
        RunFolderError, ConfigError, CheckpointError: as :func:`ds2ta_ref.train.train`, before any work.
        TrainingError: a non-finite gradient norm (hence loss or gradient), naming the epoch, step,
            learning rate and the last good checkpoint; raised on every process at the same step.
    """
    devices.check_device(device)  # issue 18 item 4: a DeviceError (one line) before any process group or folder
    plan = plan_resume(resume, given=tc, add_epochs=add_epochs, out_dir=out_dir, overwrite=overwrite)
    if plan is None and tc is None:
        raise ValueError("tc (the run's TrainConfig) is required unless resuming")
    rank, world, created = _distributed(device)
    dev = _device(device, world)
    if rank != 0:
        log, progress = (lambda _: None), False
    try:
        return _train(tc, out_dir, dev, plan, overwrite, stop_after, progress, log, data_set, sync_bn, rank, world)
    finally:
        if created:
            dist.destroy_process_group()


def _train(tc, out_dir, dev, plan, overwrite, stop_after, progress, log, data_set, sync_bn, rank, world):
    if plan is not None:
        tc, cfg, params, state, out_dir = plan.tc, plan.cfg, plan.params, plan.state, plan.folder
        start_epoch, step, history = plan.start_epoch, plan.step, plan.history
        if plan.finished:
            log(f"{plan.checkpoint} is a finished run ({start_epoch} of {tc.epochs} epochs); nothing to do")
            return TrainResult(params, state, cfg, history, out_dir, trained_epochs=0)

    # rank 0 alone holds the folder and writes in it
    with RunFolder(
        out_dir,
        resuming=plan is not None,
        overwrite=overwrite,
        writes=rank == 0,
        log=log,
        saved_epoch=None if plan is None else plan.start_epoch,
    ) as folder:
        ds = data_set if data_set is not None else build_data(tc)
        if plan is not None:
            check_data_matches(cfg, ds, plan.checkpoint)
            fingerprint.verify(plan.meta.get("data"), tc, plan.checkpoint, ds)  # issue 18 item 5: the data it was
            # trained on
            rng = plan.rng()
            log(
                f"resuming {plan.checkpoint} after epoch {start_epoch} of {tc.epochs} (step {step}) with PyTorch "
                f"on {dev}"
            )
        else:
            log(
                f"training {variant_name(tc.tasa, tc.nsad)} ({tc.preset} preset) on {tc.dataset}, "
                f"seed {tc.seed}, with PyTorch on {dev}"
                + (f" x {world} processes" if world > 1 else "")
                + ("" if out_dir is None else f"; checkpoints and metrics in {out_dir}/")
            )
            cfg = model_config(tc, ds)
            params = np_model.init_params(cfg, np.random.default_rng(tc.seed), dtype=np.dtype(tc.dtype))
            state = np_model.init_state(cfg, dtype=np.dtype(tc.dtype))
            rng = np.random.default_rng([tc.seed, 1])  # minibatch order and augmentation, as the NumPy backend
            start_epoch, step, history = 0, 0, []
        net = from_numpy(params, state, cfg).to(device=dev, dtype=getattr(torch, tc.dtype)).train()
        if world > 1 and sync_bn:
            convert_sync_batchnorm(net)  # in place; names, parameters and buffers unchanged
        opt = make_optimizer(net, tc)
        if plan is not None:
            optimizer_from_arrays(opt, plan.optimizer_arrays())
        model = net
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[dev.index] if dev.type == "cuda" else None
            )
        return _epochs(
            tc,
            cfg,
            ds,
            net,
            model,
            opt,
            rng,
            start_epoch,
            step,
            history,
            folder,
            dev,
            stop_after,
            progress,
            log,
            rank,
            world,
        )


def _epochs(
    tc,
    cfg,
    ds,
    net,
    model,
    opt,
    rng,
    start_epoch,
    step,
    history,
    folder: RunFolder,
    dev,
    stop_after,
    progress,
    log,
    rank,
    world,
):
    """The loop of :func:`ds2ta_ref.train.train` with PyTorch; only the folder's writing process saves."""
    dtype = net.head.weight.dtype
    trainable = [p for p in net.parameters() if p.requires_grad]
    sched = schedule(tc, len(ds.train_y))
    last_epoch = tc.epochs if stop_after is None else min(tc.epochs, stop_after)
    lr = float("nan")
    data_print = fingerprint.of_data(tc, ds) if folder.writes else None  # issue 18 item 5: in every checkpoint
    for epoch in range(start_epoch + 1, last_epoch + 1):
        t0 = time.perf_counter()
        sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss sum, correct, firing-rate sum
        seen = 0
        batches = data.iterate_minibatches(ds.train_x, ds.train_y, tc.batch_size, rng=rng)
        for i, (xb, yb) in enumerate(progress_bar(batches, sched.steps_per_epoch, f"epoch {epoch}", progress), 1):
            lr = sched.lr(step)
            xb = augment_batch(xb, ds, tc, rng)
            n_global = len(yb)
            xb, yb = xb[rank::world], yb[rank::world]  # this process's shard of the global batch
            if len(yb) == 0:
                raise ValueError(
                    f"a batch of {n_global} samples cannot be shared by {world} processes: "
                    f"choose a batch size and data set size with at least {world} samples per batch"
                )
            yt = torch.from_numpy(yb).to(dev)
            logits, rec = model(_inputs(xb, cfg, dev, dtype), record=True)
            loss_sum = F.cross_entropy(logits, yt, label_smoothing=tc.label_smoothing, reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss_sum * (world / n_global)).backward()  # DDP averages over the processes
            norm = torch.nn.utils.clip_grad_norm_(
                trainable, tc.clip_grad if tc.clip_grad > 0 else math.inf, foreach=False
            )
            if not torch.isfinite(norm):  # the same averaged gradient on every process: all stop here
                raise diverged(
                    epoch,
                    f"step {i} of {sched.steps_per_epoch} (global step {step + 1}, lr {lr:.3g})",
                    f"non-finite gradient norm ({norm.item()})",
                    folder.kept(),
                )
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            step += 1
            with torch.no_grad():
                sums += torch.stack(
                    [
                        loss_sum.double(),
                        (logits.argmax(1) == yt).sum().double(),
                        rec.spike_count.double() / rec.neuron_count * len(yb),
                    ]
                )
            seen += len(yb)
        loss_total, correct, rate_total, seen = _all_sum(sums.tolist() + [seen], dev)
        if world > 1:
            for b in net.buffers():  # rank 0's running statistics everywhere before evaluating
                dist.broadcast(b, 0)
        test = evaluate_torch(net, ds.test_x, ds.test_y, device=dev)
        history.append(
            epoch_row(
                epoch, step, lr, loss_total, correct, rate_total, seen, test, time.perf_counter() - t0, tc.epochs, log
            )
        )
        if folder.writes:
            params, state = to_numpy(net)
            folder.save(
                tc,
                cfg,
                params,
                state,
                optimizer_to_arrays(opt),
                rng,
                epoch,
                step,
                history,
                backend="torch",
                world_size=world,
                data=data_print,
            )
        if world > 1:
            dist.barrier()  # nobody starts the next epoch (or returns) before the checkpoint is complete
    params, state = to_numpy(net)
    return TrainResult(params, state, cfg, history, folder.out_dir, trained_epochs=last_epoch - start_epoch)
