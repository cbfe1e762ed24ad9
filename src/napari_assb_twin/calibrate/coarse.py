"""A coarser 3D volume of the same material beside fine 2D sections (issue 18, input (c)).

Many users have a lab CT volume that resolves the particles but not the binder, next to
high-resolution SEM sections that resolve all three phases. The coarse volume has its own voxel
size (the resolution ratio ``r`` is coarse voxel / fine pixel, an integer) and its own label mapping,
which may merge phases: ``"0:pore+electrolyte,1:active"`` says that grey value 0 holds pore and
electrolyte, 1 the active material. Each coarse label is a *group* of fine phases.

How the coarse volume relates to the fine structure (``operator``):

* ``"subsample"``: the coarse voxel is the fine structure at one point of its block (a CT whose
  point-spread is below the fine pixel, or a volume made by taking every r-th voxel). Then the
  coarse C_gh(k) is exactly the fine model's sum of C_ij(k r) over i in g, j in h, which the
  calibration matches (:func:`model_coarse_coverage`, exact and differentiable).
* ``"block"`` (default): the coarse voxel is the block's average grey value, then segmented: each
  coarse voxel takes the group that fills most of its r^3 block (ties to the lower label). The coverage
  term uses the same sum of the fine C_ij at lags k r (it does not model the averaging: at k >= 2 the
  block average changes C by little, at k = 1 it smooths it); model selection applies the real
  operator to simulated twins (:func:`coarse_grain`) before comparing tau and connectivity.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..options import COARSE_OPERATORS, MAX_COARSE_RATIO
from ..phasemap import PhaseMap
from ..phases import N_PHASES, PHASE_NAMES, phase_index

__all__ = ["COARSE_R_MAX", "MIN_COARSE_CROP", "CoarseVolume", "coarse_coverage_loss",
           "coarse_grain", "model_coarse_coverage", "fraction_note", "parse_group_mapping", "resolution_note"]

#: Largest coarse lag (coarse voxels) of the coverage term.
COARSE_R_MAX: int = 16
#: Smallest side of a coarse volume (coarse voxels).
MIN_COARSE_SIDE: int = 16
#: Smallest side (coarse voxels) of the crops that model selection compares with twins (a twin of
#: ``MIN_COARSE_CROP * ratio`` fine voxels a side: :data:`~napari_assb_twin.options.MAX_COARSE_RATIO`).
MIN_COARSE_CROP: int = 16


def _twin_gib(side: int) -> float:
    """Memory of one simulated twin of ``side`` (seven float32 fields at the peak of a generation)."""
    return 7 * 4 * side ** 3 / 2 ** 30


def parse_group_mapping(text: str) -> tuple[dict[int, int], tuple[tuple[int, ...], ...]]:
    """Parse ``"0:pore+electrolyte,1:active"`` into ``({label: group index}, groups)``.

    ``groups[g]`` holds the fine phases (canonical indices) of group ``g``, in the order the labels
    are given. Every phase must be in exactly one group.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the coarse label mapping is empty; write it as 'label:phase[+phase],...', "
                         "e.g. '0:pore+electrolyte,1:active'")
    labels: dict[int, int] = {}
    groups: list[tuple[int, ...]] = []
    for item in (s.strip() for s in re.split(r"[,;]", text) if s.strip()):
        parts = re.split(r"[:=]", item)
        if len(parts) != 2 or not re.fullmatch(r"\s*\d+\s*", parts[0]):
            raise ValueError(f"bad coarse mapping item {item!r}: write 'label:phase[+phase]', e.g. "
                             "'0:pore+electrolyte,1:active'")
        label = int(parts[0])
        if label in labels:
            raise ValueError(f"label {label} appears twice in the coarse mapping {text!r}")
        phases = tuple(phase_index(p.strip()) for p in parts[1].split("+") if p.strip())
        labels[label] = len(groups)
        groups.append(phases)
    seen = [p for g in groups for p in g]
    missing = [PHASE_NAMES[p] for p in range(N_PHASES) if p not in seen]
    twice = sorted({PHASE_NAMES[p] for p in seen if seen.count(p) > 1})
    if missing or twice:
        raise ValueError(f"coarse mapping {text!r}: every phase must be in exactly one label"
                         + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; in two labels: {', '.join(twice)}" if twice else ""))
    if len(groups) < 2:
        raise ValueError(f"coarse mapping {text!r} has one label only: a coarse volume needs two or more")
    return labels, tuple(groups)


@dataclass(frozen=True)
class CoarseVolume:
    """Group labels ``0..G-1`` of a coarse volume, the fine phases of each group, the integer
    resolution ratio and the operator that made it from the fine structure."""

    labels: np.ndarray
    groups: tuple[tuple[int, ...], ...]
    ratio: int
    operator: str = "block"
    source: str = "coarse volume"
    voxel_size: float = 1.0
    unit: str = "px"

    def __post_init__(self) -> None:
        if self.operator not in COARSE_OPERATORS:
            raise ValueError(f"coarse operator must be one of {', '.join(COARSE_OPERATORS)}, got {self.operator!r}")
        if np.ndim(self.labels) != 3:
            raise ValueError(f"{self.source}: the coarse volume must be 3D, got shape {np.shape(self.labels)}")
        if min(self.labels.shape) < MIN_COARSE_SIDE:
            raise ValueError(f"{self.source}: coarse volume {self.labels.shape} is too small (need >= "
                             f"{MIN_COARSE_SIDE} voxels along every axis)")
        present = set(np.unique(self.labels).tolist())
        if len(present) < 2:
            raise ValueError(f"{self.source}: only one label present after mapping; check --coarse-labels")
        if not isinstance(self.ratio, int) or self.ratio < 1:
            raise ValueError(f"resolution ratio must be a positive integer, got {self.ratio!r}")
        if self.ratio > MAX_COARSE_RATIO:
            side = MIN_COARSE_CROP * self.ratio
            raise ValueError(
                f"{self.source}: the coarse voxels are {self.ratio}x the sections' pixels; at most "
                f"{MAX_COARSE_RATIO}x is supported (each candidate's twins would have {side}^3 fine voxels, "
                f"~{_twin_gib(side):.1f} GiB each). Downsample the fine sections by "
                f"{-(-self.ratio // MAX_COARSE_RATIO)} (the majority phase of each block) and give their new "
                f"pixel size, so that the ratio is {MAX_COARSE_RATIO} or less")

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def group_names(self) -> list[str]:
        return ["+".join(PHASE_NAMES[p] for p in g) for g in self.groups]

    @classmethod
    def from_file(cls, path: str | os.PathLike, mapping: str, voxel_size: float | None, fine: PhaseMap,
                  operator: str = "block", unit: str | None = None) -> "CoarseVolume":
        """Read a coarse volume with its group mapping; the ratio is its voxel size over ``fine``'s
        pixel size (its own metadata, or ``voxel_size``), which must be an integer within 2 %."""
        from ..io import read_label_image

        label_to_group, groups = parse_group_mapping(mapping)
        img = read_label_image(path, label_to_group).with_geometry(voxel_size, unit)
        name = os.path.basename(os.fspath(path))
        if img.ndim != 3:
            raise ValueError(f"{name}: the coarse volume must be 3D, got shape {img.shape}")
        return cls.from_phase_map(img, groups, fine, operator, name)

    @classmethod
    def from_phase_map(cls, img: PhaseMap, groups, fine: PhaseMap, operator: str = "block",
                       source: str | None = None) -> "CoarseVolume":
        """From a PhaseMap whose values are group indices (the ratio from the two pixel sizes)."""
        name = source or img.source
        if img.spacing is None or fine.spacing is None:
            raise ValueError(f"{name}: give the voxel sizes of the coarse volume and of the fine sections "
                             "(--coarse-voxel-size and --voxel-size): their ratio is the resolution ratio")
        if not img.is_isotropic:
            raise ValueError(f"{name}: voxel size {img.spacing} is not isotropic; resample it to cubic voxels")
        if img.unit_label != fine.unit_label:
            raise ValueError(f"{name}: unit {img.unit_label} differs from the sections' {fine.unit_label}; "
                             "give both in one unit")
        q = img.pixel_size / fine.pixel_size
        ratio = int(round(q))
        if ratio < 1 or abs(q - ratio) > 0.02 * ratio:
            raise ValueError(f"{name}: coarse voxel {img.pixel_size:g} / fine pixel {fine.pixel_size:g} "
                             f"{fine.unit_label} = {q:.3g} is not an integer resolution ratio; resample one of them")
        return cls(np.ascontiguousarray(img.data), tuple(groups), ratio, operator, name, img.pixel_size,
                   img.unit_label)

    def check_fine(self, fine_shape_min: int) -> None:
        """Refuse fine sections too small to show one coarse voxel's block several times over."""
        if fine_shape_min < 4 * self.ratio:
            raise ValueError(f"the fine sections ({fine_shape_min} px) span fewer than 4 coarse voxels of "
                             f"{self.ratio} px; the resolution ratio {self.ratio} looks wrong")

    def r_max(self) -> int:
        return int(min(COARSE_R_MAX, (min(self.labels.shape) - 1) // 2))

    def coverage_targets(self, r_max: int) -> np.ndarray:
        """Minus-sampling C_gh of the group labels along each axis: ``(3, G, G, r_max + 1)``."""
        from ..stats.coverage import coverage

        res = coverage(self.labels, r_max, periodic=False, radial=False, n_phases=self.n_groups,
                       phase_names=self.group_names())
        return np.asarray(res.directional)


def coarse_grain(fine: np.ndarray, groups: Sequence[Sequence[int]], ratio: int, operator: str = "block") -> np.ndarray:
    """Group labels of a fine 3D phase map seen at ``ratio`` (module docstring); blocks that do not
    fit at the far faces are dropped."""
    fine = np.asarray(fine)
    lut = np.zeros(max(N_PHASES, int(fine.max()) + 1), np.uint8)
    for g, phases in enumerate(groups):
        lut[list(phases)] = g
    if operator == "subsample":
        return np.ascontiguousarray(lut[fine[::ratio, ::ratio, ::ratio]])
    if operator != "block":
        raise ValueError(f"coarse operator must be one of {', '.join(COARSE_OPERATORS)}, got {operator!r}")
    n = [s // ratio for s in fine.shape]
    if min(n) < 1:
        raise ValueError(f"a {fine.shape} volume holds no block of {ratio}^3 voxels")
    f = lut[fine[: n[0] * ratio, : n[1] * ratio, : n[2] * ratio]]
    counts = np.stack([(f == g).reshape(n[0], ratio, n[1], ratio, n[2], ratio).sum(axis=(1, 3, 5))
                       for g in range(len(groups))])
    return np.ascontiguousarray(counts.argmax(0).astype(np.uint8))


def model_coarse_coverage(model, groups: Sequence[Sequence[int]], ratio: int, r_max: int) -> dict[str, torch.Tensor]:
    """The model's exact C_gh at coarse lags ``0..r_max`` (fine lags ``k * ratio``) per direction
    (``"axial"``, ``"inplane"``): sums of the fine C_ij over the groups; ``(G, G, r_max + 1)`` each."""
    m = torch.zeros(len(groups), N_PHASES, dtype=torch.float64)
    for g, phases in enumerate(groups):
        m[g, list(phases)] = 1.0
    out = {}
    for direction in ("axial", "inplane"):
        c = model.expected_coverage(r_max * ratio, direction)[..., ::ratio]
        mm = m.to(device=c.device, dtype=c.dtype)
        out[direction] = torch.einsum("gi,ijr,hj->ghr", mm, c, mm)
    return out


def _correlation(c: torch.Tensor) -> torch.Tensor:
    """Per group, the indicator's correlation coefficient over lags, ``(C_gg(k) - p^2) / (p - p^2)``
    with ``p = C_gg(0)`` (``(G, r + 1)``)."""
    d = torch.diagonal(c, dim1=0, dim2=1).T  # (G, r+1): C_gg(k)
    p = d[:, :1]
    return (d - p**2) / (p - p**2).clamp_min(1e-9)


def coarse_coverage_loss(model_cov: dict[str, torch.Tensor], targets: np.ndarray) -> torch.Tensor:
    """Squared deviation (lags >= 1, every group, mean over axes; in units of 0.01^2 like the fine
    coverage loss) of the model's coarse *correlation* from the data's: ``rho_g(k) = (C_gg(k) - p_g^2)
    / (p_g - p_g^2)``, times the data's ``p_g (1 - p_g)`` to read as a C_gg deviation. Correlations, not
    C_gg, because the group fractions are the fine sections' (fixed by them); a coarse volume whose
    fractions differ (another region, another threshold) then still informs the lengths and does not
    pull them to make up for the fractions. :func:`fraction_note` tells the user about such a
    difference."""
    from .losses import COVERAGE_SCALE

    total = 0.0
    for axis, direction in ((0, "axial"), (1, "inplane"), (2, "inplane")):
        cm = model_cov[direction]
        cd = torch.as_tensor(targets[axis], dtype=cm.dtype, device=cm.device)
        pd = torch.diagonal(cd[..., 0])
        w = (pd * (1 - pd))[:, None]
        total = total + (((_correlation(cm) - _correlation(cd)) * w)[:, 1:] ** 2).mean()
    return total / 3 / COVERAGE_SCALE**2


def fraction_note(coarse: CoarseVolume, fractions: dict[str, float], tol: float = 0.05) -> str:
    """A note when the coarse volume's group fractions differ from the fine data's by more than ``tol``."""
    have = np.bincount(coarse.labels.ravel(), minlength=coarse.n_groups)[: coarse.n_groups] / coarse.labels.size
    fine = [sum(fractions[PHASE_NAMES[p]] for p in g) for g in coarse.groups]
    off = [(n, h, f) for n, h, f in zip(coarse.group_names(), have, fine) if abs(h - f) > tol]
    if not off:
        return ""
    return (f"{coarse.source}: group fractions " + ", ".join(f"{n} {h:.3f}" for n, h, _ in off)
            + " differ from the fine data's " + ", ".join(f"{f:.3f}" for _, _, f in off)
            + ": is it the same material, segmented alike? The model keeps the fine fractions; the coarse "
              "volume informs correlation lengths and 3D connectivity")


def resolution_note(coarse: CoarseVolume) -> str:
    """One line for the start of a calibration."""
    side = "x".join(map(str, coarse.labels.shape))
    return (f"coarse volume {coarse.source} {side} at {coarse.voxel_size:g} {coarse.unit} (ratio {coarse.ratio}, "
            f"{coarse.operator}; labels {', '.join(coarse.group_names())})")
