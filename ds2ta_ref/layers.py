"""The non-spiking layers of Spikformer/DS2TA as pure forward/backward pairs.

CS231n ``layers.py`` style: ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> grads``. Each matches a PyTorch layer (and is
cross-checked against it in float64 by ``tests/test_layers.py``):

==========================  ====================================================
``conv_forward``            ``torch.nn.Conv2d(C_in, C_out, k, padding=k//2, bias=False)``
                            (stride 1, odd square kernel; the model uses 3x3, padding 1)
``batchnorm_forward``       ``torch.nn.functional.batch_norm`` (``BatchNorm2d`` with
                            ``axis=1`` on ``(M, C, H, W)``; ``BatchNorm1d`` over
                            channels with ``axis=-1`` on tokens ``(T, B, N, D)``)
``maxpool_forward``         ``torch.nn.MaxPool2d(3, stride=2, padding=1)``, same
                            tie-breaking (first maximum in row-major window order)
``linear_forward``          ``torch.nn.Linear`` (weight ``(D_out, D_in)``)
``mean_forward``            ``Tensor.mean(dim)``
``cross_entropy``           ``torch.nn.functional.cross_entropy(label_smoothing=...)``
                            with ``reduction="mean"``
==========================  ====================================================

Shapes: conv and pooling take ``(M, C, H, W)`` with ``M = T*B`` (time and
batch flattened, time-major); linear layers act on the last axis of any shape,
e.g. tokens ``(T, B, N, D)``. float32 inputs give float32 outputs and
gradients, float64 give float64 (NumPy's promotion decides for mixed inputs).
All functions are pure: inputs are never modified, state (BatchNorm's running
statistics) goes in and comes out as arrays.

Every public function checks its arguments (and that arrays are finite);
each ``*_forward``/``*_backward`` has a public twin ``*_forward_unchecked``/``*_backward_unchecked``
that is the same computation without the checks, for a caller that has checked
its inputs once (the blocks, called by the model). Weight gradients are 2-D GEMMs over all rows (see
``rows_product``).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from . import parallel
from ._checks import as_float_array, check_finite_scalar, check_int, check_shape

__all__ = [
    "ConvCache",
    "conv_forward",
    "conv_backward",
    "BatchNormCache",
    "batchnorm_forward",
    "batchnorm_backward",
    "MaxPoolCache",
    "maxpool_forward",
    "maxpool_backward",
    "LinearCache",
    "linear_forward",
    "linear_backward",
    "MeanCache",
    "mean_forward",
    "mean_backward",
    "cross_entropy",
    # the same computations without argument checks, for a caller that checked once
    "conv_forward_unchecked",
    "conv_backward_unchecked",
    "batchnorm_forward_unchecked",
    "batchnorm_backward_unchecked",
    "maxpool_forward_unchecked",
    "maxpool_backward_unchecked",
    "linear_forward_unchecked",
    "linear_backward_unchecked",
    "rows_product",
]


def _check_ndim(arr: np.ndarray, ndim: int, name: str, what: str = "") -> None:
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes{what}, got shape {arr.shape}")


def _check_dout(dout, shape: tuple, dtype) -> np.ndarray:
    dout = as_float_array(dout, "dout")
    check_shape(dout, shape, "dout")
    return dout.astype(dtype, copy=False)


def _normalize_axes(axis, ndim: int, name: str) -> tuple[int, ...]:
    """``axis`` (an int or a tuple of ints, negatives allowed) as sorted non-negative axes."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in axes:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral):
            raise ValueError(f"{name} must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{name}={axis!r} is out of range for an array with {ndim} axes")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} has repeated axes: {axis!r}")
    return tuple(sorted(out))


def rows_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a.T @ b`` for ``a`` ``(n, p)`` and ``b`` ``(n, q)``: a weight gradient, a sum over
    the ``n`` rows (tokens or pixels). Evaluated as ``(b.T @ a).T`` when ``p <= q``: the
    same sums, but OpenBLAS runs a long shared axis up to several times faster when
    the larger output dimension comes first. Returns a C-contiguous ``(p, q)`` array."""
    if a.shape[1] > b.shape[1]:
        return a.T @ b
    return np.ascontiguousarray((b.T @ a).T)


# --------------------------------------------------------------------------- conv


class ConvCache(NamedTuple):
    """Kept: the input ``x`` (a reference, no copy) and ``weight``, as PyTorch keeps them.
    The backward rebuilds the im2col matrix that ``dweight`` needs: keeping it would cost
    ``k*k`` times the input's memory for every convolution until the backward (on the
    ``tiny`` preset at batch 64, 44 of the 77 MB the forward keeps), and rebuilding it is a
    copy, split across the cores."""

    x: np.ndarray  # (M, C_in, H, W)
    weight: np.ndarray  # (C_out, C_in, k, k)

    @property
    def x_shape(self) -> tuple:  # the field of the same name that the cache had before it kept x
        return self.x.shape


class _Grid(NamedTuple):
    """The padded, flattened layout in which a ``k x k`` shift is a shift of a flat index.

    Every image row is followed by ``p = k//2`` zero columns and every image by ``p`` zero
    rows, so rows are ``wp = W + p`` long and images ``hp = H + p`` rows high; ``lead = p*wp + p``
    zeros come before the first image and after the last. Pixel ``(m, y, x)`` sits at flat
    position ``lead + (m*hp + y)*wp + x``, and the pixel ``(y + di, x + dj)`` (``|di|, |dj| <= p``)
    is ``di*wp + dj`` further on; where that falls off the image it lands on a zero, because
    the padding to the right of a row is the padding to the left of the next one, and the
    rows below an image are the rows above the next one. So the im2col row of offset
    ``(i, j)`` is one contiguous slice of every channel, ``flat[:, s : s + size]`` with
    ``s = lead + (i-p)*wp + (j-p)`` (:meth:`offset`), where ``size = M*hp*wp`` is the number
    of grid positions.

    The convolution is computed at every grid position, padding included, and the outputs
    at padding positions are dropped: ``hp*wp / (H*W)`` times the products (1.06 at 32x32,
    1.13 at 16x16, 1.27 at 8x8, 1.56 at 4x4), for im2col copies that are ``k*k`` contiguous
    slices instead of ``k*k`` shifted blocks with their uncovered borders zeroed: faster at
    every shape of the presets but the last of ``cifar10`` (docs/benchmark.md)."""

    m: int
    h: int
    w: int
    p: int

    @property
    def hp(self) -> int:
        return self.h + self.p

    @property
    def wp(self) -> int:
        return self.w + self.p

    @property
    def lead(self) -> int:
        return self.p * self.wp + self.p

    @property
    def size(self) -> int:
        return self.m * self.hp * self.wp

    def offset(self, i: int, j: int) -> int:
        """Where the im2col row of kernel offset ``(i, j)`` starts in the flat array."""
        return self.lead + (i - self.p) * self.wp + (j - self.p)

    def body(self, flat: np.ndarray) -> np.ndarray:
        """The grid positions ``(C, size)`` of a flat array ``(C, lead + size + lead)``, a view."""
        return flat[:, self.lead : self.lead + self.size]

    def images(self, body: np.ndarray) -> np.ndarray:
        """Grid positions ``(C, size)`` as a view ``(C, M, hp, wp)``; the pixels are ``[..., :H, :W]``."""
        return body.reshape(body.shape[0], self.m, self.hp, self.wp)


def _to_grid(x: np.ndarray, g: _Grid) -> np.ndarray:
    """``x`` ``(M, C, H, W)`` in the flat padded layout of ``g``: ``(C, lead + size + lead)``,
    zero everywhere but at the pixels; the images are split across threads."""
    c = x.shape[1]
    flat = np.zeros((c, g.lead + g.size + g.lead), dtype=x.dtype)
    grid, xc = g.images(g.body(flat)), x.transpose(1, 0, 2, 3)  # (C, M, hp, wp) and (C, M, H, W), views

    def copy(lo, hi):  # images lo .. hi-1
        grid[:, lo:hi, : g.h, : g.w] = xc[:, lo:hi]

    parallel.for_parts(g.m, copy, work=x.size)
    return flat


def _from_grid(y: np.ndarray, g: _Grid) -> np.ndarray:
    """The pixels of ``y`` ``(C, size)``, values at the grid positions, as a contiguous ``(M, C, H, W)``."""
    grid = g.images(y)  # (C, M, hp, wp), a view
    out = np.empty((g.m, y.shape[0], g.h, g.w), dtype=y.dtype)

    def copy(lo, hi):  # images lo .. hi-1
        out[lo:hi] = grid[:, lo:hi, : g.h, : g.w].transpose(1, 0, 2, 3)

    parallel.for_parts(g.m, copy, work=out.size)
    return out


def _im2col(flat: np.ndarray, k: int, g: _Grid) -> np.ndarray:
    """Lay every ``k x k`` patch of the padded images ``flat`` (:class:`_Grid`) out as a
    column: ``(C*k*k, size)``, contiguous, so that the convolution is one matmul.

    Row ``(c, i, j)`` is channel ``c`` shifted by ``(i - k//2, j - k//2)``::

        cols[c, i, j, q] = flat[c, q + offset(i, j)]      (q: a grid position)

    ``k*k`` slice copies, the grid positions split across threads."""
    c = flat.shape[0]
    cols = np.empty((c, k, k, g.size), dtype=flat.dtype)

    def fill(lo, hi):  # grid positions lo .. hi-1
        for i in range(k):
            for j in range(k):
                start = g.offset(i, j)
                cols[:, i, j, lo:hi] = flat[:, start + lo : start + hi]

    parallel.for_parts(g.size, fill, work=cols.size)
    return cols.reshape(c * k * k, g.size)


def conv_forward(x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, ConvCache]:
    """2-D convolution (cross-correlation), stride 1, zero padding ``k//2``, no bias::

        out[m, o, h, w] = sum_{c, i, j} weight[o, c, i, j] * xpad[m, c, h + i, w + j]

    Computed as one matmul of the flattened weight ``(C_out, C_in*k*k)`` with the
    im2col matrix ``(C_in*k*k, positions)`` of the padded images (:class:`_Grid`).

    Args:
        x: ``(M, C_in, H, W)``, ``M = T*B``.
        weight: ``(C_out, C_in, k, k)`` with ``k`` odd (torch layout).

    Returns:
        ``(out, cache)``: ``out`` of shape ``(M, C_out, H, W)``.
    """
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    _check_ndim(x, 4, "x", " (M, C_in, H, W)")
    _check_ndim(weight, 4, "weight", " (C_out, C_in, k, k)")
    c_out, c_in, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"weight must have an odd square kernel (k, k), got shape {weight.shape}")
    if c_in != x.shape[1]:
        raise ValueError(
            f"weight has C_in = {c_in} input channels (shape {weight.shape}) but x has {x.shape[1]} (shape {x.shape})"
        )
    return conv_forward_unchecked(x, weight)


def conv_forward_unchecked(x, weight):
    """:func:`conv_forward` without argument checks (``x`` ``(M, C_in, H, W)`` and
    ``weight`` ``(C_out, C_in, k, k)``, finite floats, ``k`` odd)."""
    c_out, _, k, _ = weight.shape
    m, _, h, w = x.shape
    g = _Grid(m, h, w, k // 2)
    out = weight.reshape(c_out, -1) @ _im2col(_to_grid(x, g), k, g)  # (C_out, C_in*k*k) @ (C_in*k*k, positions)
    return _from_grid(out, g), ConvCache(x, weight)  # (M, C_out, H, W)


def conv_backward(dout: np.ndarray, cache: ConvCache) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`conv_forward`.

    Args:
        dout: ``(M, C_out, H, W)``.
        cache: from :func:`conv_forward`.

    Returns:
        ``(dx, dweight)`` of shapes ``(M, C_in, H, W)`` and ``(C_out, C_in, k, k)``.
    """
    x, weight = cache
    m, _, h, w = x.shape
    dout = _check_dout(dout, (m, weight.shape[0], h, w), np.result_type(x, weight))
    return conv_backward_unchecked(dout, cache)


def conv_backward_unchecked(dout, cache):
    """:func:`conv_backward` without argument checks (``dout`` ``(M, C_out, H, W)`` in
    the compute dtype)."""
    x, weight = cache
    m, c_in, h, w = x.shape
    c_out, _, k, _ = weight.shape
    g = _Grid(m, h, w, k // 2)
    cols = _im2col(_to_grid(x, g), k, g)  # (C_in*k*k, positions), as the forward built it
    dout_flat = _to_grid(dout, g)  # (C_out, lead + positions + lead), zero at the padding
    dout_grid = g.body(dout_flat)  # (C_out, positions), a view
    # forward was: out = W_flat @ cols at every grid position (those on the padding dropped), so
    # now, with dout zero there:
    dweight = rows_product(dout_grid.T, cols.T).reshape(weight.shape)  # dout_grid @ cols^T: (C_out, C_in, k, k)
    del cols
    if c_out <= c_in:
        # dx = W_flat^T @ dout_grid scattered back over the k*k offsets (col2im) is the convolution
        # of dout with the kernel flipped in space and transposed in channels:
        #   dx[m, c, y, x] = sum_{o, i, j} weight[o, c, k-1-i, k-1-j] * doutpad[m, o, y + i, x + j]
        # computed as that convolution (im2col of dout, one matmul), a copy of C_out*k*k rows
        # instead of a scatter-add of C_in*k*k rows: faster unless C_out > C_in (measured).
        w_flip = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(c_in, c_out * k * k)  # small copy
        dx_grid = w_flip @ _im2col(dout_flat, k, g)  # (C_in, positions)
    else:
        dcols = (weight.reshape(c_out, -1).T @ dout_grid).reshape(c_in, k, k, g.size)  # W_flat^T @ dout_grid
        # col2im: row (c, i, j) of cols read the flat images at offset(i, j); add each back where it
        # was read, the centre first (it covers every grid position)
        dx_flat = np.empty((c_in, g.lead + g.size + g.lead), dtype=dcols.dtype)
        p = k // 2

        def scatter(lo, hi):  # channels lo .. hi-1
            part = dx_flat[lo:hi]
            part[:, : g.lead] = 0
            part[:, g.lead + g.size :] = 0
            part[:, g.lead : g.lead + g.size] = dcols[lo:hi, p, p]
            for i in range(k):
                for j in range(k):
                    if (i, j) != (p, p):
                        start = g.offset(i, j)
                        part[:, start : start + g.size] += dcols[lo:hi, i, j]

        parallel.for_parts(c_in, scatter, work=dcols.size)
        dx_grid = g.body(dx_flat)
    return _from_grid(dx_grid, g), dweight  # (M, C_in, H, W)


# --------------------------------------------------------------------- batchnorm


class BatchNormCache(NamedTuple):
    """Kept: the normalized input ``xhat`` and ``inv_std = 1/sqrt(var + eps)``
    (both broadcastable to ``x``); the means of the backward are recomputed."""

    xhat: np.ndarray  # shape of x
    inv_std: np.ndarray  # x.ndim axes, size C on the channel axis, 1 elsewhere
    gamma: np.ndarray  # same broadcast shape as inv_std
    reduce_axes: tuple[int, ...]  # every axis but the channel axis
    training: bool


def batchnorm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    *,
    axis: int,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, BatchNormCache]:
    """Batch normalization over every axis but the channel axis ``axis``::

        xhat = (x - mu) / sqrt(var + eps);   out = gamma * xhat + beta

    Training: ``mu`` and ``var`` are the batch statistics over the ``n`` values of
    each channel (biased variance), and the running statistics are updated as
    PyTorch does, with the *unbiased* variance::

        new_running_mean = (1 - momentum) * running_mean + momentum * mu
        new_running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)

    Eval (``training=False``): ``mu, var = running_mean, running_var``, returned
    unchanged (as copies). Nothing passed in is modified.

    Args:
        x: any shape with ``C`` channels on ``axis``: ``(M, C, H, W)`` with
           ``axis=1`` (BatchNorm2d, statistics over ``T*B, H, W``) or tokens
           ``(T, B, N, D)`` with ``axis=-1`` (BatchNorm1d over ``T*B, N``).
        gamma, beta: ``(C,)`` scale and shift.
        running_mean, running_var: ``(C,)`` running statistics (``running_var >= 0``).
        axis: the channel axis.
        training: batch statistics (True) or running statistics (False).
        momentum: weight of the new batch statistic, in [0, 1].
        eps: added to the variance, > 0.

    Returns:
        ``(out, new_running_mean, new_running_var, cache)``; ``out`` shaped like ``x``.
    """
    x = as_float_array(x, "x", min_ndim=1)
    (ax,) = _normalize_axes(axis, x.ndim, "axis")
    c = x.shape[ax]
    params = {}
    for name, value in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        params[name] = as_float_array(value, name)
        check_shape(params[name], (c,), name)
    if np.any(params["running_var"] < 0):
        raise ValueError("running_var must be >= 0")
    if not isinstance(training, (bool, np.bool_)):
        raise ValueError(f"training must be a bool, got {training!r}")
    momentum = check_finite_scalar(momentum, "momentum", minimum=0.0)
    if momentum > 1:
        raise ValueError(f"momentum must be <= 1, got {momentum!r}")
    eps = check_finite_scalar(eps, "eps", minimum=0.0, strict=True)
    if training and x.size // c < 2:
        raise ValueError(f"x must have more than 1 value per channel in training mode, got shape {x.shape}")
    return batchnorm_forward_unchecked(
        x,
        params["gamma"],
        params["beta"],
        params["running_mean"],
        params["running_var"],
        ax,
        bool(training),
        momentum,
        eps,
    )


def _for_slices(x: np.ndarray, ax: int, fn) -> None:
    """Call ``fn(part)`` with index tuples ``part`` that split ``x`` along its first axis
    other than the channel axis ``ax`` (:func:`ds2ta_ref.parallel.for_parts`): for the
    elementwise passes of BatchNorm, whose reductions stay whole (so the numbers do not
    depend on the number of threads). An ``x`` of channels only (1-D) is one part."""
    if x.ndim == 1:
        fn((slice(None),))
        return
    split = 1 if ax == 0 else 0
    before = (slice(None),) * split
    parallel.for_parts(x.shape[split], lambda lo, hi: fn((*before, slice(lo, hi))), work=x.size)


def batchnorm_forward_unchecked(x, gamma, beta, running_mean, running_var, ax, training, momentum, eps):
    """:func:`batchnorm_forward` without argument checks: ``x`` a finite float array,
    the four parameters finite ``(C,)`` arrays for ``C = x.shape[ax]``, ``ax`` a
    non-negative axis, ``momentum`` in [0, 1], ``eps > 0``, and in training more
    than one value per channel.

    Two full-size arrays are allocated, ``xhat`` (kept for the backward) and
    ``out``; the rest happens in place in them. The elementwise passes are split
    across threads (:func:`_for_slices`), the two reductions are not.
    """
    c = x.shape[ax]
    bshape = tuple(c if a == ax else 1 for a in range(x.ndim))  # broadcast to x: C on axis
    reduce_axes = tuple(a for a in range(x.ndim) if a != ax)
    gamma_b = gamma.reshape(bshape)
    beta_b = beta.reshape(bshape)
    if training:
        n = x.size // c  # values per channel
        mu = x.mean(axis=reduce_axes, keepdims=True)  # bshape
        xhat = np.empty(x.shape, np.result_type(x, mu))  # x - mu for now, normalized below
        out = np.empty(x.shape, np.result_type(xhat, gamma, beta))  # also scratch for (x - mu)^2
        squares = out if out.dtype == xhat.dtype else np.empty(x.shape, xhat.dtype)

        def centre(part):
            np.subtract(x[part], mu, out=xhat[part])
            np.square(xhat[part], out=squares[part])

        _for_slices(x, ax, centre)
        var = squares.mean(axis=reduce_axes, keepdims=True)  # bshape, biased
        new_mean = (1 - momentum) * running_mean + momentum * mu.reshape(c)
        new_var = (1 - momentum) * running_var + momentum * var.reshape(c) * (n / (n - 1))
    else:
        mu = running_mean.reshape(bshape)
        var = running_var.reshape(bshape)
        xhat = np.empty(x.shape, np.result_type(x, mu))
        out = np.empty(x.shape, np.result_type(xhat, gamma, beta))
        _for_slices(x, ax, lambda part: np.subtract(x[part], mu, out=xhat[part]))
        new_mean = running_mean.copy()
        new_var = running_var.copy()
    inv_std = 1.0 / np.sqrt(var + eps)  # bshape

    def normalize(part):
        xhat[part] *= inv_std  # xhat = (x - mu) / sqrt(var + eps)
        np.multiply(gamma_b, xhat[part], out=out[part])
        out[part] += beta_b  # out = gamma * xhat + beta

    _for_slices(x, ax, normalize)
    return out, new_mean, new_var, BatchNormCache(xhat, inv_std, gamma_b, reduce_axes, training)


def batchnorm_backward(dout: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`batchnorm_forward` (the running statistics carry none).

    Training mode (``mu``, ``var`` depend on ``x``; means over the reduced axes)::

        dxhat = dout * gamma
        dx    = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))

    Eval mode (an affine map): ``dx = dout * gamma * inv_std``.

    Args:
        dout: shaped like the forward's ``x``.
        cache: from :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)``: ``dx`` shaped like ``x``; ``dgamma``, ``dbeta`` ``(C,)``.
    """
    xhat, inv_std, gamma, axes, training = cache
    dtype = np.result_type(xhat, inv_std, gamma)
    dout = _check_dout(dout, xhat.shape, dtype)
    return batchnorm_backward_unchecked(dout, cache)


def batchnorm_backward_unchecked(dout, cache):
    """:func:`batchnorm_backward` without argument checks (``dout`` shaped like ``x``,
    in the cache's dtype). One full-size array is allocated: ``dx``. The elementwise
    passes are split across threads, the two sums are not.

    With ``n`` values per channel, ``mean(dxhat) = gamma * sum(dout) / n = gamma * dbeta / n``
    and ``mean(dxhat * xhat) = gamma * dgamma / n``, so the training formula is::

        dx = gamma * inv_std * (dout - dbeta / n - xhat * dgamma / n)
    """
    xhat, inv_std, gamma, axes, training = cache
    c = gamma.size
    n = xhat.size // c  # values per channel
    ax = next(a for a in range(xhat.ndim) if a not in axes)
    # forward was: out = gamma * xhat + beta, so now:
    dbeta = dout.sum(axis=axes, keepdims=True)  # bshape
    dx = np.empty(xhat.shape, np.result_type(dout, xhat))  # dout * xhat for now
    _for_slices(xhat, ax, lambda part: np.multiply(dout[part], xhat[part], out=dx[part]))
    dgamma = dx.sum(axis=axes, keepdims=True)  # bshape
    scale = gamma * inv_std
    # forward was: xhat = (x - mu) * inv_std, with mu and var batch statistics in training
    if training:
        dgamma_n, dbeta_n = dgamma / n, dbeta / n

        def chain(part):
            np.multiply(xhat[part], dgamma_n, out=dx[part])
            np.subtract(dout[part], dx[part], out=dx[part])
            dx[part] -= dbeta_n  # dout - dbeta/n - xhat dgamma/n
            dx[part] *= scale

    else:  # an affine map: dx = dout * gamma * inv_std

        def chain(part):
            np.multiply(dout[part], scale, out=dx[part])

    _for_slices(xhat, ax, chain)
    return dx, dgamma.reshape(c), dbeta.reshape(c)


# ----------------------------------------------------------------------- maxpool


class MaxPoolCache(NamedTuple):
    """Kept: for each output, which offset ``i*kernel + j`` of its window (row-major)
    it took its value from, as a small unsigned integer, and the geometry; the
    backward turns it into :attr:`index`, the flat position (into ``H*W``) of that input."""

    arg: np.ndarray  # (M, C, H_out, W_out) uint8 (uint16 for kernel > 16), the winning offset
    x_shape: tuple[int, int, int, int]  # (M, C, H, W)
    dtype: np.dtype
    kernel: int
    stride: int
    padding: int

    @property
    def index(self) -> np.ndarray:  # type: ignore[override]  # shadows tuple.index: a NamedTuple cache, never searched
        """``(M, C, H_out, W_out)`` int64: the winner's flat index ``row * W + col`` in ``x``,
        with ``row = a*stride - padding + n // kernel`` and ``col = b*stride - padding + n % kernel``
        for output ``(a, b)`` and winning offset ``n``."""
        k, s, p = self.kernel, self.stride, self.padding
        w = self.x_shape[3]
        h_out, w_out = self.arg.shape[2:]
        n = np.arange(k * k)
        offset = (n // k) * w + n % k  # (k*k,) flat offset of window entry n from its corner
        corner = (np.arange(h_out)[:, None] * s - p) * w + np.arange(w_out) * s - p  # (H_out, W_out)
        index = offset[self.arg]  # (M, C, H_out, W_out) int64
        index += corner
        return index


def maxpool_forward(
    x: np.ndarray, *, kernel: int = 3, stride: int = 2, padding: int = 1
) -> tuple[np.ndarray, MaxPoolCache]:
    """2-D max pooling with ``-inf`` padding, as ``torch.nn.MaxPool2d(kernel, stride, padding)``::

        H_out = floor((H + 2 padding - kernel) / stride) + 1      (same for W)
        out[m, c, a, b] = max_{i, j < kernel} xpad[m, c, a*stride + i, b*stride + j]

    Ties (everywhere with binary spikes) go to the *first* maximum of the window
    in row-major order, which is what PyTorch's CPU kernel keeps (it replaces
    only on a strictly greater value): the backward routes each output's
    gradient to that single input.

    Args:
        x: ``(M, C, H, W)``.
        kernel, stride: window size and step (>= 1).
        padding: on each side, ``0 <= padding <= kernel // 2`` (PyTorch's rule).

    Returns:
        ``(out, cache)``: ``out`` of shape ``(M, C, H_out, W_out)``.
    """
    x = as_float_array(x, "x")
    _check_ndim(x, 4, "x", " (M, C, H, W)")
    kernel = check_int(kernel, "kernel", minimum=1)
    stride = check_int(stride, "stride", minimum=1)
    padding = check_int(padding, "padding", minimum=0)
    if padding > kernel // 2:
        raise ValueError(f"padding must be at most kernel // 2 = {kernel // 2}, got {padding}")
    m, c, h, w = x.shape
    if h + 2 * padding < kernel or w + 2 * padding < kernel:
        raise ValueError(f"x of shape {x.shape} is smaller than the kernel {kernel} after padding")
    return maxpool_forward_unchecked(x, kernel, stride, padding)


def maxpool_forward_unchecked(x, kernel, stride, padding):
    """:func:`maxpool_forward` without argument checks (``x`` a finite float ``(M, C, H, W)``
    at least ``kernel`` wide after padding, ``0 <= padding <= kernel // 2``)."""
    m, c, h, w = x.shape
    p, k, s = padding, kernel, stride
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)  # (M, C, H+2p, W+2p)
    h_out, w_out = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def window_entry(n):  # (M, C, H_out, W_out) view: entry n = i*k + j of every window
        i, j = divmod(n, k)
        return xp[:, :, i : i + s * (h_out - 1) + 1 : s, j : j + s * (w_out - 1) + 1 : s]

    out = np.empty((m, c, h_out, w_out), dtype=x.dtype)  # running maximum
    arg = np.empty(out.shape, dtype=np.uint8 if k * k <= 256 else np.uint16)  # offset of the running max

    def pool(lo, hi):  # images lo .. hi-1
        out_, arg_ = out[lo:hi], arg[lo:hi]
        out_[...] = window_entry(0)[lo:hi]
        arg_[...] = 0
        greater = np.empty(out_.shape, dtype=bool)
        step = np.empty(out_.shape, dtype=arg.dtype)
        for n in range(1, k * k):  # row-major window order
            entry = window_entry(n)[lo:hi]
            # Replace only on a strictly greater value, so that ties keep the first maximum.
            np.greater(entry, out_, out=greater)
            np.maximum(out_, entry, out=out_)
            # arg = n where greater, else unchanged. Every offset recorded so far is < n, so
            # this is max(arg, n * greater): two cheap passes instead of a masked copy.
            np.multiply(greater, step.dtype.type(n), out=step)
            np.maximum(arg_, step, out=arg_)

    parallel.for_parts(m, pool, work=out.size * k * k)
    return out, MaxPoolCache(arg, x.shape, x.dtype, k, s, p)


def maxpool_backward(dout: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    """Gradient of :func:`maxpool_forward`: each output's gradient goes to the one
    input it selected; overlapping windows accumulate.

    Args:
        dout: ``(M, C, H_out, W_out)``.
        cache: from :func:`maxpool_forward`.

    Returns:
        ``dx`` of shape ``(M, C, H, W)``.
    """
    dout = _check_dout(dout, cache.arg.shape, cache.dtype)
    return maxpool_backward_unchecked(dout, cache)


def maxpool_backward_unchecked(dout, cache):
    """:func:`maxpool_backward` without argument checks (``dout`` shaped like the output)."""
    m, c, h, w = cache.x_shape
    dx = np.zeros((m, c, h * w), dtype=cache.dtype)  # (M, C, H*W)
    index = cache.index.reshape(m, c, -1)  # (M, C, H_out*W_out), into H*W
    plane = np.arange(m * c).reshape(m, c, 1) * (h * w)  # (M, C, 1) offset of each image in dx
    # dx[m, c, index[m, c, o]] += dout[m, c, o], adding up where windows overlap
    np.add.at(dx.reshape(-1), (index + plane).reshape(-1), dout.reshape(-1))
    return dx.reshape(m, c, h, w)


# ------------------------------------------------------------------------ linear


class LinearCache(NamedTuple):
    """Kept: the input ``x`` and ``weight``; nothing is recomputed."""

    x: np.ndarray  # (..., D_in)
    weight: np.ndarray  # (D_out, D_in)
    has_bias: bool


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, LinearCache]:
    """Affine map on the last axis, ``out = x @ weight.T + bias`` (``torch.nn.Linear``).

    Args:
        x: ``(..., D_in)``, e.g. tokens ``(T, B, N, D)``.
        weight: ``(D_out, D_in)``.
        bias: ``(D_out,)`` or ``None``.

    Returns:
        ``(out, cache)``: ``out`` of shape ``(..., D_out)``.
    """
    x = as_float_array(x, "x", min_ndim=1, what=" (..., D_in)")
    weight = as_float_array(weight, "weight")
    _check_ndim(weight, 2, "weight", " (D_out, D_in)")
    if weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"weight has D_in = {weight.shape[1]} (shape {weight.shape}) "
            f"but x has {x.shape[-1]} features (shape {x.shape})"
        )
    if bias is not None:
        bias = as_float_array(bias, "bias")
        check_shape(bias, (weight.shape[0],), "bias")
    return linear_forward_unchecked(x, weight, bias)


def linear_forward_unchecked(x, weight, bias):
    """:func:`linear_forward` without argument checks (``x`` ``(..., D_in)``, ``weight``
    ``(D_out, D_in)``, ``bias`` ``(D_out,)`` or ``None``, finite floats)."""
    out = x.reshape(-1, x.shape[-1]) @ weight.T  # (rows, D_out): one 2-D GEMM
    if bias is not None:
        # in place unless the bias's dtype would widen the result (mixed inputs promote as NumPy does)
        out = np.add(out, bias, out=out if np.result_type(out, bias) == out.dtype else None)
    return out.reshape(x.shape[:-1] + (weight.shape[0],)), LinearCache(x, weight, bias is not None)


def linear_backward(dout: np.ndarray, cache: LinearCache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of :func:`linear_forward`.

    Args:
        dout: ``(..., D_out)``.
        cache: from :func:`linear_forward`.

    Returns:
        ``(dx, dweight, dbias)`` of shapes ``(..., D_in)``, ``(D_out, D_in)``,
        ``(D_out,)`` (``dbias`` is ``None`` when the forward had no bias).
    """
    x, weight, has_bias = cache
    d_out, d_in = weight.shape
    dout = _check_dout(dout, x.shape[:-1] + (d_out,), np.result_type(x, weight))
    return linear_backward_unchecked(dout, cache)


def linear_backward_unchecked(dout, cache):
    """:func:`linear_backward` without argument checks (``dout`` ``(..., D_out)`` in
    the compute dtype)."""
    x, weight, has_bias = cache
    d_out, d_in = weight.shape
    dout2 = dout.reshape(-1, d_out)  # (rows, D_out), rows = prod(...)
    dx = (dout2 @ weight).reshape(x.shape)  # (..., D_in); 2-D matmuls are one BLAS call
    dweight = rows_product(dout2, x.reshape(-1, d_in))  # dout2^T @ x: (D_out, D_in), sums over every row
    dbias = dout2.sum(axis=0) if has_bias else None  # (D_out,)
    return dx, dweight, dbias


# -------------------------------------------------------------------------- mean


class MeanCache(NamedTuple):
    """Kept: the input's shape, dtype and the reduced axes; nothing else is needed."""

    shape: tuple[int, ...]
    axes: tuple[int, ...]
    dtype: np.dtype


def mean_forward(x: np.ndarray, axis) -> tuple[np.ndarray, MeanCache]:
    """Mean over ``axis`` (an int or a tuple of ints), as ``x.mean(dim)`` in torch.

    The head uses it twice: the mean over tokens (``axis=2``, ``(T, B, N, D) -> (T, B, D)``),
    then over time (``axis=0``, ``-> (B, D)``).

    Returns:
        ``(out, cache)``: ``out`` has the reduced axes removed.
    """
    x = as_float_array(x, "x", min_ndim=1)
    axes = _normalize_axes(axis, x.ndim, "axis")
    return x.mean(axis=axes), MeanCache(x.shape, axes, x.dtype)


def mean_backward(dout: np.ndarray, cache: MeanCache) -> np.ndarray:
    """Gradient of :func:`mean_forward`: ``dout`` spread evenly, ``dx = dout / n``
    broadcast back over the ``n`` averaged entries.

    Returns:
        ``dx`` shaped like the forward's ``x``.
    """
    shape, axes, dtype = cache
    kept = tuple(s for a, s in enumerate(shape) if a not in axes)
    dout = _check_dout(dout, kept, dtype)
    n = int(np.prod([shape[a] for a in axes]))
    # a fresh, C-ordered array: astype's default order "K" would keep the broadcast's strides, and
    # every later pass over dx (the residual adds of each block's backward) would run strided
    return np.broadcast_to(np.expand_dims(dout, axes) / n, shape).astype(dtype, order="C")


# ----------------------------------------------------------------- cross-entropy


def cross_entropy(logits: np.ndarray, labels: np.ndarray, *, label_smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy with label smoothing, and its gradient.

    With ``K`` classes, smoothing ``eps`` and target distribution
    ``q = (1 - eps) * onehot(label) + eps / K`` (PyTorch's definition)::

        log p = logits - logsumexp(logits)          (stable: max subtracted first)
        loss  = mean_b  sum_k -q[b, k] * log p[b, k]
        dlogits = (softmax(logits) - q) / B

    Args:
        logits: ``(B, K)``, finite.
        labels: ``(B,)`` integer class indices in ``[0, K)``. An integer dtype is
            required (float class indices are rejected: PyTorch reads float
            targets as probabilities).
        label_smoothing: ``eps`` in [0, 1].

    Returns:
        ``(loss, dlogits)``: the loss as a Python float, ``dlogits`` ``(B, K)``.
    """
    logits = as_float_array(logits, "logits")
    _check_ndim(logits, 2, "logits", " (B, classes)")
    b, k = logits.shape
    if b == 0 or k == 0:
        raise ValueError(f"logits must have at least one row and one class, got shape {logits.shape}")
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    check_shape(labels, (b,), "labels")
    if np.any(labels < 0) or np.any(labels >= k):
        raise ValueError(f"labels must lie in [0, {k}), got values in [{labels.min()}, {labels.max()}]")
    eps = check_finite_scalar(label_smoothing, "label_smoothing", minimum=0.0)
    if eps > 1:
        raise ValueError(f"label_smoothing must be <= 1, got {eps!r}")

    z = logits - logits.max(axis=1, keepdims=True)  # (B, K), max entry 0
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (B, K) log-softmax
    q = np.full_like(logits, eps / k)  # (B, K) smoothed target
    q[np.arange(b), labels] += 1 - eps
    loss = float(-(q * logp).sum() / b)
    dlogits = (np.exp(logp) - q) / b  # (B, K)
    return loss, dlogits
