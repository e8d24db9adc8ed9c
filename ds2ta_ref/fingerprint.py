"""Fingerprints of a run's data, recorded in its checkpoint and checked when it is used again (issue 18 item 5).

A checkpoint's metadata holds, under ``"data"``, what the run was trained on:

* CIFAR-10/100 (files in ``--data-dir``, stored as an absolute path): every binary file's
  absolute path, size in bytes and SHA-256;
* ``digits`` and ``events``: these are not files the user handles. ``digits`` is built
  from the copy of the 8x8 digits that ships inside scikit-learn, ``events`` is generated
  from ``data_seed`` by :func:`ds2ta_ref.data.make_events`; either may change with a new
  scikit-learn, NumPy (random streams) or an edit of the code. So the fingerprint is the
  SHA-256 of the arrays themselves, as built (``train_x``, ``train_y``, ``test_x``,
  ``test_y``: dtype, shape and bytes), plus the scikit-learn version for ``digits`` (to say
  what changed).

:func:`verify` compares a recorded fingerprint with the data as it is now and raises a
one-line :class:`~ds2ta_ref.checkpoint.CheckpointError` naming the checkpoint and the file
(or data set) that is missing or changed: ``evaluate`` and ``--resume`` call it before they
use the data. A checkpoint without a fingerprint (written before this check) is accepted;
its CIFAR files are still checked for presence and format.

The SHA-256 of a file is cached per (path, size, modification time, inode), so a run or an
``evaluate`` of several checkpoints hashes each file once (about 180 MB for CIFAR).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from . import cifar
from .checkpoint import CheckpointError

__all__ = ["file_fingerprint", "arrays_sha256", "of_data", "verify"]

_CACHE: dict = {}


def file_fingerprint(path: str | os.PathLike) -> dict:
    """``{"path": absolute path, "size": bytes, "sha256": hex digest}`` of a file."""
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _CACHE[key] = digest.hexdigest()
    return {"path": path, "size": st.st_size, "sha256": _CACHE[key]}


def arrays_sha256(ds) -> str:
    """SHA-256 over ``train_x, train_y, test_x, test_y`` of a :class:`~ds2ta_ref.data.Dataset`
    (each array's dtype and shape, then its bytes in C order)."""
    digest = hashlib.sha256()
    for arr in (ds.train_x, ds.train_y, ds.test_x, ds.test_y):
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _sklearn_version() -> str | None:
    try:
        import sklearn
    except ImportError:
        return None
    return sklearn.__version__


def of_data(tc, ds=None) -> dict:
    """The fingerprint of a run's data (``tc``: its ``TrainConfig``; ``ds``: the built
    :class:`~ds2ta_ref.data.Dataset`, needed for ``digits`` and ``events``)."""
    if tc.dataset in cifar.FILES:
        paths = cifar.file_paths(tc.dataset, tc.data_dir)
        return {"dataset": tc.dataset, "files": [file_fingerprint(p) for p in paths]}
    if ds is None:
        raise ValueError(f"the fingerprint of the {tc.dataset} data needs the data set (ds)")
    out = {"dataset": tc.dataset, "arrays_sha256": arrays_sha256(ds)}
    if tc.dataset == "digits":
        out["scikit_learn"] = _sklearn_version()
    return out


def verify(recorded, tc, path, ds=None) -> None:
    """Raise :class:`~ds2ta_ref.checkpoint.CheckpointError` naming the checkpoint ``path`` and the
    file if the data of ``tc`` is not what ``recorded`` (``meta.get("data")``) says the run was
    trained on: a CIFAR file missing (moved or deleted), of another size or content; the
    ``digits``/``events`` arrays (checked when ``ds``, the data built now, is given) different.
    CIFAR files are checked for presence, format and labels even without a record."""
    where = f"checkpoint {os.fspath(path)!r}"
    if tc.dataset in cifar.FILES:
        now = cifar.file_paths(tc.dataset, tc.data_dir)
        for file in now:
            if not os.path.isfile(file):
                raise CheckpointError(
                    f"{where} was trained on the data file {file!r}, which is missing (moved or "
                    f"deleted; --data-dir was {tc.data_dir!r}); put the file back there"
                )
        if isinstance(recorded, dict) and isinstance(recorded.get("files"), list):
            before = {f.get("path"): f for f in recorded["files"] if isinstance(f, dict)}
            for file in now:
                old, new = before.get(file), file_fingerprint(file)
                if old is None:
                    raise CheckpointError(
                        f"{where}: the data file {file!r} is not among the files the run was "
                        f"trained on ({', '.join(sorted(map(str, before)))})"
                    )
                if old.get("size") != new["size"]:
                    raise CheckpointError(
                        f"{where}: the data file {file!r} has changed since the run was trained: "
                        f"{new['size']} bytes now, {old.get('size')} then"
                    )
                if old.get("sha256") != new["sha256"]:
                    raise CheckpointError(
                        f"{where}: the data file {file!r} has changed since the run was trained: "
                        f"its SHA-256 differs from the one recorded (same size)"
                    )
        try:
            cifar.check_files(tc.dataset, tc.data_dir, train_subset=tc.train_subset, test_subset=tc.test_subset)
        except ValueError as exc:
            raise CheckpointError(f"{where}: its data cannot be used: {exc}") from None
        return
    if ds is None or not isinstance(recorded, dict) or "arrays_sha256" not in recorded:
        return
    if arrays_sha256(ds) != recorded["arrays_sha256"]:
        why = ""
        if tc.dataset == "digits" and recorded.get("scikit_learn") != _sklearn_version():
            why = f" (scikit-learn {recorded.get('scikit_learn')} then, {_sklearn_version()} now)"
        raise CheckpointError(
            f"{where}: the {tc.dataset} data built now (data_seed {tc.data_seed}) differs from the "
            f"data the run was trained on{why}: SHA-256 of its arrays differs from the one recorded"
        )
