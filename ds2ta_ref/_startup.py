"""Ctrl-C while the ``ds2ta-ref`` command is still starting (importing NumPy and the package).

The package's ``__init__`` and :mod:`ds2ta_ref.cli` import their modules inside
``try: ... except KeyboardInterrupt: interrupted_while_starting(); raise``. When
the process was started as the command (the ``ds2ta-ref`` script, or
``python -m ds2ta_ref``), that is one line, ``ds2ta-ref: interrupted``, and exit
status 130, as Ctrl-C at any later moment; when the package is imported by
someone else's program, the ``KeyboardInterrupt`` goes on as usual.

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
