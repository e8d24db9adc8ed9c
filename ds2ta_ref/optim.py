"""The training recipe's optimizer (docs/spec.md §4.11): AdamW, a cosine schedule with
linear warmup, and gradient-norm clipping.

All three follow PyTorch exactly (``torch.optim.AdamW``,
``torch.nn.utils.clip_grad_norm_``) so that a run here and a run in PyTorch
can be held against each other step by step. Parameters and gradients are
dicts ``name -> np.ndarray``; the optimizer's state is plain arrays, so it can
be written with :mod:`ds2ta_ref.checkpoint` without pickle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping

import numpy as np

from ._checks import check_finite_scalar, check_int
from .names import validate

__all__ = ["AdamW", "cosine_lr", "clip_grad_norm"]


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    For every parameter ``p`` with gradient ``g``, at step ``k = 1, 2, ...``::

        p <- p * (1 - lr * weight_decay)          (skipped for no_decay names)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g**2
        p <- p - lr / (1 - beta1**k) * m / (sqrt(v) / sqrt(1 - beta2**k) + eps)

    ``params``: ``name -> array`` of floating dtype; the optimizer records
    their names and shapes and keeps ``m`` and ``v`` of the same shape and
    dtype (zeros at the start). ``no_decay``: the names excluded from weight
    decay, either a collection of names (each must be a parameter) or a
    predicate ``name -> bool`` (e.g. biases, BatchNorm, ``tau`` and NSAD
    parameters). The defaults are PyTorch's; the paper uses ``lr=1e-3`` and
    ``weight_decay=0.06`` (docs/spec.md §4.11).
    """

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        no_decay: Collection[str] | Callable[[str], bool] = (),
    ):
        self.lr = check_finite_scalar(lr, "lr", minimum=0.0)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        beta1 = check_finite_scalar(betas[0], "betas[0]", minimum=0.0)
        beta2 = check_finite_scalar(betas[1], "betas[1]", minimum=0.0)
        if beta1 >= 1.0 or beta2 >= 1.0:
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        self.betas = (beta1, beta2)
        self.eps = check_finite_scalar(eps, "eps", minimum=0.0)
        self.weight_decay = check_finite_scalar(weight_decay, "weight_decay", minimum=0.0)

        self.shapes = {}
        for name, p in params.items():
            _check_param(p, f"params[{name!r}]")
            self.shapes[name] = p.shape
        if callable(no_decay):
            self.no_decay = frozenset(name for name in self.shapes if no_decay(name))
        else:
            if isinstance(no_decay, str):
                raise ValueError(f"no_decay must be a collection of names or a predicate, got the string {no_decay!r}")
            unknown = sorted(set(no_decay) - set(self.shapes))
            if unknown:
                raise ValueError(f"no_decay names parameters that do not exist: {unknown}")
            self.no_decay = frozenset(no_decay)
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.step_count = 0

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray], lr: float | None = None) -> None:
        """One AdamW update of ``params``, IN PLACE (the arrays are modified, not replaced).

        ``params`` and ``grads`` must have exactly the names and shapes given
        at construction. ``lr`` overrides the learning rate for this step
        (e.g. from :func:`cosine_lr`); the decay factor uses the same ``lr``,
        as PyTorch does when a scheduler sets it.
        """
        lr = self.lr if lr is None else check_finite_scalar(lr, "lr", minimum=0.0)
        validate(params, self.shapes, what="params (the optimizer's parameters)")
        validate(grads, self.shapes, what="grads (one per optimizer parameter)")
        grads = {name: np.asarray(grads[name]) for name in self.shapes}
        for name, shape in self.shapes.items():
            _check_param(params[name], f"params[{name!r}]", shape)
            g = grads[name]
            if not np.all(np.isfinite(g)):
                raise ValueError(f"grads[{name!r}] contains NaN or infinity")

        beta1, beta2 = self.betas
        self.step_count += 1
        k = self.step_count
        step_size = lr / (1.0 - beta1**k)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**k)
        for name in self.shapes:
            p, g, m, v = params[name], grads[name], self.m[name], self.v[name]
            if name not in self.no_decay:
                p *= 1.0 - lr * self.weight_decay
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * g * g
            denom = np.sqrt(v) / bias_correction2_sqrt + self.eps
            p -= step_size * m / denom

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state: ``m.<name>``, ``v.<name>`` (parameter shape and
        dtype) and ``step`` (0-d int64). Hyperparameters are not included: they
        belong to the run's configuration."""
        state = {f"m.{name}": m.copy() for name, m in self.m.items()}
        state.update({f"v.{name}": v.copy() for name, v in self.v.items()})
        state["step"] = np.array(self.step_count, dtype=np.int64)
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a :meth:`state_dict`; a ``ValueError`` lists every missing,
        extra or mis-shaped entry, and names any bad value."""
        expected = {f"{kind}.{name}": shape for kind in ("m", "v") for name, shape in self.shapes.items()}
        expected["step"] = ()
        validate(state, expected, what="optimizer state")
        step = np.asarray(state["step"])
        if not np.issubdtype(step.dtype, np.integer) or step < 0:
            raise ValueError(f"optimizer state 'step' must be a non-negative integer, got {step!r}")
        for key in expected:
            if key != "step" and not np.all(np.isfinite(state[key])):
                raise ValueError(f"optimizer state {key!r} contains NaN or infinity")
        for name in self.shapes:
            if np.any(np.asarray(state[f"v.{name}"]) < 0):
                raise ValueError(f"optimizer state 'v.{name}' must be >= 0 (a running mean of squares)")
        for name in self.shapes:
            self.m[name] = np.array(state[f"m.{name}"], dtype=self.m[name].dtype)
            self.v[name] = np.array(state[f"v.{name}"], dtype=self.v[name].dtype)
        self.step_count = int(step)


def _check_param(p, name: str, shape: tuple | None = None) -> None:
    if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
        raise ValueError(
            f"{name} must be a floating-point numpy array (updated in place), got {type(p).__name__}"
            + (f" of dtype {p.dtype}" if isinstance(p, np.ndarray) else "")
        )
    if shape is not None and p.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {p.shape}")
    if not p.flags.writeable:
        raise ValueError(f"{name} must be writeable: AdamW updates parameters in place")


def cosine_lr(step: int, *, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear warmup, then cosine decay.

    ::

        step < warmup_steps:          base_lr * (step + 1) / (warmup_steps + 1)
        warmup_steps <= step < total: min_lr + (base_lr - min_lr) * (1 + cos(pi * q)) / 2,
                                      q = (step - warmup_steps) / (total_steps - warmup_steps)
        step >= total_steps:          min_lr

    The warmup rises strictly from ``base_lr / (warmup_steps + 1)`` (never 0,
    so no step is wasted), the peak ``base_lr`` is reached at
    ``step == warmup_steps``, and ``min_lr`` at ``step == total_steps``.
    Requires ``0 <= warmup_steps < total_steps``.
    """
    step = check_int(step, "step", minimum=0)
    total_steps = check_int(total_steps, "total_steps", minimum=1)
    warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0)
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps must be < total_steps={total_steps}, got {warmup_steps}")
    base_lr = check_finite_scalar(base_lr, "base_lr", minimum=0.0)
    min_lr = check_finite_scalar(min_lr, "min_lr", minimum=0.0)
    if min_lr > base_lr:
        raise ValueError(f"min_lr must be <= base_lr={base_lr}, got {min_lr}")
    if step >= total_steps:
        return min_lr
    if step < warmup_steps:
        return base_lr * (step + 1) / (warmup_steps + 1)
    q = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * q))


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float, *, eps: float = 1e-6) -> float:
    """Scale all gradients IN PLACE so that their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``::

        total_norm = sqrt(sum over names of sum(g**2))
        g <- g * min(1, max_norm / (total_norm + eps))     for every g

    Returns ``total_norm``, the norm *before* clipping. A NaN or infinite
    gradient raises ``ValueError`` naming it (PyTorch would silently turn every
    gradient into NaN unless ``error_if_nonfinite=True``).
    """
    max_norm = check_finite_scalar(max_norm, "max_norm", minimum=0.0, strict=True)
    for name, g in grads.items():
        if not isinstance(g, np.ndarray) or not np.issubdtype(g.dtype, np.floating):
            raise ValueError(f"grads[{name!r}] must be a floating-point numpy array (scaled in place)")
        if not np.all(np.isfinite(g)):
            raise ValueError(f"grads[{name!r}] contains NaN or infinity")
    total_norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
    coef = max_norm / (total_norm + eps)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return total_norm
