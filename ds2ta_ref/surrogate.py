"""Surrogate gradients for the Heaviside spike function (docs/spec.md §1).

The forward pass of a spiking neuron always uses the step
``Heaviside(x) = 1 if x >= 0 else 0``. Its derivative is zero almost
everywhere, so backpropagation-through-time replaces it by the derivative
``sg(x)`` of a smooth *primal* that approximates the step:

===========  ========================================  =====================================  =========
name         primal                                    derivative ``sg(x)``                   default α
===========  ========================================  =====================================  =========
``sigmoid``  ``σ(αx) = 1 / (1 + exp(-αx))``            ``α σ(αx) (1 - σ(αx))``                4
``atan``     ``atan(π/2 α x) / π + 1/2``               ``(α/2) / (1 + (π/2 α x)^2)``          2
===========  ========================================  =====================================  =========

These are SpikingJelly's ``surrogate.Sigmoid`` and ``surrogate.ATan``. The
primal is also what the *smooth mode* of every kernel uses in its forward, so
that finite differences can check the hand-written backward exactly.

The sigmoid is evaluated with :func:`scipy.special.expit`, which is stable for
large ``|x|`` (the naive ``1 / (1 + exp(-αx))`` overflows for ``αx << 0``).

The derivatives take an optional ``out=`` array (it may be ``x`` itself), so that
the LIF backward can evaluate them into a buffer it reuses at every time step
instead of allocating fresh arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from scipy.special import expit

__all__ = [
    "Surrogate",
    "SURROGATES",
    "get",
    "resolve",
    "heaviside",
    "sigmoid_primal",
    "sigmoid_grad",
    "atan_primal",
    "atan_grad",
]


def heaviside(x: np.ndarray) -> np.ndarray:
    """The spike function ``1(x >= 0)`` (SpikingJelly's convention), same dtype as ``x``."""
    x = np.asarray(x)
    return (x >= 0).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


def sigmoid_primal(x: np.ndarray, alpha: float = 4.0) -> np.ndarray:
    """``σ(αx) = 1 / (1 + exp(-αx))``, computed without overflow."""
    with np.errstate(over="ignore"):  # alpha*x -> ±inf is fine: expit(±inf) = 1 or 0
        return expit(alpha * np.asarray(x))


def sigmoid_grad(x: np.ndarray, alpha: float = 4.0, *, out: np.ndarray | None = None) -> np.ndarray:
    """``d/dx σ(αx) = α σ(αx) (1 - σ(αx))``.

    Evaluated as the equal, even form ``(α/4) / cosh(α|x|/2)^2`` (with
    ``σ(z) = e^(z/2) / (e^(z/2) + e^(-z/2))`` one gets ``σ(z)(1 - σ(z)) = 1 / (4 cosh(z/2)^2)``):
    there is no ``1 - σ`` to cancel (the naive form loses all relative precision
    for large ``x > 0``), it takes five elementwise passes instead of ~7 with a
    sigmoid, and for large ``|x|`` the square overflows to ``inf`` and the
    result to the correct limit 0.

    Args:
        x: any shape.
        alpha: sharpness.
        out: optional array shaped like ``x`` (may be ``x`` itself) to write into.
    """
    x = np.asarray(x)
    out = np.abs(x, out=_float_out(x, out))  # |x|: the derivative is even
    with np.errstate(over="ignore"):  # α|x|/2, its cosh or the square -> inf gives the limit 0
        out *= alpha / 2  # α|x|/2
        np.cosh(out, out=out)
        out *= out  # cosh(α|x|/2)^2
    return np.divide(alpha / 4, out, out=out)


def atan_primal(x: np.ndarray, alpha: float = 2.0) -> np.ndarray:
    """``atan(π/2 α x) / π + 1/2``."""
    x = np.asarray(x)
    with np.errstate(over="ignore"):  # arctan(±inf) = ±pi/2 is the correct limit
        return np.arctan(np.pi / 2 * alpha * x) / np.pi + 0.5


def atan_grad(x: np.ndarray, alpha: float = 2.0, *, out: np.ndarray | None = None) -> np.ndarray:
    """``d/dx [atan(π/2 α x) / π + 1/2] = (α/2) / (1 + (π/2 α x)^2)``.

    ``out``: optional array shaped like ``x`` (may be ``x`` itself) to write into.
    """
    x = np.asarray(x)
    with np.errstate(over="ignore"):  # π/2 α x or its square -> inf gives the correct limit 0
        out = np.multiply(x, np.pi / 2 * alpha, out=_float_out(x, out))  # π/2 α x
        out *= out
    out += 1
    return np.divide(alpha / 2, out, out=out)


def _float_out(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``out``, or a new array shaped like ``x`` in its float dtype (integers -> float64)."""
    if out is not None:
        return out
    return np.empty(x.shape, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


class Surrogate(NamedTuple):
    """A surrogate: its name, smooth primal, derivative of that primal, and conventional α."""

    name: str
    primal: Callable[[np.ndarray, float], np.ndarray]
    grad: Callable[..., np.ndarray]  # grad(x, alpha, *, out=None)
    default_alpha: float


SURROGATES: dict[str, Surrogate] = {
    "sigmoid": Surrogate("sigmoid", sigmoid_primal, sigmoid_grad, 4.0),
    "atan": Surrogate("atan", atan_primal, atan_grad, 2.0),
}


def get(name: str, alpha: float | None = None) -> Surrogate:
    """Look up a surrogate by name, checking ``name`` and ``alpha``.

    Raises ``ValueError`` naming the argument for an unknown name (listing the
    valid ones) or a non-finite or non-positive ``alpha``.
    """
    if name not in SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, got {name!r}")
    if alpha is not None:
        if not np.isscalar(alpha) or not np.isfinite(alpha) or alpha <= 0:  # type: ignore[operator]
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    return SURROGATES[name]


def resolve(name: str, alpha: float | None) -> tuple[Surrogate, float]:
    """``(surrogate, alpha)`` with ``alpha=None`` meaning the surrogate's own default
    (the one place the default sharpness of each surrogate is written down)."""
    sg = get(name, alpha)
    return sg, (sg.default_alpha if alpha is None else float(alpha))
