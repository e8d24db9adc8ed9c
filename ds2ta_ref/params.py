"""Parameter and BatchNorm-state names, shapes and initialization of the whole model.

Full names are Spikformer's CIFAR ``state_dict`` names, built by joining each
block's short names to its prefix (the only place prefixes exist)::

    patch_embed.<sps name>        e.g. patch_embed.proj_conv.weight
    block.{i}.attn.<attention>    e.g. block.0.attn.q_linear.weight, block.0.attn.tau
    block.{i}.mlp.<mlp name>      e.g. block.0.mlp.fc1_bn.bias
    head.weight, head.bias

plus DS2TA's ``block.{i}.attn.tau`` (and ``proj_tau``) and ``block.{i}.attn.nsad``.
BatchNorm running statistics (``*.running_mean``, ``*.running_var``,
``*.num_batches_tracked``) are state, not parameters. :func:`validate` (from
:mod:`~ds2ta_ref.names`, re-exported here) is the one name-and-shape check used by
the model, the checkpoint loader, the Spikformer import and the optimizer.

In the module graph this sits above the blocks (it asks each block for its
shapes) and below the model; it does no file I/O.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from . import attention, mlp, nsad, sps
from .config import ModelConfig
from .names import checked_block_inputs, join, sub, validate

__all__ = [
    "sub",
    "join",
    "blocks",
    "param_shapes",
    "state_shapes",
    "trainable",
    "init_params",
    "init_state",
    "count_params",
    "validate",
    "checked_block_inputs",
]


def blocks(cfg: ModelConfig) -> list[tuple[str, Any]]:
    """``(prefix, module)`` of every block in forward order (the head is separate)."""
    out = [("patch_embed", sps)]
    for i in range(cfg.depth):
        out += [(f"block.{i}.attn", attention), (f"block.{i}.mlp", mlp)]
    return out


def param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Every parameter's full name and shape, in Spikformer's ``state_dict`` order."""
    shapes = {}
    for prefix, module in blocks(cfg):
        shapes.update(join(prefix, module.param_shapes(cfg)))
    shapes["head.weight"] = (cfg.num_classes, cfg.dim)
    shapes["head.bias"] = (cfg.num_classes,)
    return shapes


def state_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Every BatchNorm running statistic's full name and shape."""
    shapes = {}
    for prefix, module in blocks(cfg):
        shapes.update(join(prefix, module.state_shapes(cfg)))
    return shapes


def trainable(cfg: ModelConfig) -> list[str]:
    """The parameters that receive gradients: all of them but a frozen ``tau``
    (``frozen_tau=True``), which :func:`ds2ta_ref.model.backward` leaves out and
    no optimizer may change."""
    frozen = re.compile(r"\.(proj_)?tau$") if cfg.frozen_tau else None
    return [name for name in param_shapes(cfg) if not (frozen and frozen.search(name))]


def count_params(params_or_cfg) -> int:
    """Number of parameters of a parameter dict or of a config."""
    if isinstance(params_or_cfg, ModelConfig):
        return int(sum(np.prod(s, dtype=np.int64) for s in param_shapes(params_or_cfg).values()))
    return int(sum(np.size(v) for v in params_or_cfg.values()))


def _trunc_normal(rng, shape, std=0.02, a=-2.0, b=2.0):
    """timm's ``trunc_normal_(std=0.02)``: normal with std ``std``, redrawn outside ``[a, b]``."""
    x = rng.standard_normal(shape) * std
    bad = (x < a) | (x > b)
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum())) * std
        bad = (x < a) | (x > b)
    return x


def init_params(cfg: ModelConfig, rng: np.random.Generator, *, dtype=np.float64) -> dict[str, np.ndarray]:
    """Spikformer's initialization, plus DS2TA's ``tau`` and NSAD parameters.

    Linear weights: truncated normal, std 0.02, biases 0 (timm ``trunc_normal_``).
    Convolutions: PyTorch's default, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    BatchNorm: weight 1, bias 0. ``tau = tau0``; NSAD: :func:`ds2ta_ref.nsad.init_params`.
    Parameters are drawn in ``state_dict`` order from ``rng``.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    params = {}
    for name, shape in param_shapes(cfg).items():
        if len(shape) == 4:  # convolution weights (C_out, C_in, 3, 3)
            bound = 1.0 / np.sqrt(np.prod(shape[1:]))
            value = rng.uniform(-bound, bound, size=shape)
        elif name.endswith(("_linear.weight", "head.weight")):
            value = _trunc_normal(rng, shape)
        elif re.search(r"_bn\d*\.weight$", name):  # proj_bn, proj_bn1, ..., q_bn
            value = np.ones(shape)
        elif name.endswith((".tau", ".proj_tau")):
            value = np.array(cfg.tau0)
        elif name.endswith(".nsad"):
            value = nsad.init_params(cfg.heads, cfg.u0)
        else:  # biases
            value = np.zeros(shape)
        params[name] = np.asarray(value, dtype=dtype)
    return params


def init_state(cfg: ModelConfig, *, dtype=np.float64) -> dict[str, np.ndarray]:
    """BatchNorm running statistics as PyTorch initializes them: mean 0, var 1, count 0."""
    state = {}
    for name, shape in state_shapes(cfg).items():
        if name.endswith("num_batches_tracked"):
            state[name] = np.array(0, dtype=np.int64)
        else:
            state[name] = (np.zeros if name.endswith("mean") else np.ones)(shape, dtype=dtype)
    return state
