"""The conformance suite (golden.write_suite, compare --suite), compare's refusals, the mutant
catalog that proves the suite (tests/mutant_ds2ta_torch.py), and the generated tables of docs/golden.md."""

import dataclasses
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ds2ta_ref import golden
from ds2ta_ref.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "golden.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    directory = tmp_path_factory.mktemp("suite")
    assert main(["golden", "--suite", str(directory)]) == 0
    return directory


@pytest.fixture(scope="module")
def refs(suite):
    return {name: golden.read(suite / f"{name}.npz") for name in golden.CASES}


@pytest.fixture(scope="module")
def manifest(suite):
    return json.loads((suite / "suite.json").read_text())


@pytest.fixture(scope="module")
def mutant():
    pytest.importorskip("torch")
    import mutant_ds2ta_torch

    return mutant_ds2ta_torch


def doc_block(name: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"<!-- {name}:[^\n]*-->\n(.*?)\n<!-- end {name} -->", text, flags=re.DOTALL)
    assert match, name
    return match.group(1)


# ------------------------------------------------------------------ the suite
def test_suite_files_and_manifest(suite, refs, manifest):
    names = list(golden.CASES)
    assert sorted(p.name for p in suite.iterdir()) == sorted([f"{n}.npz" for n in names] + ["suite.json"])
    assert [c["name"] for c in manifest["cases"]] == names == golden.suite_cases(suite)
    assert manifest["format_version"] == golden.FORMAT_VERSION == 2
    for case in manifest["cases"]:
        ref = refs[case["name"]]
        assert golden.config_from_json(ref["config"]) == golden.CASES[case["name"]].cfg
        assert case["config"] == json.loads(str(ref["config"])) and case["catches"]
        assert list(ref) == golden.forward_order(golden.CASES[case["name"]].cfg)
    assert "170 to 300 keys and 0.2 to 0.5 MB each" in DOC.read_text()
    assert all(170 <= len(refs[n]) <= 300 and 0.2e6 <= (suite / f"{n}.npz").stat().st_size <= 0.5e6 for n in names)
    assert golden.write_suite(suite.parent / "again") == names  # the API returns the case names
    for name in names:
        assert (suite / f"{name}.npz").read_bytes() == (suite.parent / "again" / f"{name}.npz").read_bytes()


def test_every_lif_site_fires_between_5_and_95_percent(refs, manifest):
    low, high = golden.RATE_RANGE
    assert (low, high) == (0.05, 0.95)
    for case in manifest["cases"]:
        measured = golden.firing_rates(refs[case["name"]])
        cfg = golden.CASES[case["name"]].cfg
        assert len(measured) == 5 + 7 * cfg.depth + 1  # stem 4 stages + rpe; q k v y proj fc1 fc2; the kernel
        assert case["firing_rates"] == {k: round(v, 4) for k, v in measured.items()}
        assert all(low <= rate <= high for rate in measured.values()), (case["name"], measured)


def test_write_suite_refuses_a_case_that_does_not_fire(tmp_path, monkeypatch):
    """The rate check can fail: q, k, v made silent leave the attention LIF silent."""
    case = golden.CASES["spikformer"]
    silent = case._replace(draws=case.draws._replace(qkv_bn_bias=(-3.0, -2.0)))
    monkeypatch.setitem(golden.CASES, "spikformer", silent)
    with pytest.raises(RuntimeError, match=r"suite case 'spikformer': LIF sites fire outside .*attn\.y"):
        golden.write_suite(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written: every case is checked first


def test_suite_draws_exercise_every_rounding_and_gate(refs):
    taus, negative_tau, tie_tau = [], False, False
    for name, ref in refs.items():
        cfg = golden.CASES[name].cfg
        for key, value in ref.items():  # every linear bias and the head's: non-zero
            if key.startswith("param/") and key.endswith("bias") and "_bn" not in key:
                assert np.all(value != 0), (name, key)
        assert all(f"act/patch_embed.{s}" in ref for s in ("stage0", "stage1", "stage2", "stage3", "rpe"))
        lif_h = ref["lif/in/x"][0, 0, 0] / (cfg.tau_m if cfg.decay_input else 1.0)
        assert lif_h == cfg.v_threshold and ref["lif/out/spikes"][0, 0, 0] == 1  # exactly on the threshold
        if not cfg.tasa:
            assert not any(k.startswith("tasa/") for k in ref) and not any(k.endswith(".tau") for k in ref)
        else:
            tau = [float(ref["tasa/in/tau"])] + [float(v) for k, v in ref.items() if k.endswith("tau")]
            taus += tau
            negative_tau |= min(tau) < 0
            tie_tau |= any(t % 1 == 0.5 for t in tau)
        if not cfg.nsad:
            assert not any(k.startswith("nsad/") for k in ref) and not any(k.endswith(".nsad") for k in ref)
            continue
        params, scores, table = ref["nsad/in/params"], ref["nsad/in/scores"], ref["nsad/out/table"]
        u = params[:, 5]
        integer_u = [h for h in range(len(u)) if u[h] == np.round(u[h]) and np.any(scores[:, :, h] == u[h])]
        assert integer_u and table[integer_u[0], int(u[integer_u[0]])] == 0  # gated: strict >
        assert table[integer_u[0], int(u[integer_u[0]]) + 1] != 0
        a, b, d = params[1, 0], params[1, 1], params[1, 3]
        assert (a, b, d) == (0.5, 0.0, 0.0) and np.any(scores[:, :, 1] % 2 == 1)  # exact .5 ties, present
        assert np.any(table < 0)  # negative table entries
    assert negative_tau and tie_tau
    names = {n for n, c in golden.CASES.items() if not c.cfg.tasa and not c.cfg.nsad}
    assert names == {"spikformer", "spikformer_dvs"}


def test_cli_suite_errors_are_one_line(tmp_path, suite, capsys):
    assert main(["golden", "--suite", str(suite)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ds2ta-ref: error: argument --suite: ") and "exists" in err
    assert main(["golden", "--suite", str(tmp_path / "s"), "--preset", "tiny"]) == 2
    assert "drop --preset" in capsys.readouterr().err
    assert main(["golden", "--suite", str(tmp_path / "s"), "--seed", "0"]) == 2
    assert "drop --seed" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert main(["golden", "--preset", "tiny"]) == 2
    assert "--preset and --out are required" in capsys.readouterr().err
    assert main(["golden", "--suite", str(suite), "--overwrite"]) == 0


# ------------------------------------------------------------------ compare --suite
def _write_candidates(directory, cands):
    directory.mkdir()
    for name, cand in cands.items():
        np.savez(directory / f"{name}.npz", **cand)


@pytest.fixture(scope="module")
def candidates(mutant, refs):
    return {name: mutant.run(ref) for name, ref in refs.items()}


def test_compare_suite_passes_fails_and_skips(suite, candidates, tmp_path, capsys):
    _write_candidates(tmp_path / "mine", candidates)
    assert main(["compare", "--suite", str(suite), str(tmp_path / "mine"), "--rtol", "1e-10"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(golden.CASES) + 1 and out[-1] == "6 of 6 cases pass (rtol=1e-10): PASS"
    assert all(re.match(rf"{name}\s+PASS\s+\d+ tensors$", line) for name, line in zip(golden.CASES, out))

    (tmp_path / "mine" / "tau_per_site.npz").unlink()
    assert main(["compare", "--suite", str(suite), str(tmp_path / "mine")]) == 1
    out = capsys.readouterr().out
    assert re.search(r"tau_per_site\s+MISSING\s+no candidate file tau_per_site.npz", out) and out.endswith("FAIL\n")
    assert main(["compare", "--suite", str(suite), str(tmp_path / "mine"), "--skip-missing"]) == 0
    out = capsys.readouterr().out
    assert "tau_per_site" in out and "skipped" in out
    assert out.endswith("5 of 6 cases pass (rtol=1e-07), 1 skipped: PASS\n")

    bad = dict(candidates["spikformer"])
    bad["act/block.0.attn.y"] = 1 - bad["act/block.0.attn.y"]
    np.savez(tmp_path / "mine" / "spikformer.npz", **bad)
    result = golden.compare_suite(suite, tmp_path / "mine", skip_missing=True)
    assert not result.passed and not result.cases["spikformer"].passed
    line = r"^spikformer\s+FAIL .*; first departure act/block\.0\.attn\.y$"
    assert re.search(line, result.table(), flags=re.MULTILINE)


def test_compare_suite_errors(suite, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for argv, message in [
        (["compare", "--suite", str(suite), str(tmp_path / "empty")], "holds none of the suite's 6 case files"),
        (["compare", "--suite", str(tmp_path / "empty"), str(suite)], "is not a golden suite: it has no suite.json"),
        (["compare", "--suite", str(suite), str(tmp_path / "nowhere")], "is not a directory"),
        (["compare", "--suite", str(suite), str(suite), "--only", "lif/"], "--only: not with --suite"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ds2ta-ref: error: ") and message in err, err


# ------------------------------------------------------------------ compare's refusals and reports
@pytest.fixture(scope="module")
def small(refs):
    return refs["negative_tau_floor"]


def test_compare_refuses_an_empty_comparison(suite, small, capsys):
    path = str(suite / "negative_tau_floor.npz")
    assert main(["compare", path, path, "--only", "nothing/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "selects no key of the golden file: nothing would be compared" in err
    with pytest.raises(ValueError, match="holds none of the"):
        golden.compare(small, {"unrelated": np.zeros(1)}, only=["input"])


def test_float32_candidate_fails_at_the_default_tolerance_and_says_so(small, candidates, capsys):
    cand = candidates["negative_tau_floor"]
    cand32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in cand.items()}
    result = golden.compare(small, cand32)
    assert not result.passed and result.narrow_dtypes == ("float32",)
    assert "pass an explicit rtol" in result.results[0].note and "holds float32 tensors" in result.table()
    loose = golden.compare(small, cand32, rtol=1e-4)
    assert loose.passed and "float32" in loose.table()  # passes only with an explicit looser rtol, and says the dtype
    assert golden.compare(small, candidates["negative_tau_floor"], rtol=1e-10).passed  # float64: no note


def test_spike_tensor_failures_count_entries_and_name_the_first(small, candidates):
    cand = dict(candidates["negative_tau_floor"])
    spikes = cand["act/block.0.mlp.hidden"].copy()
    spikes[0, 1, 2, 3] = 1 - spikes[0, 1, 2, 3]
    spikes[1, 0, 0, 0] = 1 - spikes[1, 0, 0, 0]
    cand["act/block.0.mlp.hidden"] = spikes
    result = golden.compare(small, cand)
    row = next(r for r in result.results if r.key == "act/block.0.mlp.hidden")
    assert not row.ok and row.note == f"2 of {spikes.size} entries differ, the first at (0, 1, 2, 3)"
    assert result.first_departure == "act/block.0.mlp.hidden"


@pytest.mark.parametrize(
    "fault, message",
    [
        ("pth", "candidate '{cand}': is a PyTorch file written by torch.save"),
        ("npy", "candidate '{cand}': holds a single .npy array"),
        ("config", "golden file '{ref}': entry 'config' is not valid JSON"),
        ("config_field", "golden file '{ref}': entry 'config' is not a ModelConfig (unknown: ['depht'])"),
        ("missing_logits", "golden file '{ref}' lacks 1 key(s) its config requires, first 'logits'"),
        ("version", "golden file '{ref}' has format_version 7; this code reads 1 and 2"),
    ],
)
def test_compare_input_faults_are_one_line_naming_the_file(tmp_path, small, capsys, fault, message):
    torch = pytest.importorskip("torch")
    ref, cand = tmp_path / "ref.npz", tmp_path / f"cand.{'pth' if fault == 'pth' else 'npz'}"
    arrays = dict(small)
    if fault == "config":
        arrays["config"] = np.array(str(arrays["config"])[:-5])
    elif fault == "config_field":
        arrays["config"] = np.array(str(arrays["config"]).replace('"depth"', '"depht"'))
    elif fault == "missing_logits":
        del arrays["logits"]
    elif fault == "version":
        arrays["format_version"] = np.array(7)
    np.savez(ref, **arrays)
    if fault == "pth":
        torch.save({"logits": torch.zeros(2, 3)}, cand)
    elif fault == "npy":
        with open(cand, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        np.savez(cand, **small)
    assert main(["compare", str(ref), str(cand)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ds2ta-ref: error: "), err
    assert message.format(ref=ref, cand=cand) in err, err


def test_missing_and_unexpected_name_the_candidate_file(suite, small, tmp_path, capsys):
    cand = {k: v for k, v in small.items() if k != "grad/head.bias"}
    cand["grad/head.bais"] = small["grad/head.bias"]
    np.savez(tmp_path / "mine.npz", **cand)
    assert main(["compare", str(suite / "negative_tau_floor.npz"), str(tmp_path / "mine.npz")]) == 1
    out = capsys.readouterr().out
    assert f"missing from candidate '{tmp_path / 'mine.npz'}' (1): grad/head.bias" in out
    assert f"unexpected in candidate '{tmp_path / 'mine.npz'}', not in the golden file (1): grad/head.bais" in out


def test_tutorial_07_implementation_passes_the_suite(refs):
    """docs/golden.md's claim: tutorial 07's implementation (a user's own) passes every case at 1e-10."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "tutorials"))
    try:
        import my_ds2ta_torch
    finally:
        sys.path.remove(str(ROOT / "tutorials"))
    for name, ref in refs.items():
        result = golden.compare(ref, my_ds2ta_torch.run(ref), rtol=1e-10)
        assert result.passed, (name, result.table(5))
    assert not golden.compare(refs["ds2ta"], my_ds2ta_torch.run(refs["ds2ta"], bugs=["nsad_floor"])).passed


# ------------------------------------------------------------------ old files, the torch package's candidate
def test_format_1_files_are_still_compared(mutant):
    path = ROOT / "tests" / "data" / "golden_format1.npz"  # written by the first release's golden.write
    ref = golden.read(path)
    assert int(ref["format_version"]) == 1 and "act/patch_embed.stage0" not in ref
    cfg = golden.config_from_json(ref["config"])
    assert list(ref) == golden.forward_order(cfg, format_version=1) != golden.forward_order(cfg)
    cand = mutant.run(ref)  # computes the format 2 stem keys too: not "unexpected" against a format 1 file
    assert "act/patch_embed.stage0" in cand
    result = golden.compare(path, cand, rtol=1e-10)
    assert result.passed and not result.unexpected, result.table(5)
    cand["grad/head.weight"] = cand["grad/head.weight"] * 1.001
    assert golden.compare(path, cand, rtol=1e-10).first_departure == "grad/head.weight"


def test_torch_package_golden_candidate_passes_every_case(refs):
    pytest.importorskip("torch")
    from ds2ta_ref.torch import crosscheck

    for name, ref in refs.items():
        cand = crosscheck.golden_candidate(ref)
        assert "logits" in cand and ("tasa/out/out" in cand) == golden.CASES[name].cfg.tasa
        result = golden.compare(ref, cand, rtol=1e-10, only=list(cand))
        assert result.passed, (name, result.table(5))
    wrong = dict(refs["ds2ta"])
    wrong["param/head.bias"] = wrong["param/head.bias"] + 0.1  # inputs the candidate reads: its logits move
    cand = crosscheck.golden_candidate(wrong)
    result = golden.compare(refs["ds2ta"], cand, rtol=1e-10, only=[k for k in cand if not golden.is_input(k)])
    assert result.first_departure == "logits"


# ------------------------------------------------------------------ the mutant catalog
@pytest.fixture(scope="module")
def catalog(mutant, refs):
    return mutant.catalog(refs, golden.compare)


REQUIRED_MUTANTS = {  # issue 17's list, by this catalog's names
    "nsad_gate_ge",
    "nsad_floor",
    "nsad_half_away",
    "tau_half_away",
    "tau_floor",
    "tau_no_ste",
    "tau_clip_no_grad",
    "window_plus_one",
    "attenuation_m_plus_1",
    "reset_not_detached",
    "decay_input_flipped",
    "attn_threshold_1",
    "scale_quarter",
    "scale_before_nsad",
    "label_smoothing",
    "q_bias_dropped",
    "fc1_bias_dropped",
    "bn_unbiased_normalization",
    "bn_momentum_reversed",
    "bn_stats_per_step",
    "maxpool_split_ties",
    "head_order_jH",
    "token_col_major",
    "sigmoid_alpha_default",
    "atan_constant",
    "rpe_residual_missing",
    "pool_last_step",
}


def test_unmutated_implementation_passes_every_case_at_1e_10(candidates, refs):
    for name, ref in refs.items():
        result = golden.compare(ref, candidates[name], rtol=1e-10)
        assert result.passed and not result.missing, (name, result.table(5))


@pytest.mark.slow
def test_every_mutant_is_caught_in_its_own_section(mutant, catalog):
    assert len(mutant.MUTANTS) >= 25 and REQUIRED_MUTANTS <= set(mutant.MUTANTS)
    for name, hit in catalog.items():
        assert hit is not None, f"mutant {name} passes every case"
        case, key = hit
        assert golden.section(key) in mutant.MUTANTS[name][1], (name, case, key)


@pytest.mark.slow
def test_docs_tables_are_the_measured_ones(mutant, catalog, manifest):
    assert doc_block("mutants") == mutant.catalog_table(catalog)
    assert doc_block("firing rates") == mutant.rates_table(manifest)
    rows = doc_block("suite cases").splitlines()[2:]
    assert [re.match(r"\| `(\w+)` \|", row).group(1) for row in rows] == list(golden.CASES)
    base = golden.suite._BASE
    for row, case in zip(rows, golden.CASES.values()):
        changes = {f.name for f in dataclasses.fields(case.cfg) if getattr(case.cfg, f.name) != getattr(base, f.name)}
        assert set(re.findall(r"`(\w+)=", row)) == changes and case.catches in row
    assert f"Mutation score: {len(catalog)} of {len(catalog)}." in DOC.read_text()
    doc = DOC.read_text()  # the sentences of "What the first departure tells" that name catalog entries
    assert catalog["bn_unbiased_normalization"][1] == "act/patch_embed.stage1"
    assert "first shows in `act/patch_embed.stage1`" in doc
    assert catalog["maxpool_split_ties"][1] == "grad/patch_embed.proj_bn3.bias"
    assert "in `grad/patch_embed.proj_bn3.bias`" in doc
    assert re.fullmatch(r"grad/block\.1\.mlp\.fc2_bn\.(weight|bias)", catalog["sigmoid_alpha_default"][1])
    assert catalog["tau_floor"][1].startswith("new_state/block.0.attn.") and "(2.5 floors and rounds alike)" in doc
    assert catalog["q_bias_dropped"][1] == "new_state/block.0.attn.q_bn.running_mean"
    readme = (ROOT / "README.md").read_text()
    assert f"({len(catalog)} of {len(catalog)} mutants of a catalog" in readme and "six small golden files" in readme
    assert len(golden.CASES) == 6 and "Six small golden files" in DOC.read_text()
    assert "is six small golden files" in (ROOT / "docs" / "spec.md").read_text()
    assert f"a catalog of {len(catalog)} mutants" in (ROOT / "docs" / "spec.md").read_text()
    assert f"with {len(catalog)} mutation flags" in doc and f"catalog of\n{len(catalog)} porting" in doc


def test_section_names_the_part_of_the_computation():
    assert [
        golden.section(k)
        for k in (
            "lif/grad/x",
            "nsad/out/table",
            "act/patch_embed.stage1",
            "new_state/patch_embed.proj_bn.running_mean",
            "act/block.1.attn.y",
            "new_state/block.0.mlp.fc1_bn.running_var",
            "act/block.0.out",
            "act/pooled",
            "loss",
            "grad/block.0.attn.tau",
            "param/head.bias",
            "config",
        )
    ] == [
        "lif",
        "nsad",
        "stem",
        "stem",
        "block.1.attn",
        "block.0.mlp",
        "block.0",
        "head",
        "head",
        "grad",
        "input",
        "meta",
    ]
