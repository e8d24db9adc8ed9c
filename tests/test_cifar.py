"""CIFAR binary readers on small files written in the official record format."""

import os

import numpy as np
import pytest

from ds2ta_ref import cifar


def _write(path, labels, images):
    """Records of label bytes then 3072 pixel bytes (R plane, G plane, B plane, row-major)."""
    labels = np.asarray(labels, dtype=np.uint8).reshape(len(images), -1)
    rec = np.concatenate([labels, np.asarray(images, dtype=np.uint8).reshape(len(images), -1)], axis=1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rec.tofile(path)


def _images(rng, n):
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


@pytest.fixture
def cifar10_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    data = {}
    for i in range(1, 6):
        x, y = _images(rng, 3), rng.integers(0, 10, 3)
        _write(str(folder / f"data_batch_{i}.bin"), y, x)
        data[f"data_batch_{i}"] = (x, y)
    x, y = _images(rng, 4), rng.integers(0, 10, 4)
    _write(str(folder / "test_batch.bin"), y, x)
    data["test_batch"] = (x, y)
    return tmp_path, data


def test_cifar10_records_labels_shapes_and_normalization(cifar10_dir):
    root, data = cifar10_dir
    ds = cifar.load_cifar10(root)
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_x.dtype == np.float32 and ds.num_classes == 10 and ds.train_y.dtype == np.int64
    raw = np.concatenate([data[f"data_batch_{i}"][0] for i in range(1, 6)])  # files in order 1..5
    assert np.array_equal(ds.train_y, np.concatenate([data[f"data_batch_{i}"][1] for i in range(1, 6)]))
    assert np.array_equal(ds.test_y, data["test_batch"][1])
    # pixel (c, r, col) of record k is byte 1 + c*1024 + r*32 + col; normalization per channel
    mean, std = np.array(cifar.MEAN["cifar10"]), np.array(cifar.STD["cifar10"])
    expected = (raw / 255.0 - mean[:, None, None]) / std[:, None, None]
    assert np.allclose(ds.train_x, expected, atol=1e-6)
    # the folder itself works as data_dir too, and subsets keep the first images
    small = cifar.load_cifar10(root / "cifar-10-batches-bin", train_subset=2, test_subset=1)
    assert np.array_equal(small.train_x, ds.train_x[:2]) and np.array_equal(small.test_y, ds.test_y[:1])


def test_record_layout_is_planes_then_rows(tmp_path):
    images = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    images[0, 1, 2, 3] = 200  # green plane, row 2, column 3: byte 1 + 1024 + 2*32 + 3 of the record
    path = str(tmp_path / "one.bin")
    _write(path, [7], images)
    raw = np.fromfile(path, dtype=np.uint8)
    assert raw.size == 3073 and raw[0] == 7 and raw[1 + 1024 + 67] == 200 and raw.sum() == 207
    x, y = cifar.read_records(path, 1)
    assert np.array_equal(x, images) and y.tolist() == [[7]]


def test_cifar100_coarse_and_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-binary"
    train_x, test_x = _images(rng, 5), _images(rng, 2)
    coarse, fine = rng.integers(0, 20, 5), rng.integers(0, 100, 5)
    _write(str(folder / "train.bin"), np.stack([coarse, fine], 1), train_x)
    _write(str(folder / "test.bin"), [[3, 99], [19, 0]], test_x)
    ds = cifar.load_cifar100(tmp_path)
    assert ds.num_classes == 100 and np.array_equal(ds.train_y, fine) and ds.test_y.tolist() == [99, 0]
    ds = cifar.load_cifar100(tmp_path, labels="coarse")
    assert ds.num_classes == 20 and np.array_equal(ds.train_y, coarse) and ds.test_y.tolist() == [3, 19]
    mean, std = np.array(cifar.MEAN["cifar100"]), np.array(cifar.STD["cifar100"])
    assert np.allclose(ds.test_x, (test_x / 255.0 - mean[:, None, None]) / std[:, None, None], atol=1e-6)


def test_missing_truncated_and_malformed_files_are_one_line_errors(cifar10_dir):
    root, _ = cifar10_dir
    folder = root / "cifar-10-batches-bin"
    with pytest.raises(ValueError, match=r"^CIFAR file '.*cifar-100-binary/train\.bin' is missing$"):
        cifar.load_cifar100(root)
    path = folder / "data_batch_3.bin"
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(
        ValueError,
        match=r"^CIFAR file '.*data_batch_3\.bin' is truncated or not a CIFAR binary "
        r"file: 9209 bytes is not a positive multiple of the 3073-byte record",
    ):
        cifar.load_cifar10(root)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"data_batch_3\.bin' is truncated"):
        cifar.load_cifar10(root)
    path.write_bytes(bytes([12]) + raw[1:])  # label 12 in CIFAR-10
    with pytest.raises(
        ValueError,
        match=r"^CIFAR file '.*data_batch_3\.bin' is malformed: record 0 \(0-based\) has "
        r"label byte 12, out of range \[0, 10\)$",
    ):
        cifar.load_cifar10(root)
    os.remove(folder / "test_batch.bin")
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=r"test_batch\.bin' is missing"):
        cifar.load_cifar10(root)
    # CIFAR-100 records read as CIFAR-10 have the wrong size: 3074 is not a multiple of 3073
    with pytest.raises(ValueError, match="truncated or not a CIFAR binary file"):
        _write(str(root / "x" / "train.bin"), [[1, 2]], np.zeros((1, 3, 32, 32)))
        cifar.read_records(root / "x" / "train.bin", 1)


def test_augment_crops_with_padding_and_flips():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    fill = np.array([-1.0, -2.0, -3.0])
    out = cifar.augment(x, np.random.default_rng(5), padding=2, fill=fill)
    assert out.shape == x.shape and out.dtype == x.dtype
    # replay the draws: offsets then flips
    r = np.random.default_rng(5)
    oy, ox = r.integers(0, 5, size=(2, 64))
    mirror = r.random(64) < 0.5
    assert 10 < mirror.sum() < 54 and len(set(oy.tolist())) == 5
    for b in range(64):
        padded = np.concatenate([np.full((1, 12, 12), f) for f in fill]).astype(np.float32)
        padded[:, 2:10, 2:10] = x[b]
        crop = padded[:, oy[b] : oy[b] + 8, ox[b] : ox[b] + 8]
        assert np.array_equal(out[b], crop[:, :, ::-1] if mirror[b] else crop), b
    same = cifar.augment(x, np.random.default_rng(5), padding=2, fill=fill)
    assert np.array_equal(out, same)
    assert np.array_equal(cifar.augment(x, rng, padding=0, flip=False), x)


def test_black_is_the_normalized_zero_pixel():
    zero = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    assert np.allclose(cifar.normalize(zero, "cifar10")[0, :, 0, 0], cifar.black("cifar10"), atol=1e-6)


@pytest.mark.slow
def test_train_command_on_cifar_files_in_both_backends(cifar10_dir, tmp_path, capsys):
    """`ds2ta-ref train --dataset cifar10 --data-dir DIR` reads the binary files, checks them
    before any work, augments, and the torch backend trains the same run to float round-off."""
    from ds2ta_ref import cli, train

    root, _ = cifar10_dir
    common = [
        "train",
        "--dataset",
        "cifar10",
        "--data-dir",
        str(root),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--no-progress",
        "--dtype",
        "float64",
    ]
    assert cli.main(common + ["--out", str(tmp_path / "np")]) == 0
    _, cfg, params, _, _, meta = train.load_run(str(tmp_path / "np" / "checkpoint.npz"))
    assert (cfg.img_size, cfg.in_channels, cfg.num_classes) == (32, 3, 10)
    assert meta["train_config"]["data_dir"] == str(root)
    pytest.importorskip("torch")
    assert cli.main(common + ["--out", str(tmp_path / "pt"), "--backend", "torch"]) == 0
    _, _, params_pt, _, _, _ = train.load_run(str(tmp_path / "pt" / "checkpoint.npz"))
    for k in params:
        np.testing.assert_allclose(params_pt[k], params[k], rtol=1e-8, atol=1e-10, err_msg=k)
    # a truncated file is one line naming it, before any work
    path = root / "cifar-10-batches-bin" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-5])
    assert cli.main(common + ["--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test_batch.bin" in err[0] and "truncated" in err[0]
    assert not (tmp_path / "bad").exists()
