"""Exercises of notebook 05 (training), checked against :mod:`ds2ta_ref.layers` and :mod:`ds2ta_ref.optim`."""
import numpy as np

from .. import layers, optim
from . import Exercise


def cross_entropy(logits, labels, label_smoothing):
    """Reference of 05.1: ``layers.cross_entropy``, the loss and its gradient ``dlogits``."""
    return layers.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def adamw_update(p, g, m, v, k, lr, weight_decay, decay):
    """Reference of 05.2: step ``k`` (1, 2, ...) of ``optim.AdamW`` on one parameter whose moments
    after step ``k - 1`` are ``m`` and ``v``; returns the new ``(p, m, v)``."""
    opt = optim.AdamW({"p": p}, lr=lr, weight_decay=weight_decay, no_decay=() if decay else ("p",))
    opt.load_state_dict({"m.p": m, "v.p": v, "step": np.array(k - 1, dtype=np.int64)})
    p = p.copy()
    opt.step({"p": p}, {"p": g})
    return p, opt.m["p"], opt.v["p"]


def _cross_entropy_cases():
    rng = np.random.default_rng(501)
    cases = []
    for B, K, eps in ((4, 10, 0.1), (1, 3, 0.0), (7, 5, 0.3)):
        logits = rng.normal(0, 3, size=(B, K))
        cases.append((logits, rng.integers(0, K, size=B), eps))
    cases.append((np.array([[800.0, 0.0, -800.0]]), np.array([2]), 0.1))  # needs the max subtracted first
    return cases


def _adamw_cases():
    rng = np.random.default_rng(502)
    cases = []
    for shape, k, lr, wd, decay in (((3, 4), 1, 1e-3, 0.06, True), ((5,), 1, 4e-3, 0.06, False),
                                    ((2, 3), 7, 2e-3, 0.1, True), ((6,), 30, 1e-2, 0.0, True)):
        p, g = rng.normal(size=shape), rng.normal(size=shape)
        m = np.zeros(shape) if k == 1 else rng.normal(0, 0.1, size=shape)
        v = np.zeros(shape) if k == 1 else rng.uniform(0, 0.05, size=shape)
        cases.append((p, g, m, v, k, lr, wd, decay))
    return cases


EXERCISES = [
    Exercise("05.1", "cross-entropy with label smoothing and its gradient", cross_entropy, _cross_entropy_cases,
             tol=1e-9),
    Exercise("05.2", "one AdamW update", adamw_update, _adamw_cases, tol=1e-9),
]
