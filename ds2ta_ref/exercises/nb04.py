"""Exercises of notebook 04 (the model), checked against :mod:`ds2ta_ref.model` and its blocks."""

import numpy as np

from .. import layers
from ..config import preset
from ..params import init_params
from . import Exercise


def readout(h, weight, bias):
    """Reference of 04.1: mean over tokens, then over time, then the head's linear map."""
    pooled, _ = layers.mean_forward(h, axis=2)  # (T, B, D)
    pooled, _ = layers.mean_forward(pooled, axis=0)  # (B, D)
    logits, _ = layers.linear_forward(pooled, weight, bias)
    return logits


def block_parameter_count(dim, heads, mlp_ratio, tasa, nsad, qkv_bias):
    """Reference of 04.2: the number of parameters (entries) of encoder block 0, from ``init_params``."""
    cfg = preset("tiny").replace(dim=dim, heads=heads, mlp_ratio=mlp_ratio, tasa=tasa, nsad=nsad, qkv_bias=qkv_bias)
    params = init_params(cfg, np.random.default_rng(0))
    return sum(v.size for k, v in params.items() if k.startswith("block.0."))


def _readout_cases():
    rng = np.random.default_rng(404)
    cases = []
    for T, B, N, D, K in ((2, 3, 4, 5, 3), (4, 1, 16, 8, 10)):
        cases.append(
            (rng.integers(0, 4, size=(T, B, N, D)).astype(float), rng.standard_normal((K, D)), rng.standard_normal(K))
        )
    return cases


def _count_cases():
    return [
        (64, 4, 4, True, True, True),
        (64, 4, 4, False, False, True),
        (32, 2, 2, True, False, False),
        (48, 3, 4, False, True, True),
    ]


EXERCISES = [
    Exercise("04.1", "the readout: pool tokens, then time, then the head", readout, _readout_cases, tol=1e-12),
    Exercise("04.2", "the parameters of one encoder block", block_parameter_count, _count_cases, tol=0.0),
]
