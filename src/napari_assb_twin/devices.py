"""Compute-device selection with messages a user can act on."""

from __future__ import annotations

import torch


def available_devices() -> list[str]:
    """Names of the devices torch can use here, best first (e.g. ``["cuda:0", "cpu"]``)."""
    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` into a usable :class:`torch.device`.

    ``"auto"`` (or ``None``) picks CUDA, then MPS, then CPU.

    Raises
    ------
    ValueError
        If the device name is malformed or the device does not exist on this machine; the message
        lists the devices that do.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps "
            f"(available here: {', '.join(available_devices())})"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available on this machine "
                f"(available: {', '.join(available_devices())}); use --device cpu or auto"
            )
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                f"device {device!r} requested but Apple MPS is not available here "
                f"(available: {', '.join(available_devices())})"
            )
        return dev
    if dev.type == "cpu":
        return dev
    raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps")


def describe_device(device: torch.device) -> str:
    """Human-readable description, e.g. ``"cuda:0 (NVIDIA H100)"`` or ``"cpu (2 threads)"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def available_memory_bytes(device) -> int | None:
    """Free memory for work on ``device`` (CUDA: the device's; else MemAvailable); None if unknown."""
    import os

    if str(device).startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
