"""Argument validation shared by every kernel: clear errors that name the argument."""

from __future__ import annotations

import numbers

import numpy as np


class NonFiniteError(ValueError):
    """An array or number that must be finite holds NaN or infinity. A ``ValueError``, so
    callers that catch bad input keep working; the training loop catches this class to
    tell a divergence (a tensor overflowed) from any other bad input."""


def as_float_array(value, name: str, *, min_ndim: int = 0, what: str = "") -> np.ndarray:
    """``value`` as a float32/float64 array (integers and booleans become float64).

    Raises ``ValueError`` naming ``name`` if the array is not numeric, has fewer
    than ``min_ndim`` axes, or holds NaN or infinity.
    """
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes{what}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{name} must be finite, but it contains NaN or infinity")
    return arr


def check_shape(arr: np.ndarray, shape: tuple, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ``arr.shape != shape``."""
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(arr.shape)}")


def check_finite_scalar(value, name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    """``value`` as a float, finite and (optionally) ``>= minimum`` (``> minimum`` if strict)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    if isinstance(value, np.ndarray) and value.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {value.shape}")
    value = float(value)
    if not np.isfinite(value):
        raise NonFiniteError(f"{name} must be finite, got {value!r}")
    if minimum is not None:
        if strict and value <= minimum:
            raise ValueError(f"{name} must be > {minimum}, got {value!r}")
        if not strict and value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def check_int(value, name: str, *, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; rejects floats and booleans."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
