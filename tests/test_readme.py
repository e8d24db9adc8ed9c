"""The README cannot drift: its Python blocks run as written, and the commands it
shows use real subcommands and options."""

import os
import re
import shlex

import pytest

from ds2ta_ref import cli

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme(), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_every_python_block_runs_as_written(index, tmp_path, monkeypatch):
    """Each block is complete on its own: run in a fresh namespace, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    code = python_blocks()[index]
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})


def test_the_commands_shown_exist():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    shown = re.findall(r"`ds2ta-ref ([^`]*)`", readme()) + re.findall(r"&& ds2ta-ref ([^\n`]*)", readme())
    assert shown
    for text in shown:
        words = shlex.split(text)
        if words[0].startswith("--"):  # ds2ta-ref --version
            assert words[0] in parser._option_string_actions, text
            continue
        assert words[0] in commands, text
        options = commands[words[0]]._option_string_actions
        for word in words[1:]:
            if word.startswith("--"):
                assert word in options, f"{word} in `ds2ta-ref {text}`"


def _main_job_records():
    import glob
    import importlib.util
    import json

    root = os.path.dirname(README)
    spec = importlib.util.spec_from_file_location("main_job", os.path.join(root, "benchmarks", "main_job.py"))
    main_job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main_job)
    records = []
    for path in sorted(glob.glob(os.path.join(root, "benchmarks", "results", "main_job_*.json"))):
        with open(path) as f:
            records.append((path, json.load(f)))
    return main_job, records


def test_the_main_job_table_is_the_recorded_runs():
    """Every recorded run of benchmarks/main_job.py is in the README as that script formats it
    (seeds 0-2, mean and range, the CPU and the BLAS kernel), and its times come from a quiet
    machine: a 1-minute load average below 1.5 on 2 CPUs when it starts (at its end the load is
    the job's own, which trains on both cores)."""
    main_job, records = _main_job_records()
    assert len(records) >= 2  # the environment's kernel and the native one
    text = readme()
    for path, record in records:
        assert [r["seed"] for r in record["rows"]] == [0, 1, 2], path
        assert record["load_average"][0] < 1.5, f"{path}: measured on a loaded machine"
        assert main_job.readme_row(record) in text, f"README lacks the row of {path}: {main_job.readme_row(record)}"


def test_the_main_job_check_rejects_a_changed_number():
    main_job, records = _main_job_records()
    path, record = records[0]
    record["rows"][0]["test_acc"] += 1 / 359  # one more digit right
    assert main_job.readme_row(record) not in readme()


def _bench_rows(text: str) -> list[str]:
    """The rows of the step benchmark's tables (one training step, NumPy against PyTorch) in ``text``."""
    return [line for line in text.splitlines() if re.match(r"\| (tiny|cifar10) \| \d+ \| float(32|64) \|", line)]


def test_the_benchmark_tables_are_recorded_runs():
    """Every row of the README's step benchmark is a row of a recorded run in benchmarks/results/."""
    import glob

    root = os.path.dirname(README)
    paths = glob.glob(os.path.join(root, "benchmarks", "results", "bench_model_*.md"))
    recorded = "".join(open(p).read() for p in paths)
    rows = _bench_rows(readme())
    assert len(rows) >= 4, rows  # tiny and cifar10, two kernels
    missing = [row for row in rows if row not in recorded]
    assert not missing, missing
    changed = rows[0].replace("|", "| 9", 4)  # the check can fail: a changed row is not in any record
    assert changed not in recorded


@pytest.mark.parametrize(
    "record, rows",
    [
        ("recipe_search_haswell_1thread.jsonl", 40),
        ("recipe_search_haswell_1thread_seeds3-8.jsonl", 3),
        ("recipe_search_defaults_5a81513_haswell_1thread.jsonl", 1),
        ("recipe_search_defaults_ee5dd3d_haswell_1thread.jsonl", 1),
    ],
)
def test_the_recipe_search_tables_are_their_records(record, rows):
    import importlib.util

    root = os.path.dirname(README)
    spec = importlib.util.spec_from_file_location("recipe_search", os.path.join(root, "benchmarks", "recipe_search.py"))
    search = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(search)
    lines = search.show(os.path.join(root, "benchmarks", "results", record))
    assert len(lines) >= rows + 2  # header, rule, a row per recipe
    text = readme()
    assert all(line in text for line in lines), [line for line in lines if line not in text]
    changed = lines[2].replace("**", "**9", 1)  # the check can fail: a changed mean is not in the README
    assert changed not in text
