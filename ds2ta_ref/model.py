"""The DS2TA spiking vision transformer, end to end, with a hand-written
backward-through-time for every layer (SPEC §4).

    frames (T, B, C, H, W)  -- a static image is repeated T times (direct encoding)
    x = SPS(frames)                                  (T, B, N, D) spiking tokens
    for each block:  x = x + Attention(x)            DS2TA attention (TASA + NSAD)
                     x = x + MLP(x)                  LIF(BN(Linear)) twice
    logits = Linear(mean over time of mean over tokens of x)

With ``tasa=False`` and ``nsad=False`` this is Spikformer (and with
``decay_input=True`` it is Spikformer's computation number for number).

Public API:

* :func:`init_params` / :func:`init_state`: parameters and BatchNorm running
  statistics, keyed exactly by Spikformer's CIFAR ``state_dict`` names.
* :func:`forward` ``(params, state, x, cfg, *, training) -> (logits, new_state, cache)``
  and :func:`backward` ``(dlogits, cache) -> grads`` (same keys as ``params``).
* :func:`load_spikformer_npz`: a Spikformer checkpoint exported as ``.npz``.

Pure functions: nothing is mutated; the updated running statistics come back
as ``new_state``.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from . import attention, layers, nsad, sps
from ._checks import as_float_array
from .config import ModelConfig
from .units import Context, accumulate, bn_lif_backward, bn_lif_forward

__all__ = [
    "param_shapes", "state_shapes", "init_params", "init_state", "count_params",
    "forward", "backward", "ModelCache", "load_spikformer_npz",
]


# --------------------------------------------------------------------------- names and shapes
def _mlp_param_shapes(cfg: ModelConfig, prefix: str) -> dict[str, tuple]:
    D, Dh = cfg.dim, cfg.dim * cfg.mlp_ratio
    return {
        f"{prefix}.fc1_linear.weight": (Dh, D), f"{prefix}.fc1_linear.bias": (Dh,),
        f"{prefix}.fc1_bn.weight": (Dh,), f"{prefix}.fc1_bn.bias": (Dh,),
        f"{prefix}.fc2_linear.weight": (D, Dh), f"{prefix}.fc2_linear.bias": (D,),
        f"{prefix}.fc2_bn.weight": (D,), f"{prefix}.fc2_bn.bias": (D,),
    }


def param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """Every parameter's name and shape, in Spikformer's ``state_dict`` order."""
    shapes = sps.param_shapes(cfg)
    for i in range(cfg.depth):
        shapes.update(attention.param_shapes(cfg, f"block.{i}.attn"))
        shapes.update(_mlp_param_shapes(cfg, f"block.{i}.mlp"))
    shapes["head.weight"] = (cfg.num_classes, cfg.dim)
    shapes["head.bias"] = (cfg.num_classes,)
    return shapes


def _bn_names(cfg: ModelConfig) -> list[str]:
    names = sps.bn_names()
    for i in range(cfg.depth):
        names += attention.bn_names(f"block.{i}.attn")
        names += [f"block.{i}.mlp.fc1_bn", f"block.{i}.mlp.fc2_bn"]
    return names


def state_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """BatchNorm running statistics (state, not parameters), with Spikformer's names."""
    shapes = param_shapes(cfg)
    out = {}
    for bn in _bn_names(cfg):
        out[f"{bn}.running_mean"] = shapes[f"{bn}.weight"]
        out[f"{bn}.running_var"] = shapes[f"{bn}.weight"]
        out[f"{bn}.num_batches_tracked"] = ()
    return out


def count_params(params_or_cfg) -> int:
    """Number of parameters of a parameter dict or of a config."""
    if isinstance(params_or_cfg, ModelConfig):
        return int(sum(np.prod(s, dtype=np.int64) for s in param_shapes(params_or_cfg).values()))
    return int(sum(np.size(v) for v in params_or_cfg.values()))


# --------------------------------------------------------------------------- initialization
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
        elif name.endswith(".tau") or name.endswith(".proj_tau"):
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


# --------------------------------------------------------------------------- MLP
class MLPCache(NamedTuple):
    fc1: object
    unit1: object
    fc2: object
    unit2: object


def mlp_forward(x: np.ndarray, ctx: Context, prefix: str) -> tuple[np.ndarray, MLPCache]:
    """``LIF(BN(fc2(LIF(BN(fc1(x))))))`` on ``(T, B, N, D)``."""
    p = ctx.params
    z1, fc1 = layers.linear_forward(x, p[f"{prefix}.fc1_linear.weight"], p[f"{prefix}.fc1_linear.bias"])  # (T, B, N, 4D)
    s1, unit1 = bn_lif_forward(z1, f"{prefix}.fc1_bn", ctx, axis=-1, time_shape=z1.shape)
    z2, fc2 = layers.linear_forward(s1, p[f"{prefix}.fc2_linear.weight"], p[f"{prefix}.fc2_linear.bias"])  # (T, B, N, D)
    s2, unit2 = bn_lif_forward(z2, f"{prefix}.fc2_bn", ctx, axis=-1, time_shape=z2.shape)
    return s2, MLPCache(fc1, unit1, fc2, unit2)


def mlp_backward(dout: np.ndarray, cache: MLPCache, prefix: str, grads: dict) -> np.ndarray:
    dz2 = bn_lif_backward(dout, cache.unit2, f"{prefix}.fc2_bn", grads)
    ds1, dw, db = layers.linear_backward(dz2, cache.fc2)
    accumulate(grads, f"{prefix}.fc2_linear.weight", dw)
    accumulate(grads, f"{prefix}.fc2_linear.bias", db)
    dz1 = bn_lif_backward(ds1, cache.unit1, f"{prefix}.fc1_bn", grads)
    dx, dw, db = layers.linear_backward(dz1, cache.fc1)
    accumulate(grads, f"{prefix}.fc1_linear.weight", dw)
    accumulate(grads, f"{prefix}.fc1_linear.bias", db)
    return dx


# --------------------------------------------------------------------------- whole model
class ModelCache(NamedTuple):
    cfg: ModelConfig
    batch: int
    param_names: tuple
    param_dtypes: dict
    sps: object
    blocks: list  # [(attention cache, mlp cache)] per block
    mean_tokens: object
    mean_time: object
    head: object
    attention_maps: list  # the (denoised) attention map A of each block, (T, B, H, N, N)


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
        f"got shape {x.shape}")


def _check_params(params: dict, state: dict, cfg: ModelConfig) -> None:
    problems = _mismatches(params, param_shapes(cfg))
    if problems:
        raise ValueError("params do not match the config: " + "; ".join(problems))
    missing = sorted(set(k for k in state_shapes(cfg) if not k.endswith("num_batches_tracked")) - set(state))
    if missing:
        raise ValueError(f"state is missing BatchNorm statistics: {missing}")


def forward(params: dict, state: dict, x: np.ndarray, cfg: ModelConfig, *, training: bool,
            smooth: bool = False) -> tuple[np.ndarray, dict, ModelCache]:
    """Run the model.

    Args:
        params: from :func:`init_params` (float32 or float64; the model computes in
            the dtype of ``head.weight``).
        state: BatchNorm running statistics, from :func:`init_state`.
        x: static images ``(B, C, H, W)`` (repeated over ``T`` steps) or time-major
            event frames ``(T, B, C, H, W)``.
        cfg: the model configuration.
        training: BatchNorm uses batch statistics of the flattened ``T*B`` batch and
            updates the running statistics (True), or uses the running statistics (False).
        smooth: gradient-check mode (smooth spikes, NSAD without rounding or hard
            gate, TASA with continuous ``tau``); never for training.

    Returns:
        ``(logits, new_state, cache)``: logits ``(B, classes)``; the updated
        running statistics (equal to ``state`` in eval mode); the cache for
        :func:`backward`, which also holds the attention maps (``cache.attention_maps``) for sparsity measurements.
    """
    _check_params(params, state, cfg)
    dtype = params["head.weight"].dtype
    frames = _frames(x, cfg, dtype)  # (T, B, C, H, W)
    ctx = Context(cfg, params, state, training, smooth)
    h, sps_cache = sps.forward(frames, ctx)  # (T, B, N, D)
    blocks, maps = [], []
    for i in range(cfg.depth):
        a, attn_cache = attention.forward(h, ctx, f"block.{i}.attn")
        h = h + a  # additive residual: an integer-valued stream
        m, mlp_cache = mlp_forward(h, ctx, f"block.{i}.mlp")
        h = h + m
        blocks.append((attn_cache, mlp_cache))
        maps.append(attn_cache.A)
    pooled, mean_tokens = layers.mean_forward(h, axis=2)  # (T, B, D)
    pooled, mean_time = layers.mean_forward(pooled, axis=0)  # (B, D)
    logits, head = layers.linear_forward(pooled, params["head.weight"], params["head.bias"])  # (B, classes)
    new_state = dict(state)
    new_state.update(ctx.new_state)
    cache = ModelCache(cfg, logits.shape[0], tuple(params), {k: v.dtype for k, v in params.items()}, sps_cache, blocks,
                       mean_tokens, mean_time, head, maps)
    return logits, new_state, cache


def backward(dlogits: np.ndarray, cache: ModelCache) -> dict[str, np.ndarray]:
    """Backward of :func:`forward`: gradients of the loss w.r.t. every parameter.

    Args:
        dlogits: ``(B, classes)``, e.g. from :func:`ds2ta_ref.layers.cross_entropy`.
        cache: from :func:`forward`.

    Returns:
        A dict with exactly the keys of ``params``, each gradient shaped like its parameter.
    """
    cfg = cache.cfg
    dlogits = as_float_array(dlogits, "dlogits")
    if dlogits.shape != (cache.batch, cfg.num_classes):
        raise ValueError(f"dlogits must have shape {(cache.batch, cfg.num_classes)} (the forward's logits), "
                         f"got {dlogits.shape}")
    grads: dict[str, np.ndarray] = {}
    dpooled, dw, db = layers.linear_backward(dlogits, cache.head)
    accumulate(grads, "head.weight", dw)
    accumulate(grads, "head.bias", db)
    dh = layers.mean_backward(dpooled, cache.mean_time)  # (T, B, D)
    dh = layers.mean_backward(dh, cache.mean_tokens)  # (T, B, N, D)
    for i in reversed(range(cfg.depth)):
        attn_cache, mlp_cache = cache.blocks[i]
        # forward was: h1 = h0 + attn(h0); h2 = h1 + mlp(h1)
        dh = dh + mlp_backward(dh, mlp_cache, f"block.{i}.mlp", grads)
        dh = dh + attention.backward(dh, attn_cache, cfg, f"block.{i}.attn", grads)
    sps.backward(dh, cache.sps, grads)
    return {name: np.asarray(grads[name], dtype=cache.param_dtypes[name]) for name in cache.param_names}


# --------------------------------------------------------------------------- checkpoints
def _mismatches(arrays: dict, expected: dict) -> list[str]:
    """Every missing, unexpected and mis-shaped entry, by name."""
    problems = [f"missing {name!r} (expected shape {shape})" for name, shape in expected.items() if name not in arrays]
    problems += [f"unexpected {name!r}" for name in arrays if name not in expected]
    problems += [f"{name!r} has shape {tuple(np.shape(arrays[name]))}, expected {shape}"
                 for name, shape in expected.items()
                 if name in arrays and tuple(np.shape(arrays[name])) != tuple(shape)]
    return problems


_UNUSED = re.compile(r"^block\.\d+\.norm[12]\.(weight|bias)$")  # LayerNorms Spikformer builds but never uses
_DVS_NAME = re.compile(r"^(block\.\d+\.(?:attn\.(?:q|k|v|proj)|mlp\.fc[12]))_conv\.(weight|bias)$")


def translate_spikformer_names(arrays: dict) -> dict:
    """Spikformer ``state_dict`` arrays to this package's names.

    Drops the unused ``norm1``/``norm2`` LayerNorms, and maps the DVS code's 1x1
    ``Conv1d`` layers (``q_conv``, ..., ``fc2_conv``, weights ``(out, in, 1)``) to
    the CIFAR code's ``*_linear`` names with ``(out, in)`` weights.
    """
    out = {}
    for name, value in arrays.items():
        if _UNUSED.match(name):
            continue
        m = _DVS_NAME.match(name)
        if m:
            name = f"{m.group(1)}_linear.{m.group(2)}"
            if m.group(2) == "weight" and value.ndim == 3 and value.shape[-1] == 1:
                value = value[..., 0]
        out[name] = value
    return out


def load_spikformer_npz(path, cfg: ModelConfig, *, fill_ds2ta: bool = True,
                        dtype=np.float64) -> tuple[dict, dict]:
    """Load a Spikformer checkpoint exported as ``.npz`` (``state_dict`` key -> array).

    Export it from PyTorch with
    ``np.savez(path, **{k: v.cpu().numpy() for k, v in model.state_dict().items()})``.
    Every name and shape is validated; all mismatches are reported together,
    each by name. ``norm1``/``norm2`` are ignored; DVS names are translated (see
    :func:`translate_spikformer_names`). With ``fill_ds2ta`` the DS2TA
    parameters a Spikformer checkpoint lacks (``attn.tau``, ``attn.nsad``) are
    set to their initial values from ``cfg``.

    Returns:
        ``(params, state)`` as :func:`forward` takes them.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"path {str(path)!r} is not a readable .npz checkpoint: {exc}") from None
    arrays = translate_spikformer_names(arrays)
    state_keys = state_shapes(cfg)
    params = {k: v for k, v in arrays.items() if k not in state_keys}
    state = {k: v for k, v in arrays.items() if k in state_keys}
    if fill_ds2ta:
        defaults = init_params(cfg, np.random.default_rng(0))
        for name in defaults:
            if name.endswith((".tau", ".proj_tau", ".nsad")) and name not in params:
                params[name] = defaults[name]
    problems = _mismatches(params, param_shapes(cfg))
    state_expected = {k: s for k, s in state_keys.items() if not k.endswith("num_batches_tracked")}
    problems += _mismatches({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
                            state_expected)
    if problems:
        raise ValueError(f"checkpoint {str(path)!r} does not match the config: " + "; ".join(problems))
    params = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    full_state = init_state(cfg, dtype=dtype)
    for k, v in state.items():
        full_state[k] = np.asarray(v, dtype=np.int64 if k.endswith("num_batches_tracked") else dtype)
    return params, full_state
