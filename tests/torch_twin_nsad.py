"""PyTorch float64 twin of :mod:`ds2ta_ref.nsad`, for cross-checking its backward
against autograd. Test-only: the package never imports torch.

It runs the *real* forward, evaluated per entry on the integer scores (no
table): the gate is a strict step ``1(s - u > 0)`` with the surrogate derivative
in its backward, and the rounding is straight-through,
``y + (round(y) - y).detach()`` (``torch.round`` is half to even, like ``np.rint``).
"""

from __future__ import annotations

import torch
from torch_twins import surrogate_grad


class GateFn(torch.autograd.Function):
    """NSAD's gate ``1(x > 0)`` (strict, unlike the neuron's ``>=``), surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x, name, alpha):
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.name, ctx.alpha), None, None


def nsad(scores, params, *, surrogate="sigmoid", alpha=4.0, rounding="nearest"):
    """``A = round(1(S > u) * g(S))`` with Eq. 7's ``g``, per entry; scores ``(..., H, N, N)``, params ``(H, 6)``."""
    a, b, c, d, e, u = (params[:, k].reshape(-1, 1, 1) for k in range(6))
    g = a * scores + b * (scores - c) ** 2 + d * torch.sigmoid(-(scores - e))
    y = GateFn.apply(scores - u, surrogate, alpha) * g
    rounded = {"nearest": torch.round, "floor": torch.floor}[rounding](y)
    return y + (rounded - y).detach()
