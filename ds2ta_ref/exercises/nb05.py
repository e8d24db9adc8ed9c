"""Exercises of notebook 05 (training), checked against :mod:`ds2ta_ref.optim`."""

import numpy as np

from .. import optim
from . import Exercise


def learning_rates(steps, total_steps, warmup_steps, base_lr, min_lr):
    """Reference of 05.1: ``optim.cosine_lr`` at every step of ``steps``, as an array."""
    return np.array(
        [
            optim.cosine_lr(k, total_steps=total_steps, warmup_steps=warmup_steps, base_lr=base_lr, min_lr=min_lr)
            for k in steps
        ]
    )


def adamw_update(p, g, m, v, k, lr, weight_decay, decay):
    """Reference of 05.2: step ``k`` (1, 2, ...) of ``optim.AdamW`` on one parameter whose moments
    after step ``k - 1`` are ``m`` and ``v``; returns the new ``(p, m, v)``."""
    opt = optim.AdamW({"p": p}, lr=lr, weight_decay=weight_decay, no_decay=() if decay else ("p",))
    opt.load_state_dict({"m.p": m, "v.p": v, "step": np.array(k - 1, dtype=np.int64)})
    p = p.copy()
    opt.step({"p": p}, {"p": g})
    return p, opt.m["p"], opt.v["p"]


def _schedule_cases():
    # (steps, total_steps, warmup_steps, base_lr, min_lr): the run of section 2, no warmup, one step, past the end
    return [
        (np.arange(0, 80), 69, 12, 4e-3, 1e-5),
        (np.arange(0, 10), 10, 0, 1e-3, 0.0),
        ([0], 1, 0, 3e-3, 1e-5),
        ([0, 5, 9, 10, 11, 50], 10, 3, 1e-2, 1e-4),
    ]


def _adamw_cases():
    rng = np.random.default_rng(502)
    cases = []
    for shape, k, lr, wd, decay in (
        ((3, 4), 1, 1e-3, 0.06, True),
        ((5,), 1, 4e-3, 0.06, False),
        ((2, 3), 7, 2e-3, 0.1, True),
        ((6,), 30, 1e-2, 0.0, True),
    ):
        p, g = rng.normal(size=shape), rng.normal(size=shape)
        m = np.zeros(shape) if k == 1 else rng.normal(0, 0.1, size=shape)
        v = np.zeros(shape) if k == 1 else rng.uniform(0, 0.05, size=shape)
        cases.append((p, g, m, v, k, lr, wd, decay))
    return cases


EXERCISES = [
    Exercise("05.1", "the learning-rate schedule: warmup, then cosine", learning_rates, _schedule_cases, tol=1e-12),
    Exercise("05.2", "one AdamW update", adamw_update, _adamw_cases, tol=1e-9),
]
