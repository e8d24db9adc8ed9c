import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ds2ta_ref import nsad
from ds2ta_ref import surrogate as surrogates
from ds2ta_ref.gradcheck import check_gradients, rel_error
from ds2ta_ref.surrogate import SURROGATES

ALPHA = {name: sg.default_alpha for name, sg in SURROGATES.items()}
ROUNDINGS = ["nearest", "floor"]


# ----------------------------------------------------------------------------- strategies and references


def random_params(rng, heads, head_dim):
    """a in [-1, 1], b and d in [-1.2, -0.2] U [0.2, 1.2], c, e, u in [0, head_dim]."""
    p = np.empty((heads, 6))
    p[:, [0, 1, 3]] = rng.uniform(-1, 1, (heads, 3))
    p[:, [1, 3]] += np.sign(p[:, [1, 3]]) * 0.2  # every parameter's gradient is exercised
    p[:, [2, 4]] = rng.uniform(0, head_dim, (heads, 2))
    p[:, 5] = rng.uniform(0, head_dim, heads)
    return p


@st.composite
def nsad_inputs(draw, u_min=-2.0):
    """Integer scores ``(..., H, N, N)`` with 0-2 leading axes, and matching params."""
    heads = draw(st.integers(1, 3))
    head_dim = draw(st.integers(1, 8))
    n = draw(st.integers(1, 4))
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    shape = tuple(lead) + (heads, n, n)
    scores = draw(hnp.arrays(np.float64, shape, elements=st.integers(0, head_dim).map(float)))

    def real(lo, hi):
        return st.floats(lo, hi, allow_nan=False)

    rows = [
        [
            draw(real(-2, 2)),
            draw(real(-1, 1)),
            draw(real(0, head_dim)),
            draw(real(-3, 3)),
            draw(real(0, head_dim)),
            draw(real(u_min, head_dim + 1)),
        ]
        for _ in range(heads)
    ]
    return scores, np.array(rows), head_dim


def f_by_hand(p, s):
    """Eq. 6-7 for one head and one score, in plain Python."""
    a, b, c, d, e, u = (float(x) for x in p)
    g = a * s + b * (s - c) ** 2 + d / (1 + math.exp(s - e))
    return g if s > u else 0.0


def assert_rounded_equal(table, unrounded, rounding):
    """``table == round(unrounded)``, except within 1e-9 of a rounding boundary,
    where a last-ulp difference between two evaluations may round either way."""
    expected = np.rint(unrounded) if rounding == "nearest" else np.floor(unrounded)
    if rounding == "nearest":  # boundaries at k + 1/2
        near = np.abs(unrounded - np.floor(unrounded) - 0.5) < 1e-9
    else:  # boundaries at the integers
        near = np.abs(unrounded - np.rint(unrounded)) < 1e-9
    np.testing.assert_array_equal(table[~near], expected[~near])
    assert np.all(np.abs(table - expected)[near] <= 1)


def naive_backward(dA, scores, params, surrogate="sigmoid", alpha=4.0):
    """The docs/spec.md §3.3 straight-through gradient, entry by entry, materialising everything."""
    sg = surrogates.get(surrogate).grad
    dscores = np.zeros_like(scores)
    dparams = np.zeros_like(params)
    for idx in np.ndindex(scores.shape):
        h, s = idx[-3], scores[idx]
        a, b, c, d, e, u = params[h]
        sig = 1 / (1 + math.exp(-(s - e)))
        g = a * s + b * (s - c) ** 2 + d * (1 - sig)
        gate = float(s > u)
        sgv = float(sg(np.array(s - u), alpha))
        dscores[idx] = dA[idx] * (gate * (a + 2 * b * (s - c) - d * sig * (1 - sig)) + sgv * g)
        dparams[h] += dA[idx] * np.array(
            [
                gate * s,
                gate * (s - c) ** 2,
                gate * -2 * b * (s - c),
                gate * (1 - sig),
                gate * d * sig * (1 - sig),
                -sgv * g,
            ]
        )
    return dscores, dparams


# ----------------------------------------------------------------------------- the table is Eq. 6-7


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("seed", range(3))
def test_table_is_equation_6_7_rounded(rounding, seed):
    rng = np.random.default_rng(seed)
    heads, head_dim = 4, 8
    params = random_params(rng, heads, head_dim) * [3, 1, 1, 3, 1, 1]
    params[0, 5] = 3.0  # an integer threshold: s = 3 is at u, so it must map to 0
    table = nsad.hashmap(params, head_dim=head_dim, rounding=rounding)
    by_hand = np.array([[f_by_hand(params[h], s) for s in range(head_dim + 1)] for h in range(heads)])
    assert table.shape == (heads, head_dim + 1)
    assert_rounded_equal(table, by_hand, rounding)
    for h in range(heads):
        assert np.all(table[h, np.arange(head_dim + 1) <= params[h, 5]] == 0)
    np.testing.assert_allclose(nsad.curve(params, np.arange(head_dim + 1)), by_hand, rtol=1e-13, atol=1e-13)


@given(nsad_inputs(), st.sampled_from(ROUNDINGS))
def test_table_is_equation_6_7_property(inputs, rounding):
    _, params, head_dim = inputs
    table = nsad.hashmap(params, head_dim=head_dim, rounding=rounding)
    by_hand = np.array([[f_by_hand(p, s) for s in range(head_dim + 1)] for p in params])
    assert_rounded_equal(table, by_hand, rounding)
    np.testing.assert_array_equal(table[by_hand == 0], 0)


def test_rounding_conventions_on_ties():
    # a = 0.5, the rest 0, u < 0: f(s) = s / 2; ties at s = 1, 3, 5 go to the even neighbour.
    params = np.array([[0.5, 0, 0, 0, 0, -1.0]])
    np.testing.assert_array_equal(nsad.hashmap(params, head_dim=5), [[0, 0, 1, 2, 2, 2]])
    np.testing.assert_array_equal(nsad.hashmap(params, head_dim=5, rounding="floor"), [[0, 0, 1, 1, 2, 2]])
    # negative entries are allowed: a = -1.6 gives round(-1.6 s)
    params = np.array([[-1.6, 0, 0, 0, 0, 0.5]])
    np.testing.assert_array_equal(nsad.hashmap(params, head_dim=3), [[0, -2, -3, -5]])
    np.testing.assert_array_equal(nsad.hashmap(params, head_dim=3, rounding="floor"), [[0, -2, -4, -5]])


def test_logistic_is_stable_for_large_arguments():
    params = np.array([[0, 0, 0, 1.0, -1e6, -1.0], [0, 0, 0, 1.0, 1e6, -1.0]])
    with np.errstate(all="raise"):
        table = nsad.hashmap(params, head_dim=4)
        _, cache = nsad.forward(np.ones((2, 2, 2)), params, head_dim=4)
        dscores, dparams = nsad.backward(np.ones((2, 2, 2)), cache)
    np.testing.assert_array_equal(table, [[0] * 5, [1] * 5])
    assert np.all(np.isfinite(dscores)) and np.all(np.isfinite(dparams))


# ----------------------------------------------------------------------------- forward properties


@given(nsad_inputs(), st.sampled_from(ROUNDINGS))
def test_forward_gathers_the_table(inputs, rounding):
    scores, params, head_dim = inputs
    A, _ = nsad.forward(scores, params, head_dim=head_dim, rounding=rounding)
    table = nsad.hashmap(params, head_dim=head_dim, rounding=rounding)
    assert A.shape == scores.shape and A.dtype == np.float64
    for idx in np.ndindex(scores.shape):
        assert A[idx] == table[idx[-3], int(scores[idx])]


@given(nsad_inputs(), st.floats(-5, -1e-9))
def test_identity_when_a_is_one_and_u_negative(inputs, u):
    scores, params, head_dim = inputs
    params = np.zeros_like(params)
    params[:, 0], params[:, 5] = 1.0, u
    A, _ = nsad.forward(scores, params, head_dim=head_dim)
    np.testing.assert_array_equal(A, scores)
    np.testing.assert_array_equal(A, nsad.forward(scores, nsad.init_params(len(params), u), head_dim=head_dim)[0])


@given(nsad_inputs(), st.integers(0, 9))
def test_init_params_thresholds_the_identity(inputs, u0):
    scores, params, head_dim = inputs
    A, _ = nsad.forward(scores.astype(np.int64), nsad.init_params(len(params), u0), head_dim=head_dim)
    np.testing.assert_array_equal(A, np.where(scores > u0, scores, 0))


@given(nsad_inputs(u_min=0.0), st.sampled_from(ROUNDINGS))
def test_zeros_stay_zeros_when_u_nonnegative(inputs, rounding):
    scores, params, head_dim = inputs
    A, _ = nsad.forward(scores, params, head_dim=head_dim, rounding=rounding)
    assert np.all(A[scores == 0] == 0)
    report = nsad.sparsity_report(scores, A)
    assert report.after >= report.before
    assert report.before == np.mean(scores == 0) and report.after == nsad.sparsity(A)


def test_sparsity_counts_zeros():
    assert nsad.sparsity(np.array([[0.0, 1.0], [0.0, -0.0]])) == 0.75
    with pytest.raises(ValueError, match="A must not be empty"):
        nsad.sparsity(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="A must have shape"):
        nsad.sparsity_report(np.zeros((2, 2)), np.zeros((2, 3)))


def test_curve_shape_and_gate():
    params = np.array([[1.0, 0, 0, 0, 0, 2.0], [0, 1.0, 1.0, 0, 0, -1.0]])
    s = np.linspace(0, 4, 9)
    y = nsad.curve(params, s)
    assert y.shape == (2, 9)
    np.testing.assert_allclose(y[0], np.where(s > 2, s, 0))
    np.testing.assert_allclose(y[1], (s - 1) ** 2)


def test_float32_kept():
    rng = np.random.default_rng(0)
    params = random_params(rng, 2, 4).astype(np.float32)
    scores = rng.integers(0, 5, (3, 2, 4, 4))
    for smooth in (False, True):
        A, cache = nsad.forward(scores, params, head_dim=4, smooth=smooth)
        dscores, dparams = nsad.backward(np.ones(A.shape), cache)
        assert A.dtype == dscores.dtype == dparams.dtype == np.float32
    assert nsad.hashmap(params, head_dim=4).dtype == np.float32


def test_smooth_mode_accepts_real_scores_outside_range():
    params = nsad.init_params(1, 1.0)
    scores = np.array([[[-0.5, 9.25], [0.0, 1.5]]])  # (H=1, N=2, N=2)
    A, _ = nsad.forward(scores, params, head_dim=2, smooth=True)
    gate = 1 / (1 + np.exp(-4.0 * (scores - 1.0)))  # the sigmoid primal at s - u
    np.testing.assert_allclose(A, scores * gate, rtol=1e-14)


# ----------------------------------------------------------------------------- backward


@pytest.mark.parametrize("surrogate,shape", list(itertools.product(["sigmoid", "atan"], [(3, 3, 3), (2, 2, 3, 3)])))
def test_backward_matches_finite_differences_in_smooth_mode(surrogate, shape):
    # Each parameter column is its own input, so that a small gradient (say d/de)
    # is measured on its own scale rather than next to a large one (d/db).
    rng = np.random.default_rng(3)
    head_dim = 6
    params = random_params(rng, shape[-3], head_dim)
    scores = rng.uniform(0, head_dim, shape)  # real-valued: smooth mode has no kink to avoid
    opts = dict(head_dim=head_dim, surrogate=surrogate, alpha=ALPHA[surrogate], smooth=True)

    def forward(scores, **columns):
        return nsad.forward(scores, np.stack([columns[n] for n in nsad.PARAM_NAMES], axis=1), **opts)

    def backward(dA, cache):
        dscores, dparams = nsad.backward(dA, cache)
        assert np.all(np.abs(dparams).max(axis=0) > 1e-3)  # every parameter is exercised
        return {"scores": dscores, **{n: dparams[:, k] for k, n in enumerate(nsad.PARAM_NAMES)}}

    inputs = {"scores": scores, **{n: params[:, k] for k, n in enumerate(nsad.PARAM_NAMES)}}
    # eps = 1e-5: f is a polynomial times a logistic, so the truncation error stays
    # ~1e-10, while the round-off of the default 1e-6 reaches ~1e-7 on the small d/dd, d/de.
    report = check_gradients(forward, backward, inputs, wrt=list(inputs), rng=rng, eps=1e-5)
    assert max(report.values()) <= 1e-7, report


@pytest.mark.parametrize("rounding,surrogate", list(itertools.product(ROUNDINGS, ["sigmoid", "atan"])))
def test_matches_torch_autograd(torch, rounding, surrogate):
    rng = np.random.default_rng(4)
    heads, head_dim = 3, 6
    params = random_params(rng, heads, head_dim) * [3, 1, 1, 3, 1, 1]
    scores = rng.integers(0, head_dim + 1, (2, 2, heads, 5, 5)).astype(np.float64)
    A = _compare_with_torch(torch, scores, params, head_dim, rounding, surrogate, rng.standard_normal(scores.shape))
    assert np.any(A != 0) and np.any(A[scores > 0] == 0)  # both branches of the gate are hit


def _compare_with_torch(torch, scores, params, head_dim, rounding, surrogate, dA):
    """NumPy forward/backward against the autograd twin: equal maps, gradients <= 1e-10."""
    from torch_twin_nsad import nsad as torch_nsad

    opts = dict(surrogate=surrogate, alpha=ALPHA[surrogate], rounding=rounding)
    A, cache = nsad.forward(scores, params, head_dim=head_dim, **opts)
    dscores, dparams = nsad.backward(dA, cache)
    st_ = torch.tensor(scores, requires_grad=True)
    pt = torch.tensor(params, requires_grad=True)
    At = torch_nsad(st_, pt, **opts)
    (At * torch.tensor(dA)).sum().backward()
    np.testing.assert_array_equal(A, At.detach().numpy())
    assert rel_error(dscores, st_.grad.numpy()) <= 1e-10
    assert rel_error(dparams, pt.grad.numpy()) <= 1e-10
    return A


@given(nsad_inputs(), st.sampled_from(ROUNDINGS), st.sampled_from(["sigmoid", "atan"]))
def test_matches_torch_autograd_property(torch, inputs, rounding, surrogate):
    scores, params, head_dim = inputs
    dA = np.random.default_rng(0).standard_normal(scores.shape)
    _compare_with_torch(torch, scores, params, head_dim, rounding, surrogate, dA)


@given(nsad_inputs(), st.sampled_from(["sigmoid", "atan"]))
def test_table_backward_equals_entrywise_reference(inputs, surrogate):
    scores, params, head_dim = inputs
    dA = np.random.default_rng(0).standard_normal(scores.shape)
    _, cache = nsad.forward(scores, params, head_dim=head_dim, surrogate=surrogate, alpha=ALPHA[surrogate])
    dscores, dparams = nsad.backward(dA, cache)
    ref_dscores, ref_dparams = naive_backward(dA, scores, params, surrogate, ALPHA[surrogate])
    assert dscores.shape == scores.shape and dparams.shape == params.shape
    np.testing.assert_allclose(dscores, ref_dscores, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dparams, ref_dparams, rtol=1e-10, atol=1e-10)


@given(nsad_inputs(), st.floats(-3, 3), st.booleans())
def test_backward_is_linear_in_dA(inputs, k, smooth):
    scores, params, head_dim = inputs
    rng = np.random.default_rng(0)
    _, cache = nsad.forward(scores, params, head_dim=head_dim, smooth=smooth)
    x, y = rng.standard_normal((2,) + scores.shape)
    lhs = nsad.backward(x + k * y, cache)
    rhs = [p + k * q for p, q in zip(nsad.backward(x, cache), nsad.backward(y, cache))]
    for l_, r_ in zip(lhs, rhs):
        np.testing.assert_allclose(l_, r_, rtol=1e-9, atol=1e-9)


def test_rounding_is_straight_through():
    # The two roundings give different tables but the same (unrounded-f) gradients.
    rng = np.random.default_rng(5)
    params = random_params(rng, 2, 5)
    scores = rng.integers(0, 6, (2, 4, 4))
    dA = rng.standard_normal(scores.shape)
    grads = [nsad.backward(dA, nsad.forward(scores, params, head_dim=5, rounding=r)[1]) for r in ROUNDINGS]
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- bad input


GOOD_SCORES = np.zeros((2, 3, 3))
GOOD_PARAMS = nsad.init_params(2, 1.0)


@pytest.mark.parametrize(
    "scores,params,kwargs,match",
    [
        (GOOD_SCORES + 0.5, GOOD_PARAMS, {}, "scores must be integer counts"),
        (GOOD_SCORES - 1, GOOD_PARAMS, {}, r"scores must lie in \[0, head_dim\] = \[0, 4\]"),
        (GOOD_SCORES + 5, GOOD_PARAMS, {}, r"scores must lie in \[0, head_dim\]"),
        (np.full((2, 3, 3), np.nan), GOOD_PARAMS, {}, "scores must be finite"),
        (np.full((2, 3, 3), np.inf), GOOD_PARAMS, dict(smooth=True), "scores must be finite"),
        (np.zeros((3, 3)), GOOD_PARAMS, {}, r"scores must have at least 3 axes \(\.\.\., H, N, N\)"),
        (np.zeros((2, 3, 4)), GOOD_PARAMS, {}, "scores must be .* square last two axes"),
        (GOOD_SCORES, np.zeros((2, 5)), {}, r"params must have shape \(H, 6\)"),
        (GOOD_SCORES, np.zeros(6), {}, r"params must have shape \(H, 6\)"),
        (GOOD_SCORES, nsad.init_params(3, 1.0), {}, r"params must have one row per head, H = scores.shape\[-3\] = 2"),
        (GOOD_SCORES, np.array([[1.0, 0, 0, np.nan, 0, 0]] * 2), {}, "params must be finite"),
        (GOOD_SCORES, np.array([[1.0, 1e308, 0, 0, 0, -1]] * 2), {}, "params must give a finite table"),
        (GOOD_SCORES, GOOD_PARAMS, dict(rounding="up"), r"rounding must be one of \['floor', 'nearest'\]"),
        (GOOD_SCORES, GOOD_PARAMS, dict(surrogate="relu"), r"surrogate must be one of \['atan', 'sigmoid'\]"),
        (GOOD_SCORES, GOOD_PARAMS, dict(alpha=0.0), "alpha must be a finite number > 0"),
        (GOOD_SCORES, GOOD_PARAMS, dict(head_dim=0), "head_dim must be an integer >= 1"),
        (GOOD_SCORES, GOOD_PARAMS, dict(head_dim=4.0), "head_dim must be an integer >= 1"),
    ],
)
def test_bad_forward_input(scores, params, kwargs, match):
    kwargs = {"head_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        nsad.forward(scores, params, **kwargs)


def test_bad_dA():
    _, cache = nsad.forward(GOOD_SCORES, GOOD_PARAMS, head_dim=4)
    with pytest.raises(ValueError, match=r"dA must have shape \(2, 3, 3\)"):
        nsad.backward(np.zeros((2, 3, 4)), cache)
    with pytest.raises(ValueError, match="dA must be finite"):
        nsad.backward(np.full((2, 3, 3), np.nan), cache)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: nsad.hashmap(GOOD_PARAMS, head_dim=0), "head_dim must be an integer >= 1"),
        (lambda: nsad.hashmap(GOOD_PARAMS, head_dim=3, rounding="ceil"), "rounding must be one of"),
        (lambda: nsad.hashmap(np.zeros((2, 7)), head_dim=3), r"params must have shape \(H, 6\)"),
        (lambda: nsad.curve(GOOD_PARAMS, np.zeros((2, 2))), "s must be a 1-D array"),
        (lambda: nsad.curve(GOOD_PARAMS, [np.nan]), "s must be finite"),
        (lambda: nsad.init_params(0, 3.0), "num_heads must be an integer >= 1"),
        (lambda: nsad.init_params(2, float("inf")), "u0 must be finite"),
    ],
)
def test_bad_helper_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unchecked_core_is_the_checked_forward_and_backward():
    """nsad.forward_unchecked / backward_unchecked (what the attention block calls, issue 20)
    compute exactly what the checked pair computes, in both modes."""
    rng = np.random.default_rng(5)
    params = nsad.init_params(3, 2.0) + 0.3 * rng.standard_normal((3, 6))
    scores = rng.integers(0, 9, (2, 2, 3, 4, 4)).astype(np.float64)
    dA = rng.standard_normal(scores.shape)
    for smooth in (False, True):
        options = dict(head_dim=8, surrogate="atan", alpha=None, rounding="floor", smooth=smooth)
        A, cache = nsad.forward(scores, params, **options)
        A_u, cache_u = nsad.forward_unchecked(scores, params, **options)
        assert np.array_equal(A, A_u)
        for g, g_u in zip(nsad.backward(dA, cache), nsad.backward_unchecked(dA, cache_u)):
            assert np.array_equal(g, g_u)
    # the checked forward still scans the scores; the unchecked core is for callers that know them
    with pytest.raises(ValueError, match="integer counts"):
        nsad.forward(scores + 0.5, params, head_dim=8)
