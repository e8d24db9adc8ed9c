import json
import os

import numpy as np
import pytest

from ds2ta_ref import checkpoint, layers, model
from ds2ta_ref import train as train_mod
from ds2ta_ref.cli import main
from ds2ta_ref.energy import E_AC, attention_ops, block_energy, count_zeros
from ds2ta_ref.train import TrainConfig, TrainingError, load_run, train

pytest.importorskip("sklearn")
TINY_SETTINGS = dict(epochs=1, train_subset=8, test_subset=8, batch_size=8)


@pytest.mark.slow
def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    tc = TrainConfig(train_subset=12, test_subset=6)
    ds = train_mod.build_data(tc)
    cfg = train_mod.model_config(tc, ds)
    params = model.init_params(cfg, np.random.default_rng(0), dtype=np.float32)
    state = model.init_state(cfg, dtype=np.float32)
    from ds2ta_ref.optim import AdamW

    opt = AdamW(params, lr=3e-3, weight_decay=0.0)
    xb, yb = ds.train_x, ds.train_y
    losses = []
    for _ in range(6):
        logits, state, cache = model.forward(xb, params, state, cfg, training=True)
        loss, dlogits = layers.cross_entropy(logits, yb)
        losses.append(loss)
        opt.step(params, model.backward(dlogits, cache)[1])
    assert losses[-1] < 0.75 * losses[0] and all(np.diff(losses) < 0), losses


def _final_arrays(out_dir):
    arrays, _ = checkpoint.load(os.path.join(out_dir, "checkpoint.npz"))
    return arrays


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path):
    """Interrupted after epoch 1 and resumed vs uninterrupted: the same parameters,
    optimizer state, random state and history, bit for bit. Two steps per epoch so
    the minibatch order matters, and shift augmentation so the resumed generator
    must continue exactly where it stood (the last lines show that a different
    generator state would give different parameters)."""
    tc = TrainConfig(epochs=2, train_subset=12, test_subset=6, batch_size=6, shift=1)
    full = train(tc, str(tmp_path / "full"), progress=False, log=lambda s: None)
    train(tc, str(tmp_path / "part"), stop_after=1, progress=False, log=lambda s: None)
    arrays, meta = checkpoint.load(tmp_path / "part" / "checkpoint.npz")  # kept for the control below
    resumed = train(tc, resume=str(tmp_path / "part" / "checkpoint.npz"), progress=False, log=lambda s: None)
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], resumed.params[k], err_msg=k)
    a, b = _final_arrays(tmp_path / "full"), _final_arrays(tmp_path / "part")
    assert set(a) == set(b) and any(k.startswith("optim.") for k in a) and "rng.state" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in full.history]
    assert drop_time == [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history]
    with open(tmp_path / "part" / "metrics.json") as f:
        assert [row["epoch"] for row in json.load(f)] == [1, 2]
    assert (tmp_path / "part" / "metrics.csv").read_text().startswith("epoch,step,lr,loss,train_acc,test_acc")

    arrays.update(checkpoint.rng_state_to_arrays(np.random.default_rng(99), prefix="rng."))
    (tmp_path / "other").mkdir()
    checkpoint.save(tmp_path / "other" / "checkpoint.npz", arrays, meta)
    other = train(tc, resume=str(tmp_path / "other" / "checkpoint.npz"), progress=False, log=lambda s: None)
    assert any(not np.array_equal(full.params[k], other.params[k]) for k in full.params)


def test_non_finite_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    tc = TrainConfig(epochs=2, train_subset=12, test_subset=6, batch_size=6)
    out = tmp_path / "run"
    train(tc, str(out), stop_after=1, progress=False, log=lambda s: None)
    before = (out / "checkpoint.npz").read_bytes()
    real = layers.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, labels, **kw):
        calls["n"] += 1
        loss, d = real(logits, labels, **kw)
        return (float("nan"), d) if calls["n"] == 2 else (loss, d)

    monkeypatch.setattr(train_mod.layers, "cross_entropy", poisoned)
    with pytest.raises(TrainingError, match=r"diverged at epoch 2, step 2 of 2 .*non-finite loss \(nan\)"):
        train(tc, resume=str(out / "checkpoint.npz"), progress=False, log=lambda s: None)
    assert (out / "checkpoint.npz").read_bytes() == before


def test_split_sizes_are_the_data_sets_own():
    from ds2ta_ref import cifar

    assert {d: train_mod.SPLIT_SIZES[d] for d in cifar.FILES} == {
        "cifar10": (50000, 10000),
        "cifar100": (50000, 10000),
    }  # the official splits
    for dataset, (n_train, n_test) in train_mod.SPLIT_SIZES.items():
        if dataset in cifar.FILES:
            continue  # not shipped: tests/test_cifar.py reads small files of the same format
        ds = train_mod.build_data(TrainConfig(dataset=dataset))
        assert (len(ds.train_y), len(ds.test_y)) == (n_train, n_test), dataset


def test_truncated_or_tampered_checkpoint_gives_a_clear_error(tmp_path):
    out = tmp_path / "run"
    train(
        TrainConfig(epochs=1, train_subset=6, test_subset=6, batch_size=6), str(out), progress=False, log=lambda s: None
    )
    path = out / "checkpoint.npz"
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated.npz"):
        load_run(truncated)
    # tamper with one stored parameter but keep a valid zip: rewrite the arrays with one changed
    arrays, meta = checkpoint.load(path)
    arrays["param.head.bias"] = arrays["param.head.bias"][:3]
    bad_shape = tmp_path / "bad_shape.npz"
    checkpoint.save(bad_shape, arrays, meta)
    with pytest.raises(ValueError, match="head.bias"):
        load_run(bad_shape)
    flipped = bytearray(raw)
    i = raw.find(b"head.weight")  # corrupt bytes inside the archive after that member's name
    flipped[i + 200] ^= 0xFF
    tampered = tmp_path / "tampered.npz"
    tampered.write_bytes(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointError, match="tampered.npz"):
        load_run(tampered)


def test_cli_train_evaluate_and_help(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "train",
        "--epochs",
        "1",
        "--train-subset",
        "12",
        "--test-subset",
        "6",
        "--batch-size",
        "12",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "final test accuracy:" in printed and "epoch   1/1" in printed
    assert main(["evaluate", str(out / "checkpoint.npz")]) == 0
    printed = capsys.readouterr().out
    assert "DS2TA" in printed and "sparsity" in printed
    # each subcommand's --help exits 0 and prints that subcommand's own usage
    own_option = {
        "train": "--label-smoothing",
        "evaluate": "ds2ta-ref evaluate [-h] CHECKPOINT",
        "ablate": "--seeds",
        "gradcheck": "KERNEL",
    }
    for sub, option in own_option.items():
        with pytest.raises(SystemExit) as info:
            main([sub, "--help"])
        assert info.value.code == 0
        assert option in capsys.readouterr().out, sub


def test_cli_train_help_states_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ["--lr", "--weight-decay", "--label-smoothing", "--clip-grad", "--warmup-epochs", "--resume"]:
        assert flag in text
    assert "0.004 for digits" in text and "default: 0.06" in text


def test_cli_gradcheck_main_job(capsys):
    assert main(["gradcheck", "lif", "tasa", "nsad"]) == 0
    assert "ok" in capsys.readouterr().out


def test_bad_train_config():
    with pytest.raises(
        ValueError, match=r"dataset must be one of \['cifar10', 'cifar100', 'digits', 'events'\], got 'cifar'"
    ):
        TrainConfig(dataset="cifar")
    with pytest.raises(ValueError, match="lr must be a finite number"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(train_mod.ConfigError, match="min_lr must be <= the peak learning rate") as info:
        TrainConfig(lr=1e-3, min_lr=0.1)
    assert info.value.field == "min_lr"


def test_model_overrides_are_normalized_and_checked():
    tc = TrainConfig(model={"u0": 2, "frozen_u": True, "depth": 2})
    assert tc.model == (("depth", 2), ("frozen_u", True), ("u0", 2.0)) and isinstance(tc.model[2][1], float)
    assert TrainConfig(model=[["depth", 2]]).model == (("depth", 2),)  # as read back from the checkpoint's JSON
    assert TrainConfig(model=(("alpha", None),)).model == (("alpha", None),)
    assert TrainConfig(model={"T": 3}).model == (("T", 3),)  # digits are repeated T times: the model's choice
    for overrides, problem in [
        ({"dept": 2}, "'dept' is not a ModelConfig field"),
        ({"depth": 2.0}, "depth expects int, got 2.0"),
        ({"frozen_u": 1}, "frozen_u expects True or False, got 1"),
        ({"u0": "2"}, "u0 expects float, got '2'"),
        ({"heads": 3}, "heads must divide dim"),
        ({"img_size": 8}, "cannot set img_size: the data set decides it"),
        ({"in_channels": 3}, "cannot set in_channels"),
        ({"tasa": False}, "cannot set tasa: use --no-tasa"),
        ((("depth", 1), ("depth", 2)), "sets depth twice"),
        ("depth=2", r"must be \(field, value\) pairs"),
    ]:
        with pytest.raises(train_mod.ConfigError, match=problem) as info:
            TrainConfig(model=overrides)
        assert info.value.field == "model"
    with pytest.raises(train_mod.ConfigError, match="cannot set T: the events data set decides it"):
        TrainConfig(dataset="events", model={"T": 3})


def test_model_overrides_reach_the_model_and_resume_checks_them(tmp_path):
    tc = TrainConfig(
        model={"depth": 2, "frozen_u": True, "u0": 2.0}, epochs=1, train_subset=8, test_subset=8, batch_size=8
    )
    ds = train_mod.build_data(tc)
    cfg = train_mod.model_config(tc, ds)
    assert (cfg.depth, cfg.frozen_u, cfg.u0, cfg.dim) == (2, True, 2.0, 64)  # the rest is the tiny preset's
    assert train_mod.resume_conflicts(tc, {"model": (("depth", 1),)}) == [("model", tc.model, (("depth", 1),))]
    assert train_mod.resume_conflicts(tc, {"model": tc.model}) == []
    out = tmp_path / "run"
    train(tc, str(out), progress=False, log=lambda line: None)
    recorded = load_run(out / "checkpoint.npz")[0]
    assert recorded == tc
    with pytest.raises(train_mod.ConfigError, match="model and the other settings must be the checkpoint's"):
        train(
            TrainConfig(**{**TINY_SETTINGS, "model": {"depth": 1}}),
            resume=str(out / "checkpoint.npz"),
            progress=False,
            log=lambda line: None,
        )


def test_energy_formula():
    from ds2ta_ref.config import ModelConfig

    cfg = ModelConfig(img_size=8, in_channels=1, T=2, depth=2, dim=16, heads=2)
    assert attention_ops(cfg) == 2 * 2 * 4**2 * 8
    A = [np.zeros((2, 3, 2, 4, 4)), np.ones((2, 3, 2, 4, 4))]
    A[0][0, 0, 0, 0, 0] = 1
    zeros, entries = count_zeros(A)
    rows = block_energy(cfg, zeros, entries)
    assert rows[1].sparsity == 0 and rows[1].energy_pj == pytest.approx(E_AC * 1e12 * attention_ops(cfg))
    assert rows[0].sparsity == pytest.approx(1 - 1 / A[0].size)


def test_ablation_plan_and_tables():
    """The study (ds2ta_ref.ablation, what ``ds2ta-ref ablate`` runs): every run planned and checked
    before any is trained, one folder per data set, variant and seed; Table 4 as mean ± sample std."""
    from ds2ta_ref import ablation
    from ds2ta_ref.energy import BlockEnergy

    runs = ablation.plan(["digits", "events"], [0, 1], 2, "out")
    assert len(runs) == 12 and runs[0].out == os.path.join("out", "digits", "Spikformer", "seed0")
    assert {r.out for r in runs} >= {os.path.join("out", "events", "NSAD_only", "seed1")}
    assert all(r.tc.epochs == 2 and (r.tc.tasa, r.tc.nsad) == train_mod.VARIANTS[r.variant] for r in runs)
    with pytest.raises(train_mod.ConfigError, match="seed must be an integer >= 0"):
        ablation.plan(["digits"], [0, -1], None, "out")
    results = ablation.results_for(runs)
    assert results.datasets == ["digits", "events"] and results.seeds == [0, 1]
    for r in runs:
        results.accuracy.setdefault((r.variant, r.dataset), []).append(0.5 + 0.25 * r.seed)
        results.energy.setdefault((r.variant, r.dataset), []).append(
            [BlockEnergy(block=0, sparsity=0.1 * (1 + r.seed), ops=10, energy_pj=2.0 * (1 + r.seed))]
        )
    table = ablation.accuracy_table(results).splitlines()
    assert table[1:3] == ["model | digits | events", "---|---|---"]
    assert table[3] == "Spikformer | 62.50 ± 17.68 | 62.50 ± 17.68"  # 50 and 75: std with ddof=1
    assert "digits: attention-map sparsity" in ablation.energy_tables(results)
