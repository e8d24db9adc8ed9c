"""Property tests (Hypothesis) at block and model level.

* batch-permutation equivariance in eval mode: permuting the samples permutes the outputs
  (each sample is computed alone once BatchNorm uses its running statistics);
* causality in time: in eval mode the attention maps (and scores) at step ``t`` of every block,
  and a block's output at ``t``, depend only on the inputs at steps ``<= t``;
* BatchNorm statistics do not depend on the order of the batch (training mode);
* direct encoding: static images and the same images repeated ``T`` times as frames give the
  same logits, state and gradients, bit for bit;
* eval mode leaves the running statistics untouched.

Each property is a checker function; a deliberately broken variant shows each checker can fail.
Small shapes (8x8 images, 4 tokens, ``T = 3``) keep the whole file to a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ds2ta_ref import bnlif, layers, mlp, model
from ds2ta_ref.gradcheck import firing_model_inputs, small_model_config
from ds2ta_ref.params import sub

CFG = small_model_config(T=3)  # 8x8 images -> 4 tokens, two blocks, TASA window 2, NSAD
SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = dict(rtol=1e-10, atol=1e-10)  # float64; GEMMs over other row orders may round differently


def _inputs(seed, batch=4):
    """Firing parameters, images, and running statistics that are the batch statistics of a
    training step on other images (so that eval mode fires as training mode does)."""
    rng = np.random.default_rng(seed)
    params, state, x = firing_model_inputs(CFG, rng, batch=batch)
    other = rng.uniform(0, 1, x.shape)
    _, state, _ = model.forward(other, params, state, CFG.replace(bn_momentum=1.0), training=True, need_backward=False)
    return params, state, x, rng


# ----------------------------------------------------------------------------- checkers


def check_permutation_equivariance(f, x, perm, axis):
    """``f(x permuted along axis) == f(x) permuted along axis``."""
    out, out_perm = f(x), f(np.take(x, perm, axis=axis))
    np.testing.assert_allclose(out_perm, np.take(out, perm, axis=axis), **TOL)


def check_causal(f, frames, t0, rng):
    """``f(frames)[:t0]`` unchanged when the frames at steps ``>= t0`` change (time on axis 0)."""
    changed = frames.copy()
    changed[t0:] = rng.uniform(0, 1, changed[t0:].shape)
    np.testing.assert_allclose(f(changed)[:t0], f(frames)[:t0], **TOL)


def check_order_independent(f, x, perm, axis):
    """``f`` (a statistic of the batch) is the same for the batch in any order."""
    a, b = f(x), f(np.take(x, perm, axis=axis))
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- batch-permutation equivariance


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), perm=st.permutations(range(4)))
def test_model_is_batch_permutation_equivariant_in_eval_mode(seed, perm):
    params, state, x, _ = _inputs(seed)

    def logits(x):
        return model.forward(x, params, state, CFG, training=False, need_backward=False)[0]

    check_permutation_equivariance(logits, x, list(perm), axis=0)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), perm=st.permutations(range(4)))
def test_mlp_block_is_batch_permutation_equivariant_in_eval_mode(seed, perm):
    params, state, _, rng = _inputs(seed)
    x = rng.integers(0, 3, (CFG.T, 4, CFG.num_tokens, CFG.dim)).astype(float)  # (T, B, N, D) residual stream

    def out(x):
        return mlp.forward(x, sub(params, "block.0.mlp"), sub(state, "block.0.mlp"), CFG, training=False)[0]

    check_permutation_equivariance(out, x, list(perm), axis=1)


def test_permutation_check_rejects_a_model_that_mixes_the_batch():
    """Training mode normalizes with statistics of the whole batch: still equivariant. A model that
    adds the first sample's logits to every row is not, and the checker says so."""
    params, state, x, _ = _inputs(0)

    def broken(x):
        logits = model.forward(x, params, state, CFG, training=False, need_backward=False)[0]
        return logits + logits[:1]

    with pytest.raises(AssertionError):
        check_permutation_equivariance(broken, x, [1, 0, 3, 2], axis=0)


# ----------------------------------------------------------------------------- causality in time


def _maps(params, state, training):
    def f(frames):  # (T, B, C, H, W) -> (T, ...) every block's scores and maps, stacked on a new axis
        _, _, cache = model.forward(frames, params, state, CFG, training=training, need_backward=False)
        return np.stack(
            [np.stack([S, A]) for S, A in zip(cache.record.scores, cache.record.attention_maps)], axis=1
        )  # (2, depth, T, B, H, N, N)

    return lambda frames: np.moveaxis(f(frames), 2, 0)  # (T, 2, depth, B, H, N, N)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), t0=st.integers(1, CFG.T - 1))
def test_model_is_causal_in_time_in_eval_mode(seed, t0):
    params, state, x, rng = _inputs(seed, batch=2)
    frames = np.stack([x * rng.uniform(0.5, 1.5) for _ in range(CFG.T)])  # (T, B, C, H, W), steps differ
    f = _maps(params, state, training=False)
    assert np.any(f(frames)[:t0])  # not vacuous: the early maps are not all zero
    check_causal(f, frames, t0, rng)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), t0=st.integers(1, CFG.T - 1))
def test_attention_and_mlp_blocks_are_causal_in_time(seed, t0):
    from ds2ta_ref import attention

    params, state, _, rng = _inputs(seed, batch=2)
    x = rng.integers(0, 3, (CFG.T, 2, CFG.num_tokens, CFG.dim)).astype(float)  # (T, B, N, D)
    for block, prefix in ((attention, "block.1.attn"), (mlp, "block.1.mlp")):

        def out(x, block=block, prefix=prefix):
            return block.forward(x, sub(params, prefix), sub(state, prefix), CFG, training=False)[0]

        check_causal(out, x, t0, rng)


def test_causality_check_rejects_training_mode_batchnorm():
    """Training-mode BatchNorm normalizes with statistics over all T*B rows, so the future leaks
    into the past: the same checker rejects it."""
    params, state, x, rng = _inputs(1, batch=2)
    frames = np.stack([x * s for s in (0.6, 1.0, 1.4)])
    with pytest.raises(AssertionError):
        check_causal(_maps(params, state, training=True), frames, 1, rng)


# ----------------------------------------------------------------------------- BatchNorm statistics and batch order


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), perm=st.permutations(range(5)))
def test_batchnorm_statistics_do_not_depend_on_batch_order(seed, perm):
    rng = np.random.default_rng(seed)
    C = 6
    x = rng.standard_normal((3, 5, 4, C)) * rng.uniform(0.5, 3, C) + rng.standard_normal(C)  # (T, B, N, C)
    params = {"weight": rng.uniform(0.5, 1.5, C), "bias": rng.standard_normal(C)}
    state = {
        "running_mean": rng.standard_normal(C),
        "running_var": rng.uniform(0.5, 2, C),
        "num_batches_tracked": np.array(3),
    }

    def stats(x):
        _, new_state, _ = bnlif.forward(x, params, state, CFG, training=True)
        return new_state

    check_order_independent(stats, x, list(perm), axis=1)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), perm=st.permutations(range(4)))
def test_model_batchnorm_state_does_not_depend_on_batch_order(seed, perm):
    params, state, x, _ = _inputs(seed)

    def new_state(x):
        return model.forward(x, params, state, CFG, training=True, need_backward=False)[1]

    check_order_independent(new_state, x, list(perm), axis=0)


def test_order_check_rejects_statistics_of_the_first_sample():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 6))

    def first_sample_mean(x):  # a BatchNorm bug: the statistics of one sample, not of the batch
        _, mean, var, _ = layers.batchnorm_forward_unchecked(
            x[:, :1], np.ones(6), np.zeros(6), np.zeros(6), np.ones(6), 3, True, 0.1, 1e-5
        )
        return {"running_mean": mean, "running_var": var}

    with pytest.raises(AssertionError):
        check_order_independent(first_sample_mean, x, [4, 3, 2, 1, 0], axis=1)


# ----------------------------------------------------------------------------- direct encoding, eval state


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), training=st.booleans())
def test_static_images_equal_the_same_frames_repeated(seed, training):
    params, state, x, rng = _inputs(seed, batch=2)
    frames = np.repeat(x[None], CFG.T, axis=0)  # (T, B, C, H, W)
    a_logits, a_state, a_cache = model.forward(x, params, state, CFG, training=training)
    b_logits, b_state, b_cache = model.forward(frames, params, state, CFG, training=training)
    dlogits = rng.standard_normal(a_logits.shape)
    (a_dx, a_grads), (b_dx, b_grads) = model.backward(dlogits, a_cache), model.backward(dlogits, b_cache)
    assert np.array_equal(a_logits, b_logits)
    assert all(np.array_equal(a_state[k], b_state[k]) for k in a_state)
    assert all(np.array_equal(a_grads[k], b_grads[k]) for k in a_grads)
    np.testing.assert_allclose(a_dx, b_dx.sum(axis=0), **TOL)  # static: the sum over the repeated frames


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_eval_mode_leaves_the_running_statistics_untouched(seed):
    params, state, x, _ = _inputs(seed, batch=2)
    _, new_state, _ = model.forward(x, params, state, CFG, training=False)
    assert set(new_state) == set(state)
    assert all(np.array_equal(new_state[k], state[k]) for k in state)
    _, trained, _ = model.forward(x, params, state, CFG, training=True)  # the check can fail: training moves them
    assert any(not np.array_equal(trained[k], state[k]) for k in state)


def test_direct_encoding_check_can_fail_on_frames_that_differ():
    params, state, x, _ = _inputs(2, batch=2)
    same = np.repeat(x[None], CFG.T, axis=0)
    other = same * np.array([1.0, 0.5, 0.25])[:, None, None, None, None]  # the steps differ
    a = model.forward(x, params, state, CFG, training=False)[0]
    assert np.array_equal(a, model.forward(same, params, state, CFG, training=False)[0])
    assert not np.array_equal(a, model.forward(other, params, state, CFG, training=False)[0])
