"""Sphinx configuration of the ds2ta_ref documentation site.

Build (offline, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W -b html docs docs/_build/html

What this file does besides the usual settings, each at build time, so that a new
module, notebook or page is picked up without editing a list here:

* the API reference: one page per public module of ``ds2ta_ref``, found by walking the
  package's folders (``_public_modules``), written to ``docs/api/`` (generated, not tracked);
* the course: every ``tutorials/*.ipynb`` executed with nbclient in ``tutorials/`` (its own
  working directory) at the small sizes of ``DOC_SIZES``, written with its outputs to
  ``docs/tutorials/`` (generated, not tracked) and rendered by myst-nb without executing
  again; an executed notebook is reused while its source, its sizes and the package's code
  are unchanged;
* links: the Markdown files are written for a file browser (``../tutorials/x.ipynb``,
  ``../README.md``, ``docs/spec.md``); ``rewrite_links`` maps them to the site's pages;
* MathJax 3 is served from the site itself (copied from the ``django-static-mathjax``
  wheel of the ``docs`` extra), so nothing is fetched when a page is viewed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
from pathlib import Path

from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
PACKAGE = "ds2ta_ref"
sys.path.insert(0, str(ROOT))

import ds2ta_ref  # noqa: E402

logger = logging.getLogger(__name__)

# -- project ----------------------------------------------------------------------------------
project = "ds2ta_ref"
author = "the ds2ta_ref authors"
copyright = "the ds2ta_ref authors, MIT licence"
release = ds2ta_ref.__version__
version = release

extensions = [
    "myst_nb",  # loads myst_parser too
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "spec-notes.md", "**.ipynb_checkpoints"]
templates_path = []

# -- Markdown and notebooks -------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # GitHub-style anchors: spec.md links "#8-conventions-..."
nb_execution_mode = "off"  # executed by this file (``_execute_notebooks``), see the course page
nb_merge_streams = True
nb_ipywidgets_js = {}  # no widget JavaScript from a CDN: slider outputs are flattened below

# -- API reference ----------------------------------------------------------------------------
napoleon_google_docstring = True  # the package's docstrings: "Args:", "Returns:"
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
if importlib.util.find_spec("torch") is None:  # ds2ta_ref.torch documents without torch installed
    autodoc_mock_imports = ["torch"]

# -- HTML -------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"ds2ta_ref {release}"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"  # else a browser asks for /favicon.ico and logs a 404
html_theme_options = {
    "logo": {"text": f"ds2ta_ref {release}"},
    "navbar_end": ["theme-switcher"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
    "show_version_warning_banner": False,
    "header_links_before_dropdown": 5,
}
html_last_updated_fmt = None
html_context = {"default_mode": "light"}  # else the theme logs a console error on a fresh profile
html_show_sourcelink = False
# MathJax from the site itself: the folder is copied into _static/mathjax after the build.
mathjax_path = "mathjax/tex-mml-chtml.js"
MATHJAX_PARTS = ["tex-mml-chtml.js", "a11y", "adaptors", "input", "output", "sre", "ui"]

# -- the course: notebooks executed at small sizes --------------------------------------------
# Values injected after each notebook's ``parameters`` cell (the same knobs tests/test_notebooks.py
# sets, a little larger so that the curves mean something). A notebook not listed runs as stored.
DOC_SIZES = {
    "01_lif_neuron.ipynb": {},
    "02_tasa_figure2.ipynb": {},
    "03_nsad_figure4.ipynb": {},
    "04_model.ipynb": {"batch": 2, "T": 4, "depth": 2, "grad_entries": 1},
    "05_training.ipynb": {"epochs": 3, "train_subset": 480, "test_subset": 240},
    "06_attention_sparsity_energy.ipynb": {
        "epochs": 2,
        "train_subset": 360,
        "test_subset": 180,
        "seeds": (0,),
        "sweep_u0": (1.0, 3.0),
    },
}
CELL_TIMEOUT = 600  # seconds per cell


# -- links written for a file browser, mapped to the site's pages ------------------------------
LINK = re.compile(r"(!?\[[^\]\n]*\]\()([^)\s]+)(\))")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


# Files at the repository's root shown as pages (their stub in docs/ gets their text at build time).
ROOT_PAGES = {"README.md": "readme", "CONTRIBUTING.md": "contributing"}


def site_path(repo_path: str) -> str:
    """Where the file at ``repo_path`` (relative to the repository root) is in the site's source
    folder ``docs/``: a page (``docs/x.md`` -> ``x.md``, ``tutorials/x.ipynb``, ``README.md`` ->
    ``readme.md``) or, for any other file, its path from ``docs/`` (``../figures/x.png``)."""
    if repo_path in ROOT_PAGES:
        return ROOT_PAGES[repo_path] + ".md"
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/") :]
    if repo_path.startswith("tutorials/") and repo_path.endswith(".ipynb"):
        return repo_path
    return "../" + repo_path


def rewrite_links(text: str, repo_path: str, page: str) -> str:
    """Rewrite the relative Markdown links and images of ``text`` (the file ``repo_path`` of the
    repository, shown as the page ``page`` of the site, both relative paths) to the site."""

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if SCHEME.match(target) or target.startswith(("#", "/", "<")):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), path))
        if resolved.startswith(".."):
            return match.group(0)
        new = posixpath.relpath(site_path(resolved), posixpath.dirname(page) or ".")
        return match.group(1) + new + hash_ + anchor + match.group(3)

    return LINK.sub(fix, text)


def readme_section(heading_words: str) -> str:
    """The README's section whose heading contains ``heading_words``, up to the next heading of
    the same or a higher level (links rewritten for a page at the top of the site)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^(#+) [^\n]*{re.escape(heading_words)}[^\n]*$", text, re.MULTILINE)
    if not match:
        logger.warning("README.md has no heading containing %r (docs/conf.py readme_section)", heading_words)
        return ""
    end = re.compile(rf"^#{{1,{len(match.group(1))}}} ", re.MULTILINE).search(text, match.end())
    return rewrite_links(text[match.end() : end.start() if end else len(text)], "README.md", "x.md")


def _source_read(app, docname, source):
    text = source[0]
    if docname == "readme":
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        readme = re.sub(r"\A# [^\n]*", "# The README", readme, count=1)
        text = rewrite_links(readme, "README.md", "readme.md")
    elif docname == "contributing":
        text = rewrite_links(
            (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8"), "CONTRIBUTING.md", "contributing.md"
        )
    elif (DOCS / f"{docname}.md").is_file():
        text = rewrite_links(text, f"docs/{docname}.md", f"{docname}.md")
        text = re.sub(
            r"^<!-- README section: (.+?) -->$", lambda m: readme_section(m.group(1)), text, flags=re.MULTILINE
        )
        if "<!-- other pages -->" in text:
            text = text.replace("<!-- other pages -->", _other_pages_toctree(app))
    source[0] = text


# Pages of the main navigation; any other top-level page of docs/ is listed under "More".
MAIN_PAGES = ["course", "spec", "golden", "torch", "benchmark", "ablation", "api/index", "readme"]


def _other_pages_toctree(app) -> str:
    known = set(MAIN_PAGES) | {"index"}
    excluded = {p.removesuffix(".md") for p in exclude_patterns}
    others = sorted(p.stem for p in DOCS.glob("*.md") if p.stem not in known | excluded)
    if not others:
        return ""
    return "```{toctree}\n:caption: More\n:maxdepth: 1\n\n" + "\n".join(others) + "\n```\n"


# -- API pages ---------------------------------------------------------------------------------
def _public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``, found
    from the folders (nothing imported: ``__main__`` would run the CLI)."""
    found = []
    for folder, dirs, files in os.walk(ROOT / PACKAGE):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and (Path(folder, d, "__init__.py")).is_file())
        parts = Path(folder).relative_to(ROOT).parts
        if any(p.startswith("_") for p in parts):
            continue
        found.append(".".join(parts))
        found += [".".join(parts + (f[:-3],)) for f in sorted(files) if f.endswith(".py") and not f.startswith("_")]
    return sorted(found)


def _module_file(name: str) -> Path:
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _summary(name: str) -> str:
    doc = ast.get_docstring(ast.parse(_module_file(name).read_text(encoding="utf-8"))) or ""
    first = doc.strip().split("\n\n")[0].replace("\n", " ").strip()
    first = re.sub(r"::$", ":", first)  # a literal block's marker, without its block
    return first.replace("|", "\\|")


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _generate_api_pages(app, config) -> None:
    api = DOCS / "api"
    api.mkdir(exist_ok=True)
    modules = _public_modules()
    pages = {}
    for name in modules:
        pages[f"{name}.rst"] = (
            f"{name}\n{'=' * len(name)}\n\n"
            f".. automodule:: {name}\n   :members:\n   :undoc-members:\n   :ignore-module-all:\n   :show-inheritance:\n"
        )
    rows = "\n".join(f"   * - :mod:`{name}`\n     - {_summary(name) or ' '}" for name in modules)
    pages["index.rst"] = (
        "API reference\n=============\n\n"
        "Every public module of ``ds2ta_ref``, generated from the package itself (``docs/conf.py``): "
        "each page gives the signatures, the array shapes and the equations of the module's "
        "docstrings. Equations cite ``docs/spec.md`` sections (:doc:`../spec`).\n\n"
        ".. list-table::\n   :header-rows: 1\n   :widths: 30 70\n\n   * - module\n     - what\n"
        f"{rows}\n\n"
        ".. toctree::\n   :hidden:\n   :maxdepth: 1\n\n" + "\n".join(f"   {name}" for name in modules) + "\n"
    )
    for stale in api.glob("*.rst"):
        if stale.name not in pages:
            stale.unlink()
    for filename, text in pages.items():
        _write_if_changed(api / filename, text)


# -- the course --------------------------------------------------------------------------------
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SLIDER_NOTE = (
    "*The sliders move in Jupyter (`jupyter lab tutorials/`); here is what they drew at their "
    "initial values when this page was built.*"
)


def _flatten_widgets(nb) -> None:
    """Replace each widget view by what its Output widgets hold (the figure a slider callback
    drew at the initial values) and drop the widget state, so the page needs no widget JavaScript."""
    import nbformat

    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})

    def captured(model_id: str, depth: int = 0) -> list:
        model = state.get(model_id)
        if model is None or depth > 20:
            return []
        if model.get("model_name") == "OutputModel":
            return list(model.get("state", {}).get("outputs", []))
        outputs = []
        for child in model.get("state", {}).get("children", []):
            outputs += captured(str(child).removeprefix("IPY_MODEL_"), depth + 1)
        return outputs

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        new = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                new.append(out)
                continue
            new.append(
                nbformat.from_dict(
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"text/markdown": SLIDER_NOTE, "text/plain": SLIDER_NOTE},
                    }
                )
            )
            new += [nbformat.from_dict(o) for o in captured(view.get("model_id", ""))]
        cell.outputs = new
    nb.metadata.pop("widgets", None)


def _code_key() -> bytes:
    digest = hashlib.sha256()
    for path in sorted((ROOT / PACKAGE).rglob("*.py")) + sorted((ROOT / "tutorials").glob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.digest()


def _execute_notebooks(app, config) -> None:
    import nbclient
    import nbformat

    source_dir, out_dir = ROOT / "tutorials", DOCS / "tutorials"
    out_dir.mkdir(exist_ok=True)
    sources = sorted(source_dir.glob("*.ipynb"))
    for stale in out_dir.glob("*.ipynb"):
        if not (source_dir / stale.name).is_file():
            stale.unlink()
    code_key = _code_key()
    with tempfile.TemporaryDirectory() as jupyter_path:
        spec_dir = Path(jupyter_path, "kernels", "python3")
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (docs)",
            "language": "python",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "MPLBACKEND", "PYTHONPATH")}
        os.environ.update(
            JUPYTER_PATH=jupyter_path,
            MPLBACKEND="Agg",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]])),
        )
        try:
            for src in sources:
                _execute_one(src, out_dir / src.name, code_key, nbclient, nbformat)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _execute_one(src: Path, dest: Path, code_key: bytes, nbclient, nbformat) -> None:
    sizes = DOC_SIZES.get(src.name, {})
    key = hashlib.sha256(src.read_bytes() + repr(sorted(sizes.items())).encode() + code_key).hexdigest()
    if dest.is_file():
        try:
            if nbformat.read(dest, as_version=4).metadata.get("ds2ta_docs", {}).get("key") == key:
                return
        except Exception:  # a half-written or foreign file: execute again
            pass
    nb = nbformat.read(src, as_version=4)
    if sizes:
        code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
        tagged = [i for i in code if "parameters" in nb.cells[i].metadata.get("tags", [])]
        if not tagged:
            logger.warning("%s: no code cell tagged 'parameters' to inject the sizes of DOC_SIZES after", src.name)
        else:
            knobs = set(re.findall(r"^(\w+)\s*=", nb.cells[tagged[0]].source, flags=re.MULTILINE))
            unknown = sorted(set(sizes) - knobs)
            if unknown:
                logger.warning(
                    "%s: DOC_SIZES in docs/conf.py sets %s, not knobs of its parameters cell", src.name, unknown
                )
            lines = "\n".join(f"{k} = {v!r}" for k, v in sizes.items() if k in knobs)
            text = "# Sizes of this documentation build (docs/conf.py, DOC_SIZES): smaller than a full run.\n" + lines
            nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(text, metadata={"tags": ["injected-parameters"]}))
    logger.info("executing %s for the course pages", src.name)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(src.parent)}},
    )
    client.execute()  # a cell that raises stops the build, naming the notebook and the cell
    _flatten_widgets(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite_links(cell.source, f"tutorials/{src.name}", f"tutorials/{src.name}")
    nb.metadata["ds2ta_docs"] = {"key": key, "sizes": {k: repr(v) for k, v in sizes.items()}}
    tmp = dest.with_name(dest.name + ".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, dest)


# -- MathJax served from the site ------------------------------------------------------------------
def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    spec = importlib.util.find_spec("mathjax")
    source = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if source is None or not (source / "tex-mml-chtml.js").is_file():
        raise RuntimeError('MathJax not found: pip install -e ".[docs]" (django-static-mathjax)')
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        src, dst = source / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def setup(app):
    app.connect("config-inited", _generate_api_pages)
    app.connect("config-inited", _execute_notebooks)
    app.connect("source-read", _source_read)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True}
