"""Notifications and file dialogs of the docks (save, open, export a plot, load a model).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QWidget


def notify_error(message: str) -> None:
    """Show an error notification (never raises: widgets report, they do not crash)."""
    show_error(message)


def info(message: str) -> None:
    show_info(message)


def warn(message: str) -> None:
    show_warning(message)


# --------------------------------------------------------------------------------------------
# file dialogs
# --------------------------------------------------------------------------------------------
def ask_save_path(parent: QWidget, caption: str, start: str, file_filter: str) -> str | None:
    """Ask for a file to write; Qt's dialog asks before replacing an existing file."""
    path, _ = QFileDialog.getSaveFileName(parent, caption, start, file_filter)
    return path or None


def export_canvas_png(parent: QWidget, canvas: Any, path: str | None, *, caption: str, start: str, what: str,
                      error_prefix: str, redraw: Callable[[bool], None] | None = None) -> Any:
    """Save ``canvas`` (a :class:`ThemedCanvas`) as its fixed-size PNG: a save dialog when ``path`` is
    None, an error notification (``error_prefix: reason``) on failure, ``"<what> written: <path>"`` on
    success. Returns the written path, or None."""
    if path is None:
        path = ask_save_path(parent, caption, start, "PNG (*.png)")
        if path is None:
            return None
    try:
        out = canvas.save_png(path, redraw=redraw)
    except (OSError, ValueError) as exc:
        notify_error(f"{error_prefix}: {exc}")
        return None
    info(f"{what} written: {out}")
    return out


def ask_open_path(parent: QWidget, caption: str, start: str, file_filter: str) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, caption, start, file_filter)
    return path or None


def ask_load_model(parent: QWidget, path: str | None = None) -> tuple[Any, str] | None:
    """Read a model JSON (a file dialog when ``path`` is None).

    Returns ``(model, path)`` -- the path really read, also when the dialog chose it -- or None if
    cancelled or invalid (an invalid file becomes an error notification naming what is wrong).
    """
    if path is None:
        path = ask_open_path(parent, "Load digital-twin model", "", "Model JSON (*.json)")
        if path is None:
            return None
    from ...model import ModelFileError, load_model

    try:
        return load_model(path), str(path)
    except (ModelFileError, OSError, ValueError) as exc:
        notify_error(f"Cannot load the model: {exc}")
        return None


def refuse_overwrite(path: str | os.PathLike, overwrite: bool) -> bool:
    """True (and an error notification) if ``path`` exists and replacing it was not confirmed."""
    if os.path.exists(path) and not overwrite:
        show_error(f"{path} exists; choose another name (the Save dialog asks before replacing a file)")
        return True
    return False
