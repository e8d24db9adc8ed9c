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

Backward (docs/spec.md §1), walking ``t = T-1 .. 0`` with ``dv`` the gradient reaching
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

Cost: the cache keeps only ``h`` (the reset spike and ``v`` are recomputed
from it), and each time step writes into preallocated arrays, a few
elementwise passes per step. :func:`forward` and :func:`backward` check their
arguments; :func:`forward_unchecked` and :func:`backward_unchecked` are the same computations
without the checks, for a caller (a block of the model) that has validated its inputs once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import parallel
from . import surrogate as _surrogate
from ._checks import as_float_array, check_finite_scalar, check_shape

__all__ = ["LIFCache", "forward", "backward", "forward_unchecked", "backward_unchecked", "membrane"]


class LIFCache(NamedTuple):
    """What :func:`forward` keeps for :func:`backward`: only the pre-reset membrane ``h``.

    Everything else the backward reads is recomputed from ``h``: the surrogate
    derivative ``sg(h - theta)``, and the spike inside the reset factor,
    ``s_reset = 1(h >= theta)`` (or, in smooth mode with ``detach_reset=False``,
    ``primal(h - theta)``, exactly what the forward used). The post-reset
    membrane ``v`` is not kept: the properties ``s_reset`` and ``v`` recompute them.
    """

    h: np.ndarray  # (T, ...) membrane before reset (the paper's V)
    tau_m: float
    v_threshold: float
    decay_input: bool
    detach_reset: bool
    surrogate: str
    alpha: float
    smooth: bool

    @property
    def s_reset(self) -> np.ndarray:
        """``(T, ...)`` the spike inside ``(1 - s)`` of the reset, recomputed from ``h``
        (equal to the emitted spikes except in smooth mode with ``detach_reset=True``)."""
        if self.smooth and not self.detach_reset:
            return _surrogate.get(self.surrogate).primal(self.h - self.v_threshold, self.alpha)
        return (self.h >= self.v_threshold).astype(self.h.dtype)

    @property
    def v(self) -> np.ndarray:
        """``(T, ...)`` the membrane after reset, ``v = h (1 - s_reset)``, recomputed from ``h``
        (for plotting; the backward does not need it)."""
        return self.h * (1 - self.s_reset)


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
        (0, 1)), same dtype as ``x``; ``cache.h`` holds the membrane before reset
        (:func:`membrane` also gives the one after it).
    """
    x = as_float_array(x, "x", min_ndim=1, what=" (a leading time axis T)")
    tau_m, v_threshold, sg, alpha = _check_options(tau_m, v_threshold, surrogate, alpha)
    return forward_unchecked(x, tau_m, v_threshold, bool(decay_input), bool(detach_reset), sg.name, alpha, bool(smooth))


def forward_unchecked(x, tau_m, v_threshold, decay_input, detach_reset, surrogate, alpha, smooth):
    """:func:`forward` without argument checks, for callers that have checked them once.

    Preconditions: ``x`` a finite float32/float64 array ``(T, ...)``; ``tau_m >= 1``
    and ``v_threshold`` finite floats; ``surrogate`` a name in
    :data:`ds2ta_ref.surrogate.SURROGATES`; ``alpha`` a float > 0 (not ``None``).

    Every step writes into preallocated arrays (``out=``), so a step allocates
    nothing of its own: ``h`` and ``spikes`` are filled row by row, ``v`` and
    ``below`` are one step's worth, reused. The neurons are independent, so they are
    split across threads (:mod:`ds2ta_ref.parallel`), each part running this loop.
    """
    k = 1.0 - 1.0 / tau_m
    shape = x.shape
    x = x.reshape(shape[0], -1)  # (T, n): one row of n neurons per step (rows are views even for 1-D x)
    h = np.empty_like(x)  # (T, n) membrane before reset, the cache
    spikes = np.empty_like(x)  # (T, n)

    def neurons(lo, hi):  # the loop over time for neurons lo .. hi-1
        v = np.zeros_like(x[0, lo:hi])  # v[t-1], the membrane after the previous reset; v[-1] = 0
        below = np.empty(v.shape, dtype=bool)  # 1 - s[t] as a mask: h[t] < theta
        for t in range(x.shape[0]):
            h_t, s_t = h[t, lo:hi], spikes[t, lo:hi]  # views: writing h_t writes h[t]
            # charge: h[t] = k v[t-1] + I[t], with I[t] = x[t] / tau_m if decay_input else x[t]
            np.multiply(v, k, out=h_t)
            if decay_input:
                h_t += np.divide(x[t, lo:hi], tau_m, out=v)  # v[t-1] is used up: its buffer holds I[t]
            else:
                h_t += x[t, lo:hi]
            # fire: s[t] = 1(h[t] - theta >= 0)
            if smooth:
                s_t[...] = _surrogate.SURROGATES[surrogate].primal(h_t - v_threshold, alpha)
            else:
                np.greater_equal(h_t, v_threshold, out=s_t)
            # reset: v[t] = h[t] (1 - s_reset[t])
            if smooth and not detach_reset:
                np.multiply(h_t, 1 - s_t, out=v)
            else:  # s_reset is the hard spike, so (1 - s_reset) = 1(h[t] < theta)
                np.less(h_t, v_threshold, out=below)
                np.multiply(h_t, below, out=v)

    parallel.for_parts(x.shape[1], neurons, work=x.size)
    cache = LIFCache(h.reshape(shape), tau_m, v_threshold, decay_input, detach_reset, surrogate, alpha, smooth)
    return spikes.reshape(shape), cache


def backward(dspikes: np.ndarray, cache: LIFCache) -> np.ndarray:
    """BPTT through :func:`forward`: gradient of the loss w.r.t. ``x``.

    Args:
        dspikes: gradient w.r.t. the spikes, same shape as the forward's ``x``.
        cache: from :func:`forward`.

    Returns:
        ``dx`` of shape ``(T, ...)``, dtype of the cached membrane.
    """
    if not isinstance(cache, LIFCache):
        raise ValueError(f"cache must be the LIFCache returned by lif.forward, got {type(cache).__name__}")
    dspikes = as_float_array(dspikes, "dspikes")
    check_shape(dspikes, cache.h.shape, "dspikes")
    return backward_unchecked(dspikes.astype(cache.h.dtype, copy=False), cache)


def backward_unchecked(dspikes, cache):
    """:func:`backward` without argument checks: ``dspikes`` must be a finite array
    shaped and typed like ``cache.h``. One step's worth of buffers, reused; the neurons are
    split across threads as in the forward."""
    sg = _surrogate.SURROGATES[cache.surrogate]
    k = 1.0 - 1.0 / cache.tau_m
    theta = cache.v_threshold
    shape = cache.h.shape
    h = cache.h.reshape(shape[0], -1)  # (T, n) as in the forward
    dspikes = dspikes.reshape(h.shape)  # (T, n)
    smooth_reset = cache.smooth and not cache.detach_reset  # s_reset = primal(h - theta), not a step
    dx = np.empty_like(h)  # (T, n)

    def neurons(lo, hi):  # BPTT for neurons lo .. hi-1 (independent of the others)
        dv = np.zeros_like(h[0, lo:hi])  # gradient reaching v[t] from step t+1 (zero at t = T-1)
        grad_sg = np.empty_like(dv)  # sg(h[t] - theta)
        below = np.empty(dv.shape, dtype=bool)  # 1 - s_reset[t] as a mask: h[t] < theta
        work = None if cache.detach_reset else np.empty_like(dv)
        for t in reversed(range(h.shape[0])):
            h_t = h[t, lo:hi]
            # forward was: h = k v[t-1] + I; s = fire(h); v = h (1 - s_reset)
            dh = dx[t, lo:hi]  # dh[t] is built in place in dx[t]
            sg.grad(np.subtract(h_t, theta, out=grad_sg), cache.alpha, out=grad_sg)
            np.multiply(dspikes[t, lo:hi], grad_sg, out=dh)  # ds[t] * sg
            # + dv * dv/dh, with dv/dh = (1 - s_reset[t]) - (h[t] sg if not detach_reset)
            if not cache.detach_reset:
                np.multiply(dv, h_t, out=work)
                work *= grad_sg
                dh -= work  # - dv h[t] sg: the gradient through the spike in the reset
            if smooth_reset:
                dv *= 1 - sg.primal(h_t - theta, cache.alpha)
            else:
                np.less(h_t, theta, out=below)
                dv *= below  # dv (1 - s_reset[t]): zero where the neuron fired
            dh += dv
            np.multiply(dh, k, out=dv)  # to v[t-1]: dv = dh[t] k
            if cache.decay_input:
                dh /= cache.tau_m  # dI[t] = dh[t] / tau_m

    parallel.for_parts(h.shape[1], neurons, work=h.size)
    return dx.reshape(shape)


def membrane(x: np.ndarray, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convenience for plotting: ``(spikes, h, v)`` for input current ``x``.

    ``h`` is the membrane before reset (the paper's ``V``), ``v`` after it,
    recomputed from the cache as ``v = h (1 - s_reset)``; ``options`` are those
    of :func:`forward`.
    """
    spikes, cache = forward(x, **options)
    return spikes, cache.h, cache.v
