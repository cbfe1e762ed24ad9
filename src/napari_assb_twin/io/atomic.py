"""Atomic file writes: a reader sees the old file or the whole new one, never a partial file.

Every file the package writes (model JSON, twin TIFF, Zarr completeness markers, CSV, PNG, HTML,
checkpoints) goes through :func:`atomic_path`: the content is written to a uniquely named temporary
file in the target's folder (same file system, so the final ``os.replace`` is atomic), flushed to
disk, given the mode a plain ``open()`` would give (``0o666`` minus the umask; ``mkstemp`` alone
leaves ``0o600``) and renamed over the target. On any error, or Ctrl-C, the temporary file is removed
and the target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text", "current_umask"]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to probe is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); not possible / needed on Windows."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; publish it as ``target`` when the block succeeds.

    The temporary name keeps ``target``'s suffix (``.name.<random>.tmp.png``) so writers that infer
    the format from the name (matplotlib, tifffile, pandas) work unchanged.

    Raises
    ------
    FileNotFoundError
        If ``target``'s folder does not exist.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{target}: folder {folder} does not exist; create it first")
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # the bytes must be durable before the rename publishes them
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(target, mode)`` for writing, published atomically when the block ends without error."""
    if not any(c in mode for c in "wx") or "+" in mode:
        raise ValueError(f"atomic_open writes a new file: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(target) as tmp, open(tmp, mode.replace("x", "w"), **kwargs) as fh:
        yield fh


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically; returns the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)
