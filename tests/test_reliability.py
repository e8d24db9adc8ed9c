"""Issue 18 items 4-7: devices and processes, data, options, checkpoints; one line for every mistake.

Every error here goes through the CLI's one error path: one line ``ds2ta-ref: error: ...`` naming
the argument or file and what was expected, exit status 2, nothing loaded or written before it.
Runs are tiny (one step of 6 digits, or a few CIFAR-format records written here).
"""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from ds2ta_ref import ablation, checkpoint, cifar, cli, config, data, devices, fingerprint, memory, model
from ds2ta_ref import train as train_mod
from ds2ta_ref.cli import main
from ds2ta_ref.train import TrainConfig, train

pytest.importorskip("sklearn")

TINY = dict(epochs=1, train_subset=6, test_subset=6, batch_size=6)
TINY_ARGS = ["--epochs", "1", "--train-subset", "6", "--test-subset", "6", "--batch-size", "6", "--no-progress"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quiet(_):
    pass


def status(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ds2ta-ref: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_data(monkeypatch):
    """Fails the test if the data is loaded: errors must come before any work."""

    def build_data(tc):
        raise AssertionError("the data was loaded before the error")

    monkeypatch.setattr(train_mod, "build_data", build_data)
    monkeypatch.setattr(cli, "build_data", build_data)


def write_cifar10(root, n_train=3, n_test=4, seed=0):
    """CIFAR-10 binary files of the official record format with few records (``root/cifar-10-batches-bin``)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{i}.bin", n_train) for i in range(1, 6)] + [("test_batch.bin", n_test)]:
        rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1)
        rec.astype(np.uint8).tofile(folder / name)
    return root


# --------------------------------------------------------------------------- item 4: devices and processes
@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with ``n`` CUDA devices, as torch.cuda reports them."""
    torch = pytest.importorskip("torch")

    def machine(n):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return machine


@pytest.mark.parametrize(
    "device,gpus,named",
    [
        ("cuda", 0, "'cuda': CUDA is not available"),
        ("cuda:5", 1, "'cuda:5' does not exist: this machine has 1 CUDA device(s) (cuda:0 .. cuda:0)"),
        ("mps", 1, "'mps': Apple's MPS is not supported"),
        ("meta", 1, "'meta': 'meta' tensors hold no data"),
        ("cdua", 1, "'cdua': not a device name; expected cpu, cuda or cuda:N"),
        ("cuda:x", 1, "'cuda:x': not a device name"),
    ],
)
def test_a_bad_device_is_one_line_before_any_work(device, gpus, named, fake_cuda, tmp_path, capsys, no_data):
    fake_cuda(gpus)
    out = tmp_path / "run"
    assert status(["train", *TINY_ARGS, "--backend", "torch", "--device", device, "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "argument --device" in line and named in line, line
    assert not out.exists()


def test_an_existing_cuda_device_passes_the_check(fake_cuda):
    fake_cuda(2)
    assert devices.check_device("cuda:1") == "cuda:1" and devices.check_device("cuda") == "cuda"
    with pytest.raises(devices.DeviceError, match="'cuda:2' does not exist: this machine has 2"):
        devices.check_device("cuda:2")


def test_the_numpy_backend_takes_only_the_cpu(tmp_path, capsys, no_data):
    assert status(["train", *TINY_ARGS, "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "argument --device: 'cuda' needs --backend torch" in error_line(capsys)


def torchrun_env(monkeypatch, rank):
    for key, value in dict(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="29999"
    ).items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("rank", [0, 1])
def test_torchrun_with_the_numpy_backend_is_one_line_per_process_and_leaves_no_lock(
    rank, monkeypatch, tmp_path, capsys, no_data
):
    torchrun_env(monkeypatch, rank)
    out = tmp_path / "run"
    assert status(["train", *TINY_ARGS, "--out", str(out)]) == 2
    assert "argument --backend: the numpy backend runs in one process, but this is one of 2 processes" in error_line(
        capsys
    )
    assert not out.exists()  # no folder, no run.lock


def test_torchrun_on_cuda_without_nccl_is_one_line(monkeypatch, fake_cuda, tmp_path, capsys, no_data):
    import torch.distributed

    fake_cuda(2)
    torchrun_env(monkeypatch, 1)
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: False)
    out = tmp_path / "run"
    assert status(["train", *TINY_ARGS, "--backend", "torch", "--device", "cuda", "--out", str(out)]) == 2
    assert "argument --device: 'cuda' under torchrun needs NCCL" in error_line(capsys)
    assert not out.exists()
    monkeypatch.setenv("LOCAL_RANK", "3")  # more processes than GPUs on this node
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    assert status(["train", *TINY_ARGS, "--backend", "torch", "--device", "cuda", "--out", str(out)]) == 2
    assert "under torchrun means cuda:LOCAL_RANK (LOCAL_RANK=3) does not exist" in error_line(capsys)


@pytest.mark.parametrize(
    "unset,changes,named",
    [
        ("MASTER_ADDR", {}, "environment variable MASTER_ADDR is not set, but WORLD_SIZE=2"),
        (None, {"RANK": "5"}, "environment variable RANK must be an integer in [0, 2) with WORLD_SIZE=2, got '5'"),
        ("LOCAL_RANK", {}, "environment variable LOCAL_RANK must be an integer >= 0"),
        (None, {"WORLD_SIZE": "two"}, "environment variable WORLD_SIZE must be an integer >= 1"),
    ],
)
def test_a_broken_torchrun_environment_is_one_line(unset, changes, named, monkeypatch, tmp_path, capsys, no_data):
    pytest.importorskip("torch")
    torchrun_env(monkeypatch, 0)
    if unset:
        monkeypatch.delenv(unset)
    for key, value in changes.items():
        monkeypatch.setenv(key, value)
    assert status(["train", *TINY_ARGS, "--backend", "torch", "--out", str(tmp_path / "run")]) == 2
    assert named in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_train_torch_checks_its_device_too(tmp_path):
    pytest.importorskip("torch")
    from ds2ta_ref.torch.train import train_torch

    with pytest.raises(devices.DeviceError, match="'meta'"):
        train_torch(TrainConfig(**TINY), str(tmp_path / "run"), device="meta", progress=False, log=quiet)
    assert not (tmp_path / "run").exists()


def test_a_torchrun_process_with_the_numpy_backend_is_one_line_in_a_real_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, RANK="1", LOCAL_RANK="1", WORLD_SIZE="2")
    proc = subprocess.run(
        [sys.executable, "-m", "ds2ta_ref", "train", *TINY_ARGS, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "argument --backend" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- item 5: data
def test_a_bad_cifar_label_is_one_line_naming_the_file_and_record(tmp_path, capsys, no_data):
    root = write_cifar10(tmp_path / "data")
    path = root / "cifar-10-batches-bin" / "data_batch_2.bin"
    raw = bytearray(path.read_bytes())
    raw[2 * 3073] = 200  # the label byte of record 2
    path.write_bytes(bytes(raw))
    out = tmp_path / "run"
    assert status(["train", "--dataset", "cifar10", "--data-dir", str(root), "--out", str(out), "--no-progress"]) == 2
    line = error_line(capsys)
    assert "data_batch_2.bin' is malformed: record 2 (0-based) has label byte 200, out of range [0, 10)" in line
    assert not out.exists()


def test_cifar_subsets_larger_than_the_records_are_an_error(tmp_path, capsys, no_data):
    root = write_cifar10(tmp_path / "data")  # 15 training records, 4 test records
    assert (
        status(
            [
                "train",
                "--dataset",
                "cifar10",
                "--data-dir",
                str(root),
                "--train-subset",
                "20",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    assert "hold 15 records, fewer than the training subset of 20" in error_line(capsys)
    with pytest.raises(ValueError, match="hold 4 records, fewer than the subset of 5"):
        cifar.load("cifar10", root, test_subset=5)


def test_cifar_data_dir_is_stored_absolute_with_a_fingerprint_checked_at_evaluate_and_resume(
    tmp_path, monkeypatch, capsys
):
    root = write_cifar10(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    tc = TrainConfig(dataset="cifar10", data_dir="data", epochs=2, batch_size=8)
    assert tc.data_dir == str(root)
    train(tc, "run", stop_after=1, progress=False, log=quiet)
    _, meta = checkpoint.load("run/checkpoint.npz")
    files = meta["data"]["files"]
    test_file = root / "cifar-10-batches-bin" / "test_batch.bin"
    assert meta["train_config"]["data_dir"] == str(root) and len(files) == 6
    digest = fingerprint.file_fingerprint(test_file)["sha256"]
    assert files[-1] == dict(path=str(test_file), size=4 * 3073, sha256=digest)
    assert main(["evaluate", "run/checkpoint.npz"]) == 0
    capsys.readouterr()
    original = test_file.read_bytes()
    test_file.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])  # a pixel changed
    for argv in (["evaluate", "run/checkpoint.npz"], ["train", "--resume", "run", "--no-progress"]):
        assert status(argv) == 2
        assert f"the data file '{test_file}' has changed since the run was trained: its SHA-256 differs" in error_line(
            capsys
        )
    test_file.write_bytes(original + original[:3073])  # one record more
    assert status(["evaluate", "run/checkpoint.npz"]) == 2
    assert "has changed since the run was trained: 15365 bytes now, 12292 then" in error_line(capsys)
    test_file.write_bytes(original)
    os.rename("data", "moved")
    for argv in (["evaluate", "run/checkpoint.npz"], ["train", "--resume", "run", "--no-progress"]):
        assert status(argv) == 2
        assert "data_batch_1.bin', which is missing (moved or deleted" in error_line(capsys)
    os.rename("moved", "data")
    assert main(["train", "--resume", "run", "--no-progress", "--data-dir", "data"]) == 0  # relative = recorded


def test_digits_and_events_fingerprints_are_the_arrays(run, monkeypatch, capsys):
    _, meta = checkpoint.load(str(run / "checkpoint.npz"))
    ds = train_mod.build_data(TrainConfig(**TINY))
    assert meta["data"]["arrays_sha256"] == fingerprint.arrays_sha256(ds)
    load_digits = data.load_digits

    def changed(**kwargs):
        out = load_digits(**kwargs)
        out.test_x[0, 0, 0, 0] += 1.0  # as if scikit-learn shipped other digits
        return out

    monkeypatch.setattr(data, "load_digits", changed)
    assert status(["evaluate", str(run / "checkpoint.npz")]) == 2
    assert "the digits data built now (data_seed 0) differs from the data the run was trained on" in error_line(capsys)
    events = TrainConfig(dataset="events", train_subset=4, test_subset=4)
    ds = train_mod.build_data(events)
    recorded = fingerprint.of_data(events, ds)
    fingerprint.verify(recorded, events, "x.npz", ds)  # the same arrays pass
    with pytest.raises(checkpoint.CheckpointError, match="the events data built now"):
        fingerprint.verify(dict(recorded, arrays_sha256="0" * 64), events, "x.npz", ds)


# --------------------------------------------------------------------------- item 6: options
@pytest.mark.parametrize(
    "item,named",
    [
        ("tau0=nan", "tau0 must be a finite number, got nan"),
        ("u0=inf", "u0 must be a finite number, got inf"),
        ("v_threshold=0", "v_threshold must be > 0, got 0.0"),
        ("attn_v_threshold=-0.5", "attn_v_threshold must be > 0"),
        ("tau_m=inf", "tau_m must be a finite number"),
        ("tau_m=0.5", "tau_m must be >= 1"),
        ("scale=0", "scale must be > 0"),
        ("alpha=0", "alpha must be None or > 0"),
        ("alpha=nan", "alpha must be"),
        ("bn_momentum=1.5", "bn_momentum must be <= 1"),
        ("bn_momentum=-0.1", "bn_momentum must be >= 0"),
        ("bn_eps=0", "bn_eps must be > 0"),
        ("window=0", "window must be an integer >= 1"),
        ("depth=0", "depth must be an integer >= 1"),
        ("mlp_ratio=0", "mlp_ratio must be an integer >= 1"),
        ("heads=3", "heads must divide dim"),
        ("dim=100", "dim must be a multiple of 8"),
        ("T=0", "T must be an integer >= 1"),
        ("sps=vit", "sps must be 'cifar' or 'dvs'"),
        ("surrogate=relu", "surrogate must be one of"),
        ("nsad_rounding=up", "nsad_rounding must be one of"),
        ("qkv_bias=maybe", "qkv_bias expects true or false"),
        ("depth=2.5", "depth expects int"),
        ("img_size=32", "cannot set img_size"),
    ],
)
def test_set_values_are_checked_against_their_meaning(item, named, tmp_path, capsys, no_data):
    assert status(["train", *TINY_ARGS, "--set", item, "--out", str(tmp_path / "run")]) == 2
    line = error_line(capsys)
    assert "argument --set" in line and named in line, line


def test_every_float_field_of_modelconfig_has_a_range():
    floats = {f.name for f in dataclasses.fields(config.ModelConfig) if config.field_kind(f.name) is float}
    assert floats == set(config.FLOAT_RANGES)
    for name in floats:
        with pytest.raises(ValueError, match=f"^{name} must be"):
            config.ModelConfig(**{name: float("inf")})
    with pytest.raises(ValueError, match="frozen_u must be True or False, got 1"):
        config.ModelConfig(frozen_u=1)


@pytest.mark.parametrize(
    "argv,named",
    [
        (["--set", "depth=2", "--set", "depth=3"], "argument --set 'depth=3': depth is given twice (depth=2 before)"),
        (["--warmup-epochs", "1"], "argument --warmup-epochs: must be < epochs=1"),
        (["--shift", "16"], "argument --shift: must be < 16, the image size of digits"),
        (["--shift", "100000"], "argument --shift: must be < 16"),
        (["--out", ""], "argument --out: expected a folder path, got ''"),
        (["--out", "  "], "argument --out: expected a folder path"),
    ],
)
def test_train_option_errors(argv, named, tmp_path, capsys, no_data):
    monkey_out = [] if "--out" in argv else ["--out", str(tmp_path / "run")]
    assert status(["train", *TINY_ARGS, *argv, *monkey_out]) == 2
    assert named in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_resume_accepts_a_set_equal_to_the_checkpoints_value(run, capsys, no_data):
    ckpt = str(run / "checkpoint.npz")  # trained without --set: depth=1 and u0=1.0 are the tiny preset's
    assert main(["train", "--resume", ckpt, "--set", "depth=1", "--set", "u0=1"]) == 0
    assert "is a finished run" in capsys.readouterr().out
    assert status(["train", "--resume", ckpt, "--set", "depth=2"]) == 2
    assert "--set (checkpoint: no --set, given: depth=2)" in error_line(capsys)


def test_a_request_too_large_for_memory_is_refused_with_its_size(tmp_path, monkeypatch, capsys, no_data):
    out = tmp_path / "run"
    assert status(["train", *TINY_ARGS, "--set", "dim=1000000", "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "training tiny --set dim=1000000 on digits with batches of 6 (float32) needs at least" in line
    assert "TB of memory (an estimate of its largest arrays" in line and not out.exists()
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**6)
    assert status(["train", *TINY_ARGS, "--out", str(out)]) == 2  # the tiny run needs more than 1 MB
    assert "needs at least 6.09 MB of memory" in error_line(capsys)
    checked = []  # the torch backend (GPU memory, its own arrays) is not held to the NumPy estimate
    monkeypatch.setattr(cli, "_check_memory", checked.append)
    monkeypatch.setattr(cli, "train", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    pytest.importorskip("torch")
    import ds2ta_ref.torch.train as torch_train

    monkeypatch.setattr(torch_train, "train_torch", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert status(["train", *TINY_ARGS, "--backend", "torch", "--out", str(out)]) == 130 and checked == []


@pytest.mark.parametrize("changes", [dict(), dict(mlp_ratio=16), dict(dim=128, heads=8, depth=2), dict(T=4)])
def test_memory_estimate_is_below_the_measured_cache(changes):
    cfg = config.preset("tiny", img_size=16, in_channels=1, num_classes=10, **changes)
    params = model.init_params(cfg, np.random.default_rng(0), dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((4, 1, 16, 16)).astype(np.float32)
    _, _, cache = model.forward(
        params=params, state=model.init_state(cfg, dtype=np.float32), x=x, cfg=cfg, training=True
    )  # by keyword: the positional order is being changed
    cached = sum(a.nbytes for a in _arrays(cache))
    total, largest = memory.activation_elements(cfg, 4)
    assert memory.ACTIVATION_COPIES * total * 4 <= cached <= 8 * total * 4 and largest <= total
    assert memory.count_params(cfg) == model.count_params(cfg)
    assert memory.train_bytes(cfg, 4) == (5 * model.count_params(cfg) + memory.ACTIVATION_COPIES * total) * 4


def test_memory_check_names_the_request_and_both_sizes():
    cfg = config.preset("tiny")
    with pytest.raises(memory.MemoryRequestError, match=r"^golden --batch 100000000 needs at least .* but 1 kB is"):
        memory.check(memory.forward_bytes(cfg, 10**8), "golden --batch 100000000", available=1000)


def _arrays(obj, seen=None):
    """Every numpy array reachable from a cache (NamedTuples, dataclasses, dicts, lists), each once."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays(v, seen)
    elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        for name in getattr(obj, "__slots__", ()) or vars(obj):
            yield from _arrays(getattr(obj, name, None), seen)


def test_digits_without_scikit_learn_names_the_extra(run, monkeypatch, tmp_path, capsys, no_data):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert status(["train", *TINY_ARGS, "--out", str(tmp_path / "new")]) == 2
    line = error_line(capsys)
    assert "argument --dataset: digits needs scikit-learn" in line and "pip install 'ds2ta_ref[digits]'" in line
    assert status(["evaluate", str(run / "checkpoint.npz")]) == 2
    line = error_line(capsys)
    assert "checkpoint.npz' is a digits run: digits needs scikit-learn" in line and "ds2ta_ref[digits]" in line


def test_ablate_takes_data_dir_for_cifar_and_refuses_duplicates_before_the_first_run(
    tmp_path, monkeypatch, capsys, no_data
):
    root = write_cifar10(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    seen = []

    def fake_train(tc, out, **kwargs):
        seen.append(tc)
        raise KeyboardInterrupt

    monkeypatch.setattr(ablation, "train", fake_train)  # ablate's runs are ds2ta_ref.ablation.run_one's
    assert (
        main(
            ["ablate", "--datasets", "cifar10", "--data-dir", "data", "--seeds", "0", "--epochs", "1", "--no-progress"]
        )
        == 130
    )
    assert seen[0].dataset == "cifar10" and seen[0].data_dir == str(root)
    capsys.readouterr()
    for argv, named in (
        (["--seeds", "0", "1", "0"], "argument --seeds: 0 given twice"),
        (["--datasets", "digits", "digits"], "argument --datasets: digits given twice"),
        (["--out", ""], "argument --out: expected a folder path"),
        (["--datasets", "cifar10"], "argument --data-dir: is needed for"),
        (["--data-dir", "data"], "argument --data-dir: only for cifar10 and cifar100"),
    ):
        assert status(["ablate", *argv]) == 2
        assert named in error_line(capsys)
    assert len(seen) == 1


# --------------------------------------------------------------------------- item 7: checkpoints
def tamper(path, change):
    arrays, meta = checkpoint.load(path)
    change(arrays, meta)
    checkpoint.save(path, arrays, meta)  # a consistent file (checksums recomputed): the content is at fault


def _negative_var(arrays, meta):
    key = next(k for k in arrays if k.endswith("running_var"))
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = -1.0
    return key


def _first_optim(kind):
    def change(arrays, meta):
        key = next(k for k in arrays if k.startswith(f"optim.{kind}."))
        del arrays[key]

    return change


def _misshaped_optim(arrays, meta):
    key = next(k for k in arrays if k.startswith("optim.v.") and arrays[k].size > 1)
    arrays[key] = arrays[key].reshape(-1)[:-1]


@pytest.mark.parametrize(
    "change,named",
    [
        (_negative_var, "running_var' holds a negative value (-1); a running variance is >= 0"),
        (_first_optim("m"), "optimizer state 'optim.m."),
        (lambda a, m: a.pop("optim.step"), "optimizer state 'optim.step' is missing"),
        (_misshaped_optim, "optimizer state 'optim.v."),
        (lambda a, m: a.update({"optim.m.extra": np.zeros(2, np.float32)}), "'optim.m.extra' is not a trainable"),
        (
            lambda a, m: a.update({"optim.v.head.bias": -np.ones_like(a["optim.v.head.bias"])}),
            "'optim.v.head.bias' holds a negative value",
        ),
        (
            lambda a, m: a.pop("rng.state"),
            "random generator state (rng.*) is missing or malformed: "
            "random generator state does not match the expected arrays: missing 'rng.state'",
        ),
        (lambda a, m: a.update({"rng.inc": np.zeros(3, np.uint64)}), "'rng.inc' has shape (3,), expected (2,)"),
        (lambda a, m: m.update(epoch=5), "metadata 'epoch' must be an integer in [0, 1] (the run's length"),
        (lambda a, m: m.update(epoch=-1), "metadata 'epoch' must be an integer in [0, 1]"),
        (lambda a, m: m.update(step=-3), "metadata 'step' must be an integer >= 0"),
        (lambda a, m: m.update(history=[]), "metadata 'history' must hold one entry per epoch (1), got 0 entries"),
    ],
)
def test_checkpoint_content_errors_name_key_and_file_at_evaluate_and_resume(change, named, run, capsys, no_data):
    path = str(run / "checkpoint.npz")
    tamper(path, change)
    for argv in (["evaluate", path], ["train", "--resume", path, "--add-epochs", "1", "--no-progress"]):
        assert status(argv) == 2
        line = error_line(capsys)
        assert f"checkpoint {path!r}" in line and named in line, line
    assert not (run / "run.lock").exists()


def test_data_shapes_are_what_build_data_makes(tmp_path):
    """``train.DATA_SHAPES`` (what --shift and the memory check use before the data is loaded) is pinned."""
    root = write_cifar10(tmp_path / "data")
    for tc in (
        TrainConfig(dataset="digits"),
        TrainConfig(dataset="events"),
        TrainConfig(dataset="cifar10", data_dir=str(root)),
    ):
        cfg = train_mod.model_config(tc, train_mod.build_data(tc))
        assert {k: getattr(cfg, k) for k in train_mod.DATA_SHAPES[tc.dataset]} == train_mod.DATA_SHAPES[tc.dataset]
    assert train_mod.DATA_SHAPES["cifar100"] == dict(train_mod.DATA_SHAPES["cifar10"], num_classes=100)


# --------------------------------------------------------------------------- the sweep's other findings
def test_gradcheck_seed_and_evaluate_duplicates_are_named(run, capsys):
    assert status(["gradcheck", "lif", "--seed", "-1"]) == 2
    assert "argument --seed: must be an integer >= 0, got -1" in error_line(capsys)
    path = str(run / "checkpoint.npz")
    assert status(["evaluate", path, path]) == 2
    assert f"argument CHECKPOINT: {path} given twice" in error_line(capsys)


def test_data_dir_for_digits_is_named_as_given(tmp_path, capsys, no_data):
    assert status(["train", *TINY_ARGS, "--data-dir", "some/dir", "--out", str(tmp_path / "run")]) == 2
    assert (
        "argument --data-dir: is needed for ['cifar10', 'cifar100'] (the folder of the official binary files) "
        "and only for them, got 'some/dir'" in error_line(capsys)
    )


def test_a_cifar_file_that_is_a_directory_or_unreadable_is_named(tmp_path, monkeypatch, capsys, no_data):
    root = write_cifar10(tmp_path / "data")
    path = root / "cifar-10-batches-bin" / "test_batch.bin"
    path.unlink()
    path.mkdir()
    assert status(["train", "--dataset", "cifar10", "--data-dir", str(root), "--out", str(tmp_path / "run")]) == 2
    assert "test_batch.bin' is a directory, not a CIFAR binary file" in error_line(capsys)
    path.rmdir()
    write_cifar10(tmp_path / "data")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(np, "memmap", denied)  # as for a file without read permission (root reads anything)
    assert status(["train", "--dataset", "cifar10", "--data-dir", str(root), "--out", str(tmp_path / "run")]) == 2
    assert "data_batch_1.bin' cannot be read (Permission denied)" in error_line(capsys)


def test_the_new_modules_do_not_import_torch():
    code = (
        "import sys, ds2ta_ref.devices, ds2ta_ref.fingerprint, ds2ta_ref.memory, ds2ta_ref.cli; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert devices.check_device("cpu", backend="numpy") == "cpu"  # the NumPy backend never asks torch


def test_cifar_data_dir_that_is_the_archive_or_the_python_version_says_so(tmp_path, capsys, no_data):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(b"not extracted")
    assert status(["train", "--dataset", "cifar10", "--data-dir", str(archive), "--out", str(tmp_path / "r")]) == 2
    assert "cifar-10-binary.tar.gz' is a file, not a folder" in error_line(capsys)
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert status(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "holds cifar-10-batches-py/, the python version of cifar10 (pickles, not read here)" in error_line(capsys)
