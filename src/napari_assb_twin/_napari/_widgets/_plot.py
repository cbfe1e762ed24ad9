"""One themed matplotlib canvas for every dock widget of the plugin.

The figure follows the viewer's theme (background, text and grid colours from
:func:`napari.utils.theme.get_theme`) the way napari-matplotlib does, and re-themes itself when
the user switches theme. Phase colours come from :mod:`napari_assb_twin.phases`, so a curve of
``C_active,active`` has the colour the active phase has in the Labels layers.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.layout_engine import LayoutEngine
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from ...io.atomic import atomic_path
from ...phases import PHASE_HEX, PHASE_NAMES

if TYPE_CHECKING:
    import napari
    from matplotlib.axes import Axes

__all__ = ["EXPORT_DPI", "EXPORT_SIZE_IN", "InchMargins", "LAYER_STYLES", "MIN_PLOT_HEIGHT_PX", "PUBLICATION_COLORS", "ThemedCanvas", "display_unit", "pair_color", "pair_label", "style_axes", "style_legend", "theme_colors"]

#: Size of every exported figure: inches and dots per inch (a publication size, whatever the screen).
EXPORT_SIZE_IN: tuple[float, float] = (7.0, 5.0)
EXPORT_DPI = 300
#: Smallest height of a plot in a dock, in pixels (below it the axes labels overlap).
MIN_PLOT_HEIGHT_PX = 160

#: Line styles that tell overlaid layers apart (colours are reserved for phase pairs).
LAYER_STYLES: tuple[str, ...] = ("-", "--", ":", "-.")
_PAIR_SHORT = {"pore": "P", "active": "A", "electrolyte": "E"}


def display_unit(unit: str | None) -> str:
    """Unit as shown on axes: ``um`` -> ``\u00b5m``; None -> ``px``."""
    if not unit:
        return "px"
    return {"um": "\u00b5m"}.get(unit, unit)


def theme_colors(theme_name: str | None) -> dict[str, str]:
    """Hex colours for a figure in napari theme ``theme_name`` (``"dark"``, ``"light"``, ...).

    Keys: ``background`` (figure and axes face), ``text``, ``grid`` and ``accent``. Unknown or
    ``None`` theme names fall back to napari's dark theme, like napari does.
    """
    from napari.utils.theme import available_themes, get_theme

    name = theme_name if theme_name in available_themes() else "dark"
    theme = get_theme(name)
    return {
        "background": theme.background.as_hex(),
        "text": theme.text.as_hex(),
        "grid": theme.primary.as_hex(),
        "accent": theme.current.as_hex(),
    }


#: Colours of the cross pairs C_ij (i < j), from the Okabe-Ito palette like the phase colours: a
#: blend of the two phase colours made C_PA (grey + orange) nearly the orange of C_AA.
_CROSS_PAIR_HEX: dict[tuple[int, int], str] = {
    (0, 1): "#009e73",  # pore / active: bluish green
    (0, 2): "#cc79a7",  # pore / electrolyte: reddish purple
    (1, 2): "#0072b2",  # active / electrolyte: blue (darker than the electrolyte's sky blue)
}

#: Colours of an exported figure: a light, publication theme whatever napari's theme is.
PUBLICATION_COLORS: dict[str, str] = {"background": "#ffffff", "text": "#000000", "grid": "#d0d0d0",
                                      "accent": "#0072b2"}


def pair_color(i: int, j: int, background: str = "#262930") -> str:
    """Colour of the curve ``C_ij``: the phase colour for ``i == j``, a distinct Okabe-Ito colour
    for each cross pair (six colours told apart by colour-blind readers too).

    Pore's dark grey would vanish on a dark background, so the pore colour is lifted towards the
    text colour of the opposite brightness when the background is dark.
    """
    i, j = min(i, j), max(i, j)
    if i != j:
        return _CROSS_PAIR_HEX[(i, j)]
    if i == 0:  # dark grey pore: lighten on dark themes, keep on light ones
        dark_bg = sum(to_rgb(background)) / 3 < 0.5
        return to_hex((0.72, 0.72, 0.72) if dark_bg else (0.25, 0.25, 0.25))
    return to_hex(to_rgb(PHASE_HEX[i]))


def pair_label(i: int, j: int) -> str:
    """Short legend label, e.g. ``C_AA`` or ``C_PE`` (P pore, A active, E electrolyte)."""
    return f"C_{_PAIR_SHORT[PHASE_NAMES[i]]}{_PAIR_SHORT[PHASE_NAMES[j]]}"


class InchMargins(LayoutEngine):
    """A matplotlib layout engine keeping fixed margins in inches (for live plots).

    The constrained layout measures every tick label on each full draw (0.3-0.4 s of the GUI thread
    on the loaded 2-core machine, more while a worker shares the GIL); margins fixed as fractions at
    build time clipped the labels once the dock was resized. These inches become fractions of the
    figure's current size on every draw, so a resize keeps the labels' room at no cost.
    """

    _adjust_compatible = True
    _colorbar_gridspec = False  # as the constrained layout's, so a figure may switch between them

    def __init__(self, left: float = 0.62, right: float = 0.12, bottom: float = 0.42, top: float = 0.1,
                 hspace: float = 0.12, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inches = {"left": left, "right": right, "bottom": bottom, "top": top, "hspace": hspace}

    def execute(self, fig: Figure) -> None:
        m = self.inches
        w, h = fig.get_size_inches()
        rows = max((ax.get_subplotspec().get_gridspec().nrows for ax in fig.axes if ax.get_subplotspec()), default=1)
        height = max(h - m["bottom"] - m["top"] - m["hspace"] * (rows - 1), 0.1)
        fig.subplotpars.update(left=min(m["left"] / w, 0.45), right=max(1 - m["right"] / w, 0.55),
                               bottom=min(m["bottom"] / h, 0.45), top=max(1 - m["top"] / h, 0.55),
                               hspace=m["hspace"] * rows / height)
        for ax in fig.axes:  # gridspec axes take the new parameters (what subplots_adjust does)
            if ax.get_subplotspec() is not None:
                ax._set_position(ax.get_subplotspec().get_position(fig))


def style_axes(ax: "Axes", colors: dict[str, str], grid: bool = True) -> "Axes":
    """Colour an axes (face, spines, ticks, labels, title, legend) with ``colors`` (a
    :func:`theme_colors` dict). A plain function: a render thread styles its own figure with it
    without holding a Qt object."""
    c = colors
    ax.set_facecolor(c["background"])
    for spine in ax.spines.values():
        spine.set_color(c["text"])
        spine.set_alpha(0.5)
    ax.tick_params(colors=c["text"], which="both", labelsize=8)
    ax.xaxis.label.set_color(c["text"])
    ax.yaxis.label.set_color(c["text"])
    ax.xaxis.label.set_fontsize(9)
    ax.yaxis.label.set_fontsize(9)
    ax.title.set_color(c["text"])
    ax.title.set_fontsize(9)
    if grid:
        ax.grid(True, color=c["grid"], alpha=0.6, linewidth=0.6)
    legend = ax.get_legend()
    if legend is not None:
        style_legend(legend, c)
    return ax


def style_legend(legend: Any, colors: dict[str, str]) -> None:
    """Theme a legend with ``colors``: translucent theme face, theme text colour."""
    frame = legend.get_frame()
    frame.set_facecolor(colors["background"])
    frame.set_edgecolor(colors["grid"])
    frame.set_alpha(0.85)
    for text in legend.get_texts():
        text.set_color(colors["text"])
    title = legend.get_title()
    if title is not None:
        title.set_color(colors["text"])


class ThemedCanvas(QWidget):
    """A matplotlib figure in a Qt widget, coloured like the viewer it belongs to.

    Parameters
    ----------
    viewer : napari.Viewer, optional
        Its ``theme`` sets the colours; theme changes re-colour the figure. ``None``: dark theme.
    height : float
        Initial figure height in inches (the widget's minimum height follows from it).
    """

    def __init__(self, viewer: "napari.Viewer | None" = None, height: float = 3.0, parent: QWidget | None = None):
        super().__init__(parent)
        self._viewer = viewer
        self.figure = Figure(figsize=(4.0, height), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        # vertically the figure's own size is no preference: the plot takes the height its tab has
        # left (at least MIN_PLOT_HEIGHT_PX); preferring its 3-4 in figure made the tab pages taller
        # than a 1366 x 768 screen's dock, so the plots were only reachable by scrolling
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.canvas.setMinimumHeight(MIN_PLOT_HEIGHT_PX)
        self.canvas.setMinimumWidth(240)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.colors = theme_colors(getattr(viewer, "theme", None))
        if viewer is not None:
            viewer.events.theme.connect(self._on_theme)
        self._apply_figure_colors()
        # renders drawn in threads (:meth:`render_in_thread`): (thread, result, done), picked up by
        # this widget's own timer while any is pending
        self._renders: list[tuple[threading.Thread, dict[str, Any], Callable[[np.ndarray], None]]] = []
        self._render_timer = QTimer(self)
        self._render_timer.setInterval(15)
        self._render_timer.timeout.connect(self._deliver_renders)

    # -- theme -------------------------------------------------------------------------------
    def _on_theme(self, event: Any = None) -> None:
        self.colors = theme_colors(getattr(self._viewer, "theme", None))
        self._apply_figure_colors()
        for ax in self.figure.axes:
            self.style_axes(ax)
        self.draw()

    def _apply_figure_colors(self) -> None:
        self.figure.set_facecolor(self.colors["background"])

    def style_axes(self, ax: "Axes", grid: bool = True) -> "Axes":
        """Colour an axes (face, spines, ticks, labels, title, legend) like the theme."""
        return style_axes(ax, self.colors, grid)

    def style_legend(self, legend: Any) -> None:
        """Theme a legend: translucent theme face, theme text colour."""
        style_legend(legend, self.colors)

    def set_title(self, ax: "Axes", text: str, max_lines: int = 2) -> None:
        """``ax.set_title`` wrapped at spaces to the figure's width (a long layer name would be
        clipped at the figure edge); beyond ``max_lines`` the last line is elided."""
        ax.set_title(text)
        title = ax.title
        title.set_fontsize(9)  # set_title resets the font to rcParams' "large": keep the theme's size
        title.set_color(self.colors["text"])
        fig = self.figure
        room = 0.92 * fig.get_figwidth() * fig.dpi  # pixels: the title is centred on the axes
        renderer = fig.canvas.get_renderer()

        def width(line: str) -> float:
            title.set_text(line)
            return title.get_window_extent(renderer).width

        lines: list[str] = []
        for word in text.split(" "):
            if lines and width(f"{lines[-1]} {word}") <= room:
                lines[-1] = f"{lines[-1]} {word}"
            else:
                lines.append(word)
        if len(lines) > max_lines:
            last = " ".join(lines[max_lines - 1:])
            while len(last) > 1 and width(last + "\u2026") > room:
                last = last[:-1]
            lines = lines[: max_lines - 1] + [last + "\u2026"]
        title.set_text("\n".join(lines))

    # -- drawing -----------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove every axes (keep the themed figure)."""
        self.figure.clear()
        self._apply_figure_colors()

    def message(self, text: str) -> None:
        """Show a short centred message instead of a plot (e.g. "press Compute")."""
        self.clear()
        self.figure.text(0.5, 0.5, text, ha="center", va="center", color=self.colors["text"], fontsize=9, wrap=True)
        self.draw()

    def draw(self) -> None:
        """Redraw now.

        Synchronous on purpose: callers already throttle (live curves redraw a few times a second),
        and a pending ``draw_idle`` timer would fire on a deleted canvas when a dock is closed.
        """
        self.canvas.draw()

    def pixel_key(self) -> tuple[float, float, float, int]:
        """What a picture of the figure depends on besides its content: size in pixels, dpi, theme."""
        w, h = self.figure.bbox.size
        return (round(w, 3), round(h, 3), self.figure.dpi, id(self.colors))

    def render_in_thread(self, build: Callable[[Figure], None], done: Callable[[np.ndarray], None]) -> None:
        """Draw a figure made by ``build(figure)`` in a thread of its own and hand its RGBA pixels
        (``height x width x 4`` uint8) to ``done`` in the GUI thread.

        The figure is a new one of this canvas's size, dpi and background colour on a plain Agg
        canvas, touched by that thread only (matplotlib's Agg drawing is safe that way); a full draw
        of a plot in the GUI thread paused napari's event loop for 0.1-0.5 s on a loaded machine.
        ``build`` must not touch Qt or this canvas's own figure, nor hold a Qt object (the thread
        would drop the last reference to it, and Qt objects are deleted in their own thread). This
        widget's timer hands the result over, so nothing is delivered once the widget is gone. An
        exception raised in ``build`` or the draw is raised again in the GUI thread, from that timer.
        """
        size, dpi, background = tuple(self.figure.get_size_inches()), self.figure.dpi, self.colors["background"]
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                fig = Figure(figsize=size, dpi=dpi, facecolor=background)
                FigureCanvasAgg(fig)
                build(fig)
                fig.canvas.draw()
                result["pixels"] = np.asarray(fig.canvas.buffer_rgba()).copy()
            except BaseException as exc:  # noqa: BLE001 - raised again in the GUI thread
                result["error"] = exc

        # not a daemon: a daemon thread still in matplotlib's C++ code when Python exits is ended
        # with a forced unwind, which aborts the process ("terminate called without an active
        # exception"); a draw takes well under a second, so the exit waits for it
        thread = threading.Thread(target=work, name="assb-twin plot render")
        self._renders.append((thread, result, done))
        thread.start()
        self._render_timer.start()

    def _deliver_renders(self) -> None:
        """The render timer's slot: hand every finished render to its ``done`` (GUI thread)."""
        finished = [r for r in self._renders if not r[0].is_alive()]
        self._renders = [r for r in self._renders if r[0].is_alive()]
        if not self._renders:
            self._render_timer.stop()
        for _thread, result, done in finished:
            if "error" in result:
                raise result["error"]
            done(result["pixels"])

    def show_pixels(self, pixels: np.ndarray) -> bool:
        """Put a picture made by :meth:`render_in_thread` into the canvas's drawing buffer (shown by
        the next blit or paint); False, and nothing changed, when its size is not the canvas's."""
        buffer = np.asarray(self.canvas.get_renderer().buffer_rgba())
        if buffer.shape != pixels.shape:
            return False
        buffer[...] = pixels
        return True

    def save_png(
        self,
        path: str | os.PathLike,
        dpi: int = EXPORT_DPI,
        size_in: tuple[float, float] = EXPORT_SIZE_IN,
        redraw: "Callable[[bool], None] | None" = None,
    ) -> Path:
        """Save the figure as PNG at ``size_in`` inches and ``dpi``, atomically (never a half file).

        The size is fixed (a publication figure), not the dock's size on screen; the screen figure
        is restored afterwards. ``redraw(export)`` is called with True before saving and False
        after, for figures that show more when exported (e.g. the section images).

        Returns
        -------
        Path
            The file written.
        """
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise ValueError(f"plot export writes PNG files; got {path.name!r}, use a .png name")
        path.parent.mkdir(parents=True, exist_ok=True)
        screen_size = tuple(self.figure.get_size_inches())
        screen_dpi = self.figure.get_dpi()
        screen_colors = self.colors
        try:
            self.figure.set_size_inches(*size_in, forward=False)
            self._recolor(PUBLICATION_COLORS, redraw, export=True)
            with atomic_path(path) as tmp:  # unique temp name, mode from the umask
                self.figure.savefig(tmp, dpi=dpi, facecolor=self.figure.get_facecolor(), format="png")
        finally:
            self.figure.set_dpi(screen_dpi)
            self.figure.set_size_inches(*screen_size, forward=False)
            self._recolor(screen_colors, redraw, export=False)
            self.canvas.resize(self.canvas.size())  # back to the widget's own size
            self.draw()
        return path

    def _recolor(self, colors: dict[str, str], redraw: "Callable[[bool], None] | None", export: bool) -> None:
        """Switch the figure to ``colors``: redrawn when the dock can (curve colours follow the
        background), else the axes, legends and texts restyled in place."""
        self.colors = colors
        self._apply_figure_colors()
        if redraw is not None:
            redraw(export)
            return
        for ax in self.figure.axes:
            self.style_axes(ax)
        for legend in self.figure.legends:
            self.style_legend(legend)
        for text in self.figure.texts:
            text.set_color(colors["text"])

