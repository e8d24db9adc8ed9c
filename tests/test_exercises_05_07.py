"""The checked exercises of tutorials 05-07 (``ds2ta_ref.exercises.nb05`` .. ``nb07``): each solution in
``tutorials/solutions/`` passes the check the notebook calls, an unfilled stub is "not done yet" (no
error), a wrong answer is rejected, and the references are the library's own numbers.

(tests/test_exercises.py checks every notebook's exercises the same generic way; this file adds the
wrong answers specific to these exercises.)
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ds2ta_ref import exercises, golden
from ds2ta_ref.exercises import nb06, nb07
from ds2ta_ref.gradcheck import small_model_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {
    "05": "05_training.ipynb",
    "06": "06_attention_sparsity_energy.ipynb",
    "07": "07_check_your_implementation.ipynb",
}


def solutions(nb: str) -> dict:
    spec = importlib.util.spec_from_file_location(f"solutions_nb{nb}", ROOT / "tutorials" / "solutions" / f"nb{nb}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SOLUTIONS


KEYS = [(nb, ex.key) for nb in NOTEBOOKS for ex in exercises.exercises_of(nb)]


def test_each_notebook_has_two_checked_exercises_with_stub_and_check_cells():
    for nb, name in NOTEBOOKS.items():
        keys = [ex.key for ex in exercises.exercises_of(nb)]
        assert len(keys) == 2 and sorted(solutions(nb)) == keys
        cells = json.loads((ROOT / "tutorials" / name).read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        for key in keys:
            (at,) = [i for i, src in enumerate(code) if f'exercises.check("{key}"' in src]
            assert "raise NotImplementedError  # your code here" in code[at - 1], f"{name}: no stub before {key}"


@pytest.mark.parametrize("nb, key", KEYS)
def test_solution_passes_stub_is_not_done(nb, key, capsys):
    result = exercises.check(key, solutions(nb)[key])
    assert result.passed and capsys.readouterr().out.strip().endswith("-> PASS"), result.line

    def stub(*args):
        raise NotImplementedError  # your code here

    assert exercises.check(key, stub, verbose=False).status == exercises.NOT_DONE


def _fail(key, answer):
    result = exercises.check(key, answer, verbose=False)
    assert result.status == "FAIL", result.line


def test_wrong_answers_are_rejected():
    sol = {key: fn for nb in NOTEBOOKS for key, fn in solutions(nb).items()}

    # 05.1: the warmup starting at 0 (step k / warmup) instead of (k + 1) / (warmup + 1)
    def warmup_from_zero(steps, total, warmup, base, floor):
        right = sol["05.1"](steps, total, warmup, base, floor)
        return np.array([base * k / warmup if k < warmup else v for k, v in zip(steps, right)])

    _fail("05.1", warmup_from_zero)
    # 05.2: the bias corrections of step 1 at every step
    _fail("05.2", lambda p, g, m, v, k, lr, wd, decay: sol["05.2"](p, g, m, v, 1, lr, wd, decay))
    # 06.1: sparsity counted over one sample only
    _fail("06.1", lambda A, d: sol["06.1"](A[:, :1], d))
    # 06.2: the sign of df/du flipped
    _fail("06.2", lambda *args: -sol["06.2"](*args))
    # 07.1: the reset's spike not detached would change dx; simplest wrong one: no reset at all in the forward
    _fail(
        "07.1",
        lambda x, dspikes, options: (
            np.cumsum(x, axis=0) >= options["v_threshold"],
            sol["07.1"](x, dspikes, options)[1],
        ),
    )

    # 07.2: lags weighted by 2^(-tau * lag) with tau unrounded
    def unrounded(s, w, b, tau, window):
        mix = sum(
            2.0 ** (-float(tau) * lag) * np.concatenate([np.zeros_like(s[:lag]), s[: len(s) - lag]])
            for lag in range(window)
        )
        return mix @ w.T + b

    _fail("07.2", unrounded)


def test_07_references_are_the_golden_files_numbers():
    ref = golden.build(small_model_config(), seed=7)
    lif_case, tasa_case = nb07._lif_cases()[0], nb07._tasa_cases()[0]  # from the golden file of seed 7
    spikes, dx = nb07.lif_kernel(*lif_case)
    np.testing.assert_array_equal(spikes, ref["lif/out/spikes"])
    np.testing.assert_allclose(dx, ref["lif/grad/x"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(nb07.tasa_kernel(*tasa_case), ref["tasa/out/out"], rtol=1e-12, atol=1e-15)
    assert json.loads(str(ref["lif/options"]))["detach_reset"] is True  # what the exercise text says


def test_06_energy_reference_is_table_3():
    A, d = nb06._energy_cases()[0]
    sparsity, pj = nb06.block_energy(A, d)
    T, _, H, N, _ = A.shape
    assert sparsity == np.mean(A == 0) and abs(pj - 0.9 * T * H * N * N * d * (1 - sparsity)) < 1e-9


def test_07_kernel_cell_compares_a_solved_exercise_with_the_golden_file(capsys):
    """The notebook cell that holds the student's kernels against the notebook's golden file: with the
    solutions every kernel tensor passes; with the stubs it says what is missing, without an error."""
    cells = json.loads((ROOT / "tutorials" / NOTEBOOKS["07"]).read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    (source,) = [src for src in code if "mine_kernels = {}" in src]
    sol = solutions("07")
    namespace = {
        "ref": golden.build(small_model_config(), seed=1),
        "golden": golden,
        "json": json,
        "np": np,
        "my_lif": sol["07.1"],
        "my_tasa": sol["07.2"],
    }
    exec(source, namespace)  # noqa: S102 (the notebook's own cell, read from the repository)
    out = capsys.readouterr().out
    assert namespace["kernels"].passed and "compared 3 tensors, 0 fail" in out, out

    def stub(*args):
        raise NotImplementedError  # your code here

    exec(source, {**namespace, "my_lif": stub, "my_tasa": stub})  # noqa: S102 (as above)
    assert "is not written yet" in capsys.readouterr().out
