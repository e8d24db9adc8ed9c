"""Numerical gradient checking (CS231n ``gradient_check.py`` style, llm.c's scalar trick).

A backward ``backward(dout, cache)`` computes the vector-Jacobian product
``dout^T J``. We check it against central differences of the scalar
``L(inputs) = sum(forward(inputs) * dout)`` for a random ``dout``::

    dL/dx_i ~= (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

in float64 on copies of the inputs (nothing the caller holds is touched and no
cache is reused across perturbed calls). Spiking forwards are piecewise
constant, so this check is run on the kernels' *smooth mode* (see
:mod:`ds2ta_ref.lif`).

The error measure is scale-aware, so that entries whose true gradient is ~0
do not dominate::

    rel_error(a, b) = max|a - b| / max(max|a|, max|b|, floor)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "rel_error",
    "numerical_vjp",
    "check_gradients",
    "format_report",
    "CASES",
    "TOLERANCE",
    "run_cases",
    "lif_case",
    "tasa_case",
    "nsad_case",
    "model_case",
    "small_model_config",
    "firing_model_inputs",
    "lif_input_away_from_threshold",
]


def rel_error(a: np.ndarray, b: np.ndarray, floor: float = 0.0) -> float:
    """Worst absolute difference relative to the larger of the two arrays' max magnitudes::

        max|a - b| / max(max|a|, max|b|, floor)

    ``floor`` turns the measure into an absolute one (scaled by ``1/floor``) for
    arrays whose true value is ~0, such as the gradient of a bias that feeds a
    training-mode BatchNorm (exactly zero; its finite differences are pure
    rounding noise). Zero when both arrays are zero. Shapes must match.
    """
    tiny = max(float(floor), 1e-300)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), tiny)
    return float(np.max(np.abs(a - b)) / scale)


def _float64_copies(inputs: Mapping[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            out[name] = value.astype(np.float64, copy=True)
        else:
            out[name] = value
    return out


def numerical_vjp(
    f: Callable[..., np.ndarray],
    inputs: Mapping[str, object],
    dout: np.ndarray,
    wrt: str,
    *,
    eps: float = 1e-6,
    indices: Sequence[tuple[int, ...]] | None = None,
) -> np.ndarray:
    """Central-difference estimate of ``d sum(f(**inputs) * dout) / d inputs[wrt]``.

    Args:
        f: maps keyword inputs to an output array (a forward without its cache).
        inputs: keyword arguments of ``f``; float arrays are copied to float64.
        dout: upstream gradient, shape of ``f``'s output.
        wrt: the name of the input to differentiate with respect to.
        eps: step of the central difference.
        indices: only these entries (multi-indices) are estimated; the rest of
            the returned array is NaN. ``None`` estimates every entry.

    Returns:
        An array shaped like ``inputs[wrt]`` (float64).
    """
    args = _float64_copies(inputs)
    dout = np.asarray(dout, dtype=np.float64)
    x = np.asarray(args[wrt], dtype=np.float64).copy()
    args[wrt] = x
    grad = np.full(x.shape, np.nan if indices is not None else 0.0)
    if indices is None:
        indices = list(np.ndindex(x.shape))
    for idx in indices:
        idx = tuple(idx)
        old = x[idx]
        x[idx] = old + eps
        plus = float(np.sum(np.asarray(f(**args), dtype=np.float64) * dout))
        x[idx] = old - eps
        minus = float(np.sum(np.asarray(f(**args), dtype=np.float64) * dout))
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def check_gradients(
    forward: Callable[..., tuple[np.ndarray, object]],
    backward: Callable[[np.ndarray, Any], object],
    inputs: Mapping[str, object],
    *,
    wrt: Sequence[str],
    rng: np.random.Generator,
    eps: float = 1e-6,
    max_entries: int | None = None,
    floor: float = 0.0,
) -> dict[str, float]:
    """Check a forward/backward pair against central differences, in float64.

    Args:
        forward: ``forward(**inputs) -> (out, cache)`` (in smooth mode for spiking kernels).
        backward: ``backward(dout, cache)`` returning the gradients either as a
            mapping from input name to array, or as a tuple/array in the order of ``wrt``.
        inputs: keyword arguments of ``forward``; float arrays are copied to float64.
        wrt: names of the inputs whose gradients are checked.
        rng: draws the random upstream gradient ``dout`` and the sampled entries.
        eps: central-difference step.
        max_entries: if set, check a random sample of at most this many entries
            of each input (for large parameter tensors).
        floor: passed to :func:`rel_error`: gradients below it in magnitude are
            compared absolutely (errors scaled by ``1/floor``).

    Returns:
        ``{name: rel_error(analytic, numerical)}`` over the checked entries: the
        worst relative error per argument.
    """
    args = _float64_copies(inputs)
    out, cache = forward(**args)
    dout = rng.standard_normal(np.shape(out))
    grads = backward(dout, cache)
    if isinstance(grads, np.ndarray) or not isinstance(grads, (Mapping, tuple, list)):
        grads = (grads,)
    if not isinstance(grads, Mapping):
        if len(grads) < len(wrt):
            raise ValueError(f"backward returned {len(grads)} gradients for wrt={list(wrt)}")
        grads = dict(zip(wrt, grads))

    def f(**kw):
        return forward(**kw)[0]

    report = {}
    for name in wrt:
        shape = np.shape(args[name])
        size = int(np.prod(shape, dtype=np.int64))
        indices = None
        if max_entries is not None and size > max_entries:
            flat = rng.choice(size, size=max_entries, replace=False)
            indices = [np.unravel_index(i, shape) for i in flat]
        numeric = numerical_vjp(f, args, dout, name, eps=eps, indices=indices)
        analytic = np.asarray(grads[name], dtype=np.float64)
        if analytic.shape != numeric.shape:
            raise ValueError(f"gradient for {name!r} has shape {analytic.shape}, expected {numeric.shape}")
        mask = ~np.isnan(numeric)
        report[name] = rel_error(analytic[mask], numeric[mask], floor)
    return report


def format_report(title: str, report: Mapping[str, float], tolerance: float | None = None) -> str:
    """One line per argument: ``name  worst relative error  [ok|FAIL]``."""
    lines = [title]
    for name, err in report.items():
        verdict = "" if tolerance is None else ("  ok" if err <= tolerance else "  FAIL")
        lines.append(f"  {name:<40s} {err:.2e}{verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- named cases
# The scenarios that check every hand-written backward, in one place: the CLI
# (``ds2ta-ref gradcheck``), the tests and notebook 01 use these.

#: Worst relative error accepted: kernels are checked on every entry, the whole
#: model on a sample of entries of every parameter tensor through many layers.
TOLERANCE = {"lif": 1e-7, "tasa": 1e-7, "nsad": 1e-7, "model": 1e-6}


def lif_input_away_from_threshold(
    rng: np.random.Generator, shape: tuple, *, margin: float = 1e-3, scale: float = 1.5, tries: int = 200, **lif_options
) -> np.ndarray:
    """A random LIF input whose pre-reset membrane stays ``margin`` away from the
    threshold at every step, so that no hard step flips under a finite-difference
    perturbation. ``lif_options`` are those of :func:`ds2ta_ref.lif.forward`."""
    from . import lif

    theta = lif_options.get("v_threshold", 1.0)
    for _ in range(tries):
        x = rng.standard_normal(shape) * scale + 0.5
        _, cache = lif.forward(x, **lif_options)
        if np.min(np.abs(cache.h - theta)) > margin:
            return x
    raise RuntimeError(f"could not draw an input of shape {shape} away from the threshold in {tries} tries")


def firing_model_inputs(cfg, rng: np.random.Generator, *, batch: int = 2, gain: float = 1.0):
    """``(params, state, x)`` for a whole-model check: initial parameters with random
    BatchNorm affine parameters (weights in ``[1, 2) * gain``, biases in ``[-0.2, 0.5)``)
    so that every layer of a tiny model fires, and images ``U(0, 1)`` of ``batch`` samples."""
    from . import params as _params

    params = _params.init_params(cfg, rng)
    for name, value in params.items():
        if "_bn" in name:
            params[name] = (
                rng.uniform(1.0, 2.0, value.shape) * gain
                if name.endswith("weight")
                else rng.uniform(-0.2, 0.5, value.shape)
            )
    x = rng.uniform(0, 1, size=(batch, cfg.in_channels, cfg.img_size, cfg.img_size))
    return params, _params.init_state(cfg), x


def lif_case(rng: np.random.Generator, *, shape=(4, 2, 3), **options) -> dict[str, float]:
    """LIF (``options`` of :func:`ds2ta_ref.lif.forward`) against finite differences in smooth mode."""
    from . import lif

    x = lif_input_away_from_threshold(rng, shape, **options)
    return check_gradients(lambda x: lif.forward(x, smooth=True, **options), lif.backward, {"x": x}, wrt=["x"], rng=rng)


def tasa_case(rng: np.random.Generator, *, window: int, T: int = 4) -> dict[str, float]:
    """TASA with continuous ``tau`` (the check mode): ``ds``, ``dweight``, ``dbias`` and ``dtau``."""
    from . import tasa

    inputs = {
        "s": rng.standard_normal((T, 2, 3, 5)),
        "weight": rng.standard_normal((6, 5)),
        "bias": rng.standard_normal(6),
        "tau": 0.7,
    }

    def fwd(s, weight, bias, tau):
        return tasa.forward(s, weight, bias, tau=tau, window=window, continuous_tau=True)

    def bwd(dout, cache):
        ds, dw, db, dtau = tasa.backward(dout, cache)
        return {"s": ds, "weight": dw, "bias": db, "tau": np.asarray(dtau)}

    return check_gradients(fwd, bwd, inputs, wrt=["s", "weight", "bias"] + (["tau"] if window > 1 else []), rng=rng)


def nsad_case(rng: np.random.Generator, *, head_dim: int = 8, heads: int = 3, **options) -> dict[str, float]:
    """NSAD in smooth mode (unrounded, gate = surrogate primal) with random parameters per head."""
    from . import nsad

    params = np.column_stack(
        [
            rng.uniform(-1, 1, heads),
            rng.uniform(-0.3, 0.3, heads),
            rng.uniform(0, head_dim, heads),
            rng.uniform(-2, 2, heads),
            rng.uniform(0, head_dim, heads),
            rng.uniform(0, 4, heads),
        ]
    )
    scores = rng.uniform(0, head_dim, (2, heads, 4, 4))
    return check_gradients(
        lambda scores, params: nsad.forward(scores, params, head_dim=head_dim, smooth=True, **options),
        nsad.backward,
        {"scores": scores, "params": params},
        wrt=["scores", "params"],
        rng=rng,
        eps=1e-5,
    )


def small_model_config(**changes):
    """A model small enough for finite differences: 8x8 images -> 4 tokens, two blocks,
    T = 2, TASA window 2, NSAD, and an attention scale large enough to fire."""
    from .config import ModelConfig

    return ModelConfig(
        img_size=8, in_channels=2, num_classes=3, T=2, depth=2, dim=16, heads=2, window=2, tau0=1.0, u0=1.0, scale=0.5
    ).replace(**changes)


def model_case(rng: np.random.Generator, cfg=None, *, max_entries: int = 4) -> dict[str, float]:
    """The whole model in smooth mode: a random sample of ``max_entries`` entries of every
    parameter tensor (``tau`` and NSAD included). ``floor=1e-3``: the biases that feed a
    training-mode BatchNorm have an exactly-zero gradient, compared absolutely."""
    from . import model

    cfg = small_model_config() if cfg is None else cfg
    params, state, x = firing_model_inputs(cfg, rng)

    def fwd(**p):
        logits, _, cache = model.forward(x, p, state, cfg, training=True, smooth=True)
        return logits, cache

    def grads_only(dlogits, cache):
        return model.backward(dlogits, cache)[1]

    return check_gradients(
        fwd, grads_only, params, wrt=model.trainable(cfg), rng=rng, max_entries=max_entries, floor=1e-3
    )


def _cases() -> dict[str, Callable[..., dict[str, float]]]:
    cases: dict[str, Callable[..., dict[str, float]]] = {}
    for decay_input in (False, True):
        for detach_reset in (True, False):
            for name in ("sigmoid", "atan"):
                cases[f"lif decay_input={decay_input} detach_reset={detach_reset} surrogate={name}"] = (
                    lambda rng, o=dict(decay_input=decay_input, detach_reset=detach_reset, surrogate=name): lif_case(
                        rng, **o
                    )
                )
    for window in (1, 3, 6):
        cases[f"tasa window={window} T=4 continuous tau"] = lambda rng, w=window: tasa_case(rng, window=w)
    cases["nsad smooth sigmoid"] = lambda rng: nsad_case(rng)
    cases["nsad smooth atan"] = lambda rng: nsad_case(rng, surrogate="atan")
    cases["model T=2 2 blocks TASA+NSAD"] = lambda rng: model_case(rng)
    cases["model undetached reset, per-site tau, decay_input, atan"] = lambda rng: model_case(
        rng,
        small_model_config(detach_reset=False, tau_per_site=True, decay_input=True, surrogate="atan"),
        max_entries=3,
    )
    return cases


#: Every named check: ``{name: case(rng) -> {argument: worst relative error}}``; the
#: first word of a name is its kernel, the key of :data:`TOLERANCE`.
CASES = _cases()


def run_cases(names: Sequence[str] | None = None, *, seed: int = 0):
    """Run the named cases (all by default), each with its own ``default_rng([seed, i])``.

    Yields ``(name, report, tolerance)``; a name may also be a kernel (``"lif"``) to run all of its cases.
    """
    selected = list(CASES) if not names else [n for n in CASES if n in names or n.split()[0] in names]
    unknown = sorted(set(names or ()) - set(CASES) - set(TOLERANCE))
    if unknown:
        raise ValueError(
            f"unknown gradient-check case(s) {unknown}; choose kernels {list(TOLERANCE)} or cases {list(CASES)}"
        )
    for name in selected:
        rng = np.random.default_rng([seed, list(CASES).index(name)])
        yield name, CASES[name](rng), TOLERANCE[name.split()[0]]
