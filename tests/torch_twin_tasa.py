"""PyTorch float64 twin of :mod:`ds2ta_ref.tasa`, for cross-checking its
hand-written backward (including ``dtau``) against autograd. Test-only.

Written differently from the NumPy kernel on purpose: the time mixing is an
explicit ``(T, T)`` lower-triangular band matrix ``M[t, m] = 2^(-tau*(t-m))``
for ``0 <= t-m < window`` (Eq. 1 with Eq. 4-5), applied with ``einsum``, then
``torch.nn.functional.linear``. The rounding is straight-through across both
``round`` and the clip at 0, as the NumPy backward documents.
"""

from __future__ import annotations

import torch


def tasa(s, weight, bias, tau, window, *, continuous_tau=False):
    """``s`` ``(T, ..., D_in)``, ``weight`` ``(D_out, D_in)``, ``bias`` ``(D_out,)`` or
    ``None``, ``tau`` a 0-d tensor; returns ``(T, ..., D_out)``."""
    if continuous_tau:
        tau_used = tau
    else:  # forward: max(0, round(tau)) (half to even); backward: identity
        tau_used = tau + (torch.clamp(torch.round(tau), min=0) - tau).detach()
    T = s.shape[0]
    t = torch.arange(T)
    lag = t[:, None] - t[None, :]  # (T, T): t - m
    in_window = (lag >= 0) & (lag < window)
    mix = torch.where(in_window, 2.0 ** (-tau_used * lag.clamp(min=0).to(s.dtype)), 0.0)  # (T, T)
    x_mix = torch.einsum("tm,m...->t...", mix, s)  # (T, ..., D_in)
    return torch.nn.functional.linear(x_mix, weight, bias)
