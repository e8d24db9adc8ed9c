"""CIFAR-10 and CIFAR-100 from their official *binary* distributions (NumPy only, nothing downloaded).

The files (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version") are
fixed-size records, one per image, with no header::

    cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin
        record = 1 label byte (0..9) + 3072 pixel bytes                    (3073 bytes, 10000 per file)
    cifar-100-binary/train.bin, test.bin
        record = 1 coarse label byte (0..19) + 1 fine label byte (0..99) + 3072 pixel bytes   (3074 bytes)

The 3072 pixel bytes are the 32x32 red plane, then green, then blue, each row
by row: the record reshapes directly to ``(3, 32, 32)``, channel-first as the
model takes it. No pickle is involved (the "python version" of the data sets
is a pickle and is not read here).

Preprocessing (what Spikformer's CIFAR code and the DS2TA paper use):

* :func:`normalize`: ``(pixel / 255 - mean) / std`` per channel with the usual
  CIFAR statistics (:data:`MEAN`, :data:`STD`);
* :func:`augment` (training batches only): random crop of 32x32 from the image
  zero-padded by 4 pixels on every side (padded with black, i.e. pixel value 0
  before normalization) and a horizontal flip with probability 1/2, drawn from
  a seeded ``np.random.Generator``.

A missing, truncated or malformed file raises a one-line ``ValueError`` naming it.
"""

from __future__ import annotations

import os

import numpy as np

from ._checks import check_int
from .data import Dataset

__all__ = [
    "MEAN",
    "STD",
    "FILES",
    "check_files",
    "file_paths",
    "split_sizes",
    "check_labels",
    "read_records",
    "normalize",
    "black",
    "load",
    "load_cifar10",
    "load_cifar100",
    "augment",
]

PIXELS = 3 * 32 * 32
# Per-channel mean and standard deviation of the training images (in [0, 1]), as in timm / Spikformer.
MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4867, 0.4408)}
STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2675, 0.2565, 0.2761)}
# name -> (folder, train files, test files, label bytes per record)
FILES = {
    "cifar10": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"], 1),
    "cifar100": ("cifar-100-binary", ["train.bin"], ["test.bin"], 2),
}
LABEL_RANGE = {"cifar10": (10,), "cifar100": (20, 100)}  # per label byte: coarse, fine


def read_records(path: str | os.PathLike, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one binary file: ``(images (n, 3, 32, 32) uint8, labels (n, label_bytes) uint8)``.

    Raises ``ValueError`` naming ``path`` if it is missing, empty, or its size is
    not a whole number of ``label_bytes + 3072``-byte records (truncated or not a
    CIFAR binary file).
    """
    path = os.fspath(path)
    record = _check_file(path, check_int(label_bytes, "label_bytes", minimum=1))
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, record)  # (n, record)
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32), raw[:, :label_bytes].copy()


def _check_file(path: str, label_bytes: int) -> int:
    """The record size, after checking that ``path`` exists and holds a whole number of records."""
    record = label_bytes + PIXELS
    if os.path.isdir(path):  # issue 18 sweep: not "missing"
        raise ValueError(f"CIFAR file {path!r} is a directory, not a CIFAR binary file")
    if not os.path.isfile(path):
        raise ValueError(f"CIFAR file {path!r} is missing")
    size = os.path.getsize(path)
    if size == 0 or size % record:
        raise ValueError(
            f"CIFAR file {path!r} is truncated or not a CIFAR binary file: {size} bytes is not "
            f"a positive multiple of the {record}-byte record ({label_bytes} label byte(s) + 3072 pixels)"
        )
    return record


def normalize(images: np.ndarray, name: str, dtype=np.float32) -> np.ndarray:
    """``(images / 255 - MEAN[name]) / STD[name]`` per channel; ``images`` ``(n, 3, 32, 32)`` uint8."""
    _check_name(name)
    mean = np.asarray(MEAN[name], dtype=np.float64).reshape(1, 3, 1, 1)
    std = np.asarray(STD[name], dtype=np.float64).reshape(1, 3, 1, 1)
    return ((images / 255.0 - mean) / std).astype(dtype)


def black(name: str) -> np.ndarray:
    """The normalized value of a black pixel (pixel value 0) per channel, ``(3,)``: the crop's padding."""
    _check_name(name)
    return -np.asarray(MEAN[name]) / np.asarray(STD[name])


def _check_name(name):
    if name not in FILES:
        raise ValueError(f"name must be one of {sorted(FILES)}, got {name!r}")


def _folder(data_dir: str, name: str) -> str:
    """``data_dir`` itself if it holds the files, else ``data_dir/<official folder name>``."""
    folder, train, _, _ = FILES[name]
    if os.path.isfile(os.path.join(data_dir, train[0])):
        return data_dir
    return os.path.join(data_dir, folder)


def check_files(
    name: str, data_dir: str | os.PathLike, *, labels: bool = True, train_subset: int = 0, test_subset: int = 0
) -> str:
    """The folder of ``name``'s binary files under ``data_dir``, after checking that every
    file exists and is a whole number of records, that every label byte is in range
    (``labels``; only the label bytes are read) and that the subsets are no larger than
    the records present (issue 18 item 5).

    Raises a one-line ``ValueError`` naming the first missing, truncated or malformed file
    (and, for a label out of range, the record's index in the file).
    """
    _check_name(name)
    data_dir = os.fspath(data_dir)
    if os.path.isfile(data_dir):  # issue 18 sweep: e.g. the downloaded archive itself
        raise ValueError(
            f"{data_dir!r} is a file, not a folder: give the folder holding {FILES[name][0]}/ "
            f"(extract the .tar.gz of the binary version first)"
        )
    python_version = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    if not os.path.exists(os.path.join(_folder(data_dir, name), FILES[name][1][0])) and os.path.isdir(
        os.path.join(data_dir, python_version)
    ):
        raise ValueError(
            f"{data_dir!r} holds {python_version}/, the python version of {name} (pickles, not read "
            f"here); download and extract the binary version, {FILES[name][0]}/"
        )
    folder = _folder(data_dir, name)
    _, train_files, test_files, label_bytes = FILES[name]
    for file in train_files + test_files:
        _check_file(os.path.join(folder, file), label_bytes)
        if labels:
            check_labels(os.path.join(folder, file), name)
    for split, subset, available in zip(("training", "test"), (train_subset, test_subset), split_sizes(name, folder)):
        if subset > available:
            raise ValueError(
                f"CIFAR {split} files in {folder!r} hold {available} records, fewer than the "
                f"{split} subset of {subset} asked for"
            )
    return folder


def file_paths(name: str, data_dir: str | os.PathLike) -> list[str]:
    """The paths of ``name``'s binary files under ``data_dir``, training files first (not checked)."""
    _check_name(name)
    folder = _folder(os.fspath(data_dir), name)
    _, train_files, test_files, _ = FILES[name]
    return [os.path.join(folder, file) for file in train_files + test_files]


def split_sizes(name: str, data_dir: str | os.PathLike) -> tuple[int, int]:
    """``(training records, test records)`` in ``name``'s files under ``data_dir``, from the file sizes
    (files that are missing or not whole records raise ``ValueError`` naming them)."""
    _check_name(name)
    folder = _folder(os.fspath(data_dir), name)
    _, train_files, test_files, label_bytes = FILES[name]
    train, test = (
        sum(
            os.path.getsize(os.path.join(folder, f)) // _check_file(os.path.join(folder, f), label_bytes) for f in files
        )
        for files in (train_files, test_files)
    )
    return train, test


def check_labels(path: str | os.PathLike, name: str) -> None:
    """Raise a one-line ``ValueError`` naming ``path`` and the record index if a label byte of the
    CIFAR file is out of range (CIFAR-10: 0..9; CIFAR-100: coarse 0..19, fine 0..99). Reads the
    label bytes only (through a memory map); the file must hold whole records (:func:`_check_file`)."""
    _check_name(name)
    path = os.fspath(path)
    label_bytes = FILES[name][3]
    record = _check_file(path, label_bytes)
    try:
        raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(os.path.getsize(path) // record, record))
    except OSError as exc:
        raise ValueError(f"CIFAR file {path!r} cannot be read ({exc.strerror or exc})") from None
    for j, limit in enumerate(LABEL_RANGE[name]):
        column = np.asarray(raw[:, j])  # (n,) label byte j of every record
        bad = np.flatnonzero(column >= limit)
        if bad.size:
            what = "label" if name == "cifar10" else ("coarse label", "fine label")[j]
            raise ValueError(
                f"CIFAR file {path!r} is malformed: record {int(bad[0])} (0-based) has {what} byte "
                f"{int(column[bad[0]])}, out of range [0, {limit})"
                + (f"; {bad.size} records are out of range" if bad.size > 1 else "")
            )


def _read_split(folder, files, name, label_index):
    images, labels = [], []
    label_bytes = FILES[name][3]
    for file in files:
        path = os.path.join(folder, file)
        check_labels(path, name)
        x, y = read_records(path, label_bytes)
        images.append(x)
        labels.append(y[:, label_index].astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


def load(
    name: str,
    data_dir: str | os.PathLike,
    *,
    labels: str = "fine",
    dtype=np.float32,
    train_subset: int = 0,
    test_subset: int = 0,
) -> Dataset:
    """CIFAR-10 (``name="cifar10"``) or CIFAR-100 (``"cifar100"``) as a normalized :class:`~ds2ta_ref.data.Dataset`.

    Args:
        data_dir: the folder holding ``cifar-10-batches-bin/`` (or ``cifar-100-binary/``), or that folder itself.
        labels: CIFAR-100 only: ``"fine"`` (100 classes, the paper's) or ``"coarse"`` (20 superclasses).
        dtype: of the normalized images (float32: 614 MB for the CIFAR-10 training set).
        train_subset, test_subset: keep only the first n images of a split (0: all).

    Returns:
        ``train_x (50000, 3, 32, 32)``, ``test_x (10000, 3, 32, 32)`` normalized with :func:`normalize`,
        int64 labels.
    """
    _check_name(name)
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    folder = _folder(os.fspath(data_dir), name)
    _, train_files, test_files, _ = FILES[name]
    label_index = 1 if (name == "cifar100" and labels == "fine") else 0
    num_classes = 10 if name == "cifar10" else (100 if labels == "fine" else 20)
    splits = []
    for files, subset in ((train_files, train_subset), (test_files, test_subset)):
        x, y = _read_split(folder, files, name, label_index)
        if subset > len(y):  # issue 18 item 5: an error, not a silent truncation
            raise ValueError(
                f"CIFAR files {', '.join(files)} in {folder!r} hold {len(y)} records, fewer than "
                f"the subset of {subset} asked for"
            )
        if subset:
            x, y = x[:subset], y[:subset]
        splits += [normalize(x, name, dtype), y]
    train_x, train_y, test_x, test_y = splits
    return Dataset(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=num_classes,
        name=name,
        description=f"{name} ({labels} labels) from the binary files in {folder}, "
        f"normalized with mean {MEAN[name]} and std {STD[name]}",
    )


def load_cifar10(data_dir, **options) -> Dataset:
    """:func:`load` with ``name="cifar10"``."""
    return load("cifar10", data_dir, **options)


def load_cifar100(data_dir, **options) -> Dataset:
    """:func:`load` with ``name="cifar100"``."""
    return load("cifar100", data_dir, **options)


def augment(x: np.ndarray, rng: np.random.Generator, *, padding: int = 4, flip: bool = True, fill=0.0) -> np.ndarray:
    """Random crop with padding and random horizontal flip of a batch ``(B, C, H, W)`` (a new array).

    Every image is padded by ``padding`` pixels of ``fill`` (a number or one value
    per channel, e.g. :func:`black`) on each side and cropped back to ``H x W`` at
    an offset drawn uniformly in ``[0, 2 padding]`` per axis; then, with ``flip``,
    mirrored left-right with probability 1/2. ``rng`` draws ``2 B`` integers,
    then ``B`` uniforms (with ``flip``).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be a batch (B, C, H, W), got shape {x.shape}")
    p = check_int(padding, "padding", minimum=0)
    B, C, H, W = x.shape
    fill = np.broadcast_to(np.asarray(fill, dtype=x.dtype).reshape(-1, 1, 1), (C, 1, 1))
    xp = np.empty((B, C, H + 2 * p, W + 2 * p), dtype=x.dtype)  # (B, C, H+2p, W+2p)
    xp[...] = fill
    xp[:, :, p : p + H, p : p + W] = x
    windows = np.lib.stride_tricks.sliding_window_view(xp, (H, W), axis=(2, 3))  # (B, C, 2p+1, 2p+1, H, W)
    oy, ox = rng.integers(0, 2 * p + 1, size=(2, B))
    out = windows[np.arange(B), :, oy, ox].copy()  # (B, C, H, W)
    if flip:
        mirror = rng.random(B) < 0.5
        out[mirror] = out[mirror, :, :, ::-1]
    return out
