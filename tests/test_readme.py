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
