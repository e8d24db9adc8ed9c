"""Checkpoints as ``.npz`` files: atomic writes, pickle-free reads, clear errors.

A checkpoint is a zip of ``.npy`` members (the ``np.savez`` format, readable
with ``np.load``) holding the named arrays plus one reserved member
``__meta__``: a 0-d numpy unicode string with JSON text::

    {"format": "ds2ta_ref.checkpoint", "version": 1,
     "meta":   {... the caller's meta ...},
     "arrays": {"<name>": {"dtype": "<f8", "shape": [3, 4], "sha256": "<hex>"}, ...}}

``arrays`` records every array's dtype, shape and (unless disabled) the
SHA-256 of its raw bytes in C order, so :func:`load` can name the array that
was altered. Nothing is pickled, on either side.

Also here: :func:`validate` (names and shapes against what a model expects,
re-exported from :mod:`~ds2ta_ref.names`) and the pickle-free round trip of a ``np.random.Generator``
(:func:`rng_state_to_arrays`, :func:`rng_from_arrays`), so a resumed run draws
the same random stream.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

from .names import validate  # re-exported: it was defined here; it lives below the blocks now

__all__ = [
    "CheckpointError",
    "META_KEY",
    "save",
    "load",
    "read_npz",
    "check_numeric",
    "atomic_write",
    "remove_stale_temporary_files",
    "validate",
    "check_training_arrays",
    "rng_state_to_arrays",
    "rng_from_arrays",
]

META_KEY = "__meta__"
FORMAT = "ds2ta_ref.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or fails its checks; the message names
    the path and what is wrong."""


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(arr.tobytes()).hexdigest()


def _json_default(obj):
    if isinstance(obj, np.generic):  # numpy scalars, e.g. np.int64 from a counter
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def save(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping, *, checksum: bool = True) -> None:
    """Write ``arrays`` and ``meta`` to the ``.npz`` file ``path``, atomically.

    ``arrays``: ``name -> array`` (any shape; numeric, bool or unicode dtypes,
    no object arrays); names are non-empty strings other than ``"__meta__"``.
    ``meta``: a JSON-serializable dict (numpy scalars are converted; tuples
    come back as lists). With ``checksum`` the SHA-256 of every array is stored.

    The file is written by :func:`atomic_write`: ``path`` holds either its
    previous content or the complete new checkpoint, never a partial one. It is written at exactly ``path`` (no
    ``.npz`` suffix is added). It is written with ``zipfile`` and
    ``np.lib.format.write_array``, which is what ``np.savez`` does, because
    ``np.savez(file, **arrays)`` cannot take an array named ``file``.
    """
    checked = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"array names must be non-empty strings, got {name!r}")
        if name == META_KEY:
            raise ValueError(f"array name {META_KEY!r} is reserved for the checkpoint's metadata")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ValueError(f"array {name!r} has dtype {arr.dtype}: object arrays would need pickle")
        checked[name] = arr
    if not isinstance(meta, Mapping):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    listing = {}
    for name, arr in checked.items():
        listing[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
        if checksum:
            listing[name]["sha256"] = _sha256(arr)
    try:
        text = json.dumps(
            {"format": FORMAT, "version": VERSION, "meta": dict(meta), "arrays": listing},
            default=_json_default,
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta must be JSON-serializable: {exc}") from exc

    with atomic_write(path) as f:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED) as zf:
            for name, arr in [(META_KEY, np.array(text))] + list(checked.items()):
                with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Write the file ``path`` atomically: ``with atomic_write(path) as f: f.write(...)``.

    ``f`` is a binary file opened on a temporary file ``.<name>.<random>.tmp``
    in the same directory. When the ``with`` body ends normally the file is
    flushed, fsync'ed and moved onto ``path`` with ``os.replace`` (and the
    directory fsync'ed): ``path`` holds either its previous content or the
    complete new one, never a partial file. On any failure (an exception, a
    full disk, Ctrl-C) the temporary file is removed and ``path`` is untouched.
    Only a process killed outright leaves the temporary file behind;
    :func:`remove_stale_temporary_files` clears it at the next start.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def remove_stale_temporary_files(directory: str | os.PathLike, names) -> list[str]:
    """Delete the temporary files :func:`atomic_write` left in ``directory`` for
    the files ``names`` (``.<name>.<random>.tmp``), as a process killed in the
    middle of a write does. Returns the paths removed. Call it only while no
    other process writes there (a training run holds its folder's lock)."""
    removed = []
    for name in names:
        for tmp in sorted(glob.glob(os.path.join(glob.escape(os.fspath(directory)), f".{glob.escape(name)}.*.tmp"))):
            os.unlink(tmp)
            removed.append(tmp)
    return removed


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first member, or an empty zip
_NPY_MAGIC = b"\x93NUMPY"
_PICKLE_REFUSED = (
    "this loader refuses pickled data, which can run arbitrary code when loaded; "
    "store the arrays with numpy.savez instead"
)


def read_npz(path: str | os.PathLike, *, what: str = "checkpoint") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path`` (``np.savez`` format), never unpickling.

    Raises :class:`CheckpointError` (a ``ValueError``) starting with
    ``"<what> '<path>': "`` and naming the problem, and the array where one
    is at fault: a missing, empty or non-zip file, a single ``.npy`` array, a
    pickle (a PyTorch ``.pth`` written by ``torch.save``, zipped or not), a
    truncated or corrupted archive (bad CRC, damaged header), a member that is
    not a ``.npy`` array, or an array of Python objects.
    """
    path = os.fspath(path)

    def fail(problem: str):
        raise CheckpointError(f"{what} {path!r}: {problem}") from None

    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        fail("no such file")
    except IsADirectoryError:
        fail("is a directory, not a .npz file")
    except OSError as exc:
        fail(f"cannot be read ({type(exc).__name__}: {exc.strerror or exc})")
    if not magic:
        fail("is empty, not a .npz file")
    if magic.startswith(_NPY_MAGIC):
        fail("holds a single .npy array, not a .npz archive of named arrays")
    if magic[:1] == b"\x80":  # pickle protocol 2 or later: torch.save(..., _use_new_zipfile_serialization=False)
        fail(f"is a pickle (such as an old-style PyTorch .pth), not a .npz file; {_PICKLE_REFUSED}")
    if magic[:4] not in _ZIP_MAGIC:
        fail("is not a .npz file: empty, truncated or not a zip archive (no zip header)")

    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if any(name.endswith(".pkl") for name in names):
                fail(
                    f"is a PyTorch file written by torch.save (pickled objects in a zip), not a .npz file; "
                    f"{_PICKLE_REFUSED}"
                )
            for name in names:
                if not name.endswith(".npy"):
                    fail(f"member {name!r} is not a .npy array: not a .npz file written by numpy.savez")
                key = name[: -len(".npy")]
                try:
                    with zf.open(name) as member:
                        arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
                except ValueError as exc:
                    if "allow_pickle" in str(exc):  # an object array: numpy would unpickle it
                        fail(f"array {key!r} cannot be read: it holds Python objects; {_PICKLE_REFUSED}")
                    fail(f"array {key!r} cannot be read: damaged .npy header ({exc})")
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                    fail(
                        f"array {key!r} cannot be read: the archive is corrupted or truncated "
                        f"({type(exc).__name__}: {exc})"
                    )
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        fail(f"not a readable .npz file: empty, truncated or corrupted zip archive ({type(exc).__name__}: {exc})")
    return arrays


def check_numeric(arrays: Mapping[str, np.ndarray], *, path, what: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming ``path`` and the array if any array
    is not numbers (booleans, integers or reals) or holds NaN or infinity."""
    for name, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise CheckpointError(f"{what} {os.fspath(path)!r}: array {name!r} has dtype {arr.dtype}, expected numbers")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise CheckpointError(f"{what} {os.fspath(path)!r}: array {name!r} holds NaN or infinity")


def load(path: str | os.PathLike, *, verify: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint written by :func:`save`: returns ``(arrays, meta)``.

    Reads with :func:`read_npz` (no pickles). Every failure raises
    :class:`CheckpointError` naming ``path`` and the problem: a missing,
    empty, truncated or non-zip file, a pickle, a member that cannot be read
    (bad CRC, corrupted header, object array), a missing or invalid
    ``__meta__``, an array missing from or not listed in the metadata, and,
    with ``verify``, an array whose dtype, shape or SHA-256 differs from the
    one recorded at save time (the array is named).
    """
    path = os.fspath(path)

    def fail(problem: str, exc: BaseException | None = None):
        raise CheckpointError(f"checkpoint {path!r}: {problem}") from exc

    arrays = read_npz(path)
    if META_KEY not in arrays:
        fail(f"no {META_KEY!r} entry: not written by ds2ta_ref.checkpoint.save")
    text = arrays.pop(META_KEY)
    if text.dtype.kind != "U" or text.ndim != 0:
        fail(f"{META_KEY!r} must be a 0-d unicode string, got dtype {text.dtype} and shape {text.shape}")
    try:
        header = json.loads(str(text))
    except ValueError as exc:
        fail(f"{META_KEY!r} is not valid JSON ({exc})", exc)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        fail(f"{META_KEY!r} is not a {FORMAT} header")
    if header.get("version") != VERSION:
        fail(f"unsupported checkpoint version {header.get('version')!r} (this code reads {VERSION})")
    listing, meta = header.get("arrays"), header.get("meta")
    if not isinstance(listing, dict) or not isinstance(meta, dict):
        fail(f"{META_KEY!r} lacks its 'arrays' or 'meta' dict")

    missing = sorted(set(listing) - set(arrays))
    unlisted = sorted(set(arrays) - set(listing))
    if missing or unlisted:
        fail(f"arrays do not match the metadata: missing {missing}, not listed {unlisted}")
    if verify:
        for name, arr in arrays.items():
            record = listing[name]
            if not isinstance(record, dict):
                fail(f"metadata record of array {name!r} is not a dict")
            if arr.dtype.str != record.get("dtype") or list(arr.shape) != record.get("shape"):
                fail(
                    f"array {name!r} has dtype {arr.dtype.str} and shape {arr.shape}, but was saved "
                    f"with dtype {record.get('dtype')} and shape {record.get('shape')}"
                )
            if "sha256" in record and _sha256(arr) != record["sha256"]:
                fail(f"array {name!r} fails its SHA-256 check: the file was altered after it was saved")
    return arrays, meta


def check_training_arrays(
    arrays: Mapping[str, np.ndarray], meta: Mapping, path, *, trainable: Mapping[str, tuple], epochs: int
) -> None:
    """Check what a training checkpoint holds besides the model (issue 18 item 7).

    ``arrays`` as returned by :func:`load` (``param.*``, ``state.*``, ``optim.*``, ``rng.*``),
    ``trainable``: ``name -> shape`` of the parameters the optimizer updates, ``epochs``: the
    run's length. Raises :class:`CheckpointError` naming ``path`` and the key at fault, one line:

    * ``state.*running_var``: a variance, so no entry < 0;
    * ``optim.m.<name>``, ``optim.v.<name>`` for every trainable parameter with its shape,
      ``optim.v.*`` >= 0 (a running mean of squares), ``optim.step`` a 0-d integer >= 0,
      and no other ``optim.*`` entry;
    * ``rng.*``: the random generator state of :func:`rng_state_to_arrays`;
    * ``meta``: ``epoch`` an integer in ``[0, epochs]`` (a recorded epoch beyond the run's
      length is refused), ``step`` an integer >= 0, ``history`` one entry per epoch.
    """
    where = f"checkpoint {os.fspath(path)!r}"

    def fail(problem: str):
        raise CheckpointError(f"{where}: {problem}")

    for name, value in arrays.items():
        if name.startswith("state.") and name.endswith("running_var") and np.any(np.asarray(value) < 0):
            fail(f"array {name!r} holds a negative value ({float(np.min(value)):.3g}); a running variance is >= 0")
    expected = {f"optim.{kind}.{name}": tuple(shape) for kind in ("m", "v") for name, shape in trainable.items()}
    expected["optim.step"] = ()
    for key, shape in expected.items():
        if key not in arrays:
            fail(f"optimizer state {key!r} is missing (expected shape {shape}); the file cannot resume a run")
        if tuple(np.shape(arrays[key])) != shape:
            fail(f"optimizer state {key!r} has shape {tuple(np.shape(arrays[key]))}, expected {shape}")
    extra = sorted(k for k in arrays if k.startswith("optim.") and k not in expected)
    if extra:
        fail(f"optimizer state {extra[0]!r} is not a trainable parameter's ({len(extra)} unexpected optim.* entries)")
    step = np.asarray(arrays["optim.step"])
    if step.dtype.kind not in "iu" or int(step) < 0:
        fail(f"optimizer state 'optim.step' must be an integer >= 0, got {step!r}")
    bad = [k for k in expected if k.startswith("optim.v.") and np.any(np.asarray(arrays[k]) < 0)]
    if bad:
        fail(f"optimizer state {bad[0]!r} holds a negative value; a running mean of squares is >= 0")
    try:
        rng_from_arrays(arrays, prefix="rng.")
    except (ValueError, TypeError, OverflowError) as exc:
        fail(f"random generator state (rng.*) is missing or malformed: {exc}")
    epoch, step_count, history = meta.get("epoch"), meta.get("step"), meta.get("history")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= epochs:
        fail(
            f"metadata 'epoch' must be an integer in [0, {epochs}] (the run's length, train_config.epochs), "
            f"got {epoch!r}"
        )
    if isinstance(step_count, bool) or not isinstance(step_count, int) or step_count < 0:
        fail(f"metadata 'step' must be an integer >= 0, got {step_count!r}")
    if not isinstance(history, list) or len(history) != epoch:
        got = f"{len(history)} entries" if isinstance(history, list) else repr(history)
        fail(f"metadata 'history' must hold one entry per epoch ({epoch}), got {got}")


_SUPPORTED_BIT_GENERATORS = ("PCG64", "PCG64DXSM")
_MASK64 = (1 << 64) - 1


def _to_words(value: int) -> np.ndarray:
    """A 128-bit integer as two uint64 words ``[high, low]``."""
    return np.array([value >> 64, value & _MASK64], dtype=np.uint64)


def _from_words(words: np.ndarray) -> int:
    return (int(words[0]) << 64) | int(words[1])


def rng_state_to_arrays(rng: np.random.Generator, prefix: str = "rng.") -> dict[str, np.ndarray]:
    """The exact state of a PCG64 (or PCG64DXSM) ``Generator`` as pickle-free arrays.

    Keys (with ``prefix``): ``bit_generator`` (0-d unicode name), ``state``
    and ``inc`` (the 128-bit integers as uint64 ``[high, low]`` words, since
    they exceed int64), ``has_uint32`` (0-d int64) and ``uinteger`` (0-d
    uint64: the buffered half of a 64-bit draw). Merge them into the arrays
    given to :func:`save`; :func:`rng_from_arrays` inverts this.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    state = rng.bit_generator.state
    if state["bit_generator"] not in _SUPPORTED_BIT_GENERATORS:
        raise ValueError(f"rng uses {state['bit_generator']}; only {_SUPPORTED_BIT_GENERATORS} can be saved")
    return {
        prefix + "bit_generator": np.array(state["bit_generator"]),
        prefix + "state": _to_words(state["state"]["state"]),
        prefix + "inc": _to_words(state["state"]["inc"]),
        prefix + "has_uint32": np.array(state["has_uint32"], dtype=np.int64),
        prefix + "uinteger": np.array(state["uinteger"], dtype=np.uint64),
    }


def rng_from_arrays(arrays: Mapping[str, np.ndarray], prefix: str = "rng.") -> np.random.Generator:
    """A new ``Generator`` in exactly the state saved by :func:`rng_state_to_arrays`
    (it draws the same stream, bit for bit). ``arrays`` may hold other entries."""
    saved = {k: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}
    validate(
        saved,
        {
            prefix + "bit_generator": (),
            prefix + "state": (2,),
            prefix + "inc": (2,),
            prefix + "has_uint32": (),
            prefix + "uinteger": (),
        },
        what="random generator state",
    )
    for key in ("state", "inc", "uinteger"):
        if saved[prefix + key].dtype != np.uint64:
            raise ValueError(
                f"random generator state: {prefix + key!r} must be uint64, got {saved[prefix + key].dtype}"
            )
    name = str(saved[prefix + "bit_generator"])
    if name not in _SUPPORTED_BIT_GENERATORS:
        raise ValueError(f"random generator state: unsupported bit generator {name!r}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = {
        "bit_generator": name,
        "state": {"state": _from_words(saved[prefix + "state"]), "inc": _from_words(saved[prefix + "inc"])},
        "has_uint32": int(saved[prefix + "has_uint32"]),
        "uinteger": int(saved[prefix + "uinteger"]),
    }
    return np.random.Generator(bit_generator)
