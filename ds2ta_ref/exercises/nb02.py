"""Exercises of notebook 02 (TASA), checked against :mod:`ds2ta_ref.tasa`."""

import numpy as np

from .. import tasa
from . import Exercise


def row_sums(tau: float, window: int, T: int) -> np.ndarray:
    """Reference of 02.1: the row sums of the mixing matrix ``M`` (``x_mix = M s``), from ``tasa.forward``."""
    eye = np.eye(T)  # one spike per input feature j, at time j
    M, _ = tasa.forward(eye, eye, None, tau=tau, window=window)  # M[t, m]
    return M.sum(axis=1)


def backward(dout, s, weight, tau, window):
    """Reference of 02.2: ``(ds, dweight, dbias)`` of ``tasa.backward``."""
    _, cache = tasa.forward(s, weight, np.zeros(weight.shape[0]), tau=tau, window=window)
    ds, dweight, dbias, _ = tasa.backward(dout, cache)
    return ds, dweight, dbias


def _row_sum_cases():
    return [(0, 3, 6), (1, 3, 6), (2, 3, 8), (4, 2, 5), (3, 5, 7), (1, 1, 4)]


def _backward_cases():
    rng = np.random.default_rng(202)
    cases = []
    for T, d_in, d_out, tau, window in ((6, 4, 3, 1, 3), (5, 3, 2, 2, 2), (4, 2, 2, 0, 4)):
        s = (rng.random((T, d_in)) < 0.5).astype(float)
        cases.append((rng.standard_normal((T, d_out)), s, rng.standard_normal((d_out, d_in)), tau, window))
    return cases


def _tau_cases():
    return [(v,) for v in (4.0, 3.5, 2.5, 2.49, 0.4, -1.3, 0.5, 1.5, 7.2)]


EXERCISES = [
    Exercise("02.1", "the row sums of the mixing matrix M", row_sums, _row_sum_cases, tol=1e-12),
    Exercise("02.2", "the TASA backward by hand", backward, _backward_cases, tol=1e-10),
    Exercise("02.3", "the tau the forward uses", lambda tau: tasa.tau_used(tau), _tau_cases, tol=0.0),
]
