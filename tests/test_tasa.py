import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ds2ta_ref import tasa
from ds2ta_ref.gradcheck import check_gradients, rel_error


def layer(rng, shape, d_out, *, bias=True, spikes=True):
    """A seeded TASA input (integer-valued, like spikes or the residual stream) and layer."""
    s = rng.integers(0, 3 if not spikes else 2, size=shape).astype(np.float64)
    weight = rng.standard_normal((d_out, shape[-1]))
    b = rng.standard_normal(d_out) if bias else None
    return s, weight, b


def eq1_with_weight_replicas(s, weight, bias, tau, window):
    """Eq. 1 evaluated literally: one weight replica ``w(m) = w(0) * 2^(-tau*m)`` per
    lag ``m``, and explicit loops over time ``t`` and lag ``m``."""
    T = s.shape[0]
    replicas = [weight * 2.0 ** (-tau * m) for m in range(window)]  # Eq. 4, 5
    out = np.zeros(s.shape[:-1] + (weight.shape[0],))
    for t in range(T):
        for m in range(window):
            if t - m >= 0:
                out[t] += s[t - m] @ replicas[m].T
        if bias is not None:
            out[t] += bias
    return out


@st.composite
def tasa_case(draw, max_t=5):
    """T, window (including window > T), 0-2 middle axes, and tau (non-integer, negative)."""
    T = draw(st.integers(1, max_t))
    middle = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    d_in, d_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    window = draw(st.integers(1, max_t + 2))
    tau = draw(st.floats(-3, 6, allow_nan=False))
    s = draw(hnp.arrays(np.float64, (T, *middle, d_in), elements=st.integers(0, 3).map(float)))
    quarters = st.integers(-8, 8).map(lambda k: k / 4)  # no tiny or subnormal weights
    weight = draw(hnp.arrays(np.float64, (d_out, d_in), elements=quarters))
    bias = draw(st.none() | hnp.arrays(np.float64, (d_out,), elements=quarters))
    return s, weight, bias, tau, window


# ---------------------------------------------------------------- the forward


@given(tasa_case())
def test_window_one_is_spatial_only(case):
    s, weight, bias, tau, _ = case
    out, _ = tasa.forward(s, weight, bias, tau=tau, window=1)
    expected = s @ weight.T
    if bias is not None:
        expected = expected + bias
    np.testing.assert_array_equal(out, expected)


@given(tasa_case(), st.booleans())
def test_equals_eq1_with_weight_replicas(case, continuous_tau):
    s, weight, bias, tau, window = case
    out, cache = tasa.forward(s, weight, bias, tau=tau, window=window, continuous_tau=continuous_tau)
    tau_int = tau if continuous_tau else max(0, round(tau))  # Python round: half to even too
    assert cache.tau_used == tau_int
    expected = eq1_with_weight_replicas(s, weight, bias, tau_int, window)
    assert out.shape == s.shape[:-1] + (weight.shape[0],) and out.dtype == np.float64
    # floor = 1: outputs that cancel to ~0 (e.g. weight . s = 0 at every lag) are compared
    # absolutely, since the two summation orders round differently around an exact 0
    assert rel_error(out, expected, floor=1.0) <= 1e-12


@pytest.mark.parametrize("tau,expected", [(2.5, 2.0), (3.5, 4.0), (-0.4, 0.0), (-1.3, 0.0), (0.6, 1.0)])
def test_tau_rounds_half_to_even_and_clips_at_zero(tau, expected):
    assert tasa.tau_used(tau) == expected
    assert tasa.tau_used(tau, continuous_tau=True) == tau


@given(tasa_case(), st.data())
def test_causality(case, data):
    s, weight, bias, tau, window = case
    t = data.draw(st.integers(0, s.shape[0] - 1))
    out, _ = tasa.forward(s, weight, bias, tau=tau, window=window)
    s2 = s.copy()
    s2[t:] += data.draw(st.integers(1, 3))
    out2, _ = tasa.forward(s2, weight, bias, tau=tau, window=window)
    np.testing.assert_array_equal(out[:t], out2[:t])


@given(tasa_case(), st.floats(-3, 3, allow_subnormal=False), st.floats(-3, 3, allow_subnormal=False))
def test_linear_in_s_and_in_weight(case, a, b):
    s, weight, _, tau, window = case
    rng = np.random.default_rng(0)
    s2, weight2 = rng.standard_normal(s.shape), rng.standard_normal(weight.shape)

    def f(s, w):
        return tasa.forward(s, w, None, tau=tau, window=window)[0]

    assert rel_error(f(a * s + b * s2, weight), a * f(s, weight) + b * f(s2, weight)) <= 1e-10
    assert rel_error(f(s, a * weight + b * weight2), a * f(s, weight) + b * f(s, weight2)) <= 1e-10


def test_decay_factors():
    np.testing.assert_array_equal(tasa.decay_factors(2, 4), [1.0, 0.25, 0.0625, 0.015625])
    np.testing.assert_array_equal(tasa.decay_factors(4.0, 1), [1.0])
    # not rounded: the caller passes the exponent they want
    np.testing.assert_allclose(tasa.decay_factors(0.5, 3), [1.0, 2**-0.5, 0.5], rtol=1e-15)
    np.testing.assert_array_equal(tasa.decay_factors(-1, 3), [1.0, 2.0, 4.0])


def test_residual_stream_input_is_not_required_binary():
    rng = np.random.default_rng(3)
    s, weight, bias = layer(rng, (3, 2, 4), 5, spikes=False)
    assert s.max() == 2
    out, _ = tasa.forward(s.astype(np.int64), weight, bias, tau=1, window=2)
    np.testing.assert_allclose(out, eq1_with_weight_replicas(s, weight, bias, 1, 2), rtol=1e-12)


def test_parameter_count_is_spatial_only_plus_one():
    """The learnable arrays are those backward returns a gradient for besides ``ds``:
    ``weight`` and ``bias`` (a ``Linear``'s) and the scalar ``tau``."""
    rng = np.random.default_rng(4)
    s, weight, bias = layer(rng, (4, 3, 6), 5)
    _, cache = tasa.forward(s, weight, bias, tau=2, window=3)
    ds, *param_grads = tasa.backward(np.ones((4, 3, 5)), cache)
    tasa_params = sum(np.size(g) for g in param_grads)  # dweight, dbias, dtau
    linear_params = weight.size + bias.size  # torch.nn.Linear(6, 5)
    assert tasa_params == linear_params + 1
    assert np.ndim(param_grads[-1]) == 0  # tau is one scalar
    # no weight is added by the window: the same (D_out, D_in) matrix for any T_AW
    assert cache.weight.shape == weight.shape


def test_float32_kept():
    rng = np.random.default_rng(5)
    s, weight, bias = layer(rng, (3, 2, 4), 3)
    s, weight, bias = s.astype(np.float32), weight.astype(np.float32), bias.astype(np.float32)
    out, cache = tasa.forward(s, weight, bias, tau=1.2, window=2)
    assert out.dtype == np.float32 and cache.x_mix.dtype == np.float32
    ds, dweight, dbias, dtau = tasa.backward(np.ones(out.shape, np.float32), cache)
    assert ds.dtype == dweight.dtype == dbias.dtype == np.float32
    assert isinstance(dtau, float)


# --------------------------------------------------------------- the backward

SHAPES = [  # (T, ..., D_in), D_out, window: T >= 2, window >= 2, and window > T
    ((4, 3), 2, 2),
    ((3, 2, 3), 4, 3),
    ((2, 2, 2, 3), 3, 5),
    ((5, 4), 3, 5),
]


@pytest.mark.parametrize("shape,d_out,window", SHAPES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_backward_matches_finite_differences(shape, d_out, window, with_bias):
    """Rounded mode for ds, dweight, dbias (the forward is affine in them);
    continuous_tau mode adds dtau."""
    rng = np.random.default_rng(6)
    s, weight, bias = layer(rng, shape, d_out, bias=with_bias)
    wrt = ["s", "weight", "bias"] if with_bias else ["s", "weight"]
    for continuous_tau, tau in [(False, 1.7), (True, 0.8), (True, -0.6)]:
        names = wrt + ["tau"] if continuous_tau else wrt

        def fwd(s, weight, tau, bias=None):
            return tasa.forward(s, weight, bias, tau=tau, window=window, continuous_tau=continuous_tau)

        def bwd(dout, cache):
            ds, dweight, dbias, dtau = tasa.backward(dout, cache)
            grads = {"s": ds, "weight": dweight, "tau": dtau}
            if with_bias:
                grads["bias"] = dbias
            return grads

        inputs = {"s": s, "weight": weight, "tau": tau}
        if with_bias:
            inputs["bias"] = bias
        report = check_gradients(fwd, bwd, inputs, wrt=names, rng=rng)
        assert max(report.values()) <= 1e-7, (continuous_tau, report)


@given(
    st.integers(1, 4),
    st.integers(1, 6),
    st.lists(st.integers(1, 3), max_size=2),
    st.floats(-2, 3),
    st.integers(0, 2**32 - 1),
)
def test_backward_matches_finite_differences_property(T, window, middle, tau, seed):
    """Shapes, window (also > T) and tau from Hypothesis; values from a seeded rng,
    so that no tiny weight makes the finite difference of dtau pure roundoff."""
    rng = np.random.default_rng(seed)
    s, weight, bias = layer(rng, (T, *middle, 3), 2, spikes=False)

    def fwd(s, weight, bias, tau):
        return tasa.forward(s, weight, bias, tau=tau, window=window, continuous_tau=True)

    def bwd(dout, cache):
        ds, dweight, dbias, dtau = tasa.backward(dout, cache)
        return {"s": ds, "weight": dweight, "bias": dbias, "tau": dtau}

    # eps = 1e-5: the forward is linear in s, weight and bias (no truncation error) and the
    # 2^(-tau*lag) truncation error stays ~1e-9 relative, while the roundoff of the difference
    # quotient (~1e-16 * |L| / eps) shrinks tenfold. floor = 1e-2: dtau is a sum of terms of
    # both signs; where they cancel below 1e-2 an absolute error of 1e-9 is the check's
    # resolution. Measured over 4000 random cases: worst 1.7e-8 (with eps = 1e-6 and no
    # floor, 2 in 1500 cases exceeded 1e-7).
    report = check_gradients(
        fwd,
        bwd,
        {"s": s, "weight": weight, "bias": bias, "tau": tau},
        wrt=["s", "weight", "bias", "tau"],
        rng=rng,
        eps=1e-5,
        floor=1e-2,
    )
    assert max(report.values()) <= 1e-7, report


@pytest.mark.parametrize("tau", [2.4, 2.5, 3.5, 0.49, -0.7, -3.0])
def test_rounded_dtau_is_continuous_dtau_at_rounded_tau(tau):
    rng = np.random.default_rng(8)
    s, weight, bias = layer(rng, (5, 2, 3), 4)
    dout = rng.standard_normal((5, 2, 4))
    out_r, cache_r = tasa.forward(s, weight, bias, tau=tau, window=3)
    tau_int = max(0.0, float(np.round(tau)))
    out_c, cache_c = tasa.forward(s, weight, bias, tau=tau_int, window=3, continuous_tau=True)
    np.testing.assert_array_equal(out_r, out_c)
    dtau_r = tasa.backward(dout, cache_r)[3]
    dtau_c = tasa.backward(dout, cache_c)[3]
    assert dtau_r == dtau_c and dtau_r != 0.0
    # and the continuous one is the derivative at tau_int (straight through the clip too)
    eps = 1e-6

    def loss(t):
        return np.sum(tasa.forward(s, weight, bias, tau=t, window=3, continuous_tau=True)[0] * dout)

    assert abs(dtau_c - (loss(tau_int + eps) - loss(tau_int - eps)) / (2 * eps)) <= 1e-7 * abs(dtau_c)


def test_dtau_formula_by_hand():
    """dtau = sum_lag sum_t <dx_mix[t], s[t-lag]> * (-lag ln2) * 2^(-tau*lag)."""
    rng = np.random.default_rng(9)
    s, weight, bias = layer(rng, (4, 3), 2)
    dout = rng.standard_normal((4, 2))
    _, cache = tasa.forward(s, weight, bias, tau=1.0, window=3)
    dx_mix = dout @ weight
    expected = sum(
        dx_mix[t] @ s[t - lag] * (-lag * math.log(2)) * 2.0 ** (-lag) for lag in range(3) for t in range(lag, 4)
    )
    assert abs(tasa.backward(dout, cache)[3] - expected) <= 1e-12 * abs(expected)


def test_frozen_tau_and_no_bias():
    rng = np.random.default_rng(10)
    s, weight, _ = layer(rng, (3, 4), 2, bias=False)
    out, cache = tasa.forward(s, weight, None, tau=2, window=2, frozen_tau=True)
    ds, dweight, dbias, dtau = tasa.backward(np.ones_like(out), cache)
    assert dbias is None and dtau is None
    _, cache = tasa.forward(s, weight, None, tau=2, window=2)  # the same layer, tau learned
    ds2, dweight2, _, dtau2 = tasa.backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(ds, ds2)
    np.testing.assert_array_equal(dweight, dweight2)
    assert isinstance(dtau2, float)


@given(tasa_case(), st.floats(-3, 3, allow_subnormal=False))
def test_backward_is_linear_in_dout(case, c):
    s, weight, bias, tau, window = case
    rng = np.random.default_rng(0)
    out, cache = tasa.forward(s, weight, bias, tau=tau, window=window)
    a, b = rng.standard_normal((2,) + out.shape)
    lhs = tasa.backward(a + c * b, cache)
    ga, gb = tasa.backward(a, cache), tasa.backward(b, cache)
    for i in range(3 if bias is not None else 2):
        assert rel_error(lhs[i], ga[i] + c * gb[i]) <= 1e-10
    assert abs(lhs[3] - (ga[3] + c * gb[3])) <= 1e-10 * max(1.0, abs(ga[3]), abs(c * gb[3]))


# ------------------------------------------------------------------ PyTorch

TORCH_CASES = [  # shape, d_out, window, tau, continuous_tau, bias
    ((4, 2, 3), 4, 3, 2.4, False, True),
    ((3, 2, 2, 3), 2, 5, 1.5, False, True),  # window > T; 1.5 rounds to 2
    ((5, 3), 3, 2, -0.8, False, False),  # clipped to 0, gradient passes straight through
    ((4, 2, 3), 3, 3, 0.7, True, True),
    ((2, 3), 2, 4, -1.2, True, False),
]


@pytest.mark.parametrize("shape,d_out,window,tau,continuous_tau,with_bias", TORCH_CASES)
def test_matches_torch_autograd(torch, shape, d_out, window, tau, continuous_tau, with_bias):
    from torch_twin_tasa import tasa as torch_tasa

    rng = np.random.default_rng(11)
    s, weight, bias = layer(rng, shape, d_out, bias=with_bias, spikes=False)
    dout = rng.standard_normal(shape[:-1] + (d_out,))
    out, cache = tasa.forward(s, weight, bias, tau=tau, window=window, continuous_tau=continuous_tau)
    ds, dweight, dbias, dtau = tasa.backward(dout, cache)

    st_, wt = torch.tensor(s, requires_grad=True), torch.tensor(weight, requires_grad=True)
    bt = torch.tensor(bias, requires_grad=True) if with_bias else None
    taut = torch.tensor(float(tau), requires_grad=True)
    out_t = torch_tasa(st_, wt, bt, taut, window, continuous_tau=continuous_tau)
    (out_t * torch.tensor(dout)).sum().backward()

    assert rel_error(out, out_t.detach().numpy()) <= 1e-10
    assert rel_error(ds, st_.grad.numpy()) <= 1e-10
    assert rel_error(dweight, wt.grad.numpy()) <= 1e-10
    if with_bias:
        assert rel_error(dbias, bt.grad.numpy()) <= 1e-10
    assert taut.grad.item() != 0.0
    assert rel_error(np.array(dtau), taut.grad.numpy()) <= 1e-10


# ---------------------------------------------------------------- bad input


def _good():
    rng = np.random.default_rng(12)
    s, weight, bias = layer(rng, (3, 2, 4), 5)
    return dict(s=s, weight=weight, bias=bias, tau=2.0, window=3)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(window=0), "window must be an integer >= 1"),
        (dict(window=2.0), "window must be an integer >= 1"),
        (dict(window=True), "window must be an integer >= 1"),
        (dict(tau=float("nan")), "tau must be finite"),
        (dict(tau=float("inf")), "tau must be finite"),
        (dict(tau="2"), "tau must be a real number"),
        (dict(weight=np.ones(4)), r"weight must be 2-D \(D_out, D_in\)"),
        (dict(weight=np.ones((5, 3))), r"weight must have shape \(D_out, 4\) to match s's last axis"),
        (dict(weight=np.full((5, 4), np.inf)), "weight must be finite"),
        (dict(bias=np.ones(4)), r"bias must have shape \(5,\)"),
        (dict(bias=np.ones((1, 5))), r"bias must have shape \(5,\)"),
        (dict(s=np.array([[0.0, np.nan, 1.0, 1.0]])), "s must be finite"),
        (dict(s=np.ones(4)), r"s must have at least 2 axes \(time T and features D_in\)"),
    ],
)
def test_bad_input(change, match):
    kwargs = {**_good(), **change}
    s, weight, bias = kwargs.pop("s"), kwargs.pop("weight"), kwargs.pop("bias")
    with pytest.raises(ValueError, match=match):
        tasa.forward(s, weight, bias, **kwargs)


def test_tau_that_overflows_in_check_mode():
    with pytest.raises(ValueError, match="tau = -2000.0 overflows"):
        tasa.forward(np.ones((3, 2)), np.ones((1, 2)), None, tau=-2000.0, window=3, continuous_tau=True)
    with pytest.raises(ValueError, match="tau = -200.0 overflows"):
        tasa.forward(
            np.ones((3, 2), np.float32), np.ones((1, 2), np.float32), None, tau=-200.0, window=3, continuous_tau=True
        )


@pytest.mark.parametrize(
    "dout,match",
    [
        (np.ones((3, 2, 4)), r"dout must have shape \(3, 2, 5\)"),
        (np.ones((2, 2, 5)), r"dout must have shape \(3, 2, 5\)"),
        (np.full((3, 2, 5), np.nan), "dout must be finite"),
    ],
)
def test_bad_dout(dout, match):
    g = _good()
    _, cache = tasa.forward(g["s"], g["weight"], g["bias"], tau=2.0, window=3)
    with pytest.raises(ValueError, match=match):
        tasa.backward(dout, cache)


def test_bad_cache():
    with pytest.raises(ValueError, match="cache must be the TASACache"):
        tasa.backward(np.ones((3, 5)), (np.ones((3, 4)),))


@pytest.mark.parametrize("window, continuous", [(1, False), (3, False), (3, True)])
def test_a_shared_mix_gives_the_same_numbers_bit_for_bit(window, continuous):
    """Layers reading one input with one tau (the attention's q, k, v) mix it once: passing
    mix_unchecked(s) as x_mix= to forward_unchecked and backward_unchecked changes no bit."""
    rng = np.random.default_rng(0)
    s = (rng.random((3, 2, 5, 4)) < 0.4).astype(np.float32)  # (T, B, N, D_in)
    weight = rng.standard_normal((6, 4)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    dout = rng.standard_normal((3, 2, 5, 6)).astype(np.float32)
    opts = dict(tau=1.3, window=window, continuous_tau=continuous)
    x_mix = tasa.mix_unchecked(s, **opts)
    out, cache = tasa.forward_unchecked(s, weight, bias, **opts)
    assert x_mix.tobytes() == cache.x_mix.tobytes() and (window > 1 or x_mix is s)
    out2, cache2 = tasa.forward_unchecked(s, weight, bias, **opts, x_mix=x_mix)
    assert out2.tobytes() == out.tobytes()
    for a, b in zip(tasa.backward_unchecked(dout, cache), tasa.backward_unchecked(dout, cache2, x_mix)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    # a mix at another tau is a different input: the check sees it
    other = tasa.mix_unchecked(s, **dict(opts, tau=0.0))
    out3, _ = tasa.forward_unchecked(s, weight, bias, **opts, x_mix=other)
    assert (out3.tobytes() == out.tobytes()) == (window == 1)


@pytest.mark.parametrize("window", [1, 2, 3])
def test_sites_sharing_a_mix_add_their_dx_mix_before_its_backward(window):
    """The attention's q, k and v share one mix: the sum of their three ``backward``s (ds and
    dtau) is the mix backward of the summed ``dx_mix`` (the same sums in another order: float64
    to rounding), and the two halves compose to ``backward_unchecked`` bit for bit."""
    rng = np.random.default_rng(1)
    s = (rng.random((4, 2, 5, 3)) < 0.4).astype(np.float64)  # (T, B, N, D_in)
    caches, douts = [], []
    for _ in range(3):
        weight = rng.standard_normal((6, 3))
        caches.append(tasa.forward_unchecked(s, weight, None, tau=1.0, window=window)[1])
        douts.append(rng.standard_normal((4, 2, 5, 6)))
    separate = [tasa.backward_unchecked(d, c) for d, c in zip(douts, caches)]
    halves = [tasa.product_backward_unchecked(d, c) for d, c in zip(douts, caches)]
    for (ds, dw, db, dtau), (dx_mix, dw2, db2) in zip(separate, halves):
        ds2, dtau2 = tasa.mix_backward_unchecked(dx_mix, caches[0])
        assert ds2.tobytes() == ds.tobytes() and dtau2 == dtau and dw2.tobytes() == dw.tobytes() and db2 is db
    summed_ds, summed_dtau = tasa.mix_backward_unchecked(sum(h[0] for h in halves), caches[0])
    np.testing.assert_allclose(summed_ds, sum(r[0] for r in separate), rtol=1e-12, atol=1e-12)
    if window == 1:
        assert summed_dtau == 0.0  # no lag: nothing depends on tau
    else:
        assert math.isclose(summed_dtau, sum(r[3] for r in separate), rel_tol=1e-12)
        # and the check can fail: one site's dx_mix left out of the sum
        partial, _ = tasa.mix_backward_unchecked(halves[0][0] + halves[1][0], caches[0])
        assert not np.allclose(partial, sum(r[0] for r in separate), rtol=1e-12, atol=1e-12)
