"""The MLP of an encoder block (docs/spec.md §4.6)::

    h = LIF(BN(fc1(x)))        D -> 4D
    out = LIF(BN(fc2(h)))      4D -> D

Parameter names (short, without the model's ``block.{i}.mlp.`` prefix) follow
Spikformer's CIFAR code: ``fc1_linear.weight``, ``fc1_bn.bias``, ...
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import bnlif, layers
from .config import ModelConfig
from .names import checked_block_inputs, join, sub

__all__ = ["MLPCache", "forward", "forward_unchecked", "backward", "param_shapes", "state_shapes"]


def _widths(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    D, Dh = cfg.dim, cfg.dim * cfg.mlp_ratio
    return {"fc1": (D, Dh), "fc2": (Dh, D)}  # (in, out)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The block's parameters (short names) and shapes, in Spikformer's order."""
    shapes: dict[str, tuple[int, ...]] = {}
    for fc, (d_in, d_out) in _widths(cfg).items():
        shapes[f"{fc}_linear.weight"] = (d_out, d_in)
        shapes[f"{fc}_linear.bias"] = (d_out,)
        shapes.update(join(f"{fc}_bn", bnlif.param_shapes(d_out)))
    return shapes


def state_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The block's BatchNorm running statistics (short names) and shapes."""
    return {
        k: s for fc, (_, d_out) in _widths(cfg).items() for k, s in join(f"{fc}_bn", bnlif.state_shapes(d_out)).items()
    }


class MLPCache(NamedTuple):
    """Kept: the two linear caches and the two BN+LIF caches; nothing is recomputed."""

    fc1: layers.LinearCache
    unit1: bnlif.BNLIFCache
    fc2: layers.LinearCache
    unit2: bnlif.BNLIFCache
    spike_count: float
    neuron_count: int


def forward(
    x: np.ndarray, params: dict, state: dict, cfg: ModelConfig, *, training: bool, smooth: bool = False
) -> tuple[np.ndarray, dict, MLPCache]:
    """``LIF(BN(fc2(LIF(BN(fc1(x))))))`` on ``(T, B, N, D)``; returns ``(out, new_state, cache)``."""
    x, params, state = checked_block_inputs(x, params, state, param_shapes(cfg), state_shapes(cfg), what="mlp")
    return forward_unchecked(x, params, state, cfg, training=training, smooth=smooth)


def forward_unchecked(
    x: np.ndarray, params: dict, state: dict, cfg: ModelConfig, *, training: bool, smooth: bool = False
) -> tuple[np.ndarray, dict, MLPCache]:
    """:func:`forward` on arguments already checked (the model's: it checks its inputs once)
    with :func:`ds2ta_ref.names.checked_block_inputs`."""
    z1, fc1 = layers.linear_forward_unchecked(
        x, params["fc1_linear.weight"], params["fc1_linear.bias"]
    )  # (T, B, N, 4D)
    h, state1, unit1 = bnlif.forward_unchecked(
        z1, sub(params, "fc1_bn"), sub(state, "fc1_bn"), cfg, training=training, smooth=smooth
    )  # (T, B, N, 4D) spikes
    z2, fc2 = layers.linear_forward_unchecked(h, params["fc2_linear.weight"], params["fc2_linear.bias"])  # (T, B, N, D)
    out, state2, unit2 = bnlif.forward_unchecked(
        z2, sub(params, "fc2_bn"), sub(state, "fc2_bn"), cfg, training=training, smooth=smooth
    )  # (T, B, N, D) spikes
    new_state = {**join("fc1_bn", state1), **join("fc2_bn", state2)}
    cache = MLPCache(
        fc1, unit1, fc2, unit2, unit1.spike_count + unit2.spike_count, unit1.neuron_count + unit2.neuron_count
    )
    return out, new_state, cache


def backward(dout: np.ndarray, cache: MLPCache) -> tuple[np.ndarray, dict]:
    """Backward of :func:`forward`: ``(dx (T, B, N, D), grads)``, ``grads`` keyed like ``params``."""
    # forward was: z2 = fc2(h); out = LIF(BN(z2)), so now:
    dz2, bn2 = bnlif.backward_unchecked(dout, cache.unit2)
    dh, dw2, db2 = layers.linear_backward_unchecked(dz2, cache.fc2)
    # forward was: z1 = fc1(x); h = LIF(BN(z1)), so now:
    dz1, bn1 = bnlif.backward_unchecked(dh, cache.unit1)
    dx, dw1, db1 = layers.linear_backward_unchecked(dz1, cache.fc1)
    grads = {
        "fc1_linear.weight": dw1,
        "fc1_linear.bias": db1,
        **join("fc1_bn", bn1),
        "fc2_linear.weight": dw2,
        "fc2_linear.bias": db2,
        **join("fc2_bn", bn2),
    }
    return dx, grads
