"""The "BatchNorm then LIF" unit that follows every convolution and linear map
in Spikformer (docs/spec.md §4.3)::

    y = BN(x)                  statistics of the flattened T*B batch (training)
                               or the running statistics (eval)
    s = LIF(y)                 Eq. 2-3, over the leading time axis

A pure pair, like every block of the model:

* ``forward(x, params, state, cfg, *, training) -> (spikes, new_state, cache)``
  with ``params = {"weight", "bias"}`` (BatchNorm's affine parameters) and
  ``state = {"running_mean", "running_var", "num_batches_tracked"}``;
* ``backward(dspikes, cache) -> (dx, grads)``, ``grads`` keyed like ``params``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import layers, lif, parallel, surrogate
from ._checks import NonFiniteError
from .config import ModelConfig
from .names import checked_block_inputs

__all__ = [
    "BNLIFCache",
    "forward",
    "forward_unchecked",
    "backward",
    "backward_unchecked",
    "lif_options",
    "lif_forward",
    "param_shapes",
    "state_shapes",
]


def param_shapes(channels: int) -> dict[str, tuple]:
    return {"weight": (channels,), "bias": (channels,)}


def state_shapes(channels: int) -> dict[str, tuple]:
    return {"running_mean": (channels,), "running_var": (channels,), "num_batches_tracked": ()}


def lif_options(cfg: ModelConfig, *, smooth: bool = False, v_threshold: float | None = None) -> dict:
    """The keyword arguments of :func:`ds2ta_ref.lif.forward` that ``cfg`` sets."""
    return dict(
        tau_m=cfg.tau_m,
        v_threshold=cfg.v_threshold if v_threshold is None else v_threshold,
        decay_input=cfg.decay_input,
        detach_reset=cfg.detach_reset,
        surrogate=cfg.surrogate,
        alpha=cfg.alpha,
        smooth=smooth,
    )


def lif_forward(x: np.ndarray, cfg: ModelConfig, *, smooth: bool = False, v_threshold: float | None = None):
    """:func:`ds2ta_ref.lif.forward` with the options of ``cfg``, on a checked ``x`` (its unchecked core)."""
    o = lif_options(cfg, smooth=smooth, v_threshold=v_threshold)
    sg, alpha = surrogate.resolve(o["surrogate"], o["alpha"])
    return lif.forward_unchecked(
        x,
        float(o["tau_m"]),
        float(o["v_threshold"]),
        bool(o["decay_input"]),
        bool(o["detach_reset"]),
        sg.name,
        alpha,
        bool(smooth),
    )


class BNLIFCache(NamedTuple):
    """Kept: the BatchNorm and LIF caches; the spike count is kept for firing-rate records."""

    bn: layers.BatchNormCache
    lif: lif.LIFCache
    spike_count: float  # number of spikes emitted (sum of the output)
    neuron_count: int  # neurons times time steps (size of the output)


def forward(
    x: np.ndarray,
    params: dict,
    state: dict,
    cfg: ModelConfig,
    *,
    training: bool,
    smooth: bool = False,
    channel_axis: int = -1,
    v_threshold: float | None = None,
) -> tuple[np.ndarray, dict, BNLIFCache]:
    """``LIF(BN(x))`` on a time-major ``x`` of shape ``(T, B, ...)``.

    Args:
        x: ``(T, B, N, D)`` after a linear map, or ``(T, B, C, H, W)`` after a convolution.
        params: ``{"weight": (C,), "bias": (C,)}``.
        state: ``{"running_mean": (C,), "running_var": (C,)}`` and optionally
            ``"num_batches_tracked"`` (a 0-d int64 counter, advanced in training mode).
        cfg: LIF conventions and BatchNorm momentum and eps.
        training: batch statistics and updated running statistics (True), or running statistics.
        smooth: gradient-check mode of the LIF (:func:`ds2ta_ref.lif.forward`).
        channel_axis: the channel axis ``C`` of ``x`` (``-1`` for tokens, ``2`` for feature maps).
        v_threshold: overrides ``cfg.v_threshold``.

    Returns:
        ``(spikes, new_state, cache)``: spikes shaped like ``x``; ``new_state`` with the keys of ``state``.
    """
    c = x.shape[channel_axis] if np.ndim(x) > 0 else 0
    x, params, state = checked_block_inputs(x, params, state, param_shapes(c), state_shapes(c), what="bnlif")
    return forward_unchecked(
        x, params, state, cfg, training=training, smooth=smooth, channel_axis=channel_axis, v_threshold=v_threshold
    )


def _all_finite(y: np.ndarray) -> bool:
    """Whether every value of ``y`` is finite, checked on every core in parts. A part's sum
    in its own dtype is finite only when the part is (a NaN or an infinity makes it NaN or
    infinite), for the cost of one reduction pass; only where a sum of finite values
    overflows (float32) is each value of that part checked."""
    flat = y.reshape(-1)
    bad = []

    def check(lo, hi):
        part = flat[lo:hi]
        with np.errstate(over="ignore", invalid="ignore"):
            if not (np.isfinite(np.add.reduce(part)) or np.isfinite(part).all()):
                bad.append(lo)  # list.append is atomic

    parallel.for_parts(flat.size, check, work=flat.size)
    return not bad


def forward_unchecked(x, params, state, cfg, *, training, smooth=False, channel_axis=-1, v_threshold=None):
    """:func:`forward` on arguments already checked by the calling block
    (:func:`ds2ta_ref.names.checked_block_inputs`): the kernels' unchecked cores run here."""
    y, mean, var, bn_cache = layers.batchnorm_forward_unchecked(
        x,
        params["weight"],
        params["bias"],
        state["running_mean"],
        state["running_var"],
        channel_axis % x.ndim,
        training,
        cfg.bn_momentum,
        cfg.bn_eps,
    )  # like x
    # With unchecked kernels a NaN would pass silently (it never reaches the threshold, so it
    # only stops the neuron firing): it catches an overflow upstream (a diverging run).
    if not _all_finite(y):
        raise NonFiniteError(
            "the BatchNorm output (the LIF input) must be finite, but it holds NaN or infinity: "
            "a value overflowed upstream"
        )
    new_state = {"running_mean": mean, "running_var": var}
    if "num_batches_tracked" in state:
        count = np.asarray(state["num_batches_tracked"], dtype=np.int64)
        new_state["num_batches_tracked"] = count + 1 if training else count
    spikes, lif_cache = lif_forward(y, cfg, smooth=smooth, v_threshold=v_threshold)  # like x
    return spikes, new_state, BNLIFCache(bn_cache, lif_cache, float(spikes.sum()), spikes.size)


def backward(dspikes: np.ndarray, cache: BNLIFCache) -> tuple[np.ndarray, dict]:
    """Backward of :func:`forward`: ``(dx, {"weight": dgamma, "bias": dbeta})``."""
    if np.shape(dspikes) != cache.lif.h.shape:
        raise ValueError(f"dspikes must have shape {cache.lif.h.shape} (the forward's spikes), got {np.shape(dspikes)}")
    return backward_unchecked(np.asarray(dspikes, dtype=cache.lif.h.dtype), cache)


def backward_unchecked(dspikes: np.ndarray, cache: BNLIFCache) -> tuple[np.ndarray, dict]:
    """:func:`backward` for a caller whose ``dspikes`` is shaped like the forward's spikes."""
    # forward was: y = BN(x); s = LIF(y), so now:
    dy = lif.backward_unchecked(np.asarray(dspikes, dtype=cache.lif.h.dtype), cache.lif)
    dx, dgamma, dbeta = layers.batchnorm_backward_unchecked(dy, cache.bn)
    return dx, {"weight": dgamma, "bias": dbeta}
