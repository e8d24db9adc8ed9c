"""Small PyTorch float64 twins of the NumPy kernels, for cross-checking the
hand-written backwards against autograd. Test-only: the package never imports torch.

Each twin runs the *real* (step) forward and uses a ``torch.autograd.Function``
whose backward is the surrogate derivative, exactly as SpikingJelly does.
"""

from __future__ import annotations

import math

import torch


def surrogate_grad(x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
    if name == "sigmoid":
        sig = torch.sigmoid(alpha * x)
        return alpha * sig * (1 - sig)
    if name == "atan":
        return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)
    raise ValueError(name)


class SpikeFn(torch.autograd.Function):
    """Heaviside ``x >= 0`` forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x, name, alpha):
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.name, ctx.alpha), None, None


def spike(x, name="sigmoid", alpha=4.0):
    return SpikeFn.apply(x, name, alpha)


def lif(x, *, tau_m=2.0, v_threshold=1.0, decay_input=False, detach_reset=True, surrogate="sigmoid", alpha=4.0):
    """SpikingJelly's multi-step LIFNode (hard reset to 0) in plain autograd."""
    k = 1.0 - 1.0 / tau_m
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = k * v + (x[t] / tau_m if decay_input else x[t])
        s = spike(h - v_threshold, surrogate, alpha)
        s_reset = s.detach() if detach_reset else s
        v = h * (1 - s_reset)
        out.append(s)
    return torch.stack(out)
