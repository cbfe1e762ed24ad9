"""Checks at the entry of every job: inputs named by the user, outputs we may write, seeds.

Each function raises ``ValueError`` / ``FileExistsError`` with one line saying what is wrong and
how to fix it, before any expensive work starts. The CLI and the docks call the jobs, which call
these, so both front ends refuse the same things with the same words.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checks import SEED_MAX, check_seed  # the one seed check (API and CLI)

__all__ = [
    "SEED_MAX",
    "check_output_file",
    "check_writable_folder",
    "check_seed",
    "free_disk_bytes",
    "load_model_spec",
    "read_phase_input",
]

def check_output_file(path: str | os.PathLike, force: bool, suffixes: Sequence[str] = ()) -> Path:
    """Refuse a wrong suffix, a folder, or an existing file without ``force``; create the parent folder."""
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise ValueError(f"{p}: the output file name must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise FileExistsError(f"{p} is a folder; give a file name for the output")
    if p.exists() and not force:
        raise FileExistsError(f"{p} exists; choose another --out or pass --force to overwrite it")
    check_writable_folder(p.parent, what=str(p))
    return p


def check_writable_folder(folder: str | os.PathLike, what: str | None = None, create: bool = True) -> Path:
    """Create ``folder`` if needed (``create``; else its nearest existing parent is probed) and prove it
    takes a file: at start-up, not after the work (free space is checked where the size is known, e.g.
    ``generate``). Raises ``OSError`` / ``NotADirectoryError`` naming the folder (and ``what`` is
    written there) and the fix."""
    import tempfile

    d = Path(folder) if str(folder) else Path(".")
    label = f"{what}: " if what else ""
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{label}{d} is a file, not a folder; choose another --out")
    if not create:
        while not d.exists() and d != d.parent:
            d = d.parent
    try:
        if create:
            d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".assb-twin-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        named = type(exc)(f"{label}cannot write in folder {d} ({exc.strerror or exc}); choose a folder you can "
                          "write to (--out)")
        named.errno = exc.errno
        raise named from None
    return d


def free_disk_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system that will hold ``path`` (its nearest existing parent)."""
    import shutil

    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


def load_model_spec(spec: str | os.PathLike) -> Any:
    """A model from a JSON path or a built-in reference name, with the file named in every error."""
    from ..model import list_reference_models, load_model, load_reference_model

    text = os.fspath(spec)
    if text in list_reference_models():
        return load_reference_model(text)
    path = Path(text)
    if not path.exists():
        raise ValueError(
            f"model {text!r} is neither a file nor a built-in model ({', '.join(list_reference_models())})"
        )
    return load_model(path)  # names the file in every error (a folder, too-deep JSON ...)


def read_phase_input(spec: str | os.PathLike, labels: str | None = None, what: str = "image"):
    """A :class:`~napari_assb_twin.phasemap.PhaseMap` from a label file / folder, or a lazy
    :class:`~napari_assb_twin.io.zarrtwin.ZarrPhases` for a Zarr array (a twin from ``generate``).

    Raises
    ------
    ValueError
        Missing, unreadable or incomplete inputs, naming ``what`` and the path.
    """
    from ..io import read_label_image
    from ..io.labels import missing_path_message
    from ..io.zarrtwin import is_zarr_folder, open_zarr_phases

    path = Path(spec)
    if not path.exists():
        raise ValueError(f"{what} {missing_path_message(path)}")
    if is_zarr_folder(path):
        try:
            return open_zarr_phases(path)
        except ValueError as exc:
            raise ValueError(f"{what} {exc}") from None
    return read_label_image(path, mapping=labels)
