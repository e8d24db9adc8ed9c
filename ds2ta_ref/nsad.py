"""NSAD: the nonlinear spiking attention denoiser (DS2TA Eq. 6-7, docs/spec.md §3).

Per head ``h``, the spiking score map ``S = Q K^T`` (``Q``, ``K`` binary,
``(N, d)``) has integer entries in ``[0, d]``. NSAD maps every entry through a
per-head nonlinearity with six learnable parameters ``(a, b, c, d, e, u)``::

    f_h(s) = 1(s > u_h) * g_h(s)                                       (Eq. 6)
    g_h(s) = a_h*s + b_h*(s - c_h)^2 + d_h / (1 + exp(s - e_h))        (Eq. 7)

Since ``s`` only takes the ``d + 1`` values ``0 .. d``, the map is a lookup
table (the paper's hashmap), built once per forward and gathered::

    AD_h[s] = round(f_h(s))                  s = 0 .. d,   table (H, d + 1)
    A[..., h, i, j] = AD_h[S[..., h, i, j]]

In code the head dimension is ``head_dim`` (the letter ``d`` is a parameter).
Parameters are an ``(H, 6)`` array with columns in the order ``a, b, c, d, e, u``.

Choices (docs/spec.md §3, each an option where it can be one):

* rounding: ``"nearest"`` (``np.rint``, half to even; the paper's words) is the
  default; ``"floor"`` (what the paper typesets) is the alternative.
* The gate is strict, ``1(s > u)``: scores at or below ``u_h`` map to 0. With
  ``u_h >= 0`` a zero score stays zero, so NSAD never lowers sparsity.
* Table entries may be negative (nothing in Eq. 7 prevents it).
* Scores must be integer counts in ``[0, head_dim]``; anything else is an error.
* Backward, straight-through: the rounding passes the gradient unchanged, and
  the gate is differentiated by the neurons' surrogate derivative ``sg`` at
  ``s - u`` (``surrogate`` and ``alpha`` options, default sigmoid with its own alpha, 4)::

      df/ds = 1(s > u) * g'(s) + sg(s - u) * g(s)
      df/du = -sg(s - u) * g(s)
      df/dp = 1(s > u) * dg/dp   for p in a..e, with
      dg/da = s,  dg/db = (s - c)^2,  dg/dc = -2b(s - c),
      dg/dd = 1/(1 + exp(s - e)),  dg/de = d * sig(s - e) * (1 - sig(s - e))

  The upstream gradient is accumulated per table entry (``np.bincount`` over
  the flat ``(h, s)`` index) and only then chained to the six parameters:
  ``O(N^2)`` per head for the scatter plus ``O(head_dim)`` per head for the
  chain, never an ``(..., N, N, 6)`` array.

Smooth mode (``smooth=True``) exists only to check that backward by finite
differences: no rounding, the gate ``1(s > u)`` becomes the surrogate's primal
``primal(s - u)``, and ``f`` is evaluated per entry, so scores may be any real
numbers. The backward then uses the cached primal gate in place of ``1(s > u)``
and is the exact derivative of that forward.

The logistic ``1 / (1 + exp(s - e))`` is :func:`scipy.special.expit` of
``-(s - e)``, which does not overflow for large ``|s - e|``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import expit

from . import surrogate as _surrogate
from ._checks import as_float_array, check_finite_scalar, check_int, check_shape

__all__ = [
    "PARAM_NAMES",
    "ROUNDINGS",
    "NSADCache",
    "SparsityReport",
    "hashmap",
    "forward",
    "backward",
    "forward_unchecked",
    "backward_unchecked",
    "curve",
    "init_params",
    "sparsity",
    "sparsity_report",
]

PARAM_NAMES = ("a", "b", "c", "d", "e", "u")  # the columns of params, in order
ROUNDINGS = {"nearest": np.rint, "floor": np.floor}


class NSADCache(NamedTuple):
    """What :func:`forward` keeps for :func:`backward`.

    Kept: the scores and params as validated (no copy) and, in smooth mode, the
    primal gate per entry; recomputed: the flat ``(h, s)`` table index and, on
    the ``(H, head_dim + 1)`` grid, ``g``, its derivatives and the gate.
    """

    scores: np.ndarray  # (..., H, N, N) the score map S
    params: np.ndarray  # (H, 6) columns a, b, c, d, e, u
    gate: np.ndarray | None  # (..., H, N, N) primal(S - u) in smooth mode; None in table mode
    head_dim: int
    rounding: str
    surrogate: str
    alpha: float
    smooth: bool


class SparsityReport(NamedTuple):
    """Fraction of zero entries in the score map before and after NSAD."""

    before: float
    after: float


# ----------------------------------------------------------------------------- helpers


def _check_params(params) -> np.ndarray:
    params = as_float_array(params, "params")
    if params.ndim != 2 or params.shape[1] != len(PARAM_NAMES):
        raise ValueError(
            f"params must have shape (H, 6) with columns {', '.join(PARAM_NAMES)}, got shape {params.shape}"
        )
    return params


def _check_rounding(rounding) -> str:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {sorted(ROUNDINGS)}, got {rounding!r}")
    return rounding


def _columns(params: np.ndarray, trailing: int) -> tuple[np.ndarray, ...]:
    """The six parameter columns, each shaped ``(H,) + (1,) * trailing`` for broadcasting."""
    shape = (params.shape[0],) + (1,) * trailing
    return tuple(params[:, k].reshape(shape) for k in range(len(PARAM_NAMES)))


def _g(s, a, b, c, d, e):
    """``g(s) = a s + b (s - c)^2 + d / (1 + exp(s - e))`` (Eq. 7), broadcasting."""
    return a * s + b * (s - c) ** 2 + d * expit(-(s - e))


class FDerivatives(NamedTuple):
    """The derivatives of ``f(s) = 1(s > u) g(s)`` (Eq. 6-7) with the straight-through
    surrogate gate, evaluated wherever ``s`` is (on the table grid or per entry)::

        df/ds = 1(s > u) g'(s) + sg(s - u) g(s)
        df/dp = 1(s > u) dg/dp        for p in a, b, c, d, e
        df/du = -sg(s - u) g(s)
    """

    ds: np.ndarray
    da: np.ndarray
    db: np.ndarray
    dc: np.ndarray
    dd: np.ndarray
    de: np.ndarray
    du: np.ndarray

    def params(self) -> tuple[np.ndarray, ...]:
        """``df/da .. df/du`` in the column order of ``params``."""
        return self.da, self.db, self.dc, self.dd, self.de, self.du


def _f_derivatives(s, params, gate, sg: _surrogate.Surrogate, alpha: float, trailing: int) -> FDerivatives:
    """:class:`FDerivatives` at scores ``s``; ``gate`` is ``1(s > u)`` (or, in smooth
    mode, the primal the forward used); ``trailing`` axes follow the head axis in ``s``."""
    a, b, c, d, e, u = _columns(params, trailing)  # each (H,) + (1,) * trailing
    logistic = expit(-(s - e))  # 1 / (1 + exp(s - e)) = 1 - sig(s - e)
    sig = expit(s - e)  # sig(s - e), computed directly rather than as 1 - logistic
    g = a * s + b * (s - c) ** 2 + d * logistic  # Eq. 7
    dg_ds = a + 2 * b * (s - c) - d * sig * logistic
    sg_gate = sg.grad(s - u, alpha)  # surrogate derivative of the gate 1(s > u), at s - u
    return FDerivatives(
        ds=gate * dg_ds + sg_gate * g,
        da=gate * s,
        db=gate * (s - c) ** 2,
        dc=gate * -2 * b * (s - c),
        dd=gate * logistic,
        de=gate * d * sig * logistic,
        du=-sg_gate * g,
    )


def _per_head_sum(x: np.ndarray, head_axis: int) -> np.ndarray:
    """Sum ``x`` over every axis except ``head_axis``: shape ``(H,)``."""
    x = np.moveaxis(x, head_axis, 0)
    return x.reshape(x.shape[0], -1).sum(axis=1)


def _check_scores(scores, params: np.ndarray, head_dim: int, smooth: bool) -> np.ndarray:
    scores = as_float_array(scores, "scores", min_ndim=3, what=" (..., H, N, N)")
    if scores.shape[-1] != scores.shape[-2]:
        raise ValueError(f"scores must be (..., H, N, N) with square last two axes, got shape {scores.shape}")
    if params.shape[0] != scores.shape[-3]:
        raise ValueError(
            f"params must have one row per head, H = scores.shape[-3] = {scores.shape[-3]}, got shape {params.shape}"
        )
    if not smooth and scores.size:
        if not np.all(scores == np.rint(scores)):
            raise ValueError("scores must be integer counts (a spiking score map), got non-integer values")
        lo, hi = scores.min(), scores.max()
        if lo < 0 or hi > head_dim:
            raise ValueError(f"scores must lie in [0, head_dim] = [0, {head_dim}], got values in [{lo:g}, {hi:g}]")
    return scores


def _flat_index(scores: np.ndarray, head_dim: int) -> np.ndarray:
    """``h * (head_dim + 1) + S[..., h, i, j]``: the entry of the raveled table each score reads."""
    heads = np.arange(scores.shape[-3]).reshape(-1, 1, 1)  # (H, 1, 1)
    return scores.astype(np.intp) + (head_dim + 1) * heads  # (..., H, N, N)


# ----------------------------------------------------------------------------- forward / backward


def hashmap(params: np.ndarray, *, head_dim: int, rounding: str = "nearest") -> np.ndarray:
    """The per-head lookup table ``AD_h[s] = round(f_h(s))`` for ``s = 0 .. head_dim`` (Eq. 6-7).

    Args:
        params: ``(H, 6)``, columns ``a, b, c, d, e, u``.
        head_dim: ``d``, the largest possible score.
        rounding: ``"nearest"`` (half to even) or ``"floor"``.

    Returns:
        ``(H, head_dim + 1)`` integer-valued table in ``params``' float dtype;
        entries with ``s <= u_h`` are 0.
    """
    params = _check_params(params)
    head_dim = check_int(head_dim, "head_dim", minimum=1)
    rounding = _check_rounding(rounding)
    return _table(params, head_dim, rounding)


def _table(params: np.ndarray, head_dim: int, rounding: str) -> np.ndarray:
    """:func:`hashmap` on checked arguments (the overflow check stays: it is on the result)."""
    s = np.arange(head_dim + 1, dtype=params.dtype)  # (d+1,)
    a, b, c, d, e, u = _columns(params, 1)  # each (H, 1)
    with np.errstate(over="ignore"):  # an overflow is reported just below, naming params
        table = ROUNDINGS[rounding](np.where(s > u, _g(s, a, b, c, d, e), 0).astype(params.dtype, copy=False))
    if not np.all(np.isfinite(table)):
        raise ValueError("params must give a finite table, but Eq. 7 overflows for these params")
    return table  # (H, d+1)


def curve(params: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The continuous, unrounded ``f_h(s) = 1(s > u_h) * g_h(s)`` (Eq. 6-7), for plotting.

    Args:
        params: ``(H, 6)``, columns ``a, b, c, d, e, u``.
        s: 1-D array of real scores.

    Returns:
        ``(H, len(s))`` in ``params``' float dtype.
    """
    params = _check_params(params)
    s = as_float_array(s, "s")
    if s.ndim != 1:
        raise ValueError(f"s must be a 1-D array, got shape {s.shape}")
    s = s.astype(params.dtype, copy=False)
    a, b, c, d, e, u = _columns(params, 1)  # each (H, 1)
    return np.where(s > u, _g(s, a, b, c, d, e), 0).astype(params.dtype, copy=False)  # (H, len(s))


def forward(
    scores: np.ndarray,
    params: np.ndarray,
    *,
    head_dim: int,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    rounding: str = "nearest",
    smooth: bool = False,
) -> tuple[np.ndarray, NSADCache]:
    """Denoise a spiking score map: ``A[..., h, i, j] = AD_h[S[..., h, i, j]]`` (Eq. 6-7).

    Args:
        scores: ``S = Q K^T`` per head, shape ``(..., H, N, N)`` (e.g. ``(T, B, H, N, N)``),
           integer counts in ``[0, head_dim]`` given as a float or int array. In
           smooth mode any finite reals.
        params: ``(H, 6)``, columns ``a, b, c, d, e, u``; its float dtype is the
           dtype of the output and of the gradients.
        head_dim: ``d = D // H``, the largest possible score.
        surrogate: derivative of the gate in the backward (``"sigmoid"`` or ``"atan"``).
        alpha: surrogate sharpness; ``None`` takes the surrogate's own default
           (4 for ``sigmoid``, 2 for ``atan``).
        rounding: ``"nearest"`` (half to even, default) or ``"floor"``; ignored in smooth mode.
        smooth: check mode: no rounding, gate ``primal(s - u)``, ``f`` evaluated per entry.

    Returns:
        ``(A, cache)``: ``A`` of shape ``(..., H, N, N)``, integer-valued (smooth
        mode: real) in ``params``' dtype.
    """
    params = _check_params(params)
    head_dim = check_int(head_dim, "head_dim", minimum=1)
    rounding = _check_rounding(rounding)
    _surrogate.resolve(surrogate, alpha)  # checks the surrogate's name and alpha
    scores = _check_scores(scores, params, head_dim, bool(smooth))
    return forward_unchecked(
        scores, params, head_dim=head_dim, surrogate=surrogate, alpha=alpha, rounding=rounding, smooth=bool(smooth)
    )


def forward_unchecked(
    scores: np.ndarray,
    params: np.ndarray,
    *,
    head_dim: int,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    rounding: str = "nearest",
    smooth: bool = False,
) -> tuple[np.ndarray, NSADCache]:
    """:func:`forward` without the checks of its arguments, for a caller that has checked them
    (the attention block): ``scores`` a float array ``(..., H, N, N)`` of integer counts in
    ``[0, head_dim]`` (any finite reals in smooth mode), ``params`` a finite float ``(H, 6)``.
    Skips the full scan of the scores that :func:`forward` makes on every call."""
    sg, alpha = _surrogate.resolve(surrogate, alpha)
    dtype = params.dtype
    if smooth:
        s = scores.astype(dtype, copy=False)  # (..., H, N, N)
        a, b, c, d, e, u = _columns(params, 2)  # each (H, 1, 1)
        gate = sg.primal(s - u, alpha)  # (..., H, N, N) smooth 1(s > u)
        A = gate * _g(s, a, b, c, d, e)  # Eq. 6 without rounding
    else:
        gate = None
        table = _table(params, head_dim, rounding)  # (H, d+1)
        A = table.ravel()[_flat_index(scores, head_dim)]  # (..., H, N, N) gather
    cache = NSADCache(scores, params, gate, head_dim, rounding, sg.name, alpha, bool(smooth))
    return A, cache


def backward(dA: np.ndarray, cache: NSADCache) -> tuple[np.ndarray, np.ndarray]:
    """Straight-through surrogate backward of :func:`forward` (docs/spec.md §3).

    Args:
        dA: gradient w.r.t. ``A``, shape ``(..., H, N, N)`` like the forward's scores.
        cache: from :func:`forward`.

    Returns:
        ``(dscores, dparams)``: ``dscores`` of shape ``(..., H, N, N)`` (flows on
        to ``Q`` and ``K``), ``dparams`` of shape ``(H, 6)``, both in ``params``' dtype.
    """
    dA = as_float_array(dA, "dA")
    check_shape(dA, cache.scores.shape, "dA")
    return backward_unchecked(dA, cache)


def backward_unchecked(dA: np.ndarray, cache: NSADCache) -> tuple[np.ndarray, np.ndarray]:
    """:func:`backward` without the checks of ``dA`` (a finite float array shaped like the scores)."""
    backward_path = _backward_smooth if cache.smooth else _backward_table
    dscores, dparams = backward_path(dA.astype(cache.params.dtype, copy=False), cache)
    return dscores, dparams


def _backward_table(dA, cache: NSADCache):
    """The hashmap forward ``A = AD[S]``, ``AD = round(f(0 .. d))``, differentiated on the table."""
    params, head_dim = cache.params, cache.head_dim
    H = params.shape[0]
    # forward was: A = table.ravel()[index], so now: scatter dA into the table entries it read
    index = _flat_index(cache.scores, head_dim)  # (..., H, N, N)
    dtable = np.bincount(index.ravel(), weights=dA.ravel(), minlength=H * (head_dim + 1))
    dtable = dtable.reshape(H, head_dim + 1).astype(params.dtype, copy=False)  # (H, d+1) summed dA per entry
    # forward was: table = round(1(s > u) g(s)) on the grid s = 0 .. d; rounding is straight through
    s = np.arange(head_dim + 1, dtype=params.dtype)  # (d+1,)
    gate = (s > params[:, 5:6]).astype(params.dtype)  # (H, d+1) the hard gate 1(s > u)
    df = _f_derivatives(s, params, gate, _surrogate.get(cache.surrogate), cache.alpha, trailing=1)  # each (H, d+1)
    dparams = np.stack([(dtable * df_dp).sum(axis=1) for df_dp in df.params()], axis=1)  # (H, 6)
    dscores = dA * df.ds.ravel()[index]  # (..., H, N, N) df/ds gathered at each score
    return dscores, dparams


def _backward_smooth(dA, cache: NSADCache):
    """The smooth check-mode forward ``A = primal(S - u) g(S)``, differentiated per entry."""
    params = cache.params
    s = cache.scores.astype(params.dtype, copy=False)  # (..., H, N, N)
    df = _f_derivatives(
        s, params, cache.gate, _surrogate.get(cache.surrogate), cache.alpha, trailing=2
    )  # each (..., H, N, N)
    dparams = np.stack([_per_head_sum(dA * df_dp, head_axis=-3) for df_dp in df.params()], axis=1)  # (H, 6)
    return dA * df.ds, dparams


# ----------------------------------------------------------------------------- initialisation and sparsity


def init_params(num_heads: int, u0: float) -> np.ndarray:
    """docs/spec.md §3 initial parameters: ``a = 1, b = c = d = e = 0, u = u0`` for every head.

    That is the identity above the threshold, so an untrained DS2TA differs from
    Spikformer only by the denoising threshold (paper: ``u0 = 3`` CIFAR, ``2`` DVS).

    Returns:
        ``(num_heads, 6)`` float64.
    """
    num_heads = check_int(num_heads, "num_heads", minimum=1)
    u0 = check_finite_scalar(u0, "u0")
    params = np.zeros((num_heads, len(PARAM_NAMES)))
    params[:, 0] = 1.0
    params[:, 5] = u0
    return params


def sparsity(A: np.ndarray) -> float:
    """Fraction of entries of ``A`` that are exactly zero (docs/spec.md §5), in ``[0, 1]``."""
    A = np.asarray(A)
    if A.size == 0:
        raise ValueError("A must not be empty")
    return float(np.count_nonzero(A == 0) / A.size)


def sparsity_report(scores: np.ndarray, A: np.ndarray) -> SparsityReport:
    """Sparsity of the score map ``S`` before and of ``A = NSAD(S)`` after denoising.

    With every ``u_h >= 0`` a zero score stays zero, so ``after >= before``.
    """
    scores, A = np.asarray(scores), np.asarray(A)
    check_shape(A, scores.shape, "A")
    return SparsityReport(sparsity(scores), sparsity(A))
