"""Input generators shared by the tests."""
from __future__ import annotations

import numpy as np

from ds2ta_ref import lif


def lif_input_away_from_threshold(rng, shape, *, margin=1e-3, scale=1.5, tries=200, **lif_options):
    """A seeded random LIF input whose pre-reset membrane stays ``margin`` away from
    the threshold at every step, so that no hard step flips under a finite-difference
    perturbation."""
    theta = lif_options.get("v_threshold", 1.0)
    for _ in range(tries):
        x = rng.standard_normal(shape) * scale + 0.5
        _, cache = lif.forward(x, **lif_options)
        if np.min(np.abs(cache.h - theta)) > margin:
            return x
    raise RuntimeError("could not draw an input away from the threshold")
