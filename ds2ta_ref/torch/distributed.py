"""DistributedDataParallel checks on the CPU (``gloo``), with ``torch.multiprocessing.spawn``.

:func:`gradient_check` answers "is one data-parallel step the step of the
combined batch?" for ``world_size`` processes, each holding the shard
``batch[rank::world_size]`` as :func:`ds2ta_ref.torch.train.train_torch` does:

* with BatchNorm in eval mode (running statistics: no dependence on the batch),
  DDP's averaged gradient equals the single-process gradient of the combined
  batch (float64 round-off);
* with BatchNorm in training mode and per-process statistics (the default of
  ``train_torch``), each process normalizes with its shard's own statistics,
  so the averaged gradient equals the *mean of the single-process gradients of
  the shards* (round-off), and differs from the combined batch's gradient by
  what the batch statistics of a smaller batch change (reported, not zero);
* with synchronized BatchNorm (:func:`ds2ta_ref.torch.syncbn.convert_sync_batchnorm`,
  ``sync_bn=True`` in ``train_torch``), the statistics are those of the combined batch and the
  averaged gradient equals the combined batch's gradient again (round-off).

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
from ..recipe import TrainConfig
from .model import from_numpy
from .syncbn import SyncBatchNorm1d, SyncBatchNorm2d, convert_sync_batchnorm
from .train import train_torch

# SyncBatchNorm1d, SyncBatchNorm2d and convert_sync_batchnorm live in ds2ta_ref.torch.syncbn;
# they are importable from here too, where they were first.
__all__ = [
    "gradient_check",
    "train_processes",
    "free_port",
    "SyncBatchNorm1d",
    "SyncBatchNorm2d",
    "convert_sync_batchnorm",
]


# --------------------------------------------------------------------------- checks
def free_port() -> int:
    """A TCP port that was free a moment ago (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard_backward(model, x, y, *, rank, world):
    """Backward of this shard's share of the batch's mean loss: ``sum CE(shard) * world / B``
    (DDP then averages over the ``world`` processes)."""
    logits = model(torch.from_numpy(x[rank::world]))
    loss = F.cross_entropy(logits, torch.from_numpy(y[rank::world]), reduction="sum") * (world / len(y))
    loss.backward()


MODES = ("eval", "train", "sync")  # BatchNorm on running statistics, per process, synchronized


def _grad_worker(rank, world, store, inputs, cfg_fields, tmp):
    """One DDP step per BatchNorm mode (:data:`MODES`); rank 0 writes the averaged gradients to
    ``tmp/grads_<mode>.npz``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        cfg = ModelConfig(**cfg_fields)
        arrays = dict(np.load(inputs))
        params = {k[2:]: v for k, v in arrays.items() if k.startswith("p.")}
        state = {k[2:]: v for k, v in arrays.items() if k.startswith("s.")}
        for mode in MODES:
            net = from_numpy(params, state, cfg).train(mode != "eval")
            if mode == "sync":
                convert_sync_batchnorm(net)
            _shard_backward(
                torch.nn.parallel.DistributedDataParallel(net), arrays["x"], arrays["y"], rank=rank, world=world
            )
            if rank == 0:
                np.savez(
                    os.path.join(tmp, f"grads_{mode}.npz"),
                    **{k: p.grad.numpy() for k, p in net.named_parameters() if p.grad is not None},
                )
                np.savez(
                    os.path.join(tmp, f"state_{mode}.npz"),
                    **{k: v.numpy() for k, v in net.state_dict().items() if "running" in k},
                )
        # Leave together: a rank that tears its gloo pairs down while the other still holds
        # them can die of SIGABRT ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _single_gradients(cfg, params, state, x, y, *, world, training):
    """Mean over shards of the single-process shard gradients (``world`` shards; 1: the combined batch)."""
    total = {}
    for rank in range(world):
        net = from_numpy(params, state, cfg).train(training)
        _shard_backward(net, x, y, rank=rank, world=world)
        for k, p in net.named_parameters():
            if p.grad is not None:
                total[k] = total.get(k, 0) + p.grad.numpy() / world
    return total


def gradient_check(
    cfg: ModelConfig | None = None, *, world_size: int = 2, batch: int = 6, seed: int = 0
) -> dict[str, float]:
    """One DDP step on ``world_size`` CPU processes (gloo) against single-process gradients (float64).

    Returns the worst relative error over all parameters (the biases feeding a
    BatchNorm compared against the largest gradient) for:
    ``eval_bn``: DDP vs the combined batch, BatchNorm in eval mode;
    ``train_bn_vs_shards``: DDP vs the mean of the shards' gradients, BatchNorm in training mode;
    ``train_bn_vs_combined``: DDP vs the combined batch, BatchNorm in training mode (not 0: per-process statistics);
    ``sync_bn_vs_combined``: DDP with :func:`convert_sync_batchnorm` vs the combined batch;
    ``sync_bn_running_stats``: its updated running statistics vs the combined batch's.
    """
    cfg = small_model_config() if cfg is None else cfg
    params, state, x = firing_model_inputs(cfg, np.random.default_rng(seed), batch=batch, gain=25.0)
    y = np.random.default_rng(seed + 1).integers(0, cfg.num_classes, batch)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs.npz")
        np.savez(
            inputs, x=x, y=y, **{f"p.{k}": v for k, v in params.items()}, **{f"s.{k}": v for k, v in state.items()}
        )
        mp.spawn(
            _grad_worker,
            args=(world_size, os.path.join(tmp, "store"), inputs, dataclasses.asdict(cfg), tmp),
            nprocs=world_size,
            join=True,
        )
        ddp = {mode: dict(np.load(os.path.join(tmp, f"grads_{mode}.npz"))) for mode in MODES}
        sync_state = dict(np.load(os.path.join(tmp, "state_sync.npz")))
    combined = {
        training: _single_gradients(cfg, params, state, x, y, world=1, training=training) for training in (False, True)
    }
    scale = max(float(np.abs(g).max()) for g in combined[True].values())

    def worst(ref, cand):
        if set(ref) != set(cand):
            raise AssertionError("DDP and single-process gradients name different parameters")
        return max(rel_error(ref[k], cand[k], scale if k.endswith("_linear.bias") else 0.0) for k in ref)

    out["eval_bn"] = worst(combined[False], ddp["eval"])
    out["train_bn_vs_shards"] = worst(
        _single_gradients(cfg, params, state, x, y, world=world_size, training=True), ddp["train"]
    )
    out["train_bn_vs_combined"] = worst(combined[True], ddp["train"])
    out["sync_bn_vs_combined"] = worst(combined[True], ddp["sync"])
    single = from_numpy(params, state, cfg).train()
    single(torch.from_numpy(x))
    sd = single.state_dict()
    out["sync_bn_running_stats"] = max(rel_error(sd[k].numpy(), v) for k, v in sync_state.items())
    return out


def _train_worker(rank, world, port, tc_fields, out_dir, kwargs):
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    train_torch(TrainConfig(**tc_fields), out_dir, device="cpu", progress=False, log=lambda _: None, **kwargs)


def train_processes(tc, out_dir: str, *, world_size: int = 2, **kwargs) -> None:
    """Run :func:`~ds2ta_ref.torch.train.train_torch` in ``world_size`` CPU processes (gloo), as torchrun would."""
    mp.spawn(
        _train_worker,
        args=(world_size, free_port(), dataclasses.asdict(tc), out_dir, kwargs),
        nprocs=world_size,
        join=True,
    )


if __name__ == "__main__":
    for name, err in gradient_check().items():
        print(f"{name}: {err:.2e}")
