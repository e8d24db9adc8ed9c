"""Execute every tutorial notebook top to bottom on small sizes (STYLE item 8).

Each notebook's first code cell is tagged ``parameters`` (papermill's convention)
and holds its size knobs. The test inserts a cell tagged ``injected-parameters``
right after it with smaller values, runs the notebook with nbclient in a fresh
kernel, and fails on the first cell that raises (the notebooks assert their own
claims: the hand-built neuron, mix and table equal the library's).

The kernel is this interpreter (``sys.executable``), through a kernel spec
written to a temporary ``JUPYTER_PATH``, so that a ``python3`` kernel installed
elsewhere on the machine cannot be picked up instead. It imports ``ds2ta_ref``
from this checkout (``PYTHONPATH``) and starts with ``MPLBACKEND=Agg``.
"""
import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CELL_TIMEOUT = 60  # seconds per cell; each notebook takes a few seconds in total

# Small values injected after each notebook's parameters cell.
SMALL = {
    "01_lif_neuron.ipynb": {"T": 12, "seed": 1},
    "02_tasa_figure2.ipynb": {"T": 5, "D_in": 3, "D_out": 2, "seed": 1},
    "03_nsad_figure4.ipynb": {"head_dim": 8, "batch": 1, "seed": 1},
}


def read(name):
    return nbformat.read(TUTORIALS / name, as_version=4)


def parameters_cell_index(nb) -> int:
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    tagged = [i for i in code if "parameters" in nb.cells[i].metadata.get("tags", [])]
    assert tagged == code[:1], "the first code cell, and only it, must be tagged 'parameters'"
    return tagged[0]


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A ``python3`` kernel spec running this interpreter, found first on ``JUPYTER_PATH``."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (test)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_every_notebook_is_executed_here():
    assert {p.name for p in TUTORIALS.glob("*.ipynb")} == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_is_stored_without_outputs(name):
    nb = read(name)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the outputs before committing"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_runs_on_small_sizes(name, kernel_env):
    nb = read(name)
    index = parameters_cell_index(nb)
    knobs = re.findall(r"^(\w+)\s*=", nb.cells[index].source, flags=re.MULTILINE)
    unknown = set(SMALL[name]) - set(knobs)
    assert not unknown, f"injected parameters {unknown} are not knobs of the parameters cell {knobs}"
    injected = "\n".join(f"{key} = {value!r}" for key, value in SMALL[name].items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    check = f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable"
    nb.cells.insert(0, nbformat.v4.new_code_cell(check))

    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=CELL_TIMEOUT, startup_timeout=60,
        resources={"metadata": {"path": str(TUTORIALS)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors
