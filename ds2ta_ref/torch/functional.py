"""The DS2TA kernels in PyTorch: LIF, TASA and NSAD, written for speed (docs/spec.md §1-3).

Each function computes exactly what its NumPy reference computes
(:mod:`ds2ta_ref.lif`, :mod:`ds2ta_ref.tasa`, :mod:`ds2ta_ref.nsad`), with the
same conventions and the same surrogate backward, but on tensors of any
floating dtype and any device, and without a Python loop over heads or tokens
(only over time steps, which a recurrent neuron needs):

* :func:`lif` -- one ``torch.autograd.Function`` that runs the membrane over
  time and back-propagates through time by hand (docs/spec.md §1.3), keeping only the
  pre-reset membrane ``h`` and the spikes; nothing outlives the call, so no
  state leaks from one batch into the next.
* :func:`tasa_mix` -- the attenuated window sum of Eq. 1, 4, 5 as one ``(T, T)``
  matrix product over time; ``tau`` enters as ``max(0, round(tau))`` with a
  straight-through gradient, and autograd gives ``dtau`` (docs/spec.md §2.2-2.3).
* :func:`nsad` -- the hashmap forward of Eq. 6-7: the ``(H, head_dim + 1)``
  table is built from the parameters by autograd (strict gate with the
  surrogate derivative, rounding straight through), and the score map is a
  single gather from it whose backward scatters into the table and passes
  ``df/ds`` (read from a second table) on to the scores (docs/spec.md §3.3).
"""

from __future__ import annotations

import math

import torch

from .. import surrogate as _surrogate

__all__ = ["surrogate_grad", "spike", "gate", "lif", "tasa_mix", "nsad_tables", "nsad"]


def surrogate_grad(x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:
    """The surrogate derivative ``sg(x)`` of :mod:`ds2ta_ref.surrogate` (sigmoid or atan)."""
    if name == "sigmoid":
        sig = torch.sigmoid(-alpha * x.abs())  # even function: evaluate at -|x|, no cancellation in 1 - sig
        return alpha * sig * (1 - sig)
    if name == "atan":
        return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)
    raise ValueError(f"surrogate must be one of ['atan', 'sigmoid'], got {name!r}")


class _Step(torch.autograd.Function):
    """Heaviside forward (``x >= 0``, or ``x > 0`` when ``strict``), surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x, name, alpha, strict):
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x > 0 if strict else x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.name, ctx.alpha), None, None, None


def spike(x: torch.Tensor, surrogate: str = "sigmoid", alpha: float | None = None) -> torch.Tensor:
    """The neuron's spike ``1(x >= 0)`` with the surrogate derivative in the backward."""
    sg, alpha = _surrogate.resolve(surrogate, alpha)
    return _Step.apply(x, sg.name, alpha, False)


def gate(x: torch.Tensor, surrogate: str = "sigmoid", alpha: float | None = None) -> torch.Tensor:
    """NSAD's strict gate ``1(x > 0)`` with the surrogate derivative in the backward."""
    sg, alpha = _surrogate.resolve(surrogate, alpha)
    return _Step.apply(x, sg.name, alpha, True)


class _LIF(torch.autograd.Function):
    """Multi-step LIF with hard reset to 0 (Eq. 2-3), BPTT by hand as in :func:`ds2ta_ref.lif.backward`.

    Only the recurrence runs step by step (two or three tensor operations per
    step); everything that does not depend on the previous step is computed for
    all time steps at once.
    """

    @staticmethod
    def forward(ctx, x, tau_m, v_threshold, decay_input, detach_reset, name, alpha):
        k = 1.0 - 1.0 / tau_m
        current = x / tau_m if decay_input else x  # (T, ...)
        h = torch.empty_like(x)  # membrane before reset
        fired = torch.empty(x.shape, dtype=torch.bool, device=x.device)
        v = torch.zeros_like(x[0])  # v[-1] = 0: every call starts at rest
        for t in range(x.shape[0]):
            torch.add(current[t], v, alpha=k, out=h[t])  # charge: h = k v[t-1] + I
            torch.ge(h[t], v_threshold, out=fired[t])  # fire: s = 1(h >= theta)
            v = h[t].masked_fill(fired[t], 0.0)  # hard reset: v = h (1 - s)
        s = fired.to(x.dtype)
        ctx.save_for_backward(h, s)
        ctx.options = (tau_m, v_threshold, decay_input, detach_reset, name, alpha)
        return s

    @staticmethod
    def backward(ctx, dspikes):
        h, s = ctx.saved_tensors
        tau_m, v_threshold, decay_input, detach_reset, name, alpha = ctx.options
        k = 1.0 - 1.0 / tau_m
        sg = surrogate_grad(h - v_threshold, name, alpha)  # (T, ...) surrogate derivative at every step
        direct = dspikes * sg  # (T, ...) gradient into h through the emitted spike
        dv_dh = 1 - s if detach_reset else 1 - s - h * sg  # (T, ...) through the reset v = h (1 - s)
        dh = torch.empty_like(h)
        dv = torch.zeros_like(h[0])  # gradient reaching v[t] from step t+1
        for t in reversed(range(h.shape[0])):
            # forward was: h = k v[t-1] + I; s = 1(h >= theta); v = h (1 - s), so now:
            torch.addcmul(direct[t], dv, dv_dh[t], out=dh[t])  # dh = ds sg + dv dv/dh
            dv = dh[t] * k  # to v[t-1]
        return (dh / tau_m if decay_input else dh), None, None, None, None, None, None


def lif(
    x: torch.Tensor,
    *,
    tau_m: float = 2.0,
    v_threshold: float = 1.0,
    decay_input: bool = False,
    detach_reset: bool = True,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
) -> torch.Tensor:
    """LIF neurons over the leading time axis of ``x`` ``(T, ...)``: spikes of the same shape.

    The options are those of :func:`ds2ta_ref.lif.forward`; ``alpha=None`` is the
    surrogate's own default.
    """
    sg, alpha = _surrogate.resolve(surrogate, alpha)
    return _LIF.apply(x, float(tau_m), float(v_threshold), bool(decay_input), bool(detach_reset), sg.name, alpha)


def tau_used(tau: torch.Tensor) -> torch.Tensor:
    """``max(0, round(tau))`` (half to even) in the forward, the identity in the backward."""
    return tau + (torch.clamp(torch.round(tau), min=0.0) - tau).detach()


def tasa_mix(x: torch.Tensor, tau: torch.Tensor | None, window: int) -> torch.Tensor:
    """``x_mix[t] = sum_{lag < window} 2^(-tau_int * lag) * x[t - lag]`` (Eq. 1, 4, 5), zeros before t = 0.

    ``x``: ``(T, ...)``; ``tau``: a 0-d tensor (its gradient is straight through the
    rounding and the clip) or ``None`` with ``window = 1``. Computed as ``M @ x``
    with the lower-triangular band ``M[t, m] = 2^(-tau_int (t - m))`` for
    ``0 <= t - m < window``, ``(T, T)``.
    """
    T = x.shape[0]
    lags = min(window, T)
    if lags == 1 or tau is None:  # tau is None only with window = 1
        return x
    t = torch.arange(T, device=x.device)
    lag = t[:, None] - t[None, :]  # (T, T) t - m
    band = (lag >= 0) & (lag < lags)
    lag = lag.clamp(min=0).to(x.dtype)
    M = torch.where(
        band, torch.exp2(-tau_used(tau).to(x.dtype) * lag), torch.zeros((), dtype=x.dtype, device=x.device)
    )  # (T, T)
    return (M @ x.reshape(T, -1)).reshape(x.shape)


def nsad_tables(
    params: torch.Tensor,
    head_dim: int,
    *,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    rounding: str = "nearest",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(table, slope)``, both ``(H, head_dim + 1)``: ``table[h, s] = round(1(s > u_h) g_h(s))``
    (Eq. 6-7; differentiable in ``params``: gate by surrogate, rounding straight
    through) and ``slope = df/ds = 1(s > u) g'(s) + sg(s - u) g(s)`` (detached),
    the derivative the backward hands to the scores."""
    sg, alpha = _surrogate.resolve(surrogate, alpha)
    s = torch.arange(head_dim + 1, dtype=params.dtype, device=params.device)  # (d+1,)
    a, b, c, d, e, u = (params[:, i : i + 1] for i in range(6))  # each (H, 1)
    logistic = torch.sigmoid(-(s - e))  # 1 / (1 + exp(s - e)), (H, d+1)
    g = a * s + b * (s - c) ** 2 + d * logistic  # Eq. 7
    f = _Step.apply(s - u, sg.name, alpha, True) * g  # Eq. 6, strict gate
    rounded = torch.round(f) if rounding == "nearest" else torch.floor(f)
    table = f + (rounded - f).detach()  # straight-through rounding
    with torch.no_grad():
        dg_ds = a + 2 * b * (s - c) - d * torch.sigmoid(s - e) * logistic
        slope = (s > u).to(params.dtype) * dg_ds + surrogate_grad(s - u, sg.name, alpha) * g
    return table, slope


class _Lookup(torch.autograd.Function):
    """``A = table[h, S]`` forward; backward scatters ``dA`` into the table and gives ``dS = dA * slope[h, S]``."""

    @staticmethod
    def forward(ctx, scores, table, slope):
        H, n = table.shape
        heads = torch.arange(H, device=scores.device).view(H, 1, 1) * n  # (H, 1, 1)
        index = scores.long() + heads  # (..., H, N, N) into the flat table
        # kept as int16 (H (d + 1) entries fit): a quarter of the memory of the int64 index
        compact = torch.int16 if table.numel() <= torch.iinfo(torch.int16).max else torch.int32
        ctx.save_for_backward(index.to(compact), slope)
        ctx.table_shape = table.shape
        return torch.take(table, index)

    @staticmethod
    def backward(ctx, dA):
        index, slope = ctx.saved_tensors
        index = index.long()
        dtable = torch.zeros(slope.numel(), dtype=dA.dtype, device=dA.device)
        dtable.index_add_(0, index.reshape(-1), dA.reshape(-1))  # summed dA per table entry
        dscores = dA * torch.take(slope, index)
        return dscores, dtable.view(ctx.table_shape), None


def nsad(
    scores: torch.Tensor,
    params: torch.Tensor,
    *,
    head_dim: int,
    surrogate: str = "sigmoid",
    alpha: float | None = None,
    rounding: str = "nearest",
) -> torch.Tensor:
    """Denoised map ``A[..., h, i, j] = AD_h[S[..., h, i, j]]`` for integer scores ``(..., H, N, N)``
    in ``[0, head_dim]`` and parameters ``(H, 6)`` (columns ``a, b, c, d, e, u``)."""
    if rounding not in ("nearest", "floor"):
        raise ValueError(f"rounding must be one of ['floor', 'nearest'], got {rounding!r}")
    table, slope = nsad_tables(params, head_dim, surrogate=surrogate, alpha=alpha, rounding=rounding)
    return _Lookup.apply(scores, table.to(scores.dtype), slope.to(scores.dtype))
