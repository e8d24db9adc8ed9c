"""TASA: temporally attenuated spatiotemporal attention inputs (DS2TA Eq. 1, 4, 5).

The input to neuron ``k`` of a Q/K/V array (or of the attention block's output
projection) at time ``t`` gathers the spikes ``s`` of the previous block over a
window of ``T_AW`` time steps, with weights that decay with the lag::

    I_k[t] = sum_{m = t-T_AW+1 .. t} sum_j w_kj(t-m) * s_j[m]             (Eq. 1)
    w_kj(lag) = w_kj(0) * df(lag)                                          (Eq. 4)
    df(lag) = 2^(-tau * lag)                                               (Eq. 5)

Because every lag uses the *same* weight matrix scaled by ``df(lag)``, mix over
the window first and multiply once (docs/spec.md §2), with ``lag = 0 .. T_AW-1`` and
zeros before ``t = 0``::

    x_mix[t] = sum_{lag=0}^{T_AW-1} 2^(-tau*lag) * s[t-lag]
    I[t]     = x_mix[t] @ W^T + b                  (the bias is added once)

The cost is the mix, ``O(T * T_AW * N * D_in)``, plus the very matmul of
spatial-only attention. ``window = T_AW = 1`` is exactly Spikformer's
spatial-only input ``s[t] @ W^T + b``. The only parameter added to a linear
layer is ``tau``.

``tau`` conventions (docs/spec.md §2, listed in the spec notes):

* ``tau`` is stored as a float; the forward uses ``tau_int = max(0, round(tau))``
  (NumPy rounding, half to even), so ``2.5 -> 2`` and ``-1.3 -> 0``.
* The backward is straight-through across both the rounding *and* the clip
  at 0: ``dtau`` is the derivative with respect to the exponent the forward
  used, ``d/dtau_int``::

      dtau = sum_lag sum_t <dx_mix[t], s[t-lag]> * (-lag * ln 2) * 2^(-tau_int * lag)

  So a ``tau`` below ``-0.5`` still receives a gradient (a clip that blocked it
  would leave such a ``tau`` stuck forever).
* ``frozen_tau=True``: :func:`backward` returns ``dtau = None`` (not ``0.0``),
  so that an optimizer cannot mistake a frozen ``tau`` for a learned one whose
  gradient happens to vanish.
* ``continuous_tau=True`` is the check mode of docs/spec.md §1: the forward uses
  ``tau`` itself (no rounding, no clip), so central differences of the forward
  check ``dtau`` exactly. In rounded mode ``dtau`` equals the continuous-mode
  ``dtau`` evaluated at ``tau_int``.

Arrays are time-major: ``s`` is ``(T, ..., D_in)``, e.g. ``(T, B, N, D)``.
The product is one 2-D GEMM over all ``T*B*N`` rows. :func:`forward` and
:func:`backward` check their arguments; :func:`forward_unchecked` and :func:`backward_unchecked`
skip the checks of the arrays, for a caller that has validated them once.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._checks import as_float_array, check_finite_scalar, check_int, check_shape
from .layers import rows_product

__all__ = [
    "TASACache",
    "forward",
    "backward",
    "forward_unchecked",
    "backward_unchecked",
    "product_backward_unchecked",
    "mix_backward_unchecked",
    "mix_unchecked",
    "decay_factors",
    "tau_used",
]


class TASACache(NamedTuple):
    """What :func:`forward` keeps for :func:`backward`.

    Kept: the input ``s`` (a reference, not a copy: for ``dtau``, and to
    recompute ``x_mix`` for ``dweight``, which costs ``window - 1`` elementwise
    passes and saves keeping a second array of the input's size), the weight
    (for ``dx_mix``) and the decay factors at the ``tau`` the forward used.
    """

    s: np.ndarray  # (T, ..., D_in) input, in the compute dtype
    weight: np.ndarray  # (D_out, D_in)
    has_bias: bool
    tau_used: float  # max(0, round(tau)), or tau itself when continuous_tau
    factors: np.ndarray  # (window,) 2^(-tau_used * lag), compute dtype
    window: int
    frozen_tau: bool

    @property
    def x_mix(self) -> np.ndarray:
        """``(T, ..., D_in)`` the attenuated sum over the window, recomputed from ``s``."""
        return _mix(self.s, self.factors)


def tau_used(tau: float, *, continuous_tau: bool = False) -> float:
    """The decay exponent the forward uses: ``max(0, round(tau))`` (half to even),
    or ``tau`` unchanged when ``continuous_tau`` (the gradient-check mode)."""
    tau = check_finite_scalar(tau, "tau")
    if continuous_tau:
        return tau
    return max(0.0, float(np.round(tau)))


def decay_factors(tau: float, window: int) -> np.ndarray:
    """The attenuation ``df(m) = 2^(-tau * m)`` for ``m = 0 .. window-1`` (Eq. 5).

    ``tau`` is used exactly as given (no rounding and no clip): pass
    :func:`tau_used` of a layer's ``tau`` to get the factors its forward applies.

    Args:
        tau: decay exponent, a finite real number.
        window: ``T_AW``, an integer >= 1.

    Returns:
        float64 array of shape ``(window,)``; ``df(0) = 1``.
    """
    tau = check_finite_scalar(tau, "tau")
    window = check_int(window, "window", minimum=1)
    lag = np.arange(window, dtype=np.float64)  # (window,)
    with np.errstate(over="ignore"):
        factors = np.power(2.0, -tau * lag)  # (window,)
    if not np.all(np.isfinite(factors)):
        raise ValueError(f"tau = {tau!r} overflows the decay factors 2^(-tau*lag) for window = {window}")
    return factors


def _check_layer(s, weight, bias):
    """Validate and cast ``s``, ``weight``, ``bias`` to their common float dtype."""
    s = as_float_array(s, "s", min_ndim=2, what=" (time T and features D_in)")
    weight = as_float_array(weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (D_out, D_in), got shape {weight.shape}")
    d_in = s.shape[-1]
    if weight.shape[1] != d_in:
        raise ValueError(
            f"weight must have shape (D_out, {d_in}) to match s's last axis D_in = {d_in}, got {weight.shape}"
        )
    dtype = np.result_type(s, weight)
    if bias is not None:
        bias = as_float_array(bias, "bias")
        check_shape(bias, (weight.shape[0],), "bias")
        bias = bias.astype(dtype, copy=False)
    return s.astype(dtype, copy=False), weight.astype(dtype, copy=False), bias


def forward(
    s: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    *,
    tau: float,
    window: int,
    frozen_tau: bool = False,
    continuous_tau: bool = False,
) -> tuple[np.ndarray, TASACache]:
    """TASA input of a neuron array: attenuated sum over the window, then one linear map.

    ``out[t] = (sum_{lag=0}^{window-1} 2^(-tau_used*lag) * s[t-lag]) @ weight.T + bias``
    (Eq. 1, 4, 5), with ``s[t] = 0`` for ``t < 0``.

    Args:
        s: input ``(T, ..., D_in)``, e.g. ``(T, B, N, D)``: spikes, or the
           integer-valued residual stream (not required to be binary).
           Integer and boolean arrays are treated as float64.
        weight: ``W(0)``, shape ``(D_out, D_in)`` (``torch.nn.Linear`` layout).
        bias: ``(D_out,)`` or ``None``; added once, not per lag.
        tau: decay exponent (float); the forward uses ``max(0, round(tau))``.
        window: ``T_AW`` >= 1, the number of lags (``1`` = spatial only).
        frozen_tau: ``tau`` is not learned: :func:`backward` returns ``dtau = None``.
        continuous_tau: check mode, use ``tau`` unrounded and unclipped.

    Returns:
        ``(out, cache)``: ``out`` of shape ``(T, ..., D_out)`` in the result
        dtype of ``s`` and ``weight`` (float32 stays float32).
    """
    s, weight, bias = _check_layer(s, weight, bias)
    return forward_unchecked(
        s, weight, bias, tau=tau, window=window, frozen_tau=frozen_tau, continuous_tau=continuous_tau
    )


def _used_factors(tau, window, continuous_tau, dtype) -> tuple[int, float, np.ndarray]:
    """``(window, tau_used, factors)``: the checked window, the exponent the forward uses and
    its decay factors ``(window,)`` in the compute ``dtype``."""
    window = check_int(window, "window", minimum=1)
    tau_u = tau_used(tau, continuous_tau=continuous_tau)
    with np.errstate(over="ignore"):
        factors = decay_factors(tau_u, window).astype(dtype)  # (window,)
    if not np.all(np.isfinite(factors)):
        raise ValueError(f"tau = {tau_u!r} overflows the decay factors in {dtype}")
    return window, tau_u, factors


def mix_unchecked(s, *, tau, window, continuous_tau=False):
    """``x_mix`` of :func:`forward_unchecked` for these ``s``, ``tau``, ``window``: layers that
    read the same input with the same ``tau`` (the attention's q, k and v) mix it once and
    pass it as ``x_mix=`` to :func:`forward_unchecked` and :func:`backward_unchecked`.
    ``(T, ..., D_in)``; ``s`` itself when the window is 1."""
    _, _, factors = _used_factors(tau, window, continuous_tau, s.dtype)
    return _mix(s, factors)


def forward_unchecked(s, weight, bias, *, tau, window, frozen_tau=False, continuous_tau=False, x_mix=None):
    """:func:`forward` without the checks of the arrays (the scalars are still checked):
    ``s`` ``(T, ..., D_in)`` and ``weight`` ``(D_out, D_in)`` finite arrays of one float
    dtype, ``bias`` ``(D_out,)`` of that dtype or ``None``. ``x_mix``: the mix of ``s`` at
    this ``tau`` and ``window`` if the caller has it (:func:`mix_unchecked`), else computed here."""
    window, tau_u, factors = _used_factors(tau, window, continuous_tau, s.dtype)
    d_out, d_in = weight.shape

    if x_mix is None:
        x_mix = _mix(s, factors)  # (T, ..., D_in)
    # one 2-D GEMM over all rows (a 4-D @ 2-D product would be one GEMM per (t, b))
    out = x_mix.reshape(-1, d_in) @ weight.T  # (rows, D_out), rows = T * B * N ...
    if bias is not None:
        out += bias
    cache = TASACache(s, weight, bias is not None, tau_u, factors, window, bool(frozen_tau))
    return out.reshape(s.shape[:-1] + (d_out,)), cache


def _mix(s: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``x_mix[t] = sum_lag factors[lag] * s[t - lag]`` with ``s[t] = 0`` for ``t < 0``.

    ``factors[0] = 2^0 = 1``, so the lag-0 term is ``s`` itself; for ``window = 1``
    the result *is* ``s`` (no copy).
    """
    T = s.shape[0]
    lags = min(len(factors), T)  # lags >= T only see the zero padding
    if lags == 1:
        return s
    x_mix = s.copy()  # lag 0, factor 1
    term = np.empty_like(s[: T - 1])  # (T-1, ..., D_in) reused for every lag
    for lag in range(1, lags):
        np.multiply(s[: T - lag], factors[lag], out=term[: T - lag])
        x_mix[lag:] += term[: T - lag]  # s[t - lag] lands on t
    return x_mix


def backward(dout: np.ndarray, cache: TASACache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float | None]:
    """Gradients of :func:`forward`.

    Args:
        dout: gradient w.r.t. ``out``, shape ``(T, ..., D_out)``.
        cache: from :func:`forward`.

    Returns:
        ``(ds, dweight, dbias, dtau)``: ``ds`` ``(T, ..., D_in)``, ``dweight``
        ``(D_out, D_in)``, ``dbias`` ``(D_out,)`` or ``None`` if the forward had
        no bias (arrays in the forward's compute dtype), and ``dtau`` a Python
        float, straight-through across the rounding and the clip (evaluated at
        the ``tau`` the forward used), or ``None`` if ``frozen_tau``.
    """
    if not isinstance(cache, TASACache):
        raise ValueError(f"cache must be the TASACache returned by tasa.forward, got {type(cache).__name__}")
    dout = as_float_array(dout, "dout")
    check_shape(dout, cache.s.shape[:-1] + (cache.weight.shape[0],), "dout")
    return backward_unchecked(dout.astype(cache.s.dtype, copy=False), cache)


def backward_unchecked(dout, cache, x_mix=None):
    """:func:`backward` without argument checks (``dout`` ``(T, ..., D_out)`` in the
    compute dtype). ``x_mix``: ``cache.x_mix`` if the caller has it (layers sharing one
    input and ``tau`` recompute it once), else recomputed here."""
    dx_mix, dweight, dbias = product_backward_unchecked(dout, cache, x_mix)
    ds, dtau = mix_backward_unchecked(dx_mix, cache)
    return ds, dweight, dbias, dtau


def product_backward_unchecked(dout, cache, x_mix=None):
    """The first half of :func:`backward_unchecked`, through the product only:
    ``(dx_mix, dweight, dbias)``, ``dx_mix`` ``(T, ..., D_in)``. Layers that share one
    mix (q, k and v) add their ``dx_mix`` and run :func:`mix_backward_unchecked` once on
    the sum: the mix is linear, so that is the sum of their ``ds`` and of their ``dtau``."""
    s, weight = cache.s, cache.weight
    d_out, d_in = weight.shape
    dout2 = dout.reshape(-1, d_out)  # (rows, D_out), rows = T * B * N ...
    if x_mix is None:
        x_mix = cache.x_mix  # (T, ..., D_in) recomputed from s

    # forward was: out = x_mix @ W^T + b (one 2-D GEMM), so now:
    dbias = dout2.sum(axis=0) if cache.has_bias else None  # (D_out,)
    dweight = rows_product(dout2, x_mix.reshape(-1, d_in))  # dout2^T @ x_mix: (D_out, D_in)
    dx_mix = (dout2 @ weight).reshape(s.shape)  # (T, ..., D_in)
    return dx_mix, dweight, dbias


def mix_backward_unchecked(dx_mix, cache):
    """The second half of :func:`backward_unchecked`, through the mix:
    ``(ds, dtau)`` from the gradient ``dx_mix`` ``(T, ..., D_in)`` of ``cache``'s mix
    (``dtau`` ``None`` if ``frozen_tau``). ``ds`` is ``dx_mix`` itself for a window of 1."""
    s = cache.s
    T = s.shape[0]
    # forward was: x_mix[t] += df(lag) * s[t - lag] for each lag, so now:
    lags = min(cache.window, T)
    ds = dx_mix if lags == 1 else dx_mix.copy()  # lag 0, factor 1
    dtau = None if cache.frozen_tau else 0.0
    term = np.empty_like(s[: T - 1]) if lags > 1 else None  # (T-1, ..., D_in) reused for every lag
    for lag in range(1, lags):
        np.multiply(dx_mix[lag:], cache.factors[lag], out=term[: T - lag])
        ds[: T - lag] += term[: T - lag]  # fans out over lags: +=
        if dtau is not None:
            # d df(lag) / d tau = -lag * ln 2 * df(lag)
            dot = float(np.sum(np.multiply(dx_mix[lag:], s[: T - lag], out=term[: T - lag]), dtype=np.float64))
            dtau += dot * (-lag * math.log(2.0)) * float(cache.factors[lag])
    return ds, dtau
