"""The DS2TA attention block: spiking self-attention (Spikformer's SSA) with
TASA on its inputs and NSAD on its score maps (SPEC §4)::

    q = LIF(BN(TASA_q(x)));  k = LIF(BN(TASA_k(x)));  v = LIF(BN(TASA_v(x)))
    S = q_h @ k_h^T                        per head, integer counts in [0, d]
    A = NSAD(S)                            Eq. 6-7 (Spikformer: A = S)
    y = LIF_0.5((A @ v_h) * scale)         heads merged back to D
    out = LIF(BN(TASA_o(y)))

``TASA_*(x)`` is Eq. 1: a window of ``T_AW`` past inputs attenuated by
``2^(-tau*lag)`` and then the layer's linear map; with ``tasa=False`` the window
is 1 and it is exactly Spikformer's ``nn.Linear``. One ``tau`` per block is
shared by all four sites (``tau_per_site=True``: ``tau`` for q/k/v and
``proj_tau`` for the output projection). There is no softmax: the attention
map of a spiking transformer is a non-negative count.

Parameter names follow Spikformer's CIFAR code (``q_linear``, ``q_bn``, ...);
DS2TA adds ``tau`` (0-d) and ``nsad`` ``(H, 6)``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import lif, nsad, tasa
from .config import ModelConfig
from .units import Context, accumulate, bn_lif_backward, bn_lif_forward

SITES = ("q", "k", "v", "proj")


def tau_name(prefix: str, site: str, cfg: ModelConfig) -> str:
    """Name of the ``tau`` parameter a TASA site uses."""
    return f"{prefix}.proj_tau" if (cfg.tau_per_site and site == "proj") else f"{prefix}.tau"


def param_shapes(cfg: ModelConfig, prefix: str) -> dict[str, tuple]:
    D = cfg.dim
    shapes = {}
    for site in SITES:
        shapes[f"{prefix}.{site}_linear.weight"] = (D, D)
        if site == "proj" or cfg.qkv_bias:
            shapes[f"{prefix}.{site}_linear.bias"] = (D,)
        shapes[f"{prefix}.{site}_bn.weight"] = (D,)
        shapes[f"{prefix}.{site}_bn.bias"] = (D,)
    if cfg.tasa:
        shapes[f"{prefix}.tau"] = ()
        if cfg.tau_per_site:
            shapes[f"{prefix}.proj_tau"] = ()
    if cfg.nsad:
        shapes[f"{prefix}.nsad"] = (cfg.heads, 6)
    return shapes


def bn_names(prefix: str) -> list[str]:
    return [f"{prefix}.{site}_bn" for site in SITES]


class SiteCache(NamedTuple):
    tasa: object
    unit: object


class AttentionCache(NamedTuple):
    sites: dict  # site -> SiteCache
    q: np.ndarray  # (T, B, H, N, d) spikes
    k: np.ndarray  # (T, B, H, N, d)
    v: np.ndarray  # (T, B, H, N, d)
    A: np.ndarray  # (T, B, H, N, N) denoised (or raw) score map
    nsad: object  # None without NSAD
    attn_lif: object


def _site_forward(x, site, prefix, ctx):
    """``LIF(BN(TASA(x)))`` for one site; ``x`` is ``(T, B, N, D)``."""
    cfg, p = ctx.cfg, ctx.params
    z, tasa_cache = tasa.forward(
        x, p[f"{prefix}.{site}_linear.weight"], p.get(f"{prefix}.{site}_linear.bias"),
        tau=float(p[tau_name(prefix, site, cfg)]) if cfg.tasa else 0.0,
        window=cfg.effective_window, frozen_tau=cfg.frozen_tau or not cfg.tasa,
        continuous_tau=ctx.smooth)  # (T, B, N, D)
    s, unit_cache = bn_lif_forward(z, f"{prefix}.{site}_bn", ctx, axis=-1, time_shape=z.shape)
    return s, SiteCache(tasa_cache, unit_cache)


def _site_backward(ds, cache, site, prefix, cfg, grads):
    dz = bn_lif_backward(ds, cache.unit, f"{prefix}.{site}_bn", grads)
    dx, dw, db, dtau = tasa.backward(dz, cache.tasa)
    accumulate(grads, f"{prefix}.{site}_linear.weight", dw)
    accumulate(grads, f"{prefix}.{site}_linear.bias", db)
    if cfg.tasa:
        accumulate(grads, tau_name(prefix, site, cfg), np.asarray(0.0 if dtau is None else dtau))
    return dx


def _split_heads(x, H):
    T, B, N, D = x.shape
    return x.reshape(T, B, N, H, D // H).transpose(0, 1, 3, 2, 4)  # (T, B, H, N, d)


def _merge_heads(x):
    T, B, H, N, d = x.shape
    return x.transpose(0, 1, 3, 2, 4).reshape(T, B, N, H * d)  # (T, B, N, D)


def forward(x: np.ndarray, ctx: Context, prefix: str) -> tuple[np.ndarray, AttentionCache]:
    """Attention block on the residual stream ``x`` ``(T, B, N, D)``; returns spikes ``(T, B, N, D)``."""
    cfg = ctx.cfg
    sites = {}
    heads = {}
    for site in ("q", "k", "v"):
        s, sites[site] = _site_forward(x, site, prefix, ctx)  # (T, B, N, D)
        heads[site] = _split_heads(s, cfg.heads)  # (T, B, H, N, d)
    q, k, v = heads["q"], heads["k"], heads["v"]
    S = q @ k.swapaxes(-1, -2)  # (T, B, H, N, N) counts in [0, d]
    nsad_cache = None
    if cfg.nsad:
        A, nsad_cache = nsad.forward(S, ctx.params[f"{prefix}.nsad"], head_dim=cfg.head_dim,
                                     surrogate=cfg.surrogate, alpha=cfg.alpha,
                                     rounding=cfg.nsad_rounding, smooth=ctx.smooth)
    else:
        A = S
    y = _merge_heads((A @ v) * cfg.scale)  # (T, B, N, D)
    y_spikes, attn_lif_cache = lif.forward(y, **ctx.lif_options(cfg.attn_v_threshold))
    out, sites["proj"] = _site_forward(y_spikes, "proj", prefix, ctx)  # (T, B, N, D)
    return out, AttentionCache(sites, q, k, v, A, nsad_cache, attn_lif_cache)


def backward(dout: np.ndarray, cache: AttentionCache, cfg: ModelConfig, prefix: str, grads: dict) -> np.ndarray:
    """Backward of :func:`forward`; accumulates into ``grads``, returns ``dx`` ``(T, B, N, D)``."""
    # forward was: out = site_proj(LIF_0.5(merge((A @ v) * scale)))
    dy_spikes = _site_backward(dout, cache.sites["proj"], "proj", prefix, cfg, grads)
    dy = lif.backward(dy_spikes, cache.attn_lif)
    dAv = _split_heads(dy, cfg.heads) * cfg.scale  # (T, B, H, N, d)
    dA = dAv @ cache.v.swapaxes(-1, -2)  # (T, B, H, N, N)
    dv = cache.A.swapaxes(-1, -2) @ dAv  # (T, B, H, N, d)
    if cfg.nsad:
        dS, dparams = nsad.backward(dA, cache.nsad)
        accumulate(grads, f"{prefix}.nsad", dparams)
    else:
        dS = dA
    # S = q @ k^T
    dq = dS @ cache.k  # (T, B, H, N, d)
    dk = dS.swapaxes(-1, -2) @ cache.q  # (T, B, H, N, d)
    dx = None
    for site, dh in (("q", dq), ("k", dk), ("v", dv)):
        dxs = _site_backward(_merge_heads(dh), cache.sites[site], site, prefix, cfg, grads)
        dx = dxs if dx is None else dx + dxs  # x fans out to q, k and v
    return dx
