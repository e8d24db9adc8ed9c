"""Synchronized BatchNorm for data-parallel training: statistics over every process's batch.

With ``sync_bn=True``, :func:`ds2ta_ref.torch.train.train_torch` calls
:func:`convert_sync_batchnorm`, which puts PyTorch's own
:class:`torch.nn.SyncBatchNorm` on CUDA (its fused kernels, NCCL) and this
module's :class:`SyncBatchNorm1d`/:class:`SyncBatchNorm2d` elsewhere (the CPU
with ``gloo``, where PyTorch's refuses to train). Both keep the very same
parameter and buffer tensors under the same names, so an optimizer made before
keeps working and a checkpoint keeps the NumPy reference's names.

This module's version computes the combined batch's statistics in two passes,
``mean = sum x / n`` then ``var = sum (x - mean)^2 / n``, each summed over the
processes with a differentiable all-reduce (:func:`all_reduce`), so autograd
carries each process's share of the gradient through the statistics to the
others; ``ds2ta_ref.torch.distributed.gradient_check`` shows that a step is then
the combined batch's step (float64 round-off).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["all_reduce", "SyncBatchNorm1d", "SyncBatchNorm2d", "convert_sync_batchnorm"]


class _AllReduceSum(torch.autograd.Function):
    """``y = sum over processes of x`` on every process; backward: the same sum of the gradients
    (each process's ``x`` reaches every process's ``y``)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``x`` over the processes of the default group."""
    return _AllReduceSum.apply(x)


if TYPE_CHECKING:  # a type checker sees the mixin as the BatchNorm it precedes in the MRO
    _MixinBase = nn.modules.batchnorm._BatchNorm
else:
    _MixinBase = object


class _SyncBatchNorm(_MixinBase):
    """Training-mode BatchNorm over the batch of every process (any device, any backend, gloo included).

    The statistics are those of the combined batch, computed in two passes
    (``mean = sum x / n``, then ``var = sum (x - mean)^2 / n``, both summed over
    the processes with a differentiable :func:`all_reduce`, so autograd carries
    each process's share of the gradient through the statistics to the others); the running statistics are
    updated as ``torch.nn.BatchNorm`` does (unbiased variance). Outside training,
    or without a process group of two or more, it is the plain BatchNorm.
    Parameter and buffer names are unchanged. The synchronized path refuses (``ValueError``) a
    momentum of None (PyTorch's cumulative average) and a BatchNorm without running statistics.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        C = x.shape[1]
        dims = [0] + list(range(2, x.dim()))  # every axis but the channels
        shape = (1, C) + (1,) * (x.dim() - 2)
        count = torch.full((1,), x.numel() // C, dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum(dims), count]))  # (C + 1,) summed over the processes
        n = sums[C].detach()
        mean = sums[:C] / n  # (C,)
        centered = x - mean.view(shape)
        var = all_reduce((centered * centered).sum(dims)) / n  # (C,) biased, as used for normalizing
        y = centered * torch.rsqrt(var + self.eps).view(shape) * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            m = self.momentum
            if m is None or self.running_mean is None or self.running_var is None or self.num_batches_tracked is None:
                raise ValueError(
                    "SyncBatchNorm: training needs a momentum (not None) and running statistics "
                    "(track_running_stats=True)"
                )
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
            self.num_batches_tracked += 1
        return y


class SyncBatchNorm1d(_SyncBatchNorm, nn.BatchNorm1d):
    """:class:`torch.nn.BatchNorm1d` with statistics over every process's batch (``(M, C)`` input)."""


class SyncBatchNorm2d(_SyncBatchNorm, nn.BatchNorm2d):
    """:class:`torch.nn.BatchNorm2d` with statistics over every process's batch."""


def convert_sync_batchnorm(module: nn.Module, *, native: bool | None = None) -> nn.Module:
    """Replace (in place) every ``BatchNorm1d``/``BatchNorm2d`` of ``module`` by a synchronized
    BatchNorm holding the very same parameter and buffer tensors under the same names; returns
    ``module``.

    ``native``: PyTorch's :class:`torch.nn.SyncBatchNorm` (True) or this module's
    :class:`SyncBatchNorm1d`/:class:`SyncBatchNorm2d` (False); None (default): PyTorch's
    when ``module``'s parameters are on CUDA, this module's otherwise.
    """
    if native is None:
        native = any(p.device.type == "cuda" for p in module.parameters())
    if native:
        for name, child in list(module.named_children()):
            if type(child) in (nn.BatchNorm1d, nn.BatchNorm2d):
                setattr(module, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
            else:
                convert_sync_batchnorm(child, native=True)
        return module
    kinds: dict[type[nn.Module], type[_SyncBatchNorm]] = {
        nn.BatchNorm1d: SyncBatchNorm1d,
        nn.BatchNorm2d: SyncBatchNorm2d,
    }
    for name, child in list(module.named_children()):
        kind = kinds.get(type(child))
        if kind is None:
            convert_sync_batchnorm(child)
            continue
        assert isinstance(child, nn.modules.batchnorm._BatchNorm)  # its type is BatchNorm1d or BatchNorm2d
        twin = kind(child.num_features, eps=child.eps, momentum=child.momentum)
        twin.weight, twin.bias = child.weight, child.bias  # the same Parameter objects: an optimizer
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):  # made before keeps working
            setattr(twin, buffer, getattr(child, buffer))
        twin.train(child.training)
        setattr(module, name, twin)
    return module
