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

from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["rel_error", "numerical_vjp", "check_gradients", "format_report"]


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


def _float64_copies(inputs: Mapping[str, object]) -> dict[str, object]:
    out = {}
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
    backward: Callable[[np.ndarray, object], object],
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
            raise ValueError(
                f"gradient for {name!r} has shape {analytic.shape}, expected {numeric.shape}"
            )
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
