import numpy as np
import pytest

import ds2ta_ref
from ds2ta_ref import model
from ds2ta_ref.gradcheck import check_gradients, firing_model_inputs, model_case, rel_error, small_model_config

# Small enough for finite differences: 8x8 images -> 2x2 = 4 tokens, two blocks.
SMALL = small_model_config()


def _inputs(cfg, B=2, seed=0, gain=1.0):
    # Random BatchNorm affine parameters so that every layer of so tiny a model fires.
    return firing_model_inputs(cfg, np.random.default_rng(seed), batch=B, gain=gain)


# ------------------------------------------------------------------ parameter counts and names
def test_cifar10_spikformer_parameter_count_is_exact():
    cfg = ds2ta_ref.preset("cifar10", tasa=False, nsad=False)
    assert model.count_params(cfg) == 9_324_730


def test_ds2ta_adds_one_tau_per_block_and_six_numbers_per_head():
    base = model.count_params(ds2ta_ref.preset("cifar10", tasa=False, nsad=False))
    assert model.count_params(ds2ta_ref.preset("cifar10")) - base == 4 * (1 + 6 * 12) == 292
    assert model.count_params(ds2ta_ref.preset("cifar10", nsad=False)) - base == 4
    assert model.count_params(ds2ta_ref.preset("cifar100", tasa=False, nsad=False)) == 9_324_730 + 90 * 385


def test_dvs_parameter_count():
    n = model.count_params(ds2ta_ref.preset("dvs", tasa=False, nsad=False))
    assert n == 2_566_666 and round(n / 1e6, 2) == 2.57


def test_init_params_names_and_statistics():
    cfg = ds2ta_ref.preset("tiny")
    params = model.init_params(cfg, np.random.default_rng(0))
    assert list(params) == list(model.param_shapes(cfg))
    for name in [
        "patch_embed.proj_conv.weight",
        "patch_embed.proj_bn.weight",
        "patch_embed.rpe_conv.weight",
        "block.0.attn.q_linear.weight",
        "block.0.attn.proj_bn.bias",
        "block.0.mlp.fc1_linear.bias",
        "head.weight",
        "block.0.attn.tau",
        "block.0.attn.nsad",
    ]:
        assert name in params
    assert params["block.0.attn.tau"].shape == () and params["block.0.attn.tau"] == cfg.tau0
    assert params["block.0.attn.nsad"].shape == (cfg.heads, 6)
    w = params["block.0.mlp.fc1_linear.weight"]
    assert abs(w.std() - 0.02) < 0.002 and np.all(params["block.0.mlp.fc1_linear.bias"] == 0)
    c = params["patch_embed.proj_conv1.weight"]
    bound = 1 / np.sqrt(c.shape[1] * 9)
    assert np.abs(c).max() <= bound and np.abs(c).max() > 0.9 * bound
    for name in params:
        if "_bn" in name:
            assert np.all(params[name] == (1 if name.endswith(".weight") else 0)), name
    state = model.init_state(cfg)
    assert "patch_embed.proj_bn.running_mean" in state and "block.0.mlp.fc2_bn.running_var" in state
    same = model.init_params(cfg, np.random.default_rng(0))
    assert all(np.array_equal(params[k], same[k]) for k in params)


def test_spikformer_has_no_ds2ta_parameters():
    params = model.init_params(ds2ta_ref.preset("tiny", tasa=False, nsad=False), np.random.default_rng(0))
    assert not any(k.endswith((".tau", ".nsad")) for k in params)


# ------------------------------------------------------------------ forward behaviour
def test_forward_shapes_and_binary_streams():
    params, state, x = _inputs(SMALL)
    logits, new_state, cache = model.forward(x, params, state, SMALL, training=True)
    assert logits.shape == (2, SMALL.num_classes)
    assert set(new_state) == set(state)
    for A in cache.attention_maps:
        assert A.shape == (SMALL.T, 2, SMALL.heads, SMALL.num_tokens, SMALL.num_tokens)
        assert np.array_equal(A, np.round(A))
    _, grads = model.backward(np.ones_like(logits), cache)
    assert set(grads) == set(params)
    assert all(grads[k].shape == params[k].shape and grads[k].dtype == params[k].dtype for k in params)


def test_eval_uses_running_statistics_and_leaves_them_unchanged():
    params, state, x = _inputs(SMALL)
    _, trained_state, _ = model.forward(x, params, state, SMALL, training=True)
    logits1, same, _ = model.forward(x, params, trained_state, SMALL, training=False)
    for k in trained_state:
        np.testing.assert_array_equal(same[k], trained_state[k])
    # eval output does not depend on the rest of the batch
    logits2, _, _ = model.forward(x[:1], params, trained_state, SMALL, training=False)
    np.testing.assert_allclose(logits1[:1], logits2, rtol=1e-12, atol=1e-12)


def test_float32_end_to_end():
    params, state, x = _inputs(SMALL)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    logits, _, cache = model.forward(x, p32, state, SMALL, training=True)
    assert logits.dtype == np.float32
    _, grads = model.backward(np.ones_like(logits), cache)
    assert all(g.dtype == np.float32 for g in grads.values())


def test_same_seed_same_numbers():
    params, state, x = _inputs(SMALL, seed=3)
    a = model.forward(x, params, state, SMALL, training=True)[0]
    params, state, x = _inputs(SMALL, seed=3)
    b = model.forward(x, params, state, SMALL, training=True)[0]
    np.testing.assert_array_equal(a, b)


def test_event_frames_input():
    cfg = SMALL
    params, state, _ = _inputs(cfg)
    frames = (np.random.default_rng(0).random((cfg.T, 3, cfg.in_channels, 8, 8)) < 0.3).astype(float)
    logits, _, _ = model.forward(frames, params, state, cfg, training=True)
    assert logits.shape == (3, cfg.num_classes)


# ------------------------------------------------------------------ gradient checks
def _smooth_check(cfg, seed, max_entries=4):
    return model_case(np.random.default_rng(seed), cfg, max_entries=max_entries)


@pytest.mark.slow
def test_whole_model_gradient_check_smooth_mode():
    """Finite differences in float64 on a random sample of entries of every parameter
    tensor, including tau and the NSAD parameters (T = 2, two blocks, TASA and NSAD on)."""
    report = _smooth_check(SMALL, seed=0)
    assert {"block.0.attn.tau", "block.1.attn.nsad", "patch_embed.proj_conv.weight"} <= set(report)
    worst = max(report, key=report.get)
    assert report[worst] <= 1e-6, (worst, report[worst])


@pytest.mark.slow
def test_whole_model_gradient_check_undetached_reset_and_per_site_tau():
    cfg = SMALL.replace(detach_reset=False, tau_per_site=True, decay_input=True, surrogate="atan", alpha=2.0)
    report = _smooth_check(cfg, seed=1, max_entries=3)
    assert "block.0.attn.proj_tau" in report
    worst = max(report, key=report.get)
    assert report[worst] <= 1e-6, (worst, report[worst])


@pytest.mark.slow
def test_whole_model_gradient_check_with_frozen_u():
    """With ``frozen_u`` the backward is the derivative of the model in which every NSAD
    threshold u (column 5 of ``nsad``) is a constant: u's gradient is exactly 0 (and so is
    its finite difference), a .. e and every other parameter still match central differences."""
    cfg = SMALL.replace(frozen_u=True)
    rng = np.random.default_rng(7)
    params, state, x = firing_model_inputs(cfg, rng)
    nsad_names = [k for k in params if k.endswith(".nsad")]
    for k in nsad_names:  # every coefficient non-zero, so that a .. e all get a gradient
        params[k] = np.stack(
            [
                rng.uniform(0.5, 1.5, cfg.heads),
                rng.uniform(-0.2, 0.2, cfg.heads),
                rng.uniform(0.5, 3, cfg.heads),
                rng.uniform(-2, 2, cfg.heads),
                rng.uniform(0.5, 4, cfg.heads),
                rng.uniform(0, 1.5, cfg.heads),
            ],
            axis=1,
        )
    u_fixed = {k: params[k][:, 5].copy() for k in nsad_names}

    def fwd(**p):
        p = dict(p)
        for k, u in u_fixed.items():  # u is a constant of this function
            p[k] = p[k].copy()
            p[k][:, 5] = u
        logits, _, cache = model.forward(x, p, state, cfg, training=True, smooth=True)
        return logits, cache

    _, cache = fwd(**params)
    _, grads = model.backward(rng.standard_normal((x.shape[-4], cfg.num_classes)), cache)
    for k in nsad_names:
        assert np.all(grads[k][:, 5] == 0.0) and np.all(grads[k][:, :5] != 0.0), (k, grads[k])

    def grads_only(dlogits, cache):
        return model.backward(dlogits, cache)[1]

    report = check_gradients(fwd, grads_only, params, wrt=nsad_names, rng=rng, floor=1e-3)  # every entry
    report.update(
        check_gradients(fwd, grads_only, params, wrt=model.trainable(cfg), rng=rng, max_entries=3, floor=1e-3)
    )
    assert set(nsad_names) | {"block.0.attn.tau", "head.weight"} <= set(report)
    worst = max(report, key=report.get)
    assert report[worst] <= 1e-6, (worst, report[worst])


# ------------------------------------------------------------------ PyTorch twin
def _torch_compare(torch, cfg, seed, gain=25.0):
    from torch_twin_model import model as twin

    params, state, x = _inputs(cfg, seed=seed, gain=gain)
    logits, new_state, cache = model.forward(x, params, state, cfg, training=True)
    dlogits = np.random.default_rng(seed).standard_normal(logits.shape)
    _, grads = model.backward(dlogits, cache)
    # Every weight receives gradient (the attention LIF fires, so proj_linear is exercised).
    assert all(np.abs(grads[k]).max() > 0 for k in params if not k.endswith("_linear.bias")), [
        k for k in params if np.abs(grads[k]).max() == 0
    ]

    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    St = {k: torch.tensor(v) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    out = twin(P, St, torch.tensor(x), cfg, training=True)
    (out * torch.tensor(dlogits)).sum().backward()
    assert rel_error(logits, out.detach().numpy()) <= 1e-9
    # Biases feeding a training-mode BatchNorm have exactly zero gradient, which both
    # sides compute as rounding noise (~1e-18): compare them against the model's scale.
    floor = 1e-6 * max(np.abs(g).max() for g in grads.values())
    for k in params:
        assert rel_error(grads[k], P[k].grad.numpy(), floor) <= 1e-9, k
    for k in St:
        assert rel_error(new_state[k], St[k].numpy()) <= 1e-12, k
    return cache


def test_matches_torch_twin_ds2ta(torch):
    cache = _torch_compare(torch, SMALL, seed=0)
    assert any(A.sum() > 0 for A in cache.attention_maps)


def test_matches_torch_twin_spikformer(torch):
    """Both switches off with decay_input=True is Spikformer's computation."""
    _torch_compare(torch, SMALL.replace(tasa=False, nsad=False, decay_input=True), seed=1, gain=2.0)


def test_matches_torch_twin_dvs_variant(torch):
    cfg = SMALL.replace(img_size=32, sps="dvs", qkv_bias=False, depth=1)
    _torch_compare(torch, cfg, seed=2)


# ------------------------------------------------------------------ checkpoints
def _state_dict_npz(tmp_path, cfg, params, state, *, extra=None, drop=(), dvs=False):
    arrays = {**params, **state}
    for i in range(cfg.depth):
        for norm in ("norm1", "norm2"):
            arrays[f"block.{i}.{norm}.weight"] = np.ones(cfg.dim)
            arrays[f"block.{i}.{norm}.bias"] = np.zeros(cfg.dim)
    if dvs:
        for name in list(arrays):
            if "_linear." in name and name.startswith("block."):
                value = arrays.pop(name)
                arrays[name.replace("_linear.", "_conv.")] = value[..., None] if value.ndim == 2 else value
    arrays.update(extra or {})
    for name in drop:
        del arrays[name]
    path = tmp_path / "spikformer.npz"
    np.savez(path, **arrays)
    return path


def test_load_spikformer_checkpoint_round_trip(tmp_path):
    cfg = SMALL.replace(tasa=False, nsad=False)
    params, state, x = _inputs(cfg)
    _, state, _ = model.forward(x, params, state, cfg, training=True)
    path = _state_dict_npz(tmp_path, cfg, params, state)
    p2, s2 = ds2ta_ref.load_spikformer_npz(path, cfg)
    assert all(np.array_equal(p2[k], params[k]) for k in params) and set(p2) == set(params)
    assert all(np.array_equal(s2[k], state[k]) for k in state)


def test_load_spikformer_into_ds2ta_fills_tau_and_nsad(tmp_path):
    base = SMALL.replace(tasa=False, nsad=False)
    params, state, _ = _inputs(base)
    path = _state_dict_npz(tmp_path, base, params, state)
    p2, _ = ds2ta_ref.load_spikformer_npz(path, SMALL)
    assert p2["block.1.attn.tau"] == SMALL.tau0 and p2["block.0.attn.nsad"][:, 5].tolist() == [SMALL.u0] * 2
    with pytest.raises(ValueError, match="missing 'block.0.attn.tau'"):
        ds2ta_ref.load_spikformer_npz(path, SMALL, fill_ds2ta=False)


def test_load_dvs_names(tmp_path):
    cfg = SMALL.replace(sps="dvs", img_size=16, qkv_bias=False, tasa=False, nsad=False)
    params, state, _ = _inputs(cfg)
    path = _state_dict_npz(tmp_path, cfg, params, state, dvs=True)
    p2, _ = ds2ta_ref.load_spikformer_npz(path, cfg)
    np.testing.assert_array_equal(p2["block.0.attn.q_linear.weight"], params["block.0.attn.q_linear.weight"])


def test_load_reports_every_mismatch_by_name(tmp_path):
    cfg = SMALL.replace(tasa=False, nsad=False)
    params, state, _ = _inputs(cfg)
    path = _state_dict_npz(
        tmp_path,
        cfg,
        params,
        state,
        extra={"head.weight": np.zeros((5, 16)), "block.9.attn.foo": np.zeros(3)},
        drop=["block.0.mlp.fc1_linear.bias", "patch_embed.rpe_bn.running_var"],
    )
    with pytest.raises(ValueError) as info:
        ds2ta_ref.load_spikformer_npz(path, cfg)
    msg = str(info.value)
    for part in [
        "missing 'block.0.mlp.fc1_linear.bias'",
        "missing 'patch_embed.rpe_bn.running_var'",
        "unexpected 'block.9.attn.foo'",
        "'head.weight' has shape (5, 16), expected (3, 16)",
    ]:
        assert part in msg


def test_load_rejects_pickles_and_garbage(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, **{"head.weight": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="obj.npz"):
        ds2ta_ref.load_spikformer_npz(path, SMALL)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        ds2ta_ref.load_spikformer_npz(bad, SMALL)


# ------------------------------------------------------------------ bad input
def test_bad_inputs():
    params, state, x = _inputs(SMALL)
    with pytest.raises(ValueError, match=r"x must be static images \(B, 2, 8, 8\)"):
        model.forward(x[:, :1], params, state, SMALL, training=True)
    with pytest.raises(ValueError, match="x must be static images"):
        model.forward(np.zeros((2, 2, 16, 16)), params, state, SMALL, training=True)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x must be finite"):
        model.forward(bad, params, state, SMALL, training=True)
    broken = dict(params)
    del broken["head.bias"]
    broken["head.weight"] = np.zeros((4, 16))
    with pytest.raises(ValueError, match=r"missing 'head.bias'.*'head.weight' has shape \(4, 16\)"):
        model.forward(x, broken, state, SMALL, training=True)
    _, _, cache = model.forward(x, params, state, SMALL, training=True)
    with pytest.raises(ValueError, match=r"dlogits must have shape \(2, 3\)"):
        model.backward(np.ones((3, 3)), cache)


def test_bad_config():
    with pytest.raises(ValueError, match=r"preset name must be one of \['cifar10', 'cifar100', 'dvs', 'tiny'\]"):
        ds2ta_ref.preset("imagenet")
    with pytest.raises(ValueError, match="heads must divide dim"):
        ds2ta_ref.preset("tiny", heads=5)
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ds2ta_ref.preset("tiny", depthh=2)


# ------------------------------------------------------------------ the block contract at the top (issue 20)
def test_forward_takes_x_first_and_the_old_order_still_works_with_a_deprecation_warning():
    params, state, x = _inputs(SMALL)
    new = model.forward(x, params, state, SMALL, training=True)
    with pytest.warns(DeprecationWarning, match=r"model.forward\(x, params, state, cfg"):
        old = model.forward(params, state, x, SMALL, training=True)
    with pytest.warns(DeprecationWarning):
        top = ds2ta_ref.model_forward(params, state, x, SMALL, training=True)
    for other in (old, top):
        np.testing.assert_array_equal(new[0], other[0])
        assert all(np.array_equal(new[1][k], other[1][k]) for k in new[1])


def test_backward_returns_dx_and_grads_and_the_old_top_level_name_returns_grads():
    params, state, x = _inputs(SMALL)
    logits, _, cache = model.forward(x, params, state, SMALL, training=True)
    dx, grads = model.backward(np.ones_like(logits), cache)
    assert dx.shape == x.shape and dx.dtype == logits.dtype and list(grads) == list(params)
    with pytest.warns(DeprecationWarning, match=r"returns \(dx, grads\)"):
        old = ds2ta_ref.model_backward(np.ones_like(logits), cache)
    assert isinstance(old, dict) and all(np.array_equal(old[k], grads[k]) for k in grads)


@pytest.mark.parametrize("frames", [False, True], ids=["static images", "time-major frames"])
def test_dx_matches_finite_differences(frames):
    """dx of the whole model (float64, smooth mode, T = 2): static images get the sum over
    the T repeated frames; event frames their own gradient per step."""
    rng = np.random.default_rng(7)
    params, state, x = _inputs(SMALL, seed=7)
    if frames:
        x = np.stack([x, 0.5 * x[::-1]])  # (T, B, C, H, W), two different frames

    def fwd(x):
        logits, _, cache = model.forward(x, params, state, SMALL, training=True, smooth=True)
        return logits, cache

    report = check_gradients(
        fwd, lambda d, c: model.backward(d, c)[:1], {"x": x}, wrt=["x"], rng=rng, max_entries=12, floor=1e-3
    )
    assert report["x"] <= 1e-5, report


def test_a_wrong_dx_is_rejected_by_the_same_check():
    """The check above can fail: the gradient of one frame instead of the sum over T is caught."""
    rng = np.random.default_rng(7)
    params, state, x = _inputs(SMALL, seed=7)

    def fwd(x):
        logits, _, cache = model.forward(x, params, state, SMALL, training=True, smooth=True)
        return logits, cache

    def wrong(d, c):
        return (model.backward(d, c)[0] / SMALL.T,)  # as if x were one frame, not repeated T times

    report = check_gradients(fwd, wrong, {"x": x}, wrt=["x"], rng=rng, max_entries=12, floor=1e-3)
    assert report["x"] > 1e-2, report
