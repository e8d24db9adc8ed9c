"""Refuse a request that cannot fit in memory, with its estimated size (issue 18 item 6).

A model with ``--set dim=1000000`` or a batch of 10^8 samples fails inside NumPy
with a ``MemoryError`` traceback (or, worse, makes the machine swap). Before any
work, the command line compares a simple estimate of what the request needs with
the memory available now and refuses one that cannot fit, naming both sizes.

The estimate is meant as a *lower bound*: it counts only the largest arrays, so a
request it refuses does not fit, and one it accepts may still be tight.

* :func:`train_bytes`: the parameters :data:`PARAMETER_COPIES` = 5 times (parameters,
  gradients, AdamW's ``m`` and ``v``, one temporary of the update) plus
  :data:`ACTIVATION_COPIES` = 3 times the elements of these activations of one training
  batch ``B`` (the forward pass caches several arrays of each such size for the backward
  pass: a layer's input, its BatchNorm output, the LIF membrane and spikes; on the tiny
  preset the cache measures 3.3 to 4.4 times the count below, and
  ``tests/test_reliability.py`` checks that 3 stays below what is measured):

  - patch splitter (SPS), one output per stage: ``T B (D/8, D/4, D/2, D) x`` that
    stage's ``H x W`` (``H`` halves after the max-pools of the ``sps`` layout);
  - every encoder block: the q, k, v spikes ``3 T B N D``, the attention maps
    ``T B heads N N`` and the MLP's hidden layer ``T B N (mlp_ratio D)``.

* :func:`forward_bytes`: the parameters once plus the cached activations
  (``ACTIVATION_COPIES`` times the count, as for training), or with ``backward=False``
  the largest single activation only: the golden files and ``evaluate`` run forward passes.

:func:`available_bytes` reads ``MemAvailable`` from ``/proc/meminfo`` (Linux), else
``os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")``; where neither exists
the check is skipped. :func:`check` raises :class:`MemoryRequestError`.

:func:`reuse_freed_memory` is the other side of memory: how fast it is handed out.
The training command calls it once at start (see its docstring for what it changes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os

import numpy as np

from .config import ModelConfig
from .params import param_shapes

__all__ = [
    "MemoryRequestError",
    "available_bytes",
    "activation_elements",
    "train_bytes",
    "forward_bytes",
    "check",
    "format_bytes",
    "reuse_freed_memory",
]


PARAMETER_COPIES = 5
ACTIVATION_COPIES = 3


class MemoryRequestError(ValueError):
    """A request whose estimated size exceeds the memory available; the message names both."""


def available_bytes() -> int | None:
    """The memory available to a new allocation now, in bytes (None if the system does not say)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def activation_elements(cfg: ModelConfig, batch: int) -> tuple[int, int]:
    """``(total, largest)`` numbers of elements of the cached activations of one forward pass of
    ``batch`` samples (the lower bound described in the module's docstring); Python ints, no overflow."""
    T, B, D, H = cfg.T, int(batch), cfg.dim, cfg.img_size
    channels = (D // 8, D // 4, D // 2, D)
    pool_after = (False, False, True, True) if cfg.sps == "cifar" else (True, True, True, True)
    sizes = []
    side = H
    for c, pool in zip(channels, pool_after):
        sizes.append(T * B * c * side * side)
        if pool:
            side //= 2
    N = cfg.num_tokens
    block = [3 * T * B * N * D, T * B * cfg.heads * N * N, T * B * N * cfg.mlp_ratio * D]
    return sum(sizes) + cfg.depth * sum(block), max(sizes + block)


def count_params(cfg: ModelConfig) -> int:
    """The number of parameters of ``cfg``, in Python ints (no int64 overflow for absurd sizes)."""
    return sum(math.prod(int(n) for n in shape) for shape in param_shapes(cfg).values())


def train_bytes(cfg: ModelConfig, batch: int, dtype="float32") -> int:
    """Lower bound of the bytes one training step of ``batch`` samples needs (see the module docstring)."""
    item = np.dtype(dtype).itemsize
    return (PARAMETER_COPIES * count_params(cfg) + ACTIVATION_COPIES * activation_elements(cfg, batch)[0]) * item


def forward_bytes(cfg: ModelConfig, batch: int, dtype="float64", *, backward: bool = True) -> int:
    """Lower bound of the bytes of a forward pass of ``batch`` samples: parameters plus the cached
    activations (``backward=True``) or the largest activation alone (``backward=False``)."""
    total, largest = activation_elements(cfg, batch)
    return (count_params(cfg) + (ACTIVATION_COPIES * total if backward else largest)) * np.dtype(dtype).itemsize


def format_bytes(n: int) -> str:
    """``n`` bytes as ``"3.2 GB"`` (powers of 1000)."""
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def check(nbytes: int, what: str, *, available: int | None = None) -> None:
    """Raise :class:`MemoryRequestError` if ``nbytes`` exceeds the memory available
    (``available``, default :func:`available_bytes`; no check if unknown). ``what`` names the
    request, e.g. ``"--set dim=1000000: training with batch 64"``."""
    available = available_bytes() if available is None else available
    if available is not None and nbytes > available:
        raise MemoryRequestError(
            f"{what} needs at least {format_bytes(nbytes)} of memory (an estimate of its "
            f"largest arrays, ds2ta_ref.memory), but {format_bytes(available)} is available"
        )


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_LARGEST = 2**31 - 1  # mallopt takes an int


def reuse_freed_memory() -> bool:
    """Have glibc's ``malloc`` keep freed memory for reuse instead of returning it to the system.

    A training step allocates and frees the same large arrays every step (im2col
    matrices, the forward cache, gradients). By default glibc serves each block above
    its mmap threshold (128 KiB, growing to at most 32 MiB) with a fresh ``mmap`` and
    unmaps it when freed, and trims the heap's free top, so the next step touches
    that memory anew: on the tiny preset at batch 64 about 12,000 page faults per step,
    a fifth of the step's time (``benchmarks/bench_model.py`` reports the faults). Raising
    ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to their maxima keeps freed blocks in
    the heap, where the next step reuses them: no faults after the first step.

    The process's peak memory is about the same; it is held until the process exits
    rather than given back between steps. ``ds2ta-ref train`` calls this once for the
    whole process (both backends; the benchmark does the same on both sides). It is
    what ``MALLOC_MMAP_THRESHOLD_=2147483647 MALLOC_TRIM_THRESHOLD_=2147483647`` in the
    environment does, applied from inside. Returns ``False``, changing nothing, where the
    C library is not glibc (macOS, Windows, musl).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt  # glibc only
        libc.gnu_get_libc_version  # noqa: B018  (musl has mallopt as a stub; this symbol is glibc's)
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))
