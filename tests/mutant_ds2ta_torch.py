"""A test-only PyTorch DS2TA with mutation flags: the catalog that proves the conformance suite.

Written from docs/golden.md and docs/spec.md alone (it does not import ``ds2ta_ref``), in
float64 with autograd, its own BatchNorm and max-pool so that their conventions can be
mutated. :func:`run` ``(golden, mutants=())`` returns a candidate under the golden keys.

Every entry of :data:`MUTANTS` is a plausible porting bug or one of docs/spec.md §8's
alternatives, with the sections (``ds2ta_ref.golden.section``) where its first departure
must lie: the kernel or block whose code it changes. ``tests/test_golden_suite.py`` checks
that the unmutated implementation passes every case of the suite at 1e-10 and that every
mutant fails at least one case with its first departure in those sections.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
import torch.nn.functional as F

# The TASA and NSAD code runs in its kernel section and at the attention block's sites: a mutant
# there may first show in either (e.g. tau floored: the kernel's tau 2.5 floors and rounds alike).
ATTENTION = {f"block.{i}.attn" for i in range(2)}
TASA, NSAD = {"tasa"} | ATTENTION, {"nsad"} | ATTENTION

# name -> (what the mutant does, the sections where its first departure must lie)
MUTANTS = {
    # LIF (§1)
    "lif_strict_threshold": ("LIF fires on h > theta instead of h >= theta", {"lif"}),
    "reset_not_detached": ("the spike in the reset v = h (1 - s) is not detached", {"lif"}),
    "decay_input_flipped": ("decay_input read the other way round (I / tau_m where I is meant, and back)", {"lif"}),
    "atan_constant": ("atan surrogate (alpha/2) / (1 + (pi alpha x)^2): pi instead of pi/2", {"lif"}),
    "sigmoid_alpha_default": ("sigmoid's default alpha 2 (atan's) instead of 4, where the config says null", {"grad"}),
    "alpha_ignored": ("the surrogate's default alpha even where the config gives one", {"lif"}),
    "surrogate_always_sigmoid": ("the sigmoid surrogate even where the config says atan", {"lif"}),
    "tau_m_fixed_2": ("tau_m taken as 2 whatever the config says", {"lif"}),
    "v_threshold_fixed_1": ("LIF threshold 1.0 whatever the config says", {"lif"}),
    "reset_always_detached": ("the reset detached even with detach_reset=false", {"lif"}),
    "soft_reset": ("soft reset v = h - theta s instead of the hard reset to 0", {"lif"}),
    # TASA (§2)
    "tau_floor": ("tau floored instead of rounded", TASA),
    "tau_half_away": ("tau rounded half away from zero instead of half to even", TASA),
    "tau_no_ste": ("torch.round(tau) without the straight-through trick: tau gets no gradient", TASA),
    "tau_clip_no_grad": ("no gradient below tau's clip at 0 (clamp after the straight-through round)", TASA),
    "window_plus_one": ("TASA window T_AW + 1 (lags 0 .. T_AW)", TASA),
    "attenuation_m_plus_1": ("attenuation 2^(-tau (m + 1)) instead of 2^(-tau m)", TASA),
    "bias_per_lag": ("TASA adds the linear bias at every lag, not once", TASA),
    "window_fixed_3": ("TASA window 3 (the paper's T_AW) whatever the config says", TASA),
    "tau_per_site_ignored": (
        "the output projection uses tau even with tau_per_site (proj_tau unused)",
        {"block.0.attn"},
    ),
    # NSAD (§3)
    "nsad_gate_ge": ("NSAD gate 1(s >= u) instead of the strict 1(s > u)", NSAD),
    "nsad_floor": ("NSAD table rounded with floor instead of to nearest", NSAD),
    "nsad_floor_ignored": ("NSAD rounds to nearest even where the config says floor", NSAD),
    "nsad_half_away": ("NSAD table rounded half away from zero instead of half to even", NSAD),
    "nsad_sigmoid_sign": ("d / (1 + exp(e - s)) instead of d / (1 + exp(s - e))", NSAD),
    "nsad_clamp_negative": ("negative table entries clamped to 0", NSAD),
    "nsad_gate_no_surrogate": ("the gate's derivative dropped (a hard step in the backward too)", NSAD),
    "frozen_u_ignored": ("u learned although frozen_u (its gradient not zeroed)", {"grad"}),
    # attention (§4.5)
    "attn_threshold_1": ("attention LIF threshold 1.0 instead of attn_v_threshold 0.5", {"block.0.attn"}),
    "scale_quarter": ("attention scale 0.25 whatever the config says", {"block.0.attn"}),
    "scale_before_nsad": ("the scale applied to the scores before NSAD instead of to A @ v", {"block.0.attn"}),
    "head_order_jH": ("head channel order c = j * H + h instead of h * d + j", {"block.0.attn"}),
    "softmax_scores": ("a softmax over the keys applied to the scores (a ViT habit)", {"block.0.attn"}),
    "q_bias_dropped": ("the q linear's bias dropped", {"block.0.attn"}),
    # MLP (§4.6)
    "fc1_bias_dropped": ("the MLP's fc1 bias dropped", {"block.0.mlp"}),
    # BatchNorm (§4.3)
    "bn_unbiased_normalization": ("BatchNorm normalizes with the unbiased variance", {"stem"}),
    "bn_momentum_reversed": ("running = momentum * old + (1 - momentum) * batch", {"stem"}),
    "bn_stats_per_step": ("BatchNorm per time step (statistics over B, running statistics updated T times)", {"stem"}),
    "bn_biased_running_var": ("running variance updated with the biased variance", {"stem"}),
    "bn_eps_ignored": ("BatchNorm eps 1e-3 instead of the config's bn_eps", {"stem"}),
    "bn_momentum_default": ("BatchNorm momentum 0.1 whatever the config says", {"stem"}),
    # stem (§4.4) and head (§4.7)
    "direct_encoding_first_step": ("the image fed at t = 0 only (zeros after)", {"stem"}),
    "dvs_split_ignored": ("the CIFAR stem (max-pools after stages 3 and 4) even where sps is dvs", {"stem"}),
    "maxpool_split_ties": ("max-pool gradient split equally over tied maxima", {"grad"}),
    "token_col_major": ("tokens in column-major order n = col * h + row", {"stem"}),
    "rpe_residual_missing": ("the RPE branch replaces the tokens instead of being added", {"stem"}),
    "pool_last_step": ("the head pools only the last time step", {"head"}),
    "label_smoothing": ("cross-entropy with label smoothing 0.1", {"head"}),
}
DEFAULT_ALPHA = {"sigmoid": 4.0, "atan": 2.0}


# ----------------------------------------------------------------------------- spikes
class Step(torch.autograd.Function):
    """Heaviside forward (``x >= 0``, or ``x > 0`` with ``strict``); the surrogate's derivative backward
    (``hard``: none, the step's own zero derivative)."""

    @staticmethod
    def forward(ctx, x, name, alpha, strict, mutants):
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha, ctx.mutants = name, alpha, mutants
        return ((x > 0) if strict else (x >= 0)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.name == "sigmoid" or "surrogate_always_sigmoid" in ctx.mutants:
            alpha = DEFAULT_ALPHA["sigmoid"] if ctx.name != "sigmoid" else ctx.alpha  # the sigmoid's own alpha
            sig = torch.sigmoid(alpha * x)
            sg = alpha * sig * (1 - sig)
        else:
            c = math.pi if "atan_constant" in ctx.mutants else math.pi / 2
            sg = (ctx.alpha / 2) / (1 + (c * ctx.alpha * x) ** 2)
        return grad * sg, None, None, None, None


def lif(x, *, tau_m, v_threshold, decay_input, detach_reset, surrogate, alpha, mutants=()):
    """Multi-step LIF over the leading axis, hard reset to 0."""
    if "decay_input_flipped" in mutants:
        decay_input = not decay_input
    if "alpha_ignored" in mutants:
        alpha = DEFAULT_ALPHA[surrogate]
    if "tau_m_fixed_2" in mutants:
        tau_m = 2.0
    if "reset_always_detached" in mutants:
        detach_reset = True
    strict = "lif_strict_threshold" in mutants
    detach = detach_reset and "reset_not_detached" not in mutants
    k = 1.0 - 1.0 / tau_m
    v, out = torch.zeros_like(x[0]), []
    for t in range(x.shape[0]):
        h = k * v + (x[t] / tau_m if decay_input else x[t])
        s = Step.apply(h - v_threshold, surrogate, alpha, strict, mutants)
        s_reset = s.detach() if detach else s
        v = h - v_threshold * s_reset if "soft_reset" in mutants else h * (1 - s_reset)
        out.append(s)
    return torch.stack(out)


# ----------------------------------------------------------------------------- TASA and NSAD
def round_half_away(x):
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def tasa(s, weight, bias, tau, window, mutants=()):
    """sum over lags of 2^(-tau_int lag) s[t - lag], then x @ W.T + b; tau_int straight through."""
    if "tau_floor" in mutants:
        r = torch.floor(tau)
    elif "tau_half_away" in mutants:
        r = round_half_away(tau)
    else:
        r = torch.round(tau)
    if "tau_no_ste" in mutants:
        tau_int = torch.clamp(r, min=0.0)
    elif "tau_clip_no_grad" in mutants:
        tau_int = torch.clamp(tau + (r - tau).detach(), min=0.0)
    else:
        tau_int = tau + (torch.clamp(r, min=0.0) - tau).detach()
    window = window + 1 if "window_plus_one" in mutants and window > 1 else window
    window = 3 if "window_fixed_3" in mutants and window > 1 else window
    T = s.shape[0]
    out = 0
    for lag in range(min(window, T)):
        shifted = torch.cat([torch.zeros_like(s[:lag]), s[: T - lag]])  # s[t - lag]
        m = lag + 1 if "attenuation_m_plus_1" in mutants and window > 1 else lag
        term = torch.pow(2.0, -tau_int * m) * shifted
        if "bias_per_lag" in mutants and bias is not None:
            out = out + F.linear(term, weight, bias)
        else:
            out = out + F.linear(term, weight)
    if "bias_per_lag" not in mutants and bias is not None:
        out = out + bias
    return out


def nsad(scores, params, *, rounding, surrogate, alpha, mutants=()):
    """A = round(1(S > u) g(S)), g = a S + b (S - c)^2 + d / (1 + exp(S - e)), straight-through rounding."""
    a, b, c, d, e, u = (params[:, j].reshape(-1, 1, 1) for j in range(6))
    sig = torch.sigmoid(scores - e) if "nsad_sigmoid_sign" in mutants else torch.sigmoid(-(scores - e))
    g = a * scores + b * (scores - c) ** 2 + d * sig
    if "nsad_gate_no_surrogate" in mutants:
        gate = (scores > u).to(scores.dtype)
    else:
        gate = Step.apply(scores - u, surrogate, alpha, "nsad_gate_ge" not in mutants, mutants)
    f = gate * g
    if rounding == "floor" and "nsad_floor_ignored" in mutants:
        rounding = "nearest"
    if rounding == "floor" or "nsad_floor" in mutants:
        rounded = torch.floor(f)
    elif "nsad_half_away" in mutants:
        rounded = round_half_away(f)
    else:
        rounded = torch.round(f)
    if "nsad_clamp_negative" in mutants:
        rounded = torch.clamp(rounded, min=0.0)
    return f + (rounded - f).detach()


# ----------------------------------------------------------------------------- BatchNorm and max-pool
def batchnorm(x, P, St, new_state, name, cfg, mutants=()):
    """Training-mode BatchNorm of ``x`` ``(T*B, C, ...)``: statistics per channel over every other axis."""
    axes = [i for i in range(x.dim()) if i != 1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    n = x.numel() // x.shape[1]
    mean = x.mean(dim=axes)
    var = ((x - mean.reshape(shape)) ** 2).mean(dim=axes)  # biased
    var_norm = var * n / (n - 1) if "bn_unbiased_normalization" in mutants else var
    eps = 1e-3 if "bn_eps_ignored" in mutants else cfg["bn_eps"]
    y = (x - mean.reshape(shape)) / torch.sqrt(var_norm.reshape(shape) + eps)
    y = y * P[f"{name}.weight"].reshape(shape) + P[f"{name}.bias"].reshape(shape)
    m = 0.1 if "bn_momentum_default" in mutants else cfg["bn_momentum"]
    keep, take = (m, 1 - m) if "bn_momentum_reversed" in mutants else (1 - m, m)
    running_var = var if "bn_biased_running_var" in mutants else var * n / (n - 1)
    new_state[f"{name}.running_mean"] = keep * St[f"{name}.running_mean"] + take * mean.detach()
    new_state[f"{name}.running_var"] = keep * St[f"{name}.running_var"] + take * running_var.detach()
    new_state[f"{name}.num_batches_tracked"] = St[f"{name}.num_batches_tracked"] + 1
    return y


def batchnorm_per_step(x, P, St, new_state, name, cfg, T):
    """The ``bn_stats_per_step`` mutant: one BatchNorm call per time step, each updating the running statistics."""
    outs, state = [], dict(St)
    for xt in x.unflatten(0, (T, -1)):
        step_state = {}
        outs.append(batchnorm(xt, P, state, step_state, name, cfg))
        state.update(step_state)
    new_state.update({k: v for k, v in state.items() if k.startswith(name + ".")})
    return torch.cat(outs)


def bn(x, P, St, new_state, name, cfg, T, mutants):
    if "bn_stats_per_step" in mutants:
        return batchnorm_per_step(x, P, St, new_state, name, cfg, T)
    return batchnorm(x, P, St, new_state, name, cfg, mutants)


def maxpool(x, mutants=()):
    """MaxPool(3, 2, 1) of ``(M, C, H, W)``; the gradient goes to the first maximum of a window (PyTorch's CPU
    kernel), or with ``maxpool_split_ties`` is split equally over the tied maxima."""
    if "maxpool_split_ties" not in mutants:
        return F.max_pool2d(x, 3, 2, 1)
    M, C, H, W = x.shape
    cols = F.unfold(F.pad(x, (1, 1, 1, 1), value=-1e9), 3, stride=2).reshape(M, C, 9, -1)  # (M, C, 9, L)
    top = cols.max(dim=2, keepdim=True).values
    ties = (cols == top).to(x.dtype)
    out = (cols * (ties / ties.sum(dim=2, keepdim=True)).detach()).sum(dim=2)
    return out.reshape(M, C, (H + 1) // 2, (W + 1) // 2)


def bn_tokens(x, P, St, new_state, name, cfg, mutants):
    """BatchNorm1d of tokens ``(T, B, N, D)``: statistics over T, B and N per channel D."""
    T = x.shape[0]
    y = bn(x.flatten(0, 1).transpose(1, 2), P, St, new_state, name, cfg, T, mutants)  # (TB, D, N)
    return y.transpose(1, 2).reshape(x.shape)


# ----------------------------------------------------------------------------- the model
def model(P, St, x, cfg, mutants=()):
    """``(logits, new_state, act)`` for images ``x`` ``(B, C, S, S)``."""
    default = dict(DEFAULT_ALPHA, sigmoid=2.0) if "sigmoid_alpha_default" in mutants else DEFAULT_ALPHA
    alpha = cfg["alpha"] if cfg["alpha"] is not None else default[cfg["surrogate"]]
    theta = 1.0 if "v_threshold_fixed_1" in mutants else cfg["v_threshold"]
    opts = dict(
        tau_m=cfg["tau_m"],
        v_threshold=theta,
        decay_input=cfg["decay_input"],
        detach_reset=cfg["detach_reset"],
        surrogate=cfg["surrogate"],
        alpha=alpha,
        mutants=mutants,
    )
    T, B, D, H = cfg["T"], x.shape[0], cfg["dim"], cfg["heads"]
    new_state, act = {}, {}
    frames = x.unsqueeze(0).expand(T, *x.shape)  # (T, B, C, S, S)
    if "direct_encoding_first_step" in mutants:
        frames = torch.cat([x.unsqueeze(0), torch.zeros_like(frames[1:])])

    h = frames
    cifar = cfg["sps"] == "cifar" or "dvs_split_ignored" in mutants
    pools = (False, False, True, True) if cifar else (True,) * 4
    for i, conv in enumerate(("proj_conv", "proj_conv1", "proj_conv2", "proj_conv3", "rpe_conv")):
        z = F.conv2d(h.flatten(0, 1), P[f"patch_embed.{conv}.weight"], padding=1)  # (TB, C', S', S')
        name = "patch_embed." + ("rpe_bn" if conv == "rpe_conv" else conv.replace("conv", "bn"))
        s = lif(bn(z, P, St, new_state, name, cfg, T, mutants).unflatten(0, (T, B)), **opts)  # (T, B, C', S', S')
        act["patch_embed." + ("rpe" if conv == "rpe_conv" else f"stage{i}")] = s
        if conv == "rpe_conv":
            h = s if "rpe_residual_missing" in mutants else h + s
        elif pools[i]:
            h = maxpool(s.flatten(0, 1), mutants).unflatten(0, (T, B))
        else:
            h = s
    if "token_col_major" in mutants:
        h = h.transpose(3, 4)
    h = h.flatten(3).transpose(2, 3)  # (T, B, N, D)
    act["patch_embed.out"] = h
    N, d = h.shape[2], D // H
    window = cfg["window"] if cfg["tasa"] else 1
    scale = 0.25 if "scale_quarter" in mutants else cfg["scale"]

    def split(z):  # (T, B, N, D) -> (T, B, H, N, d)
        if "head_order_jH" in mutants:
            return z.reshape(T, B, N, d, H).permute(0, 1, 4, 2, 3)
        return z.reshape(T, B, N, H, d).transpose(2, 3)

    def merge(z):  # (T, B, H, N, d) -> (T, B, N, D)
        if "head_order_jH" in mutants:
            return z.permute(0, 1, 3, 4, 2).reshape(T, B, N, D)
        return z.transpose(2, 3).reshape(T, B, N, D)

    for i in range(cfg["depth"]):
        pre = f"block.{i}.attn"
        tau = P.get(f"{pre}.tau", torch.tensor(0.0, dtype=torch.float64))

        def site(inp, name):
            per_site = name == "proj" and "tau_per_site_ignored" not in mutants
            tau_ = P.get(f"{pre}.proj_tau", tau) if per_site else tau
            bias = P.get(f"{pre}.{name}_linear.bias")
            if name == "q" and "q_bias_dropped" in mutants:
                bias = None
            z = tasa(inp, P[f"{pre}.{name}_linear.weight"], bias, tau_, window, mutants)
            return lif(bn_tokens(z, P, St, new_state, f"{pre}.{name}_bn", cfg, mutants), **opts)  # (T, B, N, D)

        for name in "qkv":
            act[f"{pre}.{name}"] = split(site(h, name))  # (T, B, H, N, d)
        q, k, v = act[f"{pre}.q"], act[f"{pre}.k"], act[f"{pre}.v"]
        act[f"{pre}.scores"] = q @ k.transpose(-1, -2)  # (T, B, H, N, N)
        A = act[f"{pre}.scores"]
        if "softmax_scores" in mutants:
            A = torch.softmax(A, dim=-1)
        if cfg["nsad"]:
            inp = A * scale if "scale_before_nsad" in mutants else A
            A = nsad(
                inp,
                P[f"{pre}.nsad"],
                rounding=cfg["nsad_rounding"],
                surrogate=cfg["surrogate"],
                alpha=alpha,
                mutants=mutants,
            )
        act[f"{pre}.A"] = A
        y = A @ v if "scale_before_nsad" in mutants and cfg["nsad"] else (A @ v) * scale
        threshold = 1.0 if "attn_threshold_1" in mutants else cfg["attn_v_threshold"]
        act[f"{pre}.y"] = lif(merge(y), **dict(opts, v_threshold=threshold))
        act[f"{pre}.out"] = site(act[f"{pre}.y"], "proj")
        h = h + act[f"{pre}.out"]

        pre = f"block.{i}.mlp"
        fc1_bias = None if "fc1_bias_dropped" in mutants else P[f"{pre}.fc1_linear.bias"]
        z = F.linear(h, P[f"{pre}.fc1_linear.weight"], fc1_bias)
        act[f"{pre}.hidden"] = lif(bn_tokens(z, P, St, new_state, f"{pre}.fc1_bn", cfg, mutants), **opts)
        z = F.linear(act[f"{pre}.hidden"], P[f"{pre}.fc2_linear.weight"], P[f"{pre}.fc2_linear.bias"])
        act[f"{pre}.out"] = lif(bn_tokens(z, P, St, new_state, f"{pre}.fc2_bn", cfg, mutants), **opts)
        h = h + act[f"{pre}.out"]
        act[f"block.{i}.out"] = h
    act["pooled"] = h[-1].mean(dim=1) if "pool_last_step" in mutants else h.mean(dim=(0, 2))  # (B, D)
    return F.linear(act["pooled"], P["head.weight"], P["head.bias"]), new_state, act


# ----------------------------------------------------------------------------- golden layout
def run(golden, mutants=()):
    """Every output and gradient of a golden file, computed here with ``mutants`` on: ``{key: np.ndarray}``."""
    unknown = set(mutants) - set(MUTANTS)
    if unknown:
        raise ValueError(f"mutants must be among MUTANTS, got {sorted(unknown)}")
    mutants = frozenset(mutants)

    def tensor(key, grad=False):
        return torch.tensor(np.asarray(golden[key]), dtype=torch.float64, requires_grad=grad)

    def options(kernel):
        return json.loads(str(golden[f"{kernel}/options"]))

    out = {}
    x = tensor("lif/in/x", grad=True)
    o = options("lif")
    if "v_threshold_fixed_1" in mutants:
        o["v_threshold"] = 1.0
    spikes = lif(x, **o, mutants=mutants)
    (spikes * tensor("lif/in/dspikes")).sum().backward()
    out["lif/out/spikes"], out["lif/grad/x"] = spikes, x.grad

    if "tasa/options" in golden:
        s, w, b, tau = (tensor(f"tasa/in/{k}", grad=True) for k in ("s", "weight", "bias", "tau"))
        y = tasa(s, w, b, tau, options("tasa")["window"], mutants)
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

    if "nsad/options" in golden:
        o = options("nsad")
        scores, params = tensor("nsad/in/scores", grad=True), tensor("nsad/in/params", grad=True)
        kw = dict(rounding=o["rounding"], surrogate=o["surrogate"], alpha=o["alpha"], mutants=mutants)
        A = nsad(scores, params, **kw)
        (A * tensor("nsad/in/dA")).sum().backward()
        grid = torch.arange(o["head_dim"] + 1, dtype=torch.float64).expand(params.shape[0], 1, -1)
        out.update(
            {
                "nsad/out/A": A,
                "nsad/grad/scores": scores.grad,
                "nsad/grad/params": params.grad,
                "nsad/out/table": nsad(grid, params, **kw)[:, 0],
            }
        )

    cfg = json.loads(str(golden["config"]))
    frozen = (".tau", ".proj_tau") if cfg["frozen_tau"] else ()
    P = {k[6:]: tensor(k, grad=not k.endswith(frozen)) for k in golden if k.startswith("param/")}
    St = {k[6:]: torch.tensor(np.asarray(golden[k])) for k in golden if k.startswith("state/")}
    logits, new_state, act = model(P, St, tensor("input"), cfg, mutants)
    smoothing = 0.1 if "label_smoothing" in mutants else 0.0
    loss = F.cross_entropy(logits, torch.tensor(np.asarray(golden["target"])), label_smoothing=smoothing)
    loss.backward()
    out.update({"logits": logits, "loss": loss})
    out.update({f"new_state/{k}": v for k, v in new_state.items()})
    out.update({f"act/{k}": v for k, v in act.items()})
    if cfg["frozen_u"] and "frozen_u_ignored" not in mutants:
        for k, p in P.items():
            if k.endswith(".nsad"):
                p.grad[:, 5] = 0.0
    out.update(
        {f"grad/{k}": p.grad if p.grad is not None else torch.zeros_like(p) for k, p in P.items() if p.requires_grad}
    )
    return {k: v.detach().numpy() for k, v in out.items()}


# ----------------------------------------------------------------------------- the catalog
def catalog(refs: dict, compare, rtol: float = 1e-10) -> dict:
    """``{mutant: (case, first departure) or None}``: for each mutant, the first case (in the order of
    ``refs``, the suite's) whose comparison fails, and the first key in forward order that departs.
    ``compare``: ``ds2ta_ref.golden.compare``."""
    found = {}
    for name in MUTANTS:
        found[name] = None
        for case, ref in refs.items():
            result = compare(ref, run(ref, [name]), rtol=rtol)
            if not result.passed:
                found[name] = (case, result.first_departure)
                break
    return found


def catalog_table(found: dict) -> str:
    """The mutation table of docs/golden.md (markdown)."""
    lines = ["| mutant | what it does | case that catches it | first departure |", "|---|---|---|---|"]
    for name, hit in found.items():
        case, key = hit if hit else ("none", "-")
        lines.append(f"| `{name}` | {MUTANTS[name][0]} | `{case}` | `{key}` |")
    return "\n".join(lines)


def rates_table(manifest: dict) -> str:
    """The firing-rate table of docs/golden.md (markdown) from a suite's ``suite.json``."""
    lines = ["| case | LIF sites | lowest rate | highest rate | attention LIF (`attn.y`) |", "|---|---|---|---|---|"]
    for case in manifest["cases"]:
        rates = {k: v for k, v in case["firing_rates"].items() if k != "lif kernel"}
        low, high = min(rates, key=rates.get), max(rates, key=rates.get)
        attn = ", ".join(f"{rates[k]:.3f}" for k in rates if k.endswith("attn.y"))
        lines.append(
            f"| `{case['name']}` | {len(rates)} | {rates[low]:.3f} (`{low}`) | {rates[high]:.3f} (`{high}`) | {attn} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # print docs/golden.md's two tables
    import tempfile

    from ds2ta_ref import golden

    with tempfile.TemporaryDirectory() as tmp:
        golden.write_suite(tmp)
        with open(f"{tmp}/suite.json") as f:
            print(rates_table(json.load(f)), end="\n\n")
        print(catalog_table(catalog({name: golden.read(f"{tmp}/{name}.npz") for name in golden.CASES}, golden.compare)))
