"""Leaky integrate-and-fire neurons with surrogate backpropagation-through-time.

Paper form (DS2TA Eq. 2-3, hard reset to 0)::

    V[t] = (1 - 1/tau_m) * V[t-1] * (1 - s[t-1]) + I[t]            (Eq. 2)
    s[t] = Heaviside(V[t] - theta)                                   (Eq. 3)

Step form used here (SpikingJelly's ``LIFNode`` with ``v_reset = 0``), with
``k = 1 - 1/tau_m`` and ``v[-1] = 0``::

    h[t] = k * v[t-1] + I[t]            charge (decay_input=False, the paper)
    h[t] = k * v[t-1] + I[t] / tau_m    charge (decay_input=True, SpikingJelly/Spikformer)
    s[t] = 1(h[t] - theta >= 0)         fire
    v[t] = h[t] * (1 - s[t])            hard reset

``h`` is the membrane *before* reset (the paper's ``V``, SpikingJelly's ``H``)
and ``v`` the membrane after it. Arrays are time-major: ``x`` is ``(T, ...)``
with any trailing shape, e.g. ``(T, B, N, D)``.

Backward (SPEC §1), walking ``t = T-1 .. 0`` with ``dv`` the gradient reaching
``v[t]`` from step ``t+1`` (zero at ``t = T-1``) and ``sg`` the surrogate
derivative at ``h[t] - theta``::

    dh[t] = ds[t] * sg + dv * dv/dh
    dv/dh = 1 - s[t]                      detach_reset=True
          = 1 - s[t] - h[t] * sg          detach_reset=False
    dI[t] = dh[t] / tau_m if decay_input else dh[t]
    dv    = dh[t] * k

Smooth mode (``smooth=True``) exists only to check this backward by finite
differences: the emitted spike becomes the surrogate's primal
``primal(h - theta)``; the spike inside the reset factor stays the hard step
when ``detach_reset=True`` (locally constant, hence no gradient, which is what
detaching means) and becomes the primal when ``detach_reset=False``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import surrogate as _surrogate
from ._checks import as_float_array, check_finite_scalar, check_shape

__all__ = ["LIFCache", "forward", "backward", "membrane"]


class LIFCache(NamedTuple):
    """What :func:`forward` keeps for :func:`backward`.

    Kept: the pre-reset membrane ``h`` and the spike ``s_reset`` used in the
    reset factor (hard or smooth, exactly as the forward used it); the
    surrogate derivative is recomputed from ``h`` in the backward. ``v`` is the
    post-reset membrane, kept for plotting.
    """

    h: np.ndarray  # (T, ...) membrane before reset (the paper's V)
    v: np.ndarray  # (T, ...) membrane after reset
    s_reset: np.ndarray  # (T, ...) the spike inside (1 - s) of the reset
    tau_m: float
    v_threshold: float
    decay_input: bool
    detach_reset: bool
    surrogate: str
    alpha: float


def _check_options(tau_m, v_threshold, surrogate, alpha):
    tau_m = check_finite_scalar(tau_m, "tau_m", minimum=1.0)
    v_threshold = check_finite_scalar(v_threshold, "v_threshold")
    sg, alpha = _surrogate.resolve(surrogate, alpha)
    return tau_m, v_threshold, sg, alpha


def forward(
    x: np.ndarray,
    *,
    tau_m: float = 2.0,
    v_threshold: float = 1.0,
    decay_input: bool = False,
    detach_reset: bool = True,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    smooth: bool = False,
) -> tuple[np.ndarray, LIFCache]:
    """Run a layer of LIF neurons over time.

    Args:
        x: input current ``I``, shape ``(T, ...)``; float32/float64 are kept,
           integers and booleans become float64.
        tau_m: membrane time constant (>= 1; leak factor ``k = 1 - 1/tau_m``).
        v_threshold: firing threshold ``theta`` (Spikformer's attention LIF uses 0.5).
        decay_input: divide the input by ``tau_m`` (SpikingJelly default) or not (paper).
        detach_reset: stop the gradient through the spike in the reset factor.
        surrogate: ``"sigmoid"`` or ``"atan"`` (see :mod:`ds2ta_ref.surrogate`).
        alpha: surrogate sharpness; ``None`` (the default) takes the surrogate's
           own default (4 for ``sigmoid``, 2 for ``atan``, as in SpikingJelly).
        smooth: use the surrogate's primal as the emitted spike (gradient checks only).

    Returns:
        ``(spikes, cache)``: spikes ``(T, ...)`` of 0/1 (in smooth mode, values in
        (0, 1)), same dtype as ``x``; ``cache.h`` and ``cache.v`` hold the
        membrane trace before and after reset for plotting.
    """
    x = as_float_array(x, "x", min_ndim=1, what=" (a leading time axis T)")
    tau_m, v_threshold, sg, alpha = _check_options(tau_m, v_threshold, surrogate, alpha)
    k = 1.0 - 1.0 / tau_m
    current = x / tau_m if decay_input else x
    h = np.empty_like(x)
    v = np.empty_like(x)
    s_out = np.empty_like(x)
    s_reset = np.empty_like(x)
    v_prev = np.zeros_like(x[0])
    for t in range(x.shape[0]):
        h[t] = k * v_prev + current[t]  # charge
        hard = (h[t] >= v_threshold).astype(x.dtype)  # fire (Heaviside, >=)
        if smooth:
            s_out[t] = sg.primal(h[t] - v_threshold, alpha)
            s_reset[t] = hard if detach_reset else s_out[t]
        else:
            s_out[t] = hard
            s_reset[t] = hard
        v[t] = h[t] * (1 - s_reset[t])  # hard reset to 0
        v_prev = v[t]
    cache = LIFCache(h, v, s_reset, tau_m, v_threshold, bool(decay_input), bool(detach_reset), sg.name, alpha)
    return s_out, cache


def backward(dspikes: np.ndarray, cache: LIFCache) -> np.ndarray:
    """BPTT through :func:`forward`: gradient of the loss w.r.t. ``x``.

    Args:
        dspikes: gradient w.r.t. the spikes, same shape as the forward's ``x``.
        cache: from :func:`forward`.

    Returns:
        ``dx`` of shape ``(T, ...)``, dtype of the cached membrane.
    """
    dspikes = as_float_array(dspikes, "dspikes")
    check_shape(dspikes, cache.h.shape, "dspikes")
    sg = _surrogate.get(cache.surrogate)
    k = 1.0 - 1.0 / cache.tau_m
    dtype = cache.h.dtype
    dx = np.empty(cache.h.shape, dtype=dtype)
    dv = np.zeros(cache.h.shape[1:], dtype=dtype)  # gradient reaching v[t] from step t+1
    for t in reversed(range(cache.h.shape[0])):
        # forward was: h = k v[t-1] + I; s = fire(h); v = h (1 - s_reset)
        grad_sg = sg.grad(cache.h[t] - cache.v_threshold, cache.alpha).astype(dtype, copy=False)
        dv_dh = 1 - cache.s_reset[t]
        if not cache.detach_reset:
            dv_dh = dv_dh - cache.h[t] * grad_sg
        dh = dspikes[t] * grad_sg + dv * dv_dh
        dx[t] = dh / cache.tau_m if cache.decay_input else dh
        dv = dh * k  # to v[t-1]
    return dx


def membrane(
    x: np.ndarray, **options
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convenience for plotting: ``(spikes, h, v)`` for input current ``x``.

    ``h`` is the membrane before reset (the paper's ``V``), ``v`` after it;
    ``options`` are those of :func:`forward`.
    """
    spikes, cache = forward(x, **options)
    return spikes, cache.h, cache.v
