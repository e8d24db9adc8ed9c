"""ds2ta_ref.parallel: the elementwise kernels split across threads give the very same bits.

Every kernel that splits its work (im2col and col2im of the convolution, max-pooling, the
elementwise passes of BatchNorm, the LIF forward and backward, the attention's stacked
products) is run with 1, 2 and 3 threads and the small-loop threshold removed, and
compared with ``np.array_equal``; a deliberately wrong split (a part that skips its last
item) is shown to be caught.
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from ds2ta_ref import layers, lif, model, parallel
from ds2ta_ref.gradcheck import firing_model_inputs, small_model_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def split_everything(monkeypatch):
    """Split every loop, however small, so that the parts really run on threads."""
    monkeypatch.setattr(parallel, "MIN_WORK", 1)
    yield
    parallel.set_threads(None)


def _kernels(rng, *, with_pool=True):
    """Outputs of every kernel that uses parallel.for_parts, on seeded inputs (float32 and float64)."""
    out = {}
    for dtype in (np.float32, np.float64):
        x = (rng.random((6, 3, 7, 5)) < 0.3).astype(dtype)  # odd sizes: uneven parts
        w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
        y, cache = layers.conv_forward(x, w)
        out[f"conv.{dtype.__name__}"] = y
        dy = rng.standard_normal(y.shape).astype(dtype)
        out[f"conv.dx.{dtype.__name__}"], out[f"conv.dw.{dtype.__name__}"] = layers.conv_backward(dy, cache)
        w2 = rng.standard_normal((2, 3, 3, 3)).astype(dtype)  # C_out < C_in: the flipped-kernel branch
        y2, cache2 = layers.conv_forward(x, w2)
        out[f"conv2.dx.{dtype.__name__}"], _ = layers.conv_backward(rng.standard_normal(y2.shape).astype(dtype), cache2)
        if with_pool:
            p, pcache = layers.maxpool_forward(x)
            out[f"pool.{dtype.__name__}"], out[f"pool.arg.{dtype.__name__}"] = p, pcache.arg
            dp = rng.standard_normal(p.shape).astype(dtype)
            out[f"pool.dx.{dtype.__name__}"] = layers.maxpool_backward(dp, pcache)
        # axis 0: split along axis 1; (7,): channels only, eval mode
        for shape, axis in (((6, 3, 7, 5), 1), ((3, 5, 7, 4), -1), ((4, 5, 3), 0), ((7,), 0)):
            xb = rng.standard_normal(shape).astype(dtype)
            c = shape[axis]
            gamma, beta, mean = rng.standard_normal((3, c))
            var = rng.random(c)
            for training in (True, False)[len(shape) == 1 :]:
                key = f"bn.{shape}.{training}.{dtype.__name__}"
                yb, out[key + ".mean"], out[key + ".var"], bcache = layers.batchnorm_forward(
                    xb, gamma.astype(dtype), beta.astype(dtype), mean, var, axis=axis, training=training
                )
                out[key] = yb
                dxb, out[key + ".dgamma"], out[key + ".dbeta"] = layers.batchnorm_backward(
                    rng.standard_normal(shape).astype(dtype), bcache
                )
                out[key + ".dx"] = dxb
        a = (rng.random((5, 2, 6, 4)) < 0.5).astype(dtype)  # a stack of spike matrices, as the attention's
        out[f"matmul.{dtype.__name__}"] = parallel.matmul(a, rng.standard_normal((5, 2, 4, 3)).astype(dtype))
        current = rng.normal(0.6, 0.8, (3, 5, 11)).astype(dtype)
        for detach in (True, False):
            for smooth in (False, True):
                s, lcache = lif.forward(current, smooth=smooth, detach_reset=detach, decay_input=not detach)
                key = f"lif.{detach}.{smooth}.{dtype.__name__}"
                out[key] = s
                out[key + ".dx"] = lif.backward(rng.standard_normal(s.shape).astype(dtype), lcache)
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_kernels_are_bit_identical_for_any_number_of_threads(split_everything, n):
    parallel.set_threads(1)
    serial = _kernels(np.random.default_rng(0))
    parallel.set_threads(n)
    split = _kernels(np.random.default_rng(0))
    assert serial.keys() == split.keys()
    differ = [k for k in serial if not np.array_equal(serial[k], split[k])]
    assert not differ, differ


def test_matmul_is_numpys_stacked_product_and_checks_its_stacks(split_everything):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((4, 3, 5, 6)), rng.standard_normal((4, 3, 6, 2))
    parallel.set_threads(2)
    assert np.array_equal(parallel.matmul(a, b), a @ b)
    assert np.array_equal(parallel.matmul(a, b.swapaxes(-1, -2).swapaxes(-1, -2)), a @ b)
    with pytest.raises(ValueError, match="same leading axes"):
        parallel.matmul(a, b[:3])
    with pytest.raises(ValueError, match="same leading axes"):
        parallel.matmul(a[0, 0], b[0, 0])  # plain matrices: not a stack


def test_the_whole_model_is_bit_identical_with_threads(split_everything):
    cfg = small_model_config()
    params, state, x = firing_model_inputs(cfg, np.random.default_rng(3))
    dlogits = np.random.default_rng(4).standard_normal((x.shape[0], cfg.num_classes))
    results = []
    for n in (1, 2):
        parallel.set_threads(n)
        logits, new_state, cache = model.forward(x, params, state, cfg, training=True)
        dx, grads = model.backward(dlogits, cache)
        results.append((logits, new_state, dx, grads))
    (l1, s1, d1, g1), (l2, s2, d2, g2) = results
    assert np.array_equal(l1, l2) and np.array_equal(d1, d2)
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)


def test_a_wrong_split_is_caught(split_everything, monkeypatch):
    """The comparison above can fail: a for_parts whose parts each skip their last item."""
    parallel.set_threads(1)
    serial = _kernels(np.random.default_rng(0), with_pool=False)  # (a pool missing outputs would index garbage)
    real = parallel.for_parts

    def lossy(n, fn, *, work):
        return real(n, lambda lo, hi: fn(lo, max(lo, hi - 1)) if hi - lo > 1 else fn(lo, hi), work=work)

    monkeypatch.setattr(parallel, "for_parts", lossy)
    parallel.set_threads(2)
    with np.errstate(all="ignore"):  # the skipped items hold whatever np.empty gave
        broken = _kernels(np.random.default_rng(0), with_pool=False)
    differ = [k for k in serial if not np.array_equal(serial[k], broken[k])]
    assert all(any(k.startswith(name) for k in differ) for name in ("conv", "bn", "lif", "matmul")), differ


_INTERRUPTED_START = """
import threading
from ds2ta_ref import parallel
real = threading.Thread.start
def start(self):
    real(self)
    raise KeyboardInterrupt  # Ctrl-C while start() waits for the new thread
threading.Thread.start = start
parallel.set_threads(3)
try:
    parallel.for_parts(4, lambda lo, hi: None, work=1 << 20)
except KeyboardInterrupt:
    print("interrupted")
"""


def test_ctrl_c_as_a_worker_thread_starts_does_not_hang_the_exit():
    """Ctrl-C while ``Thread.start`` waits for a new worker: a ThreadPoolExecutor never recorded
    that thread, so never told it to stop, and joined it at exit: ``ds2ta-ref train`` hung after
    Ctrl-C on a busy machine. The workers are daemon threads now. (With the executor this child
    prints "interrupted" and then runs into the timeout.)"""
    env = {**os.environ, "PYTHONPATH": ROOT}
    argv = [sys.executable, "-c", _INTERRUPTED_START]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "interrupted\n", done.stderr


def test_the_parts_run_again_after_an_interrupted_start(split_everything, monkeypatch):
    real = threading.Thread.start

    def interrupted(self):
        real(self)
        raise KeyboardInterrupt

    parallel.set_threads(3)
    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        parallel.for_parts(4, lambda lo, hi: None, work=1)
    monkeypatch.setattr(threading.Thread, "start", real)
    seen = []
    parallel.for_parts(6, lambda lo, hi: seen.append((lo, hi, threading.current_thread().name)), work=1)
    assert sorted(p[:2] for p in seen) == [(0, 2), (2, 4), (4, 6)]
    names = {p[:2]: p[2] for p in seen}  # the caller runs the last part, the workers the others
    assert names[(4, 6)] == threading.current_thread().name
    assert all(names[part].startswith("ds2ta_ref_") for part in [(0, 2), (2, 4)]), names


def test_for_parts_covers_the_range_once_and_raises_a_part_error(split_everything):
    parallel.set_threads(3)
    seen = np.zeros(10, dtype=int)

    def mark(lo, hi):
        seen[lo:hi] += 1

    parallel.for_parts(10, mark, work=10)
    assert seen.tolist() == [1] * 10

    def fail(lo, hi):
        if lo == 0:
            raise ValueError("part 0 failed")

    with pytest.raises(ValueError, match="part 0 failed"):
        parallel.for_parts(10, fail, work=10)
    parallel.for_parts(0, mark, work=0)  # nothing to do: one call on the empty range
    assert seen.tolist() == [1] * 10


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_threads_rejects_what_is_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match="n must be a positive integer or None"):
        parallel.set_threads(bad)


@pytest.mark.parametrize("value", ["0", "two", "-3"])
def test_a_bad_thread_variable_is_one_clear_error(value):
    code = "from ds2ta_ref import parallel; parallel.threads()"
    env = dict(os.environ, DS2TA_REF_THREADS=value, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert f"DS2TA_REF_THREADS must be a positive integer, got {value!r}" in proc.stderr


_PROBE = "import sys; sys.argv[0] = 'ds2ta-ref'; import os, ds2ta_ref; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"


@pytest.mark.parametrize(
    "argv0, preset, expected",
    [("ds2ta-ref", None, "12"), ("ds2ta-ref", "20", "20"), ("someone_elses_program", None, "None")],
)
def test_the_command_lets_openblas_threads_sleep(argv0, preset, expected):
    """Only the command's process gets OPENBLAS_THREAD_TIMEOUT (set before NumPy loads); a value
    the user set is kept, and a program that imports the package is left alone."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("OPENBLAS_THREAD_TIMEOUT", None)
    if preset:
        env["OPENBLAS_THREAD_TIMEOUT"] = preset
    code = _PROBE.replace("'ds2ta-ref'", repr(argv0))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
