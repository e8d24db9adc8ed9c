"""Importing a Spikformer checkpoint (PyTorch ``state_dict`` exported as ``.npz``).

This package's parameter names are Spikformer's CIFAR ``state_dict`` names
(:mod:`ds2ta_ref.params`), so a CIFAR checkpoint loads as it is; the DVS code's
1x1 ``Conv1d`` layers and the LayerNorms Spikformer builds but never uses are
translated by :func:`translate_spikformer_names`.
"""

from __future__ import annotations

import re

import numpy as np

from .checkpoint import CheckpointError, read_npz
from .config import ModelConfig
from .params import init_params, init_state, param_shapes, state_shapes, validate

__all__ = ["translate_spikformer_names", "split_spikformer_names", "spikformer_arrays", "load_spikformer_npz"]

_UNUSED = re.compile(r"^block\.\d+\.norm[12]\.(weight|bias)$")  # LayerNorms Spikformer builds but never uses
_DVS_NAME = re.compile(r"^(block\.\d+\.(?:attn\.(?:q|k|v|proj)|mlp\.fc[12]))_conv\.(weight|bias)$")


def translate_spikformer_names(arrays: dict) -> dict:
    """Spikformer ``state_dict`` arrays to this package's names.

    Drops the unused ``norm1``/``norm2`` LayerNorms, and maps the DVS code's 1x1
    ``Conv1d`` layers (``q_conv``, ..., ``fc2_conv``, weights ``(out, in, 1)``) to
    the CIFAR code's ``*_linear`` names with ``(out, in)`` weights.
    (:func:`split_spikformer_names` also returns the names dropped.)
    """
    return split_spikformer_names(arrays)[0]


def split_spikformer_names(arrays: dict) -> tuple[dict, list[str]]:
    """``(translated, dropped)``: :func:`translate_spikformer_names`'s arrays and the names it
    dropped (the ``block.{i}.norm1/norm2.weight/bias`` LayerNorms Spikformer builds but never uses)."""
    out, dropped = {}, []
    for name, value in arrays.items():
        if _UNUSED.match(name):
            dropped.append(name)
            continue
        m = _DVS_NAME.match(name)
        if m:
            name = f"{m.group(1)}_linear.{m.group(2)}"
            if m.group(2) == "weight" and value.ndim == 3 and value.shape[-1] == 1:
                value = value[..., 0]
        out[name] = value
    return out, dropped


def _is_count(value: np.ndarray) -> bool:
    """One whole number >= 0 (PyTorch stores ``num_batches_tracked`` as a 0-d int64)."""
    return value.shape == () and float(value).is_integer() and float(value) >= 0


def load_spikformer_npz(path, cfg: ModelConfig, *, fill_ds2ta: bool = True, dtype=np.float64) -> tuple[dict, dict]:
    """Load a Spikformer checkpoint exported as ``.npz`` (``state_dict`` key -> array).

    Export it from PyTorch with
    ``np.savez(path, **{k: v.cpu().numpy() for k, v in model.state_dict().items()})``.
    Every name and shape is validated; all mismatches are reported together,
    each by name. ``norm1``/``norm2`` are ignored; DVS names are translated (see
    :func:`translate_spikformer_names`). With ``fill_ds2ta`` the DS2TA
    parameters a Spikformer checkpoint lacks (``attn.tau``, ``attn.nsad``) are
    set to their initial values from ``cfg``.

    Returns:
        ``(params, state)`` as :func:`ds2ta_ref.model.forward` takes them.

    Raises:
        ValueError (:class:`~ds2ta_ref.checkpoint.CheckpointError`) naming the
        path, and the array where one is at fault: a missing file, a ``.npy``
        or pickled file (a ``.pth``: pickles are refused, export with
        ``np.savez`` as above), a truncated or corrupted archive, an array
        that is not numbers or holds NaN or infinity, a ``num_batches_tracked``
        that is not one integer >= 0, or names and shapes that do not match
        ``cfg``.
    """
    what = "Spikformer checkpoint"
    arrays = read_npz(path, what=what)  # no pickles; errors name the path (and the array)
    params, state, _ = spikformer_arrays(
        arrays, cfg, fill_ds2ta=fill_ds2ta, dtype=dtype, source=f"{what} {str(path)!r}"
    )
    return params, state


def spikformer_arrays(
    arrays: dict, cfg: ModelConfig, *, fill_ds2ta: bool = True, dtype=np.float64, source: str = "Spikformer state_dict"
) -> tuple[dict, dict, list[str]]:
    """``(params, state, dropped)`` from a Spikformer ``state_dict``'s arrays (NumPy), checked as
    :func:`load_spikformer_npz` says; ``dropped``: the unused ``norm1``/``norm2`` names left out.
    Errors (:class:`~ds2ta_ref.checkpoint.CheckpointError`) start with ``source``."""
    for name, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise CheckpointError(f"{source}: array {name!r} has dtype {value.dtype}, expected numbers")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise CheckpointError(f"{source}: array {name!r} holds NaN or infinity")
        if name.endswith("num_batches_tracked") and not _is_count(value):
            raise CheckpointError(
                f"{source}: array {name!r} must be one integer >= 0 "
                f"(a BatchNorm's batch count), got shape {value.shape} and dtype {value.dtype}"
            )
    arrays, dropped = split_spikformer_names(arrays)
    state_keys = state_shapes(cfg)
    params = {k: v for k, v in arrays.items() if k not in state_keys}
    state = {k: v for k, v in arrays.items() if k in state_keys}
    if fill_ds2ta:
        defaults = init_params(cfg, np.random.default_rng(0))
        for name in defaults:
            if name.endswith((".tau", ".proj_tau", ".nsad")) and name not in params:
                params[name] = defaults[name]
    full_state = init_state(cfg, dtype=dtype)
    counters = {k: v for k, v in full_state.items() if k.endswith("num_batches_tracked")}  # optional in a file
    problems = []
    for arrays_, expected, part in (
        (params, param_shapes(cfg), "parameters"),
        ({**counters, **state}, state_shapes(cfg), "BatchNorm state"),
    ):
        try:
            validate(arrays_, expected, what=part)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise CheckpointError(f"{source} does not match the config: " + "; ".join(problems))
    params = {k: np.asarray(v, dtype=dtype) for k, v in params.items()}
    for k, v in state.items():
        full_state[k] = np.asarray(v, dtype=np.int64 if k.endswith("num_batches_tracked") else dtype)
    return params, full_state, dropped
