"""Names and shapes of parameter dicts: the helpers every block and the model share.

Below the blocks in the module graph (it imports only :mod:`~ds2ta_ref._checks`):

* :func:`sub` / :func:`join`: a block's short names from / to the model's full names
  (``block.0.attn.q_linear.weight`` is ``join("block.0.attn", {"q_linear.weight": ...})``);
* :func:`validate`: the one name-and-shape check of the package (the model, the
  training checkpoints, the Spikformer import and the optimizer all use it);
* :func:`checked_block_inputs`: the checks a block's public ``forward`` makes once, so
  that the kernels it calls can run their ``*_unchecked`` cores.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._checks import as_float_array

__all__ = ["sub", "join", "validate", "checked_block_inputs"]


def sub(d: dict, prefix: str) -> dict:
    """The entries ``prefix.<key>`` of ``d`` as ``{key: value}``."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in d.items() if k.startswith(prefix + ".")}


def join(prefix: str, d: dict) -> dict:
    """``{key: value}`` as ``{prefix.key: value}`` (the inverse of :func:`sub`)."""
    return {f"{prefix}.{k}": v for k, v in d.items()}


def validate(arrays: Mapping[str, np.ndarray], expected: Mapping[str, tuple], *, what: str = "checkpoint") -> None:
    """Check that ``arrays`` has exactly the names of ``expected``, each with its shape.

    ``expected``: ``name -> shape``. Raises ``ValueError`` listing, in one
    line, every missing name, every extra name and every mis-shaped entry.
    This is the one name-and-shape check of the package: the model, the
    training checkpoints, the Spikformer import and the optimizer all use it.
    """
    missing = [name for name in expected if name not in arrays]
    extra = [name for name in arrays if name not in expected]
    wrong = [
        (name, tuple(np.shape(arrays[name])), tuple(shape))
        for name, shape in expected.items()
        if name in arrays and tuple(np.shape(arrays[name])) != tuple(shape)
    ]
    if not (missing or extra or wrong):
        return
    problems = [f"missing {name!r} (expected shape {tuple(expected[name])})" for name in missing]
    problems += [f"unexpected {name!r} (shape {tuple(np.shape(arrays[name]))})" for name in extra]
    problems += [f"{name!r} has shape {got}, expected {want}" for name, got, want in wrong]
    raise ValueError(f"{what} does not match the expected arrays: " + "; ".join(problems))


def checked_block_inputs(
    x, params: dict, state: dict, param_shapes_: dict, state_shapes_: dict, *, what: str, dtype=None
) -> tuple[np.ndarray, dict, dict]:
    """The checks a block's public ``forward`` (or the model's) makes once, so that the kernels
    it calls can run their unchecked cores: ``x`` a finite float array; ``params`` and
    ``state`` with exactly the expected names and shapes (a missing
    ``num_batches_tracked`` counts from 0), finite, and cast to ``x``'s dtype.
    Raises ``ValueError`` naming the block (``what``) and the entry at fault.

    ``x=None`` checks only ``params`` and ``state`` and casts them to ``dtype`` (the model,
    which checks its own input); ``what=""`` names them ``params``/``state`` without a prefix.
    """
    prefix = f"{what} " if what else ""
    if x is not None:
        x = as_float_array(x, f"{prefix}input x")
        dtype = x.dtype
    counters = {k: np.array(0, dtype=np.int64) for k in state_shapes_ if k.endswith("num_batches_tracked")}
    state = {**counters, **state}
    validate(params, param_shapes_, what=f"{prefix}params")
    validate(state, state_shapes_, what=f"{prefix}state (BatchNorm running statistics)")
    params = {k: as_float_array(v, f"{prefix}params[{k!r}]").astype(dtype, copy=False) for k, v in params.items()}
    state = {
        k: (
            np.asarray(v, dtype=np.int64)
            if k.endswith("num_batches_tracked")
            else as_float_array(v, f"{prefix}state[{k!r}]").astype(dtype, copy=False)
        )
        for k, v in state.items()
    }
    bad = [k for k, v in state.items() if k.endswith("running_var") and np.any(v < 0)]
    if bad:
        raise ValueError(f"{prefix}state[{bad[0]!r}] must be >= 0 (a running variance)")
    return x, params, state
