"""Golden files and compare (ds2ta_ref.golden), the user's PyTorch implementation of
tutorial 07 with its injected bugs, and that notebook executed on small sizes."""

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ds2ta_ref import golden, preset
from ds2ta_ref.cli import main
from ds2ta_ref.config import parse_overrides
from ds2ta_ref.gradcheck import small_model_config

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOK = "07_check_your_implementation.ipynb"
CFG = small_model_config()  # two blocks, T = 2, TASA window 2, NSAD: 0.1 s per golden file
TINY_SET = ["--set", "img_size=8", "--set", "dim=16", "--set", "heads=2"]  # the tiny preset, smaller


@pytest.fixture(scope="module")
def ref():
    return golden.build(CFG, seed=0)


# ------------------------------------------------------------------ the file
def test_golden_file_is_bit_identical_across_runs_and_differs_across_seeds(tmp_path):
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    golden.write(a, CFG, seed=3)
    golden.write(b, CFG, seed=3)
    golden.write(c, CFG, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_file_is_float64_without_pickle_and_in_forward_order(tmp_path, ref):
    path = tmp_path / "g.npz"
    golden.write(path, CFG, seed=0)
    with np.load(path, allow_pickle=False) as npz:
        assert npz.files == golden.forward_order(CFG) == list(ref)
        arrays = {k: npz[k] for k in npz.files}
    assert all(np.array_equal(arrays[k], ref[k]) for k in ref)
    ints = {"format_version", "target"} | {k for k in ref if k.endswith("num_batches_tracked")}
    text = {"config"} | {k for k in ref if k.endswith("/options")}
    for key, arr in arrays.items():
        expected = "int64" if key in ints else ("<U" if key in text else "float64")
        assert str(arr.dtype).startswith(expected), (key, arr.dtype)
    assert golden.config_from_json(arrays["config"]) == CFG
    assert json.loads(str(arrays["lif/options"]))["alpha"] == 4.0  # resolved: no null in kernel options


def test_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "g.npz"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="overwrite"):
        golden.write(path, CFG, seed=0)
    assert path.read_bytes() == b"keep"
    golden.write(path, CFG, seed=0, overwrite=True)
    assert golden.read(path)["loss"].shape == ()


def test_model_section_fires_and_every_gradient_is_exercised(ref):
    for i in range(CFG.depth):
        for name in ("q", "k", "v", "y", "out"):
            assert 0 < ref[f"act/block.{i}.attn.{name}"].mean() < 1, (i, name)
        A, S = ref[f"act/block.{i}.attn.A"], ref[f"act/block.{i}.attn.scores"]
        assert np.any(A != S)  # NSAD is not the identity here
    for key, g in ref.items():
        if key.startswith("grad/") and not key.endswith("_linear.bias"):  # those feed BatchNorm: ~0
            assert np.abs(g).max() > 1e-6, key
    tau = ref["param/block.0.attn.tau"]
    assert tau != np.round(tau) and ref["tasa/in/tau"] != np.round(ref["tasa/in/tau"])
    assert np.array_equal(ref["nsad/out/table"], np.rint(ref["nsad/out/table"]))  # an integer table
    for key, value in ref.items():  # as docs/golden.md says: BatchNorm weights in [1, 2), biases in [-0.2, 0.5)
        if key.startswith("param/") and "_bn" in key:  # (times theta_eff = v_threshold = 1 here)
            low, high = (1.0, 2.0) if key.endswith("weight") else (-0.2, 0.5)
            assert low <= value.min() and value.max() < high, key
        elif key.startswith("param/") and key.endswith("bias"):  # linear biases: non-zero, in [-0.5, 0.5)
            assert np.all(value != 0) and -0.5 <= value.min() and value.max() < 0.5, key


@pytest.mark.parametrize(
    "changes",
    [
        dict(tasa=False, nsad=False),
        dict(frozen_tau=True),
        dict(tau_per_site=True, nsad_rounding="floor", surrogate="atan"),
    ],
)
def test_keys_follow_the_config(changes):
    cfg = CFG.replace(depth=1, **changes)
    arrays = golden.build(cfg, seed=1)
    assert list(arrays) == golden.forward_order(cfg)
    assert ("grad/block.0.attn.tau" in arrays) == (cfg.tasa and not cfg.frozen_tau)
    assert ("grad/block.0.attn.proj_tau" in arrays) == cfg.tau_per_site


def test_frozen_u_is_written_to_the_config_and_zeroes_u_gradient():
    learned, frozen = (golden.build(CFG.replace(depth=1, frozen_u=on), seed=1) for on in (False, True))
    assert json.loads(str(frozen["config"]))["frozen_u"] is True
    assert golden.config_from_json(frozen["config"]).frozen_u
    assert np.all(learned["grad/block.0.attn.nsad"][:, 5] != 0)  # not vacuous: u has a gradient when learned
    assert np.all(frozen["grad/block.0.attn.nsad"][:, 5] == 0)
    np.testing.assert_array_equal(frozen["grad/block.0.attn.nsad"][:, :5], learned["grad/block.0.attn.nsad"][:, :5])


def test_every_key_is_documented(ref):
    doc = (ROOT / "docs" / "golden.md").read_text()
    params = {k.split("/", 1)[1] for k in ref if k.startswith("param/")}
    patterns = set()
    for key in ref:
        head, _, name = key.partition("/")
        if name in params or head in ("state", "new_state"):
            key = f"{head}/<name>"
        patterns.add(re.sub(r"block\.\d+", "block.{i}", key))
    undocumented = sorted(p for p in patterns if f"`{p}`" not in doc)
    assert not undocumented, undocumented


def test_documented_shapes_are_those_of_the_tiny_preset():
    """docs/golden.md gives each key's shape in letters, and their values for the tiny preset."""
    doc = (ROOT / "docs" / "golden.md").read_text()
    stated = re.search(r"Shapes for the `tiny` preset \((.*?)\)", doc, flags=re.DOTALL).group(1)
    letters = {k: int(v) for k, v in re.findall(r"`(\w+) = (\d+)`", stated)}
    cfg = preset("tiny")
    assert letters == dict(
        T=cfg.T,
        B=2,
        C=cfg.in_channels,
        S=cfg.img_size,
        N=cfg.num_tokens,
        D=cfg.dim,
        H=cfg.heads,
        d=cfg.head_dim,
        K=cfg.num_classes,
    )
    assert re.search(r"`Tk = max\(T, window \+ 1, 4\)` \(4 for `tiny`\)", doc) and max(cfg.T, cfg.window + 1, 4) == 4
    arrays = golden.build(cfg, seed=0)
    assert re.search(r"`Hk = max\(H, 3\)` heads \(4 for `tiny`\)", doc) and max(cfg.heads, 3) == 4
    env = dict(letters, Tk=4, Hk=4, head_dim=cfg.head_dim)
    checked = 0
    for key, rest in re.findall(r"^\| `([^`]+)` \|(.*)$", doc, flags=re.MULTILINE):
        shape = re.search(r"`(\([^`]*\))`", rest)
        if "<name>" in key or key not in arrays and "{i}" not in key or shape is None:
            continue
        expected = eval(re.sub(r"(\d)([A-Za-z])", r"\1*\2", shape.group(1)), {}, env)  # "4D" -> 4*D
        assert arrays[key.replace("{i}", "0")].shape == expected, key
        checked += 1
    assert checked == 41  # every row with a shape in letters or numbers


# ------------------------------------------------------------------ compare
def test_compare_passes_a_file_against_itself(ref):
    result = golden.compare(ref, ref, rtol=0.0)
    assert result.passed and result.first_departure is None and not result.missing
    assert "PASS" in result.table()


def test_compare_fails_naming_a_gradient_entry_perturbed_by_a_tenth_of_a_percent(ref):
    key = "grad/block.1.attn.q_linear.weight"
    cand = dict(ref)
    g = cand[key].copy()
    g.flat[np.argmax(np.abs(g))] *= 1.001
    cand[key] = g
    result = golden.compare(ref, cand)
    assert not result.passed and result.first_departure == key
    assert [r.key for r in result.results if not r.ok] == [key] and result.results[0].key == key
    assert abs(result.results[0].max_rel - 1e-3) < 1e-9
    assert f"first departure in forward order: {key}" in result.table()


def test_compare_missing_unexpected_and_input_keys(ref):
    outputs_only = {k: v for k, v in ref.items() if not golden.is_input(k)}
    assert golden.compare(ref, outputs_only).passed  # a candidate need not echo the inputs
    cand = dict(outputs_only)
    del cand["grad/head.bias"]
    result = golden.compare(ref, cand)
    assert not result.passed and result.missing == ["grad/head.bias"]
    assert result.first_departure == "grad/head.bias" and "missing from the candidate (1): grad/head.bias" in str(
        result
    )
    cand = {**outputs_only, "grad/head.bais": ref["grad/head.bias"]}
    result = golden.compare(ref, cand)
    assert not result.passed and result.unexpected == ["grad/head.bais"] and result.first_departure is None


def test_compare_names_the_first_departure_in_forward_order_not_the_worst(ref):
    cand = dict(ref)
    cand["act/block.0.attn.A"] = ref["act/block.0.attn.A"] + 0.5  # upstream, small
    cand["logits"] = ref["logits"] * 3  # downstream, large
    result = golden.compare(ref, cand)
    assert result.first_departure == "act/block.0.attn.A" and result.results[0].key == "logits"


def test_compare_shape_text_and_only(ref):
    cand = {**ref, "logits": ref["logits"][:1], "lif/options": np.array("{}")}
    result = golden.compare(ref, cand)
    notes = {r.key: r.note for r in result.results if not r.ok}
    assert notes == {"logits": f"candidate shape {(1, CFG.num_classes)}", "lif/options": "text differs"}
    assert result.first_departure == "lif/options"  # options come first: inputs are checked when present
    assert golden.compare(ref, cand, only=["grad/", "tasa/"]).passed


def test_compare_floor_makes_a_zero_gradient_compare_on_its_group_scale(ref):
    key = "grad/block.0.mlp.fc1_linear.bias"  # feeds a training-mode BatchNorm: exactly 0 in exact arithmetic
    largest = max(np.abs(v).max() for k, v in ref.items() if k.startswith("grad/"))
    assert np.abs(ref[key]).max() < 1e-14 * largest
    cand = {**ref, key: ref[key] + 1e-15 * largest}
    assert golden.compare(ref, cand, rtol=1e-10).passed
    assert not golden.compare(ref, cand, rtol=1e-10, floor=0.0).passed


def test_compare_rejects_bad_arguments(ref, tmp_path):
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        golden.compare(ref, ref, rtol=-1)
    with pytest.raises(ValueError, match="not a golden file"):
        golden.compare({"x": np.zeros(1)}, ref)
    with pytest.raises(ValueError, match="no such file"):
        golden.compare(tmp_path / "nothing.npz", ref)
    with pytest.raises(ValueError, match="only must be a list of key prefixes"):
        golden.compare(ref, ref, only="lif/")


# ------------------------------------------------------------------ command line
def test_cli_golden_then_compare(tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(["golden", "--preset", "tiny", "--seed", "5", "--batch", "3", "--out", str(out)] + TINY_SET) == 0
    arrays = golden.read(out)
    cfg = golden.config_from_json(arrays["config"])
    assert (cfg.img_size, cfg.dim, cfg.heads, cfg.depth) == (8, 16, 2, 1) and arrays["input"].shape[0] == 3
    golden.write(tmp_path / "again.npz", cfg, seed=5, batch=3)
    assert out.read_bytes() == (tmp_path / "again.npz").read_bytes()  # the CLI is write() behind a parser
    capsys.readouterr()
    assert main(["compare", str(out), str(out)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS")

    cand = dict(arrays)
    cand["grad/head.weight"] = arrays["grad/head.weight"] * 1.01
    del cand["logits"]
    np.savez(tmp_path / "mine.npz", **cand)
    assert main(["compare", str(out), str(tmp_path / "mine.npz"), "--max-rows", "3"]) == 1
    text = capsys.readouterr().out
    assert "first departure in forward order: logits" in text
    assert f"missing from candidate '{tmp_path / 'mine.npz'}' (1): logits" in text
    assert text.splitlines()[2].startswith("grad/head.weight") and text.rstrip().endswith("FAIL")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["golden", "--preset", "tiny", "--out", "{out}"], "exists; pass"),
        (["golden", "--preset", "tiny", "--out", "{new}", "--set", "depth"], "--set expects field=value"),
        (["golden", "--preset", "tiny", "--out", "{new}", "--set", "depht=2"], "'depht' is not a ModelConfig field"),
        (["golden", "--preset", "tiny", "--out", "{new}", "--set", "tasa=maybe"], "tasa expects true or false"),
        (["golden", "--preset", "tiny", "--out", "{new}", "--set", "dim=12"], "dim must be a multiple of 8"),
        (["golden", "--preset", "tiny", "--out", "{new}", "--batch", "1"], "batch must be an integer >= 2"),
        (["compare", "{out}", "{new}"], "no such file"),
        (["compare", "{out}", "{empty}"], "candidate '{empty}': is empty, not a .npz file"),
        (["compare", "{empty}", "{out}"], "golden file '{empty}': is empty, not a .npz file"),
        (["compare", "{out}", "{out}", "--rtol", "-1"], "rtol must be a finite number >= 0"),
    ],
)
def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys, argv, message):
    existing, empty = tmp_path / "g.npz", tmp_path / "empty.npz"
    golden.write(existing, CFG.replace(depth=1), seed=0)
    empty.write_bytes(b"")
    argv = [a.format(out=existing, new=tmp_path / "new.npz", empty=empty) for a in argv]
    message = message.format(empty=empty)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ds2ta-ref: error: ") and message in err, err
    assert not (tmp_path / "new.npz").exists()


def test_cli_set_parses_every_kind_of_field():
    assert parse_overrides(
        ["depth=2", "tau0=1.5", "tasa=false", "nsad_rounding=floor", "alpha=none", "detach_reset=0"]
    ) == dict(depth=2, tau0=1.5, tasa=False, nsad_rounding="floor", alpha=None, detach_reset=False)
    assert parse_overrides(["alpha=2"]) == {"alpha": 2.0}


# ------------------------------------------------------------------ an independent PyTorch implementation
@pytest.fixture(scope="module")
def mine():
    pytest.importorskip("torch")
    sys.path.insert(0, str(TUTORIALS))
    try:
        import my_ds2ta_torch
    finally:
        sys.path.remove(str(TUTORIALS))
    return my_ds2ta_torch


def test_user_torch_implementation_passes_at_1e_10(torch, mine, ref):
    result = golden.compare(ref, mine.run(ref), rtol=1e-10)
    assert result.passed, result.table()
    assert not result.missing and len(result.results) == sum(not golden.is_input(k) for k in ref)


@pytest.mark.parametrize(
    "changes",
    [
        dict(tasa=False, nsad=False, decay_input=True),  # Spikformer
        dict(tau_per_site=True, surrogate="atan", detach_reset=False, nsad_rounding="floor"),
        dict(img_size=32, sps="dvs", qkv_bias=False, depth=1, frozen_tau=True, alpha=3.0),
        dict(frozen_u=True),
    ],
)
def test_user_torch_implementation_follows_the_config(torch, mine, changes):
    cfg = CFG.replace(**changes)
    ref = golden.build(cfg, seed=2)
    result = golden.compare(ref, mine.run(ref), rtol=1e-10)
    assert result.passed, result.table()


def test_test_suite_twin_in_golden_layout_passes_at_1e_10(torch, ref):
    """The test suite's own twin (tests/torch_twin_model.py) gives the model's logits,
    loss, gradients and BatchNorm statistics in the golden layout."""
    from torch_twin_model import model as twin

    P = {k[6:]: torch.tensor(v, requires_grad=True) for k, v in ref.items() if k.startswith("param/")}
    St = {k[6:]: torch.tensor(v) for k, v in ref.items() if k.startswith("state/") and "num_batches" not in k}
    logits = twin(P, St, torch.tensor(ref["input"]), CFG, training=True)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(ref["target"]))
    loss.backward()
    cand = {"logits": logits.detach().numpy(), "loss": loss.detach().numpy()}
    cand.update({f"grad/{k}": p.grad.numpy() for k, p in P.items()})
    cand.update({f"new_state/{k}": v.numpy() for k, v in St.items()})
    result = golden.compare(ref, cand, rtol=1e-10, only=["logits", "loss", "grad/", "new_state/"])
    assert result.missing == [k for k in ref if k.endswith("num_batches_tracked") and k.startswith("new_state/")]
    assert all(r.ok for r in result.results) and len(result.results) == len(cand), result.table()


@pytest.mark.parametrize(
    "bug, kernel_key, model_key",
    [
        ("reset_not_detached", "lif/grad/x", r"grad/block\.1\.mlp\.fc2_bn\.(weight|bias)"),
        ("tau_round_no_ste", "tasa/grad/tau", r"grad/block\.1\.attn\.tau"),
        ("nsad_floor", "nsad/out/table", r"act/block\.0\.attn\.A"),
    ],
)
def test_each_injected_bug_is_caught_and_named(torch, mine, ref, bug, kernel_key, model_key):
    cand = mine.run(ref, bugs=[bug])
    result = golden.compare(ref, cand, rtol=1e-10)
    assert not result.passed and result.first_departure == kernel_key, result.table(5)
    model_only = golden.compare(ref, cand, rtol=1e-10, only=["act/", "logits", "loss", "new_state/", "grad/"])
    assert re.fullmatch(model_key, model_only.first_departure), model_only.table(5)


# ------------------------------------------------------------------ tutorial 07, executed
@pytest.mark.parametrize("hide_torch", [False, True], ids=["with torch", "without torch"])
@pytest.mark.slow
def test_notebook_07_runs_on_small_sizes(tmp_path, monkeypatch, request, hide_torch):
    """Executed like tests/test_notebooks.py does (a cell of smaller values injected after the
    'parameters' cell, a fresh kernel running this interpreter); it asserts its own claims.
    Without torch (a stand-in package whose import fails) it says so and skips those cells."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if not hide_torch:
        request.getfixturevalue("torch")  # skipped without torch, but a failure in CI
    nb = nbformat.read(TUTORIALS / NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    assert all(nb.cells[i].outputs == [] and nb.cells[i].execution_count is None for i in code)
    assert [i for i in code if "parameters" in nb.cells[i].metadata.get("tags", [])] == code[:1]
    small = {"overrides": {"img_size": 8, "dim": 16, "heads": 2}, "seed": 1}
    assert set(small) <= set(re.findall(r"^(\w+)\s*=", nb.cells[code[0]].source, flags=re.MULTILINE))
    injected = "\n".join(f"{key} = {value!r}" for key, value in small.items())
    nb.cells.insert(code[0] + 1, nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))

    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (test)",
                "language": "python",
            }
        )
    )
    path = [str(ROOT), os.environ.get("PYTHONPATH")]
    if hide_torch:
        (tmp_path / "no_torch" / "torch").mkdir(parents=True)
        (tmp_path / "no_torch" / "torch" / "__init__.py").write_text("raise ImportError('torch hidden by the test')\n")
        path.insert(0, str(tmp_path / "no_torch"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, startup_timeout=60, resources={"metadata": {"path": str(TUTORIALS)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "first departure in forward order: grad/block.0.attn.q_linear.weight" in text  # numpy-only part
    for key in ("07.1", "07.2"):  # the NumPy exercises run with or without torch and do not fail unfilled
        assert f"Exercise {key} (" in text and "not done yet" in text
    assert "my_lif or my_tasa is not written yet" in text
    if hide_torch:
        assert "PyTorch is not installed" in text and "lif/grad/x" not in text
    else:
        assert "first departure in forward order: lif/grad/x" in text and "not installed" not in text
