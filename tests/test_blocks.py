"""The block contract (docs/spec.md §4): every block of the model is a pure pair

    forward(x, params, state, cfg, *, training, smooth=False) -> (out, new_state, cache)
    backward(dout, cache) -> (dx, grads)

with the block's own short names; ``new_state`` has exactly the keys of ``state`` and
``grads`` exactly the keys of ``params`` (less a frozen ``tau``); nothing passed in is
mutated; each backward matches finite differences in smooth mode (T = 2)."""

import copy

import numpy as np
import pytest

import ds2ta_ref
from ds2ta_ref import attention, bnlif, mlp, model, optim, parallel, sps
from ds2ta_ref import params as P
from ds2ta_ref._checks import NonFiniteError
from ds2ta_ref.gradcheck import check_gradients, firing_model_inputs, small_model_config

CFG = small_model_config()
BLOCKS = {"patch_embed": sps, "block.0.attn": attention, "block.0.mlp": mlp}


def _block_inputs(prefix, cfg=CFG, seed=0):
    rng = np.random.default_rng(seed)
    params, state, images = firing_model_inputs(cfg, rng)
    if prefix == "patch_embed":
        x = np.broadcast_to(images, (cfg.T,) + images.shape).copy()  # (T, B, C, H, W)
    else:  # a residual stream of small integers, like the model's
        x = rng.integers(0, 3, (cfg.T, 2, cfg.num_tokens, cfg.dim)).astype(np.float64)
    return x, P.sub(params, prefix), P.sub(state, prefix)


@pytest.mark.parametrize("prefix", BLOCKS)
def test_block_contract_keys_and_purity(prefix):
    module = BLOCKS[prefix]
    x, params, state = _block_inputs(prefix)
    assert set(params) == set(module.param_shapes(CFG)) and set(state) == set(module.state_shapes(CFG))
    before = copy.deepcopy((x, params, state))
    out, new_state, cache = module.forward(x, params, state, CFG, training=True)
    assert set(new_state) == set(state)
    assert all(new_state[k].shape == state[k].shape for k in state)
    dx, grads = module.backward(np.ones_like(out), cache)
    assert dx.shape == x.shape
    assert set(grads) == set(params)
    assert all(grads[k].shape == params[k].shape for k in params)
    for a, b in zip(before, (x, params, state)):  # nothing passed in was changed
        if isinstance(a, dict):
            assert all(np.array_equal(a[k], b[k]) for k in a)
        else:
            assert np.array_equal(a, b)
    # eval mode leaves the running statistics as they were
    _, eval_state, _ = module.forward(x, params, state, CFG, training=False)
    assert all(np.array_equal(eval_state[k], state[k]) for k in state)


@pytest.mark.parametrize("prefix", BLOCKS)
def test_block_backward_matches_finite_differences(prefix):
    module = BLOCKS[prefix]
    x, params, state = _block_inputs(prefix, seed=1)
    rng = np.random.default_rng(1)

    def fwd(x, **p):
        out, _, cache = module.forward(x, p, state, CFG, training=True, smooth=True)
        return out, cache

    def bwd(dout, cache):
        dx, grads = module.backward(dout, cache)
        return {"x": dx, **grads}

    # floor: the biases that feed a training-mode BatchNorm have an exactly-zero gradient, and
    # the finite differences of a block's many outputs carry ~1e-8 of rounding noise there.
    report = check_gradients(fwd, bwd, {"x": x, **params}, wrt=["x", *params], rng=rng, max_entries=3, floor=1e-2)
    worst = max(report, key=report.get)
    assert report[worst] <= 1e-6, (worst, report[worst])


def test_bnlif_contract():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)) + 0.5  # (T, B, N, C)
    params = {"weight": rng.uniform(1, 2, 5), "bias": rng.uniform(-0.2, 0.5, 5)}
    state = {"running_mean": np.zeros(5), "running_var": np.ones(5), "num_batches_tracked": np.array(3)}
    s, new_state, cache = bnlif.forward(x, params, state, CFG, training=True)
    assert set(new_state) == set(state) and int(new_state["num_batches_tracked"]) == 4
    assert int(state["num_batches_tracked"]) == 3
    assert cache.spike_count == s.sum() and cache.neuron_count == s.size
    dx, grads = bnlif.backward(np.ones_like(s), cache)
    assert dx.shape == x.shape and set(grads) == set(params)


@pytest.mark.parametrize("threads", [1, 3])
def test_bnlif_unchecked_rejects_a_non_finite_lif_input_and_only_that(threads, monkeypatch):
    """The one finiteness check of the model's hot path: float32 sums of the BatchNorm output in
    parts (one per thread), with every value of a part checked only when its sum is not finite (it
    overflows on large finite values); a bad value in the first, a middle or the last part is found."""
    monkeypatch.setattr(parallel, "MIN_WORK", 1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)  # (T, B, N, C)
    state = {"running_mean": np.zeros(5, np.float32), "running_var": np.ones(5, np.float32)}
    big = {"weight": np.ones(5, np.float32), "bias": np.full(5, 3e38, np.float32)}  # y ~ 3e38: its sum overflows
    parallel.set_threads(threads)
    try:
        s, _, _ = bnlif.forward_unchecked(x, big, state, CFG, training=False)
        assert s.shape == x.shape  # finite values whose float32 sum is infinite pass
        for bad in (np.inf, -np.inf, np.nan):
            for where in ((0, 0, 0, 0), (1, 0, 1, 2), (1, 2, 3, 4)):
                x_bad = x.copy()
                x_bad[where] = bad
                with pytest.raises(NonFiniteError, match="the BatchNorm output"):
                    bnlif.forward_unchecked(x_bad, big | {"bias": np.zeros(5, np.float32)}, state, CFG, training=False)
    finally:
        parallel.set_threads(None)


def test_model_backward_reads_every_block_and_joins_prefixes():
    params, state, x = firing_model_inputs(CFG, np.random.default_rng(2))
    logits, new_state, cache = model.forward(x, params, state, CFG, training=True)
    _, grads = model.backward(np.ones_like(logits), cache)
    assert list(grads) == list(params) and set(new_state) == set(state)


def test_need_backward_false_keeps_only_the_record():
    params, state, x = firing_model_inputs(CFG, np.random.default_rng(3))
    full = model.forward(x, params, state, CFG, training=False)
    lean = model.forward(x, params, state, CFG, training=False, need_backward=False)
    np.testing.assert_array_equal(full[0], lean[0])
    assert lean[2].blocks is None and lean[2].sps is None
    assert lean[2].record.spike_count == full[2].record.spike_count > 0
    assert lean[2].record.neuron_count == full[2].record.neuron_count
    for a, b in zip(full[2].record.attention_maps, lean[2].record.attention_maps):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="need_backward"):
        model.backward(np.ones_like(full[0]), lean[2])


def test_firing_rate_counts_every_lif_neuron():
    """The record's neuron count is the sum of every LIF layer's size (times T)."""
    cfg, B = CFG, 2
    params, state, x = firing_model_inputs(cfg, np.random.default_rng(4), batch=B)
    _, _, cache = model.forward(x, params, state, cfg, training=True)
    N, D, T = cfg.num_tokens, cfg.dim, cfg.T
    side = cfg.img_size
    ch = sps.channels(cfg)
    sps_neurons = ch[1] * side**2 + ch[2] * side**2 + ch[3] * side**2 + ch[4] * (side // 2) ** 2 + D * N
    block_neurons = 4 * N * D + N * D + N * D * cfg.mlp_ratio + N * D  # q k v proj, attention LIF, MLP
    assert cache.record.neuron_count == T * B * (sps_neurons + cfg.depth * block_neurons)


def test_frozen_tau_gets_no_gradient_and_never_changes():
    cfg = CFG.replace(frozen_tau=True, tau_per_site=True)
    params, state, x = firing_model_inputs(cfg, np.random.default_rng(5))
    y = np.array([0, 1])
    taus = {k: params[k].copy() for k in params if k.endswith("tau")}
    assert len(taus) == 2 * cfg.depth
    names = model.trainable(cfg)
    assert not set(taus) & set(names)
    opt = optim.AdamW({n: params[n] for n in names}, lr=0.1, weight_decay=0.5)
    for _ in range(3):
        logits, state, cache = model.forward(x, params, state, cfg, training=True)
        _, dlogits = ds2ta_ref.layers.cross_entropy(logits, y)
        _, grads = model.backward(dlogits, cache)
        assert not set(taus) & set(grads)
        opt.step({n: params[n] for n in grads}, grads)
    for k, v in taus.items():
        np.testing.assert_array_equal(params[k], v)


def test_frozen_u_gets_zero_gradient_and_never_changes_while_a_to_e_learn():
    """``frozen_u``: u (column 5 of every ``nsad``) has gradient exactly 0, so AdamW, which
    puts no weight decay on NSAD parameters (``recipe.no_decay``), leaves it bit for bit."""
    from ds2ta_ref import recipe

    cfg = CFG.replace(frozen_u=True)
    params, state, x = firing_model_inputs(cfg, np.random.default_rng(6), gain=25.0)
    y = np.array([0, 1])
    before = {k: params[k].copy() for k in params if k.endswith(".nsad")}
    assert len(before) == cfg.depth and all(recipe.no_decay(k, v.shape) for k, v in before.items())
    names = model.trainable(cfg)
    assert set(before) <= set(names)  # the a .. e columns are trained
    opt = optim.AdamW(
        {n: params[n] for n in names}, lr=0.1, weight_decay=0.5, no_decay=lambda n: recipe.no_decay(n, params[n].shape)
    )
    for _ in range(3):
        logits, state, cache = model.forward(x, params, state, cfg, training=True)
        _, dlogits = ds2ta_ref.layers.cross_entropy(logits, y)
        _, grads = model.backward(dlogits, cache)
        assert all(np.all(grads[k][:, 5] == 0.0) for k in before)
        opt.step({n: params[n] for n in grads}, grads)
    for k, v in before.items():
        np.testing.assert_array_equal(params[k][:, 5], v[:, 5])  # u: bit-identical
        assert np.all(params[k][:, :5] != v[:, :5]), (k, params[k], v)  # a, b, c, d, e: every one moved


@pytest.mark.parametrize("prefix", BLOCKS)
def test_block_forward_checks_its_arguments_once(prefix):
    """A block's public forward checks its input and parameters (its kernels then run unchecked)."""
    module = BLOCKS[prefix]
    x, params, state = _block_inputs(prefix)
    bad_x = x.copy()
    bad_x.flat[0] = np.nan
    with pytest.raises(ValueError, match="input x must be finite"):
        module.forward(bad_x, params, state, CFG, training=True)
    name = next(iter(params))
    with pytest.raises(ValueError, match=f"params\\['{name}'\\] must be finite"):
        module.forward(x, {**params, name: params[name] * np.nan}, state, CFG, training=True)
    with pytest.raises(ValueError, match="missing"):
        module.forward(x, {k: v for k, v in params.items() if k != name}, state, CFG, training=True)
    var = next(k for k in state if k.endswith("running_var"))
    with pytest.raises(ValueError, match="running variance"):
        module.forward(x, params, {**state, var: -state[var]}, CFG, training=False)


def test_the_model_checks_its_inputs_once_and_the_blocks_do_not_check_again(monkeypatch):
    """issue 20: the model validates once, then runs the blocks' and kernels' unchecked cores
    (NSAD's full integer-score scan included); a block called directly still checks."""
    from ds2ta_ref import nsad
    from ds2ta_ref.params import sub

    calls = []

    def counting(name, real):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    for module in (sps, attention, mlp, bnlif):
        monkeypatch.setattr(module, "checked_block_inputs", counting(module.__name__, module.checked_block_inputs))
    monkeypatch.setattr(nsad, "_check_scores", counting("nsad", nsad._check_scores))
    params, state, x = firing_model_inputs(CFG, np.random.default_rng(4))
    logits, _, cache = model.forward(x, params, state, CFG, training=True)
    model.backward(np.ones_like(logits), cache)
    assert calls == []
    # the same counters see a block's public forward check its inputs (so the test can fail)
    h = np.ones((CFG.T, 2, CFG.num_tokens, CFG.dim))
    attention.forward(h, sub(params, "block.0.attn"), sub(state, "block.0.attn"), CFG, training=True)
    assert calls == ["ds2ta_ref.attention"]
