import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ds2ta_ref.optim import AdamW, clip_grad_norm, cosine_lr

SHAPES = {"w1": (4, 3), "b1": (4,), "tau": (), "w2": (2, 4)}
NO_DECAY = {"b1", "tau"}


def make_params(rng):
    return {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}


def grad_sequence(rng, steps):
    return [{name: rng.standard_normal(shape) for name, shape in SHAPES.items()} for _ in range(steps)]


def copy(d):
    return {k: v.copy() for k, v in d.items()}


def test_adamw_matches_torch(torch):
    rng = np.random.default_rng(0)
    params, grads = make_params(rng), grad_sequence(rng, 6)
    lrs = [1e-2, 3e-2, 2e-2, 5e-3, 1e-2, 4e-2]
    hyper = dict(betas=(0.8, 0.95), eps=1e-6, weight_decay=0.06)

    opt = AdamW(params, lr=lrs[0], no_decay=NO_DECAY, **hyper)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    topt = torch.optim.AdamW(
        [
            {"params": [p for k, p in tparams.items() if k not in NO_DECAY]},
            {"params": [p for k, p in tparams.items() if k in NO_DECAY], "weight_decay": 0.0},
        ],
        lr=lrs[0],
        **hyper,
    )
    for lr, g in zip(lrs, grads):
        opt.step(params, g, lr=lr)
        for group in topt.param_groups:
            group["lr"] = lr
        for k, p in tparams.items():
            p.grad = torch.tensor(g[k])
        topt.step()
    for k in SHAPES:
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(
            opt.state_dict()[f"v.{k}"], topt.state[tparams[k]]["exp_avg_sq"].numpy(), rtol=1e-12, atol=1e-16
        )


def test_adamw_no_decay_excludes_weight_decay():
    """With zero gradients the Adam part is 0, so only decoupled decay moves the weights."""
    rng = np.random.default_rng(1)
    params = make_params(rng)
    before = copy(params)
    opt = AdamW(params, lr=0.1, weight_decay=0.5, no_decay=lambda name: name.startswith("b") or name == "tau")
    assert opt.no_decay == NO_DECAY
    opt.step(params, {k: np.zeros(s) for k, s in SHAPES.items()})
    for k in SHAPES:
        expected = before[k] if k in NO_DECAY else before[k] * (1 - 0.1 * 0.5)
        np.testing.assert_allclose(params[k], expected, rtol=1e-15)


def test_adamw_first_step_by_hand():
    """Step 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps)."""
    p = {"w": np.array([1.0, -2.0, 3.0])}
    g = {"w": np.array([0.5, -0.1, 0.0])}
    AdamW(p, lr=0.01, weight_decay=0.0, eps=1e-8).step(p, g)
    np.testing.assert_allclose(
        p["w"], [1.0 - 0.01 * 0.5 / (0.5 + 1e-8), -2.0 + 0.01 * 0.1 / (0.1 + 1e-8), 3.0], rtol=1e-14
    )


def test_adamw_updates_in_place():
    params = make_params(np.random.default_rng(2))
    ids = {k: id(v) for k, v in params.items()}
    views = {k: v for k, v in params.items()}
    AdamW(params).step(params, grad_sequence(np.random.default_rng(3), 1)[0])
    assert all(id(params[k]) == ids[k] and params[k] is views[k] for k in SHAPES)


def test_adamw_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(4)
    params, grads = make_params(rng), grad_sequence(rng, 6)
    opt = AdamW(params, lr=0.01, weight_decay=0.06, no_decay=NO_DECAY)
    for g in grads[:3]:
        opt.step(params, g)
    state = opt.state_dict()
    assert set(state) == {f"{kind}.{k}" for kind in "mv" for k in SHAPES} | {"step"}
    assert state["step"].dtype == np.int64 and state["step"] == 3

    resumed_params = copy(params)
    resumed = AdamW(resumed_params, lr=0.01, weight_decay=0.06, no_decay=NO_DECAY)
    resumed.load_state_dict({k: v.copy() for k, v in state.items()})
    for g in grads[3:]:
        opt.step(params, g)
        resumed.step(resumed_params, g)
    for k in SHAPES:
        np.testing.assert_array_equal(params[k], resumed_params[k])
    # the state dict holds copies: stepping did not change it
    assert state["step"] == 3


def test_adamw_load_state_dict_lists_every_problem():
    params = make_params(np.random.default_rng(5))
    opt = AdamW(params)
    state = opt.state_dict()
    del state["m.w1"]
    state["v.b1"] = np.zeros(5)
    state["m.extra"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        opt.load_state_dict(state)
    msg = str(info.value)
    assert "optimizer state" in msg and "'m.w1'" in msg and "'v.b1'" in msg and "'m.extra'" in msg

    state = opt.state_dict()
    state["v.w2"] = -np.ones(SHAPES["w2"])
    with pytest.raises(ValueError, match="v.w2"):
        opt.load_state_dict(state)
    state = opt.state_dict()
    state["step"] = np.array(1.5)
    with pytest.raises(ValueError, match="step"):
        opt.load_state_dict(state)


def test_adamw_step_names_the_bad_key():
    rng = np.random.default_rng(6)
    params = make_params(rng)
    opt = AdamW(params)
    grads = grad_sequence(rng, 1)[0]
    with pytest.raises(ValueError, match="w2"):
        opt.step(params, {k: v for k, v in grads.items() if k != "w2"})
    with pytest.raises(ValueError, match=r"grads.*'b1'"):
        opt.step(params, {**grads, "b1": np.zeros(3)})
    with pytest.raises(ValueError, match=r"grads\['tau'\]"):
        opt.step(params, {**grads, "tau": np.array(np.nan)})
    with pytest.raises(ValueError, match=r"params\['w1'\]"):
        opt.step({**params, "w1": params["w1"].astype(np.int64)}, grads)
    with pytest.raises(ValueError, match="no_decay"):
        AdamW(params, no_decay={"nope"})
    with pytest.raises(ValueError, match="betas"):
        AdamW(params, betas=(0.9, 1.0))
    assert opt.step_count == 0  # failed calls do not count


@given(st.integers(1, 50), st.integers(0, 49), st.floats(1e-5, 1.0), st.floats(0.0, 1.0))
def test_cosine_lr_shape(total, warmup, base_lr, min_frac):
    warmup = min(warmup, total - 1)
    min_lr = base_lr * min_frac
    lrs = [
        cosine_lr(s, total_steps=total, warmup_steps=warmup, base_lr=base_lr, min_lr=min_lr) for s in range(total + 3)
    ]
    assert lrs[0] > 0
    assert np.all(np.diff(lrs[: warmup + 1]) > 0)  # warmup strictly rising
    assert lrs[warmup] == pytest.approx(base_lr, rel=1e-14)  # peak
    assert np.all(np.diff(lrs[warmup:]) <= 1e-15 * base_lr)  # then never rising
    assert lrs[total] == lrs[total + 2] == min_lr  # the end
    assert max(lrs) <= base_lr * (1 + 1e-14) and min(lrs[warmup:]) >= min_lr * (1 - 1e-14)


def test_cosine_lr_values():
    kw = dict(total_steps=10, warmup_steps=4, base_lr=1.0, min_lr=0.1)
    assert [cosine_lr(s, **kw) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert cosine_lr(7, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert cosine_lr(7, **kw) == pytest.approx(0.55)  # halfway down
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_lr(0, total_steps=3, warmup_steps=3, base_lr=1.0)
    with pytest.raises(ValueError, match="min_lr"):
        cosine_lr(0, total_steps=3, warmup_steps=1, base_lr=1.0, min_lr=2.0)


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_formula(max_norm):
    grads = grad_sequence(np.random.default_rng(7), 1)[0]
    before = copy(grads)
    norm = math.sqrt(sum(float((g**2).sum()) for g in before.values()))
    assert clip_grad_norm(grads, max_norm) == pytest.approx(norm, rel=1e-14)
    coef = min(1.0, max_norm / (norm + 1e-6))
    for k in grads:
        np.testing.assert_allclose(grads[k], before[k] * coef, rtol=1e-15)
    new_norm = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    assert new_norm <= max_norm + 1e-12


def test_clip_grad_norm_matches_torch(torch):
    grads = grad_sequence(np.random.default_rng(8), 1)[0]
    tensors = [torch.zeros(s, requires_grad=True) for s in SHAPES.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g)
    tnorm = torch.nn.utils.clip_grad_norm_(tensors, 0.7)
    assert clip_grad_norm(grads, 0.7) == pytest.approx(float(tnorm), rel=1e-14)
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-14)


def test_clip_grad_norm_rejects_non_finite():
    grads = {"a": np.ones(2), "b": np.array([1.0, np.inf])}
    with pytest.raises(ValueError, match=r"grads\['b'\]"):
        clip_grad_norm(grads, 1.0)
    np.testing.assert_array_equal(grads["a"], np.ones(2))
