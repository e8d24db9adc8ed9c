"""Execute every tutorial notebook top to bottom on small sizes (STYLE item 8).

Each notebook's first code cell is tagged ``parameters`` (papermill's convention)
and holds its size knobs. The test inserts a cell tagged ``injected-parameters``
right after it with smaller values, runs the notebook with nbclient in a fresh
kernel, and fails on the first cell that raises (the notebooks assert their own
claims: the hand-built neuron, mix and table equal the library's). It then
checks what a reader would see:

* every notebook displays its figures (at least ``MIN_FIGURES`` PNG outputs);
* numbers stated in the prose are what the code computes: each entry of
  ``CLAIMS`` is a pattern found in the notebook's markdown and an expression
  evaluated in the executed kernel, and every match must equal it;
* it is a course: it says what the reader will learn, and ends with a summary,
  exercises and a link to the next notebook.

The kernel is this interpreter (``sys.executable``), through a kernel spec
written to a temporary ``JUPYTER_PATH``, so that a ``python3`` kernel installed
elsewhere on the machine cannot be picked up instead. It imports ``ds2ta_ref``
from this checkout (``PYTHONPATH``) and starts with ``MPLBACKEND=Agg``.
"""

import json
import os
import re
import sys
from datetime import datetime
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CELL_TIMEOUT = 120  # seconds per cell; each notebook takes a few seconds in total

# Small values injected after each notebook's parameters cell.
SMALL = {
    "01_lif_neuron.ipynb": {"T": 12, "seed": 1},
    "02_tasa_figure2.ipynb": {"T": 5, "D_in": 3, "D_out": 2, "seed": 1},
    "03_nsad_figure4.ipynb": {"head_dim": 8, "batch": 1, "seed": 1},
    "04_model.ipynb": {"batch": 2, "T": 2, "depth": 1, "grad_entries": 1},
    "05_training.ipynb": {
        "epochs": 2,
        "train_subset": 32,
        "test_subset": 16,
        "step_batch": 8,
        "events_epochs": 1,
        "events_seeds": (0,),
        "events_subset": 8,
    },
    "06_attention_sparsity_energy.ipynb": {
        "depth": 1,
        "epochs": 1,
        "train_subset": 24,
        "test_subset": 16,
        "seeds": (0,),
        "sweep_u0": (3.0,),
        "paper_u0": 3.0,
    },
}

# Notebooks executed by another test module (with their own sizes and checks).
EXECUTED_ELSEWHERE = {"07_check_your_implementation.ipynb": "tests/test_golden.py"}

# PNG outputs each notebook must display at least (widgets draw into their own output area).
MIN_FIGURES = {
    "01_lif_neuron.ipynb": 4,
    "02_tasa_figure2.ipynb": 2,
    "03_nsad_figure4.ipynb": 3,
    "04_model.ipynb": 2,
    "05_training.ipynb": 6,
    "06_attention_sparsity_energy.ipynb": 4,
}

# Notebooks with sliders: their interact callback must draw (into its Output widget) without error.
SLIDERS = {"01_lif_neuron.ipynb", "02_tasa_figure2.ipynb", "03_nsad_figure4.ipynb"}

# (pattern with one group in the markdown, expression evaluated in the executed notebook).
CLAIMS = {
    "01_lif_neuron.ipynb": [
        (r"\| `sigmoid` \|[^\n]*\| (\d+) \|", "f\"{surrogate.SURROGATES['sigmoid'].default_alpha:g}\""),
        (r"\| `atan` \|[^\n]*\| (\d+) \|", "f\"{surrogate.SURROGATES['atan'].default_alpha:g}\""),
        (r"0 before `t_on = (\d+)`", "str(t_on)"),
        (r"then `I_on = ([\d.]+)` per step", "f'{I_on:g}'"),
        (r"`noise = ([\d.]+)`", "f'{noise:g}'"),
        (r"with the default \$\\theta = (\d+)\$ it is", "f'{v_threshold:g}'"),
        (r"gains ([\d.]+, [\d.]+ and [\d.]+)", "', '.join(f'{g:g}' for g in gains[:-1]) + f' and {gains[-1]:g}'"),
        (r"agrees to better than\s+\$10\^\{-(\d+)\}\$", "f'{-np.log10(fd_tolerance):g}'"),
        (r"must agree to \$10\^\{-(\d+)\}\$ or better", "f'{-np.log10(gradcheck.TOLERANCE[\"lif\"]):g}'"),
        (r"to \$10\^\{-(\d+)\}\$ or better\.?\n", "f'{-np.log10(gradcheck.TOLERANCE[\"lif\"]):g}'"),
        (
            r"under the \$10\^\{-(\d+)\}\$ perturbation",
            'f\'{-np.log10(__import__("inspect").signature(gradcheck.check_gradients).parameters["eps"].default):g}\'',
        ),
        (r"at least \$10\^\{-(\d+)\}\$ away", "f'{-np.log10(margin):g}'"),
        (r"sigmoid surrogate with \$\\alpha = (\d+)\$", "f\"{surrogate.SURROGATES['sigmoid'].default_alpha:g}\""),
    ],
    "02_tasa_figure2.ipynb": [
        (r"one step old counts \$1/(\d+)\$", "f'{1 / tasa.decay_factors(4, 3)[1]:g}'"),
        (r"two steps old \$1/(\d+)\$", "f'{1 / tasa.decay_factors(4, 3)[2]:g}'"),
        (r"checked to \$10\^\{-(\d+)\}\$", "f'{-np.log10(tol):g}'"),
    ],
    "03_nsad_figure4.ipynb": [
        (r"images, \$T = (\d+)\$", "str(cfg.T)"),
        (r"\$D = (\d+)\$", "str(cfg.dim)"),
        (r"(\d+) heads of \$d", "str(cfg.heads)"),
        (r"heads of \$d = (\d+)\$", "str(cfg.head_dim)"),
        (r"preset's threshold \$u_0 = (\d+)\$", "f'{cfg.u0:g}'"),
        (r"\$u = (\d+)\$ \(the paper's CIFAR", "f'{plotting.NSAD_EXAMPLES[0][1][5]:g}'"),
        (r"zeroing the scores \$1 \\dots (\d+)\$", "f'{plotting.NSAD_EXAMPLES[0][1][5]:g}'"),
        (r"\((\d+)x\d+ one-channel", "str(cfg.img_size)"),
        (r"(\w+)-channel images", "['zero', 'one', 'two', 'three'][cfg.in_channels]"),
        (r"\$T = \d+\$,\s+(\w+) block,", "['zero', 'one', 'two', 'three'][cfg.depth]"),
        (r"at \$u_0 = (\d+)\$ the scattered", "f'{cfg.u0:g}'"),
        (
            r"`plotting.NSAD_EXAMPLES` holds (\w+) labelled",
            "['zero', 'one', 'two', 'three', 'four'][len(plotting.NSAD_EXAMPLES)]",
        ),
        (r"own\s+initialisation \(\$u_0 = (\d+)\$\)", "f'{cfg.u0:g}'"),
    ],
    "04_model.ipynb": [
        (r"window \$T_\{AW\}\$ = (\d)", "str(cfg.window)"),
        (r"the tiny preset's (\d)", "f'{cfg.tau0:g}'"),
        (r"one\s+step old counts 1/(\d+)", "f'{1 / ds2ta_ref.tasa.decay_factors(cfg.tau0, cfg.window)[1]:g}'"),
        (r"two steps old 1/(\d+)", "f'{1 / ds2ta_ref.tasa.decay_factors(cfg.tau0, cfg.window)[2]:g}'"),
        (r"\((\d+)x\d+ images, \d+\s+tokens", "str(gradcheck.small_model_config().img_size)"),
        (r"\d+x\d+ images, (\d+)\s+tokens", "str(gradcheck.small_model_config().num_tokens)"),
        (r"\d+ blocks, \$T = (\d)\$", "str(gradcheck.small_model_config().T)"),
        (r"TASA window (\d)", "str(gradcheck.small_model_config().window)"),
        (r"tokens, (\d+) blocks, \$T", "str(gradcheck.small_model_config().depth)"),
    ],
    "05_training.ipynb": [
        (r"upsampled to (\d+)x", "str(cfg.img_size)"),
        (r"global norm \$\\\|g\\\| = [^$]*\$ exceeds (\d+)", "f'{tc1.clip_grad:g}'"),
        (r"about ([\d.]+) one count away", "f\"{surrogate.get('sigmoid').grad(np.array(1.0), 4.0):.2f}\""),
        (r"([\d.]+) two counts away", "f\"{surrogate.get('sigmoid').grad(np.array(2.0), 4.0):.3f}\""),
        (r"\\alpha/4 = (\d)\$ at", "f\"{surrogate.get('sigmoid').grad(np.array(0.0), 4.0):g}\""),
        (r"\$T = (\d+)\$\s+frames", "str(cfg_e.T)"),
        (r"on a (\d+)x\d+ torus", "str(cfg_e.img_size)"),
        (r"beat chance \((\d+) %\)", "f'{100 / cfg_e.num_classes:g}'"),
        (r"leaves the DVS splitter a (single) token", "'single' if cfg_e.num_tokens == 1 else str(cfg_e.num_tokens)"),
        (
            r"gives ([\d.]+) %\s+test accuracy on one thread",  # the committed run (figures/results.json)
            "f\"{100 * [r['accuracy'] for r in __import__('json').load(open('../figures/results.json'))['sweep']"
            " if r['label'] == 'u0 = 1, learned u'][0]:.2f}\"",
        ),
    ],
    "06_attention_sparsity_energy.ipynb": [
        (r"\$E_\{AC\} = ([\d.]+)\$ pJ", "f'{ds2ta_ref.energy.E_AC * 1e12:g}'"),
        (r"\$(\d) \\times \d\$ token grid", "str(int(round(cfg.num_tokens ** 0.5)))"),
        (r"at this scale \((\d+) tokens", "str(cfg.num_tokens)"),
        (r"tokens,\s+\$d = (\d+)\$", "str(cfg.head_dim)"),
        (r"the `tiny` preset's \$u_0 = (\d)\$", "f'{tiny_u0:g}'"),
        (r"the paper's \$u_0 = (\d)\$", "f'{paper_u0:g}'"),
    ],
}

# Sentences generated from each run: a line matching each pattern must be printed (the prose says
# the cell prints it; the numbers are the run's own).
OUTPUTS = {
    "01_lif_neuron.ipynb": [
        r"I_on = [\d.]+ is (below|not below) the threshold",
        r"spikes per gain: \{.*\} -> ",
        r"steady state h\* = [\d.]+",
        r"sg\(0\) = 1 for both",
        r"spikes for threshold .* -> (never more as it rises|not monotone)",
        r"spikes for tau_m .* -> (never fewer as it grows|not monotone)",
    ],
    "02_tasa_figure2.ipynb": [r"Q spikes: \d+ with a window of 1, \d+ with T_AW = \d+; \d+ of \d+ .* differ"],
    "03_nsad_figure4.ipynb": [
        r"tiny model, u0 = [\d.]+: sparsity [\d.]+% -> [\d.]+%",
        r"threshold u = 3: [\d.]+% zeros",
    ],
    "04_model.ipynb": [
        r"initial BatchNorm statistics: 0 SPS spikes of \d+, firing rate of the whole model",
        r"t = 1: +[\d.]+% of the Q spikes differ",
    ],
}

RUN_TIME = re.compile(
    r"\*\*Run time:\*\* about (\d+) s at the default sizes and (\d+) s at the test's small sizes.*?"
    r"checks that the small run stays under (\d+) s",
    re.S,
)


def read(name):
    return nbformat.read(TUTORIALS / name, as_version=4)


def markdown(nb) -> str:
    return "\n\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


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
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_every_notebook_is_executed():
    names = {p.name for p in TUTORIALS.glob("*.ipynb")}
    assert set(SMALL) == set(MIN_FIGURES) == set(CLAIMS) and SLIDERS <= set(SMALL)
    assert names == set(SMALL) | set(EXECUTED_ELSEWHERE)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_notebook_is_stored_without_outputs(name):
    nb = read(name)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the outputs before committing"


@pytest.mark.parametrize("name", sorted(SMALL) + sorted(EXECUTED_ELSEWHERE))
def test_notebook_is_a_lesson(name):
    """Opens with what the reader will learn; closes with a summary, exercises and the next link."""
    nb = read(name)
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "What you will learn" in first.source
    assert last.cell_type == "markdown" and "## Summary" in last.source and "**Exercises**" in last.source
    exercises = re.findall(r"^\d\. ", last.source.split("**Exercises**")[1], flags=re.MULTILINE)
    assert 2 <= len(exercises) <= 3, f"{len(exercises)} exercises"
    names = sorted(p.name for p in TUTORIALS.glob("*.ipynb"))
    following = names[names.index(name) + 1] if name != names[-1] else None
    if following:
        assert f"]({following})" in last.source, f"the last cell must link to {following}"
    text = markdown(nb)
    assert "SPEC" not in text, "cite docs/spec.md §N, not SPEC"
    headings = set(re.findall(r"^#+ §([\d.]+) ", (ROOT / "docs" / "spec.md").read_text(), flags=re.MULTILINE))
    cited = set(re.findall(r"docs/spec\.md §(\d+(?:\.\d+)?)", text))
    assert cited <= headings, f"cited sections missing from docs/spec.md: {sorted(cited - headings)}"
    files = set(re.findall(r"`((?:figures|tutorials|docs)/[\w./-]+)`", text))
    assert all((ROOT / f).exists() for f in files), f"missing: {[f for f in files if not (ROOT / f).exists()]}"


@pytest.mark.parametrize("name", sorted(p.name for p in TUTORIALS.glob("*.ipynb")))
def test_sliders_redraw_on_release(name):
    """Every slider waits for the mouse to be released (a redraw can take most of a second)."""
    code = "\n".join(cell.source for cell in read(name).cells if cell.cell_type == "code")
    calls = []
    for match in re.finditer(r"Slider\(", code):  # each call's text up to its closing parenthesis
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(code[end], 0)
            end += 1
        calls.append(code[match.end() : end])
    assert all("continuous_update=False" in call for call in calls), name


@pytest.mark.parametrize("name", [n for n in sorted(SMALL) if n[:2] in {"01", "02", "03", "04"}])
def test_run_time_is_stated_at_the_top(name):
    assert RUN_TIME.search(read(name).cells[0].source), "state the run time at the top (see RUN_TIME)"


def execute(name, extra_code: str):
    nb = read(name)
    index = parameters_cell_index(nb)
    knobs = re.findall(r"^(\w+)\s*=", nb.cells[index].source, flags=re.MULTILINE)
    unknown = set(SMALL[name]) - set(knobs)
    assert not unknown, f"injected parameters {unknown} are not knobs of the parameters cell {knobs}"
    injected = "\n".join(f"{key} = {value!r}" for key, value in SMALL[name].items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    check = f"import sys\nassert sys.executable == {sys.executable!r}, sys.executable"
    nb.cells.insert(0, nbformat.v4.new_code_cell(check))
    nb.cells.append(nbformat.v4.new_code_cell(extra_code))
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        startup_timeout=60,
        resources={"metadata": {"path": str(TUTORIALS)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    nb.metadata["seconds"] = sum(cell_seconds(cell) for cell in nb.cells[1:-1])  # the notebook's own cells
    return nb


def cell_seconds(cell) -> float:
    """How long a cell ran, from the timestamps nbclient records (0 for a markdown cell)."""
    timing = cell.metadata.get("execution", {})
    if "iopub.execute_input" not in timing or "shell.execute_reply" not in timing:
        return 0.0
    start, end = (
        datetime.fromisoformat(timing[k].replace("Z", "+00:00")) for k in ("iopub.execute_input", "shell.execute_reply")
    )
    return (end - start).total_seconds()


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.slow
def test_notebook_runs_on_small_sizes(name, kernel_env):
    claims = CLAIMS[name]
    probe = "import json as _json\nprint('CLAIMS=' + _json.dumps([" + ", ".join(e for _, e in claims) + "]))"
    nb = execute(name, probe)
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]

    figures = sum("image/png" in out.get("data", {}) for out in outputs)
    assert figures >= MIN_FIGURES[name], f"{name} displayed {figures} figures, expected >= {MIN_FIGURES[name]}"

    # ipywidgets catch a callback's exception and show it in the widget's Output area, which
    # nbclient stores in the notebook's widget state: look there too.
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    widget_outputs = [
        out
        for model in state.values()
        if model.get("model_name") == "OutputModel"
        for out in model["state"].get("outputs", [])
    ]
    assert not [out for out in widget_outputs if out.get("output_type") == "error"], "a slider callback raised"
    if name in SLIDERS:
        assert any("image/png" in out.get("data", {}) for out in widget_outputs), "the sliders drew nothing"

    stream = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    for pattern in OUTPUTS.get(name, []):
        assert re.search(pattern, stream), f"{name}: no printed line matches {pattern!r}"
    if (ROOT / "ds2ta_ref" / "exercises" / f"nb{name[:2]}.py").exists():  # every stub, unfilled, says so
        from ds2ta_ref import exercises

        for ex in exercises.exercises_of(name[:2]):
            assert f"Exercise {ex.key} ({ex.title}): not done yet" in stream, ex.key
    stated = RUN_TIME.search(read(name).cells[0].source)
    if stated:
        assert nb.metadata["seconds"] < int(stated.group(3)), f"{name} took {nb.metadata['seconds']:.0f} s"

    printed = "".join(out.get("text", "") for out in nb.cells[-1].outputs if out.output_type == "stream")
    values = json.loads(printed.split("CLAIMS=", 1)[1])
    text = markdown(read(name))
    for (pattern, expr), value in zip(claims, values):
        found = re.findall(pattern, text)
        assert found, f"{name}: the prose no longer contains {pattern!r}"
        assert all(f == value for f in found), f"{name}: prose says {found} for {expr}, the code computes {value}"
