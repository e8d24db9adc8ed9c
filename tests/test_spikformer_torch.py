"""ds2ta_ref.torch.from_spikformer: a Spikformer state_dict (as the Spikformer code saves it) into the
PyTorch model, mirroring the NumPy loader ds2ta_ref.load_spikformer_npz (tests/test_model.py)."""

import warnings

import numpy as np
import pytest

import ds2ta_ref
from ds2ta_ref.gradcheck import firing_model_inputs, small_model_config

torch = pytest.importorskip("torch")
import ds2ta_ref.torch as dt  # noqa: E402 (after the skip: the module needs torch)

SMALL = small_model_config()
SPIKFORMER = SMALL.replace(tasa=False, nsad=False, decay_input=True)


def spikformer_state_dict(cfg, *, dvs=False, seed=0):
    """A Spikformer-style ``state_dict``: the CIFAR code's names (or the DVS code's 1x1 ``Conv1d``
    ``*_conv`` names), float32 tensors, int64 counters, and the unused LayerNorms ``norm1``/``norm2``."""
    params, state, _ = firing_model_inputs(cfg, np.random.default_rng(seed))
    sd = {k: torch.tensor(v, dtype=torch.float32) for k, v in params.items()}
    sd.update(
        {
            k: torch.tensor(v, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
            for k, v in state.items()
        }
    )
    for i in range(cfg.depth):
        for norm in ("norm1", "norm2"):
            sd[f"block.{i}.{norm}.weight"] = torch.ones(cfg.dim)
            sd[f"block.{i}.{norm}.bias"] = torch.zeros(cfg.dim)
    if dvs:
        for name in [k for k in sd if k.startswith("block.") and "_linear." in k]:
            value = sd.pop(name)
            sd[name.replace("_linear.", "_conv.")] = value[..., None] if value.dim() == 2 else value
    return sd


NORMS = [f"block.{i}.{n}.{p}" for i in range(SMALL.depth) for n in ("norm1", "norm2") for p in ("weight", "bias")]


def test_strict_load_state_dict_refuses_a_spikformer_state_dict_from_spikformer_takes_it(tmp_path):
    sd = spikformer_state_dict(SPIKFORMER)
    with pytest.raises(RuntimeError, match="norm1"):
        dt.DS2TA(SPIKFORMER, seed=None).load_state_dict(sd, strict=True)
    with pytest.warns(UserWarning, match=r"dropped 8 unused Spikformer entries \(block\.0\.norm1\.weight"):
        net = dt.from_spikformer(sd, SPIKFORMER)
    assert net.spikformer_dropped == tuple(NORMS)
    assert next(net.parameters()).dtype == torch.float32  # the checkpoint's dtype

    # the same arrays as the NumPy loader reads from the .npz export of the same state_dict
    path = tmp_path / "spikformer.npz"
    np.savez(path, **{k: v.numpy() for k, v in sd.items()})
    params, state = ds2ta_ref.load_spikformer_npz(path, SPIKFORMER, dtype=np.float32)
    got_params, got_state = dt.to_numpy(net)
    assert set(got_params) == set(params) and set(got_state) == set(state)
    assert all(np.array_equal(got_params[k], params[k]) for k in params)
    assert all(np.array_equal(got_state[k], state[k]) for k in state)


def test_from_spikformer_is_from_numpy_of_the_translated_arrays():
    """Equal, by construction, to the model from_numpy builds from the same arrays (and from_numpy is held
    to the NumPy reference at 1e-10 by tests/test_torch_pkg.py)."""
    sd = {k: v.double() if v.is_floating_point() else v for k, v in spikformer_state_dict(SPIKFORMER).items()}
    with pytest.warns(UserWarning):
        net = dt.from_spikformer(sd, SPIKFORMER)
    assert next(net.parameters()).dtype == torch.float64
    params = {k: v.numpy() for k, v in sd.items() if k in ds2ta_ref.model.param_shapes(SPIKFORMER)}
    state = {k: v.numpy() for k, v in sd.items() if k in ds2ta_ref.model.state_shapes(SPIKFORMER)}
    x = torch.rand(2, SPIKFORMER.in_channels, SPIKFORMER.img_size, SPIKFORMER.img_size, dtype=torch.float64)
    with torch.no_grad():  # training mode: batch statistics, so every layer of this small model fires
        out = net.train()(x)
        assert torch.equal(out, dt.from_numpy(params, state, SPIKFORMER).train()(x))
        assert out.abs().max() > 0 and not torch.equal(out, dt.DS2TA(SPIKFORMER, seed=3).double().train()(x))


def test_from_spikformer_into_ds2ta_fills_tau_and_nsad_and_translates_dvs_names():
    with pytest.warns(UserWarning):
        net = dt.from_spikformer(spikformer_state_dict(SPIKFORMER), SMALL)  # DS2TA from a Spikformer checkpoint
    params, _ = dt.to_numpy(net)
    assert params["block.1.attn.tau"] == SMALL.tau0 and params["block.0.attn.nsad"][:, 5].tolist() == [SMALL.u0] * 2
    dvs = SPIKFORMER.replace(sps="dvs", img_size=16, qkv_bias=False)
    sd = spikformer_state_dict(dvs, dvs=True)
    assert sd["block.0.attn.q_conv.weight"].shape == (dvs.dim, dvs.dim, 1)
    with pytest.warns(UserWarning):
        net = dt.from_spikformer(sd, dvs)
    np.testing.assert_array_equal(
        dt.to_numpy(net)[0]["block.0.attn.q_linear.weight"], sd["block.0.attn.q_conv.weight"][..., 0].numpy()
    )


def test_from_spikformer_without_layernorms_does_not_warn():
    sd = {k: v for k, v in spikformer_state_dict(SPIKFORMER).items() if ".norm" not in k}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = dt.from_spikformer(sd, SPIKFORMER)
    assert net.spikformer_dropped == ()


def test_from_spikformer_names_every_mismatch():
    sd = spikformer_state_dict(SPIKFORMER)
    sd["head.weight"] = torch.zeros(5, 16)
    sd["block.9.attn.foo"] = torch.zeros(3)
    del sd["block.0.mlp.fc1_linear.bias"]
    with pytest.raises(ValueError) as info:
        dt.from_spikformer(sd, SPIKFORMER)
    msg = str(info.value)
    assert msg.startswith("Spikformer state_dict does not match the config")
    for part in [
        "missing 'block.0.mlp.fc1_linear.bias'",
        "unexpected 'block.9.attn.foo'",
        "'head.weight' has shape (5, 16), expected (3, 16)",
    ]:
        assert part in msg
    sd = spikformer_state_dict(SPIKFORMER)
    sd["head.bias"] = torch.tensor([float("nan"), 0.0, 0.0])
    with pytest.raises(ValueError, match="array 'head.bias' holds NaN or infinity"):
        dt.from_spikformer(sd, SPIKFORMER)
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        dt.from_spikformer([1, 2], SPIKFORMER)
