import io
import json
import os
import zipfile

import numpy as np
import pytest

from ds2ta_ref import checkpoint
from ds2ta_ref.checkpoint import CheckpointError, load, rng_from_arrays, rng_state_to_arrays, save, validate


def sample_arrays():
    rng = np.random.default_rng(0)
    return {
        "blocks.0.attn.q.weight": rng.standard_normal((6, 4)),
        "blocks.0.tau": np.array(2.5),
        "counts": np.arange(7, dtype=np.int32),
        "mask": rng.random((2, 3)) > 0.5,
        "half": rng.standard_normal(5).astype(np.float32),
        "empty": np.zeros((0, 3)),
        "file": np.ones(2),  # np.savez(file, **arrays) could not take this name
        "label": np.array("digits"),
    }


META = {"epoch": 3, "config": {"preset": "tiny", "lr": 1e-3, "betas": [0.9, 0.999]}, "note": "héllo", "nan": None}


def files_in(directory):
    return sorted(os.listdir(directory))


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "ckpt.npz"
    arrays = sample_arrays()
    save(path, arrays, META)
    loaded, meta = load(path)
    assert meta == META
    assert list(loaded) == list(arrays)
    for name, arr in arrays.items():
        assert loaded[name].dtype == arr.dtype and loaded[name].shape == arr.shape, name
        np.testing.assert_array_equal(loaded[name], arr)
    assert files_in(tmp_path) == ["ckpt.npz"]


def test_file_is_a_plain_npz_with_json_text_meta(tmp_path):
    path = tmp_path / "ckpt.npz"
    save(path, sample_arrays(), META)
    with np.load(path, allow_pickle=False) as npz:
        text = npz[checkpoint.META_KEY]
        assert text.dtype.kind == "U" and text.ndim == 0
        header = json.loads(str(text))
        assert header["meta"] == META
        assert set(header["arrays"]) == set(sample_arrays())
        np.testing.assert_array_equal(npz["counts"], np.arange(7))


def test_numpy_scalars_in_meta_become_json_numbers(tmp_path):
    save(tmp_path / "c.npz", {}, {"step": np.int64(12), "loss": np.float32(0.5)})
    assert load(tmp_path / "c.npz")[1] == {"step": 12, "loss": 0.5}


@pytest.mark.parametrize(
    "arrays,meta,match",
    [
        ({"__meta__": np.zeros(1)}, {}, "reserved"),
        ({"": np.zeros(1)}, {}, "non-empty"),
        ({3: np.zeros(1)}, {}, "strings"),
        ({"obj": np.array([{}, 1], dtype=object)}, {}, "'obj'.*object"),
        ({}, {"bad": object()}, "JSON"),
        ({}, [1, 2], "meta"),
    ],
)
def test_save_rejects_bad_input_and_writes_nothing(tmp_path, arrays, meta, match):
    with pytest.raises(ValueError, match=match):
        save(tmp_path / "c.npz", arrays, meta)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("failure", ["write_array", "fsync", "replace"])
def test_save_is_atomic(tmp_path, monkeypatch, failure):
    path = tmp_path / "ckpt.npz"
    save(path, {"w": np.zeros(3)}, {"epoch": 1})
    original = path.read_bytes()

    class Boom(RuntimeError):
        pass

    if failure == "write_array":  # fail in the middle of the file: after one member was written
        real = np.lib.format.write_array
        calls = []

        def write_array(fp, arr, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                fp.write(b"partial")
                raise Boom
            return real(fp, arr, **kwargs)

        monkeypatch.setattr(np.lib.format, "write_array", write_array)
    elif failure == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(Boom()))
    else:
        monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(Boom()))

    with pytest.raises(Boom):
        save(path, {"w": np.ones(3), "v": np.ones(4)}, {"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert files_in(tmp_path) == ["ckpt.npz"]  # no temporary file left behind
    arrays, meta = load(path)
    assert meta == {"epoch": 1}


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.npz.*no such file"):
        load(tmp_path / "nope.npz")


@pytest.mark.parametrize("keep", [0, 10, 0.5, 0.9])
def test_truncated_file_names_the_path(tmp_path, keep):
    path = tmp_path / "ckpt.npz"
    save(path, sample_arrays(), META)
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=str(path).replace("\\", "\\\\")):
        load(path)


def test_not_a_zip_and_plain_npy(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="junk.npz"):
        load(junk)
    npy = tmp_path / "single.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(CheckpointError, match="single .npy"):
        load(npy)


def test_flipped_byte_names_the_array(tmp_path):
    path = tmp_path / "ckpt.npz"
    arrays = sample_arrays()
    save(path, arrays, META)
    data = bytearray(path.read_bytes())
    where = data.find(arrays["blocks.0.attn.q.weight"].tobytes())
    assert where > 0
    data[where + 17] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"ckpt\.npz.*'blocks\.0\.attn\.q\.weight'"):
        load(path)


def rewrite(path, replace):
    """Rewrite the zip at ``path`` with consistent CRCs, members replaced by ``replace``
    (name -> bytes, or None to drop): a deliberate edit that zip itself cannot detect."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    for name, content in replace.items():
        if content is None:
            members.pop(name)
        else:
            members[name] = content
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def test_tampered_array_fails_sha256_and_is_named(tmp_path):
    path = tmp_path / "ckpt.npz"
    arrays = sample_arrays()
    save(path, arrays, META)
    tampered = arrays["counts"].copy()
    tampered[3] += 1
    rewrite(path, {"counts.npy": npy_bytes(tampered)})
    with pytest.raises(CheckpointError, match=r"'counts'.*SHA-256"):
        load(path)
    loaded, _ = load(path, verify=False)
    np.testing.assert_array_equal(loaded["counts"], tampered)


def test_reshaped_array_is_named(tmp_path):
    path = tmp_path / "ckpt.npz"
    save(path, sample_arrays(), META, checksum=False)
    rewrite(path, {"mask.npy": npy_bytes(np.zeros((3, 2), dtype=bool))})
    with pytest.raises(CheckpointError, match=r"'mask'.*shape \(3, 2\)"):
        load(path)


@pytest.mark.parametrize(
    "meta_content,match",
    [
        (None, "no '__meta__'"),
        (npy_bytes(np.array("{not json")), "not valid JSON"),
        (npy_bytes(np.array(b"{}")), "unicode"),
        (npy_bytes(np.array('{"format": "other"}')), "header"),
        (npy_bytes(np.array(["{}", "{}"])), "0-d"),
    ],
)
def test_bad_meta(tmp_path, meta_content, match):
    path = tmp_path / "ckpt.npz"
    save(path, {"w": np.zeros(2)}, {})
    rewrite(path, {"__meta__.npy": meta_content})
    with pytest.raises(CheckpointError, match=match):
        load(path)


def test_object_array_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "ckpt.npz"
    save(path, {"w": np.zeros(2)}, {})
    rewrite(path, {"w.npy": npy_bytes(np.array([{"a": 1}, None], dtype=object))})
    with pytest.raises(CheckpointError, match=r"'w' cannot be read"):
        load(path)


def test_array_not_in_meta_or_missing(tmp_path):
    path = tmp_path / "ckpt.npz"
    save(path, {"w": np.zeros(2), "v": np.ones(2)}, {})
    rewrite(path, {"v.npy": None, "x.npy": npy_bytes(np.ones(1))})
    with pytest.raises(CheckpointError, match=r"missing \['v'\], not listed \['x'\]"):
        load(path)


def test_validate_lists_every_problem():
    arrays = {"a": np.zeros((2, 3)), "b": np.zeros(4), "c": np.zeros(1), "extra1": np.zeros(1), "extra2": 0.0}
    expected = {"a": (3, 2), "b": (4,), "c": (2,), "gone1": (5,), "gone2": ()}
    with pytest.raises(ValueError) as info:
        validate(arrays, expected, what="model parameters")
    msg = str(info.value)
    assert msg.startswith("model parameters")
    for name in ("'a'", "'c'", "'gone1'", "'gone2'", "'extra1'", "'extra2'"):
        assert name in msg, name
    assert "'b'" not in msg
    assert "'a' has shape (2, 3), expected (3, 2)" in msg and "\n" not in msg  # one line
    validate({"a": np.zeros((3, 2))}, {"a": (3, 2)})


def test_rng_round_trip_reproduces_the_stream(tmp_path):
    rng = np.random.default_rng(1234)
    rng.standard_normal(7)
    rng.integers(0, 100, size=3, dtype=np.uint32)  # leaves half a 64-bit word buffered
    assert rng.bit_generator.state["has_uint32"] == 1
    state = rng_state_to_arrays(rng)
    assert all(a.dtype != object for a in state.values())

    save(tmp_path / "c.npz", {"w": np.zeros(1), **state}, {})
    arrays, _ = load(tmp_path / "c.npz")
    restored = rng_from_arrays(arrays)
    assert restored.bit_generator.state == rng.bit_generator.state
    np.testing.assert_array_equal(
        restored.integers(0, 2**31, size=9, dtype=np.uint32), rng.integers(0, 2**31, size=9, dtype=np.uint32)
    )
    np.testing.assert_array_equal(restored.random(5), rng.random(5))
    np.testing.assert_array_equal(restored.permutation(20), rng.permutation(20))


def test_rng_helpers_other_generators_and_prefix():
    rng = np.random.Generator(np.random.PCG64DXSM(5))
    restored = rng_from_arrays(rng_state_to_arrays(rng, prefix="data_rng."), prefix="data_rng.")
    assert type(restored.bit_generator).__name__ == "PCG64DXSM"
    np.testing.assert_array_equal(restored.random(4), rng.random(4))
    with pytest.raises(ValueError, match="MT19937"):
        rng_state_to_arrays(np.random.Generator(np.random.MT19937(0)))
    state = rng_state_to_arrays(np.random.default_rng(0))
    del state["rng.inc"]
    with pytest.raises(ValueError, match="rng.inc"):
        rng_from_arrays(state)


# --------------------------------------------------------------------------- loader errors (issue 9)
import pickle  # noqa: E402

from ds2ta_ref import load_spikformer_npz, preset  # noqa: E402
from ds2ta_ref import train as train_mod  # noqa: E402
from ds2ta_ref.params import init_params, init_state  # noqa: E402
from ds2ta_ref.runs import save_checkpoint  # noqa: E402

TINY = preset("tiny")
COUNTER = "patch_embed.proj_bn.num_batches_tracked"


def spikformer_npz(path, change=None):
    arrays = {**init_params(TINY, np.random.default_rng(0)), **init_state(TINY)}
    arrays.update(change or {})
    np.savez(path, **arrays)
    return path


def training_checkpoint(path, change=None):
    """A checkpoint as ``train`` writes it (initial parameters, no training), arrays changed by ``change``."""
    tc = train_mod.TrainConfig()
    params = init_params(TINY, np.random.default_rng(0), dtype=np.float32)
    opt = train_mod.make_optimizer(params, TINY, tc)
    save_checkpoint(
        path, tc, TINY, params, init_state(TINY, dtype=np.float32), opt.state_dict(), np.random.default_rng(1), 0, 0, []
    )
    if change:
        arrays, meta = load(path)
        arrays.update(change)
        save(path, arrays, meta)
    return path


def corrupt(path, how):
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # one byte flipped inside the data of head.weight
        data = bytearray(raw)
        data[raw.find(b"head.weight") + 400] ^= 0xFF
        path.write_bytes(bytes(data))
    return path


def torch_style_zip(path):
    """The layout of a ``torch.save`` file (a zip of pickles), made without torch."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"head.weight": [1.0]}))
        zf.writestr("archive/version", "3\n")
    return path


LOADERS = {
    "spikformer": (lambda p: load_spikformer_npz(p, TINY), spikformer_npz, "", "Spikformer checkpoint"),
    "training": (train_mod.load_run, training_checkpoint, "param.", "checkpoint"),
}


@pytest.fixture(params=sorted(LOADERS))
def loader(request):
    return LOADERS[request.param]


def expect_error(load_fn, path, *fragments):
    with pytest.raises(ValueError) as info:
        load_fn(path)
    message = str(info.value)
    assert repr(str(path)) in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message and "allow_pickle" not in message
    return message


def test_loaders_name_the_path_of_a_npy_file(loader, tmp_path):
    load_fn, *_ = loader
    np.save(tmp_path / "weights.npy", np.ones(3))
    expect_error(load_fn, tmp_path / "weights.npy", "single .npy array")


@pytest.mark.parametrize("kind", ["pickle", "torch zip"])
def test_loaders_refuse_pickles_without_saying_how_to_load_them(loader, tmp_path, kind):
    load_fn, *_ = loader
    path = tmp_path / "model.pth"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"head.weight": np.ones(3)}, protocol=2))
    else:
        torch_style_zip(path)
    message = expect_error(load_fn, path, "refuses pickled data", "numpy.savez")
    assert "pickle.load" not in message and "unsafe" not in message and "trust" not in message


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_loaders_name_the_path_of_a_damaged_zip(loader, tmp_path, how):
    load_fn, make, prefix, _ = loader
    path = corrupt(make(tmp_path / "ckpt.npz"), how)
    fragments = ["truncated"] if how == "truncated" else [f"'{prefix}head.weight'", "corrupted"]
    expect_error(load_fn, path, *fragments)


@pytest.mark.parametrize(
    "value,fragment",
    [
        (np.array(["a"] * 10), "has dtype <U1, expected numbers"),
        (np.full(10, np.nan, dtype=np.float32), "holds NaN or infinity"),
    ],
)
def test_loaders_name_a_non_numeric_or_non_finite_array(loader, tmp_path, value, fragment):
    load_fn, make, prefix, _ = loader
    path = make(tmp_path / "ckpt.npz", {f"{prefix}head.bias": value})
    expect_error(load_fn, path, f"'{prefix}head.bias'", fragment)


def test_loaders_name_a_misshaped_num_batches_tracked(loader, tmp_path):
    load_fn, make, prefix, _ = loader
    key = ("state." if prefix else "") + COUNTER
    path = make(tmp_path / "ckpt.npz", {key: np.zeros(5, dtype=np.int64)})
    expect_error(load_fn, path, COUNTER, "(5,)")


def test_loaders_accept_their_own_files(tmp_path):
    params, state = load_spikformer_npz(spikformer_npz(tmp_path / "s.npz"), TINY)
    assert state[COUNTER].shape == () and state[COUNTER].dtype == np.int64
    tc, cfg, params, state, arrays, meta = train_mod.load_run(training_checkpoint(tmp_path / "t.npz"))
    assert cfg == TINY and params["head.weight"].dtype == np.float32 and meta["epoch"] == 0
