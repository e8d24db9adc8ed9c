"""The ``ds2ta-ref`` command line: run folders, resume, one-line errors, Ctrl-C, help.

One test per row of issue 9's "What was seen". Most call ``cli.main([...])``
in-process; the exit status, the absence of a traceback and Ctrl-C are also
checked on a real child process. Runs are tiny: one step of 6 digits.
"""

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import ds2ta_ref
from ds2ta_ref import checkpoint, cli, optim
from ds2ta_ref import train as train_mod
from ds2ta_ref.cli import main
from ds2ta_ref.train import TrainConfig, train

pytest.importorskip("sklearn")

TINY = dict(epochs=1, train_subset=6, test_subset=6, batch_size=6)
TINY_ARGS = ["--epochs", "1", "--train-subset", "6", "--test-subset", "6", "--batch-size", "6", "--no-progress"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quiet(_):
    pass


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def error_line(err: str) -> str:
    """The single line a CLI error prints on stderr."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ds2ta-ref: error: "), err
    return lines[0]


def status(argv) -> int:
    """``main``'s exit status, also for argparse's own errors (which exit through ``SystemExit``)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def no_data(monkeypatch):
    """Fails the test if the data is loaded: errors must come before any work."""

    def build_data(tc):
        raise AssertionError("the data was loaded before the error")

    monkeypatch.setattr(train_mod, "build_data", build_data)
    monkeypatch.setattr(cli, "build_data", build_data)


# --------------------------------------------------------------------------- run folders
def test_a_second_train_leaves_a_finished_run_untouched(run, capsys, no_data):
    before = snapshot(run)
    assert main(["train", "--out", str(run)] + TINY_ARGS) == 2
    line = error_line(capsys.readouterr().err)
    assert str(run) in line and "already holds a run" in line and "epoch 1 of 1" in line
    assert f"--resume {run / 'checkpoint.npz'}" in line and "--out" in line and "--overwrite" in line
    assert snapshot(run) == before  # bytes unchanged, no lock left


def test_default_out_names_dataset_variant_and_seed(monkeypatch, capsys):
    tc = TrainConfig()
    assert train_mod.default_out(tc) == os.path.join("runs", "digits-ds2ta-seed0")
    assert train_mod.default_out(TrainConfig(seed=1)) == os.path.join("runs", "digits-ds2ta-seed1")
    assert train_mod.default_out(TrainConfig(dataset="events", tasa=False, nsad=False, seed=2)) == os.path.join(
        "runs", "events-spikformer-seed2"
    )
    seen = []
    monkeypatch.setattr(cli, "train", lambda tc, out, **kw: seen.append(out) or 1 / 0)
    for seed in ("1", "2"):  # the README's seed-1 and seed-2 commands
        with pytest.raises(ZeroDivisionError):
            main(["train", "--seed", seed])
    assert seen == [os.path.join("runs", "digits-ds2ta-seed1"), os.path.join("runs", "digits-ds2ta-seed2")]


def test_overwrite_replaces_the_run_and_releases_the_lock(run, capsys):
    (run / "metrics.json").write_text("[]")  # so the replaced file is recognizable
    assert main(["train", "--out", str(run), "--overwrite", "--seed", "3"] + TINY_ARGS) == 0
    out = capsys.readouterr().out
    aside = out.split(f"from {run}/ to ")[1].split("/;")[0]  # the previous run waits there until the first checkpoint
    assert aside.startswith(f"{run}.old-") and f"deleted the previous run from {aside}/" in out
    assert not os.path.exists(aside) and sorted(os.listdir(run.parent)) == ["run"]
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "metrics.csv", "metrics.json"]
    assert json.loads((run / "metrics.json").read_text())[0]["epoch"] == 1
    assert checkpoint.load(run / "checkpoint.npz")[1]["train_config"]["seed"] == 3


def write_lock(folder, pid):
    folder.mkdir(exist_ok=True)
    lock = folder / "run.lock"
    lock.write_text(
        json.dumps(dict(pid=pid, host=os.uname().nodename, started="2026-01-01 00:00:00", command="ds2ta-ref train"))
    )
    return lock


def test_a_lock_held_by_a_live_process_blocks_a_second_run(tmp_path, capsys, no_data):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = write_lock(tmp_path / "busy", other.pid)
        before = lock.read_bytes()
        assert main(["train", "--out", str(tmp_path / "busy")] + TINY_ARGS) == 2
        line = error_line(capsys.readouterr().err)
        assert f"in use by another training run (process {other.pid}" in line
        assert lock.read_bytes() == before and os.listdir(tmp_path / "busy") == ["run.lock"]
    finally:
        other.kill()
        other.wait()


def dead_pid():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_a_stale_lock_is_reported_and_never_taken(run, capsys, no_data):
    pid = dead_pid()
    lock = write_lock(run, pid)
    before = snapshot(run)
    assert main(["train", "--resume", str(run / "checkpoint.npz"), "--add-epochs", "1"]) == 2
    line = error_line(capsys.readouterr().err)
    assert "stale lock" in line and f"process {pid}" in line and "no longer running" in line
    # it says truthfully what the folder holds, and the command that clears the lock
    assert f"holds a checkpoint at epoch 1 of 1, digits, seed 0 ({run / 'checkpoint.npz'})" in line
    assert f"clear the lock with: rm {lock}" in line
    assert snapshot(run) == before


def test_a_stale_lock_without_a_checkpoint_says_so(tmp_path, capsys):
    lock = write_lock(tmp_path / "run", dead_pid())  # a run killed before its first checkpoint
    assert main(["train", "--out", str(tmp_path / "run")] + TINY_ARGS) == 2
    line = error_line(capsys.readouterr().err)
    assert f"holds no checkpoint ({tmp_path / 'run' / 'checkpoint.npz'} does not exist)" in line
    assert "holds a checkpoint" not in line and f"clear the lock with: rm {lock}" in line
    subprocess.run(line.split("clear the lock with: ")[1].split(";")[0], shell=True, check=True)  # as told
    assert main(["train", "--out", str(tmp_path / "run")] + TINY_ARGS) == 0


def test_an_unwritable_out_fails_before_the_data(tmp_path, capsys, no_data):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["train", "--out", str(blocker / "run")] + TINY_ARGS) == 2
    line = error_line(capsys.readouterr().err)
    assert str(blocker / "run") in line and "cannot be written" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_a_read_only_out_fails_before_the_data(tmp_path, capsys, no_data):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["train", "--out", str(locked / "run")] + TINY_ARGS) == 2
        assert "cannot be written (Permission denied)" in error_line(capsys.readouterr().err)
    finally:
        locked.chmod(0o755)


def test_a_full_disk_during_a_run_is_one_line_and_keeps_the_checkpoint(run, monkeypatch, capsys):
    before = snapshot(run)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    assert main(["train", "--resume", str(run), "--add-epochs", "1", "--no-progress"]) == 1
    monkeypatch.undo()
    assert "No space left on device" in error_line(capsys.readouterr().err)
    assert snapshot(run) == before


# --------------------------------------------------------------------------- resume
def test_resume_from_another_directory_writes_only_into_the_checkpoint_folder(run, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", str(run / "checkpoint.npz"), "--add-epochs", "1", "--no-progress"]) == 0
    assert os.listdir(elsewhere) == []
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "metrics.csv", "metrics.json"]
    history = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    # --add-epochs stretches the cosine over the new total (2 epochs of 1 step, no warmup step left)
    assert history[1]["lr"] == optim.cosine_lr(1, total_steps=2, warmup_steps=0, base_lr=4e-3, min_lr=1e-5)
    assert checkpoint.load(run / "checkpoint.npz")[1]["train_config"]["epochs"] == 2


def test_resume_refuses_every_contradicting_option_and_lists_them(run, capsys, no_data):
    before = snapshot(run)
    ckpt = str(run / "checkpoint.npz")
    assert (
        main(
            [
                "train",
                "--resume",
                ckpt,
                "--epochs",
                "6",
                "--lr",
                "0.5",
                "--preset",
                "cifar10",
                "--no-tasa",
                "--dataset",
                "events",
                "--batch-size",
                "6",
            ]
        )
        == 2
    )  # the batch size agrees: not a conflict
    line = error_line(capsys.readouterr().err)
    for conflict in [
        "--epochs (checkpoint: 1, given: 6)",
        "--lr (checkpoint: 0.004, given: 0.5)",
        "--preset (checkpoint: tiny, given: cifar10)",
        "--no-tasa (checkpoint: TASA on, given: TASA off)",
        "--dataset (checkpoint: digits, given: events)",
        "--add-epochs",
    ]:
        assert conflict in line, conflict
    assert "--batch-size" not in line
    assert main(["train", "--resume", ckpt, "--out", "runs/digits"]) == 2
    assert "continues in its checkpoint's folder" in error_line(capsys.readouterr().err)
    assert main(["train", "--resume", ckpt, "--overwrite"]) == 2
    assert "--overwrite" in error_line(capsys.readouterr().err)
    assert snapshot(run) == before


def test_set_overrides_the_model_and_resume_checks_it(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert (
        main(["train", "--out", str(run), "--set", "depth=2", "--set", "frozen_u=true", "--set", "u0=2"] + TINY_ARGS)
        == 0
    )
    tc, cfg, params, *_ = train_mod.load_run(run / "checkpoint.npz")
    assert tc.model == (("depth", 2), ("frozen_u", True), ("u0", 2.0))
    assert cfg.depth == 2 and cfg.frozen_u and cfg.u0 == 2.0
    assert all(np.all(params[f"block.{i}.attn.nsad"][:, 5] == 2.0) for i in range(2))  # frozen at u0
    meta = checkpoint.load(run / "checkpoint.npz")[1]
    assert meta["train_config"]["model"] == [["depth", 2], ["frozen_u", True], ["u0", 2.0]]
    capsys.readouterr()
    before = snapshot(run)
    ckpt = str(run / "checkpoint.npz")
    assert main(["train", "--resume", ckpt, "--set", "depth=1"]) == 2  # a contradiction
    line = error_line(capsys.readouterr().err)
    assert "--set (checkpoint: depth=2 frozen_u=True u0=2.0, given: depth=1)" in line
    # the same overrides in another order and spelling are no contradiction
    assert main(["train", "--resume", ckpt, "--set", "u0=2.0", "--set", "frozen_u=1", "--set", "depth=2"]) == 0
    assert "is a finished run" in capsys.readouterr().out
    assert snapshot(run) == before
    # the default folder names the overrides
    seen = []
    monkeypatch.setattr(cli, "train", lambda tc, out, **kw: seen.append(out) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["train", "--set", "frozen_u=true", "--set", "depth=2"])
    assert seen == [os.path.join("runs", "digits-ds2ta-seed0-depth=2-frozen_u=true")]


def test_resuming_a_finished_run_says_so_and_does_nothing(run, capsys, no_data):
    before = snapshot(run)
    assert main(["train", "--resume", str(run / "checkpoint.npz")]) == 0
    out = capsys.readouterr().out
    assert "is a finished run (1 of 1 epochs" in out and "nothing to do" in out and "--add-epochs" in out
    assert "final test accuracy:" not in out
    assert snapshot(run) == before


# --------------------------------------------------------------------------- one-line errors before work
@pytest.mark.parametrize(
    "argv,names",
    [
        (["--preset", "foo"], ["--preset", "'foo'"]),
        (["--min-lr", "0.1", "--lr", "0.001"], ["--min-lr", "0.001"]),
        (["--seed", "-1"], ["--seed", "-1"]),
        (["--lr", "abc"], ["--lr", "'abc'"]),
        (["--epochs", "0"], ["--epochs", ">= 1"]),
        (["--label-smoothing", "1"], ["--label-smoothing", "< 1"]),
        (["--train-subset", "5000"], ["--train-subset", "1438"]),
        (["--add-epochs", "2"], ["--add-epochs", "--resume"]),
        (["--resume", "nowhere/checkpoint.npz"], ["nowhere/checkpoint.npz", "no such file"]),
        (["--set", "depth"], ["--set", "field=value", "'depth'"]),
        (["--set", "dept=2"], ["--set", "'dept' is not a ModelConfig field"]),
        (["--set", "depth=two"], ["--set", "depth expects int"]),
        (["--set", "heads=3"], ["--set", "heads must divide dim"]),
        (["--set", "img_size=32"], ["--set", "cannot set img_size", "--dataset"]),
        (["--set", "num_classes=4"], ["--set", "cannot set num_classes", "--dataset"]),
        (["--set", "tasa=false"], ["--set", "cannot set tasa", "--no-tasa"]),
        (["--set", "nsad=false"], ["--set", "cannot set nsad", "--no-nsad"]),
        (["--dataset", "events", "--set", "T=3"], ["--set", "cannot set T", "events"]),
    ],
)
def test_option_errors_are_one_line_before_any_work(argv, names, tmp_path, capsys, no_data):
    assert status(["train", "--out", str(tmp_path / "run")] + argv) == 2
    line = error_line(capsys.readouterr().err)
    for name in names:
        assert name in line, name
    assert os.listdir(tmp_path) == []  # nothing written


@pytest.mark.parametrize(
    "argv,names",
    [
        (["ablate", "--seeds", "-1"], ["--seeds", "-1"]),
        (["ablate", "--epochs", "0"], ["--epochs", ">= 1"]),
        (["ablate", "--datasets", "cifar"], ["--datasets", "'cifar'"]),
        (["gradcheck", "nope"], ["KERNEL", "'nope'"]),
        (["evaluate", "missing.npz"], ["missing.npz", "no such file"]),
        (["train", "--resume"], ["--resume", "expected one argument"]),
        (["frobnicate"], ["'frobnicate'"]),
    ],
)
def test_other_subcommands_errors_are_one_line(argv, names, tmp_path, monkeypatch, capsys, no_data):
    monkeypatch.chdir(tmp_path)
    assert status(argv) == 2
    line = error_line(capsys.readouterr().err)
    for name in names:
        assert name in line, name
    assert os.listdir(tmp_path) == []


def test_ablate_refuses_an_out_holding_runs_before_any_work(run, capsys, no_data):
    target = run.parent / "ablate" / "digits" / "DS2TA" / "seed0"
    shutil.copytree(run, target)
    assert main(["ablate", "--datasets", "digits", "--seeds", "0", "--out", str(run.parent / "ablate")]) == 2
    line = error_line(capsys.readouterr().err)
    assert "already holds 1 of the 3 runs" in line and "--overwrite" in line


def test_an_internal_bug_keeps_its_traceback(monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("not a user mistake")

    monkeypatch.setattr(cli, "train", bug)
    with pytest.raises(KeyError, match="not a user mistake"):
        main(["train", "--epochs", "1"])


def test_a_cli_error_in_a_real_process_is_one_line_with_status_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ds2ta_ref", "train", "--seed", "-1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert error_line(proc.stderr) == "ds2ta-ref: error: argument --seed: must be an integer >= 0, got -1"
    assert proc.stdout == "" and os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- divergence
def test_a_huge_learning_rate_is_named_as_divergence(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--lr", "1e30"] + TINY_ARGS) == 1
    line = error_line(capsys.readouterr().err)
    assert "training diverged at epoch 1" in line and "lr 1e+30" in line
    assert "non-finite" in line and "no checkpoint was written" in line
    assert not (tmp_path / "run").exists()  # the folder it created is empty, so removed


def poison_loss(monkeypatch):
    real = train_mod.layers.cross_entropy
    monkeypatch.setattr(train_mod.layers, "cross_entropy", lambda *a, **kw: (float("nan"), real(*a, **kw)[1]))


def poison_gradient(monkeypatch):
    real = train_mod.model.backward

    def backward(dlogits, cache):
        dx, grads = real(dlogits, cache)
        grads["head.bias"] = grads["head.bias"] * np.inf
        return dx, grads

    monkeypatch.setattr(train_mod.model, "backward", backward)


def poison_parameter(monkeypatch):
    real = optim.AdamW.step

    def step(self, params, grads, lr=None):
        real(self, params, grads, lr=lr)
        params["block.0.attn.nsad"][0, 0] = np.nan

    monkeypatch.setattr(optim.AdamW, "step", step)


def poison_evaluation(monkeypatch):
    real = train_mod.evaluate
    monkeypatch.setattr(train_mod, "evaluate", lambda *a, **kw: dataclasses.replace(real(*a, **kw), loss=np.inf))


# Epoch 2 of the stretched schedule: 2 steps in all, no warmup step, the second at q = 1/2.
LR = f"{optim.cosine_lr(1, total_steps=2, warmup_steps=0, base_lr=4e-3, min_lr=1e-5):.3g}"


@pytest.mark.parametrize(
    "poison,named",
    [
        (poison_loss, f"step 1 of 1 (global step 2, lr {LR}): non-finite loss (nan)"),
        (poison_gradient, f"step 1 of 1 (global step 2, lr {LR}): non-finite gradient of 'head.bias'"),
        (poison_parameter, f"lr {LR}): parameter 'block.0.attn.nsad' is non-finite after the optimizer step"),
        (poison_evaluation, f"in the evaluation after its last step (lr {LR}): non-finite test loss (inf)"),
    ],
)
def test_divergence_names_epoch_step_lr_and_tensor_and_keeps_the_checkpoint(run, monkeypatch, poison, named):
    before = snapshot(run)
    poison(monkeypatch)
    with pytest.raises(train_mod.TrainingError) as info:
        train(None, resume=str(run / "checkpoint.npz"), add_epochs=1, progress=False, log=quiet)
    message = str(info.value)
    assert message.startswith("training diverged at epoch 2, ") and named in message
    assert f"the last good checkpoint {run / 'checkpoint.npz'} (epoch 1) is intact" in message
    assert snapshot(run) == before


# --------------------------------------------------------------------------- files
def test_stale_temporary_files_are_removed_at_the_next_start(run, capsys):
    stale = [run / ".checkpoint.npz.k3j2h1ab.tmp", run / ".metrics.csv.zz9.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    assert main(["train", "--resume", str(run), "--add-epochs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for path in stale:
        assert not path.exists() and f"removed {path}" in out
    assert sorted(os.listdir(run)) == ["checkpoint.npz", "metrics.csv", "metrics.json"]


def test_metrics_are_written_atomically(run, monkeypatch):
    before = snapshot(run)
    history = json.loads((run / "metrics.json").read_text()) * 2

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train_mod.write_metrics(str(run), history)
    monkeypatch.undo()
    assert snapshot(run) == before  # the old metrics intact, no temporary file left


# --------------------------------------------------------------------------- Ctrl-C
def _default_sigint():
    """A shell without job control starts background jobs (CI's, a ``nohup ... &``) with
    SIGINT ignored, and Python keeps an ignored SIGINT: the child would never see Ctrl-C.
    Restore the default so that Python installs its KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_names_the_last_checkpoint_and_the_resume_command(run):
    """A child extends the finished run by 100 epochs and gets SIGINT once it is training."""
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "ds2ta_ref", "train", "--resume", "run", "--add-epochs", "100", "--no-progress"],
        cwd=run.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        assert child.stdout.readline().startswith("resuming run/checkpoint.npz after epoch 1 of 101")
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    meta = checkpoint.load(run / "checkpoint.npz")[1]
    if meta["epoch"] == 1:  # interrupted in the first added epoch: the checkpoint still says 1 of 1
        assert err == (
            "ds2ta-ref: interrupted; the last checkpoint is run/checkpoint.npz (epoch 1 of 1); "
            "continue with: ds2ta-ref train --resume run/checkpoint.npz --add-epochs 100\n"
        )
    else:  # (a slow signal) after an added epoch was saved, its checkpoint records the new total
        assert err == (
            f"ds2ta-ref: interrupted; the last checkpoint is run/checkpoint.npz (epoch "
            f"{meta['epoch']} of 101); continue with: ds2ta-ref train --resume run/checkpoint.npz\n"
        )
    assert not (run / "run.lock").exists()


def _child(argv, cwd):
    """``python -m ds2ta_ref ARGV`` in ``cwd``, its SIGINT at the default (see ``_default_sigint``)."""
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ds2ta_ref", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _signal_once(child, prefix, sig):
    """Wait for a stdout line starting with ``prefix``, send ``sig``; returns ``(stdout, stderr)``."""
    try:
        lines = []
        while not (lines and lines[-1].startswith(prefix)):
            lines.append(child.stdout.readline())
            assert lines[-1], ("".join(lines), child.stderr.read())
        child.send_signal(sig)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return "".join(lines) + out, err


def test_sigterm_is_ctrl_c_with_status_143(run):
    """SIGTERM (kill, a batch scheduler) ends a run as Ctrl-C does: one line, the resume
    command, the lock released; status 143."""
    child = _child(["train", "--resume", "run", "--add-epochs", "100", "--no-progress"], run.parent)
    _, err = _signal_once(child, "resuming run/checkpoint.npz", signal.SIGTERM)
    assert child.returncode == 143, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("ds2ta-ref: terminated; the last checkpoint is run/checkpoint.npz (epoch ")
    assert "continue with: ds2ta-ref train --resume run/checkpoint.npz" in err
    assert not (run / "run.lock").exists()


# A run whose first epoch lasts seconds (all 1438 digits in batches of 8): a signal sent when
# it logs "training ..." arrives before its first checkpoint.
LONG_EPOCH = ["--epochs", "3", "--batch-size", "8", "--no-progress"]


@pytest.mark.parametrize("sig,word,code", [(signal.SIGINT, "interrupted", 130), (signal.SIGTERM, "terminated", 143)])
def test_overwrite_stopped_in_epoch_1_puts_the_previous_run_back(run, sig, word, code):
    before = snapshot(run)
    child = _child(["train", "--out", "run", "--overwrite"] + LONG_EPOCH, run.parent)
    out, err = _signal_once(child, "training ", sig)
    assert child.returncode == code, err
    assert (
        f"--overwrite: moved the previous run's checkpoint.npz, metrics.csv, metrics.json from run/ to "
        f"{run}.old-" in out
    )
    assert err == (
        f"ds2ta-ref: {word} before this run's first checkpoint; the previous run in run is as it was "
        f"(--overwrite replaces it only once the new run has written a checkpoint)\n"
    )
    assert snapshot(run) == before  # the same bytes, no lock
    assert sorted(os.listdir(run.parent)) == ["run"]  # nothing left aside


def test_overwrite_killed_in_epoch_1_keeps_the_previous_run_and_says_where(run, capsys):
    before = snapshot(run)
    child = _child(["train", "--out", "run", "--overwrite"] + LONG_EPOCH, run.parent)
    out, _ = _signal_once(child, "training ", signal.SIGKILL)
    aside = out.split("from run/ to ")[1].split("/;")[0]
    assert aside.startswith(f"{run}.old-") and snapshot(run.parent / os.path.basename(aside)) == before
    # the next start names the stale lock, that no checkpoint was written, and where the previous run is
    assert main(["train", "--out", str(run), "--overwrite"] + TINY_ARGS) == 2
    line = error_line(capsys.readouterr().err)
    assert "stale lock" in line and "holds no checkpoint" in line
    assert f"the previous run that --overwrite moved aside is in {aside}" in line
    os.unlink(run / "run.lock")
    # with the lock cleared, still no start until the previous run is put back or deleted
    assert main(["train", "--out", str(run), "--overwrite"] + TINY_ARGS) == 2
    line = error_line(capsys.readouterr().err)
    assert f"moved aside is in {aside} (the new run never wrote a checkpoint): put it back with: mv " in line
    command = line.split("put it back with: ")[1].split("; or delete it")[0]
    subprocess.run(command, shell=True, check=True)  # the command it gives
    assert snapshot(run) == before and sorted(os.listdir(run.parent)) == ["run"]


def test_overwrite_with_a_diverging_run_keeps_the_previous_run(run, capsys):
    before = snapshot(run)
    assert main(["train", "--out", str(run), "--overwrite", "--lr", "1e30"] + TINY_ARGS) == 1
    captured = capsys.readouterr()
    line = error_line(captured.err)
    assert "training diverged at epoch 1" in line and "no checkpoint was written" in line
    assert f"the previous run (moved aside by --overwrite) is put back in {run}" in line
    assert "the previous run is back" in captured.out
    assert snapshot(run) == before and sorted(os.listdir(run.parent)) == ["run"]


def test_overwrite_with_bad_data_keeps_the_previous_run(run, tmp_path):
    """A CIFAR file with a label byte of 200: whatever catches it, the previous run stays."""
    folder = tmp_path / "cifar" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.concatenate([rng.integers(0, 10, (2, 1)), rng.integers(0, 256, (2, 3072))], axis=1)
        records[:, 0] = 200
        records.astype(np.uint8).tofile(folder / name)
    before = snapshot(run)
    tc = TrainConfig(dataset="cifar10", data_dir=str(tmp_path / "cifar"), epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="label byte 200"):
        train(tc, str(run), overwrite=True, progress=False, log=quiet)
    assert snapshot(run) == before and sorted(os.listdir(run.parent)) == ["cifar", "run"]


@pytest.mark.parametrize("module", ["ds2ta_ref.model", "ds2ta_ref.train"])
def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path, module):
    """Ctrl-C while ``python -m ds2ta_ref`` imports (the package's modules, then the command
    line's): one line and status 130. The interrupt is raised at the import of ``module`` by a
    ``sitecustomize`` finder; the same interrupt in someone else's ``import ds2ta_ref`` goes on."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name == {module!r}:\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}
    script = tmp_path / "bin" / "ds2ta-ref"  # what pip writes for the console script ds2ta_ref.cli:main
    script.parent.mkdir()
    script.write_text("import sys\nfrom ds2ta_ref.cli import main\nsys.exit(main())\n")
    for command in (["-m", "ds2ta_ref"], [str(script)]):
        proc = subprocess.run(
            [sys.executable, *command, "train", "--help"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (proc.returncode, proc.stderr, proc.stdout) == (130, "ds2ta-ref: interrupted\n", ""), command
    proc = subprocess.run(
        [sys.executable, "-c", f"import ds2ta_ref, {module}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr  # a library import: as usual


# --------------------------------------------------------------------------- evaluate
def test_evaluate_checks_every_checkpoint_before_evaluating_any(run, tmp_path, capsys, no_data):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(run / "checkpoint.npz"), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and str(bad) in error_line(captured.err)


def test_evaluate_a_model_that_does_not_fit_its_data_is_one_line(run, tmp_path, capsys):
    arrays, meta = checkpoint.load(run / "checkpoint.npz")
    meta["train_config"].update(dataset="events", train_subset=0, test_subset=0)  # a T=2 digits model
    mixed = tmp_path / "mixed.npz"
    checkpoint.save(mixed, arrays, meta)
    assert main(["evaluate", str(mixed)]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(mixed) in line and "T=2 (the data needs 8)" in line and "in_channels=1 (the data needs 2)" in line


# --------------------------------------------------------------------------- help and version
def subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_help_states_the_default_of_every_option():
    for name in ("train", "evaluate", "ablate", "gradcheck"):  # golden and compare word their own help
        sub = subparsers()[name]
        fmt = sub._get_formatter()
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            text = fmt._get_help_string(action) or ""
            assert "default" in text, f"{name} {action.option_strings}"
            assert "%(default)s" in text or "(default: " in text
            assert not any(f"(default: {v})" in text for v in ("True", "False", "None")), (name, text)


def test_help_says_switch_off_flags_default_in_words(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-tasa switch TASA off: spatial-only attention inputs (T_AW = 1) (default: TASA on)" in text
    assert "(default: NSAD on)" in text and "(default: True)" not in text and "(default: False)" not in text
    for shown in [
        "--label-smoothing LABEL_SMOOTHING cross-entropy label smoothing (0: none) (default: 0.1)",
        "--dtype {float32,float64} floating-point type (default: float32)",
        "(default: 0.004 for digits, 0.003 for events, 0.001 for cifar10",
        "(default: 12 for digits, 10 for events, 300 for cifar10",
    ]:
        assert shown in text, shown
    with pytest.raises(SystemExit):
        main(["ablate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: digits events)" in text and "(default: 0 1 2)" in text and "(default: runs/ablate)" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ds2ta-ref {ds2ta_ref.__version__}"
