"""The tutorials' checked exercises (``ds2ta_ref.exercises``): every one is solvable, and the check can fail.

Each ``tutorials/solutions/nbNN.py`` holds ``SOLUTIONS = {"NN.k": answer}``; the solution must pass
through ``exercises.check``, the very function the notebook's check cell calls. A stub (``None``, or a
function raising ``NotImplementedError``) gives "not done yet" instead of an error, and a wrong answer FAIL.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ds2ta_ref import exercises

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS_DIR = ROOT / "tutorials" / "solutions"
NOTEBOOKS = sorted(p.stem[2:] for p in (ROOT / "ds2ta_ref" / "exercises").glob("nb[0-9][0-9].py"))


def solutions(notebook: str) -> dict:
    spec = importlib.util.spec_from_file_location(f"solutions_nb{notebook}", SOLUTIONS_DIR / f"nb{notebook}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SOLUTIONS


ALL = [(nb, ex.key) for nb in NOTEBOOKS for ex in exercises.exercises_of(nb)]


def test_every_exercise_has_a_solution_and_the_notebook_checks_it():
    assert ALL, "no exercises found"
    for nb in NOTEBOOKS:
        keys = [ex.key for ex in exercises.exercises_of(nb)]
        assert sorted(solutions(nb)) == sorted(keys), nb
        assert all(k.startswith(f"{nb}.") for k in keys) and len(set(keys)) == len(keys)
        (notebook,) = (ROOT / "tutorials").glob(f"{nb}_*.ipynb")
        code = "\n".join(
            "".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"
        )
        for key in keys:
            assert f'exercises.check("{key}"' in code, f"{notebook.name} does not check exercise {key}"


@pytest.mark.parametrize("notebook, key", ALL)
def test_solution_passes_the_check(notebook, key, capsys):
    result = exercises.check(key, solutions(notebook)[key])
    assert result.passed, result.line
    assert capsys.readouterr().out.strip() == result.line and result.line.endswith("-> PASS")


@pytest.mark.parametrize("notebook, key", ALL)
def test_stub_is_not_done_yet(notebook, key):
    ex = exercises.get(key)
    if ex.cases is None:
        stub = None
    else:

        def stub(*args):
            raise NotImplementedError  # your code here

    result = exercises.check(key, stub, verbose=False)
    assert result.status == exercises.NOT_DONE and not result.passed and result.line.endswith("not done yet")


def _wrong(answer):
    """A slightly wrong answer: every number of the right one moved by 1 % (plus 1 for the zeros)."""

    def nudge(x):
        if isinstance(x, (tuple, list)):
            return type(x)(nudge(v) for v in x)
        x = np.asarray(x, dtype=np.float64)
        return x * 1.01 + 1.0

    if callable(answer):
        return lambda *args: nudge(answer(*args))
    return nudge(answer)


@pytest.mark.parametrize("notebook, key", ALL)
def test_wrong_answer_fails(notebook, key):
    result = exercises.check(key, _wrong(solutions(notebook)[key]), verbose=False)
    assert result.status == "FAIL" and result.rel_error > exercises.get(key).tol, result.line


def test_wrong_shape_and_bad_key():
    ex = exercises.Exercise("99.1", "toy", lambda: np.zeros(3))
    assert exercises.check(ex, np.zeros(4), verbose=False).status == "FAIL"
    assert exercises.check(ex, np.zeros(3), verbose=False).passed
    assert exercises.rel_error((1.0, 2.0), (1.0,)) == float("inf")
    assert exercises.rel_error(np.array([np.nan]), np.array([1.0])) == float("inf")
    with pytest.raises(ValueError, match="exercise key"):
        exercises.get("01")
    with pytest.raises(ValueError, match="exercise key"):
        exercises.get("01.99")
    with pytest.raises(TypeError, match="asks for a value"):
        exercises.check(ex, lambda: 0, verbose=False)


def test_student_bug_propagates():
    ex = exercises.Exercise("99.2", "toy", lambda a: a, lambda: [(1.0,)])

    def buggy(a):
        return a / "x"

    with pytest.raises(TypeError):
        exercises.check(ex, buggy, verbose=False)
