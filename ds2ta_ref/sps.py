"""Spiking patch splitting (SPS): the convolutional stem that turns an image
into spiking tokens, with Spikformer's relative-position branch (docs/spec.md §4.4).

CIFAR variant (32x32 input, embedding D)::

    Conv3x3(C -> D/8)  BN LIF
    Conv3x3(D/8 -> D/4) BN LIF
    Conv3x3(D/4 -> D/2) BN LIF MaxPool(3, 2, 1)
    Conv3x3(D/2 -> D)   BN LIF MaxPool(3, 2, 1)      -> (H/4) x (W/4) tokens
    x = x + LIF(BN(Conv3x3(D -> D)(x)))                relative position embedding

The DVS variant puts ``MaxPool(3, 2, 1)`` after every one of the four stages
(128x128 -> 8x8). Convolutions have no bias and padding 1. The first
convolution sees the analog image (direct encoding) and its LIF is the encoder.

Parameter names are those of Spikformer's ``patch_embed`` module without the
prefix: ``proj_conv.weight``, ``proj_bn.weight``, ... ``rpe_bn.bias``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import bnlif, layers
from .config import ModelConfig
from .names import checked_block_inputs, join, sub

__all__ = ["SPSCache", "forward", "forward_unchecked", "backward", "param_shapes", "state_shapes"]

CONVS = ("proj_conv", "proj_conv1", "proj_conv2", "proj_conv3")
BNS = ("proj_bn", "proj_bn1", "proj_bn2", "proj_bn3")


def channels(cfg: ModelConfig) -> list[int]:
    """Channels into and out of the four stages: ``[C, D/8, D/4, D/2, D]``."""
    return [cfg.in_channels, cfg.dim // 8, cfg.dim // 4, cfg.dim // 2, cfg.dim]


def pooled(cfg: ModelConfig) -> tuple[bool, ...]:
    """Which of the four stages end with a max-pool."""
    return (False, False, True, True) if cfg.sps == "cifar" else (True, True, True, True)


def _bns(cfg: ModelConfig) -> dict[str, int]:
    """Every BatchNorm of the block and its channel count."""
    ch = channels(cfg)
    return {**{bn: ch[i + 1] for i, bn in enumerate(BNS)}, "rpe_bn": cfg.dim}


def param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The block's parameters (short names) and shapes, in Spikformer's order."""
    ch = channels(cfg)
    shapes = {}
    for i, (conv, bn) in enumerate(zip(CONVS, BNS)):
        shapes[f"{conv}.weight"] = (ch[i + 1], ch[i], 3, 3)
        shapes.update(join(bn, bnlif.param_shapes(ch[i + 1])))
    shapes["rpe_conv.weight"] = (cfg.dim, cfg.dim, 3, 3)
    shapes.update(join("rpe_bn", bnlif.param_shapes(cfg.dim)))
    return shapes


def state_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The block's BatchNorm running statistics (short names) and shapes."""
    return {k: s for bn, c in _bns(cfg).items() for k, s in join(bn, bnlif.state_shapes(c)).items()}


class StageCache(NamedTuple):
    conv: layers.ConvCache
    unit: bnlif.BNLIFCache
    pool: layers.MaxPoolCache | None  # None when the stage has no max-pool


class SPSCache(NamedTuple):
    """Kept: the caches of every conv, BN+LIF unit and max-pool; nothing is recomputed."""

    stages: tuple[StageCache, ...]
    rpe_conv: layers.ConvCache
    rpe_unit: bnlif.BNLIFCache
    feat_shape: tuple  # (TB, D, h, w) of the token feature map
    spike_count: float  # spikes of every LIF of the block
    neuron_count: int


def forward(
    frames: np.ndarray, params: dict, state: dict, cfg: ModelConfig, *, training: bool, smooth: bool = False
) -> tuple[np.ndarray, dict, SPSCache]:
    """Image frames ``(T, B, C, H, W)`` to spiking tokens ``(T, B, N, D)``.

    Returns ``(tokens, new_state, cache)``; token values are in {0, 1, 2}
    (a spike plus the relative-position spike).
    """
    frames, params, state = checked_block_inputs(
        frames, params, state, param_shapes(cfg), state_shapes(cfg), what="sps"
    )
    return forward_unchecked(frames, params, state, cfg, training=training, smooth=smooth)


def forward_unchecked(
    frames: np.ndarray, params: dict, state: dict, cfg: ModelConfig, *, training: bool, smooth: bool = False
) -> tuple[np.ndarray, dict, SPSCache]:
    """:func:`forward` on arguments already checked (the model's: it checks its inputs once)
    with :func:`ds2ta_ref.names.checked_block_inputs`."""
    T, B = frames.shape[:2]
    new_state = {}

    def conv_bn_lif(h, conv, bn):  # h: (TB, C, H, W) -> spikes (TB, C', H, W)
        z, conv_cache = layers.conv_forward_unchecked(h, params[f"{conv}.weight"])  # (TB, C', H, W)
        s, bn_state, unit_cache = bnlif.forward_unchecked(
            z.reshape((T, B) + z.shape[1:]),
            sub(params, bn),
            sub(state, bn),
            cfg,
            training=training,
            smooth=smooth,
            channel_axis=2,
        )  # (T, B, C', H, W)
        new_state.update(join(bn, bn_state))
        return s.reshape(z.shape), conv_cache, unit_cache

    h = frames.reshape((T * B,) + frames.shape[2:])  # (TB, C, H, W)
    stages = []
    for conv, bn, pool in zip(CONVS, BNS, pooled(cfg)):
        h, conv_cache, unit_cache = conv_bn_lif(h, conv, bn)  # (TB, C', H, W) spikes
        pool_cache = None
        if pool:
            h, pool_cache = layers.maxpool_forward_unchecked(h, 3, 2, 1)  # (TB, C', H/2, W/2)
        stages.append(StageCache(conv_cache, unit_cache, pool_cache))
    r, rpe_conv_cache, rpe_unit_cache = conv_bn_lif(h, "rpe_conv", "rpe_bn")  # (TB, D, h, w)
    feat = h + r  # relative position embedding; (TB, D, h, w), values in {0, 1, 2}
    tokens = feat.reshape(T, B, cfg.dim, -1).transpose(0, 1, 3, 2)  # (T, B, N, D)
    units = [stage.unit for stage in stages] + [rpe_unit_cache]
    cache = SPSCache(
        tuple(stages),
        rpe_conv_cache,
        rpe_unit_cache,
        feat.shape,
        sum(u.spike_count for u in units),
        sum(u.neuron_count for u in units),
    )
    return np.ascontiguousarray(tokens), new_state, cache


def backward(dtokens: np.ndarray, cache: SPSCache) -> tuple[np.ndarray, dict]:
    """Backward of :func:`forward`: ``(dframes (T, B, C, H, W), grads)``, ``grads`` keyed like ``params``."""
    T, B, N, D = dtokens.shape
    grads = {}

    def conv_bn_lif_backward(ds, conv_cache, unit_cache, conv, bn):  # ds: (TB, C', H, W)
        dz, bn_grads = bnlif.backward_unchecked(ds.reshape((T, B) + ds.shape[1:]), unit_cache)  # (T, B, C', H, W)
        dh, grads[f"{conv}.weight"] = layers.conv_backward_unchecked(dz.reshape(ds.shape), conv_cache)  # (TB, C, H, W)
        grads.update(join(bn, bn_grads))
        return dh

    dfeat = dtokens.transpose(0, 1, 3, 2).reshape(cache.feat_shape)  # (TB, D, h, w)
    # forward was: feat = h + rpe(h), so now:
    dh = dfeat + conv_bn_lif_backward(dfeat, cache.rpe_conv, cache.rpe_unit, "rpe_conv", "rpe_bn")
    for conv, bn, stage in reversed(list(zip(CONVS, BNS, cache.stages))):
        if stage.pool is not None:
            dh = layers.maxpool_backward_unchecked(dh, stage.pool)  # (TB, C', H, W)
        dh = conv_bn_lif_backward(dh, stage.conv, stage.unit, conv, bn)  # (TB, C, H, W)
    return dh.reshape((T, B) + dh.shape[1:]), grads
