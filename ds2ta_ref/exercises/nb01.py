"""Exercises of notebook 01 (the LIF neuron), checked against :mod:`ds2ta_ref.lif`."""

import numpy as np

from .. import lif
from . import Exercise

_LONG = 4000  # time steps: longer than any period checked here


def _first_spikes(currents: np.ndarray, tau_m: float, v_threshold: float) -> np.ndarray:
    """Index of the first spike of a neuron fed each constant current from t = 0 (-1: none in _LONG steps)."""
    x = np.broadcast_to(np.asarray(currents, dtype=np.float64), (_LONG, len(currents)))  # (T, M)
    spikes, _ = lif.forward(np.ascontiguousarray(x), tau_m=tau_m, v_threshold=v_threshold)
    fired = spikes.any(axis=0)
    return np.where(fired, spikes.argmax(axis=0), -1)


def _smallest(fires, lo: float, hi: float) -> float:
    """Smallest current in [lo, hi] for which ``fires(currents) -> bool array`` holds (monotone), to ~1e-9."""
    for _ in range(6):  # each round narrows [lo, hi] 64-fold, evaluating 65 currents at once
        grid = np.linspace(lo, hi, 65)
        ok = fires(grid)
        first = int(np.argmax(ok))
        lo, hi = grid[max(first - 1, 0)], grid[first]
    return float(hi)


def threshold_currents(tau_m: float, v_threshold: float) -> tuple:
    """Reference of 01.1, from the library's neuron: ``(fires_ever, fires_every_step)``, the smallest
    constant currents (infimum, to ~1e-9) for which the neuron ever fires / fires at every step."""
    ever = _smallest(lambda c: _first_spikes(c, tau_m, v_threshold) >= 0, 0.0, 2 * v_threshold)
    every = _smallest(lambda c: _first_spikes(c, tau_m, v_threshold) == 0, 0.0, 2 * v_threshold)
    return ever, every


def firing_period(current: float, tau_m: float, v_threshold: float) -> int:
    """Reference of 01.2: steps from a reset to the next spike under a constant current (0: never)."""
    first = int(_first_spikes(np.array([current]), tau_m, v_threshold)[0])
    return first + 1 if first >= 0 else 0


def lif_backward(current: np.ndarray, dspikes: np.ndarray, tau_m: float, v_threshold: float) -> np.ndarray:
    """Reference of 01.3: ``lif.backward`` for one neuron (detach_reset, sigmoid surrogate, alpha 4)."""
    _, cache = lif.forward(current, tau_m=tau_m, v_threshold=v_threshold)
    return lif.backward(dspikes, cache)


def _threshold_cases():
    return [(2.0, 1.0), (4.0, 1.0), (2.0, 0.5), (8.0, 1.5)]


def _period_cases():
    # (current, tau_m, threshold), each period well away from a rounding boundary; the last two never fire.
    return [
        (1.2, 2.0, 1.0),
        (0.8, 2.0, 1.0),
        (0.55, 2.0, 1.0),
        (0.3, 4.0, 1.0),
        (0.2, 8.0, 1.0),
        (0.7, 1.5, 1.0),
        (0.4, 2.0, 1.0),
        (-0.5, 2.0, 1.0),
    ]


def _backward_cases():
    rng = np.random.default_rng(101)
    cases = []
    for tau_m, v_threshold in ((2.0, 1.0), (4.0, 0.5), (1.5, 1.0)):
        current = 0.6 + 0.5 * rng.standard_normal(12)  # (T,)
        cases.append((current, rng.standard_normal(12), tau_m, v_threshold))
    return cases


EXERCISES = [
    Exercise(
        "01.1",
        "the currents that fire ever and at every step",
        lambda tau_m, v_threshold: threshold_currents(tau_m, v_threshold),
        _threshold_cases,
        tol=1e-6,
    ),
    Exercise("01.2", "the firing period under a constant current", firing_period, _period_cases, tol=0.0),
    Exercise("01.3", "the LIF backward by hand", lif_backward, _backward_cases, tol=1e-9),
]
