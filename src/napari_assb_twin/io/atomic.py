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
import errno
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["OutputClaimedError", "atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text", "current_umask"]

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


class OutputClaimedError(FileExistsError):
    """The target appeared while we were writing it (another writer won); nothing was replaced."""


def _publish_new(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target`` only if ``target`` does not exist, atomically (a hard link)."""
    try:
        os.link(tmp, target)  # fails with EEXIST if another writer published first: exactly one wins
    except FileExistsError:
        raise OutputClaimedError(
            f"{target} was written by another process while this run was working; it was not replaced: "
            "choose another --out, or pass --force to overwrite it") from None
    except OSError:  # a file system without hard links (some network / FAT mounts): claim, then replace
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            raise OutputClaimedError(
                f"{target} was written by another process while this run was working; it was not replaced: "
                "choose another --out, or pass --force to overwrite it") from None
        os.close(fd)
        os.replace(tmp, target)
        return
    tmp.unlink()


def _named(exc: OSError, target: Path) -> OSError:
    """``exc`` re-worded to name ``target`` (never the hidden temporary file) and the fix."""
    reason = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free some space or choose another folder",
            errno.EDQUOT: "free some space or choose another folder",
            errno.EACCES: "choose a folder you can write to",
            errno.EPERM: "choose a folder you can write to",
            errno.EROFS: "choose a folder on a writable file system"}.get(exc.errno or 0, "")
    named = type(exc)(f"cannot write {target}: {reason}" + (f"; {hint}" if hint else ""))
    named.errno = exc.errno  # kept for callers; not printed as "[Errno N]"
    return named


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; publish it as ``target`` when the block succeeds.

    The temporary name keeps ``target``'s suffix (``.name.<random>.tmp.png``) so writers that infer
    the format from the name (matplotlib, tifffile, pandas) work unchanged. With
    ``overwrite=False`` the output is *claimed* at publication: if ``target`` exists by then
    (another process wrote it since the entry checks), nothing is replaced and
    :class:`OutputClaimedError` says so; of two concurrent writers exactly one wins.

    Raises
    ------
    FileNotFoundError
        If ``target``'s folder does not exist.
    OSError
        A full disk, a read-only folder ...: the message names ``target``, not the temporary file.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{target}: folder {folder} does not exist; create it first")
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")
    except OSError as exc:
        raise _named(exc, target) from None
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as fh:  # the bytes must be durable before the rename publishes them
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~current_umask())
            if overwrite:
                os.replace(tmp, target)
            else:
                _publish_new(tmp, target)
        except OutputClaimedError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO) or \
                    str(tmp) in str(exc):
                raise _named(exc, target) from exc
            raise
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "w", overwrite: bool = True, **kwargs: Any) -> Iterator[IO]:
    """``open(target, mode)`` for writing, published atomically when the block ends without error."""
    if not any(c in mode for c in "wx") or "+" in mode:
        raise ValueError(f"atomic_open writes a new file: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(target, overwrite) as tmp, open(tmp, mode.replace("x", "w"), **kwargs) as fh:
        yield fh


def atomic_write_bytes(target: str | os.PathLike, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``target`` atomically (``overwrite=False``: only if it does not exist); returns the path."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str, encoding: str = "utf-8", overwrite: bool = True) -> Path:
    """Write ``text`` to ``target`` atomically (``overwrite=False``: only if it does not exist); returns the path."""
    with atomic_path(target, overwrite) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)
