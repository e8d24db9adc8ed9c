"""Shared test configuration.

* Hypothesis: a ``ci`` profile (no deadline: the machines are shared and noisy,
  and timing is never asserted in unit tests), loaded by default.
* ``torch``: the PyTorch cross-checks are optional locally but mandatory in CI:
  when the ``CI`` environment variable is set, a missing torch is a failure,
  not a skip.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def torch():
    try:
        import torch as _torch
    except ImportError:  # pragma: no cover - depends on the environment
        if os.environ.get("CI"):
            pytest.fail("torch is required in CI for the PyTorch cross-checks (pip install torch==2.13.0)")
        pytest.skip("torch not installed: PyTorch cross-checks skipped")
    _torch.set_default_dtype(_torch.float64)
    return _torch


@pytest.fixture
def rng():
    return np.random.default_rng(0)
