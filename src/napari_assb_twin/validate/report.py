"""Validation report of a :class:`~napari_assb_twin.validate.compare.Comparison`: CSV, PNG and one HTML page.

:func:`write_report` writes into a folder

* ``descriptors.csv`` - the side-by-side table (:data:`~.compare.DESCRIPTOR_COLUMNS`),
* ``coverage.csv`` - both images' coverage functions in long format (``image`` column added),
* ``chords.csv`` - chord-length summaries per image, phase and axis,
* ``coverage.png``, ``chords.png``, ``sections.png`` - the plots,
* ``report.html`` - a single self-contained page (inline CSS, the PNGs embedded as base64, no
  external link or script), readable offline and attachable to an e-mail.

Every value is shown with its 95 % interval (:mod:`.intervals`): the measured value's from its
sub-volumes, the twin's mean over its realisations with the interval of the model's mean; a
difference is coloured only where the two intervals do not overlap (``differs``), else neutral. The
tables are rendered by one function, :func:`interval_table_html` (groups of rows, each with two
values and their intervals), so other interval tables (e.g. a plausible set's tau) can use it.
The plots draw the twin's interval as a band.

Plots use matplotlib's object API with the Agg canvas (no pyplot state), so reports can be written
from worker threads (the napari widget does).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..phases import N_PHASES, PHASE_HEX, PHASE_NAMES
from .compare import DESCRIPTOR_LABELS, Comparison

__all__ = ["REPORT_FILES", "IntervalRow", "check_report_folder", "figure_png", "interval_table_html", "render_html",
           "report_files", "write_report"]

#: Every file :func:`write_report` writes (the refusal to overwrite checks all of them).
REPORT_FILES: tuple[str, ...] = (
    "descriptors.csv", "coverage.csv", "chords.csv", "coverage.png", "chords.png", "sections.png", "report.html",
)

#: Order of descriptor groups in the HTML table.
_ORDER = list(DESCRIPTOR_LABELS)

_REAL_STYLE = {"color": "#222222", "lw": 1.8, "ls": "-"}
_TWIN_STYLE = {"color": "#d55e00", "lw": 1.8, "ls": "--"}
_PAIR_COLORS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00"]


def report_files(out_dir: str | os.PathLike) -> list[Path]:
    """Paths of the files a report writes into ``out_dir``."""
    return [Path(out_dir) / name for name in REPORT_FILES]


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buf = io.BytesIO()
    # the bounding box of everything drawn: constrained layout fits equal-aspect images by shrinking
    # them, and their titles ended above the figure's top edge (clipped in the report)
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()


def _axis_name(d: int, ndim: int) -> str:
    names = ("z", "y", "x") if ndim == 3 else ("y", "x")
    return f"axis {d} ({names[d]})"


def coverage_figure(cmp: Comparison):
    """Coverage functions ``C_ij(r)`` real (solid) vs twin (dashed): rows = axes, columns = pairs."""
    real, twin = cmp.coverage["real"], cmp.coverage["twin"]
    band = cmp.coverage.get("twin_band")
    pairs = real.pairs()
    ndim = real.ndim
    fig = _figure(2.6 * len(pairs), 2.3 * ndim + 0.6)
    axs = fig.subplots(ndim, len(pairs), squeeze=False, sharex=True)
    for d in range(ndim):
        for c, (i, j) in enumerate(pairs):
            ax = axs[d, c]
            ax.plot(real.distance, real.directional[d, i, j], label=cmp.names["real"], **_REAL_STYLE)
            ax.plot(twin.distance, twin.directional[d, i, j], label=_twin_label(cmp), **_TWIN_STYLE)
            if band is not None:
                ax.fill_between(twin.distance, band[0][d, i, j], band[1][d, i, j], color=_TWIN_STYLE["color"],
                                alpha=0.25, lw=0, label="twin 95 % interval" if (d, c) == (0, 0) else None)
            if d == 0:
                ax.set_title(f"C({PHASE_NAMES[i]}, {PHASE_NAMES[j]})", fontsize=10)
            if c == 0:
                ax.set_ylabel(_axis_name(d, ndim), fontsize=9)
            if d == ndim - 1:
                ax.set_xlabel(f"distance r [{cmp.unit}]", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    axs[0, 0].legend(fontsize=8, frameon=False)
    fig.suptitle("Two-point coverage functions: probability that two points a distance r apart lie in phases i and j",
                 fontsize=11)
    return fig


def _twin_label(cmp: Comparison) -> str:
    n = getattr(cmp, "realisations", 1)
    return cmp.names["twin"] + (f" (mean of {n})" if n > 1 else "")


def chords_figure(cmp: Comparison, n_bins: int = 30):
    """Chord-length distributions per phase (rows) and axis (columns), real vs twin (the twin's
    pooled over its realisations, with the 95 % band of each bin over them)."""
    from .intervals import band

    real, twin = cmp.chords["real"], cmp.chords["twin"]
    each = cmp.chords.get("twin_each") or []
    ndim = real.ndim
    fig = _figure(3.3 * ndim + 0.4, 2.4 * N_PHASES + 0.6)
    axs = fig.subplots(N_PHASES, ndim, squeeze=False)
    h = cmp.voxel_size
    for p in range(N_PHASES):
        for d in range(ndim):
            ax = axs[p, d]
            lr = real.lengths.get((p, d), np.zeros(0))
            lt = twin.lengths.get((p, d), np.zeros(0))
            both = np.concatenate([lr, lt])
            if both.size:
                # integer-aligned bins (chords are whole voxels): no empty comb bins
                hi = int(np.percentile(both, 99.5)) + 1
                width = max(1, int(math.ceil(hi / n_bins)))
                edges = (np.arange(0, hi + width + 1, width) + 0.5) * h
                for lens, st, key in ((lr, _REAL_STYLE, "real"), (lt, _TWIN_STYLE, "twin")):
                    if lens.size:
                        hist, _ = np.histogram(lens * h, bins=edges, density=True)
                        name = cmp.names[key] if key == "real" else _twin_label(cmp)
                        ax.stairs(hist, edges, label=f"{name} (mean {lens.mean() * h:.3g})", **st)
                per = [e.lengths.get((p, d), np.zeros(0)) for e in each]
                if len(per) > 1 and all(x.size for x in per):
                    hists = [np.histogram(x * h, bins=edges, density=True)[0] for x in per]
                    _, lo, hi = band(hists)
                    ax.stairs(np.maximum(hi, 0), edges, baseline=np.maximum(lo, 0), fill=True, alpha=0.25, lw=0,
                              color=_TWIN_STYLE["color"], label="twin 95 % interval")
                ax.legend(fontsize=7, frameon=False)
            else:
                ax.text(0.5, 0.5, "no chords", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{PHASE_NAMES[p]}, {_axis_name(d, ndim)}", fontsize=10, color=_title_colour(p))
            ax.set_xlabel(f"chord length [{cmp.unit}]", fontsize=9)
            if d == 0:
                ax.set_ylabel(f"density [1/{cmp.unit}]", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle("Chord-length distributions (chords cut by the image border excluded)", fontsize=11)
    return fig


def _title_colour(p: int) -> str:
    # the pore colour is near-black: fine for text; the others are readable on white too
    return PHASE_HEX[p]


def sections_figure(cmp: Comparison):
    """Middle sections of both images side by side in the shared phase colours."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    cmap = ListedColormap([PHASE_HEX[p] for p in range(N_PHASES)])
    rows = max(len(cmp.sections["real"]), len(cmp.sections["twin"]))
    fig = _figure(9.0, 4.3 * rows + 0.6)
    axs = fig.subplots(rows, 2, squeeze=False)
    for c, key in enumerate(("real", "twin")):
        for r in range(rows):
            ax = axs[r, c]
            if r < len(cmp.sections[key]):
                title, sec = cmp.sections[key][r]
                ny, nx = sec.shape
                ax.imshow(sec, cmap=cmap, vmin=-0.5, vmax=N_PHASES - 0.5, interpolation="nearest",
                          extent=(0, nx * cmp.voxel_size, ny * cmp.voxel_size, 0))
                ax.set_title(f"{cmp.names[key]}: {title}", fontsize=10)
                ax.set_xlabel(cmp.unit, fontsize=8)
                ax.tick_params(labelsize=8)
            else:
                ax.axis("off")
    handles = [Patch(color=PHASE_HEX[p], label=PHASE_NAMES[p]) for p in range(N_PHASES)]
    fig.legend(handles=handles, loc="outside lower center", ncols=N_PHASES, frameon=False)
    return fig


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
 color:#1a1a1a;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}
.meta{color:#555;font-size:.92em}.meta td{padding:1px 14px 1px 0;vertical-align:top}
table.desc{border-collapse:collapse;width:100%;font-size:.9em;margin-top:.6em}
table.desc th{background:#f0f0f0;text-align:left;padding:5px 8px;border-bottom:2px solid #bbb;position:sticky;top:0}
table.desc td{padding:4px 8px;border-bottom:1px solid #e4e4e4}
table.desc td.num{text-align:right;font-variant-numeric:tabular-nums;font-family:Menlo,Consolas,monospace}
table.desc tr.group td{background:#fafafa;font-weight:600;border-top:1px solid #ccc;padding-top:8px}
.ok{background:#e3f4e3}.warn{background:#fff2cc}.bad{background:#fbdada}.na{color:#999}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:-1px}
.legend span{margin-right:1.2em}.notes li{margin:.2em 0}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
.small{font-size:.85em;color:#555}
"""


def _unit(u: str) -> str:
    """Unit for display (``um`` -> micro sign), HTML-escaped."""
    return html.escape(str(u).replace("um", "\u00b5m") if str(u) in ("um", "1/um") else str(u))


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '<span class="na">n/a</span>'
    v = float(v)
    if math.isinf(v):
        return "\u221e" if v > 0 else "\u2212\u221e"
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.3e}"
    return f"{v:.4g}"


def _rel_cell(rel: float, real: float = 0.0, twin: float = 0.0, differs: bool = True) -> str:
    """The relative difference; coloured by its size only when ``differs`` (the intervals do not
    overlap), else neutral."""
    if not math.isfinite(real) and not math.isfinite(twin):
        # e.g. geodesic tortuosity of a phase that percolates in neither image
        same = real == twin or (math.isnan(real) and math.isnan(twin))
        return f'<td class="num na">both {_fmt(real)}</td>' if same else '<td class="num na">n/a</td>'
    if rel is None or not math.isfinite(rel):
        return '<td class="num na">n/a</td>'
    if not differs:
        return f'<td class="num">{rel * 100:+.1f} %</td>'
    a = abs(rel)
    cls = "ok" if a <= 0.05 else ("warn" if a <= 0.20 else "bad")
    return f'<td class="num {cls}">{rel * 100:+.1f} %</td>'


def _phase_cell(phase: str) -> str:
    parts = []
    for name in str(phase).split("|"):
        if name in PHASE_NAMES:
            col = PHASE_HEX[PHASE_NAMES.index(name)]
            parts.append(f'<span class="swatch" style="background:{col}"></span>{html.escape(name)}')
        else:
            parts.append(html.escape(name))
    return " / ".join(parts)


def _interval_cell(value: float, lo: float, hi: float) -> str:
    """A value with its 95 % interval below it (only the value when there is none)."""
    txt = _fmt(value)
    if math.isfinite(float(lo)) and math.isfinite(float(hi)):
        txt += f'<br><span class="small">[{_fmt(lo)}, {_fmt(hi)}]</span>'
    return f'<td class="num">{txt}</td>'


@dataclass
class IntervalRow:
    """One row of :func:`interval_table_html`: a label (HTML), an axis text, two values each with its
    95 % interval (``a`` measured, ``b`` predicted), the spread of one prediction, and whether the
    intervals are disjoint (the only case coloured)."""

    label: str
    axis: str
    a: tuple[float, float, float]
    b: tuple[float, float, float]
    spread: float = float("nan")
    differs: bool = False

    @property
    def difference(self) -> float:
        a, b = float(self.a[0]), float(self.b[0])
        return b - a if math.isfinite(a) and math.isfinite(b) else float("nan")


def interval_table_html(groups: Sequence[tuple[str, Sequence[IntervalRow]]], a_name: str, b_name: str,
                        relative: bool = True, spread_name: str = "one twin",
                        difference_name: str = "twin \u2212 measured") -> str:
    """A table of values with their 95 % intervals: one group row per title (HTML), one row per
    :class:`IntervalRow` (label, axis, ``a`` [lo, hi], ``b`` [lo, hi], ``spread_name`` +- sd, b - a
    and, with ``relative``, the relative difference, coloured only when the intervals are disjoint).
    The descriptors table of a comparison is one; another interval table (e.g. tau across a plausible
    set of structures against the measured tau) is another call with its own names."""
    from .compare import relative_difference

    ncol = 6 + bool(relative)
    out = ['<table class="desc"><thead><tr><th>phase</th><th>axis</th>'
           f'<th style="text-align:right">{html.escape(a_name)}<br><span class="small">[95 % interval]</span></th>'
           f'<th style="text-align:right">{html.escape(b_name)}<br><span class="small">[95 % interval]</span></th>'
           f'<th style="text-align:right">{html.escape(spread_name)}<br><span class="small">\u00b1 sd</span></th>'
           f'<th style="text-align:right">{html.escape(difference_name)}</th>'
           + ('<th style="text-align:right">relative difference</th>' if relative else "") + '</tr></thead><tbody>']
    for title, rows in groups:
        out.append(f'<tr class="group"><td colspan="{ncol}">{title}</td></tr>')
        for r in rows:
            spread = f'<td class="num">{_fmt(r.spread) if math.isfinite(r.spread) else ""}</td>'
            rel = _rel_cell(relative_difference(r.a[0], r.b[0]), float(r.a[0]), float(r.b[0]), r.differs) \
                if relative else ""
            out.append(f"<tr><td>{r.label}</td><td>{r.axis}</td>{_interval_cell(*r.a)}{_interval_cell(*r.b)}"
                       f'{spread}<td class="num">{_fmt(r.difference)}</td>{rel}</tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def _table_html(cmp: Comparison) -> str:
    df = cmp.descriptors
    ndim = cmp.ndim
    order = {d: i for i, d in enumerate(_ORDER)}
    groups = []
    for g in sorted(df["descriptor"].unique(), key=lambda d: order.get(d, len(order))):
        sub = df[df["descriptor"] == g]
        unit = str(sub["unit"].iloc[0])
        unit_txt = "" if unit in ("1", "") else f" [{_unit(unit)}]"
        rows = []
        for _, r in sub.iterrows():
            ax = r["axis"]
            ax_txt = "\u2014" if ax is None or (not isinstance(ax, str) and _isna(ax)) else _axis_name(int(ax), ndim)
            rows.append(IntervalRow(_phase_cell(r["phase"]), ax_txt, (r["real"], r["real_lo"], r["real_hi"]),
                                    (r["twin"], r["twin_lo"], r["twin_hi"]), float(r["twin_spread"]),
                                    bool(r["differs"])))
        groups.append((f"{html.escape(DESCRIPTOR_LABELS.get(g, g))}{unit_txt}", rows))
    twin = cmp.names["twin"] + (f" (mean of {cmp.realisations})" if cmp.realisations > 1 else "")
    return interval_table_html(groups, cmp.names["real"], twin)


def _isna(v: Any) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _summary_html(cmp: Comparison) -> str:
    """Median and largest |relative difference| per descriptor: where the twin agrees, where not."""
    df = cmp.descriptors
    order = {d: i for i, d in enumerate(_ORDER)}
    rows = []
    for g in sorted(df["descriptor"].unique(), key=lambda d: order.get(d, len(order))):
        if g in ("transport_converged", "mssim"):
            continue
        sub = df[df["descriptor"] == g]
        rel = np.abs(sub["relative_difference"].to_numpy(dtype=float))
        undefined = int((~np.isfinite(rel)).sum())  # counted, never read as 0 %
        rel = rel[np.isfinite(rel)]
        count = f"{len(sub)}" + (f" <span class='na'>({undefined} n/a)</span>" if undefined else "")
        beyond = int(sub["differs"].astype(bool).sum())
        if rel.size == 0:
            cells = '<td class="num na">n/a</td><td class="num na">n/a</td>'
        else:
            worst = sub.iloc[int(np.nanargmax(np.abs(sub["relative_difference"].to_numpy(dtype=float))))]
            where = html.escape(str(worst["phase"]).replace("|", " / "))
            if not _isna(worst["axis"]):
                where += f", axis {int(worst['axis'])}"
            cells = (_rel_cell(float(np.median(rel)), differs=False).replace("+", "")
                     + _rel_cell(float(rel.max()), differs=False).replace("+", "").replace(
                         "</td>", f" <span class='small'>({where})</span></td>"))
        rows.append(f"<tr><td>{html.escape(DESCRIPTOR_LABELS.get(g, g))}</td><td class='num'>{count}</td>"
                    f"<td class='num'>{beyond}</td>{cells}</tr>")
    return ('<table class="desc" style="width:auto"><thead><tr><th>descriptor</th><th>values</th>'
            '<th style="text-align:right">intervals disjoint</th>'
            '<th style="text-align:right">median |rel. diff.|</th><th style="text-align:right">largest |rel. diff.|</th>'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _coverage_error_html(cmp: Comparison) -> str:
    ce = cmp.coverage_error
    if ce is None or len(ce) == 0:
        return ""
    pairs = list(dict.fromkeys(zip(ce["phase_i"], ce["phase_j"])))
    head = "".join(f"<th style='text-align:right'>{html.escape(i)} / {html.escape(j)}</th>" for i, j in pairs)
    rows = []
    for d in sorted(ce["direction"].unique()):
        sub = ce[ce["direction"] == d]
        cells = "".join(
            f'<td class="num">{_fmt(float(sub[(sub.phase_i == i) & (sub.phase_j == j)]["max_abs_difference"].iloc[0]))}</td>'
            for i, j in pairs
        )
        rows.append(f"<tr><td>{_axis_name(int(d), cmp.ndim)}</td>{cells}</tr>")
    return (
        '<p class="small">Largest absolute difference of the coverage functions over 0 \u2264 r \u2264 '
        f"{_fmt(float(cmp.coverage['real'].distance[-1]))} {_unit(cmp.unit)} "
        "(probabilities, so 0.01 is one percentage point).</p>"
        f'<table class="desc"><thead><tr><th>direction</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def render_html(cmp: Comparison, pngs: dict[str, bytes], title: str | None = None) -> str:
    """The self-contained HTML page for a comparison (figures given as PNG bytes)."""
    title = title or f"Digital twin validation: {cmp.names['twin']} vs {cmp.names['real']}"
    shape = lambda s: " \u00d7 ".join(str(n) for n in s)  # noqa: E731
    fr = cmp.descriptors[cmp.descriptors["descriptor"] == "volume_fraction"]
    legend = "".join(
        f'<span><span class="swatch" style="background:{PHASE_HEX[p]}"></span>{PHASE_NAMES[p]}</span>' for p in range(N_PHASES)
    )
    twin_shape = (f"{cmp.realisations} realisations of " if cmp.realisations > 1 else "") + f"{shape(cmp.twin_shape)} voxels" \
        + (f", {cmp.twin_sections} sections each" if cmp.twin_sections else "")
    if cmp.realisations > 1 and cmp.twin_shape != cmp.real_shape and len(cmp.twin_shape) == len(cmp.real_shape):
        twin_shape += ("; smaller than the measured volume, to fit the time budget: a size-dependent descriptor "
                       "(e.g. tau near percolation) may differ by size alone")
    meta = [
        ("measured", f"{html.escape(cmp.names['real'])} ({cmp.ndim}D, {shape(cmp.real_shape)} voxels"
         + (f"; interval from its {cmp.sampling_blocks} sub-volumes)" if cmp.sampling_blocks else ")")),
        ("twin", f"{html.escape(cmp.names['twin'])} ({twin_shape})"),
        ("voxel size", f"{cmp.voxel_size:g} {_unit(cmp.unit)}"),
        ("phases", f'<span class="legend">{legend}</span>'),
        ("computed", _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
         + (f" in {cmp.seconds:.1f} s" if math.isfinite(cmp.seconds) else "")),
    ]
    meta_html = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in meta)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in dict.fromkeys(cmp.notes))
    vf_txt = ", ".join(
        f"{html.escape(str(r.phase))} {r.real:.3f} vs {r.twin:.3f}" for r in fr.itertuples()
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<table class="meta">{meta_html}</table>',
        "<h2>Summary</h2>",
        f"<p>Volume fractions (measured vs twin): {vf_txt}.</p>",
        _summary_html(cmp),
        f'<p>{cmp.differing_rows()} of {len(cmp.descriptors)} values differ beyond both 95 % intervals.</p>',
        '<p class="small">Relative difference = (twin \u2212 measured) / |measured|. Intervals (95 %): measured, '
        "from the spread of the value over the measured image's sub-volumes (its octants in 3D, scaled to the whole: "
        "batch means); twin, the confidence interval of the model's mean over its realisations (Student t). A "
        "difference is coloured only when the two intervals do not overlap, by its size: "
        '<span class="ok">&nbsp;\u2264 5 %&nbsp;</span> <span class="warn">&nbsp;\u2264 20 %&nbsp;</span> '
        '<span class="bad">&nbsp;&gt; 20 %&nbsp;</span>; overlapping intervals are not coloured (the data cannot tell '
        "the two apart). 'one twin \u00b1 sd' is how much a single realisation scatters. "
        "Surface and interface areas are per unit total volume; "
        "connectivity, tortuosity, constrictivity and transport are along the given axis (inlet at index 0, "
        "outlet at the last index). Constrictivity and radii use whole-voxel radii, so small structures give coarse "
        "values. n/a: not defined (absent phase, or a zero / infinite measured value).</p>",
    ]
    if notes:
        parts.append(f'<ul class="notes small">{notes}</ul>')
    parts += [
        "<h2>Descriptors</h2>",
        _table_html(cmp),
        "<h2>Two-point coverage functions</h2>",
        _coverage_error_html(cmp),
        _img(pngs["coverage"], "coverage functions, measured vs twin"),
        "<h2>Chord-length distributions</h2>",
        _img(pngs["chords"], "chord-length distributions, measured vs twin"),
        "<h2>Sections</h2>",
        _img(pngs["sections"], "middle sections, measured vs twin"),
        '<p class="small">Written by napari-assb-twin (assb-twin compare). The CSV files beside this page hold '
        "the same numbers.</p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


# ------------------------------------------------------------------------------------------------
def check_report_folder(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Refuse a file, or a folder already holding report files unless ``force`` (before any work).

    Raises
    ------
    NotADirectoryError, FileExistsError
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder; choose another output folder")
    existing = [p.name for p in report_files(out) if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{out} already holds {', '.join(existing)}; choose another folder or pass --force (force=True) to overwrite"
        )
    return out


def write_report(cmp: Comparison, out_dir: str | os.PathLike, force: bool = False, title: str | None = None) -> dict[str, Path]:
    """Write the CSV tables, PNG plots and ``report.html`` of a comparison into ``out_dir``.

    Parameters
    ----------
    cmp
        The comparison (:func:`~napari_assb_twin.validate.compare.compare`).
    out_dir
        Folder (created if missing).
    force
        Replace report files already in the folder; without it an existing file raises.
    title
        Page title (default names both images).

    Returns
    -------
    dict
        ``{file name: path}`` of everything written.

    Raises
    ------
    FileExistsError
        If a report file exists in ``out_dir`` and ``force`` is false (nothing is written then).
    """
    import pandas as pd

    out = check_report_folder(out_dir, force)
    files: dict[str, bytes] = {}  # every file is rendered first, then all are written: an interrupted
    # report leaves no folder with 4 of its 7 files

    desc = cmp.descriptors.copy()
    files["descriptors.csv"] = desc.to_csv(index=False, float_format="%.8g").encode()
    cov_rows = []
    for key in ("real", "twin"):
        for r in cmp.coverage[key].rows():
            cov_rows.append({"image": key, **r})
    files["coverage.csv"] = pd.DataFrame(cov_rows).to_csv(index=False, float_format="%.8g").encode()
    ch_rows = []
    for key in ("real", "twin"):
        for r in cmp.chords[key].rows():
            ch_rows.append({"image": key, **r})
    files["chords.csv"] = pd.DataFrame(ch_rows).to_csv(index=False, float_format="%.8g").encode()

    pngs = {
        "coverage": figure_png(coverage_figure(cmp)),
        "chords": figure_png(chords_figure(cmp)),
        "sections": figure_png(sections_figure(cmp)),
    }
    for k, v in pngs.items():
        files[f"{k}.png"] = v
    files["report.html"] = render_html(cmp, pngs, title).encode("utf-8")
    return _write_all(out, files)


def _write_all(out: Path, files: Mapping[str, bytes]) -> dict[str, Path]:
    """Write every file of a report, or (interrupted, disk full) none that was not there before."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    existed = {name for name in files if (out / name).exists()}
    written: dict[str, Path] = {}
    try:
        for name, data in files.items():
            atomic_write_bytes(out / name, data)
            written[name] = out / name
    except BaseException:
        for name, path in written.items():
            if name not in existed:
                with contextlib.suppress(OSError):
                    path.unlink()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return written
