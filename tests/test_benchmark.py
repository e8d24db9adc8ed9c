"""The benchmark: its smoke mode runs and prints its tables (no timing is asserted),
and its PyTorch twin computes the same model as the NumPy reference."""
import os
import subprocess
import sys

import numpy as np
import pytest

from ds2ta_ref import model
from ds2ta_ref.gradcheck import firing_model_inputs, rel_error, small_model_config
from ds2ta_ref.surrogate import resolve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


@pytest.mark.slow
def test_smoke_mode_prints_the_tables():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "bench_model.py"), "--smoke", "--threads", "1"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("Command: `python benchmarks/bench_model.py --smoke --threads 1`")
    assert "Machine: " in out and "Date: " in out and "GFLOP/s" in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny | 2 | float32 |")]
    assert len(rows) == 2 and all(row.count("|") == 13 for row in rows), rows  # one per kernel setting
    kernels = [line for line in out.splitlines() if line.startswith("Kernel `")]
    assert [k.split("`")[1] for k in kernels] == ["env", "native"], kernels
    assert all("openblas" in k and "threads" in k for k in kernels), kernels  # what threadpoolctl reports
    sweep = [line for line in out.splitlines() if line.startswith(("| 1 | 3 |", "| 2 | 3 |", "| 2 | 1 |"))]
    assert len(sweep) == 3, out
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "PyTorch comparison skipped" in out
    else:
        assert "skipped" not in out


def test_flop_count_of_the_cifar10_step():
    """179 GFLOP for cifar10 at batch 8 (the figure in the performance issue), by hand:
    convolutions 2*9*M*sum(C_out*C_in*H*W) and 4 blocks of 6 linear maps of 2*rows*D*D' each."""
    sys.path.insert(0, BENCH)
    try:
        from bench_model import step_flops
    finally:
        sys.path.remove(BENCH)
    import ds2ta_ref

    fl = step_flops(ds2ta_ref.preset("cifar10"), 8)
    M, rows = 32, 32 * 64
    conv = 2 * 9 * M * (48 * 3 * 1024 + 96 * 48 * 1024 + 192 * 96 * 1024 + 384 * 192 * 256 + 384 * 384 * 64)
    linear = 4 * (4 * 2 * rows * 384 * 384 + 2 * 2 * rows * 384 * 1536) + 2 * 8 * 384 * 10
    assert fl["conv"] == 3 * conv and fl["linear"] == 3 * linear
    assert round(sum(fl.values()) / 1e9) == 179


@pytest.mark.parametrize("overrides", [{}, dict(tasa=False, nsad=False, decay_input=True), dict(tau_per_site=True)])
def test_benchmark_twin_computes_the_same_model(torch, overrides):
    sys.path.insert(0, BENCH)
    try:
        from torch_twin import model as twin
    finally:
        sys.path.remove(BENCH)
    cfg = small_model_config().replace(**overrides)
    params, state, x = firing_model_inputs(cfg, np.random.default_rng(0), batch=2, gain=25.0)
    logits, new_state, cache = model.forward(x, params, state, cfg, training=True)
    dlogits = np.random.default_rng(1).standard_normal(logits.shape)
    _, grads = model.backward(dlogits, cache)

    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    St = {k: torch.tensor(v) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    out = twin(P, St, torch.tensor(x), cfg, resolve(cfg.surrogate, cfg.alpha)[1])
    (out * torch.tensor(dlogits)).sum().backward()
    assert rel_error(logits, out.detach().numpy()) <= 1e-9
    floor = 1e-6 * max(np.abs(g).max() for g in grads.values())  # zero-gradient biases: rounding noise
    for k in params:
        assert rel_error(grads[k], P[k].grad.numpy(), floor) <= 1e-9, k
    for k in St:
        assert rel_error(new_state[k], St[k].numpy()) <= 1e-12, k


def test_main_job_smoke_names_the_machine_and_kernel():
    """benchmarks/main_job.py prints the CPU, the BLAS kernel and threads, and a mean-and-range row."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "main_job.py"), "--smoke", "--seeds", "0", "1"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    machine = next(line for line in proc.stdout.splitlines() if line.startswith("Machine: "))
    assert "BLAS: openblas" in machine and "threads" in machine, machine
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| 0 | 1 |", "| 1 | 1 |", "| mean (range)"))]
    assert len(rows) == 3, proc.stdout


def test_main_job_refuses_repeated_seeds():
    proc = subprocess.run([sys.executable, os.path.join(BENCH, "main_job.py"), "--seeds", "0", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "argument --seeds" in proc.stderr.strip().splitlines()[-1]
