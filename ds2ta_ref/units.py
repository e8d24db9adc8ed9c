"""The pieces every layer of the model shares: a forward context, and the
"BatchNorm then LIF" unit that follows every convolution and linear map in
Spikformer.

A forward reads parameters from ``ctx.params`` and BatchNorm running statistics
from ``ctx.state`` (both keyed by Spikformer's ``state_dict`` names) and writes
the updated statistics to ``ctx.new_state``; nothing is mutated in place. A
backward adds (``+=``) each parameter's gradient into a ``grads`` dict, since a
parameter such as a block's shared ``tau`` receives gradient from several sites.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import layers, lif
from .config import ModelConfig


@dataclass
class Context:
    """What a model forward needs besides its input."""

    cfg: ModelConfig
    params: dict
    state: dict
    training: bool
    smooth: bool = False  # gradient-check mode: smooth spikes, unrounded NSAD and tau
    new_state: dict = field(default_factory=dict)

    def lif_options(self, v_threshold: float | None = None) -> dict:
        cfg = self.cfg
        return dict(tau_m=cfg.tau_m, v_threshold=cfg.v_threshold if v_threshold is None else v_threshold,
                    decay_input=cfg.decay_input, detach_reset=cfg.detach_reset,
                    surrogate=cfg.surrogate, alpha=cfg.alpha, smooth=self.smooth)


def accumulate(grads: dict, name: str, value) -> None:
    """``grads[name] += value`` (a fan-out sums its gradients)."""
    if value is None:
        return
    if name in grads:
        grads[name] = grads[name] + value
    else:
        grads[name] = np.array(value, copy=True)


class BNLIFCache(NamedTuple):
    bn: object
    lif: object
    shape: tuple  # the shape BatchNorm saw


def bn_lif_forward(x: np.ndarray, bn: str, ctx: Context, *, axis: int, time_shape: tuple,
                   v_threshold: float | None = None) -> tuple[np.ndarray, BNLIFCache]:
    """``LIF(BN(x))``: BatchNorm ``bn`` over all axes of ``x`` but ``axis``, then LIF
    neurons over time on ``x`` reshaped to ``time_shape`` (leading axis T)."""
    cfg = ctx.cfg
    y, mean, var, bn_cache = layers.batchnorm_forward(
        x, ctx.params[f"{bn}.weight"], ctx.params[f"{bn}.bias"],
        ctx.state[f"{bn}.running_mean"], ctx.state[f"{bn}.running_var"],
        axis=axis, training=ctx.training, momentum=cfg.bn_momentum, eps=cfg.bn_eps)
    ctx.new_state[f"{bn}.running_mean"] = mean
    ctx.new_state[f"{bn}.running_var"] = var
    count = ctx.state.get(f"{bn}.num_batches_tracked", np.array(0, dtype=np.int64))
    ctx.new_state[f"{bn}.num_batches_tracked"] = count + 1 if ctx.training else count
    spikes, lif_cache = lif.forward(y.reshape(time_shape), **ctx.lif_options(v_threshold))
    return spikes, BNLIFCache(bn_cache, lif_cache, y.shape)


def bn_lif_backward(dspikes: np.ndarray, cache: BNLIFCache, bn: str, grads: dict) -> np.ndarray:
    """Backward of :func:`bn_lif_forward`; returns ``dx`` shaped like its ``x``."""
    dy = lif.backward(dspikes, cache.lif).reshape(cache.shape)
    dx, dgamma, dbeta = layers.batchnorm_backward(dy, cache.bn)
    accumulate(grads, f"{bn}.weight", dgamma)
    accumulate(grads, f"{bn}.bias", dbeta)
    return dx
