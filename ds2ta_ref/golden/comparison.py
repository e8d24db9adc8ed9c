"""Comparing a candidate with a golden file, tensor by tensor, and a suite of them (docs/golden.md).

:func:`compare` ``(reference, candidate)`` checks a candidate file (another
implementation's outputs under the golden keys) and names the first tensor,
in forward order, that departs; :func:`compare_suite` ``(golden_dir,
candidate_dir)`` does it for every case of a suite. The reports are made by
:mod:`ds2ta_ref.golden.report`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from . import report
from .layout import FORMAT_VERSION, GoldenFileError, forward_order, is_input, read, read_golden

__all__ = ["DEFAULT_RTOL", "Comparison", "SuiteComparison", "TensorResult", "compare", "compare_suite"]

DEFAULT_RTOL = 1e-7  # a float64 implementation passes at 1e-10; a float32 one needs an explicit rtol


class TensorResult(NamedTuple):
    """One tensor's comparison: ``max_abs = max|c - r|``, ``max_rel = max_abs / scale`` (see :func:`compare`)."""

    key: str
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""  # why a tensor failed other than by its numbers, or what else to know (dtype, entries)


class Comparison(NamedTuple):
    """The result of :func:`compare`; ``str()`` or :meth:`table` gives the report."""

    results: list  # TensorResult, worst first (failures first, then by max_rel)
    missing: list  # reference keys (not inputs) absent from the candidate, in forward order
    unexpected: list  # candidate keys the reference does not have
    first_departure: str | None  # the first key in forward order that fails or is missing
    rtol: float
    atol: float
    floor: float  # relative to the largest magnitude of the tensor's group
    candidate_name: str = "the candidate"
    narrow_dtypes: tuple = ()  # float dtypes narrower than float64 found in the candidate

    @property
    def passed(self) -> bool:
        return self.first_departure is None and not self.unexpected

    def table(self, max_rows: int | None = None) -> str:
        """The report: a table worst first (``max_rows`` rows at most, all failures shown first)."""
        return report.comparison_table(self, max_rows)

    def __str__(self) -> str:
        return self.table()


class SuiteComparison(NamedTuple):
    """The result of :func:`compare_suite`: one :class:`Comparison` per case compared."""

    cases: dict  # case name -> Comparison, in the suite's order
    missing_cases: list  # cases without a candidate file
    skipped: bool  # True: the missing cases were skipped (allowed), False: they fail the suite

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases.values()) and (self.skipped or not self.missing_cases)

    def table(self) -> str:
        """One line per case and a total (:func:`ds2ta_ref.golden.report.suite_table`)."""
        return report.suite_table(self)

    def __str__(self) -> str:
        return self.table()


def _group(key: str) -> str:
    """``grad/head.bias`` -> ``grad``; ``lif/grad/x`` -> ``lif``; ``logits`` -> ``logits``."""
    return key.split("/", 1)[0]


def _max_abs(arr: np.ndarray) -> float:
    return float(np.max(np.abs(arr))) if arr.dtype.kind in "biuf" and arr.size else 0.0


def _is_binary(arr: np.ndarray) -> bool:
    return arr.size > 0 and bool(np.all((arr == 0) | (arr == 1)))


def _compare_one(
    key: str, ref: np.ndarray, cand: np.ndarray, rtol: float, atol: float, floor: float, narrow_fails: bool
) -> TensorResult:
    """``floor`` here is absolute: the floor times the largest magnitude of the key's group."""
    shape = tuple(ref.shape)
    numeric = "biuf"
    if ref.dtype.kind not in numeric or cand.dtype.kind not in numeric:  # text: config, options
        same = ref.dtype.kind == cand.dtype.kind and ref.shape == cand.shape and np.array_equal(ref, cand)
        return TensorResult(
            key, shape, 0.0 if same else math.inf, 0.0 if same else math.inf, same, "" if same else "text differs"
        )
    if ref.shape != cand.shape:
        return TensorResult(key, shape, math.inf, math.inf, False, f"candidate shape {tuple(cand.shape)}")
    if ref.size == 0:
        return TensorResult(key, shape, 0.0, 0.0, True)
    r = ref.astype(np.float64)
    c = cand.astype(np.float64)
    diff = np.abs(c - r)
    max_abs = float(np.max(diff)) if np.all(np.isfinite(diff)) else math.inf
    scale = max(_max_abs(r), floor)
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    ok = max_abs <= atol + rtol * scale
    notes = []
    narrow = cand.dtype.kind == "f" and cand.dtype.itemsize < 8 and ref.dtype.kind == "f"
    if narrow:
        notes.append(f"candidate {cand.dtype}")
        if narrow_fails:
            ok = False
            notes[-1] += f": the default rtol={DEFAULT_RTOL:g} is for float64; pass an explicit rtol (float32: ~1e-4)"
    if not ok and _is_binary(r) and not narrow:
        differ = np.argwhere(c != r)
        if len(differ):
            notes.append(f"{len(differ)} of {r.size} entries differ, the first at {tuple(int(i) for i in differ[0])}")
    return TensorResult(key, shape, max_abs, max_rel, ok, "; ".join(notes))


def _candidate(candidate) -> tuple[dict, str]:
    if isinstance(candidate, (str, os.PathLike)):
        return read(candidate, what="candidate"), f"candidate {os.fspath(candidate)!r}"
    if isinstance(candidate, Mapping):
        return dict(candidate), "the candidate"
    raise TypeError(f"candidate must be a path or a mapping of arrays, got {type(candidate).__name__}")


def compare(
    reference,
    candidate,
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    floor: float = 1e-4,
    only: Sequence[str] | None = None,
) -> Comparison:
    """Compare a candidate's tensors with a golden file's, key by key.

    For every key of ``reference`` (restricted to the keys starting with one of
    ``only``, if given) present in ``candidate``::

        max_abs = max |candidate - reference|
        scale   = max(max |reference|, floor * G)
        max_rel = max_abs / scale
        pass   <=>  max_abs <= atol + rtol * scale

    where ``G`` is the largest ``max |reference|`` of the key's group (the part
    before the first ``/``: every ``grad/`` tensor is one group, ``lif/...``
    another; a key without ``/`` is its own group). The floor makes a tensor
    whose true value is ~0 count as small *relative to its kind*: the gradient
    of a bias that feeds a training-mode BatchNorm is exactly 0 in exact
    arithmetic and ~1e-16 of the largest gradient in float64, on either side.
    Text entries (``config``, ``*/options``) must be equal; a shape mismatch fails.
    A candidate tensor in a float type narrower than float64 fails unless
    ``rtol`` is given explicitly (the default ``rtol=None`` means ``1e-7`` for
    float64); the report names its dtype either way. A failing 0/1 tensor
    (spikes) reports how many entries differ and the index of the first.

    Args:
        reference, candidate: paths of ``.npz`` files or mappings of arrays.
        rtol, atol, floor: tolerances (>= 0) as above; ``floor`` is relative to the group.
        only: key prefixes, e.g. ``["lif/"]`` or ``["grad/", "logits"]``; they must select
            at least one key of the reference.

    Returns:
        A :class:`Comparison`: per-tensor results worst first, the missing keys
        (reference outputs absent from the candidate; inputs may be absent), the
        unexpected keys (in the candidate, not in the reference), and the first
        key in forward order that fails or is missing. It passes when nothing
        fails, is missing or is unexpected.

    Raises:
        ValueError (:class:`~ds2ta_ref.golden.layout.GoldenFileError` for a file) naming the
        argument or file at fault: a bad tolerance, a file that cannot be read, a golden file
        with an invalid ``config`` or lacking a key, ``only`` selecting nothing.
    """
    explicit = rtol is not None
    rtol = DEFAULT_RTOL if rtol is None else rtol
    for name, value in (("rtol", rtol), ("atol", atol), ("floor", floor)):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if only is not None and (isinstance(only, str) or not all(isinstance(p, str) for p in only)):
        raise ValueError(f"only must be a list of key prefixes (strings), got {only!r}")
    ref, cfg, version = read_golden(reference)
    cand, cand_name = _candidate(candidate)

    def selected(key):
        return not only or any(key.startswith(prefix) for prefix in only)

    group_max: dict[str, float] = {}
    for key, arr in ref.items():
        group_max[_group(key)] = max(group_max.get(_group(key), 0.0), _max_abs(np.asarray(arr)))
    order = forward_order(cfg, version)
    order += sorted(set(ref) - set(order))  # keys of a newer writer, compared after the known ones
    keys = [k for k in order if k in ref and selected(k)]
    if not keys:  # only an `only` can select nothing: read_golden checked the keys the config requires
        raise ValueError(
            f"only={list(only or ())!r} selects no key of the golden file: nothing would be compared "
            f"(prefixes look like 'lif/', 'act/block.0.', 'grad/', 'logits')"
        )
    results, missing = [], []
    for key in keys:
        if key in cand:
            results.append(
                _compare_one(
                    key,
                    np.asarray(ref[key]),
                    np.asarray(cand[key]),
                    rtol,
                    atol,
                    floor * group_max[_group(key)],
                    narrow_fails=not explicit,
                )
            )
        elif not is_input(key):
            missing.append(key)
    if not results and not missing:
        raise ValueError(
            f"{cand_name} holds none of the {len(keys)} selected keys and the golden file "
            f"expects none of them computed: nothing would be compared"
        )
    failed = {r.key for r in results if not r.ok} | set(missing)
    first = next((k for k in keys if k in failed), None)
    newer = set(forward_order(cfg)) if version < FORMAT_VERSION else set()  # keys an older file lacks
    unexpected = sorted(k for k in cand if k not in ref and k not in newer and selected(k))
    dtypes = {np.asarray(cand[r.key]).dtype for r in results}
    narrow = tuple(sorted(str(t) for t in dtypes if t.kind == "f" and t.itemsize < 8))
    results.sort(key=lambda r: (r.ok, -r.max_rel, -r.max_abs))  # failures first, then worst first
    return Comparison(results, missing, unexpected, first, float(rtol), float(atol), float(floor), cand_name, narrow)


def suite_cases(golden_dir: str | os.PathLike) -> list[str]:
    """The case names of a suite folder, from its ``suite.json``; :class:`GoldenFileError` naming the file."""
    path = os.path.join(os.fspath(golden_dir), "suite.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        names = [case["name"] for case in manifest["cases"]]
    except FileNotFoundError:
        raise GoldenFileError(
            f"{os.fspath(golden_dir)!r} is not a golden suite: it has no suite.json "
            f"(write one with ds2ta-ref golden --suite DIR)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GoldenFileError(f"suite file {path!r} cannot be read: {type(exc).__name__}: {exc}") from None
    if not names or not all(isinstance(n, str) and n and os.sep not in n and n not in (".", "..") for n in names):
        raise GoldenFileError(f"suite file {path!r} lists no valid case names: {names!r}")
    return names


def compare_suite(
    golden_dir: str | os.PathLike,
    candidate_dir: str | os.PathLike,
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    floor: float = 1e-4,
    skip_missing: bool = False,
) -> SuiteComparison:
    """Compare every case of a suite (``golden_dir/<case>.npz``, listed in ``golden_dir/suite.json``)
    with ``candidate_dir/<case>.npz``, as :func:`compare` does.

    It passes when every case passes and every case has a candidate file; with
    ``skip_missing`` a case without a candidate file is skipped (and named), but
    at least one case must be compared.
    """
    if not os.path.isdir(candidate_dir):
        raise GoldenFileError(f"candidate folder {os.fspath(candidate_dir)!r} is not a directory")
    cases, missing = {}, []
    for name in suite_cases(golden_dir):
        path = os.path.join(os.fspath(candidate_dir), f"{name}.npz")
        if not os.path.exists(path):
            missing.append(name)
            continue
        cases[name] = compare(
            os.path.join(os.fspath(golden_dir), f"{name}.npz"), path, rtol=rtol, atol=atol, floor=floor
        )
    if not cases:
        raise GoldenFileError(
            f"candidate folder {os.fspath(candidate_dir)!r} holds none of the suite's "
            f"{len(missing)} case files ({', '.join(f'{n}.npz' for n in missing)})"
        )
    return SuiteComparison(cases, missing, bool(skip_missing))
