"""Held-out 2D statistics of model selection: computed on the data and on a candidate's simulated
sections alike, per section (unit) and pooled, and their differences as the score's terms
(:mod:`.selection` ranks by them; :mod:`.plausible` resamples the units for the score's noise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..phases import N_PHASES
from ..stats.chords import chord_length_distributions
from ..stats.lineal import lineal_path
from ..stats.minkowski import chi_over_p2, minkowski_torch
from .data import DIRECTIONS, CalibrationData

if TYPE_CHECKING:
    from ..model import ThreePhaseModel

__all__ = [
    "BOUNDARY_PAIRS",
    "SCORE_TERMS",
    "SCORE_WEIGHTS",
    "HeldOutTargets",
    "add_terms",
    "boundary_densities",
    "chord_score",
    "heldout_score",
    "pool_stats",
    "pooled_minkowski",
    "simulated_sections",
    "unit_stats",
    "weighted_score",
]

#: Weight of each held-out term in the score. Topology counts 5x: its differences between field
#: types are 0.01-0.1 (issue 12's table) and it is what carries connectivity into 3D, while the
#: other terms differ by 0.01-0.03 between candidates around offsets common to all of them (the
#: pixel-scale carbon-binder films no candidate resolves).
SCORE_WEIGHTS: dict[str, float] = {"topology": 5.0, "chord_w1": 1.0, "lineal": 1.0, "boundary": 1.0}
SCORE_TERMS = tuple(SCORE_WEIGHTS)


# ------------------------------------------------------------------------------------------------
# held-out 2D statistics
# ------------------------------------------------------------------------------------------------
#: The phase pairs of :func:`boundary_densities`, in its order.
BOUNDARY_PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))


def boundary_densities(image: np.ndarray, axis: int) -> np.ndarray:
    """Boundary length per area between each phase pair along one image axis: the number of
    neighbouring pixel pairs (i, j), i < j, per pixel pair (3 values, :data:`BOUNDARY_PAIRS` order)."""
    a = np.moveaxis(np.asarray(image), axis, 0)
    x, y = a[:-1], a[1:]
    out = np.zeros(3)
    for k, (i, j) in enumerate(BOUNDARY_PAIRS):
        out[k] = np.count_nonzero(((x == i) & (y == j)) | ((x == j) & (y == i))) / x.size
    return out


def _lineal_r(h: int, w: int) -> int:
    """Segment lengths compared by the lineal-path term: up to a quarter of the smaller side, <= 64 px."""
    return max(1, min(64, min(h, w) // 4))


def unit_stats(images: Sequence[np.ndarray], plane: str, r_lineal: int) -> list[dict]:
    """Held-out statistics of each image of one plane, unpooled (:func:`pool_stats` pools any subset,
    so that resampling the data's sections or sub-windows costs no recomputation)."""
    images = [np.asarray(im) for im in images]
    if len({im.shape for im in images}) == 1:  # one batched call (the common case)
        minks = minkowski_torch(np.stack(images)).numpy()
    else:
        minks = np.stack([minkowski_torch(im).numpy() for im in images])
    units = []
    for im, mink in zip(images, minks):
        res = chord_length_distributions(im, n_phases=N_PHASES)
        chords: dict[tuple[str, int], list[np.ndarray]] = {}
        bound: dict[str, list[np.ndarray]] = {}
        lineal: dict[str, list[np.ndarray]] = {}
        # both axes of an in-plane section are one direction: their statistics are pooled
        for axis, direction in enumerate(DIRECTIONS[plane]):
            for p in range(N_PHASES):
                lengths = np.asarray(res.lengths[(p, axis)], dtype=np.int64)
                chords.setdefault((direction, p), []).append(np.bincount(lengths))
            bound.setdefault(direction, []).append(boundary_densities(im, axis))
            lineal.setdefault(direction, []).append(lineal_path(im, r_lineal, axis))
        units.append({"chords": {k: _add_counts(v) for k, v in chords.items()},
                      "boundary": {k: np.mean(v, axis=0) for k, v in bound.items()},
                      "lineal": {k: np.mean(v, axis=0) for k, v in lineal.items()},
                      "minkowski": mink, "size": float(im.size)})
    return units


def pool_stats(units: Sequence[dict]) -> dict:
    """The pooled held-out statistics of :func:`unit_stats` records: chord-length histograms added, boundary
    densities and lineal paths averaged, Minkowski densities pixel-weighted, and chi/P^2 of the pool."""
    mink = pooled_minkowski(units)
    first = units[0]
    return {
        "chords": {k: _add_counts([u["chords"][k] for u in units]) for k in first["chords"]},
        "boundary": {k: np.mean([u["boundary"][k] for u in units], axis=0) for k in first["boundary"]},
        "lineal": {k: np.mean([u["lineal"][k] for u in units], axis=0) for k in first["lineal"]},
        "minkowski": mink,
        "chi_p2": chi_over_p2(mink),
    }


def pooled_minkowski(units: Sequence[dict]) -> np.ndarray:
    """The pixel-weighted mean of :func:`unit_stats` records' Minkowski densities ``(phases, 3)``."""
    sizes = np.array([u["size"] for u in units])
    return (np.stack([u["minkowski"] for u in units]) * (sizes / sizes.sum())[:, None, None]).sum(0)


def _stats(images: Sequence[np.ndarray], plane: str, r_lineal: int) -> dict:
    """Held-out statistics of one plane's images, pooled (pixel-weighted)."""
    return pool_stats(unit_stats(images, plane, r_lineal))


@dataclass
class HeldOutTargets:
    """The data's held-out statistics per plane, computed once and shared by every candidate."""

    planes: dict[str, dict]
    shapes: dict[str, tuple[int, int]]
    r_lineal: int

    @classmethod
    def from_data(cls, data: CalibrationData) -> "HeldOutTargets":
        r = _lineal_r(*min((im.shape for p in data.planes for im in data.images(p)), key=min))
        planes, shapes = {}, {}
        for plane in data.planes:
            imgs = data.images(plane)
            planes[plane] = _stats(imgs, plane, r)
            shapes[plane] = imgs[0].shape
        return cls(planes, shapes, r)


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance of two chord-length histograms (counts of lengths 0, 1, 2, ... px):
    the L1 distance of their CDFs, exactly ``scipy.stats.wasserstein_distance`` of the lengths."""
    na, nb = a.sum(), b.sum()
    if na == 0 or nb == 0:
        return float("nan")
    n = max(a.size, b.size)
    ca = np.cumsum(np.pad(a, (0, n - a.size))) / na
    cb = np.cumsum(np.pad(b, (0, n - b.size))) / nb
    return float(np.abs(ca - cb).sum())


def _add_counts(hists: Sequence[np.ndarray]) -> np.ndarray:
    n = max(h.size for h in hists)
    out = np.zeros(n, dtype=np.int64)
    for h in hists:
        out[: h.size] += h
    return out


def _mean_length(h: np.ndarray) -> float:
    return float((np.arange(h.size) * h).sum() / h.sum())


def heldout_score(
    data: CalibrationData | HeldOutTargets, model: ThreePhaseModel, n_sections: int = 8, seed: int = 12345
) -> dict[str, float]:
    """Held-out score of ``model`` against the data (lower is better; module docstring).

    For each plane of the data, ``n_sections`` hard sections of the data's size are simulated
    (cut from sections twice as large, so border-censored chords are treated as in the data).

    Returns
    -------
    dict
        ``topology``, ``chord_w1``, ``lineal``, ``boundary`` and their weighted sum ``score``; ``chi_p2``
        (model, per plane and phase) for reports.
    """
    targets = data if isinstance(data, HeldOutTargets) else HeldOutTargets.from_data(data)
    g = torch.Generator(device=model.device)
    g.manual_seed(seed)
    terms: dict[str, list[float]] = {k: [] for k in SCORE_TERMS}
    chi_model = {}
    for plane, real in targets.planes.items():
        h, w = targets.shapes[plane]
        sims = simulated_sections(model, plane, (h, w), n_sections, g)
        fake = _stats(sims, plane, targets.r_lineal)
        add_terms(terms, real, fake)
        chi_model[plane] = [float(v) for v in fake["chi_p2"]]
    out = weighted_score(terms)
    out["chi_p2"] = chi_model
    return out


def simulated_sections(model: ThreePhaseModel, plane: str, shape: tuple[int, int], n: int,
                       generator: torch.Generator) -> list[np.ndarray]:
    """``n`` hard sections of ``shape`` of ``model`` in ``plane``, each cut from a section twice as large
    (at most 512), so that chords censored by the border are treated as in the data."""
    h, w = shape
    size = (min(2 * h, 512), min(2 * w, 512))
    with torch.no_grad():
        sims = model.sample_sections(size, plane, batch=n, generator=generator).cpu().numpy()
    return [s[: min(h, size[0]), : min(w, size[1])] for s in sims]


def add_terms(terms: dict[str, list[float]], real: dict, fake: dict) -> None:
    """Append one plane's held-out differences between the data's statistics ``real`` and the model's
    ``fake`` (both from :func:`_stats`) to ``terms`` (module docstring)."""
    for p in range(N_PHASES):
        d = float(fake["chi_p2"][p] - real["chi_p2"][p])
        terms["topology"].append(abs(d) if math.isfinite(d) else 1.0)
    for key, hist in real["chords"].items():
        if hist.sum() < 5:
            continue
        d = _w1(hist, fake["chords"][key])
        terms["chord_w1"].append(d / max(_mean_length(hist), 1e-9) if math.isfinite(d) else 2.0)
    for key, b in real["boundary"].items():
        fb = fake["boundary"][key]
        for k in range(3):
            if b[k] > 0:
                terms["boundary"].append(abs(fb[k] - b[k]) / b[k])
    for key, lp in real["lineal"].items():
        fl = fake["lineal"][key]
        for p in range(N_PHASES):
            norm = float(lp[p].sum())
            if norm > 0:
                terms["lineal"].append(float(np.abs(fl[p] - lp[p]).sum()) / norm)


def weighted_score(terms: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Each term's mean and their weighted sum ``score`` (:data:`SCORE_WEIGHTS`)."""
    out = {k: float(np.mean(v)) if len(v) else float("nan") for k, v in terms.items()}
    out["score"] = float(sum(SCORE_WEIGHTS[k] * out[k] for k in SCORE_TERMS if math.isfinite(out[k])))
    return out


def chord_score(data: CalibrationData, model: ThreePhaseModel, n_sections: int = 8, seed: int = 12345) -> dict[str, float]:
    """:func:`heldout_score` (kept under its first name: chords were its first term)."""
    return heldout_score(data, model, n_sections=n_sections, seed=seed)
