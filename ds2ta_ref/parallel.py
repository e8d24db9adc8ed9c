"""Elementwise work on every core: a loop over independent slices, split across threads.

The BLAS runs large matrix products on every core, but the work between them (the im2col
copies of a convolution, the LIF neuron's loop over time, max-pooling) is NumPy ufuncs
and copies on one core, and so is a stack of small products (the attention's per-head
``q k^T``), which NumPy hands to the BLAS one small matrix at a time. Those release the
GIL, so threads do run them in parallel. :func:`for_parts` splits such a loop over ``n``
independent items (channels, neurons, images) into contiguous parts, one per thread, and
the caller's function fills its own part of arrays allocated beforehand (:func:`matmul`
does this for a stack of products)::

    out = np.empty_like(x)
    parallel.for_parts(len(x), lambda lo, hi: np.multiply(x[lo:hi], 2, out=out[lo:hi]), work=x.size)

Each part does, on its own elements, exactly the arithmetic of the serial loop (no
reduction is split), so results are bit-identical for any number of threads; a test
checks 1, 2 and 3 threads on every kernel that uses this.

Threads: :func:`threads` (default: the CPUs this process may run on, at most 8),
changed with :func:`set_threads` or the ``DS2TA_REF_THREADS`` environment variable;
``1`` runs everything in the calling thread. Small loops (``work`` under
:data:`MIN_WORK` elements) always run serially: handing a part to a thread costs tens of
microseconds.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

import numpy as np

__all__ = ["threads", "set_threads", "for_parts", "matmul", "MIN_WORK"]

MIN_WORK = 1 << 16  # elements below which a loop runs in one thread
_MAX_DEFAULT = 8

_lock = threading.Lock()
_threads: int | None = None  # None: not decided yet


class _Workers:
    """``n`` daemon threads that run the parts :func:`for_parts` hands them.

    Daemon threads, not a ``concurrent.futures.ThreadPoolExecutor``: the executor's threads
    are joined when the interpreter exits, and one whose start Ctrl-C interrupted (the
    KeyboardInterrupt comes while ``Thread.start`` waits for the new thread, before the
    executor has recorded it) never gets the executor's stop signal, so the program hung on
    exit after Ctrl-C. Parts are only ever left running on the way out of an interrupted
    :func:`for_parts`, which waits for every part it handed out."""

    def __init__(self, n: int):
        self.n = n
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(n):
            threading.Thread(target=self._serve, args=(self._tasks,), name=f"ds2ta_ref_{i}", daemon=True).start()

    @staticmethod
    def _serve(tasks: queue.SimpleQueue) -> None:
        while (task := tasks.get()) is not None:
            fn, lo, hi, done = task
            try:
                fn(lo, hi)
            except BaseException as exc:  # noqa: BLE001 (handed to the caller, who raises it)
                done.put(exc)
            else:
                done.put(None)

    def submit(self, fn: Callable[[int, int], object], lo: int, hi: int, done: queue.SimpleQueue) -> None:
        self._tasks.put((fn, lo, hi, done))

    def stop(self) -> None:
        for _ in range(self.n):
            self._tasks.put(None)


_pool: _Workers | None = None


def _default_threads() -> int:
    env = os.environ.get("DS2TA_REF_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"DS2TA_REF_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"DS2TA_REF_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_DEFAULT))


def threads() -> int:
    """How many threads :func:`for_parts` uses (the calling thread included)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_threads(n: int | None) -> None:
    """Use ``n`` threads (``1``: everything serial; ``None``: back to the default)."""
    global _threads, _pool
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}")
    with _lock:
        if _pool is not None:
            _pool.stop()
            _pool = None
        _threads = None if n is None else n


def _get_pool(workers: int) -> _Workers:
    global _pool
    with _lock:
        if _pool is None or _pool.n != workers:
            if _pool is not None:
                _pool.stop()
                _pool = None
            _pool = _Workers(workers)
        return _pool


def _forget_pool_after_fork() -> None:  # a forked child has none of the parent's threads
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def for_parts(n: int, fn: Callable[[int, int], object], *, work: int) -> None:
    """Call ``fn(lo, hi)`` for contiguous parts ``[lo, hi)`` covering ``range(n)``, in parallel.

    ``fn`` must touch only its own part of the outputs (parts may run in any order, on
    any thread); ``work`` is the number of elements the whole loop processes, which decides
    whether it is worth splitting. The last part runs in the calling thread; an exception
    in any part is raised here, after every part has finished.
    """
    k = min(threads(), n)
    if k <= 1 or work < MIN_WORK:
        fn(0, n)
        return
    bounds = [n * i // k for i in range(k + 1)]
    pool = _get_pool(k - 1)
    done: queue.SimpleQueue = queue.SimpleQueue()  # one entry per finished part: None or its exception
    handed_out = 0
    error: BaseException | None = None
    try:
        for i in range(k - 1):
            pool.submit(fn, bounds[i], bounds[i + 1], done)
            handed_out += 1
        fn(bounds[k - 1], bounds[k])
    except BaseException as exc:  # noqa: BLE001 (re-raised below, once the other parts are done)
        error = exc
    while handed_out:  # the parts write into the caller's arrays: never return while one runs
        try:
            outcome = done.get()
        except BaseException as exc:  # noqa: BLE001 (Ctrl-C while waiting: wait on, raise it after)
            error = error or exc
            continue
        handed_out -= 1
        error = error or outcome
    if error is not None:
        raise error


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for stacks of matrices with the same leading axes ``(n, ..., p, q) @ (n, ..., q, r)``,
    the stack split along its first axis across threads (:func:`for_parts`).

    NumPy multiplies a stack one matrix at a time, and each small product runs on one core;
    here each thread runs ``np.matmul`` on its own slice of the stack, so every matrix is the
    very product NumPy's would be, bit for bit, for any number of threads."""
    if a.ndim < 3 or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"a and b must be stacks with the same leading axes, got shapes {a.shape} and {b.shape}")
    out = np.empty(a.shape[:-1] + b.shape[-1:], np.result_type(a, b))
    for_parts(
        out.shape[0],
        lambda lo, hi: np.matmul(a[lo:hi], b[lo:hi], out=out[lo:hi]),
        work=out.size * a.shape[-1],
    )
    return out
