"""The DS2TA spiking vision transformer, end to end (docs/spec.md §4.7)::

    frames (T, B, C, H, W)  -- a static image is repeated T times (direct encoding)
    x = SPS(frames)                                  (T, B, N, D) spiking tokens
    for each block:  x = x + Attention(x)            DS2TA attention (TASA + NSAD)
                     x = x + MLP(x)                  LIF(BN(Linear)) twice
    logits = Linear(mean over time of mean over tokens of x)

With ``tasa=False`` and ``nsad=False`` this is Spikformer (and with
``decay_input=True`` it is Spikformer's computation number for number).

This module only assembles the blocks (:mod:`~ds2ta_ref.sps`,
:mod:`~ds2ta_ref.attention`, :mod:`~ds2ta_ref.mlp`), each a pure pair
``forward(x, params, state, cfg, *, training, smooth) -> (out, new_state, cache)`` /
``backward(dout, cache) -> (dx, grads)`` with short parameter names; the
prefixes of the full names are joined here and nowhere else. Names, shapes and
initialization live in :mod:`~ds2ta_ref.params`.

Public API, the blocks' contract at the top too: :func:`forward`
``(x, params, state, cfg, *, training) -> (logits, new_state, cache)`` and :func:`backward`
``(dlogits, cache) -> (dx, grads)``. The model checks its inputs once
(:func:`ds2ta_ref.names.checked_block_inputs`) and runs the blocks' ``forward_unchecked``.

The old argument order ``forward(params, state, x, cfg, ...)`` (a dict first) still works
with a ``DeprecationWarning``; ``ds2ta_ref.model_backward`` (the package's old top-level
name) still returns ``grads`` alone, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from . import attention, layers, mlp, sps
from ._checks import as_float_array
from .config import ModelConfig
from .names import checked_block_inputs, join, sub, validate
from .params import count_params, init_params, init_state, param_shapes, state_shapes, trainable

__all__ = [
    "forward",
    "backward",
    "backward_grads",
    "ModelCache",
    "ForwardRecord",
    # re-exported from ds2ta_ref.params
    "param_shapes",
    "state_shapes",
    "init_params",
    "init_state",
    "count_params",
    "trainable",
]


class ForwardRecord(NamedTuple):
    """What a forward measures besides the logits (kept even without backward caches)."""

    attention_maps: list  # per block, the (denoised) map A, (T, B, H, N, N)
    scores: list  # per block, the raw score map S = q k^T, (T, B, H, N, N)
    spike_count: float  # spikes of every LIF neuron over every time step
    neuron_count: int  # LIF neurons times time steps

    @property
    def firing_rate(self) -> float:
        return self.spike_count / max(self.neuron_count, 1)


class ModelCache(NamedTuple):
    """Kept: every block's cache (None with ``need_backward=False``) and the record."""

    cfg: ModelConfig
    trainable: tuple  # the names backward returns gradients for
    dtype: np.dtype
    batch: int
    static: bool  # x was static images (B, C, H, W), repeated T times: dx sums over time
    sps: sps.SPSCache | None
    blocks: list | None  # [(AttentionCache, MLPCache)] per block, or None
    mean_tokens: layers.MeanCache | None
    mean_time: layers.MeanCache | None
    head: layers.LinearCache | None
    record: ForwardRecord

    @property
    def attention_maps(self) -> list:
        """Per block, the (denoised) attention map ``A`` ``(T, B, H, N, N)`` (``record.attention_maps``)."""
        return self.record.attention_maps


def _frames(x, cfg: ModelConfig, dtype) -> np.ndarray:
    """Validate the input and return time-major frames ``(T, B, C, H, W)``."""
    x = as_float_array(x, "x")
    expected = (cfg.in_channels, cfg.img_size, cfg.img_size)
    if x.ndim == 4 and x.shape[1:] == expected:
        return np.broadcast_to(x.astype(dtype, copy=False), (cfg.T,) + x.shape)  # repeat T times
    if x.ndim == 5 and x.shape[0] == cfg.T and x.shape[2:] == expected:
        return x.astype(dtype, copy=False)
    raise ValueError(
        f"x must be static images (B, {cfg.in_channels}, {cfg.img_size}, {cfg.img_size}) or time-major "
        f"frames ({cfg.T}, B, {cfg.in_channels}, {cfg.img_size}, {cfg.img_size}) for this config, "
        f"got shape {x.shape}"
    )


def forward(
    x: np.ndarray,
    params: dict,
    state: dict,
    cfg: ModelConfig,
    *,
    training: bool,
    smooth: bool = False,
    need_backward: bool = True,
) -> tuple[np.ndarray, dict, ModelCache]:
    """Run the model.

    Args:
        x: static images ``(B, C, H, W)`` (repeated over ``T`` steps) or time-major
            event frames ``(T, B, C, H, W)``.
        params: from :func:`init_params` (float32 or float64; the model computes in
            the dtype of ``head.weight``).
        state: BatchNorm running statistics, from :func:`init_state`.
        cfg: the model configuration.
        training: BatchNorm uses batch statistics of the flattened ``T*B`` batch and
            updates the running statistics (True), or uses the running statistics (False).
        smooth: gradient-check mode (smooth spikes, NSAD without rounding or hard
            gate, TASA with continuous ``tau``); never for training.
        need_backward: keep the caches :func:`backward` needs (False: only
            ``cache.record``, for evaluation).

    Returns:
        ``(logits, new_state, cache)``: logits ``(B, classes)``; the updated
        running statistics (equal to ``state`` in eval mode); the cache for
        :func:`backward`, whose ``record`` holds the attention maps and spike counts.

    The old order ``forward(params, state, x, cfg, ...)`` (a dict first) is accepted with a
    ``DeprecationWarning``.
    """
    if isinstance(x, Mapping):  # the old order (params, state, x, cfg)
        warnings.warn(
            "model.forward(params, state, x, cfg, ...) is deprecated: call "
            "model.forward(x, params, state, cfg, ...), the order of every block",
            DeprecationWarning,
            stacklevel=2,
        )
        x, params, state = state, x, params  # type: ignore[assignment]  # the old order, reordered
    validate(params, param_shapes(cfg), what="params")
    dtype = as_float_array(params["head.weight"], "params['head.weight']").dtype
    frames = _frames(x, cfg, dtype)  # (T, B, C, H, W)
    # checked once here: every block below runs its unchecked core
    _, params, state = checked_block_inputs(
        None, params, state, param_shapes(cfg), state_shapes(cfg), what="", dtype=dtype
    )
    keep: Any = (lambda c: c) if need_backward else (lambda c: None)
    new_state, blocks, maps, scores = {}, [], [], []

    h, block_state, sps_cache = sps.forward_unchecked(
        frames, sub(params, "patch_embed"), sub(state, "patch_embed"), cfg, training=training, smooth=smooth
    )  # (T, B, N, D)
    new_state.update(join("patch_embed", block_state))
    spikes, neurons = sps_cache.spike_count, sps_cache.neuron_count
    sps_cache = keep(sps_cache)  # without backward, the im2col columns etc. are freed here
    for i in range(cfg.depth):
        attn, mlp_ = f"block.{i}.attn", f"block.{i}.mlp"
        a, block_state, attn_cache = attention.forward_unchecked(
            h, sub(params, attn), sub(state, attn), cfg, training=training, smooth=smooth
        )  # (T, B, N, D)
        new_state.update(join(attn, block_state))
        h = h + a  # additive residual: an integer-valued stream
        m, block_state, mlp_cache = mlp.forward_unchecked(
            h, sub(params, mlp_), sub(state, mlp_), cfg, training=training, smooth=smooth
        )  # (T, B, N, D)
        new_state.update(join(mlp_, block_state))
        h = h + m
        maps.append(attn_cache.A)
        scores.append(attn_cache.scores)
        spikes += attn_cache.spike_count + mlp_cache.spike_count
        neurons += attn_cache.neuron_count + mlp_cache.neuron_count
        blocks.append(keep((attn_cache, mlp_cache)))
    pooled, mean_tokens = layers.mean_forward(h, axis=2)  # (T, B, D)
    pooled, mean_time = layers.mean_forward(pooled, axis=0)  # (B, D)
    logits, head = layers.linear_forward_unchecked(pooled, params["head.weight"], params["head.bias"])  # (B, classes)

    record = ForwardRecord(maps, scores, spikes, neurons)
    cache = ModelCache(
        cfg,
        tuple(trainable(cfg)),
        dtype,
        logits.shape[0],
        np.ndim(x) == 4,
        sps_cache,
        blocks if need_backward else None,
        keep(mean_tokens),
        keep(mean_time),
        keep(head),
        record,
    )
    return logits, new_state, cache


def backward(dlogits: np.ndarray, cache: ModelCache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Backward of :func:`forward`: ``(dx, grads)``, like every block.

    Args:
        dlogits: ``(B, classes)``, e.g. from :func:`ds2ta_ref.layers.cross_entropy`.
        cache: from :func:`forward` with ``need_backward=True``.

    Returns:
        ``dx``: the gradient w.r.t. the forward's ``x``, shaped like it (static images:
        the sum over the ``T`` repeated frames); ``grads``: a dict with the keys of
        ``params`` (less a frozen ``tau``, see :func:`ds2ta_ref.params.trainable`), each
        gradient shaped like its parameter. Both in the model's dtype.
    """
    cfg = cache.cfg
    if cache.head is None or cache.blocks is None or cache.sps is None:
        raise ValueError("cache was made with need_backward=False: run forward with need_backward=True")
    dlogits = as_float_array(dlogits, "dlogits")
    if dlogits.shape != (cache.batch, cfg.num_classes):
        raise ValueError(
            f"dlogits must have shape {(cache.batch, cfg.num_classes)} (the forward's logits), got {dlogits.shape}"
        )
    grads = {}
    # forward was: logits = head(mean_time(mean_tokens(h))), so now:
    dpooled, grads["head.weight"], grads["head.bias"] = layers.linear_backward_unchecked(
        dlogits.astype(cache.dtype, copy=False), cache.head
    )  # (B, D)
    dh = layers.mean_backward(dpooled, cache.mean_time)  # type: ignore[arg-type]  # (T, B, D); kept with head
    dh = layers.mean_backward(dh, cache.mean_tokens)  # type: ignore[arg-type]  # (T, B, N, D)
    for i in reversed(range(cfg.depth)):
        attn_cache, mlp_cache = cache.blocks[i]
        # forward was: h1 = h0 + attn(h0); h2 = h1 + mlp(h1), so now:
        dm, block_grads = mlp.backward(dh, mlp_cache)
        grads.update(join(f"block.{i}.mlp", block_grads))
        dh += dm  # in place: dh is this function's own array (a fresh one from mean_backward)
        da, block_grads = attention.backward(dh, attn_cache)
        grads.update(join(f"block.{i}.attn", block_grads))
        dh += da
    dframes, block_grads = sps.backward(dh, cache.sps)  # (T, B, C, H, W)
    grads.update(join("patch_embed", block_grads))
    # forward was: frames = x repeated T times (static images), so now: sum over time
    dx = dframes.sum(axis=0) if cache.static else dframes
    return np.asarray(dx, dtype=cache.dtype), {
        name: np.asarray(grads[name], dtype=cache.dtype) for name in cache.trainable
    }


def backward_grads(dlogits: np.ndarray, cache: ModelCache) -> dict[str, np.ndarray]:
    """The old top-level contract ``ds2ta_ref.model_backward(dlogits, cache) -> grads``, deprecated:
    use :func:`backward`, which returns ``(dx, grads)``."""
    warnings.warn(
        "ds2ta_ref.model_backward(dlogits, cache) -> grads is deprecated: call "
        "ds2ta_ref.model.backward(dlogits, cache), which returns (dx, grads) like every block",
        DeprecationWarning,
        stacklevel=2,
    )
    return backward(dlogits, cache)[1]
