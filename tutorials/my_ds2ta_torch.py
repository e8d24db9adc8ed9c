"""A compact PyTorch implementation of DS2TA, written as *a user's own*: it does
not import ``ds2ta_ref``. It reads a golden file's inputs, runs every kernel and
the whole model with autograd in float64, and returns its results under the
golden file's keys (docs/golden.md), ready for ``ds2ta_ref.golden.compare``.

Three classic bugs can be switched on, to see how ``compare`` points at them:

* ``"reset_not_detached"``: the spike inside the LIF's reset ``v = h (1 - s)``
  is not detached, so gradient flows through the reset (the model's
  ``detach_reset=True`` says it must not).
* ``"tau_round_no_ste"``: TASA rounds ``tau`` with ``torch.round``, whose
  gradient is 0, instead of rounding straight through; ``tau`` never learns.
* ``"nsad_floor"``: NSAD's table rounds with ``floor`` instead of to nearest.

Used by ``tutorials/07_check_your_implementation.ipynb`` and the test suite.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
import torch.nn.functional as F

BUGS = ("reset_not_detached", "tau_round_no_ste", "nsad_floor")
DEFAULT_ALPHA = {"sigmoid": 4.0, "atan": 2.0}


# ----------------------------------------------------------------------------- spikes
def surrogate_grad(x, name, alpha):
    """d/dx of the surrogate's primal: sigmoid(alpha x) or 1/2 + atan(pi/2 alpha x)/pi."""
    if name == "sigmoid":
        sig = torch.sigmoid(alpha * x)
        return alpha * sig * (1 - sig)
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


class Step(torch.autograd.Function):
    """Heaviside forward (``x >= 0``, or ``x > 0`` with ``strict``), surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x, name, alpha, strict):
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return ((x > 0) if strict else (x >= 0)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.name, ctx.alpha), None, None, None


def lif(x, *, tau_m, v_threshold, decay_input, detach_reset, surrogate, alpha, bugs=()):
    """Multi-step LIF, hard reset to 0: h = k v + I; s = 1(h >= theta); v = h (1 - s). x: (T, ...)."""
    k = 1.0 - 1.0 / tau_m
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        h = k * v + (x[t] / tau_m if decay_input else x[t])
        s = Step.apply(h - v_threshold, surrogate, alpha, False)
        detach = detach_reset and "reset_not_detached" not in bugs
        v = h * (1 - (s.detach() if detach else s))
        out.append(s)
    return torch.stack(out)


# ----------------------------------------------------------------------------- TASA and NSAD
def tasa(s, weight, bias, tau, window, bugs=()):
    """Eq. 1: sum over lags 0..window-1 of 2^(-tau_int lag) s[t - lag], then the linear map.
    tau_int = max(0, round(tau)), straight through (its gradient is that of tau itself)."""
    tau_int = torch.clamp(torch.round(tau), min=0.0)
    if "tau_round_no_ste" not in bugs:
        tau_int = tau + (tau_int - tau).detach()
    T = s.shape[0]
    mixed = torch.zeros_like(s)
    for lag in range(min(window, T)):
        shifted = torch.cat([torch.zeros_like(s[:lag]), s[: T - lag]])  # s[t - lag], zeros before t = 0
        mixed = mixed + torch.pow(2.0, -tau_int * lag) * shifted
    return F.linear(mixed, weight, bias)


def nsad(scores, params, *, rounding, surrogate, alpha, bugs=()):
    """Eq. 6-7 per entry: A = round(1(S > u) g(S)), g = a S + b (S - c)^2 + d / (1 + exp(S - e));
    straight-through rounding, surrogate derivative for the strict gate. scores (..., H, N, N)."""
    a, b, c, d, e, u = (params[:, j].reshape(-1, 1, 1) for j in range(6))
    g = a * scores + b * (scores - c) ** 2 + d * torch.sigmoid(-(scores - e))
    f = Step.apply(scores - u, surrogate, alpha, True) * g
    rounded = torch.floor(f) if (rounding == "floor" or "nsad_floor" in bugs) else torch.round(f)
    return f + (rounded - f).detach()


# ----------------------------------------------------------------------------- the model
def batchnorm(x, P, St, new_state, name, cfg):
    """Training-mode BatchNorm of ``x`` ``(M, C, ...)`` over every axis but ``C``; running statistics updated."""
    mean, var = St[f"{name}.running_mean"].clone(), St[f"{name}.running_var"].clone()
    y = F.batch_norm(
        x,
        mean,
        var,
        P[f"{name}.weight"],
        P[f"{name}.bias"],
        training=True,
        momentum=cfg["bn_momentum"],
        eps=cfg["bn_eps"],
    )  # updates mean and var in place
    new_state[f"{name}.running_mean"], new_state[f"{name}.running_var"] = mean, var
    new_state[f"{name}.num_batches_tracked"] = St[f"{name}.num_batches_tracked"] + 1
    return y


def bn_tokens(x, P, St, new_state, name, cfg):
    """BatchNorm1d of tokens ``(T, B, N, D)``: statistics over T, B and N per channel D."""
    y = batchnorm(x.flatten(0, 1).transpose(1, 2), P, St, new_state, name, cfg)  # (TB, D, N)
    return y.transpose(1, 2).reshape(x.shape)


def model(P, St, x, cfg, bugs=()):
    """``(logits, new_state, act)`` for images ``x`` ``(B, C, S, S)``; ``act`` holds the golden ``act/`` tensors."""
    alpha = cfg["alpha"] if cfg["alpha"] is not None else DEFAULT_ALPHA[cfg["surrogate"]]
    opts = dict(
        tau_m=cfg["tau_m"],
        v_threshold=cfg["v_threshold"],
        decay_input=cfg["decay_input"],
        detach_reset=cfg["detach_reset"],
        surrogate=cfg["surrogate"],
        alpha=alpha,
        bugs=bugs,
    )
    T, B, D, H = cfg["T"], x.shape[0], cfg["dim"], cfg["heads"]
    new_state, act = {}, {}
    frames = x.unsqueeze(0).expand(T, *x.shape)  # (T, B, C, S, S): the image at every step

    # Spiking patch splitting: four conv-BN-LIF stages, max-pools, a relative-position branch.
    h = frames
    pools = (False, False, True, True) if cfg["sps"] == "cifar" else (True,) * 4
    names = ("proj_conv", "proj_conv1", "proj_conv2", "proj_conv3", "rpe_conv")
    for i, conv in enumerate(names):
        z = F.conv2d(h.flatten(0, 1), P[f"patch_embed.{conv}.weight"], padding=1)  # (TB, C', S', S')
        bn = "patch_embed." + ("rpe_bn" if conv == "rpe_conv" else conv.replace("conv", "bn"))
        s = lif(batchnorm(z, P, St, new_state, bn, cfg).unflatten(0, (T, B)), **opts)  # (T, B, C', S', S')
        act["patch_embed." + ("rpe" if conv == "rpe_conv" else f"stage{i}")] = s  # spikes before the max-pool
        if conv == "rpe_conv":
            h = h + s
        elif pools[i]:
            h = F.max_pool2d(s.flatten(0, 1), 3, 2, 1).unflatten(0, (T, B))
        else:
            h = s
    h = h.flatten(3).transpose(2, 3)  # (T, B, N, D)
    act["patch_embed.out"] = h
    N, d = h.shape[2], D // H
    window = cfg["window"] if cfg["tasa"] else 1

    for i in range(cfg["depth"]):
        pre = f"block.{i}.attn"
        tau = P.get(f"{pre}.tau", torch.tensor(0.0, dtype=torch.float64))

        def site(inp, name):
            tau_ = P.get(f"{pre}.proj_tau", tau) if name == "proj" else tau
            z = tasa(inp, P[f"{pre}.{name}_linear.weight"], P.get(f"{pre}.{name}_linear.bias"), tau_, window, bugs)
            return lif(bn_tokens(z, P, St, new_state, f"{pre}.{name}_bn", cfg), **opts)  # (T, B, N, D)

        for name in "qkv":
            act[f"{pre}.{name}"] = site(h, name).reshape(T, B, N, H, d).transpose(2, 3)  # (T, B, H, N, d)
        q, k, v = act[f"{pre}.q"], act[f"{pre}.k"], act[f"{pre}.v"]
        act[f"{pre}.scores"] = q @ k.transpose(-1, -2)  # (T, B, H, N, N)
        A = act[f"{pre}.scores"]
        if cfg["nsad"]:
            A = nsad(
                A, P[f"{pre}.nsad"], rounding=cfg["nsad_rounding"], surrogate=cfg["surrogate"], alpha=alpha, bugs=bugs
            )
        act[f"{pre}.A"] = A
        y = ((A @ v) * cfg["scale"]).transpose(2, 3).reshape(T, B, N, D)
        act[f"{pre}.y"] = lif(y, **dict(opts, v_threshold=cfg["attn_v_threshold"]))
        act[f"{pre}.out"] = site(act[f"{pre}.y"], "proj")
        h = h + act[f"{pre}.out"]

        pre = f"block.{i}.mlp"
        z = F.linear(h, P[f"{pre}.fc1_linear.weight"], P[f"{pre}.fc1_linear.bias"])
        act[f"{pre}.hidden"] = lif(bn_tokens(z, P, St, new_state, f"{pre}.fc1_bn", cfg), **opts)
        z = F.linear(act[f"{pre}.hidden"], P[f"{pre}.fc2_linear.weight"], P[f"{pre}.fc2_linear.bias"])
        act[f"{pre}.out"] = lif(bn_tokens(z, P, St, new_state, f"{pre}.fc2_bn", cfg), **opts)
        h = h + act[f"{pre}.out"]
        act[f"block.{i}.out"] = h
    act["pooled"] = h.mean(dim=(0, 2))  # (B, D)
    return F.linear(act["pooled"], P["head.weight"], P["head.bias"]), new_state, act


# ----------------------------------------------------------------------------- golden layout
def run(golden, bugs=()):
    """Every output and gradient of a golden file, computed here: ``{key: np.ndarray}``.

    ``golden`` maps the golden keys to arrays (``np.load(path)`` or a dict);
    only its inputs are read (``config``, ``*/options``, ``*/in/*``, ``input``,
    ``target``, ``param/*``, ``state/*``).
    """
    unknown = set(bugs) - set(BUGS)
    if unknown:
        raise ValueError(f"bugs must be among {BUGS}, got {sorted(unknown)}")

    def tensor(key, grad=False):
        return torch.tensor(np.asarray(golden[key]), dtype=torch.float64, requires_grad=grad)

    def options(kernel):
        return json.loads(str(golden[f"{kernel}/options"]))

    out = {}
    # LIF alone
    x = tensor("lif/in/x", grad=True)
    spikes = lif(x, **options("lif"), bugs=bugs)
    (spikes * tensor("lif/in/dspikes")).sum().backward()
    out["lif/out/spikes"], out["lif/grad/x"] = spikes, x.grad

    # TASA alone (a file whose config switches TASA off has no tasa/ section)
    if "tasa/options" in golden:
        s, w, b, tau = (tensor(f"tasa/in/{k}", grad=True) for k in ("s", "weight", "bias", "tau"))
        y = tasa(s, w, b, tau, options("tasa")["window"], bugs)
        (y * tensor("tasa/in/dout")).sum().backward()
        out.update(
            {
                "tasa/out/out": y,
                "tasa/grad/s": s.grad,
                "tasa/grad/weight": w.grad,
                "tasa/grad/bias": b.grad,
                "tasa/grad/tau": tau.grad,
            }
        )

    # NSAD alone, and its table: f at every possible score 0..head_dim (likewise only with NSAD on)
    if "nsad/options" in golden:
        o = options("nsad")
        scores, params = tensor("nsad/in/scores", grad=True), tensor("nsad/in/params", grad=True)
        kw = dict(rounding=o["rounding"], surrogate=o["surrogate"], alpha=o["alpha"], bugs=bugs)
        A = nsad(scores, params, **kw)
        (A * tensor("nsad/in/dA")).sum().backward()
        grid = torch.arange(o["head_dim"] + 1, dtype=torch.float64).expand(params.shape[0], 1, -1)  # (H, 1, d+1)
        out.update(
            {
                "nsad/out/A": A,
                "nsad/grad/scores": scores.grad,
                "nsad/grad/params": params.grad,
                "nsad/out/table": nsad(grid, params, **kw)[:, 0],
            }
        )

    # The whole model: one training step, mean cross-entropy
    cfg = json.loads(str(golden["config"]))
    frozen = (".tau", ".proj_tau") if cfg["frozen_tau"] else ()  # a frozen tau is not learned: no gradient
    P = {k[6:]: tensor(k, grad=not k.endswith(frozen)) for k in golden if k.startswith("param/")}
    St = {k[6:]: torch.tensor(np.asarray(golden[k])) for k in golden if k.startswith("state/")}
    logits, new_state, act = model(P, St, tensor("input"), cfg, bugs)
    loss = F.cross_entropy(logits, torch.tensor(np.asarray(golden["target"])))
    loss.backward()
    out.update({"logits": logits, "loss": loss})
    out.update({f"new_state/{k}": v for k, v in new_state.items()})
    out.update({f"act/{k}": v for k, v in act.items() if f"act/{k}" in golden})  # stem stages: format 2 on
    if cfg.get("frozen_u", False):  # a frozen NSAD threshold u (column 5) is not learned: its gradient is 0
        for k, p in P.items():
            if k.endswith(".nsad"):
                p.grad[:, 5] = 0.0
    out.update({f"grad/{k}": p.grad for k, p in P.items() if p.grad is not None})  # none for a frozen tau
    return {k: v.detach().numpy() for k, v in out.items()}
