"""Is a ``--device`` usable here, and can this process run under ``torchrun``? (issue 18 item 4)

Checked before any work (no data loaded, no folder or lock created), so that a
wrong device is one line rather than a traceback after "training ... on cuda".
This module never imports torch at import time (the core package does not
need it); :func:`check_device` imports it only when asked about the torch backend.

The devices ``ds2ta_ref.torch`` trains on are ``cpu``, ``cuda`` and ``cuda:N``.
``mps`` is refused (the model's float64 mode and its tests are CPU and CUDA
only), as is ``meta`` (a device without data) and anything else.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in every process;
with ``WORLD_SIZE > 1`` the NumPy backend is refused (it runs in one process;
every process would train the same run into the same folder), and so is
``cuda`` when PyTorch lacks NCCL (its CUDA process-group backend). Every
process prints its own line and stops before it takes any lock.
"""

from __future__ import annotations

import os
import re

__all__ = ["DeviceError", "world_size", "check_device", "check_processes"]

_CUDA = re.compile(r"cuda(?::(\d+))?")


class DeviceError(ValueError):
    """A device or process setting that cannot work on this machine; the message is one line
    naming the option (``--device``, ``--backend``) and what was expected."""


def world_size(environ=None) -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 outside it); a malformed value is a ``DeviceError``."""
    environ = os.environ if environ is None else environ
    text = environ.get("WORLD_SIZE", "1")
    try:
        world = int(text)
    except ValueError:
        world = 0
    if world < 1:
        raise DeviceError(f"environment variable WORLD_SIZE must be an integer >= 1 (torchrun sets it), got {text!r}")
    return world


def check_processes(backend: str, environ=None) -> None:
    """Refuse the NumPy backend under ``torchrun`` (``WORLD_SIZE > 1``): it runs in one process."""
    environ = os.environ if environ is None else environ
    world = world_size(environ)
    if world > 1 and backend != "torch":
        raise DeviceError(
            f"argument --backend: the {backend} backend runs in one process, but this is one of "
            f"{world} processes (WORLD_SIZE={world}, as torchrun sets it); use --backend torch "
            f"under torchrun, or run without torchrun"
        )
    if world > 1:  # what torch.distributed's env:// rendezvous reads; torchrun sets all of them
        for name, limit in (("RANK", world), ("LOCAL_RANK", None)):
            text = environ.get(name)
            if text is None or not text.isdigit() or (limit is not None and int(text) >= limit):
                expected = f"an integer in [0, {limit})" if limit else "an integer >= 0"
                raise DeviceError(
                    f"environment variable {name} must be {expected} with WORLD_SIZE={world}, got "
                    f"{text!r}; start the processes with torchrun, which sets it"
                )
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(name)]
        if missing:
            raise DeviceError(
                f"environment variable {missing[0]} is not set, but WORLD_SIZE={world} asks for "
                f"{world} processes; start them with torchrun, which sets it"
            )


def check_device(device: str, *, backend: str = "torch", environ=None) -> str:
    """``device`` checked for this machine; returns it. Raises :class:`DeviceError` (one line).

    With the NumPy backend only ``cpu`` is accepted (it never imports torch). With the torch
    backend: ``cpu``; ``cuda`` or ``cuda:N`` if PyTorch sees CUDA and device ``N`` exists (under
    ``torchrun``, ``cuda`` means ``cuda:LOCAL_RANK``, which must exist too, and NCCL must be
    available); anything else (``mps``, ``meta``, a typo) is refused naming the accepted forms.
    """
    environ = os.environ if environ is None else environ
    if not isinstance(device, str):
        raise DeviceError(f"argument --device: must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    check_processes(backend, environ)
    if backend != "torch":
        if device != "cpu":
            raise DeviceError(
                f"argument --device: {device!r} needs --backend torch (the NumPy backend runs on the cpu)"
            )
        return device
    if device == "cpu":
        return device
    match = _CUDA.fullmatch(device)
    if match is None:
        why = {
            "mps": "Apple's MPS is not supported (ds2ta_ref.torch runs and is tested on cpu and cuda only)",
            "meta": "'meta' tensors hold no data, so nothing can be trained or evaluated on them",
        }.get(device.split(":")[0], "not a device name")
        raise DeviceError(f"argument --device: {device!r}: {why}; expected cpu, cuda or cuda:N")
    try:
        import torch
    except ImportError as exc:
        raise DeviceError(
            f"argument --backend torch: PyTorch is not installed ({exc}); pip install 'ds2ta_ref[torch]'"
        ) from None

    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = "this PyTorch is built without CUDA" if built is None else "no CUDA device is visible"
        raise DeviceError(
            f"argument --device: {device!r}: CUDA is not available ({why}, torch {torch.__version__}); use --device cpu"
        )
    count = torch.cuda.device_count()
    world = world_size(environ)
    if match.group(1) is not None:
        index, what = int(match.group(1)), device
    elif world > 1:
        local = environ.get("LOCAL_RANK", "0")
        index, what = (
            (int(local) if local.isdigit() else -1),
            f"{device!r} under torchrun means cuda:LOCAL_RANK (LOCAL_RANK={local})",
        )
    else:
        index, what = 0, device
    if not 0 <= index < count:
        raise DeviceError(
            f"argument --device: {what if what != device else repr(device)} does not exist: this "
            f"machine has {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})"
        )
    if world > 1:
        import torch.distributed as dist

        if not dist.is_available():
            raise DeviceError(
                "argument --device: this PyTorch has no torch.distributed, so it cannot run under torchrun"
            )
        if not dist.is_nccl_available():
            raise DeviceError(
                f"argument --device: {device!r} under torchrun needs NCCL (the CUDA process-group "
                f"backend), which this PyTorch lacks; use --device cpu (gloo) or a PyTorch with NCCL"
            )
    return device
