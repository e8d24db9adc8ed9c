import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ds2ta_ref import data
from ds2ta_ref.data import Dataset, iterate_minibatches, load_digits, make_events, to_time_major

# --- digits -------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return load_digits(seed=0)


def test_digits_shapes_and_range(digits):
    assert digits.num_classes == 10 and digits.name == "digits"
    assert digits.train_x.shape[1:] == (1, 16, 16) and digits.test_x.shape[1:] == (1, 16, 16)
    assert len(digits.train_x) + len(digits.test_x) == 1797
    assert digits.train_x.dtype == np.float64 and digits.train_y.dtype == np.int64
    assert digits.train_x.min() == 0.0 and digits.train_x.max() == 1.0
    assert digits.time_steps is None and digits.sample_shape == (1, 16, 16)


def test_digits_upsampling_is_nearest_neighbour():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    images = sklearn_datasets.load_digits().images / 16.0
    d = load_digits(seed=3, size=24, test_fraction=0.5)
    x = np.concatenate([d.train_x, d.test_x])[:, 0]  # (n, 24, 24)
    small = x[:, ::3, ::3]  # one pixel per 3x3 block
    np.testing.assert_array_equal(x, np.kron(small, np.ones((1, 3, 3))))
    # the same set of images as scikit-learn's, in some order
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))
    assert key(small) == key(images)


def test_digits_split_is_stratified(digits):
    n_train, n_test = np.bincount(digits.train_y), np.bincount(digits.test_y)
    total = n_train + n_test
    ratio = len(digits.test_y) / total.sum()
    assert np.all(np.abs(n_test - ratio * total) <= 1)
    assert np.all(np.abs(n_train - (1 - ratio) * total) <= 1)


def test_digits_deterministic_per_seed(digits):
    again = load_digits(seed=0)
    for field in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(digits, field), getattr(again, field))
    other = load_digits(seed=1)
    assert not np.array_equal(digits.test_y, other.test_y)


@pytest.mark.parametrize("kwargs", [dict(size=12), dict(size=0), dict(test_fraction=1.0), dict(test_fraction=0)])
def test_digits_bad_arguments(kwargs):
    pytest.importorskip("sklearn")
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        load_digits(**kwargs)


def test_digits_without_sklearn_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError, match=r"ds2ta_ref\[digits\]"):
        load_digits()


# --- events -------------------------------------------------------------------


@pytest.fixture(scope="module")
def events():
    return make_events(seed=0)


def test_events_shapes_and_values(events):
    assert events.train_x.shape == (320, 8, 2, 16, 16) and events.test_x.shape == (80, 8, 2, 16, 16)
    assert events.num_classes == 4 and events.time_steps == 8
    assert events.train_x.dtype == np.float64 and events.train_y.dtype == np.int64
    for x in (events.train_x, events.test_x):
        assert set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(np.bincount(events.test_y), [20] * 4)


def test_events_object_moves_one_step_per_frame():
    d = make_events(seed=5, noise=0.0, n_per_class=3)
    x, y = np.concatenate([d.train_x, d.test_x]), np.concatenate([d.train_y, d.test_y])
    for sample, label in zip(x, y):
        obj = sample.sum(axis=1)  # (T, H, W): one channel only
        assert np.all(obj <= 1) and np.all(obj.sum(axis=(1, 2)) == 9)
        assert (sample[:, 0].any() + sample[:, 1].any()) == 1  # one polarity per sample
        dy, dx = data.DIRECTIONS[label]
        np.testing.assert_array_equal(np.roll(obj[:-1], (dy, dx), axis=(1, 2)), obj[1:])


def test_events_deterministic_per_seed(events):
    again, other = make_events(seed=0), make_events(seed=1)
    np.testing.assert_array_equal(events.train_x, again.train_x)
    np.testing.assert_array_equal(events.test_y, again.test_y)
    assert not np.array_equal(events.train_x, other.train_x)


def test_events_noise_rate():
    d = make_events(seed=2, noise=0.05, n_per_class=20)
    n, T, C, H, W = d.train_x.shape
    # every frame: the 9 object pixels, plus noise events on the C*H*W - 9 others
    rate = (d.train_x.sum() - 9 * n * T) / (n * T * (C * H * W - 9))
    assert abs(rate - 0.05) < 0.005


SHIFTS = np.array([(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)])


def _correlations(a, b):
    """sum over pixels of a * roll(b, shift) for the 49 shifts in [-3, 3]^2, by FFT:
    (..., H, W) -> (..., 49). Translation invariant: it sees what a frame holds, not where."""
    H, W = a.shape[-2:]
    full = np.fft.irfft2(np.fft.rfft2(a) * np.conj(np.fft.rfft2(b)), s=(H, W))  # (..., H, W)
    return full[..., SHIFTS[:, 0] % H, SHIFTS[:, 1] % W]


def test_correlations_match_their_definition():
    a, b = np.random.default_rng(0).random((2, 3, 7, 9))
    direct = np.stack([(a * np.roll(b, s, axis=(-2, -1))).sum(axis=(-2, -1)) for s in map(tuple, SHIFTS)], -1)
    np.testing.assert_allclose(_correlations(a, b), direct, atol=1e-12)


def single_frame_features(x):
    """(n, T, 2, H, W) -> (n * T, 147): each frame on its own, ON/ON, OFF/OFF and
    ON/OFF correlations. A leading-edge-ON / trailing-edge-OFF encoding of the
    motion would show up in the ON/OFF correlation at the shift of the motion."""
    on, off = x[:, :, 0], x[:, :, 1]
    f = np.concatenate([_correlations(on, on), _correlations(off, off), _correlations(on, off)], axis=-1)
    return f.reshape(-1, f.shape[-1])


def temporal_features(x):
    """(n, T, 2, H, W) -> (n, 49): correlation of each frame with the previous one,
    summed over channels and time: peaks at the shift of the motion."""
    return _correlations(x[:, 1:], x[:, :-1]).sum(axis=(1, 2))


def nearest_centroid(f_train, y_train, f_test, num_classes):
    """Predicted classes of ``f_test`` (standardized features, nearest class mean)."""
    mu, sd = f_train.mean(axis=0), f_train.std(axis=0) + 1e-9
    f_train, f_test = (f_train - mu) / sd, (f_test - mu) / sd
    centroids = np.stack([f_train[y_train == c].mean(axis=0) for c in range(num_classes)])
    return np.argmin(((f_test[:, None] - centroids) ** 2).sum(axis=-1), axis=1)


def single_frame_accuracy(d):
    T = d.train_x.shape[1]
    pred = nearest_centroid(
        single_frame_features(d.train_x), np.repeat(d.train_y, T), single_frame_features(d.test_x), d.num_classes
    )
    return float(np.mean(pred == np.repeat(d.test_y, T)))


def temporal_predictions(d, test_x):
    return nearest_centroid(temporal_features(d.train_x), d.train_y, temporal_features(test_x), d.num_classes)


def test_events_class_is_in_the_order_of_frames_only(events):
    chance = 1 / events.num_classes
    assert single_frame_accuracy(events) < chance + 0.15
    assert np.mean(temporal_predictions(events, events.test_x) == events.test_y) > 0.9
    # the same frames played backwards are classified as the opposite direction
    opposite = np.array([1, 0, 3, 2])
    backwards = temporal_predictions(events, events.test_x[:, ::-1])
    assert np.mean(backwards == opposite[events.test_y]) > 0.9


def test_single_frame_check_would_catch_a_leading_edge_encoding():
    """The single-frame classifier above is strong enough to find the direction
    if frames carried it: re-encode the clean object as ON where it arrives and
    OFF where it leaves (what a real DVS does) and it classifies single frames."""
    d = make_events(seed=0, noise=0.0)

    def leaky(x):
        obj = x.sum(axis=2)  # (n, T, H, W)
        arrive = obj[:, 1:] * (1 - obj[:, :-1])
        leave = obj[:, :-1] * (1 - obj[:, 1:])
        return np.stack([arrive, leave], axis=2)  # (n, T-1, 2, H, W)

    leaked = Dataset(leaky(d.train_x), d.train_y, leaky(d.test_x), d.test_y, d.num_classes, "leaky")
    assert single_frame_accuracy(leaked) > 0.9


def test_events_eight_directions_and_speed_two():
    d = make_events(seed=1, num_classes=8, max_speed=2, n_per_class=30, T=6)
    assert d.train_x.shape[1:] == (6, 2, 16, 16)
    assert np.mean(temporal_predictions(d, d.test_x) == d.test_y) > 0.9


@pytest.mark.parametrize("kwargs", [dict(num_classes=9), dict(noise=1.5), dict(T=1), dict(object_size=16)])
def test_events_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_events(**kwargs)


# --- batching -----------------------------------------------------------------


@given(st.integers(1, 23), st.integers(1, 9), st.booleans(), st.booleans())
def test_minibatches_cover_every_sample_once(n, batch_size, shuffle, drop_last):
    x = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    y = np.arange(n, dtype=np.int64)
    batches = list(
        iterate_minibatches(x, y, batch_size, rng=np.random.default_rng(0), shuffle=shuffle, drop_last=drop_last)
    )
    seen = np.concatenate([yb for _, yb in batches]) if batches else np.zeros(0, np.int64)
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # x and y stay paired
        assert len(yb) == batch_size or (not drop_last and yb is batches[-1][1])
    expected = n - n % batch_size if drop_last else n
    assert len(seen) == expected and len(np.unique(seen)) == expected
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(expected))


def test_minibatches_deterministic_with_seeded_rng():
    x, y = np.zeros((50, 3)), np.arange(50)
    first = [yb for _, yb in iterate_minibatches(x, y, 8, rng=np.random.default_rng(7))]
    again = [yb for _, yb in iterate_minibatches(x, y, 8, rng=np.random.default_rng(7))]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(7)
    epoch1 = np.concatenate([yb for _, yb in iterate_minibatches(x, y, 8, rng=rng)])
    epoch2 = np.concatenate([yb for _, yb in iterate_minibatches(x, y, 8, rng=rng)])
    assert not np.array_equal(epoch1, epoch2)  # a new order each epoch


def test_minibatches_check_arguments_eagerly():
    x, y = np.zeros((5, 2)), np.zeros(5)
    with pytest.raises(ValueError, match="rng"):
        iterate_minibatches(x, y, 2, rng=None)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_minibatches(x, y, 0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="same number"):
        iterate_minibatches(x, y[:4], 2, rng=np.random.default_rng(0))
    assert len(list(iterate_minibatches(x, y, 2, rng=None, shuffle=False))) == 3


def test_to_time_major_static_repeats_the_image():
    xb = np.random.default_rng(0).random((3, 1, 4, 4))  # (B, C, H, W)
    out = to_time_major(xb, 5)
    assert out.shape == (5, 3, 1, 4, 4)
    for t in range(5):
        np.testing.assert_array_equal(out[t], xb)
    out[0] += 1  # a copy, not a view
    np.testing.assert_array_equal(out[1], xb)


def test_to_time_major_events_transposes():
    xb = np.random.default_rng(0).random((3, 6, 2, 4, 4))  # (B, T, C, H, W)
    out = to_time_major(xb, 6)
    assert out.shape == (6, 3, 2, 4, 4) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[4, 2], xb[2, 4])
    with pytest.raises(ValueError, match="T=5"):
        to_time_major(xb, 5)
    with pytest.raises(ValueError, match="xb"):
        to_time_major(xb[0, 0], 6)


def test_dataset_checks_its_fields():
    x, y = np.zeros((4, 1, 8, 8)), np.arange(4, dtype=np.int64)
    with pytest.raises(ValueError, match="train_y"):
        Dataset(x, y[:3], x, y, 4, "bad")
    with pytest.raises(ValueError, match="test_y"):
        Dataset(x, y % 3, x, y, 3, "bad")
    assert "n_train=4" in repr(Dataset(x, y, x, y, 4, "ok"))


def test_random_shift_moves_whole_samples():
    from ds2ta_ref.data import random_shift

    rng = np.random.default_rng(0)
    x = np.zeros((16, 2, 3, 8, 8))
    x[:, :, :, 3, 4] = 1.0  # one lit pixel per frame and channel
    y = random_shift(x, 2, np.random.default_rng(1))
    assert y.shape == x.shape and y.sum() == x.sum()
    for b in range(16):
        r, c = np.argwhere(y[b, 0, 0])[0]
        assert abs(r - 3) <= 2 and abs(c - 4) <= 2
        assert np.all(y[b] == y[b, 0, 0])  # frames and channels moved together
    assert len({tuple(np.argwhere(y[b, 0, 0])[0]) for b in range(16)}) > 3
    np.testing.assert_array_equal(random_shift(x, 2, np.random.default_rng(1)), y)
    np.testing.assert_array_equal(random_shift(x, 0, rng), x)
