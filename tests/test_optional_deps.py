"""The core runs without matplotlib (an optional extra, ``ds2ta_ref[plot]``); the plotting
module says so in one line when it is missing."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUN_MODEL = """
import sys
import numpy as np
import ds2ta_ref, ds2ta_ref.train, ds2ta_ref.cli, ds2ta_ref.golden, ds2ta_ref.gradcheck
from ds2ta_ref import layers, model
cfg = ds2ta_ref.preset("tiny")
rng = np.random.default_rng(0)
params, state = ds2ta_ref.init_params(cfg, rng), ds2ta_ref.init_state(cfg)
x = rng.random((2, cfg.in_channels, cfg.img_size, cfg.img_size))
logits, state, cache = model.forward(x, params, state, cfg, training=True)
dx, grads = model.backward(layers.cross_entropy(logits, np.array([1, 2]))[1], cache)
loaded = sorted(m for m, mod in sys.modules.items() if m.split(".")[0] == "matplotlib" and mod is not None)
assert not loaded, loaded
print("ok")
"""

BLOCK = "import sys; sys.modules['matplotlib'] = None\n"  # as if matplotlib were not installed


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_importing_and_running_the_model_never_imports_matplotlib():
    result = _run(RUN_MODEL)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_core_runs_when_matplotlib_is_missing():
    result = _run(BLOCK + RUN_MODEL)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_plotting_without_matplotlib_names_the_extra_in_one_line():
    result = _run(BLOCK + "import ds2ta_ref.plotting\n")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == "ImportError: ds2ta_ref.plotting needs matplotlib: pip install 'ds2ta_ref[plot]'", last


def test_the_check_can_fail_when_something_imports_matplotlib():
    result = _run("import matplotlib.colors\n" + RUN_MODEL)
    assert result.returncode != 0 and "matplotlib" in result.stderr
