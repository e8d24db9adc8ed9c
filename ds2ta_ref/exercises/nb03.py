"""Exercises of notebook 03 (NSAD), checked against :mod:`ds2ta_ref.nsad`."""

import numpy as np

from .. import nsad
from . import Exercise


def hashmap(params, head_dim, rounding):
    """Reference of 03.1: ``nsad.hashmap``."""
    return nsad.hashmap(params, head_dim=head_dim, rounding=rounding)


def threshold_for_removal(S, head_dim, fraction):
    """Reference of 03.2: the smallest integer ``u`` in ``0 .. head_dim`` whose identity head
    (``nsad.init_params``) removes at least ``fraction`` of the non-zero scores of ``S``."""
    for u in range(head_dim + 1):
        A, _ = nsad.forward(S, nsad.init_params(S.shape[-3], u), head_dim=head_dim)
        report = nsad.sparsity_report(S, A)
        removed = (report.after - report.before) / (1 - report.before) if report.before < 1 else 1.0
        if removed >= fraction:
            return u
    return head_dim


def smallest_u_removing_ones() -> float:
    """Reference of 03.3: the smallest threshold ``u`` whose hashmap maps the score 1 to 0, from ``nsad.hashmap``
    (bisection between 0, which keeps it, and 2, which removes it; to 1e-12)."""
    lo, hi = 0.0, 2.0
    while hi - lo > 1e-12:
        mid = (lo + hi) / 2
        if nsad.hashmap(nsad.init_params(1, mid), head_dim=4)[0, 1] == 0:
            hi = mid
        else:
            lo = mid
    return hi


def _hashmap_cases():
    rng = np.random.default_rng(303)
    cases = []
    for H, head_dim, rounding in ((3, 8, "nearest"), (2, 16, "floor"), (4, 6, "nearest"), (1, 5, "floor")):
        params = np.column_stack(
            [
                rng.uniform(0.5, 1.5, H),
                rng.uniform(-0.05, 0.05, H),
                rng.uniform(0, head_dim, H),
                rng.uniform(-4, 4, H),
                rng.uniform(0, head_dim, H),
                rng.uniform(0, 3, H),
            ]
        )
        cases.append((params, head_dim, rounding))
    return cases


def _removal_cases():
    rng = np.random.default_rng(304)
    cases = []
    for H, N, head_dim, p, fraction in ((2, 6, 8, 0.3, 0.9), (4, 5, 16, 0.2, 0.5), (1, 8, 8, 0.5, 0.75)):
        S = rng.binomial(head_dim, p, size=(H, N, N)).astype(float)  # (H, N, N) counts
        cases.append((S, head_dim, fraction))
    return cases


EXERCISES = [
    Exercise("03.1", "every head's hashmap, both roundings", hashmap, _hashmap_cases, tol=0.0),
    Exercise(
        "03.2", "the threshold that removes a given share of the scores", threshold_for_removal, _removal_cases, tol=0.0
    ),
    Exercise("03.3", "the smallest u that removes the 1-counts", smallest_u_removing_ones, tol=1e-9),
]
