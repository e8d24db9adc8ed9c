"""The DS2TA attention block: spiking self-attention (Spikformer's SSA) with
TASA on its inputs and NSAD on its score maps (docs/spec.md §4.5)::

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

Parameter names (short, without the model's ``block.{i}.attn.`` prefix) follow
Spikformer's CIFAR code (``q_linear.weight``, ``q_bn.bias``, ...); DS2TA adds
``tau`` (0-d), ``proj_tau`` (0-d, ``tau_per_site`` only) and ``nsad`` ``(H, 6)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import bnlif, lif, nsad, parallel, tasa
from .config import ModelConfig
from .names import checked_block_inputs, join, sub

__all__ = ["AttentionCache", "forward", "forward_unchecked", "backward", "param_shapes", "state_shapes", "tau_name"]

SITES = ("q", "k", "v", "proj")


def tau_name(site: str, cfg: ModelConfig) -> str:
    """Name of the ``tau`` parameter a TASA site uses."""
    return "proj_tau" if (cfg.tau_per_site and site == "proj") else "tau"


def param_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The block's parameters (short names) and shapes, in Spikformer's order."""
    D = cfg.dim
    shapes: dict[str, tuple[int, ...]] = {}
    for site in SITES:
        shapes[f"{site}_linear.weight"] = (D, D)
        if site == "proj" or cfg.qkv_bias:
            shapes[f"{site}_linear.bias"] = (D,)
        shapes.update(join(f"{site}_bn", bnlif.param_shapes(D)))
    if cfg.tasa:
        shapes["tau"] = ()
        if cfg.tau_per_site:
            shapes["proj_tau"] = ()
    if cfg.nsad:
        shapes["nsad"] = (cfg.heads, 6)
    return shapes


def state_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The block's BatchNorm running statistics (short names) and shapes."""
    return {k: s for site in SITES for k, s in join(f"{site}_bn", bnlif.state_shapes(cfg.dim)).items()}


class SiteCache(NamedTuple):
    tasa: tasa.TASACache
    unit: bnlif.BNLIFCache


class AttentionCache(NamedTuple):
    """Kept: every sub-cache, the q/k/v spikes (for ``dS``, ``dA`` and ``dv``) and the
    map ``A`` (for ``dv``); ``scores`` and ``y`` are kept for inspection and records."""

    cfg: ModelConfig
    sites: dict  # site -> SiteCache
    q: np.ndarray  # (T, B, H, N, d) spikes
    k: np.ndarray  # (T, B, H, N, d)
    v: np.ndarray  # (T, B, H, N, d)
    scores: np.ndarray  # (T, B, H, N, N) S = q k^T, integer counts in [0, d]
    A: np.ndarray  # (T, B, H, N, N) denoised (or, without NSAD, raw) score map
    nsad: nsad.NSADCache | None  # None without NSAD
    y: np.ndarray  # (T, B, N, D) attention-LIF spikes, the input of the output projection
    attn_lif: lif.LIFCache
    spike_count: float  # spikes of every LIF of the block
    neuron_count: int


def _site_tau(site, params, cfg) -> float:
    return float(params[tau_name(site, cfg)]) if cfg.tasa else 0.0


def _site_forward(x, site, params, state, cfg, training, smooth, x_mix=None):
    """``LIF(BN(TASA(x)))`` for one site; ``x`` is ``(T, B, N, D)``; ``x_mix`` its TASA mix if
    already computed (q, k and v share one)."""
    z, tasa_cache = tasa.forward_unchecked(
        x,
        params[f"{site}_linear.weight"],
        params.get(f"{site}_linear.bias"),
        tau=_site_tau(site, params, cfg),
        window=cfg.effective_window,
        frozen_tau=cfg.frozen_tau or not cfg.tasa,
        continuous_tau=smooth,
        x_mix=x_mix,
    )  # (T, B, N, D)
    s, bn_state, unit_cache = bnlif.forward_unchecked(
        z, sub(params, f"{site}_bn"), sub(state, f"{site}_bn"), cfg, training=training, smooth=smooth
    )  # (T, B, N, D)
    return s, join(f"{site}_bn", bn_state), SiteCache(tasa_cache, unit_cache)


def _site_backward(ds, cache: SiteCache, site, cfg, grads):
    """Backward of :func:`_site_forward`; adds the site's gradients into ``grads`` (``tau`` may be shared)."""
    dx_mix = _site_product_backward(ds, cache, site, grads)
    dx, dtau = tasa.mix_backward_unchecked(dx_mix, cache.tasa)
    _add_dtau(grads, site, cfg, dtau)
    return dx


def _site_product_backward(ds, cache: SiteCache, site, grads, x_mix=None):
    """Backward of :func:`_site_forward` down to its TASA mix: ``dx_mix``; puts the site's BN and
    linear gradients in ``grads``. ``x_mix``: the site's TASA mix if already recomputed."""
    dz, bn_grads = bnlif.backward_unchecked(ds, cache.unit)
    dx_mix, dw, db = tasa.product_backward_unchecked(dz, cache.tasa, x_mix)
    grads.update(join(f"{site}_bn", bn_grads))
    grads[f"{site}_linear.weight"] = dw
    if db is not None:
        grads[f"{site}_linear.bias"] = db
    return dx_mix


def _add_dtau(grads, site, cfg, dtau):
    if cfg.tasa and dtau is not None:  # dtau is None for a frozen tau: it gets no gradient at all
        name = tau_name(site, cfg)
        grads[name] = grads.get(name, 0.0) + np.asarray(dtau)  # tau fans out to the sites: +=


def _split_heads(x, H):
    T, B, N, D = x.shape
    return x.reshape(T, B, N, H, D // H).transpose(0, 1, 3, 2, 4)  # (T, B, H, N, d)


def _merge_heads(x):
    T, B, H, N, d = x.shape
    return x.transpose(0, 1, 3, 2, 4).reshape(T, B, N, H * d)  # (T, B, N, D)


def forward(
    x: np.ndarray, params: dict, state: dict, cfg: ModelConfig, *, training: bool, smooth: bool = False
) -> tuple[np.ndarray, dict, AttentionCache]:
    """Attention block on the residual stream ``x`` ``(T, B, N, D)``.

    Returns ``(out, new_state, cache)``: spikes ``(T, B, N, D)``; the updated
    running statistics of the four BatchNorms.
    """
    x, params, state = checked_block_inputs(x, params, state, param_shapes(cfg), state_shapes(cfg), what="attention")
    return forward_unchecked(x, params, state, cfg, training=training, smooth=smooth)


def forward_unchecked(
    x: np.ndarray, params: dict, state: dict, cfg: ModelConfig, *, training: bool, smooth: bool = False
) -> tuple[np.ndarray, dict, AttentionCache]:
    """:func:`forward` on arguments already checked (the model's: it checks its inputs once)
    with :func:`ds2ta_ref.names.checked_block_inputs`; NSAD runs its unchecked core too (the
    scores ``q k^T`` of spikes are integer counts in ``[0, d]`` by construction)."""
    new_state, sites, heads = {}, {}, {}
    # q, k and v read the same x with the same tau: mix it once (TASA_q(x) = x_mix @ W_q^T + b_q, ...)
    x_mix = tasa.mix_unchecked(
        x, tau=_site_tau("q", params, cfg), window=cfg.effective_window, continuous_tau=smooth
    )  # (T, B, N, D)
    for site in ("q", "k", "v"):
        s, bn_state, sites[site] = _site_forward(x, site, params, state, cfg, training, smooth, x_mix)  # (T, B, N, D)
        new_state.update(bn_state)
        heads[site] = _split_heads(s, cfg.heads)  # (T, B, H, N, d)
    q, k, v = heads["q"], heads["k"], heads["v"]
    # the per-head products are small: parallel.matmul runs the stack's time steps on every core
    S = parallel.matmul(q, k.swapaxes(-1, -2))  # (T, B, H, N, N) counts in [0, d]
    nsad_cache = None
    if cfg.nsad:
        A, nsad_cache = nsad.forward_unchecked(
            S,
            params["nsad"],
            head_dim=cfg.head_dim,
            surrogate=cfg.surrogate,
            alpha=cfg.alpha,
            rounding=cfg.nsad_rounding,
            smooth=smooth,
        )
    else:
        A = S
    y_in = _merge_heads(parallel.matmul(A, v) * cfg.scale)  # (T, B, N, D)
    y, attn_lif_cache = bnlif.lif_forward(y_in, cfg, smooth=smooth, v_threshold=cfg.attn_v_threshold)
    out, bn_state, sites["proj"] = _site_forward(y, "proj", params, state, cfg, training, smooth)  # (T, B, N, D)
    new_state.update(bn_state)
    units = [sites[site].unit for site in SITES]
    spike_count = sum(u.spike_count for u in units) + float(y.sum())
    neuron_count = sum(u.neuron_count for u in units) + y.size
    cache = AttentionCache(cfg, sites, q, k, v, S, A, nsad_cache, y, attn_lif_cache, spike_count, neuron_count)
    return out, new_state, cache


def backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray, dict]:
    """Backward of :func:`forward`: ``(dx (T, B, N, D), grads)``, ``grads`` keyed like
    ``params`` (without ``tau`` when it is frozen; with ``cfg.frozen_u`` column 5 of
    ``grads["nsad"]``, the threshold u, is exactly 0)."""
    cfg = cache.cfg
    grads: dict[str, np.ndarray] = {}
    # forward was: out = site_proj(y); y = LIF_0.5(merge((A @ v) * scale)), so now:
    dy = _site_backward(dout, cache.sites["proj"], "proj", cfg, grads)  # (T, B, N, D)
    dy_in = lif.backward_unchecked(dy, cache.attn_lif)  # (T, B, N, D)
    dAv = _split_heads(dy_in, cfg.heads) * cfg.scale  # (T, B, H, N, d)
    dA = parallel.matmul(dAv, cache.v.swapaxes(-1, -2))  # (T, B, H, N, N)
    dv = parallel.matmul(cache.A.swapaxes(-1, -2), dAv)  # (T, B, H, N, d)
    # forward was: A = NSAD(S), so now:
    if cache.nsad is not None:  # cfg.nsad
        dS, grads["nsad"] = nsad.backward_unchecked(dA, cache.nsad)
        if cfg.frozen_u:  # u_h (column 5) is not learned: its gradient is exactly 0, so AdamW leaves it
            grads["nsad"][:, 5] = 0.0  # at u0 (nsad has no weight decay); a, b, c, d, e still learn
    else:
        dS = dA
    # forward was: S = q @ k^T, so now:
    dq = parallel.matmul(dS, cache.k)  # (T, B, H, N, d)
    dk = parallel.matmul(dS.swapaxes(-1, -2), cache.q)  # (T, B, H, N, d)
    # forward was: q, k, v = LIF(BN(x_mix @ W^T + b)) per site, with one x_mix = mix(x) and one tau,
    # so now: recompute x_mix once for the three dweight, and add the three dx_mix, since the mix is
    # linear and shared: its backward (and dtau) runs once, on the sum
    x_mix = cache.sites["q"].tasa.x_mix  # (T, B, N, D)
    dx_mix, dx_mix_k, dx_mix_v = (
        _site_product_backward(_merge_heads(dh), cache.sites[site], site, grads, x_mix)
        for site, dh in (("q", dq), ("k", dk), ("v", dv))
    )  # each (T, B, N, D), fresh arrays: add in place
    dx_mix += dx_mix_k
    dx_mix += dx_mix_v
    dx, dtau = tasa.mix_backward_unchecked(dx_mix, cache.sites["q"].tasa)
    _add_dtau(grads, "q", cfg, dtau)
    return dx, grads
