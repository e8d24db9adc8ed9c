import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import expit

from ds2ta_ref import lif
from ds2ta_ref import surrogate as surrogate_module
from ds2ta_ref.gradcheck import check_gradients, lif_input_away_from_threshold, rel_error

COMBOS = list(itertools.product([False, True], [True, False], ["sigmoid", "atan"]))
ALPHA = {"sigmoid": 4.0, "atan": 2.0}


@pytest.mark.parametrize("decay_input,detach_reset,surrogate", COMBOS)
def test_backward_matches_finite_differences_in_smooth_mode(decay_input, detach_reset, surrogate):
    rng = np.random.default_rng(1)
    opts = dict(decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate, alpha=ALPHA[surrogate])
    x = lif_input_away_from_threshold(rng, (5, 3, 4), **opts)
    report = check_gradients(
        lambda x: lif.forward(x, smooth=True, **opts),
        lif.backward,
        {"x": x},
        wrt=["x"],
        rng=rng,
    )
    assert report["x"] <= 1e-7, report


@pytest.mark.parametrize("decay_input,detach_reset,surrogate", COMBOS)
def test_matches_torch_autograd(torch, decay_input, detach_reset, surrogate):
    from torch_twins import lif as torch_lif

    rng = np.random.default_rng(2)
    opts = dict(decay_input=decay_input, detach_reset=detach_reset, surrogate=surrogate, alpha=ALPHA[surrogate])
    x = rng.standard_normal((6, 2, 5)) * 1.5 + 0.7
    dout = rng.standard_normal(x.shape)
    spikes, cache = lif.forward(x, **opts)
    dx = lif.backward(dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    st_ = torch_lif(xt, **opts)
    (st_ * torch.tensor(dout)).sum().backward()
    assert spikes.sum() > 0
    np.testing.assert_array_equal(spikes, st_.detach().numpy())
    assert rel_error(dx, xt.grad.numpy()) <= 1e-10


def finite_inputs(max_t=6):
    return hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=max_t),
        elements=st.floats(-3, 3),
    )


@given(finite_inputs())
def test_spikes_are_binary_and_dtype_kept(x):
    s, _ = lif.forward(x)
    assert set(np.unique(s)) <= {0.0, 1.0}
    assert s.dtype == x.dtype and s.shape == x.shape


def test_float32_kept():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    s, cache = lif.forward(x)
    assert s.dtype == np.float32 and cache.h.dtype == np.float32
    assert lif.backward(np.ones_like(x), cache).dtype == np.float32


@given(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
def test_zero_input_no_spikes(shape):
    s, _ = lif.forward(np.zeros(shape))
    assert not s.any()


@given(finite_inputs(), st.data())
def test_causality(x, data):
    t = data.draw(st.integers(0, x.shape[0] - 1))
    s, _ = lif.forward(x)
    y = x.copy()
    y[t:] += data.draw(st.floats(-5, 5))
    s2, _ = lif.forward(y)
    np.testing.assert_array_equal(s[:t], s2[:t])


@given(finite_inputs(), st.floats(-3, 3), st.booleans())
def test_backward_is_linear_in_dspikes(x, c, detach_reset):
    rng = np.random.default_rng(0)
    _, cache = lif.forward(x, detach_reset=detach_reset)
    a, b = rng.standard_normal((2,) + x.shape)
    lhs = lif.backward(a + c * b, cache)
    rhs = lif.backward(a, cache) + c * lif.backward(b, cache)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


@given(finite_inputs(), st.data())
def test_dx_at_t_ignores_earlier_dspikes(x, data):
    t = data.draw(st.integers(0, x.shape[0] - 1))
    rng = np.random.default_rng(0)
    _, cache = lif.forward(x)
    d = rng.standard_normal(x.shape)
    e = d.copy()
    e[:t] = rng.standard_normal(e[:t].shape)
    np.testing.assert_array_equal(lif.backward(d, cache)[t:], lif.backward(e, cache)[t:])


@given(finite_inputs(), st.floats(1.0, 10.0))
def test_decay_input_equals_scaled_input(x, tau_m):
    s1, c1 = lif.forward(x, tau_m=tau_m, decay_input=True)
    s2, c2 = lif.forward(x / tau_m, tau_m=tau_m, decay_input=False)
    np.testing.assert_array_equal(s1, s2)
    d = np.ones_like(x)
    np.testing.assert_allclose(lif.backward(d, c1), lif.backward(d, c2) / tau_m, rtol=1e-12)


@given(hnp.arrays(np.float64, st.integers(1, 5), elements=st.floats(-3, 3)), st.floats(0.1, 2.0))
def test_single_step_by_hand(x0, theta):
    x = x0[None]
    s, cache = lif.forward(x, v_threshold=theta)
    np.testing.assert_array_equal(s[0], (x0 >= theta).astype(float))
    np.testing.assert_array_equal(cache.h[0], x0)
    _, _, v = lif.membrane(x, v_threshold=theta)
    np.testing.assert_array_equal(v[0], np.where(x0 >= theta, 0.0, x0))
    dx = lif.backward(np.ones_like(x), cache)
    # sg = 4 sig(z) (1 - sig(z)), z = 4 (x0 - theta), with 1 - sig(z) written as sig(-z): the naive
    # 1 - sig(z) cancels for z >> 0 and is off by ~1e-11 relative at z = 4 * 2.9
    z = 4.0 * (x0 - theta)
    np.testing.assert_allclose(dx[0], 4.0 * expit(z) * expit(-z), rtol=1e-12)


def test_two_steps_by_hand():
    # tau_m = 2: k = 0.5. I = [0.8, 0.8]: h0 = 0.8 (no spike), h1 = 0.4 + 0.8 = 1.2 (spike).
    s, cache = lif.forward(np.array([0.8, 0.8]))
    np.testing.assert_array_equal(s, [0.0, 1.0])
    np.testing.assert_allclose(cache.h, [0.8, 1.2])
    np.testing.assert_allclose(lif.membrane(np.array([0.8, 0.8]))[2], [0.8, 0.0])


def test_membrane_helper():
    s, h, v = lif.membrane(np.array([0.8, 0.8, 0.3]))
    np.testing.assert_array_equal(s, [0, 1, 0])
    np.testing.assert_allclose(h, [0.8, 1.2, 0.3])


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.array([1.0, np.nan]), "x must be finite"),
        (np.array([np.inf]), "x must be finite"),
        (np.array(1.0), "x must have at least 1 axes"),
        (np.array(["a"]), "x must be a numeric array"),
    ],
)
def test_bad_x(bad, match):
    with pytest.raises(ValueError, match=match):
        lif.forward(bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tau_m=0.5), "tau_m must be >= 1"),
        (dict(tau_m=float("nan")), "tau_m must be finite"),
        (dict(alpha=0.0), "alpha must be a finite number > 0"),
        (dict(alpha=-2.0), "alpha must be a finite number > 0"),
        (dict(surrogate="tanh"), r"surrogate must be one of \['atan', 'sigmoid'\]"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lif.forward(np.ones((2, 3)), **kwargs)


def test_bad_dspikes_shape():
    _, cache = lif.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dspikes must have shape \(2, 3\)"):
        lif.backward(np.ones((3, 2)), cache)


def textbook_lif(x, *, tau_m, v_threshold, decay_input, detach_reset, surrogate, alpha, dspikes):
    """The equations of the module docstring written out plainly, one fresh array per
    operation (the kernel computes the same with reused buffers): (spikes, h, v, dx)."""
    sg = surrogate_module.get(surrogate)
    k = 1 - 1 / tau_m
    current = x / tau_m if decay_input else x
    h, s, v = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    v_prev = np.zeros_like(x[0])
    for t in range(x.shape[0]):
        h[t] = k * v_prev + current[t]
        s[t] = (h[t] >= v_threshold).astype(x.dtype)
        v[t] = v_prev = h[t] * (1 - s[t])
    dx, dv = np.empty_like(x), np.zeros_like(x[0])
    for t in reversed(range(x.shape[0])):
        g = (
            alpha / (4 * np.cosh(alpha * (h[t] - v_threshold) / 2) ** 2)
            if surrogate == "sigmoid"
            else sg.grad(h[t] - v_threshold, alpha)
        )
        dv_dh = 1 - s[t] - (0 if detach_reset else h[t] * g)
        dh = dspikes[t] * g + dv * dv_dh
        dx[t] = dh / tau_m if decay_input else dh
        dv = dh * k
    return s, h, v, dx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay_input,detach_reset,surrogate", COMBOS)
def test_buffered_kernel_equals_textbook_loop(dtype, decay_input, detach_reset, surrogate):
    """Spikes and membranes bit-identical to the plain loop; gradients equal to rounding."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 3, 40)) * 1.5 + 0.6).astype(dtype)
    d = rng.standard_normal(x.shape).astype(dtype)
    opts = dict(
        tau_m=1.7,
        v_threshold=0.9,
        decay_input=decay_input,
        detach_reset=detach_reset,
        surrogate=surrogate,
        alpha=ALPHA[surrogate],
    )
    s, cache = lif.forward(x, **opts)
    dx = lif.backward(d, cache)
    s_ref, h_ref, v_ref, dx_ref = textbook_lif(x, dspikes=d, **opts)
    assert 0 < s.sum() < s.size
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(cache.h, h_ref)
    np.testing.assert_array_equal(cache.v, v_ref)  # recomputed from h
    np.testing.assert_allclose(
        dx, dx_ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32 else 1e-14
    )
