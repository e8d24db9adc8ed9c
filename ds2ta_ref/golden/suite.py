"""The conformance suite: small golden files that together exercise every convention (docs/golden.md).

:func:`write_suite` ``(directory)`` writes ``<case>.npz`` for every case of
:data:`CASES` and ``suite.json`` (each case's name, config, seed, batch, what
it is designed to catch, and the measured firing rate of every LIF site).
The cases are small (8x8 or 16x16 images, D = 16) and drawn so that every LIF
site fires at a rate between 5% and 95% (:data:`RATE_RANGE`, checked when
the suite is built).
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import numpy as np

from .. import checkpoint
from ..config import ModelConfig
from .layout import FORMAT_VERSION
from .writer import Draws, build, firing_rates, write_npz

__all__ = ["CASES", "RATE_RANGE", "SUITE_VERSION", "Case", "build_case", "write_suite"]

SUITE_VERSION = 1
RATE_RANGE = (0.05, 0.95)  # every LIF site of every case fires at a rate in this range


class Case(NamedTuple):
    cfg: ModelConfig
    draws: Draws
    seed: int
    batch: int
    catches: str  # what the case is designed to catch


_BASE = ModelConfig(img_size=8, in_channels=2, num_classes=3, T=4, depth=1, dim=16, heads=2, window=3, tau0=2.0, u0=1.0)

CASES: dict[str, Case] = {
    "ds2ta": Case(
        _BASE.replace(depth=2),
        Draws(kernel_tau=2.5, model_tau=(1.6, None), qkv_bn_bias=(0.4, 0.9)),
        seed=0,
        batch=2,
        catches="the paper's defaults (sigmoid with its default alpha, window 3, nearest NSAD, strict gate, "
        "detached reset, scale 0.125 after NSAD), two blocks; TASA's tau = 2.5 (a tie: half to even), "
        "NSAD ties and an integer u; every BatchNorm convention; the stem's max-pool ties",
    ),
    "spikformer": Case(
        _BASE.replace(tasa=False, nsad=False, decay_input=True),
        Draws(qkv_bn_bias=(1.0, 1.5)),
        seed=1,
        batch=2,
        catches="Spikformer's conventions (no TASA, no NSAD: no tasa/ or nsad/ section; decay_input=true; "
        "attention threshold 0.5, scale 0.125 on A @ v; q/k/v biases)",
    ),
    "spikformer_dvs": Case(
        _BASE.replace(
            img_size=32, T=3, sps="dvs", qkv_bias=False, scale=0.25, tasa=False, nsad=False, decay_input=True
        ),
        Draws(bn_bias=(-0.2, 0.5), qkv_bn_bias=(1.0, 1.5)),
        seed=2,
        batch=2,
        catches="the DVS code's conventions: a max-pool after every stem stage (32x32 to 2x2 tokens), no q/k/v bias, "
        "scale 0.25",
    ),
    "negative_tau_floor": Case(
        _BASE.replace(T=3, window=2, surrogate="atan", detach_reset=False, nsad_rounding="floor", v_threshold=0.75),
        Draws(kernel_tau=-0.7, model_tau=(-0.6, None), qkv_bn_bias=(0.4, 0.9)),
        seed=3,
        batch=2,
        catches="tau below the clip at 0 (its straight-through gradient), NSAD floor rounding, the atan "
        "surrogate with its default alpha 2, the gradient through the reset (detach_reset=false), "
        "window 2, a threshold of 0.75",
    ),
    "tau_per_site": Case(
        _BASE.replace(tau_per_site=True, frozen_u=True, alpha=3.0, bn_momentum=0.3, tau_m=3.0),
        Draws(kernel_tau=1.7, model_tau=(2.5, 0.5), qkv_bn_bias=(0.4, 0.9)),
        seed=4,
        batch=2,
        catches="tau 1.7 (floor differs from round), model taus on ties 2.5 and 0.5, tau_per_site, "
        "frozen_u (u's gradient exactly 0), an explicit alpha, bn_momentum 0.3, tau_m 3",
    ),
    "frozen_tau_decay": Case(
        _BASE.replace(T=3, frozen_tau=True, surrogate="atan", alpha=1.5, decay_input=True, u0=2.0),
        Draws(kernel_tau=0.5, qkv_bn_bias=(1.0, 1.5)),
        seed=5,
        batch=3,
        catches="DS2TA with decay_input=true, frozen_tau (no tau gradient), atan with alpha 1.5, tau 0.5 "
        "(a tie at 0/1), a batch of 3",
    ),
}


def build_case(name: str) -> dict[str, np.ndarray]:
    """The arrays of case ``name`` (:func:`ds2ta_ref.golden.build` with the case's config and draws)."""
    if name not in CASES:
        raise ValueError(f"case must be one of {sorted(CASES)}, got {name!r}")
    case = CASES[name]
    return build(case.cfg, seed=case.seed, batch=case.batch, draws=case.draws)


def write_suite(directory: str | os.PathLike, *, overwrite: bool = False) -> list[str]:
    """Write the suite into ``directory`` (created if needed): ``<case>.npz`` per case and ``suite.json``.

    Returns the case names. Files that exist raise ``FileExistsError`` (naming the first) unless
    ``overwrite``; each file is written atomically. A case whose LIF sites do not all fire at a rate
    in :data:`RATE_RANGE` raises ``RuntimeError`` (the draws must be changed, not the model).
    """
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise FileExistsError(f"{directory!r} exists and is not a directory")
    targets = [os.path.join(directory, f"{name}.npz") for name in CASES] + [os.path.join(directory, "suite.json")]
    taken = [p for p in targets if os.path.exists(p)]
    if taken and not overwrite:
        raise FileExistsError(f"{taken[0]!r} exists; pass overwrite=True (--overwrite) to replace the suite")
    os.makedirs(directory, exist_ok=True)
    cases: list[dict[str, Any]] = []  # one entry per case, filled once every case is built
    manifest = {
        "format_version": FORMAT_VERSION,
        "suite_version": SUITE_VERSION,
        "rate_range": list(RATE_RANGE),
        "cases": cases,
    }
    built = {}
    for name in CASES:  # every case built and checked before any file is written
        arrays = build_case(name)
        rates = firing_rates(arrays)
        low, high = RATE_RANGE
        off = {site: rate for site, rate in rates.items() if not low <= rate <= high}
        if off:
            raise RuntimeError(f"suite case {name!r}: LIF sites fire outside {RATE_RANGE}: {off}")
        built[name] = arrays, rates
    for name, (arrays, rates) in built.items():
        case = CASES[name]
        write_npz(os.path.join(directory, f"{name}.npz"), arrays)
        cases.append(
            {
                "name": name,
                "file": f"{name}.npz",
                "config": json.loads(str(arrays["config"])),
                "seed": case.seed,
                "batch": case.batch,
                "catches": case.catches,
                "firing_rates": {k: round(v, 4) for k, v in rates.items()},
            }
        )
    with checkpoint.atomic_write(os.path.join(directory, "suite.json")) as f:
        f.write((json.dumps(manifest, indent=1) + "\n").encode())
    return list(CASES)
