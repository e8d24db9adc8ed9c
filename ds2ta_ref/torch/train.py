"""Training with PyTorch: the NumPy backend's run, on a GPU or on many processes.

:func:`train_torch` is :func:`ds2ta_ref.train.train` with the model, its
gradients and the optimizer step in PyTorch; everything else is shared:

* data: :func:`ds2ta_ref.train.build_data` (or the ``data_set`` argument), the
  minibatches of :func:`ds2ta_ref.data.iterate_minibatches` drawn from the same
  ``default_rng([seed, 1])``, the same augmentation draws (``shift``; for CIFAR
  :func:`ds2ta_ref.cifar.augment`), so a single-process run sees the very
  batches of a NumPy run;
* recipe: the same initialization (:func:`ds2ta_ref.params.init_params` from
  ``default_rng(seed)``), cross-entropy with label smoothing, gradient clipping
  (``torch.nn.utils.clip_grad_norm_``, which :func:`ds2ta_ref.optim.clip_grad_norm`
  follows), ``torch.optim.AdamW`` with the NumPy backend's no-decay rule and the
  learning rate of :func:`ds2ta_ref.optim.cosine_lr` at every step;
* outputs: ``checkpoint.npz`` with the NumPy backend's array names (``param.*``,
  ``state.*``, ``optim.m.*``, ``optim.v.*``, ``optim.step``, ``rng.*``) and
  metadata, so :func:`ds2ta_ref.train.load_run` reads it, the NumPy model
  evaluates it, and either backend resumes it; ``metrics.json``/``metrics.csv``
  with the same columns;
* run folders: the rules of issue 9 (a folder holding a run is refused, a lock
  file keeps a second process out, a run resumes in its checkpoint's folder with
  its recorded settings, ``add_epochs`` extends it), through the NumPy backend's
  own helpers.

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
(:func:`ds2ta_ref.torch.distributed.convert_sync_batchnorm`, any device and
backend) the statistics are the global batch's and a data-parallel run is the
single-process run, up to round-off. Rank 0 alone writes the checkpoint and
the metrics.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .. import checkpoint, data, devices, fingerprint, optim
from .. import model as np_model
from .. import train as reference
from ..energy import block_energy
from .model import DS2TA, from_numpy, to_numpy

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
def make_optimizer(net: DS2TA, tc: reference.TrainConfig) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over the trainable parameters, no weight decay where the NumPy
    backend has none (:func:`ds2ta_ref.train._no_decay`); one parameter per group, keyed by name."""
    groups = []
    for name, p in net.named_parameters():
        if p.requires_grad:  # a frozen tau is never touched
            decay = 0.0 if reference._no_decay(name, tuple(p.shape)) else tc.weight_decay
            groups.append({"params": [p], "weight_decay": decay, "name": name})
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
            opt.state[p] = {"step": torch.tensor(float(step)),
                            "exp_avg": torch.as_tensor(arrays[f"m.{name}"]).to(p),
                            "exp_avg_sq": torch.as_tensor(arrays[f"v.{name}"]).to(p)}


# --------------------------------------------------------------------------- evaluation
def _inputs(xb: np.ndarray, cfg, device, dtype) -> torch.Tensor:
    x = data.to_time_major(xb, cfg.T) if xb.ndim == 5 else xb  # events: (T, B, C, H, W)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)


@torch.no_grad()
def evaluate_torch(net: DS2TA, x: np.ndarray, y: np.ndarray, *, batch_size: int = 128,
                   device="cpu") -> reference.EvalResult:
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
    z, e = np.array(totals[4:4 + cfg.depth]), np.array(totals[4 + cfg.depth:])
    return reference.EvalResult(totals[0] / n, totals[1] / n, totals[2] / n, block_energy(cfg, z, e))


# --------------------------------------------------------------------------- outputs
def _save(path, tc, cfg, net, opt, rng, epoch, step, history, world, data=None):
    """:func:`ds2ta_ref.train._save`'s arrays and metadata, plus ``backend`` and ``world_size``."""
    params, state = to_numpy(net)
    arrays = {f"param.{k}": v for k, v in params.items()}
    arrays.update({f"state.{k}": v for k, v in state.items()})
    arrays.update({f"optim.{k}": v for k, v in optimizer_to_arrays(opt).items()})
    arrays.update(checkpoint.rng_state_to_arrays(rng, prefix="rng."))
    meta = dict(epoch=epoch, step=step, train_config=dataclasses.asdict(tc), model_config=dataclasses.asdict(cfg),
                history=history, backend="torch", world_size=world)
    if data is not None:  # issue 18 item 5: the data fingerprint (ds2ta_ref.fingerprint)
        meta["data"] = data
    checkpoint.save(path, arrays, meta)


# --------------------------------------------------------------------------- training
def train_torch(tc: reference.TrainConfig | None, out_dir: str | None = None, *, device: str = "cpu",
                resume: str | None = None, add_epochs: int = 0, overwrite: bool = False,
                stop_after: int | None = None, progress: bool = True, log: Callable[[str], None] = print,
                data_set: data.Dataset | None = None, sync_bn: bool = False) -> reference.TrainResult:
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
    rank, world, created = _distributed(device)
    dev = _device(device, world)
    if rank != 0:
        log, progress = (lambda _: None), False
    try:
        return _train(tc, out_dir, dev, resume, add_epochs, overwrite, stop_after, progress, log, data_set,
                      sync_bn, rank, world)
    finally:
        if created:
            dist.destroy_process_group()


def _resumed_run(tc, out_dir, resume, add_epochs):
    """The resume rules of :func:`ds2ta_ref.train.train` (same checks, same messages): the run
    continues in its checkpoint's folder with its recorded settings (``epochs`` + ``add_epochs``).
    Returns ``(resume, tc, out_dir, loaded)``."""
    if os.path.isdir(resume):
        resume = os.path.join(resume, reference.CHECKPOINT)
    folder = os.path.dirname(os.path.abspath(resume))
    if out_dir is not None and os.path.abspath(out_dir) != folder:
        raise reference.RunFolderError(f"a resumed run continues in its checkpoint's folder {folder!r}, "
                                       f"not in {out_dir!r}; leave out --out")
    here = os.path.join(folder, reference.CHECKPOINT)
    if os.path.exists(here) and os.path.exists(resume) and not os.path.samefile(here, resume):
        raise reference.RunFolderError(f"{resume!r} would continue in {folder!r}, which holds another run's "
                                       f"{reference.CHECKPOINT}; copy {resume!r} into an empty folder and resume it there")
    loaded = reference.load_run(resume)
    recorded = loaded[0]
    if isinstance(add_epochs, bool) or not isinstance(add_epochs, int) or add_epochs < 0:
        raise reference.ConfigError("add_epochs", "must be an integer >= 0", add_epochs)
    given = {} if tc is None else dataclasses.asdict(tc)
    if add_epochs:
        given.pop("epochs", None)
    conflicts = reference.resume_conflicts(recorded, given)
    if conflicts:
        raise reference.ConfigError(conflicts[0][0], "and the other settings must be the checkpoint's, but " + "; ".join(
            f"{f} is {old!r} in the checkpoint, {new!r} given" for f, old, new in conflicts))
    return resume, dataclasses.replace(recorded, epochs=recorded.epochs + add_epochs), folder, loaded


def _train(tc, out_dir, dev, resume, add_epochs, overwrite, stop_after, progress, log, data_set, sync_bn,
           rank, world):
    if resume is not None:
        resume, tc, out_dir, (_, cfg, params, state, arrays, meta) = _resumed_run(tc, out_dir, resume, add_epochs)
        start_epoch, step, history = int(meta["epoch"]), int(meta["step"]), list(meta["history"])
        if start_epoch >= tc.epochs:
            log(f"{resume} is a finished run ({start_epoch} of {tc.epochs} epochs); nothing to do")
            return reference.TrainResult(params, state, cfg, history, out_dir, trained_epochs=0)
    elif tc is None:
        raise ValueError("tc (the run's TrainConfig) is required unless resuming")
    elif add_epochs:
        raise reference.ConfigError("add_epochs", "extends a resumed run; it needs resume", add_epochs)

    writes = out_dir is not None and rank == 0  # rank 0 alone holds the folder and writes in it
    folder_lock = (reference._hold_run_folder(out_dir, resuming=resume is not None, overwrite=overwrite, log=log)
                   if writes else contextlib.nullcontext())
    with folder_lock:
        ds = data_set if data_set is not None else reference.build_data(tc)
        if resume is not None:
            reference.check_data_matches(cfg, ds, resume)
            fingerprint.verify(meta.get("data"), tc, resume, ds)  # issue 18 item 5: the data it was trained on
            rng = checkpoint.rng_from_arrays(arrays, prefix="rng.")
            log(f"resuming {resume} after epoch {start_epoch} of {tc.epochs} (step {step}) with PyTorch on {dev}")
        else:
            log(f"training {reference.variant_name(tc.tasa, tc.nsad)} ({tc.preset} preset) on {tc.dataset}, "
                f"seed {tc.seed}, with PyTorch on {dev}" + (f" x {world} processes" if world > 1 else "")
                + ("" if out_dir is None else f"; checkpoints and metrics in {out_dir}/"))
            cfg = reference.model_config(tc, ds)
            params = np_model.init_params(cfg, np.random.default_rng(tc.seed), dtype=np.dtype(tc.dtype))
            state = np_model.init_state(cfg, dtype=np.dtype(tc.dtype))
            rng = np.random.default_rng([tc.seed, 1])  # minibatch order and augmentation, as the NumPy backend
            start_epoch, step, history = 0, 0, []
        net = from_numpy(params, state, cfg).to(device=dev, dtype=getattr(torch, tc.dtype)).train()
        if world > 1 and sync_bn:
            from .distributed import convert_sync_batchnorm  # (not at the top: python -m ds2ta_ref.torch.distributed)

            convert_sync_batchnorm(net)  # in place; names, parameters and buffers unchanged
        opt = make_optimizer(net, tc)
        if resume is not None:
            optimizer_from_arrays(opt, {k[len("optim."):]: v for k, v in arrays.items() if k.startswith("optim.")})
        model = net
        if world > 1:
            model = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[dev.index] if dev.type == "cuda" else None)
        return _epochs(tc, cfg, ds, net, model, opt, rng, start_epoch, step, history, out_dir, writes, dev,
                       stop_after, progress, log, rank, world)


def _epochs(tc, cfg, ds, net, model, opt, rng, start_epoch, step, history, out_dir, writes, dev, stop_after,
            progress, log, rank, world):
    """The loop of :func:`ds2ta_ref.train._train_epochs` with PyTorch; only a ``writes`` process saves."""
    path = os.path.join(out_dir, reference.CHECKPOINT) if writes else None
    saved_epoch = start_epoch if path is not None and os.path.exists(path) else None
    dtype = net.head.weight.dtype
    trainable = [p for p in net.parameters() if p.requires_grad]
    steps_per_epoch = math.ceil(len(ds.train_y) / tc.batch_size)
    total_steps = tc.epochs * steps_per_epoch
    warmup = min(int(round(tc.warmup_epochs * steps_per_epoch)), total_steps - 1)
    last_epoch = tc.epochs if stop_after is None else min(tc.epochs, stop_after)
    lr = float("nan")
    data_print = None if path is None else fingerprint.of_data(tc, ds)  # issue 18 item 5: in every checkpoint
    for epoch in range(start_epoch + 1, last_epoch + 1):
        t0 = time.perf_counter()
        sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss sum, correct, firing-rate sum
        seen = 0
        batches = data.iterate_minibatches(ds.train_x, ds.train_y, tc.batch_size, rng=rng)
        for i, (xb, yb) in enumerate(reference._progress(batches, steps_per_epoch, f"epoch {epoch}", progress), 1):
            lr = optim.cosine_lr(step, total_steps=total_steps, warmup_steps=warmup, base_lr=tc.lr, min_lr=tc.min_lr)
            xb = reference.augment_batch(xb, ds, tc, rng)
            n_global = len(yb)
            xb, yb = xb[rank::world], yb[rank::world]  # this process's shard of the global batch
            if len(yb) == 0:
                raise ValueError(f"a batch of {n_global} samples cannot be shared by {world} processes: "
                                 f"choose a batch size and data set size with at least {world} samples per batch")
            yt = torch.from_numpy(yb).to(dev)
            logits, rec = model(_inputs(xb, cfg, dev, dtype), record=True)
            loss_sum = F.cross_entropy(logits, yt, label_smoothing=tc.label_smoothing, reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss_sum * (world / n_global)).backward()  # DDP averages over the processes
            norm = torch.nn.utils.clip_grad_norm_(trainable, tc.clip_grad if tc.clip_grad > 0 else math.inf,
                                                  foreach=False)
            if not torch.isfinite(norm):  # the same averaged gradient on every process: all stop here
                kept = (f"the last good checkpoint {path} (epoch {saved_epoch}) is intact" if saved_epoch is not None
                        else "no checkpoint was written by this process")
                raise reference.TrainingError(
                    f"training diverged at epoch {epoch}, step {i} of {steps_per_epoch} (global step {step + 1}, "
                    f"lr {lr:.3g}): non-finite gradient norm ({norm.item()}); {kept}")
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            step += 1
            with torch.no_grad():
                sums += torch.stack([loss_sum.double(), (logits.argmax(1) == yt).sum().double(),
                                     rec.spike_count.double() / rec.neuron_count * len(yb)])
            seen += len(yb)
        loss_total, correct, rate_total, seen = _all_sum(sums.tolist() + [seen], dev)
        if world > 1:
            for b in net.buffers():  # rank 0's running statistics everywhere before evaluating
                dist.broadcast(b, 0)
        test = evaluate_torch(net, ds.test_x, ds.test_y, device=dev)
        history.append(reference.epoch_row(epoch, step, lr, loss_total, correct, rate_total, seen, test,
                                           time.perf_counter() - t0, tc.epochs, log))
        if path is not None:
            _save(path, tc, cfg, net, opt, rng, epoch, step, history, world, data=data_print)
            saved_epoch = epoch
            reference._write_metrics(out_dir, history)
        if world > 1:
            dist.barrier()  # nobody starts the next epoch (or returns) before the checkpoint is complete
    params, state = to_numpy(net)
    return reference.TrainResult(params, state, cfg, history, out_dir, trained_epochs=last_epoch - start_epoch)
