"""Spiking patch splitting (SPS): the convolutional stem that turns an image
into spiking tokens, with Spikformer's relative-position branch (SPEC §4).

CIFAR variant (32x32 input, embedding D)::

    Conv3x3(C -> D/8)  BN LIF
    Conv3x3(D/8 -> D/4) BN LIF
    Conv3x3(D/4 -> D/2) BN LIF MaxPool(3, 2, 1)
    Conv3x3(D/2 -> D)   BN LIF MaxPool(3, 2, 1)      -> (H/4) x (W/4) tokens
    x = x + LIF(BN(Conv3x3(D -> D)(x)))                relative position embedding

The DVS variant puts ``MaxPool(3, 2, 1)`` after every one of the four stages
(128x128 -> 8x8). Convolutions have no bias and padding 1. The first
convolution sees the analog image (direct encoding) and its LIF is the encoder.
Parameter names are those of Spikformer's ``patch_embed`` module.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import layers
from .config import ModelConfig
from .units import Context, accumulate, bn_lif_backward, bn_lif_forward

CONVS = ("proj_conv", "proj_conv1", "proj_conv2", "proj_conv3")
BNS = ("proj_bn", "proj_bn1", "proj_bn2", "proj_bn3")


def channels(cfg: ModelConfig) -> list[int]:
    """Channels into and out of the four stages: ``[C, D/8, D/4, D/2, D]``."""
    return [cfg.in_channels, cfg.dim // 8, cfg.dim // 4, cfg.dim // 2, cfg.dim]


def pooled(cfg: ModelConfig) -> tuple[bool, ...]:
    """Which of the four stages end with a max-pool."""
    return (False, False, True, True) if cfg.sps == "cifar" else (True, True, True, True)


def param_shapes(cfg: ModelConfig, prefix: str = "patch_embed") -> dict[str, tuple]:
    ch = channels(cfg)
    shapes = {}
    for i, (conv, bn) in enumerate(zip(CONVS, BNS)):
        shapes[f"{prefix}.{conv}.weight"] = (ch[i + 1], ch[i], 3, 3)
        shapes[f"{prefix}.{bn}.weight"] = (ch[i + 1],)
        shapes[f"{prefix}.{bn}.bias"] = (ch[i + 1],)
    shapes[f"{prefix}.rpe_conv.weight"] = (cfg.dim, cfg.dim, 3, 3)
    shapes[f"{prefix}.rpe_bn.weight"] = (cfg.dim,)
    shapes[f"{prefix}.rpe_bn.bias"] = (cfg.dim,)
    return shapes


def bn_names(prefix: str = "patch_embed") -> list[str]:
    return [f"{prefix}.{bn}" for bn in BNS] + [f"{prefix}.rpe_bn"]


class StageCache(NamedTuple):
    conv: object
    unit: object
    pool: object  # None when the stage has no max-pool


class SPSCache(NamedTuple):
    stages: list
    rpe_conv: object
    rpe_unit: object
    feat_shape: tuple  # (TB, D, h, w)


def forward(x: np.ndarray, ctx: Context, prefix: str = "patch_embed") -> tuple[np.ndarray, SPSCache]:
    """Image frames ``x`` of shape ``(T, B, C, H, W)`` to tokens ``(T, B, N, D)``."""
    p = ctx.params
    T, B = x.shape[:2]
    h = x.reshape((T * B,) + x.shape[2:])  # (TB, C, H, W)
    stages = []
    for conv, bn, pool in zip(CONVS, BNS, pooled(ctx.cfg)):
        z, conv_cache = layers.conv_forward(h, p[f"{prefix}.{conv}.weight"])  # (TB, C', H', W')
        s, unit_cache = bn_lif_forward(z, f"{prefix}.{bn}", ctx, axis=1, time_shape=(T, B) + z.shape[1:])
        h = s.reshape(z.shape)  # (TB, C', H', W') spikes
        pool_cache = None
        if pool:
            h, pool_cache = layers.maxpool_forward(h, kernel=3, stride=2, padding=1)
        stages.append(StageCache(conv_cache, unit_cache, pool_cache))
    # relative position embedding: x = x + LIF(BN(Conv(x)))
    z, rpe_conv_cache = layers.conv_forward(h, p[f"{prefix}.rpe_conv.weight"])  # (TB, D, h, w)
    r, rpe_unit_cache = bn_lif_forward(z, f"{prefix}.rpe_bn", ctx, axis=1, time_shape=(T, B) + z.shape[1:])
    feat = h + r.reshape(h.shape)  # (TB, D, h, w), values in {0, 1, 2}
    TB, D, hh, ww = feat.shape
    tokens = feat.reshape(T, B, D, hh * ww).transpose(0, 1, 3, 2)  # (T, B, N, D)
    return np.ascontiguousarray(tokens), SPSCache(stages, rpe_conv_cache, rpe_unit_cache, feat.shape)


def backward(dtokens: np.ndarray, cache: SPSCache, grads: dict, prefix: str = "patch_embed") -> np.ndarray:
    """Backward of :func:`forward`: accumulates parameter gradients into ``grads``,
    returns the gradient w.r.t. the frames ``(T, B, C, H, W)``."""
    T, B, N, D = dtokens.shape
    TB, _, hh, ww = cache.feat_shape
    dfeat = dtokens.transpose(0, 1, 3, 2).reshape(cache.feat_shape)  # (TB, D, h, w)
    # forward was: feat = h + LIF(BN(conv(h)))
    dz = bn_lif_backward(dfeat.reshape((T, B) + dfeat.shape[1:]), cache.rpe_unit, f"{prefix}.rpe_bn", grads)
    dh_rpe, dw = layers.conv_backward(dz, cache.rpe_conv)
    accumulate(grads, f"{prefix}.rpe_conv.weight", dw)
    dh = dfeat + dh_rpe
    for conv, bn, stage in reversed(list(zip(CONVS, BNS, cache.stages))):
        if stage.pool is not None:
            dh = layers.maxpool_backward(dh, stage.pool)
        dz = bn_lif_backward(dh.reshape((T, B) + dh.shape[1:]), stage.unit, f"{prefix}.{bn}", grads)
        dh, dw = layers.conv_backward(dz, stage.conv)
        accumulate(grads, f"{prefix}.{conv}.weight", dw)
    return dh.reshape((T, B) + dh.shape[1:])
