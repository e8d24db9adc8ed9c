"""A PyTorch float64 twin of the whole DS2TA model, written in the style of the
Spikformer CIFAR code (``flatten(0, 1)``, BatchNorm1d over ``(TB, D, N)``,
``F.max_pool2d``), built from the same parameter dict as the NumPy model and
differentiated by autograd. Test-only.

Spikes use the Heaviside forward with the surrogate backward (``torch_twins.spike``);
TASA is evaluated in its "weight replica" form (one matmul per lag, unlike both the
NumPy kernel and ``torch_twin_tasa``) with straight-through rounding of ``tau``; NSAD
is ``torch_twin_nsad.nsad`` (per entry, strict gate with surrogate backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_twin_nsad import nsad
from torch_twins import lif

from ds2ta_ref.surrogate import SURROGATES


def tasa(x, weight, bias, tau, window):
    """Eq. 1 with replicated per-lag weights, evaluated lag by lag: sum_lag (s[t-lag] @ (w 2^-tau lag)^T)."""
    T = x.shape[0]
    # max(0, round(tau)) forward; straight through both the rounding and the clip (tasa.py)
    tau_int = tau + (torch.clamp(torch.round(tau), min=0.0) - tau).detach()
    out = torch.zeros(x.shape[:-1] + (weight.shape[0],), dtype=x.dtype)
    for lag in range(min(window, T)):
        w_lag = weight * torch.pow(torch.tensor(2.0), -tau_int * lag)
        out[lag:] = out[lag:] + x[: T - lag] @ w_lag.T
    return out + bias if bias is not None else out


def bn_tokens(x, P, St, name, training, momentum, eps):
    """Spikformer: BatchNorm1d on (TB, D, N)."""
    T, B, N, D = x.shape
    y = x.flatten(0, 1).transpose(-1, -2)
    y = F.batch_norm(
        y,
        St[f"{name}.running_mean"],
        St[f"{name}.running_var"],
        P[f"{name}.weight"],
        P[f"{name}.bias"],
        training=training,
        momentum=momentum,
        eps=eps,
    )
    return y.transpose(-1, -2).reshape(T, B, N, D)


def model(P, St, x, cfg, training):
    """Logits of the twin; BatchNorm running statistics in ``St`` are updated in place."""
    alpha = SURROGATES[cfg.surrogate].default_alpha if cfg.alpha is None else cfg.alpha
    lif_opts = dict(
        tau_m=cfg.tau_m,
        v_threshold=cfg.v_threshold,
        decay_input=cfg.decay_input,
        detach_reset=cfg.detach_reset,
        surrogate=cfg.surrogate,
        alpha=alpha,
    )
    bn_opts = dict(training=training, momentum=cfg.bn_momentum, eps=cfg.bn_eps)
    T = cfg.T
    if x.dim() == 4:
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    B = x.shape[1]
    # SPS
    h = x.flatten(0, 1)
    pools = (False, False, True, True) if cfg.sps == "cifar" else (True,) * 4
    for conv, bn, pool in zip(
        ("proj_conv", "proj_conv1", "proj_conv2", "proj_conv3"), ("proj_bn", "proj_bn1", "proj_bn2", "proj_bn3"), pools
    ):
        z = F.conv2d(h, P[f"patch_embed.{conv}.weight"], padding=1)
        z = F.batch_norm(
            z,
            St[f"patch_embed.{bn}.running_mean"],
            St[f"patch_embed.{bn}.running_var"],
            P[f"patch_embed.{bn}.weight"],
            P[f"patch_embed.{bn}.bias"],
            **bn_opts,
        )
        h = lif(z.reshape(T, B, *z.shape[1:]), **lif_opts).flatten(0, 1)
        if pool:
            h = F.max_pool2d(h, kernel_size=3, stride=2, padding=1)
    z = F.conv2d(h, P["patch_embed.rpe_conv.weight"], padding=1)
    z = F.batch_norm(
        z,
        St["patch_embed.rpe_bn.running_mean"],
        St["patch_embed.rpe_bn.running_var"],
        P["patch_embed.rpe_bn.weight"],
        P["patch_embed.rpe_bn.bias"],
        **bn_opts,
    )
    h = h + lif(z.reshape(T, B, *z.shape[1:]), **lif_opts).flatten(0, 1)
    D = cfg.dim
    h = h.reshape(T, B, D, -1).transpose(-1, -2)  # (T, B, N, D)
    N = h.shape[2]
    H, d = cfg.heads, cfg.dim // cfg.heads
    window = cfg.window if cfg.tasa else 1
    for i in range(cfg.depth):
        pre = f"block.{i}.attn"
        tau = P.get(f"{pre}.tau", torch.tensor(0.0))
        proj_tau = P.get(f"{pre}.proj_tau", tau)

        def site(inp, name, tau_):
            z = tasa(inp, P[f"{pre}.{name}_linear.weight"], P.get(f"{pre}.{name}_linear.bias"), tau_, window)
            return lif(bn_tokens(z, P, St, f"{pre}.{name}_bn", **bn_opts), **lif_opts)

        q, k, v = (site(h, name, tau).reshape(T, B, N, H, d).permute(0, 1, 3, 2, 4) for name in "qkv")
        A = q @ k.transpose(-2, -1)
        if cfg.nsad:
            A = nsad(A, P[f"{pre}.nsad"], surrogate=cfg.surrogate, alpha=alpha, rounding=cfg.nsad_rounding)
        y = ((A @ v) * cfg.scale).transpose(2, 3).reshape(T, B, N, D)
        y = lif(y, **dict(lif_opts, v_threshold=cfg.attn_v_threshold))
        h = h + site(y, "proj", proj_tau)
        pre = f"block.{i}.mlp"
        m = h @ P[f"{pre}.fc1_linear.weight"].T + P[f"{pre}.fc1_linear.bias"]
        m = lif(bn_tokens(m, P, St, f"{pre}.fc1_bn", **bn_opts), **lif_opts)
        m = m @ P[f"{pre}.fc2_linear.weight"].T + P[f"{pre}.fc2_linear.bias"]
        h = h + lif(bn_tokens(m, P, St, f"{pre}.fc2_bn", **bn_opts), **lif_opts)
    return F.linear(h.mean(2).mean(0), P["head.weight"], P["head.bias"])
