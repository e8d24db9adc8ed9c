"""Building and writing a golden file: the draws, one training step, the kernels alone (docs/golden.md).

:func:`build` ``(cfg, *, seed, batch)`` returns the arrays of a golden file and
:func:`write` writes them (atomically, byte for byte deterministic). The draws
(:class:`Draws`) make rounding and gates matter: every linear bias non-zero,
one LIF input exactly on the threshold, an NSAD head with an integer ``u``
met by a score, another whose table entries are exact ``.5`` ties, a third
with negative entries; :mod:`ds2ta_ref.golden.suite` sets them per case.

The model is run in one place, :func:`_training_step`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import checkpoint, layers, lif, model, nsad, tasa
from .. import params as _params
from .. import surrogate as _surrogate
from ..config import ModelConfig
from ..gradcheck import lif_input_away_from_threshold
from .layout import FORMAT_VERSION, forward_order, kernels, stem_stages

__all__ = ["Draws", "build", "firing_rates", "write", "write_npz"]

# Sizes of the kernel sections (the model section takes its sizes from the config).
_KERNEL_BATCH = 2
_LIF_FEATURES = 6  # lif/in/x is (T, B, 6)
_TASA_TOKENS, _TASA_IN, _TASA_OUT = 3, 5, 4  # tasa/in/s is (T, B, 3, 5), weight (4, 5)
_NSAD_TOKENS = 4  # nsad/in/scores is (T, B, Hk, 4, 4)
_NSAD_MIN_HEADS = 3  # Hk = max(H, 3): the integer-u head, the ties head, the negative head


class Draws(NamedTuple):
    """How the random inputs of a golden file are drawn (defaults: those of ``ds2ta-ref golden``).

    BatchNorm affine parameters are drawn relative to the LIF's effective threshold
    ``theta_eff = v_threshold * (tau_m if decay_input else 1)`` (the BatchNorm output a resting
    neuron needs to fire at once): weights in ``bn_weight * theta_eff``, biases in
    ``bn_bias * theta_eff`` (``qkv_bn_bias`` for the q, k, v sites, whose rates set how much
    the attention LIF receives). ``None`` taus are drawn within 0.4 of ``max(tau0, 1)``.
    """

    kernel_tau: float | None = None  # tasa/in/tau
    model_tau: tuple[float | None, float | None] | None = None  # (tau, proj_tau) of every block
    bn_weight: tuple[float, float] = (1.0, 2.0)
    bn_bias: tuple[float, float] = (-0.2, 0.5)
    qkv_bn_bias: tuple[float, float] | None = None  # None: bn_bias
    linear_bias: float = 0.5  # every linear bias (and the head's) in [-linear_bias, linear_bias)
    nsad_a: tuple[float, float] = (0.5, 1.5)  # the model's NSAD slope a


# --------------------------------------------------------------------------- the kernels alone
def _lif_input(rng: np.random.Generator, shape: tuple, options: dict[str, Any]) -> np.ndarray:
    """A LIF input whose pre-reset membrane is at least 1e-3 from the threshold everywhere but at
    ``[0, 0, 0]``, where it is exactly on it (the Heaviside's tie: ``>=`` fires, ``>`` does not)."""
    theta = options["v_threshold"]
    on_threshold = theta * options["tau_m"] if options["decay_input"] else theta
    for _ in range(200):
        x = lif_input_away_from_threshold(rng, shape, **options)
        x[0, 0, 0] = on_threshold
        _, cache = lif.forward(x, **options)
        gap = np.abs(cache.h - theta)
        if cache.h[0, 0, 0] == theta and np.min(np.delete(gap.ravel(), 0)) > 1e-3:
            return x
    raise RuntimeError(f"could not draw a LIF input with one membrane exactly on the threshold {theta!r}")


def _nsad_kernel_params(rng: np.random.Generator, heads: int, head_dim: int) -> np.ndarray:
    """NSAD parameters ``(Hk, 6)`` (columns a, b, c, d, e, u), Hk >= 3, far from the identity:

    * head 0: ``u = 1`` exactly and ``round(g(1)) = 2``, so the strict gate ``1(s > u)`` differs
      from ``1(s >= u)`` wherever a score is 1;
    * head 1: ``g(s) = s / 2`` (``b = d = 0``), ``u = -0.5``: the table's odd entries are exact
      ``.5`` ties (half to even: 0, 2, 2, 4; half away from zero: 1, 2, 3, 4; floor: 0, 1, 2, 3);
    * head 2 and more: random, head 2 with a negative slope (negative table entries).
    """
    H = max(heads, _NSAD_MIN_HEADS)
    p = np.column_stack(
        [
            rng.uniform(0.5, 1.5, H),
            rng.uniform(-0.1, 0.1, H),
            rng.uniform(0, head_dim, H),
            rng.uniform(-1, 1, H),
            rng.uniform(0, head_dim, H),
            rng.uniform(0, head_dim / 3, H),
        ]
    )
    _, b, c, d, e, _ = p[0]
    p[0, 0] = 1.7 - b * (1 - c) ** 2 - d / (1 + np.exp(1 - e))  # g(1) = 1.7 (to rounding)
    p[0, 5] = 1.0
    p[1] = [0.5, 0.0, p[1, 2], 0.0, p[1, 4], -0.5]
    p[2, 0] = -rng.uniform(0.5, 1.0)
    return p


def _kernel_arrays(cfg: ModelConfig, rng: np.random.Generator, draws: Draws) -> dict[str, np.ndarray]:
    """The ``lif/``, ``tasa/`` and ``nsad/`` sections (those :func:`~.layout.kernels` lists), each kernel
    with the config's conventions."""
    T = max(cfg.T, cfg.window + 1, 4)  # the temporal carry and every TASA lag are exercised
    B = _KERNEL_BATCH
    out: dict[str, Any] = {}  # arrays, and the */options dicts (stored as JSON text below)
    sections = kernels(cfg)

    _, alpha = _surrogate.resolve(cfg.surrogate, cfg.alpha)
    lif_options: dict[str, Any] = dict(
        tau_m=cfg.tau_m,
        v_threshold=cfg.v_threshold,
        decay_input=cfg.decay_input,
        detach_reset=cfg.detach_reset,
        surrogate=cfg.surrogate,
        alpha=alpha,
    )
    x = _lif_input(rng, (T, B, _LIF_FEATURES), lif_options)  # (T, B, 6)
    dspikes = rng.standard_normal(x.shape)
    spikes, lif_cache = lif.forward(x, **lif_options)
    out.update(
        {
            "lif/options": lif_options,
            "lif/in/x": x,
            "lif/in/dspikes": dspikes,
            "lif/out/spikes": spikes,
            "lif/grad/x": lif.backward(dspikes, lif_cache),
        }
    )

    s = (rng.random((T, B, _TASA_TOKENS, _TASA_IN)) < 0.5).astype(np.float64)  # (T, B, N, D_in) spikes
    weight = rng.standard_normal((_TASA_OUT, _TASA_IN))
    bias = rng.standard_normal(_TASA_OUT)
    tau = _tau(rng, cfg) if draws.kernel_tau is None else np.array(float(draws.kernel_tau))
    dout = rng.standard_normal((T, B, _TASA_TOKENS, _TASA_OUT))
    if "tasa" in sections:
        y, tasa_cache = tasa.forward(s, weight, bias, tau=float(tau), window=cfg.window)
        ds, dweight, dbias, dtau = tasa.backward(dout, tasa_cache)
        out.update(
            {
                "tasa/options": {"window": cfg.window},
                "tasa/in/s": s,
                "tasa/in/weight": weight,
                "tasa/in/bias": bias,
                "tasa/in/tau": tau,
                "tasa/in/dout": dout,
                "tasa/out/out": y,
                "tasa/grad/s": ds,
                "tasa/grad/weight": dweight,
                "tasa/grad/bias": dbias,
                "tasa/grad/tau": np.array(dtau),
            }
        )

    d = cfg.head_dim
    params = _nsad_kernel_params(rng, cfg.heads, d)
    H = params.shape[0]
    scores = rng.integers(0, d + 1, (T, B, H, _NSAD_TOKENS, _NSAD_TOKENS)).astype(np.float64)
    scores[0, 0, 0, 0, 0] = 1.0  # head 0 meets its integer u
    scores[0, 0, 1, 0, 1] = 1.0  # head 1 meets its tie g(1) = 0.5
    dA = rng.standard_normal(scores.shape)
    if "nsad" in sections:
        nsad_options: dict[str, Any] = dict(
            head_dim=d, rounding=cfg.nsad_rounding, surrogate=cfg.surrogate, alpha=alpha
        )
        A, nsad_cache = nsad.forward(scores, params, **nsad_options)
        dscores, dparams = nsad.backward(dA, nsad_cache)
        out.update(
            {
                "nsad/options": nsad_options,
                "nsad/in/scores": scores,
                "nsad/in/params": params,
                "nsad/in/dA": dA,
                "nsad/out/table": nsad.hashmap(params, head_dim=d, rounding=cfg.nsad_rounding),
                "nsad/out/A": A,
                "nsad/grad/scores": dscores,
                "nsad/grad/params": dparams,
            }
        )
    return {k: (np.array(json.dumps(v)) if k.endswith("/options") else v) for k, v in out.items()}


# --------------------------------------------------------------------------- the model
def _tau(rng: np.random.Generator, cfg: ModelConfig) -> np.ndarray:
    """A ``tau`` within 0.4 of ``max(tau0, 1)``, so not an integer (rounding it matters) and ``>= 0.6``."""
    return np.array(max(cfg.tau0, 1.0) + rng.uniform(-0.4, 0.4))


def _model_inputs(cfg: ModelConfig, rng: np.random.Generator, batch: int, draws: Draws):
    """``(params, state, x, target)``: initial parameters with the draws of :class:`Draws`, U(0, 1) images."""
    params = _params.init_params(cfg, rng)
    theta_eff = cfg.v_threshold * (cfg.tau_m if cfg.decay_input else 1.0)
    for name, value in params.items():
        if "_bn" in name:  # proj_bn, proj_bn1, .., q_bn, fc1_bn
            qkv = any(f".{site}_bn." in name for site in "qkv")
            if name.endswith("weight"):
                low, high = draws.bn_weight
            elif qkv and draws.qkv_bn_bias is not None:
                low, high = draws.qkv_bn_bias
            else:
                low, high = draws.bn_bias
            params[name] = rng.uniform(low, high, value.shape) * theta_eff
        elif name.endswith("bias"):  # the linear maps' and the head's: non-zero, so a dropped bias shows
            params[name] = rng.uniform(-draws.linear_bias, draws.linear_bias, value.shape)
    x = rng.uniform(0, 1, size=(batch, cfg.in_channels, cfg.img_size, cfg.img_size))
    for i in range(cfg.depth):
        if cfg.tasa:
            taus = draws.model_tau or (None, None)
            params[f"block.{i}.attn.tau"] = _tau(rng, cfg) if taus[0] is None else np.array(float(taus[0]))
            if cfg.tau_per_site:
                params[f"block.{i}.attn.proj_tau"] = _tau(rng, cfg) if taus[1] is None else np.array(float(taus[1]))
        if cfg.nsad:
            H, d = cfg.heads, cfg.head_dim
            params[f"block.{i}.attn.nsad"] = np.column_stack(
                [
                    rng.uniform(*draws.nsad_a, H),
                    rng.uniform(-0.1, 0.1, H),
                    rng.uniform(0, d, H),
                    rng.uniform(-1, 1, H),
                    rng.uniform(0, d, H),
                    rng.uniform(0, d / 3, H),
                ]
            )
    target = rng.integers(0, cfg.num_classes, batch).astype(np.int64)
    return params, _params.init_state(cfg), x, target


def _training_step(params: dict, state: dict, x: np.ndarray, target: np.ndarray, cfg: ModelConfig):
    """One training-mode step of the reference: ``(logits, loss, new_state, grads, cache)``.

    The only place the golden files call :func:`ds2ta_ref.model.forward` and ``backward``.
    """
    logits, new_state, cache = model.forward(x, params, state, cfg, training=True)
    loss, dlogits = layers.cross_entropy(logits, target)
    _, grads = model.backward(dlogits, cache)
    return logits, loss, new_state, grads, cache


def _model_arrays(cfg: ModelConfig, rng: np.random.Generator, batch: int, draws: Draws) -> dict[str, np.ndarray]:
    """The model section: one training step's forward, loss and backward."""
    params, state, x, target = _model_inputs(cfg, rng, batch, draws)
    logits, loss, new_state, grads, cache = _training_step(params, state, x, target, cfg)
    T, B = cfg.T, batch

    out = {"input": x, "target": target}
    out.update({f"param/{k}": v for k, v in params.items()})
    out.update({f"state/{k}": v for k, v in state.items()})
    out.update({f"new_state/{k}": v for k, v in new_state.items()})
    units = [stage.unit for stage in cache.sps.stages] + [cache.sps.rpe_unit]
    for name, unit in zip(stem_stages(cfg), units):  # (T, B, C', S', S') spikes, before the max-pool
        out[f"act/patch_embed.{name}"] = unit.lif.s_reset.reshape((T, B) + unit.lif.s_reset.shape[-3:])
    out["act/patch_embed.out"] = cache.blocks[0][0].sites["q"].tasa.s  # the first block's input: the tokens
    for i, (ac, mc) in enumerate(cache.blocks):
        a, m = f"act/block.{i}.attn", f"act/block.{i}.mlp"
        out.update(
            {
                f"{a}.q": ac.q,
                f"{a}.k": ac.k,
                f"{a}.v": ac.v,
                f"{a}.scores": ac.scores,
                f"{a}.A": ac.A,
                f"{a}.y": ac.y,
                f"{a}.out": ac.sites["proj"].unit.lif.s_reset,
            }
        )
        out[f"{m}.hidden"] = mc.unit1.lif.s_reset  # in the step forward the reset's spike is the emitted one
        out[f"{m}.out"] = mc.unit2.lif.s_reset
        out[f"act/block.{i}.out"] = mc.fc1.x + out[f"{m}.out"]  # residual stream after the block
    out["act/pooled"] = cache.head.x
    out.update({"logits": logits, "loss": np.array(loss)})
    out.update({f"grad/{k}": v for k, v in grads.items()})
    return out


# --------------------------------------------------------------------------- the file
def _checked_args(cfg, seed, batch) -> None:
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 2:
        raise ValueError(f"batch must be an integer >= 2 (BatchNorm needs batch statistics), got {batch!r}")


def build(cfg: ModelConfig, *, seed: int, batch: int = 2, draws: Draws | None = None) -> dict[str, np.ndarray]:
    """The arrays of a golden file, keyed and ordered as :func:`~.layout.forward_order` says.

    Everything is drawn from ``np.random.default_rng(seed)`` (as ``draws`` says) and computed in
    float64 (``target`` and the ``num_batches_tracked`` counters are int64; the ``config`` and
    ``*/options`` entries are JSON text). Same ``cfg``, ``seed``, ``batch`` and ``draws``: the same bits.
    """
    _checked_args(cfg, seed, batch)
    draws = Draws() if draws is None else draws
    rng = np.random.default_rng(seed)
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "config": np.array(json.dumps(dataclasses.asdict(cfg))),
    }
    arrays.update(_kernel_arrays(cfg, rng, draws))
    arrays.update(_model_arrays(cfg, rng, int(batch), draws))
    order = forward_order(cfg)
    if sorted(order) != sorted(arrays):  # the layout and the builder disagree: a bug of this package
        raise RuntimeError(f"golden.build: keys differ from forward_order: {sorted(set(order) ^ set(arrays))}")
    return {key: _stored(arrays[key]) for key in order}


def firing_rates(arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The firing rate of every LIF site of a golden file's model section (and of ``lif/``):
    the mean of each spike tensor (``act/...`` keys but the scores, maps, token sums and pooled)."""
    not_spikes = re.compile(r"^act/(patch_embed\.out|block\.\d+\.(out|attn\.scores|attn\.A)|pooled)$")
    rates = {k[4:]: float(np.mean(v)) for k, v in arrays.items() if k.startswith("act/") and not not_spikes.match(k)}
    rates["lif kernel"] = float(np.mean(arrays["lif/out/spikes"]))
    return rates


def _stored(value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    return arr


def write(
    path: str | os.PathLike, cfg: ModelConfig, *, seed: int, batch: int = 2, overwrite: bool = False
) -> dict[str, np.ndarray]:
    """Write the golden file of :func:`build` to ``path`` and return its arrays.

    The file is written atomically (a temporary file in the same directory,
    then ``os.replace``) and byte for byte deterministic: members in forward
    order, stored uncompressed with a fixed timestamp, no pickle. An existing
    ``path`` raises ``FileExistsError`` unless ``overwrite``.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True (--overwrite) to replace it")
    arrays = build(cfg, seed=seed, batch=batch)
    write_npz(path, arrays)
    return arrays


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez`` layout (one ``<key>.npy`` member per array), atomically
    (:func:`ds2ta_ref.checkpoint.atomic_write`), with fixed zip timestamps so that
    the same arrays give the same bytes."""
    with checkpoint.atomic_write(path) as f, zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(arr), allow_pickle=False)
