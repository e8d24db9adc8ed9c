"""The specification in the repository, ``docs/spec.md``, stays true and reachable.

* every citation ``docs/spec.md §N`` (or ``§N.M``) anywhere in the repository
  names a section heading that exists, and so does every ``§N`` inside the spec;
* no file cites a specification that is not in the repository;
* every field of :class:`ds2ta_ref.ModelConfig` is listed in the conventions
  section (§8), so a new option cannot go undocumented;
* the preset table of §4.10 (sizes, parameter counts) equals the code;
* every ``module.function`` the spec names exists in the package.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import subprocess

import ds2ta_ref
from ds2ta_ref import model
from ds2ta_ref.config import ModelConfig, preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "docs", "spec.md")
HEADING = re.compile(r"^#{2,3} §(\d+(?:\.\d+)?) ", re.MULTILINE)
CITATION = re.compile(r"docs/spec\.md §(\d+(?:\.\d+)?)")
TEXT_SUFFIXES = (".py", ".md", ".ipynb", ".cfg", ".toml", ".txt", ".yml", ".yaml", ".sh", ".rst")


def _spec() -> str:
    with open(SPEC, encoding="utf-8") as f:
        return f.read()


def _tracked_text_files() -> list[str]:
    """Paths (relative to the repository root) of the tracked text files."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        paths = out.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
        paths = []
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(".") or d == ".ci"]
            paths += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files]
    return [p for p in paths if p.endswith(TEXT_SUFFIXES) or p.startswith(".ci/")]


def _read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
        return f.read()


def _section(text: str, number: str) -> str:
    """The text of section ``§number`` up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#{{2,3}}) §{re.escape(number)} .*$", text, re.MULTILINE)
    assert match, f"docs/spec.md has no section §{number}"
    level = len(match.group(1))
    end = re.compile(rf"^#{{2,{level}}} ", re.MULTILINE).search(text, match.end())
    return text[match.end() : end.start() if end else len(text)]


def test_spec_sections_are_the_agreed_ones():
    top = [n for n in HEADING.findall(_spec()) if "." not in n]
    assert top == [str(i) for i in range(1, 9)], top


def test_no_file_cites_a_specification_outside_the_repository():
    """Fails while a file still cites the old, unshipped spec. The message lists each
    remaining file and line: replace the citation with ``docs/spec.md §N`` (same N)."""
    forbidden = ("SPEC" + " §", "shared/" + "SPEC")  # split so that this file does not match itself
    hits = []
    for path in _tracked_text_files():
        for lineno, line in enumerate(_read(path).splitlines(), 1):
            if any(word in line for word in forbidden):
                hits.append(f"{path}:{lineno}: {line.strip()[:100]}")
    assert not hits, "files citing a spec that is not in the repository:\n" + "\n".join(hits)


def test_every_citation_names_an_existing_section():
    sections = set(HEADING.findall(_spec()))
    bad = []
    for path in _tracked_text_files():
        for lineno, line in enumerate(_read(path).splitlines(), 1):
            bad += [f"{path}:{lineno}: §{n}" for n in CITATION.findall(line) if n not in sections]
    # references inside the spec itself, "§4.10" or "§2" without the file name
    for lineno, line in enumerate(_spec().splitlines(), 1):
        if HEADING.match(line):
            continue
        bad += [f"docs/spec.md:{lineno}: §{n}" for n in re.findall(r"§(\d+(?:\.\d+)?)", line) if n not in sections]
    assert not bad, "citations of sections docs/spec.md does not have:\n" + "\n".join(bad)


def test_the_repository_cites_the_spec():
    """The citations exist at all (a regex that matched nothing would pass the test above)."""
    cited = [p for p in _tracked_text_files() if CITATION.search(_read(p))]
    assert "ds2ta_ref/config.py" in cited, cited


def test_every_model_config_field_is_in_the_conventions_section():
    conventions = _section(_spec(), "8")
    missing = [f.name for f in dataclasses.fields(ModelConfig) if f"`{f.name}`" not in conventions]
    assert not missing, f"ModelConfig fields not listed in docs/spec.md §8: {missing}"


def _preset_table() -> dict[str, dict[str, str]]:
    lines = [ln.strip() for ln in _section(_spec(), "4.10").splitlines() if ln.strip().startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = dict(zip(header, cells))
    return rows


def test_preset_table_matches_the_code():
    rows = _preset_table()
    assert set(rows) == set(ds2ta_ref.PRESETS), sorted(rows)
    for name, row in rows.items():
        cfg = preset(name)
        number = lambda key: int(row[key].replace(",", ""))  # noqa: E731
        assert number("params (DS2TA)") == model.count_params(cfg), name
        assert number("params (tasa=False, nsad=False)") == model.count_params(cfg.replace(tasa=False, nsad=False)), (
            name
        )
        assert row["input"] == f"{cfg.in_channels}x{cfg.img_size}x{cfg.img_size}", name
        for key, value in [
            ("T", cfg.T),
            ("depth", cfg.depth),
            ("D", cfg.dim),
            ("H", cfg.heads),
            ("d", cfg.head_dim),
            ("T_AW", cfg.window),
        ]:
            assert int(row[key]) == value, (name, key)
        for key, value in [("tau0", cfg.tau0), ("u0", cfg.u0)]:
            assert float(row[key]) == value, (name, key)


def test_cifar10_count_decomposition():
    """The worked decomposition of §4.10: patch splitter, one block, head, DS2TA's additions."""
    cfg = preset("cifar10")
    shapes = model.param_shapes(cfg.replace(tasa=False, nsad=False))
    size = lambda prefix: sum(
        int(__import__("math").prod(s))
        for k, s in shapes.items()  # noqa: E731
        if k.startswith(prefix)
    )
    text = " ".join(_section(_spec(), "4.10").split())
    assert size("patch_embed.") == 2_201_520 and "patch splitter 2,201,520" in text
    assert size("block.0.") == 1_779_840 and "each of the 4 blocks 1,779,840" in text
    assert size("head.") == 3_850 and "head 3,850" in text
    extra = model.count_params(cfg) - model.count_params(cfg.replace(tasa=False, nsad=False))
    assert extra == 292 and "= 292" in text


DOTTED = re.compile(r"`([a-z_]+)\.([A-Za-z_]+)[`(]")


def test_every_named_function_exists():
    """``module.function`` names in the spec resolve in the package (names drift otherwise)."""
    modules = {
        "lif",
        "surrogate",
        "tasa",
        "nsad",
        "layers",
        "sps",
        "attention",
        "mlp",
        "bnlif",
        "model",
        "config",
        "optim",
        "train",
        "data",
        "energy",
        "gradcheck",
        "checkpoint",
        "params",
        "spikformer",
        "golden",
    }
    missing = []
    for mod, attr in sorted(set(DOTTED.findall(_spec()))):
        if mod not in modules:
            continue
        try:
            obj = importlib.import_module(f"ds2ta_ref.{mod}")
        except ImportError:
            missing.append(f"ds2ta_ref.{mod}")
            continue
        if not hasattr(obj, attr):
            missing.append(f"ds2ta_ref.{mod}.{attr}")
    assert not missing, f"docs/spec.md names what the package does not have: {missing}"
