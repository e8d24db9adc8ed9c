"""Exercises of notebook 07 (check your implementation): kernels written in NumPy from a golden
file's inputs, checked against the library that wrote the file (:mod:`ds2ta_ref.lif`, :mod:`ds2ta_ref.tasa`)."""

import json

import numpy as np

from .. import golden, lif, tasa
from ..gradcheck import small_model_config
from . import Exercise


def lif_kernel(x, dspikes, options):
    """Reference of 07.1: the golden file's LIF kernel, ``(spikes, dx)`` for inputs ``x`` and upstream ``dspikes``."""
    spikes, cache = lif.forward(x, **options)
    return spikes, lif.backward(dspikes, cache)


def tasa_kernel(s, weight, bias, tau, window):
    """Reference of 07.2: the golden file's TASA kernel forward ``out``."""
    return tasa.forward(s, weight, bias, tau=float(tau), window=window)[0]


def _golden_files():
    return [golden.build(small_model_config(), seed=seed) for seed in (7, 8)]


def _lif_cases():
    return [(ref["lif/in/x"], ref["lif/in/dspikes"], json.loads(str(ref["lif/options"]))) for ref in _golden_files()]


def _tasa_cases():
    cases = []
    for ref in _golden_files():
        window = json.loads(str(ref["tasa/options"]))["window"]
        cases.append((ref["tasa/in/s"], ref["tasa/in/weight"], ref["tasa/in/bias"], ref["tasa/in/tau"], window))
    s, weight, bias, _, _ = cases[0]
    for tau, window in ((0.6, 3), (2.5, 3), (-0.7, 2)):  # rounding matters: 1, 2 (half to even), 0 (clipped)
        cases.append((s, weight, bias, np.array(tau), window))
    return cases


EXERCISES = [
    Exercise("07.1", "the LIF kernel of a golden file, forward and backward", lif_kernel, _lif_cases, tol=1e-10),
    Exercise("07.2", "the TASA kernel of a golden file, forward", tasa_kernel, _tasa_cases, tol=1e-10),
]
