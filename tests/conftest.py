"""Shared test configuration.

* Hypothesis: a ``ci`` profile, loaded by default. No deadline (the machines are
  shared and noisy, and timing is never asserted in unit tests). Not
  derandomized: every run draws new examples, so the properties keep being
  explored; the strategies keep inputs away from thresholds and kinks so that
  this never flakes. A failure prints its ``@reproduce_failure`` blob
  (``print_blob``), and ``python -m pytest --hypothesis-seed=N`` replays a
  whole run.
* ``torch``: the PyTorch cross-checks are optional locally but mandatory in CI:
  when the ``CI`` environment variable is set, a missing torch is a failure,
  not a skip.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100, print_blob=True)
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


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A finished one-epoch run of the tiny digits job, trained once for the whole session;
    tests that change a run work on a copy (``run``)."""
    from ds2ta_ref.train import TrainConfig, train

    out = tmp_path_factory.mktemp("finished") / "run"
    train(
        TrainConfig(epochs=1, train_subset=6, test_subset=6, batch_size=6), str(out), progress=False, log=lambda _: None
    )
    return out


@pytest.fixture
def run(finished_run, tmp_path):
    """A copy of :func:`finished_run` in this test's own folder."""
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    return out
