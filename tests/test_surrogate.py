import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ds2ta_ref import surrogate
from ds2ta_ref.gradcheck import rel_error


@pytest.mark.parametrize("name", sorted(surrogate.SURROGATES))
@pytest.mark.parametrize("alpha", [0.5, 2.0, 4.0])
def test_derivative_is_finite_difference_of_primal(name, alpha):
    sg = surrogate.get(name)
    x = np.linspace(-3, 3, 121)
    eps = 1e-6
    numeric = (sg.primal(x + eps, alpha) - sg.primal(x - eps, alpha)) / (2 * eps)
    assert rel_error(sg.grad(x, alpha), numeric) < 1e-8


@pytest.mark.parametrize("name", sorted(surrogate.SURROGATES))
def test_primal_approximates_step_and_is_stable_for_large_x(name):
    sg = surrogate.get(name)
    x = np.array([-1e308, -1e6, -50.0, 0.0, 50.0, 1e6, 1e308])
    with np.errstate(all="raise"):
        p = sg.primal(x, sg.default_alpha)
        g = sg.grad(x, sg.default_alpha)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(g))
    assert p[0] == pytest.approx(0.0, abs=1e-6) and p[-1] == pytest.approx(1.0, abs=1e-6)
    assert p[3] == pytest.approx(0.5)
    assert np.all(np.diff(p) >= 0)


def test_sigmoid_peak_is_alpha_over_four():
    assert surrogate.sigmoid_grad(np.array(0.0), 4.0) == pytest.approx(1.0)
    assert surrogate.atan_grad(np.array(0.0), 2.0) == pytest.approx(1.0)


@given(st.floats(-1e3, 1e3), st.sampled_from(sorted(surrogate.SURROGATES)))
@example(4.123456, "sigmoid")  # the naive alpha*sig*(1-sig) loses precision for large x > 0
def test_grad_positive_and_symmetric(x, name):
    sg = surrogate.get(name)
    a = sg.grad(np.array(x), sg.default_alpha)
    b = sg.grad(np.array(-x), sg.default_alpha)
    assert a >= 0 and a == pytest.approx(b, rel=1e-12, abs=1e-300)


def test_float32_preserved():
    x = np.linspace(-1, 1, 5, dtype=np.float32)
    for sg in surrogate.SURROGATES.values():
        assert sg.primal(x, sg.default_alpha).dtype == np.float32
        assert sg.grad(x, sg.default_alpha).dtype == np.float32


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"surrogate must be one of \['atan', 'sigmoid'\]"):
        surrogate.get("relu")


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        surrogate.get("sigmoid", alpha)
