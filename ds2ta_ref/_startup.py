"""Ctrl-C while the ``ds2ta-ref`` command is still starting (importing NumPy and the package).

The package's ``__init__`` and :mod:`ds2ta_ref.cli` import their modules inside
``try: ... except KeyboardInterrupt: interrupted_while_starting(); raise``. When
the process was started as the command (the ``ds2ta-ref`` script, or
``python -m ds2ta_ref``), that is one line, ``ds2ta-ref: interrupted``, and exit
status 130, as Ctrl-C at any later moment; when the package is imported by
someone else's program, the ``KeyboardInterrupt`` goes on as usual.

It also tunes OpenBLAS for the command's process (:func:`tune_blas_for_command`), which must
happen before NumPy loads OpenBLAS, so the package's ``__init__`` calls it first.

Nothing here imports anything but ``os`` and ``sys`` (both already loaded).
"""

import os
import sys


def started_as_command() -> bool:
    """True if this process is ``ds2ta-ref ...`` or ``python -m ds2ta_ref ...``."""
    if os.path.basename(sys.argv[0] if sys.argv else "") in ("ds2ta-ref", "ds2ta-ref.exe"):
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return any(a == "-m" and b in ("ds2ta_ref", "ds2ta_ref.cli") for a, b in zip(argv, argv[1:]))


def interrupted_while_starting() -> None:
    """Exit with one line and status 130 if started as the command; otherwise return (the caller re-raises)."""
    if started_as_command():
        sys.stderr.write("ds2ta-ref: interrupted\n")
        raise SystemExit(130)


# OpenBLAS's worker threads spin for 2**28 cycles (about 0.1 s) after each matrix product
# before they sleep; 2**12 cycles is about a microsecond.
BLAS_THREAD_TIMEOUT = "12"


def tune_blas_for_command() -> bool:
    """In the command's process only, let OpenBLAS's idle threads sleep at once (``OPENBLAS_THREAD_TIMEOUT``).

    Between two matrix products a training step runs elementwise work (im2col copies, the
    LIF loop, max-pooling) split across the cores by :mod:`ds2ta_ref.parallel`. By default
    OpenBLAS's threads spin for about 0.1 s after each product, holding the cores those
    parts need: on 2 cores the split step was no faster than one thread (60 ms) until the
    threads slept (53 ms; ``tiny`` batch 64, measured with ``benchmarks/profile_step.py``'s
    method). Set only when the process was started as the command, NumPy is not loaded yet
    and the variable is unset (a value the user set is kept); a program that imports the
    package is left as it is. Returns whether it set the variable.
    """
    if not started_as_command() or "numpy" in sys.modules or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = BLAS_THREAD_TIMEOUT
    return True
