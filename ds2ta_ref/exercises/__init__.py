"""Checkable exercises for the tutorials, CS231n style: a stub the student fills in, a check.

Each notebook ``NN`` has a module ``ds2ta_ref.exercises.nbNN`` with a list ``EXERCISES`` of
:class:`Exercise`; an exercise is named ``"NN.k"`` (notebook NN, exercise k). In the notebook, a stub
cell the student fills in is followed by a check cell::

    def threshold_currents(tau_m, v_threshold):
        raise NotImplementedError  # your code here

    result = exercises.check("01.1", threshold_currents)

which prints one line::

    Exercise 01.1 (the currents that fire ever and at every step): not done yet
    Exercise 01.1 (the currents that ...): relative error 1.2e-10 over 4 cases (tolerance 1e-06) -> PASS
    Exercise 01.1 (the currents that ...): relative error 3.3e-01 over 4 cases (tolerance 1e-06) -> FAIL

(``not done yet`` while the stub raises ``NotImplementedError`` or the answer is ``None``).

An exercise either asks for a *function*: the check calls the student's function and the library's
``reference`` on the same argument tuples ``cases()`` and compares every result; or for a *value*
(``cases=None``): the answer is a number or an array (``answer = None  # your code here`` until done),
compared with ``reference()``. The comparison is CS231n's relative error,
``max |a - b| / max(1e-8, |a| + |b|)`` over all entries (0 where both are 0), against the
exercise's tolerance. Shapes must agree; tuples and lists of results are compared entry by entry.

The solutions live in ``tutorials/solutions/nbNN.py`` as a dictionary ``SOLUTIONS = {"NN.k": answer}``;
``tests/test_exercises.py`` runs every solution through this same :func:`check` (so each exercise is
proven solvable) and shows that a wrong answer is rejected.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

NOT_DONE = "not done yet"


@dataclass(frozen=True)
class Exercise:
    """One checkable exercise.

    - ``key``: ``"NN.k"``, notebook NN, exercise k.
    - ``title``: a few words, printed by the check.
    - ``reference``: the library's answer: ``reference(*case)`` for a function exercise,
      ``reference()`` for a value exercise.
    - ``cases``: a function returning the list of argument tuples a function exercise is checked on
      (built from fixed seeds, so a check never depends on the notebook's state); ``None`` for a
      value exercise.
    - ``tol``: the largest relative error that passes.
    """

    key: str
    title: str
    reference: Callable[..., Any]
    cases: Callable[[], list] | None = None
    tol: float = 1e-9


@dataclass(frozen=True)
class Result:
    """What :func:`check` found. ``status`` is ``"PASS"``, ``"FAIL"`` or ``NOT_DONE``."""

    key: str
    status: str
    rel_error: float | None
    line: str

    @property
    def passed(self) -> bool:
        return self.status == "PASS"


def rel_error(a, b) -> float:
    """Largest relative error ``|a - b| / max(1e-8, |a| + |b|)`` over all entries (CS231n's).

    ``a`` and ``b`` are numbers, arrays, or (nested) tuples/lists of them; inf if the shapes or the
    structure differ.
    """
    if isinstance(b, (tuple, list)):
        if not isinstance(a, (tuple, list)) or len(a) != len(b):
            return float("inf")
        return max((rel_error(x, y) for x, y in zip(a, b)), default=0.0)
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        return float("inf")
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        same = np.array_equal(a, b, equal_nan=True)
        return 0.0 if same else float("inf")
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def get(key: str) -> Exercise:
    """The exercise named ``"NN.k"``, from ``ds2ta_ref.exercises.nbNN``."""
    if not isinstance(key, str) or "." not in key:
        raise ValueError(f"exercise key must be a string 'NN.k' (notebook NN, exercise k), got {key!r}")
    for exercise in exercises_of(key.split(".", 1)[0]):
        if exercise.key == key:
            return exercise
    raise ValueError(f"exercise key {key!r}: no such exercise in ds2ta_ref.exercises.nb{key.split('.', 1)[0]}")


def exercises_of(notebook: str) -> list:
    """The exercises of notebook ``"NN"`` (a list of :class:`Exercise`, in order)."""
    try:
        module = importlib.import_module(f"{__name__}.nb{notebook}")
    except ModuleNotFoundError as exc:
        raise ValueError(f"notebook must name a module ds2ta_ref.exercises.nbNN, got {notebook!r}") from exc
    return list(module.EXERCISES)


def check(exercise: str | Exercise, answer: Any, *, verbose: bool = True) -> Result:
    """Check ``answer`` (a function or a value, see the module docstring) and print one line.

    Never raises because the stub is unfilled: ``answer is None`` or a function raising
    ``NotImplementedError`` gives ``NOT_DONE``. Any other exception of the student's function
    propagates, with its traceback.
    """
    ex = get(exercise) if isinstance(exercise, str) else exercise
    head = f"Exercise {ex.key} ({ex.title}): "
    if answer is None:
        return _report(Result(ex.key, NOT_DONE, None, head + NOT_DONE), verbose)
    if ex.cases is None:
        if callable(answer):
            raise TypeError(f"exercise {ex.key} asks for a value, got the function {answer!r}")
        err, where = rel_error(answer, ex.reference()), ""
    else:
        if not callable(answer):
            raise TypeError(f"exercise {ex.key} asks for a function, got {type(answer).__name__}")
        cases = ex.cases()
        err = 0.0
        for case in cases:
            try:
                got = answer(*case)
            except NotImplementedError:
                return _report(Result(ex.key, NOT_DONE, None, head + NOT_DONE), verbose)
            err = max(err, rel_error(got, ex.reference(*case)))
        where = f" over {len(cases)} cases"
    status = "PASS" if err <= ex.tol else "FAIL"
    line = f"{head}relative error {err:.1e}{where} (tolerance {ex.tol:g}) -> {status}"
    return _report(Result(ex.key, status, err, line), verbose)


def _report(result: Result, verbose: bool) -> Result:
    if verbose:
        print(result.line)
    return result
