"""ds2ta_ref.torch: the PyTorch model equals the NumPy reference (float64), kernel by kernel and end to end."""

import dataclasses
import shutil
import subprocess
import sys

import numpy as np
import pytest

import ds2ta_ref
from ds2ta_ref import lif, model, nsad, tasa
from ds2ta_ref.gradcheck import firing_model_inputs, rel_error, small_model_config

SMALL = small_model_config()

# NumPy and PyTorch sum float products in different orders (and OpenBLAS picks another
# kernel on Intel and AMD machines: Haswell, SkylakeX, Zen), so float results are compared
# at this relative tolerance (rel_error, float64), never bit for bit. Only what is exact by
# construction is compared exactly: spikes of inputs away from the threshold, table look-ups
# of integer scores, integer counts, and arrays copied or round-tripped unchanged.
CROSS_LIBRARY_RTOL = 1e-14


def test_importing_ds2ta_ref_never_imports_torch():
    code = "import ds2ta_ref, ds2ta_ref.train, ds2ta_ref.cifar, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def dt(torch):
    import ds2ta_ref.torch as dt

    return dt


# ------------------------------------------------------------------ names, shapes, round trips
@pytest.mark.parametrize(
    "cfg",
    [
        ds2ta_ref.preset("tiny"),
        SMALL.replace(tasa=False, nsad=False),
        SMALL.replace(tau_per_site=True, frozen_tau=True),
        SMALL.replace(img_size=16, sps="dvs", qkv_bias=False),
    ],
)
def test_state_dict_is_the_reference_names_and_shapes(dt, cfg):
    net = dt.DS2TA(cfg)
    sd = net.state_dict()
    expected = {**model.param_shapes(cfg), **model.state_shapes(cfg)}
    assert set(sd) == set(expected)
    assert all(tuple(sd[k].shape) == expected[k] for k in expected)
    # DS2TA(cfg, seed) is the NumPy initialization, number for number
    params = model.init_params(cfg, np.random.default_rng(0), dtype=np.float32)
    p, s = dt.to_numpy(net)
    assert list(p) == list(params) and all(np.array_equal(p[k], params[k]) for k in params)
    assert all(np.array_equal(s[k], v) for k, v in model.init_state(cfg, dtype=np.float32).items())
    frozen = [n for n, q in net.named_parameters() if not q.requires_grad]
    assert frozen == ([k for k in params if k.endswith("tau")] if cfg.frozen_tau else [])


def test_from_numpy_to_numpy_round_trip_and_plain_load_state_dict(dt, torch):
    params, state, _ = firing_model_inputs(SMALL, np.random.default_rng(1))
    state = {k: v + 0.25 if v.dtype.kind == "f" else v + 3 for k, v in state.items()}
    net = dt.from_numpy(params, state, SMALL)
    assert net.head.weight.dtype == torch.float64
    p, s = dt.to_numpy(net)
    assert all(np.array_equal(p[k], params[k]) and p[k].dtype == params[k].dtype for k in params)
    assert all(np.array_equal(s[k], state[k]) for k in state)
    other = dt.DS2TA(SMALL, seed=5).double()
    other.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in {**params, **state}.items()})
    assert all(torch.equal(other.state_dict()[k], net.state_dict()[k]) for k in net.state_dict())


def test_from_numpy_names_every_bad_entry(dt):
    params, state, _ = firing_model_inputs(SMALL, np.random.default_rng(1))
    params.pop("head.bias")
    params["block.0.attn.nsad"] = np.zeros((3, 6))
    either_order = r"head\.bias[\s\S]*block\.0\.attn\.nsad|block\.0\.attn\.nsad[\s\S]*head\.bias"
    with pytest.raises(ValueError, match=either_order):
        dt.from_numpy(params, state, SMALL)


def test_bad_input_shape_is_a_one_line_error(dt, torch):
    with pytest.raises(ValueError, match=r"x must be static images \(B, 2, 8, 8\)"):
        dt.DS2TA(SMALL)(torch.zeros(2, 3, 8, 8))


# ------------------------------------------------------------------ kernels against NumPy
@pytest.mark.parametrize(
    "options",
    [dict(), dict(decay_input=True, detach_reset=False), dict(surrogate="atan", alpha=3.0, v_threshold=0.5, tau_m=3.0)],
)
def test_lif_kernel_matches_numpy(dt, torch, options):
    rng = np.random.default_rng(0)
    x, dspikes = rng.normal(0.8, 1.0, (5, 3, 7)), rng.standard_normal((5, 3, 7))
    s, cache = lif.forward(x, **options)
    xt = torch.tensor(x, requires_grad=True)
    st = dt.functional.lif(xt, **options)
    st.backward(torch.tensor(dspikes))
    assert np.array_equal(s, st.detach().numpy()) and 0 < s.sum() < s.size
    assert rel_error(lif.backward(dspikes, cache), xt.grad.numpy()) <= 1e-14


@pytest.mark.parametrize("tau", [-0.8, 0.5, 1.4, 2.5])
def test_tasa_mix_matches_numpy(dt, torch, tau):
    rng = np.random.default_rng(0)
    s, w = rng.integers(0, 3, (4, 2, 3, 5)).astype(float), rng.standard_normal((6, 5))
    dout = rng.standard_normal((4, 2, 3, 6))
    out, cache = tasa.forward(s, w, None, tau=tau, window=3)
    ds, dw, _, dtau = tasa.backward(dout, cache)
    st, wt, taut = (torch.tensor(a, requires_grad=True) for a in (s, w, tau))
    ot = dt.functional.tasa_mix(st, taut, 3) @ wt.T
    ot.backward(torch.tensor(dout))
    # A float product: NumPy's BLAS and PyTorch's sum in different orders (OpenBLAS picks
    # another kernel on Intel and AMD), so the outputs agree to round-off, not bit for bit.
    assert rel_error(out, ot.detach().numpy()) <= CROSS_LIBRARY_RTOL
    assert rel_error(ds, st.grad.numpy()) <= 1e-14 and rel_error(dw, wt.grad.numpy()) <= 1e-14
    assert abs(dtau - taut.grad.item()) <= 1e-12 * abs(dtau)


@pytest.mark.parametrize("rounding", ["nearest", "floor"])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
def test_nsad_kernel_matches_numpy(dt, torch, rounding, surrogate):
    rng = np.random.default_rng(0)
    head_dim, H = 6, 3
    scores = rng.integers(0, head_dim + 1, (2, 2, H, 5, 5)).astype(float)
    params = np.stack(
        [
            rng.uniform(0.5, 1.5, H),
            rng.uniform(-0.3, 0.3, H),
            rng.uniform(0, 3, H),
            rng.uniform(-2, 2, H),
            rng.uniform(0, 4, H),
            rng.uniform(0, 2, H),
        ],
        axis=1,
    )
    dA = rng.standard_normal(scores.shape)
    A, cache = nsad.forward(scores, params, head_dim=head_dim, surrogate=surrogate, rounding=rounding)
    dS, dP = nsad.backward(dA, cache)
    St, Pt = torch.tensor(scores, requires_grad=True), torch.tensor(params, requires_grad=True)
    At = dt.functional.nsad(St, Pt, head_dim=head_dim, surrogate=surrogate, rounding=rounding)
    At.backward(torch.tensor(dA))
    assert np.array_equal(A, At.detach().numpy()) and np.count_nonzero(A) > 0
    assert rel_error(dS, St.grad.numpy()) <= 1e-13 and rel_error(dP, Pt.grad.numpy()) <= 1e-13


# ------------------------------------------------------------------ the whole model, float64
@pytest.fixture(scope="module")
def crosscheck(dt):
    from ds2ta_ref.torch import crosscheck

    return crosscheck


CASE_NAMES = [
    "ds2ta",
    "spikformer_decay_input",
    "random_nsad_tables",
    "random_nsad_floor",
    "tau_per_site",
    "frozen_tau",
    "frozen_u",
    "dvs_splitter_events",
    "detach_reset_false",
    "atan",
    "atan_alpha3_decay_input",
]


def test_case_list_is_complete(crosscheck):
    assert list(crosscheck.CASES) == CASE_NAMES


@pytest.mark.parametrize("name", CASE_NAMES)
def test_whole_model_matches_numpy_float64(crosscheck, name):
    cfg, params, state, x, labels = crosscheck.case_inputs(name)
    errors = crosscheck.compare(cfg, params, state, x, labels)
    assert {k[5:] for k in errors if k.startswith("grad.")} == set(model.trainable(cfg))
    assert {k[6:] for k in errors if k.startswith("state.")} == set(model.state_shapes(cfg))
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-10, (worst, errors[worst])
    # the case is not vacuous: every weight of the model receives gradient
    _, _, cache = model.forward(x, params, state, cfg, training=True)
    _, grads = model.backward(np.ones((x.shape[-4], cfg.num_classes)) * np.arange(cfg.num_classes), cache)
    silent = [k for k, g in grads.items() if not k.endswith("_linear.bias") and not np.any(g)]
    assert not silent, silent
    assert all(A.any() for A in cache.attention_maps)


@pytest.mark.parametrize("name", CASE_NAMES[:2])
def test_dx_matches_torch_autograd_float64(dt, crosscheck, torch, name):
    """model.backward's dx (issue 20: the block contract at the top) against autograd of the input."""
    from ds2ta_ref import layers

    cfg, params, state, x, labels = crosscheck.case_inputs(name)
    logits, _, cache = model.forward(x, params, state, cfg, training=True)
    _, dlogits = layers.cross_entropy(logits, labels)
    dx, _ = model.backward(dlogits, cache)
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.cross_entropy(dt.from_numpy(params, state, cfg)(xt), torch.from_numpy(labels)).backward()
    assert np.any(dx) and rel_error(dx, xt.grad.numpy()) <= 1e-10


def test_frozen_u_gradient_is_exactly_zero_in_torch_as_in_numpy(dt, crosscheck, torch):
    cfg, params, state, x, labels = crosscheck.case_inputs("frozen_u")
    net = dt.from_numpy(params, state, cfg)
    logits = net(torch.from_numpy(x))
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)).backward()
    _, _, cache = model.forward(x, params, state, cfg, training=True)
    _, grads = model.backward(np.ones((x.shape[-4], cfg.num_classes)), cache)
    for name in [k for k in params if k.endswith(".nsad")]:
        g = net.get_parameter(name).grad.numpy()
        assert np.all(g[:, 5] == 0.0) and np.all(g[:, :5] != 0.0), (name, g)
        assert np.all(grads[name][:, 5] == 0.0) and np.all(grads[name][:, :5] != 0.0), (name, grads[name])


def test_whole_model_matches_numpy_on_cuda_when_there_is_one(crosscheck, torch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: python -m ds2ta_ref.torch.crosscheck --device cuda checks one")
    for name in ("ds2ta", "random_nsad_tables", "dvs_splitter_events"):
        errors = crosscheck.compare(*crosscheck.case_inputs(name), device="cuda")
        worst = max(errors, key=errors.get)
        assert errors[worst] <= 1e-10, (name, worst, errors[worst])


def test_eval_mode_and_record_match_numpy(dt, torch):
    params, state, x = firing_model_inputs(SMALL, np.random.default_rng(3), gain=25.0)
    _, state, _ = model.forward(x, params, state, SMALL, training=True)  # non-trivial running statistics
    logits, new_state, cache = model.forward(x, params, state, SMALL, training=False, need_backward=False)
    net = dt.from_numpy(params, state, SMALL).eval()
    with torch.no_grad():
        out, rec = net(torch.tensor(x), record=True)
    assert rel_error(logits, out.numpy()) <= 1e-12
    assert rec.spike_count.item() == cache.record.spike_count and rec.neuron_count == cache.record.neuron_count
    assert rec.zeros.tolist() == [int(np.count_nonzero(A == 0)) for A in cache.record.attention_maps]
    assert rec.entries == [A.size for A in cache.record.attention_maps]
    _, s = dt.to_numpy(net)
    assert all(np.array_equal(s[k], state[k]) for k in state)


def test_no_state_leaks_between_forwards(dt, torch):
    net = dt.from_numpy(*firing_model_inputs(SMALL, np.random.default_rng(3), gain=25.0)[:2], SMALL).eval()
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = net(x)
        net(torch.rand(5, 2, 8, 8, dtype=torch.float64) * 3)
        assert torch.equal(net(x), first)


# ------------------------------------------------------------------ training: the same run in both backends
def _quiet():
    return dict(progress=False, log=lambda _: None)


def _bn_fed(name):
    return name.endswith("_linear.bias")  # exactly-zero gradient in theory: its values are rounding noise


def _close(a: dict, b: dict, tol, *, skip=_bn_fed):
    assert set(a) == set(b)
    errors = {k: rel_error(np.asarray(a[k], dtype=float), np.asarray(b[k], dtype=float)) for k in a if not skip(k)}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tol, (worst, errors[worst])


def _history_close(h1, h2, tol):
    assert len(h1) == len(h2)
    for r1, r2 in zip(h1, h2):
        assert set(r1) == set(r2)
        for key in r1:
            if key != "seconds":
                assert abs(r1[key] - r2[key]) <= tol * max(1.0, abs(r1[key])), (key, r1[key], r2[key])


@pytest.fixture(scope="module")
def runs(dt, torch, tmp_path_factory):
    """float64 runs of the tiny preset on 48 digits (2 epochs of 2 steps, shift augmentation):
    NumPy, torch, torch interrupted after epoch 1 and resumed by torch and by NumPy."""
    from ds2ta_ref.torch.train import train_torch
    from ds2ta_ref.train import TrainConfig, train

    torch.set_num_threads(1)  # the machines running the tests are shared; one thread is fastest there
    tc = TrainConfig(train_subset=32, test_subset=16, epochs=2, batch_size=16, shift=1, dtype="float64")
    d = tmp_path_factory.mktemp("runs")
    out = {"tc": tc, "dir": d}
    out["numpy"] = train(tc, str(d / "numpy"), **_quiet())
    out["torch"] = train_torch(tc, str(d / "torch"), **_quiet())
    train_torch(tc, str(d / "half"), stop_after=1, **_quiet())
    for name, fn in (("torch_resumed", train_torch), ("numpy_resumed", train)):  # a run resumes in its folder
        (d / name).mkdir()
        shutil.copy(d / "half" / "checkpoint.npz", d / name / "checkpoint.npz")
        out[name] = fn(None, resume=str(d / name), **_quiet())
    return out


@pytest.mark.slow
def test_torch_training_equals_numpy_training_float64(runs):
    """Same batches, augmentation, initialization, schedule, clipping and AdamW: the same run."""
    a, b = runs["numpy"], runs["torch"]
    _close(a.params, b.params, 1e-10)
    # The running means follow the biases that feed each BatchNorm, whose values are rounding
    # noise (~1e-12 after Adam normalizes it): relative to the means, 1e-9.
    _close(a.state, b.state, 1e-9)
    _history_close(a.history, b.history, 1e-10)
    # the checkpoints hold the same arrays under the same names (optimizer moments included)
    from ds2ta_ref import checkpoint

    arrays_np, meta_np = checkpoint.load(runs["dir"] / "numpy" / "checkpoint.npz")
    arrays_t, meta_t = checkpoint.load(runs["dir"] / "torch" / "checkpoint.npz")
    assert set(arrays_np) == set(arrays_t) and meta_t["backend"] == "torch"
    assert all(arrays_np[k].dtype == arrays_t[k].dtype for k in arrays_np)
    _close(arrays_np, arrays_t, 1e-10, skip=lambda k: _bn_fed(k) or k.startswith(("rng.", "state.")))
    _close(arrays_np, arrays_t, 1e-9, skip=lambda k: not k.startswith("state."))
    assert all(np.array_equal(arrays_np[k], arrays_t[k]) for k in arrays_np if k.startswith("rng."))
    assert (runs["dir"] / "torch" / "metrics.csv").read_text().splitlines()[0] == (
        runs["dir"] / "numpy" / "metrics.csv"
    ).read_text().splitlines()[0]


def test_torch_checkpoint_resumes_in_both_backends(runs):
    full = runs["torch"]
    resumed = runs["torch_resumed"]
    assert all(np.array_equal(full.params[k], resumed.params[k]) for k in full.params)  # bit for bit
    _history_close(full.history, resumed.history, 1e-15)
    _close(full.params, runs["numpy_resumed"].params, 1e-10)
    _history_close(full.history, runs["numpy_resumed"].history, 1e-10)


def test_checkpoints_evaluate_in_the_other_backend(dt, runs):
    from ds2ta_ref.torch.train import evaluate_torch
    from ds2ta_ref.train import build_data, evaluate, load_run

    tc, cfg, params, state, _, meta = load_run(runs["dir"] / "torch" / "checkpoint.npz")
    ds = build_data(tc)
    one_example = 1 / len(ds.test_y)  # logits agree to 1e-10: only a near-tie could flip one argmax
    result = evaluate(params, state, cfg, ds.test_x, ds.test_y)  # torch's checkpoint, NumPy's model
    assert abs(result.accuracy - meta["history"][-1]["test_acc"]) <= one_example
    assert abs(result.loss - meta["history"][-1]["test_loss"]) <= 1e-10
    tc, cfg, params, state, _, meta = load_run(runs["dir"] / "numpy" / "checkpoint.npz")
    result = evaluate_torch(dt.from_numpy(params, state, cfg), ds.test_x, ds.test_y)  # and the reverse
    assert abs(result.accuracy - meta["history"][-1]["test_acc"]) <= one_example
    assert abs(result.loss - meta["history"][-1]["test_loss"]) <= 1e-10
    assert abs(result.spike_rate - evaluate(params, state, cfg, ds.test_x, ds.test_y).spike_rate) <= 1e-12


@pytest.mark.slow
def test_float32_first_step_within_round_off_and_a_few_steps_close(dt, torch):
    """float32: the first step's logits and gradients agree to float32 round-off; over a few
    steps a spike that flips at a threshold (or an Adam step on a near-zero gradient) makes
    the runs drift apart by at most a small fraction of one learning-rate step."""
    import torch.nn.functional as F

    from ds2ta_ref import data, layers
    from ds2ta_ref.torch.train import train_torch
    from ds2ta_ref.train import TrainConfig, train

    cfg = ds2ta_ref.preset("tiny")
    ds = data.load_digits(size=16)
    x, y = ds.train_x[:24].astype(np.float32), ds.train_y[:24]
    params, state = model.init_params(cfg, np.random.default_rng(0), dtype=np.float32), model.init_state(cfg)
    logits, _, cache = model.forward(x, params, state, cfg, training=True)
    loss, dlogits = layers.cross_entropy(logits, y, label_smoothing=0.1)
    _, grads = model.backward(dlogits, cache)
    net = dt.from_numpy(params, state, cfg).train()
    out = net(torch.from_numpy(x))
    assert out.dtype == torch.float32
    F.cross_entropy(out, torch.from_numpy(y), label_smoothing=0.1).backward()
    assert rel_error(logits, out.detach().numpy()) <= 1e-5
    _close(grads, {k: p.grad.numpy() for k, p in net.named_parameters()}, 1e-4)

    tc = TrainConfig(train_subset=24, test_subset=16, epochs=3, batch_size=24, dtype="float32")  # 1 step per epoch
    a, b = train(tc, **_quiet()), train_torch(tc, **_quiet())
    for r1, r2 in zip(a.history, b.history):
        assert abs(r1["loss"] - r2["loss"]) <= 1e-3 * r1["loss"]
    steps = sum(r["lr"] for r in a.history)  # no parameter moves more than ~lr per AdamW step
    drift = max(float(np.abs(a.params[k] - b.params[k]).max()) for k in a.params if not _bn_fed(k))
    assert drift <= 0.1 * steps, (drift, steps)


# ------------------------------------------------------------------ DistributedDataParallel (gloo, 2 CPU processes)
@pytest.mark.slow
def test_ddp_gradient_is_the_combined_batch_gradient(dt):
    from ds2ta_ref.torch.distributed import gradient_check

    errors = gradient_check(world_size=2)
    assert errors["eval_bn"] <= 1e-12  # BatchNorm on running statistics: exactly the combined batch
    assert errors["train_bn_vs_shards"] <= 1e-10  # per-process statistics: the mean of the shards' gradients
    assert errors["train_bn_vs_combined"] > 1e-3  # ... which is not the combined batch's (documented)
    assert errors["sync_bn_vs_combined"] <= 1e-10  # synchronized statistics: the combined batch again
    assert errors["sync_bn_running_stats"] <= 1e-12


@pytest.mark.slow
def test_ddp_training_is_the_single_process_run_and_rank0_checkpoints(dt, runs, tmp_path):
    """2 processes (gloo, synchronized BatchNorm) train the very run of one process: rank 0's
    checkpoint after epoch 1 is the single-process one, evaluates in NumPy, and resumed in a
    single process it ends where the uninterrupted single-process run ends."""
    from ds2ta_ref.torch.distributed import train_processes
    from ds2ta_ref.torch.train import train_torch
    from ds2ta_ref.train import build_data, evaluate, load_run

    tc = runs["tc"]
    train_processes(tc, str(tmp_path / "ddp"), world_size=2, stop_after=1, sync_bn=True)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["checkpoint.npz", "metrics.csv", "metrics.json"]
    tc2, cfg, params, state, arrays, meta = load_run(tmp_path / "ddp" / "checkpoint.npz")
    assert meta["world_size"] == 2 and meta["epoch"] == 1 and meta["step"] == 2 and tc2 == tc
    _, _, params1, state1, _, meta1 = load_run(runs["dir"] / "half" / "checkpoint.npz")  # one process
    _close(params, params1, 1e-10)
    _close(state, state1, 1e-9)
    _history_close(meta["history"], meta1["history"], 1e-10)
    ds = build_data(tc)
    result = evaluate(params, state, cfg, ds.test_x, ds.test_y)  # torch's checkpoint, NumPy's model
    assert abs(result.accuracy - meta["history"][0]["test_acc"]) <= 1 / len(ds.test_y)
    resumed = train_torch(None, resume=str(tmp_path / "ddp"), **_quiet())  # in one process, in its folder
    assert resumed.trained_epochs == 1
    _close(resumed.params, runs["torch"].params, 1e-10)
    _history_close(resumed.history, runs["torch"].history, 1e-10)


def test_convert_sync_batchnorm_keeps_the_tensors_and_is_plain_batchnorm_in_one_process(dt, torch):
    from ds2ta_ref.torch.distributed import SyncBatchNorm1d, SyncBatchNorm2d, convert_sync_batchnorm

    net = dt.from_numpy(*firing_model_inputs(SMALL, np.random.default_rng(3), gain=25.0)[:2], SMALL).train()
    before = dict(net.named_parameters())
    buffers = dict(net.named_buffers())
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = dt.from_numpy(*dt.to_numpy(net), SMALL).train()(x)
    convert_sync_batchnorm(net)
    assert isinstance(net.patch_embed.proj_bn, SyncBatchNorm2d) and isinstance(net.block[0].mlp.fc1_bn, SyncBatchNorm1d)
    assert all(p is before[k] for k, p in net.named_parameters())
    assert all(b is buffers[k] for k, b in net.named_buffers())
    assert torch.equal(net(x), expected)  # no process group: the plain BatchNorm


def test_sync_batchnorm_refuses_what_it_cannot_update_in_one_line(torch, monkeypatch):
    """The synchronized path updates the running statistics with a momentum: a momentum of None
    (PyTorch's cumulative average) or no running statistics is refused with a clear error. A pretend
    2-process group whose sum is the identity, so the synchronized path is one process's BatchNorm."""
    from ds2ta_ref.torch import syncbn

    monkeypatch.setattr(syncbn, "all_reduce", lambda x: x)
    monkeypatch.setattr(syncbn.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(syncbn.dist, "get_world_size", lambda group=None: 2)
    x = torch.rand(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    synced, plain = syncbn.SyncBatchNorm1d(3).double().train(), torch.nn.BatchNorm1d(3).double().train()
    torch.testing.assert_close(synced(x), plain(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(synced.running_var, plain.running_var, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"a momentum \(not None\)"):
        syncbn.SyncBatchNorm1d(3, momentum=None).double().train()(x)
    with pytest.raises(ValueError, match=r"track_running_stats=True"):
        syncbn.SyncBatchNorm1d(3, track_running_stats=False).double().train()(x)


def test_dtype_agnostic_float32_bfloat16_and_autocast(dt, torch):
    import torch.nn.functional as F

    cfg = ds2ta_ref.preset("tiny", depth=1)
    x, y = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3])
    for dtype in (torch.float32, torch.bfloat16):
        net = dt.DS2TA(cfg).to(dtype)
        out = net(x)  # the input is cast to the model's dtype
        assert out.dtype == dtype
        F.cross_entropy(out.float(), y).backward()
        assert all(p.grad.dtype == dtype and torch.isfinite(p.grad).all() for p in net.parameters())
    net = dt.DS2TA(cfg).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(net(x), y)
    loss.backward()
    assert net.head.weight.grad.dtype == torch.float32 and torch.isfinite(loss)


def test_run_folder_rules_are_the_numpy_backends(dt, runs):
    """A folder holding a run is refused before any work, a resumed run keeps its settings,
    a finished run resumed does nothing (the rules of ds2ta_ref.train.train)."""
    from ds2ta_ref.torch.train import train_torch
    from ds2ta_ref.train import ConfigError, RunFolderError

    with pytest.raises(RunFolderError, match="already holds a run"):
        train_torch(runs["tc"], str(runs["dir"] / "numpy"), **_quiet())
    with pytest.raises(ConfigError, match="seed is 0 in the checkpoint, 5 given"):
        train_torch(dataclasses.replace(runs["tc"], seed=5), resume=str(runs["dir"] / "torch"), **_quiet())
    done = train_torch(None, resume=str(runs["dir"] / "numpy"), **_quiet())
    assert done.trained_epochs == 0 and done.history == runs["numpy"].history


def test_train_torch_on_cifar_binary_files_with_crop_and_flip(dt, tmp_path, monkeypatch):
    """The CIFAR path: binary files -> normalized Dataset -> train_torch with crop+flip augmentation."""
    from ds2ta_ref import cifar
    from ds2ta_ref.torch.train import train_torch
    from ds2ta_ref.train import TrainConfig, load_run

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name, n in [(f"data_batch_{i}.bin", 4) for i in range(1, 6)] + [("test_batch.bin", 6)]:
        records = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], axis=1)
        records.astype(np.uint8).tofile(folder / name)
    ds = cifar.load("cifar10", tmp_path)
    calls = []
    augment = cifar.augment
    monkeypatch.setattr(cifar, "augment", lambda xb, r, **kw: calls.append(kw["fill"]) or augment(xb, r, **kw))
    tc = TrainConfig(epochs=1, batch_size=10, dtype="float64")
    result = train_torch(tc, str(tmp_path / "run"), data_set=ds, **_quiet())
    assert result.cfg.img_size == 32 and result.cfg.in_channels == 3 and result.history[0]["step"] == 2
    assert len(calls) == 2 and np.array_equal(calls[0], cifar.black("cifar10"))  # every training batch
    assert load_run(tmp_path / "run" / "checkpoint.npz")[1] == result.cfg


def test_seed_none_starts_nsad_as_numpy_does_not_at_zero(dt, torch):
    """DS2TA(cfg, seed=None) used to start with every NSAD parameter 0 (every attention map 0)."""
    cfg = ds2ta_ref.preset("tiny")
    net = dt.DS2TA(cfg, seed=None)
    want = nsad.init_params(cfg.heads, cfg.u0)
    for i in range(cfg.depth):
        got = net.get_parameter(f"block.{i}.attn.nsad").detach().double().numpy()
        np.testing.assert_array_equal(got, want)
        assert np.any(got)  # the check can fail: all zeros (the old start) is rejected here
    np.testing.assert_array_equal(
        dt.DS2TA(cfg, seed=0).get_parameter("block.0.attn.nsad").detach().double().numpy(), want
    )
    # the attention maps are not all zero from the start (with NSAD at 0 every entry was 0)
    torch.manual_seed(0)
    _, record = net.train()(torch.rand(4, cfg.in_channels, cfg.img_size, cfg.img_size) * 4, record=True)
    assert int(record.zeros.sum()) < sum(record.entries), record


# ------------------------------------------------------------------ one run library for both backends (issue 20)
@pytest.fixture(scope="module")
def finished_tiny(dt, tmp_path_factory):
    from ds2ta_ref.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny") / "run"
    train(TrainConfig(epochs=1, train_subset=6, test_subset=6, batch_size=6), str(out), **_quiet())
    return out


@pytest.mark.parametrize("add_epochs", [np.int64(1), 1, np.int32(0), -1, 1.5, True, "1", np.float64(1.0), np.int64(-2)])
def test_both_trainers_accept_and_refuse_the_same_add_epochs(dt, finished_tiny, tmp_path, add_epochs):
    """The resume rules are one function (ds2ta_ref.runs.plan_resume): NumPy integers are integers
    to both trainers, and both refuse the same values with the same message."""
    from ds2ta_ref.torch.train import train_torch
    from ds2ta_ref.train import train

    outcomes = []
    for name, fn in (("numpy", train), ("torch", train_torch)):
        shutil.copytree(finished_tiny, tmp_path / name)
        try:
            result = fn(None, resume=str(tmp_path / name), add_epochs=add_epochs, **_quiet())
            outcomes.append(("trained", result.trained_epochs, len(result.history)))
        except ValueError as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    assert outcomes[0] == outcomes[1], outcomes
    valid = not isinstance(add_epochs, (bool, str, float)) and add_epochs >= 0
    assert outcomes[0][0] == ("trained" if valid else "ConfigError")
    if valid:
        assert outcomes[0][1:] == (int(add_epochs), 1 + int(add_epochs))
    else:
        assert outcomes[0][1] == f"add_epochs must be an integer >= 0, got {add_epochs!r}"


def test_torch_trainer_reaches_no_private_helper_and_no_circle(dt):
    """torch/train.py uses the run library's public names only and does not import
    torch/distributed.py (which imports it): no circle."""
    import ast
    import os

    import ds2ta_ref.torch.train as torch_train

    tree = ast.parse(open(torch_train.__file__).read())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module != "distributed" and not any(a.name == "distributed" for a in node.names)
            if node.level:  # the package's own modules: no private name imported
                assert not [a.name for a in node.names if a.name.startswith("_")], ast.dump(node)
                modules.update(a.asname or a.name for a in node.names)
    reached = [
        f"{n.value.id}.{n.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id in modules
        and n.attr.startswith("_")
    ]
    assert reached == []
    code = (
        "import sys, ds2ta_ref.torch.train; "
        "assert 'ds2ta_ref.torch.distributed' not in sys.modules, 'train imports distributed'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_convert_sync_batchnorm_native_is_pytorchs_syncbatchnorm_on_the_same_tensors(dt, torch):
    """On CUDA (``native=None`` there, forced here on the CPU) the conversion puts PyTorch's own
    SyncBatchNorm in place, on the same parameters and buffers; in eval mode it is plain BatchNorm."""
    from ds2ta_ref.torch.syncbn import SyncBatchNorm2d, convert_sync_batchnorm

    net = dt.from_numpy(*firing_model_inputs(SMALL, np.random.default_rng(3), gain=25.0)[:2], SMALL).eval()
    before, buffers = dict(net.named_parameters()), dict(net.named_buffers())
    x = torch.rand(2, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = net(x)
    convert_sync_batchnorm(net, native=True)
    assert type(net.patch_embed.proj_bn) is torch.nn.SyncBatchNorm
    assert type(net.block[0].mlp.fc1_bn) is torch.nn.SyncBatchNorm
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in net.modules())
    assert all(p is before[k] for k, p in net.named_parameters()) and set(before) == set(dict(net.named_parameters()))
    assert all(b is buffers[k] for k, b in net.named_buffers())
    assert torch.equal(net(x), expected)
    cpu = dt.from_numpy(*firing_model_inputs(SMALL, np.random.default_rng(3), gain=25.0)[:2], SMALL)
    convert_sync_batchnorm(cpu)  # the default on the CPU: the package's own
    assert type(cpu.patch_embed.proj_bn) is SyncBatchNorm2d
