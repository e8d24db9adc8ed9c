"""DistributedDataParallel checks on the CPU (``gloo``), with ``torch.multiprocessing.spawn``.

:func:`gradient_check` answers "is one data-parallel step the step of the
combined batch?" for ``world_size`` processes, each holding the shard
``batch[rank::world_size]`` as :func:`ds2ta_ref.torch.train.train_torch` does:

* with BatchNorm in eval mode (running statistics: no dependence on the batch),
  DDP's averaged gradient equals the single-process gradient of the combined
  batch (float64 round-off);
* with BatchNorm in training mode and per-process statistics (the default of
  ``train_torch`` on the CPU), each process normalizes with its shard's own
  statistics, so the averaged gradient equals the *mean of the single-process
  gradients of the shards* (round-off), and differs from the combined batch's
  gradient by what the batch statistics of a half batch change (reported, not
  zero). ``SyncBatchNorm`` (``sync_bn=True`` on CUDA) removes that difference.

:func:`train_processes` runs :func:`~ds2ta_ref.torch.train.train_torch` in
``world_size`` processes as ``torchrun`` would (the same environment variables).
``python -m ds2ta_ref.torch.distributed`` prints the gradient check.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ..config import ModelConfig
from ..gradcheck import firing_model_inputs, rel_error, small_model_config
from .model import from_numpy

__all__ = ["gradient_check", "train_processes", "free_port"]


def free_port() -> int:
    """A TCP port that was free a moment ago (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard_gradients(cfg, params, state, x, y, *, rank, world, training):
    """Gradients of this shard's contribution ``sum CE * world / B`` (float64, one process)."""
    net = from_numpy(params, state, cfg).train(training)
    return net, (lambda model: (F.cross_entropy(model(torch.from_numpy(x[rank::world])),
                                                torch.from_numpy(y[rank::world]), reduction="sum")
                                * (world / len(y))).backward())


def _grad_worker(rank, world, store, inputs, cfg_fields, tmp):
    """One DDP step per BatchNorm mode; rank 0 writes the averaged gradients to ``tmp/grads_<mode>.npz``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        cfg = ModelConfig(**cfg_fields)
        arrays = dict(np.load(inputs))
        params = {k[2:]: v for k, v in arrays.items() if k.startswith("p.")}
        state = {k[2:]: v for k, v in arrays.items() if k.startswith("s.")}
        for training in (False, True):
            net, step = _shard_gradients(cfg, params, state, arrays["x"], arrays["y"], rank=rank, world=world,
                                         training=training)
            step(torch.nn.parallel.DistributedDataParallel(net))
            if rank == 0:
                np.savez(os.path.join(tmp, f"grads_{training}.npz"),
                         **{k: p.grad.numpy() for k, p in net.named_parameters() if p.grad is not None})
    finally:
        dist.destroy_process_group()


def _single_gradients(cfg, params, state, x, y, *, world, training):
    """Mean over shards of the single-process shard gradients (``world`` shards; 1: the combined batch)."""
    total = {}
    for rank in range(world):
        net, step = _shard_gradients(cfg, params, state, x, y, rank=rank, world=world, training=training)
        step(net)
        for k, p in net.named_parameters():
            if p.grad is not None:
                total[k] = total.get(k, 0) + p.grad.numpy() / world
    return total


def gradient_check(cfg: ModelConfig | None = None, *, world_size: int = 2, batch: int = 6,
                   seed: int = 0) -> dict[str, float]:
    """One DDP step on ``world_size`` CPU processes (gloo) against single-process gradients (float64).

    Returns the worst relative error over all parameters (the biases feeding a
    BatchNorm compared against the largest gradient) for:
    ``eval_bn``: DDP vs the combined batch, BatchNorm in eval mode;
    ``train_bn_vs_shards``: DDP vs the mean of the shards' gradients, BatchNorm in training mode;
    ``train_bn_vs_combined``: DDP vs the combined batch, BatchNorm in training mode (not 0: per-process statistics).
    """
    cfg = small_model_config() if cfg is None else cfg
    params, state, x = firing_model_inputs(cfg, np.random.default_rng(seed), batch=batch, gain=25.0)
    y = np.random.default_rng(seed + 1).integers(0, cfg.num_classes, batch)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs.npz")
        np.savez(inputs, x=x, y=y, **{f"p.{k}": v for k, v in params.items()},
                 **{f"s.{k}": v for k, v in state.items()})
        mp.spawn(_grad_worker, args=(world_size, os.path.join(tmp, "store"), inputs, dataclasses.asdict(cfg), tmp),
                 nprocs=world_size, join=True)
        for training in (False, True):
            ddp = dict(np.load(os.path.join(tmp, f"grads_{training}.npz")))
            combined = _single_gradients(cfg, params, state, x, y, world=1, training=training)
            scale = max(float(np.abs(g).max()) for g in combined.values())

            def worst(ref):
                if set(ref) != set(ddp):
                    raise AssertionError("DDP and single-process gradients name different parameters")
                return max(rel_error(ref[k], ddp[k], scale if k.endswith("_linear.bias") else 0.0) for k in ref)

            if training:
                out["train_bn_vs_shards"] = worst(_single_gradients(cfg, params, state, x, y, world=world_size,
                                                                    training=True))
                out["train_bn_vs_combined"] = worst(combined)
            else:
                out["eval_bn"] = worst(combined)
    return out


def _train_worker(rank, world, port, tc_fields, out_dir, kwargs):
    from ..train import TrainConfig
    from .train import train_torch

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    train_torch(TrainConfig(**tc_fields), out_dir, device="cpu", progress=False, log=lambda _: None, **kwargs)


def train_processes(tc, out_dir: str, *, world_size: int = 2, **kwargs) -> None:
    """Run :func:`~ds2ta_ref.torch.train.train_torch` in ``world_size`` CPU processes (gloo), as torchrun would."""
    mp.spawn(_train_worker, args=(world_size, free_port(), dataclasses.asdict(tc), out_dir, kwargs),
             nprocs=world_size, join=True)


if __name__ == "__main__":
    for name, err in gradient_check().items():
        print(f"{name}: {err:.2e}")
