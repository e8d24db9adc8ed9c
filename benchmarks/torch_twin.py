"""The DS2TA model in PyTorch, written for speed, for the benchmark (``bench_model.py``).

It computes the same model as :func:`ds2ta_ref.model.forward` from the same
parameter dict (``tests/test_benchmark.py`` checks logits and every gradient in
float64), differentiated by autograd. It differs from the clarity-first twin in
``tests/torch_twin_model.py`` only where PyTorch has a faster equal form:

* TASA mixes the window first and multiplies once (as :mod:`ds2ta_ref.tasa`
  does), instead of one matmul per lag with weight replicas;
* token BatchNorm runs on ``(T*B*N, D)`` rows: the same per-channel statistics
  as Spikformer's ``BatchNorm1d`` on ``(T*B, D, N)``, without two transposes.

Spikes are the Heaviside step forward with the surrogate derivative backward,
in a Python loop over time (SpikingJelly's multi-step ``LIFNode`` in its
PyTorch backend); NSAD is evaluated per entry with a straight-through rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class Spike(torch.autograd.Function):
    """``1(x >= 0)`` forward; the surrogate derivative (sigmoid or atan) backward.
    ``strict=True`` is NSAD's gate ``1(x > 0)``."""

    @staticmethod
    def forward(ctx, x, surrogate, alpha, strict):
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.alpha = surrogate, alpha
        return (x > 0 if strict else x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        if ctx.surrogate == "sigmoid":
            sig = torch.sigmoid(a * x)
            sg = a * sig * (1 - sig)
        else:
            sg = (a / 2) / (1 + (torch.pi / 2 * a * x) ** 2)
        return grad * sg, None, None, None


def lif(x, cfg, alpha, v_threshold):
    """LIF over the leading time axis, hard reset to 0 (``ds2ta_ref.lif``)."""
    k = 1.0 - 1.0 / cfg.tau_m
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = k * v + (x[t] / cfg.tau_m if cfg.decay_input else x[t])
        s = Spike.apply(h - v_threshold, cfg.surrogate, alpha, False)
        v = h * (1 - (s.detach() if cfg.detach_reset else s))
        out.append(s)
    return torch.stack(out)


def model(P, St, x, cfg, alpha):
    """Training-mode logits; BatchNorm running statistics in ``St`` are updated in place."""
    T, B = cfg.T, x.shape[0]
    theta = cfg.v_threshold

    def bn(z, name):  # z: (rows, C) or (M, C, H, W)
        return F.batch_norm(z, St[f"{name}.running_mean"], St[f"{name}.running_var"], P[f"{name}.weight"],
                            P[f"{name}.bias"], training=True, momentum=cfg.bn_momentum, eps=cfg.bn_eps)

    # SPS: (T*B, C, H, W) feature maps
    h = x.unsqueeze(0).expand(T, *x.shape).reshape(T * B, *x.shape[1:])
    pools = (False, False, True, True) if cfg.sps == "cifar" else (True,) * 4
    for i, pool in enumerate(pools):
        sfx = "" if i == 0 else str(i)
        z = bn(F.conv2d(h, P[f"patch_embed.proj_conv{sfx}.weight"], padding=1), f"patch_embed.proj_bn{sfx}")
        h = lif(z.reshape(T, B, *z.shape[1:]), cfg, alpha, theta).flatten(0, 1)
        if pool:
            h = F.max_pool2d(h, kernel_size=3, stride=2, padding=1)
    z = bn(F.conv2d(h, P["patch_embed.rpe_conv.weight"], padding=1), "patch_embed.rpe_bn")
    h = h + lif(z.reshape(T, B, *z.shape[1:]), cfg, alpha, theta).flatten(0, 1)
    D = cfg.dim
    h = h.reshape(T, B, D, -1).transpose(-1, -2)  # (T, B, N, D)
    N, H, d = h.shape[2], cfg.heads, cfg.dim // cfg.heads
    window = cfg.window if cfg.tasa else 1

    def bn_lif(z, name, v_threshold=theta):  # z: (T, B, N, C)
        y = bn(z.reshape(-1, z.shape[-1]), name).reshape(z.shape)
        return lif(y, cfg, alpha, v_threshold)

    def mix(s, tau):  # TASA: sum_lag 2^(-tau_int lag) s[t - lag], straight-through round and clip
        tau_int = tau + (torch.clamp(torch.round(tau), min=0.0) - tau).detach()
        out = s
        for lag in range(1, min(window, T)):
            out = out + F.pad(s[: T - lag], (0, 0) * (s.dim() - 1) + (lag, 0)) * torch.exp2(-tau_int * lag)
        return out

    for i in range(cfg.depth):
        pre = f"block.{i}.attn"
        tau = P.get(f"{pre}.tau", torch.zeros((), dtype=x.dtype))
        proj_tau = P.get(f"{pre}.proj_tau", tau)
        x_mix = mix(h, tau)  # q, k, v share the input and tau
        q, k, v = (bn_lif(F.linear(x_mix, P[f"{pre}.{n}_linear.weight"], P.get(f"{pre}.{n}_linear.bias")),
                          f"{pre}.{n}_bn").reshape(T, B, N, H, d).transpose(2, 3) for n in "qkv")
        A = q @ k.transpose(-2, -1)  # (T, B, H, N, N)
        if cfg.nsad:
            p = P[f"{pre}.nsad"]
            a_, b_, c_, d_, e_, u_ = (p[:, j].reshape(-1, 1, 1) for j in range(6))
            g = a_ * A + b_ * (A - c_) ** 2 + d_ * torch.sigmoid(-(A - e_))
            y = Spike.apply(A - u_, cfg.surrogate, alpha, True) * g
            rounded = torch.round(y) if cfg.nsad_rounding == "nearest" else torch.floor(y)
            A = y + (rounded - y).detach()
        y = ((A @ v) * cfg.scale).transpose(2, 3).reshape(T, B, N, D)
        y = lif(y, cfg, alpha, cfg.attn_v_threshold)
        z = F.linear(mix(y, proj_tau), P[f"{pre}.proj_linear.weight"], P[f"{pre}.proj_linear.bias"])
        h = h + bn_lif(z, f"{pre}.proj_bn")
        pre = f"block.{i}.mlp"
        m = bn_lif(F.linear(h, P[f"{pre}.fc1_linear.weight"], P[f"{pre}.fc1_linear.bias"]), f"{pre}.fc1_bn")
        h = h + bn_lif(F.linear(m, P[f"{pre}.fc2_linear.weight"], P[f"{pre}.fc2_linear.bias"]), f"{pre}.fc2_bn")
    return F.linear(h.mean(2).mean(0), P["head.weight"], P["head.bias"])
