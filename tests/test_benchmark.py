"""The benchmark: its smoke mode runs and prints its tables (no timing is asserted),
and its PyTorch side (the package's model, ds2ta_ref.torch) computes the same model as the NumPy reference."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ds2ta_ref import model
from ds2ta_ref.gradcheck import firing_model_inputs, rel_error, small_model_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")


def _bench_module():
    sys.path.insert(0, BENCH)
    try:
        import bench_model
    finally:
        sys.path.remove(BENCH)
    return bench_model


def test_child_peak_memory_is_its_own_not_its_parents():
    """A child's peak is read from VmHWM: ``ru_maxrss`` after fork + exec also counts the parent's resident
    set, which made every small NumPy step of the benchmark (whose parent holds PyTorch) look 180 MB."""
    bench = _bench_module()
    if not os.path.exists("/proc/self/status"):
        pytest.skip("VmHWM is Linux's")
    ballast = np.ones(300 * 2**20 // 8)  # this process (the parent) holds 300 MB more
    assert ballast.sum() > 0
    row = bench.run_child("numpy", 1, preset="tiny", batch=2, dtype="float32", T=2, window=3, inner=1, malloc="reuse")
    assert 0 < row["peak_bytes"] < 100 * 2**20, row  # the tiny step needs a few MB
    assert row["minor_faults"] < 100, row  # reuse_freed_memory: the timed step faults no memory in
    # the check can fail: ru_maxrss in a child of this process reports at least the 300 MB held here
    probe = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    inherited_kb = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout)
    assert inherited_kb > 300 * 1024


def test_profile_step_accounts_for_the_step():
    """The kernel profile's exclusive times add up to the step (none counted twice, little left out)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, "profile_step.py"), "--smoke", "--threads", "1", "--steps", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and line.count("|") == 8]
    kernels = {r[0].strip(): r for r in rows if r[0].strip() != "kernel"}
    assert {"conv forward (im2col + matmul)", "conv backward (dW, dx)", "LIF forward", "NSAD backward"} <= set(kernels)
    shares = [float(r[3].strip().rstrip("%")) for r in kernels.values()]
    assert 80 <= sum(shares) <= 101, shares  # exclusive times: a kernel counted twice would pass 100%
    assert float(kernels["conv forward (im2col + matmul)"][4]) > 0  # its FLOPs are counted
    conv_rows = [line for line in lines if line.startswith("| (") or line.startswith("| all ")]
    try:
        import torch  # noqa: F401
    except ImportError:
        assert "skipped (torch is not installed)" in proc.stdout
    else:
        assert len(conv_rows) == 6, proc.stdout  # the tiny model's five convolutions and their sum


def test_profile_step_refuses_a_kernel_the_step_never_calls():
    """A wrapped kernel that the blocks no longer call (renamed or split) would drop out of the
    table silently, its time moved into a "rest" row: the profile stops and names it instead.
    The mutant is the wrap the profile had before the attention block split TASA's backward."""
    child = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import profile_step\n"
        "from ds2ta_ref import tasa\n"
        "orig = profile_step.instrument\n"
        "def instrument(timer):\n"
        "    orig(timer)\n"
        "    timer.wrap(tasa, 'backward_unchecked', 'TASA backward')\n"
        "profile_step.instrument = instrument\n"
        "sys.exit(profile_step.main(['--smoke', '--threads', '1', '--steps', '1']))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", child, BENCH], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "never called these wrapped kernels: ['TASA backward']" in proc.stderr, proc.stderr


def _bench_model(*args: str, timeout: int) -> str:
    """The stdout of ``benchmarks/bench_model.py *args`` in a child importing this checkout; it must succeed."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.join(BENCH, "bench_model.py"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_smoke_mode_prints_the_tables():
    out = _bench_model("--smoke", "--threads", "1", timeout=600)
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


def test_matmul_probe_prints_one_rate_per_kernel_setting():
    """``--matmul``: the quiet check, the floor's matmul alone, one line per kernel setting."""
    lines = _bench_model("--matmul", "--threads", "1", timeout=120).splitlines()
    assert [line.split(":")[0] for line in lines] == ["env", "native"], lines
    rates = [re.fullmatch(r".*openblas.*, 1 threads: large float32 matmul (\d+) GFLOP/s", line) for line in lines]
    assert all(rates) and all(int(r.group(1)) > 0 for r in rates), lines


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
def test_benchmark_torch_side_computes_the_same_model(torch, overrides):
    """What the benchmark times on the PyTorch side (bench_model.torch_side: the package's model
    holding the NumPy parameters) gives the NumPy model's logits and every gradient in float64,
    and a one-entry change of its parameters is caught."""
    sys.path.insert(0, BENCH)
    try:
        from bench_model import torch_side
    finally:
        sys.path.remove(BENCH)
    cfg = small_model_config().replace(**overrides)
    params, state, x = firing_model_inputs(cfg, np.random.default_rng(0), batch=2, gain=25.0)
    logits, new_state, cache = model.forward(x, params, state, cfg, training=True)
    dlogits = np.random.default_rng(1).standard_normal(logits.shape)
    _, grads = model.backward(dlogits, cache)

    net = torch_side(params, state, cfg)
    out = net(torch.tensor(x))
    (out * torch.tensor(dlogits)).sum().backward()
    assert out.dtype == torch.float64 and net.training
    assert rel_error(logits, out.detach().numpy()) <= 1e-9
    floor = 1e-6 * max(np.abs(g).max() for g in grads.values())  # zero-gradient biases: rounding noise
    torch_grads = dict(net.named_parameters())
    assert set(torch_grads) == set(params)
    for k in params:
        assert rel_error(grads[k], torch_grads[k].grad.numpy(), floor) <= 1e-9, k

    wrong = dict(params, **{"head.bias": params["head.bias"] + np.eye(cfg.num_classes)[0] * 1e-3})
    assert rel_error(logits, torch_side(wrong, state, cfg)(torch.tensor(x)).detach().numpy()) > 1e-9


def test_recipe_search_records_each_run_and_tabulates_them(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "search.jsonl"
    script = os.path.join(BENCH, "recipe_search.py")
    cmd = [sys.executable, script, "--smoke", "--seeds", "0", "1", "--out", str(out), "", "--lr 2e-3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["options"], r["seed"]) for r in rows] == [("", 0), ("", 1), ("--lr 2e-3", 0), ("--lr 2e-3", 1)]
    assert all(r["test_acc"] == r["curve"][-1] and "threads" in r["blas"] for r in rows)
    table = subprocess.run([sys.executable, script, "--show", str(out)], capture_output=True, text=True, env=env)
    mean = 100 * (rows[0]["test_acc"] + rows[1]["test_acc"]) / 2
    assert "| (the defaults) | 0, 1 |" in table.stdout and f"**{mean:.2f}**" in table.stdout, table.stdout
    # a recipe the command refuses stops the search with the command's own message
    bad = subprocess.run([*cmd[:-2], "--lr -1"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode != 0 and "'--lr -1' seed 0 failed" in bad.stderr and "--lr" in bad.stderr.split("failed")[1]


def test_the_benchmarks_blas_setting_is_the_commands():
    """bench_model keeps its own copy of the command's OPENBLAS_THREAD_TIMEOUT (its parent must not import
    NumPy); the copy must not drift from ds2ta_ref._startup's."""
    from ds2ta_ref import _startup

    bench = _bench_module()
    assert bench.BLAS_THREAD_TIMEOUT == _startup.BLAS_THREAD_TIMEOUT
    assert bench.child_env(1, "env")["OPENBLAS_THREAD_TIMEOUT"] == _startup.BLAS_THREAD_TIMEOUT or (
        "OPENBLAS_THREAD_TIMEOUT" in os.environ
    )


def test_bench_kernels_times_two_checkouts_and_names_the_blas(tmp_path):
    """One alternated pair of this checkout against itself: a row per kernel with a ratio, and the
    header naming the BLAS kernel the children ran; a baseline without the package is refused."""
    script = os.path.join(BENCH, "bench_kernels.py")
    run = [sys.executable, script, "--kernels", "lif", "--repeat", "1", "--inner", "1", "--threads", "1"]
    proc = subprocess.run(run + ["--baseline", ROOT, "--native"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    header, table = proc.stdout.split("\n\n", 1)
    assert "BLAS: " in header and "1 threads" in header.split("BLAS: ")[1], header
    rows = [line for line in table.splitlines() if line.startswith("| LIF")]
    assert len(rows) == 1, table
    assert float(rows[0].split("|")[2].strip().rstrip("x")) > 0, rows
    refused = subprocess.run(run + ["--baseline", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "holds no ds2ta_ref/ package directory" in refused.stderr, refused.stderr


@pytest.mark.parametrize("script, option", [("bench_model.py", "--out"), ("main_job.py", "--json")])
def test_a_recorded_run_is_not_overwritten_without_force(script, option, tmp_path):
    """An existing record is refused before anything runs, in one line that names --force."""
    record = tmp_path / "record"
    record.write_text("a recorded run\n")
    proc = subprocess.run(
        [sys.executable, os.path.join(BENCH, script), option, str(record), "--smoke"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "exists (a recorded run); pass --force to replace it" in proc.stderr
    assert record.read_text() == "a recorded run\n"


@pytest.mark.slow
def test_main_job_records_how_quiet_the_machine_was(tmp_path):
    """``main_job.py --json``: the record holds the seeds' rows, the load average and the large
    matmul's rate at the start and the end (a neighbour's load shows in the rate only)."""
    record = tmp_path / "main_job.json"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, os.path.join(BENCH, "main_job.py"), "--smoke", "--seeds", "0", "--json", str(record)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(record.read_text())
    assert [r["seed"] for r in saved["rows"]] == [0] and 0 <= saved["rows"][0]["test_acc"] <= 1
    assert len(saved["matmul_gflops"]) == 2 and all(rate > 0 for rate in saved["matmul_gflops"]), saved
    assert f"large float32 matmul {saved['matmul_gflops'][0]} GFLOP/s" in proc.stdout
