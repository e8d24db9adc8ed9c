"""Bit-identity snapshot of the model: logits, every gradient and the BatchNorm new_state.

Used to show a refactor changes no number: run ``save`` on the old code, ``compare`` on the new::

    PYTHONPATH=. python tests/bitid_snapshot.py save /tmp/before.npz
    PYTHONPATH=. python tests/bitid_snapshot.py compare /tmp/before.npz

``compare`` checks every array with ``np.array_equal`` (same machine, same BLAS: exact by construction)
and exits 1 on the first difference. It calls the model with keyword arguments and accepts
``backward`` returning either ``grads`` (old) or ``(dx, grads)`` (new), so one script runs on both.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

import ds2ta_ref
from ds2ta_ref import model


def configs():
    tiny = ds2ta_ref.preset("tiny")
    return {
        "ds2ta_tiny": tiny,
        "spikformer_decay_input": tiny.replace(tasa=False, nsad=False, decay_input=True),
        "dvs_splitter": tiny.replace(
            sps="dvs",
            in_channels=2,
            tau_per_site=True,
            detach_reset=False,
            surrogate="atan",
            qkv_bias=False,
            scale=0.25,
            nsad_rounding="floor",
        ),
        "ds2ta_frozen": tiny.replace(depth=2, frozen_tau=True, frozen_u=True, T=3),
    }


def snapshot() -> dict[str, np.ndarray]:
    out = {}
    for cname, cfg in configs().items():
        for dtype in (np.float32, np.float64):
            for smooth in (False, True):
                for training in (True, False):
                    rng = np.random.default_rng(0)
                    params = ds2ta_ref.init_params(cfg, rng, dtype=dtype)
                    if cfg.nsad:  # move NSAD away from its initialization so that every column matters
                        for k in params:
                            if k.endswith(".nsad"):
                                params[k] = (params[k] + 0.3 * rng.standard_normal(params[k].shape)).astype(dtype)
                    state = ds2ta_ref.init_state(cfg, dtype=dtype)
                    if not training:  # non-trivial running statistics
                        for k in state:
                            if k.endswith("running_mean"):
                                state[k] = (0.1 * rng.standard_normal(state[k].shape)).astype(dtype)
                            elif k.endswith("running_var"):
                                state[k] = (0.5 + rng.random(state[k].shape)).astype(dtype)
                    B = 3
                    if cfg.sps == "dvs":
                        x = (rng.random((cfg.T, B, cfg.in_channels, cfg.img_size, cfg.img_size)) < 0.3) * 1.0
                    else:
                        x = rng.random((B, cfg.in_channels, cfg.img_size, cfg.img_size)) * 2.0
                    x = x.astype(dtype)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        logits, new_state, cache = model.forward(
                            params=params, state=state, x=x, cfg=cfg, training=training, smooth=smooth
                        )
                        dlogits = rng.standard_normal(logits.shape).astype(dtype)
                        res = model.backward(dlogits, cache)
                    grads = res[1] if isinstance(res, tuple) else res
                    tag = (
                        f"{cname}/{np.dtype(dtype).name}/{'smooth' if smooth else 'hard'}/"
                        f"{'train' if training else 'eval'}"
                    )
                    out[f"{tag}/logits"] = logits
                    for k, v in new_state.items():
                        out[f"{tag}/state/{k}"] = np.asarray(v)
                    for k, v in grads.items():
                        out[f"{tag}/grad/{k}"] = np.asarray(v)
    return out


def main(argv):
    mode, path = argv[1], argv[2]
    snap = snapshot()
    if mode == "save":
        np.savez(path, **snap)
        print(f"saved {len(snap)} arrays to {path}")
        return 0
    ref = np.load(path, allow_pickle=False)
    if sorted(ref.files) != sorted(snap):
        print(f"different array names: {sorted(set(ref.files) ^ set(snap))[:5]}")
        return 1
    bad = [k for k in snap if not (snap[k].dtype == ref[k].dtype and np.array_equal(snap[k], ref[k]))]
    print(f"compared {len(snap)} arrays bit for bit: {len(bad)} differ")
    for k in bad[:10]:
        print("  differs:", k)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
