"""Zarr twins on disk: written with a completeness marker, read back only when complete.

A twin store is a Zarr array folder holding one extra file, :data:`MARKER` (``assb_twin.json``),
written atomically *before* any voxel (``"complete": false``) and rewritten *last*
(``"complete": true``). So

* an interrupted write never reads back as a valid twin (:func:`open_zarr_phases` refuses it,
  where Zarr would return the missing chunks as zeros, i.e. 100 % pore);
* ``--force`` knows what this program wrote: :func:`prepare_store` replaces a folder only when it
  holds the marker, and refuses any other folder instead of wiping it.

Zarr arrays from elsewhere (no marker) are read as plain label arrays.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

__all__ = ["MARKER", "ZarrPhases", "is_twin_store", "is_zarr_folder", "open_zarr_phases", "prepare_store", "write_zarr_twin"]

#: Completeness marker inside a twin store.
MARKER: str = "assb_twin.json"
_WRITER = "napari-assb-twin"


def is_zarr_folder(path: str | Path) -> bool:
    """A ``.zarr`` name, or a folder with Zarr v2 / v3 array metadata."""
    p = Path(path)
    return p.suffix.lower() == ".zarr" or (p.is_dir() and ((p / "zarr.json").exists() or (p / ".zarray").exists()))


def _marker(path: Path) -> dict | None:
    try:
        meta = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("writer") == _WRITER else None


def is_twin_store(path: str | Path) -> bool:
    """Whether ``path`` is a Zarr twin store this program wrote (complete or not)."""
    return Path(path).is_dir() and _marker(Path(path)) is not None


def prepare_store(path: str | Path, force: bool) -> Path:
    """Make ``path`` ready for a new twin store, or refuse with the reason.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is false; or it exists and is not a twin store written by
        this program (never wiped, even with ``force``).
    """
    p = Path(path)
    if p.exists() or p.is_symlink():
        if not force:
            raise FileExistsError(f"{p} exists; choose another --out or pass --force to overwrite it")
        if not is_twin_store(p):
            what = "a file" if p.is_file() else "a folder that is not a Zarr twin written by assb-twin"
            raise FileExistsError(f"{p} is {what}; --force only replaces twins this program wrote: remove it yourself "
                                  "or choose another --out")
        writer = _live_writer(p)
        if writer:
            raise FileExistsError(f"{p} is being written by {writer} right now; --force does not replace a twin "
                                  "while it is written: wait for it to finish, or choose another --out")
        shutil.rmtree(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _live_writer(path: Path) -> str:
    """``"process N"`` when an unfinished store's writer is still running on this machine, else ``""``."""
    import os
    import socket

    meta = _marker(path) or {}
    pid = meta.get("pid")
    if meta.get("complete") is True or not isinstance(pid, int) or meta.get("host") != socket.gethostname():
        return ""
    if pid == os.getpid():
        return f"this process ({pid})"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except OSError:  # exists, owned by someone else
        pass
    return f"process {pid}"


def write_zarr_twin(
    array: Any, path: str | Path, attrs: Mapping[str, Any], slabs: int | None = None
) -> Iterator[tuple[int, int]]:
    """Store a dask array as a twin, slab by slab along axis 0; yields ``(done, total)`` slabs.

    ``path`` must be free (:func:`prepare_store`). The marker says ``complete`` only once every
    chunk is written, so stopping the generator (or a crash) leaves a store that is refused on
    reading.
    """
    import dask.array as da
    import zarr

    import os
    import socket

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        p.mkdir(exist_ok=False)  # the claim: of two writers, exactly one creates the folder
    except FileExistsError:
        raise FileExistsError(f"{p} was created by another process while this run started (two writers of the same "
                              "--out); nothing was written: choose another --out") from None
    meta = {"writer": _WRITER, "complete": False, "shape": [int(n) for n in array.shape],
            "pid": os.getpid(), "host": socket.gethostname()}
    atomic_write_text(p / MARKER, json.dumps(meta))
    chunks = tuple(int(c[0]) for c in array.chunks)
    z = zarr.create_array(str(p), shape=array.shape, chunks=chunks, dtype="uint8")  # keeps the marker
    z.attrs.update(dict(attrs))
    step = chunks[0]
    starts = list(range(0, int(array.shape[0]), step))
    total = len(starts)
    for k, z0 in enumerate(starts, 1):
        z1 = min(z0 + step, int(array.shape[0]))
        region = (slice(z0, z1),) + tuple(slice(0, int(n)) for n in array.shape[1:])
        da.store(array[z0:z1], z, regions=region, lock=False)
        yield k, total
    atomic_write_text(p / MARKER, json.dumps({**meta, "complete": True}))


@dataclass(frozen=True)
class ZarrPhases:
    """A lazily read Zarr phase map with its calibration (twins too large to load)."""

    array: Any
    voxel_size: float | None
    unit: str | None
    source: str
    message: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.array.shape)


def open_zarr_phases(path: str | Path) -> ZarrPhases:
    """Open a Zarr phase map for reading; refuses an incomplete twin store.

    Raises
    ------
    ValueError
        Unreadable, or a twin whose writing never finished (interrupted ``generate``).
    """
    import zarr

    p = Path(path)
    meta = _marker(p)
    if meta is not None and meta.get("complete") is not True:
        raise ValueError(f"{p}: incomplete Zarr twin (its writing was interrupted): unwritten blocks would read as "
                         "pore; generate it again (assb-twin generate ... --force)")
    if not p.is_dir():
        raise ValueError(f"{p}: not a Zarr twin (a Zarr store is a folder); give a twin written by "
                         "assb-twin generate --out NAME.zarr")
    if not ((p / "zarr.json").exists() or (p / ".zarray").exists()):
        raise ValueError(f"{p}: not a Zarr array (no zarr.json or .zarray inside); give a twin written by "
                         "assb-twin generate --out NAME.zarr, or the array folder inside a Zarr group")
    try:
        z = zarr.open_array(str(p), mode="r")
    except Exception as exc:  # noqa: BLE001 - re-raised as one clear line
        raise ValueError(f"{p}: not a readable Zarr array ({type(exc).__name__}: {exc})") from None
    vs = z.attrs.get("voxel_size")
    return ZarrPhases(z, float(vs) if vs else None, z.attrs.get("unit"), str(p),
                      f"{p.name}: Zarr array {tuple(z.shape)} read lazily")
