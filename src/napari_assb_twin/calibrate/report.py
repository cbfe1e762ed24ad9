"""Outputs of a calibration run: training log CSV, data-vs-model coverage plot, section comparison.

Matplotlib is imported lazily with the non-interactive Agg backend (no display needed). Every file
is written atomically (:mod:`napari_assb_twin.io.atomic`).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..io.atomic import atomic_open, atomic_path
from ..model import ThreePhaseModel
from ..phases import N_PHASES, PHASE_HEX, PHASE_NAMES
from .engine import Progress
from .losses import model_coverage, simulate_sections

__all__ = ["model_coverage_curves", "plot_coverage_comparison", "plot_sections", "write_log_csv"]

_PAIRS = [(i, j) for i in range(N_PHASES) for j in range(i, N_PHASES)]


def write_log_csv(history: Sequence[Progress], path: str | Path) -> Path:
    """One row per step: iteration, phase, elapsed_s, best_loss, every loss and every parameter."""
    path = Path(path)
    loss_keys: list[str] = []
    param_keys: list[str] = []
    for rec in history:
        loss_keys += [k for k in rec.losses if k not in loss_keys]
        param_keys += [k for k in rec.params if k not in param_keys]
    cols = ["iteration", "total", "phase", "elapsed_s", "best_loss"] + [f"loss.{k}" for k in loss_keys] + param_keys
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for rec in history:
            w.writerow(
                [rec.iteration, rec.total, rec.phase, f"{rec.elapsed_s:.3f}", repr(rec.best_loss)]
                + [repr(rec.losses[k]) if k in rec.losses else "" for k in loss_keys]
                + [repr(rec.params[k]) if k in rec.params else "" for k in param_keys]
            )
    return path


def model_coverage_curves(
    model: ThreePhaseModel, planes: Sequence[str], r_max: int, size: int = 256, batch: int = 16, seed: int = 0
) -> dict[tuple[str, str], np.ndarray]:
    """Expected C_ij of the model per (plane, direction) from ``batch`` hard periodic sections."""
    g = torch.Generator(device=model.device)
    g.manual_seed(seed)
    out = {}
    with torch.no_grad():
        for plane in planes:
            x, _ = simulate_sections(model, size, plane, batch, g, "hard")
            for k, v in model_coverage(x, plane, r_max).items():
                out[k] = v.cpu().double().numpy()
    return out


def plot_coverage_comparison(
    data_cov: Mapping[tuple[str, str], np.ndarray],
    model_cov: Mapping[tuple[str, str], np.ndarray],
    path: str | Path,
    pixel_size: float = 1.0,
    unit: str = "px",
    title: str = "",
    note: Sequence[str] = (),
) -> Path:
    """Data (solid) vs model (dashed) C_ij per (plane, direction), all 6 phase pairs; ``note`` lines
    (e.g. the input's representativeness) are printed below the panels."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = [k for k in data_cov if k in model_cov]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, key in zip(axes[0], keys):
        cd, cm = np.asarray(data_cov[key]), np.asarray(model_cov[key])
        r = np.arange(cd.shape[-1]) * pixel_size
        for n, (i, j) in enumerate(_PAIRS):
            lab = f"{PHASE_NAMES[i]}-{PHASE_NAMES[j]}"
            ax.plot(r, cd[i, j], "-", color=colors(n), lw=1.8, label=f"{lab} data")
            ax.plot(r, cm[i, j], "--", color=colors(n), lw=1.4)
        dev = np.abs(cm - cd)[..., 1:].max()
        ax.set_title(f"{key[0]} section, {key[1]} direction (max |diff| {dev:.3f})", fontsize=9)
        ax.set_xlabel(f"r [{unit}]")
        ax.set_ylabel("C_ij(r)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, title="solid: data, dashed: model", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    if note:
        import textwrap

        # monospaced lines wrapped to the figure's width (6.5 pt: about 18 characters an inch), with
        # room below the panels for them (about 0.12 in each)
        width = int(fig.get_size_inches()[0] * 18)
        wrapped = [w for ln in note for w in textwrap.wrap(
            ln, width, subsequent_indent=" " * (len(ln) - len(ln.lstrip()) + 2)) or [""]]
        extra = 0.12 * len(wrapped) + 0.15
        fig.set_size_inches(fig.get_size_inches()[0], fig.get_size_inches()[1] + extra)
        fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=6.5, family="monospace", va="bottom", ha="left")
        fig.tight_layout(rect=(0, extra / fig.get_size_inches()[1], 1, 1))
    else:
        fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


def _rgb(image: np.ndarray) -> np.ndarray:
    lut = np.array([[int(PHASE_HEX[p][k : k + 2], 16) for k in (1, 3, 5)] for p in range(N_PHASES)], dtype=np.uint8)
    return lut[np.asarray(image, dtype=np.uint8)]


def plot_sections(panels: Sequence[tuple[str, np.ndarray]], path: str | Path, title: str = "", ncols: int | None = None) -> Path:
    """Phase maps side by side in the shared phase colours (e.g. real vs simulated sections)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = len(panels)
    ncols = ncols or n
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.5 * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, img) in zip(axes.ravel(), panels):
        ax.imshow(_rgb(img), interpolation="nearest")
        ax.set_title(name, fontsize=8)
    handles = [Patch(color=PHASE_HEX[p], label=PHASE_NAMES[p]) for p in range(N_PHASES)]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path
