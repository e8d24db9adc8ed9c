"""The PyTorch model against the NumPy reference in float64, configuration by configuration.

:func:`compare` runs one training-mode step of both models from the same
parameters on the same batch (loss: cross-entropy with label smoothing) and
returns the worst relative error of the logits, the loss, every parameter
gradient and every updated BatchNorm statistic. :data:`CASES` are the
configurations the test suite holds to ``1e-10``; ``python -m
ds2ta_ref.torch.crosscheck`` prints the table.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import layers
from .. import model as np_model
from ..gradcheck import firing_model_inputs, rel_error, small_model_config
from .model import from_numpy

__all__ = ["CASES", "case_inputs", "compare", "golden_candidate", "main"]


def _random_nsad(params, rng):
    """NSAD parameters that make a non-trivial table: every coefficient non-zero, thresholds in [0, 1.5]."""
    for name in [k for k in params if k.endswith(".nsad")]:
        H = params[name].shape[0]
        cols = [
            rng.uniform(0.5, 1.5, H),
            rng.uniform(-0.2, 0.2, H),
            rng.uniform(0, 3, H),
            rng.uniform(-2, 2, H),
            rng.uniform(0, 4, H),
            rng.uniform(0, 1.5, H),
        ]
        params[name] = np.stack(cols, axis=1)


def _odd_tau(params, rng):
    """``tau`` values away from integers and on both sides of 0, so rounding and the clip both act."""
    for name in [k for k in params if k.endswith(("tau",))]:
        params[name] = np.array(rng.choice([-0.8, 0.3, 1.4, 2.6]))


SMALL = small_model_config()
# name -> (config, gain of the BatchNorm weights, preparation of the parameters, event input?)
CASES = {
    "ds2ta": (SMALL, 25.0, None, False),
    "spikformer_decay_input": (SMALL.replace(tasa=False, nsad=False, decay_input=True), 2.0, None, False),
    "random_nsad_tables": (SMALL, 25.0, _random_nsad, False),
    "random_nsad_floor": (SMALL.replace(nsad_rounding="floor"), 25.0, _random_nsad, False),
    "tau_per_site": (SMALL.replace(tau_per_site=True, window=3, T=3), 25.0, _odd_tau, False),
    "frozen_tau": (SMALL.replace(frozen_tau=True), 25.0, _odd_tau, False),
    "frozen_u": (SMALL.replace(frozen_u=True), 25.0, _random_nsad, False),
    "dvs_splitter_events": (
        SMALL.replace(img_size=32, sps="dvs", qkv_bias=False, scale=0.25, depth=1),
        25.0,
        None,
        True,
    ),
    "detach_reset_false": (SMALL.replace(detach_reset=False), 25.0, None, False),
    "atan": (SMALL.replace(surrogate="atan"), 25.0, _random_nsad, False),
    "atan_alpha3_decay_input": (SMALL.replace(surrogate="atan", alpha=3.0, decay_input=True), 25.0, None, False),
}


def case_inputs(name: str, seed: int = 0):
    """``(cfg, params, state, x, labels)`` of a case, float64, from ``default_rng(seed)``."""
    cfg, gain, prepare, events = CASES[name]
    rng = np.random.default_rng(seed)
    params, state, x = firing_model_inputs(cfg, rng, batch=3, gain=gain)
    if prepare is not None:
        prepare(params, rng)
    if events:
        x = (rng.random((cfg.T,) + x.shape) < 0.3).astype(np.float64)  # (T, B, C, H, W) event frames
    labels = rng.integers(0, cfg.num_classes, size=x.shape[-4])
    return cfg, params, state, x, labels


def compare(
    cfg, params, state, x, labels, *, label_smoothing: float = 0.1, absolute: bool = False, device: str = "cpu"
) -> dict[str, float]:
    """One float64 training-mode step of both models: ``{quantity: relative error}``.

    Keys: ``logits``, ``loss``, ``grad.<name>`` for every trainable parameter
    (and the check that a frozen ``tau`` gets no gradient in either), ``state.<name>``
    for every running statistic. Gradients that are exactly zero in theory
    (biases feeding a training-mode BatchNorm) are compared against the largest
    gradient of the model (``floor`` of :func:`ds2ta_ref.gradcheck.rel_error`):
    their computed values are rounding noise of the size of that gradient times
    the machine epsilon, on both sides. ``absolute=True``: the largest absolute
    differences instead. ``device``: where the PyTorch model runs (e.g. ``"cuda"``).
    """
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    logits, new_state, cache = np_model.forward(x, params, state, cfg, training=True)
    loss, dlogits = layers.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    _, grads = np_model.backward(dlogits, cache)

    net = from_numpy(params, state, cfg).to(device).train()
    out = net(torch.from_numpy(np.asarray(x, dtype=np.float64)).to(device))
    t_loss = F.cross_entropy(out, torch.from_numpy(labels).to(device), label_smoothing=label_smoothing)
    t_loss.backward()
    out = out.cpu()
    t_grads = {k: p.grad.cpu() for k, p in net.named_parameters() if p.grad is not None}
    if set(t_grads) != set(grads):
        raise AssertionError(
            f"gradients for different parameters: numpy only {sorted(set(grads) - set(t_grads))}, "
            f"torch only {sorted(set(t_grads) - set(grads))}"
        )
    scale = max(float(np.abs(g).max()) for g in grads.values())
    floor = {k: scale if k.endswith("_linear.bias") else 0.0 for k in grads}  # the biases feeding a BatchNorm
    if absolute:

        def err(a, b, _floor=0.0):
            return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    else:
        err = rel_error
    errors = {
        "logits": err(logits, out.detach().numpy()),
        "loss": abs(loss - t_loss.item()) / (1.0 if absolute else abs(loss)),
    }
    errors.update({f"grad.{k}": err(grads[k], t_grads[k].numpy(), floor[k]) for k in grads})
    sd = {k: v.cpu() for k, v in net.state_dict().items()}
    errors.update(
        {
            f"state.{k}": err(np.asarray(v, dtype=np.float64), sd[k].numpy().astype(np.float64))
            for k, v in new_state.items()
        }
    )
    return errors


def main(argv=None) -> None:
    """Print the worst relative and absolute error per case and kind of quantity."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ds2ta_ref.torch.crosscheck", description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="where the PyTorch model runs: cpu, cuda, ...")
    device = ap.parse_args(argv).device
    print(f"device: {device}")
    print("case | logits rel (abs) | loss rel | worst gradient rel (abs) | worst BN statistic rel (abs)")
    print("---|---|---|---|---")
    for name in CASES:
        inputs = case_inputs(name)
        rel, ab = compare(*inputs, device=device), compare(*inputs, absolute=True, device=device)

        def worst(prefix):
            keys = [k for k in rel if k.startswith(prefix)]
            k = max(keys, key=rel.get)
            return f"{rel[k]:.1e} ({max(ab[j] for j in keys):.1e})" + (f" {k[5:]}" if prefix == "grad." else "")

        print(
            f"{name} | {rel['logits']:.1e} ({ab['logits']:.1e}) | {rel['loss']:.1e} | {worst('grad.')} | "
            f"{worst('state.')}"
        )


# --------------------------------------------------------------------------- golden files
def golden_candidate(ref: dict) -> dict[str, np.ndarray]:
    """The outputs of ``ds2ta_ref.torch`` for the inputs of a golden file (:mod:`ds2ta_ref.golden`), float64.

    Every kernel key (``lif/``, ``tasa/``, ``nsad/``), ``logits``, ``loss``, every
    ``grad/`` and ``new_state/``, and the activations that are module outputs
    (``act/patch_embed.out``, ``act/block.{i}.attn.out``, ``act/block.{i}.mlp.out``,
    ``act/block.{i}.out``, ``act/pooled``). Not produced: the activations inside
    the stem's stages and the attention block and the MLP (``patch_embed.stage{k}``,
    ``patch_embed.rpe``, ``q``, ``k``, ``v``, ``scores``, ``A``, ``y``, ``hidden``), which the
    fused modules do not expose. ``ref``: a golden file's path or arrays. Compare with
    ``golden.compare(ref, candidate, only=list(candidate))``.
    """
    import json

    from .. import golden
    from . import functional as TF

    def t(key, grad=False):
        return torch.tensor(np.asarray(ref[key], dtype=np.float64), requires_grad=grad)

    ref, cfg, _ = golden.read_golden(ref)  # checked: a readable format, a valid config, every key
    out = {}
    # kernels (tasa/ and nsad/ only where the config uses them)
    options = json.loads(str(ref["lif/options"]))
    x = t("lif/in/x", True)
    spikes = TF.lif(x, **options)
    spikes.backward(t("lif/in/dspikes"))
    out.update({"lif/out/spikes": spikes, "lif/grad/x": x.grad})
    if "tasa/options" in ref:
        window = json.loads(str(ref["tasa/options"]))["window"]
        s, w, b, tau = (t(f"tasa/in/{k}", True) for k in ("s", "weight", "bias", "tau"))
        y = TF.tasa_mix(s, tau, window) @ w.T + b
        y.backward(t("tasa/in/dout"))
        out.update(
            {
                "tasa/out/out": y,
                "tasa/grad/s": s.grad,
                "tasa/grad/weight": w.grad,
                "tasa/grad/bias": b.grad,
                "tasa/grad/tau": tau.grad,
            }
        )
    if "nsad/options" in ref:
        options = json.loads(str(ref["nsad/options"]))
        scores, params = t("nsad/in/scores", True), t("nsad/in/params", True)
        table, _ = TF.nsad_tables(
            params,
            options["head_dim"],
            surrogate=options["surrogate"],
            alpha=options["alpha"],
            rounding=options["rounding"],
        )
        A = TF.nsad(scores, params, **options)
        A.backward(t("nsad/in/dA"))
        out.update(
            {"nsad/out/table": table, "nsad/out/A": A, "nsad/grad/scores": scores.grad, "nsad/grad/params": params.grad}
        )
    # the model
    net = from_numpy(
        {k[6:]: v for k, v in ref.items() if k.startswith("param/")},
        {k[6:]: v for k, v in ref.items() if k.startswith("state/")},
        cfg,
    ).train()
    hooks = [
        net.patch_embed.register_forward_hook(lambda m, i, o: out.__setitem__("act/patch_embed.out", o)),
        net.head.register_forward_hook(lambda m, i, o: out.__setitem__("act/pooled", i[0])),
    ]
    for i, block in enumerate(net.block):
        for name, module in (
            (f"block.{i}.attn.out", block.attn),
            (f"block.{i}.mlp.out", block.mlp),
            (f"block.{i}.out", block),
        ):
            hook = module.register_forward_hook  # type: ignore[union-attr]
            hooks.append(hook(lambda m, i, o, key=f"act/{name}": out.__setitem__(key, o)))
    logits = net(t("input"))
    for h in hooks:
        h.remove()
    loss = F.cross_entropy(logits, torch.from_numpy(np.asarray(ref["target"])))
    loss.backward()
    out.update({"logits": logits, "loss": loss})
    out.update({f"grad/{k}": p.grad for k, p in net.named_parameters() if p.grad is not None})
    out.update(
        {
            f"new_state/{k}": v
            for k, v in net.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        }
    )
    return {k: v.detach().numpy().copy() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


if __name__ == "__main__":
    main()
