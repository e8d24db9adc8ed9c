import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ds2ta_ref import layers
from ds2ta_ref.gradcheck import check_gradients, rel_error

FD_TOL = 1e-7  # finite differences in float64
TORCH_TOL = 1e-10  # PyTorch autograd in float64


def distinct_values(rng, shape, gap=0.05):
    """Entries at least ``gap`` apart (a shuffled grid plus small jitter), so a
    finite-difference step never changes which entry of a window is the maximum."""
    n = int(np.prod(shape))
    grid = (np.arange(n) - n / 2) * gap + rng.uniform(0, gap / 10, n)
    return rng.permutation(grid).reshape(shape)


def binary_spikes(rng, shape, p=0.3):
    return (rng.random(shape) < p).astype(np.float64)


def bn_params(rng, c):
    return dict(
        gamma=rng.standard_normal(c) + 1.0,
        beta=rng.standard_normal(c),
        running_mean=rng.standard_normal(c),
        running_var=rng.uniform(0.5, 2.0, c),
    )


# ------------------------------------------------------------------ finite differences


@pytest.mark.parametrize("x_shape,w_shape", [((2, 3, 5, 4), (4, 3, 3, 3)), ((1, 2, 6, 6), (2, 2, 5, 5))])
def test_conv_gradients_finite_differences(x_shape, w_shape):
    rng = np.random.default_rng(0)
    inputs = dict(x=rng.standard_normal(x_shape), weight=rng.standard_normal(w_shape))
    report = check_gradients(layers.conv_forward, layers.conv_backward, inputs, wrt=["x", "weight"], rng=rng)
    assert max(report.values()) <= FD_TOL, report


BN_CASES = [  # (shape, axis): conv maps (M, C, H, W) and tokens (T, B, N, D)
    ((4, 3, 3, 2), 1),
    ((2, 3, 4, 5), -1),
]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape,axis", BN_CASES)
def test_batchnorm_gradients_finite_differences(shape, axis, training):
    rng = np.random.default_rng(2)
    c = shape[axis]
    p = bn_params(rng, c)
    inputs = dict(x=rng.standard_normal(shape) * 2 + 0.5, gamma=p["gamma"], beta=p["beta"])

    def forward(x, gamma, beta):
        out, _, _, cache = layers.batchnorm_forward(
            x, gamma, beta, p["running_mean"], p["running_var"], axis=axis, training=training
        )
        return out, cache

    report = check_gradients(forward, layers.batchnorm_backward, inputs, wrt=["x", "gamma", "beta"], rng=rng)
    assert max(report.values()) <= FD_TOL, report


def test_maxpool_gradients_finite_differences():
    rng = np.random.default_rng(3)
    inputs = dict(x=distinct_values(rng, (2, 2, 7, 6)))
    report = check_gradients(layers.maxpool_forward, layers.maxpool_backward, inputs, wrt=["x"], rng=rng)
    assert report["x"] <= FD_TOL, report


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 2, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_gradients_finite_differences(shape, with_bias):
    rng = np.random.default_rng(4)
    inputs = dict(
        x=rng.standard_normal(shape),
        weight=rng.standard_normal((3, shape[-1])),
        bias=rng.standard_normal(3) if with_bias else None,
    )
    wrt = ["x", "weight"] + (["bias"] if with_bias else [])
    report = check_gradients(layers.linear_forward, layers.linear_backward, inputs, wrt=wrt, rng=rng)
    assert max(report.values()) <= FD_TOL, report
    _, cache = layers.linear_forward(**inputs)
    assert (layers.linear_backward(np.ones(shape[:-1] + (3,)), cache)[2] is None) == (not with_bias)


@pytest.mark.parametrize("axis", [0, -1, (0, 2), (1, 2, 0)])
def test_mean_gradients_finite_differences(axis):
    rng = np.random.default_rng(5)
    report = check_gradients(
        lambda x: layers.mean_forward(x, axis),
        layers.mean_backward,
        {"x": rng.standard_normal((3, 2, 4))},
        wrt=["x"],
        rng=rng,
    )
    assert report["x"] <= FD_TOL, report


@pytest.mark.parametrize("axis", [2, (0, 2), 0])
def test_mean_backward_is_a_fresh_c_ordered_array(axis):
    """The model's residual stream starts at the head's mean: a broadcast copied with NumPy's
    default order "K" keeps the broadcast's strides, and every residual add of every block's
    backward then runs strided (26 ms of the cifar10 step in profile_step). Values: dout / n everywhere."""
    x = np.zeros((4, 3, 5, 6), dtype=np.float32)
    out, cache = layers.mean_forward(x, axis)
    dout = np.arange(out.size, dtype=np.float32).reshape(out.shape) + 1
    dx = layers.mean_backward(dout, cache)
    assert dx.flags.c_contiguous and dx.flags.owndata and dx.flags.writeable, dx.strides
    n = x.size // out.size
    assert np.array_equal(dx, np.broadcast_to(np.expand_dims(dout, axis) / np.float32(n), x.shape))
    # the check fails on the copy it replaced
    kept = np.broadcast_to(np.expand_dims(dout, axis) / n, x.shape).astype(np.float32)
    assert axis == 0 or not kept.flags.c_contiguous


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_gradient_finite_differences(label_smoothing):
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((4, 5)) * 3
    labels = rng.integers(0, 5, 4)

    def forward(logits):  # a scalar output: the check draws dout of shape ()
        loss, dlogits = layers.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        return np.asarray(loss), dlogits

    report = check_gradients(forward, lambda dout, dlogits: dout * dlogits, {"logits": logits}, wrt=["logits"], rng=rng)
    assert report["logits"] <= FD_TOL, report


# ------------------------------------------------------------------------ PyTorch


def test_conv_matches_torch(torch):
    F = torch.nn.functional
    rng = np.random.default_rng(10)
    x = rng.standard_normal((3, 4, 7, 6))
    weight = rng.standard_normal((5, 4, 3, 3))
    dout = rng.standard_normal((3, 5, 7, 6))
    out, cache = layers.conv_forward(x, weight)
    dx, dweight = layers.conv_backward(dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(weight, requires_grad=True)
    ot = F.conv2d(xt, wt, padding=1)
    (ot * torch.tensor(dout)).sum().backward()
    assert rel_error(out, ot.detach().numpy()) <= TORCH_TOL
    assert rel_error(dx, xt.grad.numpy()) <= TORCH_TOL
    assert rel_error(dweight, wt.grad.numpy()) <= TORCH_TOL


def _torch_batchnorm(torch, x, p, axis, training, momentum):
    """The model's layout for torch: (M, C, H, W) as is (BatchNorm2d); (T, B, N, D)
    tokens as (T*B, D, N) for BatchNorm1d."""
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(p["gamma"], requires_grad=True)
    bt = torch.tensor(p["beta"], requires_grad=True)
    rm = torch.tensor(p["running_mean"])
    rv = torch.tensor(p["running_var"])
    if axis == 1:
        inp = xt
    else:
        t, b, n, d = x.shape
        inp = xt.reshape(t * b, n, d).transpose(1, 2)  # (T*B, D, N)
    out = F.batch_norm(inp, rm, rv, gt, bt, training=training, momentum=momentum, eps=1e-5)
    if axis != 1:
        out = out.transpose(1, 2).reshape(x.shape)  # back to (T, B, N, D)
    return out, xt, gt, bt, rm.numpy(), rv.numpy()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape,axis", [((6, 4, 5, 3), 1), ((3, 2, 5, 4), -1)])
def test_batchnorm_matches_torch(torch, shape, axis, training):
    rng = np.random.default_rng(11)
    p = bn_params(rng, shape[axis])
    x = rng.standard_normal(shape) * 1.7 - 0.4
    dout = rng.standard_normal(shape)
    out, new_mean, new_var, cache = layers.batchnorm_forward(x, **p, axis=axis, training=training, momentum=0.2)
    dx, dgamma, dbeta = layers.batchnorm_backward(dout, cache)

    ot, xt, gt, bt, rm, rv = _torch_batchnorm(torch, x, p, axis, training, 0.2)
    (ot * torch.tensor(dout)).sum().backward()
    assert rel_error(out, ot.detach().numpy()) <= TORCH_TOL
    assert rel_error(dx, xt.grad.numpy()) <= TORCH_TOL
    assert rel_error(dgamma, gt.grad.numpy()) <= TORCH_TOL
    assert rel_error(dbeta, bt.grad.numpy()) <= TORCH_TOL
    # torch updates its buffers in place in training mode, leaves them in eval
    assert rel_error(new_mean, rm) <= TORCH_TOL
    assert rel_error(new_var, rv) <= TORCH_TOL
    if training:
        assert not np.allclose(new_var, p["running_var"])


def test_maxpool_matches_torch_on_binary_spikes_with_ties(torch):
    F = torch.nn.functional
    rng = np.random.default_rng(12)
    for shape, density in [((4, 3, 8, 8), 0.3), ((2, 5, 9, 7), 0.7), ((2, 2, 6, 6), 1.0), ((2, 2, 5, 5), 0.0)]:
        x = binary_spikes(rng, shape, density)
        dout = rng.standard_normal(layers.maxpool_forward(x)[0].shape)
        out, cache = layers.maxpool_forward(x)
        dx = layers.maxpool_backward(dout, cache)

        xt = torch.tensor(x, requires_grad=True)
        ot = F.max_pool2d(xt, 3, 2, 1)
        (ot * torch.tensor(dout)).sum().backward()
        np.testing.assert_array_equal(out, ot.detach().numpy())
        _, index_t = F.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
        np.testing.assert_array_equal(cache.index, index_t.numpy())  # same input chosen
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=TORCH_TOL, atol=0)


def test_maxpool_matches_torch_other_geometry(torch):
    F = torch.nn.functional
    rng = np.random.default_rng(13)
    x = np.round(rng.standard_normal((2, 3, 10, 9)))  # integers: ties again
    for kernel, stride, padding in [(2, 2, 0), (3, 1, 1), (5, 3, 2), (1, 1, 0)]:
        out, cache = layers.maxpool_forward(x, kernel=kernel, stride=stride, padding=padding)
        dout = rng.standard_normal(out.shape)
        dx = layers.maxpool_backward(dout, cache)
        xt = torch.tensor(x, requires_grad=True)
        ot = F.max_pool2d(xt, kernel, stride, padding)
        (ot * torch.tensor(dout)).sum().backward()
        np.testing.assert_array_equal(out, ot.detach().numpy())
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=TORCH_TOL, atol=0)


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_torch(torch, with_bias):
    F = torch.nn.functional
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3, 4, 6))
    weight = rng.standard_normal((5, 6))
    bias = rng.standard_normal(5) if with_bias else None
    dout = rng.standard_normal((2, 3, 4, 5))
    out, cache = layers.linear_forward(x, weight, bias)
    dx, dweight, dbias = layers.linear_backward(dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(weight, requires_grad=True)
    bt = torch.tensor(bias, requires_grad=True) if with_bias else None
    ot = F.linear(xt, wt, bt)
    (ot * torch.tensor(dout)).sum().backward()
    assert rel_error(out, ot.detach().numpy()) <= TORCH_TOL
    assert rel_error(dx, xt.grad.numpy()) <= TORCH_TOL
    assert rel_error(dweight, wt.grad.numpy()) <= TORCH_TOL
    if with_bias:
        assert rel_error(dbias, bt.grad.numpy()) <= TORCH_TOL


def test_mean_matches_torch(torch):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((3, 2, 5, 4))  # (T, B, N, D) -> (B, D), the head
    out, cache = layers.mean_forward(x, (0, 2))
    dout = rng.standard_normal(out.shape)
    xt = torch.tensor(x, requires_grad=True)
    ot = xt.mean(dim=(0, 2))
    (ot * torch.tensor(dout)).sum().backward()
    assert rel_error(out, ot.detach().numpy()) <= TORCH_TOL
    assert rel_error(layers.mean_backward(dout, cache), xt.grad.numpy()) <= TORCH_TOL


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(torch, label_smoothing):
    F = torch.nn.functional
    rng = np.random.default_rng(16)
    logits = rng.standard_normal((6, 10)) * 4
    labels = rng.integers(0, 10, 6)
    loss, dlogits = layers.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    lt = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(lt, torch.tensor(labels), label_smoothing=label_smoothing)
    loss_t.backward()
    assert abs(loss - loss_t.item()) <= TORCH_TOL * abs(loss_t.item())
    assert rel_error(dlogits, lt.grad.numpy()) <= TORCH_TOL


# ---------------------------------------------------------- state, purity, dtypes


def test_batchnorm_eval_keeps_running_stats_and_train_updates_them():
    rng = np.random.default_rng(20)
    p = bn_params(rng, 3)
    x = rng.standard_normal((5, 3, 2, 2)) * 3 + 1
    _, m_eval, v_eval, _ = layers.batchnorm_forward(x, **p, axis=1, training=False)
    np.testing.assert_array_equal(m_eval, p["running_mean"])
    np.testing.assert_array_equal(v_eval, p["running_var"])
    assert m_eval is not p["running_mean"] and v_eval is not p["running_var"]

    _, m_tr, v_tr, _ = layers.batchnorm_forward(x, **p, axis=1, training=True, momentum=0.1)
    n = x.size // 3
    batch_mean = x.mean(axis=(0, 2, 3))
    batch_var = x.var(axis=(0, 2, 3)) * n / (n - 1)  # unbiased
    np.testing.assert_allclose(m_tr, 0.9 * p["running_mean"] + 0.1 * batch_mean, rtol=1e-13)
    np.testing.assert_allclose(v_tr, 0.9 * p["running_var"] + 0.1 * batch_var, rtol=1e-13)


def test_batchnorm_training_output_is_normalized():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 3, 4, 5)) * 4 + 2
    c = 5
    out, *_ = layers.batchnorm_forward(x, np.ones(c), np.zeros(c), np.zeros(c), np.ones(c), axis=-1, training=True)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 1, 2)), 1, rtol=1e-4)  # var/(var+eps)


def _all_calls(rng):
    """Every forward and backward once, for the purity and dtype tests."""
    x4 = rng.standard_normal((2, 3, 6, 6))
    tok = rng.standard_normal((2, 2, 3, 4))
    p = bn_params(rng, 3)
    return [
        (layers.conv_forward, layers.conv_backward, dict(x=x4, weight=rng.standard_normal((2, 3, 3, 3))), {}),
        (lambda **kw: _bn(**kw, training=True), layers.batchnorm_backward, dict(x=x4, **p), {}),
        (lambda **kw: _bn(**kw, training=False), layers.batchnorm_backward, dict(x=x4, **p), {}),
        (layers.maxpool_forward, layers.maxpool_backward, dict(x=binary_spikes(rng, x4.shape)), {}),
        (
            layers.linear_forward,
            layers.linear_backward,
            dict(x=tok, weight=rng.standard_normal((5, 4)), bias=rng.standard_normal(5)),
            {},
        ),
        (layers.mean_forward, layers.mean_backward, dict(x=tok), dict(axis=(0, 2))),
    ]


def _bn(x, gamma, beta, running_mean, running_var, training):
    out, _, _, cache = layers.batchnorm_forward(x, gamma, beta, running_mean, running_var, axis=1, training=training)
    return out, cache


def test_inputs_are_never_mutated():
    rng = np.random.default_rng(22)
    for forward, backward, arrays, options in _all_calls(rng):
        before = {k: v.copy() for k, v in arrays.items()}
        out, cache = forward(**arrays, **options)
        dout = rng.standard_normal(out.shape)
        dout_before = dout.copy()
        backward(dout, cache)
        backward(dout, cache)  # a cache can be used twice
        for k in arrays:
            np.testing.assert_array_equal(arrays[k], before[k])
        np.testing.assert_array_equal(dout, dout_before)
    logits = rng.standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    saved = logits.copy(), labels.copy()
    layers.cross_entropy(logits, labels, label_smoothing=0.1)
    np.testing.assert_array_equal(logits, saved[0])
    np.testing.assert_array_equal(labels, saved[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept(dtype):
    rng = np.random.default_rng(23)
    for forward, backward, arrays, options in _all_calls(rng):
        arrays = {k: v.astype(dtype) for k, v in arrays.items()}
        out, cache = forward(**arrays, **options)
        assert out.dtype == dtype, forward
        grads = backward(np.ones(out.shape, dtype=dtype), cache)
        for g in grads if isinstance(grads, tuple) else (grads,):
            assert g.dtype == dtype, backward
    _, _, new_var, _ = layers.batchnorm_forward(np.ones((2, 3), dtype), *np.ones((4, 3), dtype), axis=1, training=True)
    assert new_var.dtype == dtype
    _, dlogits = layers.cross_entropy(np.zeros((2, 3), dtype), np.array([0, 2]))
    assert dlogits.dtype == dtype


def test_float32_conv_close_to_float64():
    rng = np.random.default_rng(24)
    x = rng.standard_normal((2, 4, 5, 5))
    w = rng.standard_normal((3, 4, 3, 3))
    out64, _ = layers.conv_forward(x, w)
    out32, _ = layers.conv_forward(x.astype(np.float32), w.astype(np.float32))
    assert rel_error(out32, out64) <= 1e-6


# ----------------------------------------------------------------- by hand / properties


def test_conv_by_hand_identity_and_shift():
    x = np.arange(2 * 1 * 3 * 4, dtype=float).reshape(2, 1, 3, 4)
    identity = np.zeros((1, 1, 3, 3))
    identity[0, 0, 1, 1] = 1
    np.testing.assert_array_equal(layers.conv_forward(x, identity)[0], x)
    right = np.zeros((1, 1, 3, 3))
    right[0, 0, 1, 2] = 1  # out[h, w] = x[h, w + 1] (cross-correlation), zero past the edge
    expected = np.concatenate([x[..., 1:], np.zeros((2, 1, 3, 1))], axis=-1)
    np.testing.assert_array_equal(layers.conv_forward(x, right)[0], expected)


def _conv_direct(x, w):
    """The convolution as its definition: a sum over the kernel offsets of shifted, zero-padded images."""
    m, _, h, wd = x.shape
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    out = np.zeros((m, w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum("oc,mchw->mohw", w[:, :, i, j], xp[:, :, i : i + h, j : j + wd])
    return out


CONV_EDGE_SHAPES = [  # (M, C_in, H, W, C_out, k): images no wider than the kernel, one-pixel images, C_out <> C_in
    (1, 1, 1, 1, 2, 3),
    (3, 2, 1, 5, 1, 3),
    (2, 3, 2, 2, 4, 5),
    (2, 4, 3, 6, 2, 7),
    (3, 2, 6, 5, 5, 3),
]


def _conv_errors(shape, rng):
    """Forward error against :func:`_conv_direct`, and the backward's errors through the adjoint
    identities ``<dy, conv(ex, w)> = <dx, ex>`` and ``<dy, conv(x, ew)> = <dw, ew>``."""
    m, c, h, wd, o, k = shape
    x, w = rng.standard_normal((m, c, h, wd)), rng.standard_normal((o, c, k, k))
    y, cache = layers.conv_forward(x, w)
    dy = rng.standard_normal(y.shape)
    dx, dw = layers.conv_backward(dy, cache)
    ex, ew = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    return (
        float(np.max(np.abs(y - _conv_direct(x, w)))),
        abs(float(np.sum(dy * _conv_direct(ex, w)) - np.sum(dx * ex))),
        abs(float(np.sum(dy * _conv_direct(x, ew)) - np.sum(dw * ew))),
    )


@pytest.mark.parametrize("shape", CONV_EDGE_SHAPES)
def test_conv_matches_its_definition_at_edge_sizes(shape):
    """The padded flat layout of the im2col (layers._Grid) at its edges: every read off the image
    must land on a zero, also where the kernel is wider than the image."""
    assert max(_conv_errors(shape, np.random.default_rng(0))) < 1e-12


@pytest.mark.parametrize(
    "offset",
    [
        lambda g, i, j: g.lead + (g.p - i) * g.wp + (g.p - j),  # the kernel flipped: a convolution, not a correlation
        lambda g, i, j: g.lead + (i - g.p) * g.w + (j - g.p),  # rows strided without their padding column
    ],
    ids=["flipped", "row-stride"],
)
def test_conv_definition_check_catches_a_wrong_layout(monkeypatch, offset):
    """The check above can fail: im2col rows read from the wrong flat positions."""
    monkeypatch.setattr(layers._Grid, "offset", offset)
    assert max(max(_conv_errors(shape, np.random.default_rng(0))) for shape in CONV_EDGE_SHAPES) > 1e-3


def test_maxpool_by_hand_first_maximum_wins():
    x = np.array([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]], dtype=float)[None, None]
    out, cache = layers.maxpool_forward(x)  # 3x3, stride 2, pad 1: 2x2 outputs
    np.testing.assert_array_equal(out[0, 0], [[1, 1], [1, 1]])
    # windows (rows, cols): [-1..1]x[-1..1] -> (0,0); [-1..1]x[1..3] -> (0,2);
    # [1..3]x[-1..1] -> (1,1); [1..3]x[1..3] -> (1,1)
    np.testing.assert_array_equal(cache.index[0, 0], [[0, 2], [5, 5]])
    dx = layers.maxpool_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    expected = np.zeros((4, 4))
    expected[0, 0], expected[0, 2], expected[1, 1] = 1, 2, 3 + 4  # overlapping windows add up
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_cross_entropy_by_hand():
    logits = np.array([[0.0, 0.0], [1000.0, 0.0]])  # stable for huge logits
    loss, dlogits = layers.cross_entropy(logits, np.array([0, 0]))
    assert loss == pytest.approx(np.log(2) / 2, rel=1e-14)
    np.testing.assert_allclose(dlogits, [[-0.25, 0.25], [0.0, 0.0]], atol=1e-15)
    loss, _ = layers.cross_entropy(logits, np.array([0, 1]))
    assert loss == pytest.approx((np.log(2) + 1000) / 2, rel=1e-14)


small = st.floats(-2, 2, allow_nan=False, width=64)


@given(
    hnp.arrays(np.float64, (2, 2, 4, 3), elements=small),
    hnp.arrays(np.float64, (2, 2, 4, 3), elements=small),
    hnp.arrays(np.float64, (3, 2, 3, 3), elements=small),
    hnp.arrays(np.float64, (3, 2, 3, 3), elements=small),
    small,
    small,
)
def test_conv_is_bilinear(x1, x2, w1, w2, a, b):
    conv = lambda x, w: layers.conv_forward(x, w)[0]  # noqa: E731
    np.testing.assert_allclose(conv(a * x1 + b * x2, w1), a * conv(x1, w1) + b * conv(x2, w1), atol=1e-10)
    np.testing.assert_allclose(conv(x1, a * w1 + b * w2), a * conv(x1, w1) + b * conv(x1, w2), atol=1e-10)


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=6),
        elements=st.sampled_from([0.0, 1.0, 2.0, -1.5]),
    ),
    st.sampled_from([(3, 2, 1), (2, 2, 0), (3, 1, 1), (2, 1, 1)]),
)
def test_maxpool_is_the_window_maximum_and_routes_one_gradient(x, geometry):
    kernel, stride, padding = geometry
    assume(min(x.shape[2:]) + 2 * padding >= kernel)  # the window fits at least once
    out, cache = layers.maxpool_forward(x, kernel=kernel, stride=stride, padding=padding)
    h, w = x.shape[2:]
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    for a in range(out.shape[2]):
        for b in range(out.shape[3]):
            r0, c0 = a * stride - padding, b * stride - padding
            win = x[:, :, max(r0, 0) : r0 + kernel, max(c0, 0) : c0 + kernel]
            np.testing.assert_array_equal(out[:, :, a, b], win.max(axis=(2, 3)))
    idx = cache.index
    assert idx.min() >= 0 and idx.max() < h * w
    np.testing.assert_array_equal(
        np.take_along_axis(flat, idx.reshape(*idx.shape[:2], -1), -1), out.reshape(*out.shape[:2], -1)
    )  # the chosen input is a maximum
    dout = np.ones_like(out)
    dx = layers.maxpool_backward(dout, cache)
    assert dx.sum() == out.size  # exactly one input per output


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "x,weight,match",
    [
        (np.ones((2, 3, 4)), np.ones((2, 3, 3, 3)), r"x must have 4 axes"),
        (np.ones((2, 3, 4, 4)), np.ones((2, 3, 3)), r"weight must have 4 axes"),
        (np.ones((2, 3, 4, 4)), np.ones((2, 3, 2, 2)), r"weight must have an odd square kernel"),
        (np.ones((2, 3, 4, 4)), np.ones((2, 3, 3, 1)), r"weight must have an odd square kernel"),
        (np.ones((2, 3, 4, 4)), np.ones((2, 4, 3, 3)), r"weight has C_in = 4 .* x has 3"),
        (np.full((1, 1, 3, 3), np.nan), np.ones((1, 1, 3, 3)), r"x must be finite"),
        (np.ones((1, 1, 3, 3)), np.full((1, 1, 3, 3), np.inf), r"weight must be finite"),
    ],
)
def test_conv_bad_input(x, weight, match):
    with pytest.raises(ValueError, match=match):
        layers.conv_forward(x, weight)


def test_bad_dout_shape():
    _, cache = layers.conv_forward(np.ones((1, 2, 3, 3)), np.ones((4, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"dout must have shape \(1, 4, 3, 3\)"):
        layers.conv_backward(np.ones((1, 2, 3, 3)), cache)
    _, cache = layers.maxpool_forward(np.ones((1, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"dout must have shape"):
        layers.maxpool_backward(np.ones((1, 1, 4, 4)), cache)
    _, cache = layers.mean_forward(np.ones((2, 3)), 0)
    with pytest.raises(ValueError, match=r"dout must be finite"):
        layers.mean_backward(np.array([1.0, np.nan, 0.0]), cache)


GOOD_BN = dict(gamma=np.ones(3), beta=np.zeros(3), running_mean=np.zeros(3), running_var=np.ones(3))


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(x=np.full((2, 3), np.nan)), r"x must be finite"),
        (dict(gamma=np.ones(4)), r"gamma must have shape \(3,\)"),
        (dict(beta=np.ones((3, 1))), r"beta must have shape \(3,\)"),
        (dict(running_mean=np.ones(2)), r"running_mean must have shape"),
        (dict(running_var=-np.ones(3)), r"running_var must be >= 0"),
        (dict(axis=2), r"axis=2 is out of range"),
        (dict(axis=1.0), r"axis must be an int"),
        (dict(training="yes"), r"training must be a bool"),
        (dict(momentum=1.5), r"momentum must be <= 1"),
        (dict(eps=0.0), r"eps must be > 0"),
        (dict(x=np.ones((1, 3))), r"x must have more than 1 value per channel"),
    ],
)
def test_batchnorm_bad_input(change, match):
    kw = dict(x=np.ones((2, 3)), **GOOD_BN, axis=1, training=True)
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        layers.batchnorm_forward(**kw)


def test_batchnorm_eval_accepts_a_single_value_per_channel():
    out, *_ = layers.batchnorm_forward(np.ones((1, 3)), **GOOD_BN, axis=1, training=False)
    np.testing.assert_allclose(out, 1 / np.sqrt(1 + 1e-5))


@pytest.mark.parametrize(
    "x,kw,match",
    [
        (np.ones((2, 4, 4)), {}, r"x must have 4 axes"),
        (np.ones((1, 1, 4, 4)), dict(kernel=3, padding=2), r"padding must be at most"),
        (np.ones((1, 1, 4, 4)), dict(kernel=0), r"kernel must be an integer >= 1"),
        (np.ones((1, 1, 4, 4)), dict(stride=0), r"stride must be an integer >= 1"),
        (np.ones((1, 1, 4, 4)), dict(stride=2.0), r"stride must be an integer"),
        (np.ones((1, 1, 1, 1)), dict(kernel=3, padding=0), r"x of shape .* smaller than the kernel"),
        (np.full((1, 1, 4, 4), -np.inf), {}, r"x must be finite"),
    ],
)
def test_maxpool_bad_input(x, kw, match):
    with pytest.raises(ValueError, match=match):
        layers.maxpool_forward(x, **kw)


@pytest.mark.parametrize(
    "x,weight,bias,match",
    [
        (np.ones((2, 4)), np.ones((3, 5)), None, r"weight has D_in = 5 .* x has 4"),
        (np.ones((2, 4)), np.ones((3, 4, 1)), None, r"weight must have 2 axes"),
        (np.ones((2, 4)), np.ones((3, 4)), np.ones(4), r"bias must have shape \(3,\)"),
        (np.array(1.0), np.ones((3, 4)), None, r"x must have at least 1 axes"),
        (np.ones((2, 4)), np.ones((3, 4)), np.array([0, np.nan, 0]), r"bias must be finite"),
    ],
)
def test_linear_bad_input(x, weight, bias, match):
    with pytest.raises(ValueError, match=match):
        layers.linear_forward(x, weight, bias)


@pytest.mark.parametrize(
    "axis,match",
    [
        (3, r"axis=3 is out of range"),
        ((0, 0), r"axis has repeated axes"),
        ((0, -3), r"axis has repeated axes"),
        (None, r"axis must be an int or a tuple of ints"),
        (True, r"axis must be an int"),
    ],
)
def test_mean_bad_axis(axis, match):
    with pytest.raises(ValueError, match=match):
        layers.mean_forward(np.ones((3, 2, 4)), axis)


@pytest.mark.parametrize(
    "logits,labels,kw,match",
    [
        (np.zeros((2, 3)), np.array([0, 3]), {}, r"labels must lie in \[0, 3\)"),
        (np.zeros((2, 3)), np.array([-1, 0]), {}, r"labels must lie in"),
        (np.zeros((2, 3)), np.array([0.0, 1.0]), {}, r"labels must be integer"),
        (np.zeros((2, 3)), np.array([0.5, 1.0]), {}, r"labels must be integer"),
        (np.zeros((2, 3)), np.array([0, 1, 2]), {}, r"labels must have shape \(2,\)"),
        (np.zeros(3), np.array([0]), {}, r"logits must have 2 axes"),
        (np.array([[0.0, np.inf]]), np.array([0]), {}, r"logits must be finite"),
        (np.array([[0.0, np.nan]]), np.array([0]), {}, r"logits must be finite"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), {}, r"logits must have at least one row"),
        (np.zeros((2, 3)), np.array([0, 1]), dict(label_smoothing=1.5), r"label_smoothing must be <= 1"),
        (np.zeros((2, 3)), np.array([0, 1]), dict(label_smoothing=-0.1), r"label_smoothing must be >= 0"),
    ],
)
def test_cross_entropy_bad_input(logits, labels, kw, match):
    with pytest.raises(ValueError, match=match):
        layers.cross_entropy(logits, labels, **kw)
