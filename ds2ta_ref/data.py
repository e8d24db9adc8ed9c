"""Small data sets for training the reference on a CPU, and the batching helpers.

Two data sets, both tiny and fully reproducible from a seed:

* :func:`load_digits` -- scikit-learn's 8x8 handwritten digits (static images,
  the stand-in for CIFAR). The model sees them through *direct encoding*
  (docs/spec.md §4.1): the analog image is repeated ``T`` times and the first LIF of the
  patch splitter acts as the encoder.
* :func:`make_events` -- a procedurally generated DVS-like event stream (the
  stand-in for CIFAR10-DVS / DVS-Gesture) whose class is carried only by the
  *order* of the frames: no single frame says anything about the class, so a
  model must integrate over time to beat chance.

Arrays are sample-major as stored, ``(n, C, H, W)`` for static images and
``(n, T, C, H, W)`` for events; :func:`to_time_major` turns a batch into the
time-major ``(T, B, C, H, W)`` the model consumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ._checks import check_finite_scalar, check_int

__all__ = [
    "Dataset",
    "require_sklearn",
    "load_digits",
    "make_events",
    "DIRECTIONS",
    "stratified_split",
    "iterate_minibatches",
    "to_time_major",
    "random_shift",
]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of images and integer labels.

    ``train_x``: ``(n_train, C, H, W)`` float64 for static images, or
    ``(n_train, T, C, H, W)`` for event data; ``test_x`` the same with
    ``n_test``. ``train_y`` / ``test_y``: ``(n_train,)`` / ``(n_test,)`` int64
    in ``[0, num_classes)``.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    name: str
    description: str = field(default="")

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.ndim not in (4, 5):
                raise ValueError(f"{split}_x must be (n, C, H, W) or (n, T, C, H, W), got shape {x.shape}")
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(f"{split}_y must have shape ({len(x)},), got {y.shape}")
            if y.dtype != np.int64:
                raise ValueError(f"{split}_y must be int64, got {y.dtype}")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"{split}_y must lie in [0, {self.num_classes}), got [{y.min()}, {y.max()}]")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(
                f"train_x and test_x must share the sample shape, got {self.train_x.shape[1:]} "
                f"and {self.test_x.shape[1:]}"
            )

    @property
    def sample_shape(self) -> tuple:
        """``(C, H, W)`` for static images, ``(T, C, H, W)`` for events."""
        return tuple(self.train_x.shape[1:])

    @property
    def time_steps(self) -> int | None:
        """``T`` of event data; ``None`` for static images (any ``T`` may be chosen)."""
        return self.train_x.shape[1] if self.train_x.ndim == 5 else None

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, num_classes={self.num_classes}, sample_shape={self.sample_shape}, "
            f"n_train={len(self.train_y)}, n_test={len(self.test_y)})"
        )


def stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator):
    """Seeded stratified split of sample indices.

    In each class with ``n_c`` samples, ``round(test_fraction * n_c)`` indices
    chosen uniformly at random go to the test split and the rest to the train
    split, so the class proportions of both splits agree within one sample.
    Each returned index array is shuffled (classes interleaved).

    ``y``: ``(n,)`` integer labels. Returns ``(train_idx, test_idx)``, int64.
    """
    test_fraction = check_finite_scalar(test_fraction, "test_fraction", minimum=0.0, strict=True)
    if test_fraction >= 1.0:
        raise ValueError(f"test_fraction must be < 1, got {test_fraction!r}")
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx = rng.permutation(np.concatenate(train)).astype(np.int64)
    test_idx = rng.permutation(np.concatenate(test)).astype(np.int64)
    return train_idx, test_idx


def require_sklearn() -> None:
    """Raise ``ImportError`` naming the extra to install if scikit-learn (which ships the digits) is missing."""
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"needs scikit-learn, which ships the 8x8 digits and is not installed ({exc}); "
            f"install the 'digits' extra: pip install 'ds2ta_ref[digits]' (from a checkout: "
            f"pip install -e '.[digits]')"
        ) from None


def load_digits(*, seed: int = 0, test_fraction: float = 0.2, size: int = 16) -> Dataset:
    """scikit-learn's handwritten digits as ``(n, 1, size, size)`` images in ``[0, 1]``.

    The 1,797 8x8 grey-level images (pixel values 0..16) ship inside the
    scikit-learn wheel: nothing is downloaded. Preprocessing, in order:

    1. ``x / 16`` -> values in ``[0, 1]`` (float64);
    2. nearest-neighbour upsampling by the integer factor ``k = size // 8``
       (``np.kron`` with a ``k x k`` block of ones): every original pixel
       becomes a ``k x k`` block, so the values stay exactly the 17 original
       grey levels (bilinear zooming would invent new ones);
    3. a channel axis ``C = 1``;
    4. a stratified split (:func:`stratified_split`) drawn from
       ``np.random.default_rng(seed)``: the same ``seed`` gives the same split.

    Returns a :class:`Dataset` with 10 classes; ``train_x`` is
    ``(n_train, 1, size, size)`` with ``n_train + n_test = 1797``.
    Requires scikit-learn (``pip install "ds2ta_ref[digits]"``).
    """
    size = check_int(size, "size", minimum=8)
    if size % 8:
        raise ValueError(f"size must be a multiple of 8 (the digits are 8x8), got {size}")
    seed = check_int(seed, "seed", minimum=0)
    try:
        require_sklearn()
    except ImportError as exc:
        raise ImportError(f"load_digits {exc}") from None
    from sklearn.datasets import load_digits as _sklearn_digits

    raw = _sklearn_digits()
    x = raw.images.astype(np.float64) / 16.0  # (n, 8, 8) in [0, 1]
    k = size // 8
    x = np.kron(x, np.ones((1, k, k)))  # (n, size, size)
    x = x[:, None]  # (n, 1, size, size)
    y = raw.target.astype(np.int64)  # (n,)
    train_idx, test_idx = stratified_split(y, test_fraction, np.random.default_rng(seed))
    return Dataset(
        train_x=x[train_idx],
        train_y=y[train_idx],
        test_x=x[test_idx],
        test_y=y[test_idx],
        num_classes=10,
        name="digits",
        description=(
            f"scikit-learn 8x8 handwritten digits, scaled to [0, 1], nearest-upsampled to "
            f"{size}x{size}, 1 channel; stratified split test_fraction={test_fraction}, seed={seed}"
        ),
    )


# (dy, dx) per class: rows grow downwards, columns to the right.
DIRECTIONS = np.array(
    [
        (0, 1),  # 0 right
        (0, -1),  # 1 left
        (1, 0),  # 2 down
        (-1, 0),  # 3 up
        (1, 1),  # 4 down-right
        (1, -1),  # 5 down-left
        (-1, 1),  # 6 up-right
        (-1, -1),  # 7 up-left
    ],
    dtype=np.int64,
)


def make_events(
    *,
    n_per_class: int = 100,
    num_classes: int = 4,
    T: int = 8,
    size: int = 16,
    seed: int = 0,
    noise: float = 0.02,
    test_fraction: float = 0.2,
    object_size: int = 3,
    max_speed: int = 1,
) -> Dataset:
    """A DVS-like event data set whose class is the direction of motion.

    Each sample is ``(T, 2, size, size)`` of 0/1 floats (channel 0 = ON
    events, channel 1 = OFF events), generated from
    ``rng = np.random.default_rng(seed)`` as follows:

    1. labels: ``n_per_class`` samples of each class ``c``, moving in
       direction ``DIRECTIONS[c] = (dy, dx)``: 0 right, 1 left, 2 down, 3 up,
       then (``num_classes`` up to 8) 4 down-right, 5 down-left, 6 up-right,
       7 up-left;
    2. a start position ``(r0, c0)`` uniform on the ``size x size`` grid, a
       speed ``v`` uniform in ``{1, ..., max_speed}`` pixels per frame and a
       polarity ``p`` uniform in ``{0, 1}`` (0: a bright object, seen by the
       ON channel; 1: a dark object, seen by the OFF channel), per sample;
    3. at frame ``t`` the object is the ``object_size x object_size`` square
       whose top-left corner is ``(r0 + t*v*dy, c0 + t*v*dx) mod size``,
       wrapping around on a torus; the frame has an event (1) at every pixel
       of that square in channel ``p``, and nothing in channel ``1 - p``;
    4. background noise: every pixel of every frame and both channels gets
       an event independently with probability ``noise`` (OR-ed with the
       object's events, so values stay 0/1);
    5. a stratified split (:func:`stratified_split`) with the same ``rng``.

    Why only the order of the frames carries the class: the object's
    position in any one frame is uniform on the torus whatever its
    direction, its polarity is independent of the class, and the noise is
    class-independent, so every single frame has the same distribution for
    every class. Events are emitted where the object *is*, not ON at its
    leading edge and OFF at its trailing edge as a real DVS would do, since
    that edge pattern would reveal the direction within a single frame.

    Returns a :class:`Dataset` with ``train_x`` of shape
    ``(n_train, T, 2, size, size)``, float64.
    """
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    if num_classes > len(DIRECTIONS):
        raise ValueError(f"num_classes must be <= {len(DIRECTIONS)} (one per direction), got {num_classes}")
    T = check_int(T, "T", minimum=2)
    size = check_int(size, "size", minimum=2)
    seed = check_int(seed, "seed", minimum=0)
    noise = check_finite_scalar(noise, "noise", minimum=0.0)
    if noise > 1.0:
        raise ValueError(f"noise must be a probability in [0, 1], got {noise!r}")
    object_size = check_int(object_size, "object_size", minimum=1)
    if object_size >= size:
        raise ValueError(f"object_size must be < size={size}, got {object_size}")
    max_speed = check_int(max_speed, "max_speed", minimum=1)

    rng = np.random.default_rng(seed)
    n = n_per_class * num_classes
    y = np.repeat(np.arange(num_classes, dtype=np.int64), n_per_class)  # (n,)
    start = rng.integers(0, size, size=(n, 2))  # (n, 2) row, col
    speed = rng.integers(1, max_speed + 1, size=n)  # (n,)
    polarity = rng.integers(0, 2, size=n)  # (n,)

    t = np.arange(T)
    velocity = DIRECTIONS[y] * speed[:, None]  # (n, 2)
    corner = start[:, None, :] + t[None, :, None] * velocity[:, None, :]  # (n, T, 2)

    x = np.zeros((n, T, 2, size, size))
    i_n, i_t = np.meshgrid(np.arange(n), t, indexing="ij")  # (n, T) each
    i_p = np.broadcast_to(polarity[:, None], (n, T))  # (n, T)
    for dr in range(object_size):
        for dc in range(object_size):
            rows = (corner[..., 0] + dr) % size  # (n, T)
            cols = (corner[..., 1] + dc) % size  # (n, T)
            x[i_n, i_t, i_p, rows, cols] = 1.0
    x[rng.random(x.shape) < noise] = 1.0

    train_idx, test_idx = stratified_split(y, test_fraction, rng)
    names = ["right", "left", "down", "up", "down-right", "down-left", "up-right", "up-left"]
    return Dataset(
        train_x=x[train_idx],
        train_y=y[train_idx],
        test_x=x[test_idx],
        test_y=y[test_idx],
        num_classes=num_classes,
        name="events",
        description=(
            f"moving {object_size}x{object_size} square on a {size}x{size} torus, T={T}, 2 polarity "
            f"channels, speed 1..{max_speed} px/frame, noise={noise}; classes: "
            f"{', '.join(names[:num_classes])}; stratified split test_fraction={test_fraction}, seed={seed}"
        ),
    )


def iterate_minibatches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    rng: np.random.Generator | None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of minibatches ``(xb, yb)``.

    ``x``: ``(n, ...)``; ``y``: ``(n,)``. Yields ``xb`` of shape
    ``(B, ...)`` and ``yb`` of shape ``(B,)`` with ``B = batch_size``, except
    a smaller last batch (dropped if ``drop_last``). Every sample appears
    exactly once per epoch (at most once with ``drop_last``). With
    ``shuffle`` the order is ``rng.permutation(n)`` (``rng`` is then
    required and advanced); without, the stored order (``rng`` may be None).
    Arguments are checked when this is called, not at the first batch.
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}")
    if shuffle and not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator when shuffle=True, got {rng!r}")
    order = rng.permutation(len(x)) if shuffle and rng is not None else np.arange(len(x))
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    return ((x[order[i : i + batch_size]], y[order[i : i + batch_size]]) for i in range(0, stop, batch_size))


def to_time_major(xb: np.ndarray, T: int) -> np.ndarray:
    """A batch as the model's time-major input ``(T, B, C, H, W)``.

    * static images ``(B, C, H, W)``: direct encoding, the image repeated
      ``T`` times (a new array, safe to modify);
    * event data ``(B, T, C, H, W)``: the two first axes swapped (a
      contiguous copy); its ``T`` must equal the argument ``T``.
    """
    T = check_int(T, "T", minimum=1)
    xb = np.asarray(xb)
    if xb.ndim == 4:
        return np.repeat(xb[None], T, axis=0)  # (T, B, C, H, W)
    if xb.ndim == 5:
        if xb.shape[1] != T:
            raise ValueError(f"event batch xb has {xb.shape[1]} time steps (shape {xb.shape}), but T={T}")
        return np.ascontiguousarray(xb.transpose(1, 0, 2, 3, 4))  # (T, B, C, H, W)
    raise ValueError(f"xb must be (B, C, H, W) or (B, T, C, H, W), got shape {xb.shape}")


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each sample by a random whole number of pixels in ``[-max_shift, max_shift]``
    along both image axes, filling with zeros (training-time augmentation).

    ``x``: ``(B, ..., H, W)``; every frame and channel of a sample moves together.
    Returns a new array of the same shape; ``rng`` draws ``2 * B`` integers.
    """
    max_shift = check_int(max_shift, "max_shift", minimum=0)
    x = np.asarray(x)
    if max_shift == 0:
        return x.copy()
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    p = max_shift
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)])  # (B, ..., H+2p, W+2p)
    windows = np.lib.stride_tricks.sliding_window_view(xp, (H, W), axis=(-2, -1))  # (B, ..., 2p+1, 2p+1, H, W)
    oy, ox = rng.integers(0, 2 * p + 1, size=(2, B))  # window offset p - shift
    return windows[np.arange(B), ..., oy, ox, :, :].copy()  # (B, ..., H, W)
