"""The structures the input cannot tell apart, and the 3D predictions they spread over (issue 21).

Selection ranks candidate structures by a score of held-out 2D statistics (and 3D terms where a volume
is given). That score is itself a statistic of a finite input and of finitely many simulated sections:
two candidates whose scores differ by less than its sampling noise fit equally well, yet they can
differ several-fold in 3D tortuosity (from 2D sections alone, docs/benchmarks.md). So:

1. **Score noise** (:func:`score_replicates`): a paired block bootstrap. The data are cut into units
   (their sections, or the 2 x 2 sub-windows of each section when a plane has fewer than
   :data:`MIN_UNITS`), each candidate's simulated sections into units of the same size. Replicate ``b``
   resamples the data's units (the same draw for every candidate, so the noise the candidates share
   cancels in their differences) and each candidate's simulated units, and scores every candidate on
   its pool. With 3D terms, the measured crops and the candidate's twins are resampled alike.
2. **Plausible set** (:func:`plausible_members`): the candidates whose score excess over the best,
   averaged over the replicates, is within :data:`PLAUSIBLE_Z` standard deviations of that excess
   (a one-sided test at about 2.5 %: the data do not reject them), best first, at most
   :data:`MAX_PLAUSIBLE`.
3. **Prediction intervals** (:func:`iter_tau_intervals`): for up to :data:`MAX_PLAUSIBLE` plausible
   structures, the most different first (:func:`pick_structures`), twins of side :data:`INTERVAL_SIDE`
   (:data:`INTERVAL_TWINS` of the selected one, :data:`OTHER_TWINS` of each other) and their tortuosity
   factor per phase and axis (AMG-CG). The interval of a phase along an axis is the range of the twins' values over the
   whole set (axes the model treats alike are pooled: all three for isotropic structures, the two
   in-plane axes for cylindrical ones), so it holds the structural spread and the realisation spread of
   a twin of that size; the selected structure is also simulated with each phase's volume fraction at
   the ends of the input's 95 % interval (:func:`fraction_variants`, from the representativeness of the
   input), so the interval holds what the input's size leaves open too. A phase whose interval spans more
   than :data:`UNDECIDED_RATIO` is *undecided*:
   the report says so in words and names what would decide it.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from ..events import JobProgress
from ..phases import N_PHASES, PHASE_NAMES

__all__ = [
    "BOOTSTRAP",
    "INTERVAL_SIDE",
    "INTERVAL_TWINS",
    "MAX_PLAUSIBLE",
    "OTHER_TWINS",
    "PLAUSIBLE_Z",
    "UNDECIDED_RATIO",
    "DataUnits",
    "Plausibility",
    "TauIntervals",
    "advice_for",
    "data_units",
    "fraction_sd",
    "fraction_variants",
    "iter_tau_intervals",
    "pick_structures",
    "plausible_members",
    "score_replicates",
    "topology_noise",
]

#: Bootstrap replicates of the score (200: the SD of a difference to about 5 %).
BOOTSTRAP: int = 200
#: A candidate is plausible when its mean score excess over the best is below this many SDs of it.
PLAUSIBLE_Z: float = 2.0
#: At most this many plausible structures get twins (:func:`pick_structures`; the set's size is reported).
MAX_PLAUSIBLE: int = 8
#: A plane with fewer sections than this is resampled by the 2 x 2 sub-windows of its sections.
MIN_UNITS: int = 4
#: Simulated units per plane and candidate (their pool is about the data's area, 4 sections' worth).
SIM_UNITS: int = 16
#: Side of the twins behind the tau intervals; twins of the selected structure (its realisation spread)
#: and of each other plausible one (their structural spread).
INTERVAL_SIDE: int = 96
INTERVAL_TWINS: int = 2
OTHER_TWINS: int = 1
#: A tau interval wider than this ratio (hi / lo) marks the phase as undecided (issue 21).
UNDECIDED_RATIO: float = 1.5


# ------------------------------------------------------------------------------------------------
# score noise
# ------------------------------------------------------------------------------------------------
@dataclass
class DataUnits:
    """The data's held-out statistics per resampling unit and plane (:func:`data_units`)."""

    planes: dict[str, list[dict]]
    shapes: dict[str, tuple[int, int]]
    r_lineal: int


def _split(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The 2 x 2 sub-windows of every image (cropped to a common even shape)."""
    h = min(im.shape[0] for im in images) // 2
    w = min(im.shape[1] for im in images) // 2
    return [np.asarray(im)[a * h:(a + 1) * h, b * w:(b + 1) * w] for im in images for a in (0, 1) for b in (0, 1)]


def data_units(data: Any) -> DataUnits:
    """Cut the calibration data's sections into resampling units and measure each (module docstring).

    A plane with at least :data:`MIN_UNITS` sections is resampled by section; otherwise each section
    is split into its 2 x 2 sub-windows (at least 32 px a side, else the sections themselves).
    """
    from .heldout import _lineal_r, unit_stats

    images = {p: [np.asarray(im) for im in data.images(p)] for p in data.planes}
    units = {}
    for plane, ims in images.items():
        if len(ims) < MIN_UNITS and min(min(im.shape) for im in ims) >= 64:
            ims = _split(ims)
        units[plane] = ims
    shapes = {p: min((im.shape for im in ims), key=lambda s: s[0] * s[1]) for p, ims in units.items()}
    r = _lineal_r(*min(shapes.values(), key=min))
    return DataUnits({p: unit_stats([im[:shapes[p][0], :shapes[p][1]] for im in ims], p, r) for p, ims in units.items()},
                     shapes, r)


def topology_noise(units: DataUnits, n_boot: int = BOOTSTRAP, seed: int = 0) -> float:
    """Bootstrap SD of the data's chi/P^2 (mean over phases and planes): the noise of the pre-ranking's
    distance, so that first-field types within it of the best are fitted, not pruned unseen."""
    from ..stats.minkowski import chi_over_p2
    from .heldout import pooled_minkowski

    rng = np.random.default_rng(seed)
    sds = []
    for units_p in units.planes.values():
        draws = [chi_over_p2(pooled_minkowski([units_p[i] for i in rng.integers(0, len(units_p), len(units_p))]))
                 for _ in range(n_boot)]
        sds.append(float(np.nanmean(np.nanstd(np.asarray(draws), axis=0, ddof=1))))
    return float(np.mean(sds))


def score_replicates(
    units: DataUnits,
    models: Mapping[str, Any],
    n_boot: int | None = None,
    seed: int = 0,
    crops: Sequence[dict] | None = None,
    extra: Mapping[str, Sequence[tuple[str, Sequence[dict]]]] | None = None,
    measured_tau: Sequence[Any] = (),
) -> Generator[JobProgress, None, dict[str, np.ndarray]]:
    """Bootstrap replicates of every candidate's score (module docstring, step 1).

    A job: one event per candidate; returns ``{label: (n_boot,) scores}``, replicate ``b`` drawn from
    the same data units (and measured crops) for every label.

    Parameters
    ----------
    units
        The data's units (:func:`data_units`).
    models
        Fitted model per candidate label.
    n_boot, seed
        Replicates (default :data:`BOOTSTRAP`); the seed of the simulated units and of the resampling
        (same seed, same result).
    crops
        The measured crops' statistics of the 3D terms (:class:`~.volume_score.VolumeTargets`), or None.
    extra
        Per label, ``("volume", twins)`` and / or ``("measured", twins)``: the twins' statistics behind
        the candidate's 3D terms and measured-tau term, resampled like the data.
    measured_tau
        The :class:`~.measured.MeasuredTau` constraints of the ``"measured"`` term.
    """
    from ..stats.parallel import ordered_results, solver_threads
    from .heldout import pool_stats, simulated_sections, unit_stats

    n_boot = int(n_boot or BOOTSTRAP)
    rng = np.random.default_rng(seed)
    # the data's pools, one per replicate and plane: the same draw for every candidate, pooled once
    data_pools = [{p: pool_stats([u[i] for i in rng.integers(0, len(u), len(u))]) for p, u in units.planes.items()}
                  for _ in range(n_boot)]
    crop_draws = [rng.integers(0, len(crops), len(crops)) for _ in range(n_boot)] if crops else None
    # common random numbers, as in the point estimates (heldout_score and iter_volume_score seed every
    # candidate alike): the same seed for every candidate's simulated units and the same resampling of
    # them and of its twins, so a paired difference keeps the correlation that shared Gaussian draws
    # give two structures (independent draws per candidate made the NMC half volume's 3D terms the
    # score's largest noise: SD 0.3 of the paired excess, 12 of 21 structures plausible)
    draw_seeds = rng.integers(0, 2**31 - 1, n_boot)

    def simulate(model: Any) -> dict:
        g = torch.Generator(device=model.device)
        g.manual_seed(seed + 7919)
        return {p: unit_stats(simulated_sections(model, p, units.shapes[p], SIM_UNITS, g), p, units.r_lineal)
                for p in units.planes}

    # the candidates' simulated sections are made on threads (torch and NumPy release the GIL) while
    # this thread resamples the ones already made; each has its own generator: the same numbers
    simulated = ordered_results([partial(simulate, m) for m in models.values()], solver_threads())
    out = {}
    try:
        for k, label in enumerate(models):
            yield JobProgress("selection", 0, 0, f"score noise {k + 1}/{len(models)}: {label}")
            out[label] = _replicate_scores(next(simulated), data_pools, draw_seeds, crops, crop_draws,
                                           (extra or {}).get(label, ()), measured_tau, models[label])
    finally:
        simulated.close()
    return out


def _replicate_scores(sims: dict, data_pools: list, draw_seeds: np.ndarray, crops: Sequence[dict] | None,
                      crop_draws: list | None, extra: Sequence[tuple[str, Sequence[dict]]],
                      measured_tau: Sequence[Any], model: Any) -> np.ndarray:
    """One candidate's bootstrap scores (:func:`score_replicates`) from its simulated units ``sims``."""
    from .heldout import SCORE_TERMS, add_terms, pool_stats, weighted_score
    from .measured import MEASURED_WEIGHT, alike_axes, measured_term
    from .volume_score import VOLUME_WEIGHTS, volume_terms

    n_boot = len(draw_seeds)
    scores = np.empty(n_boot)
    for b in range(n_boot):
        crng = np.random.default_rng(draw_seeds[b])
        terms: dict[str, list[float]] = {t: [] for t in SCORE_TERMS}
        for p, real in data_pools[b].items():
            fake = pool_stats([sims[p][i] for i in crng.integers(0, len(sims[p]), len(sims[p]))])
            add_terms(terms, real, fake)
        s = weighted_score(terms)["score"]
        for kind, twins in extra:
            drawn = [twins[i] for i in crng.integers(0, len(twins), len(twins))]
            if kind == "volume" and crop_draws is not None:
                v3 = volume_terms([crops[i] for i in crop_draws[b]], drawn)
                s += sum(w * v3[t] for t, w in VOLUME_WEIGHTS.items())
            elif kind == "measured":
                s += MEASURED_WEIGHT * measured_term(measured_tau, drawn, alike_axes(model))
        scores[b] = s
    return scores


def pick_structures(chosen: Any, plausible: Sequence[Any], n: int | None = None) -> list[Any]:
    """Up to ``n`` (:data:`MAX_PLAUSIBLE`) plausible candidates for twins, the selected one first, then
    the most different ones first: one per first field (rule, ordering, type and level of F1: what sets
    the F1 phase's connectivity), then one per second field, then the rest, each pass in the given
    order (by score excess). Taking the best few by excess alone kept six chi2(k >= 2) particle phases
    of one NMC section and left out the chi2(1) structure whose tau was the measured one."""
    n = int(n or MAX_PLAUSIBLE)
    out = [chosen]

    def key1(c):
        return (c.rule, c.order, c.f1, c.f1_dof, c.level1)

    def key2(c):
        return (c.rule, c.order, c.f2, c.f2_dof, c.level2)

    for key in (key1, key2, None):
        seen = {key(c) for c in out} if key else set()
        for c in plausible:
            if len(out) >= n:
                return out
            if c in out or (key and key(c) in seen):
                continue
            out.append(c)
            if key:
                seen.add(key(c))
    return out


def plausible_members(replicates: Mapping[str, np.ndarray], best: str,
                      z: float = PLAUSIBLE_Z) -> list[dict[str, float | str | bool]]:
    """Every candidate's mean score excess over ``best`` and its SD over the replicates, and whether it
    is plausible (excess <= ``z`` SD; the best itself always is). Sorted by excess."""
    ref = replicates[best]
    rows = []
    for label, s in replicates.items():
        d = s - ref
        excess, sd = float(d.mean()), float(d.std(ddof=1)) if d.size > 1 else 0.0
        rows.append({"label": label, "excess": excess, "sd": sd,
                     "plausible": bool(label == best or excess <= z * sd)})
    rows.sort(key=lambda r: (not r["plausible"], r["excess"]))
    return rows


# ------------------------------------------------------------------------------------------------
# prediction intervals
# ------------------------------------------------------------------------------------------------
@dataclass
class TauIntervals:
    """Tortuosity factor per phase and axis over the plausible structures' twins (module docstring).

    ``values[label]`` is ``(twins, phases, 3)`` tau (capped, :data:`~.volume_score.TAU_CAP` = not
    percolating); ``lo``, ``hi`` (and their geometric ``centre``) are ``(phases, 3)``; ``selected`` the
    first structure's mean per phase and axis.
    """

    labels: list[str]
    values: dict[str, np.ndarray]
    lo: np.ndarray
    hi: np.ndarray
    selected: np.ndarray
    side: int
    #: the interval of the structures' twins alone (without the fraction variants)
    structures_lo: np.ndarray | None = None
    structures_hi: np.ndarray | None = None
    #: the selected structure at the input's fraction interval ends (:func:`fraction_variants`)
    variants: list[str] = field(default_factory=list)

    @property
    def centre(self) -> np.ndarray:
        """The interval's geometric centre per phase and axis."""
        return np.sqrt(self.lo * self.hi)

    def ratio(self, phase: int) -> float:
        """hi / lo of the widest axis of ``phase``."""
        return float(np.max(self.hi[phase] / self.lo[phase]))

    def undecided(self) -> list[int]:
        """Phases whose interval spans more than :data:`UNDECIDED_RATIO`."""
        return [p for p in range(self.lo.shape[0]) if self.ratio(p) > UNDECIDED_RATIO]

    def to_dict(self) -> dict:
        return {
            "twin_side": self.side,
            "structures": list(self.labels),
            "tau": {PHASE_NAMES[p]: {str(a): [float(self.lo[p, a]), float(self.hi[p, a]), float(self.selected[p, a])]
                                     for a in range(3)} for p in range(self.lo.shape[0])},
            "tau_structures": None if self.structures_lo is None else {
                PHASE_NAMES[p]: {str(a): [float(self.structures_lo[p, a]), float(self.structures_hi[p, a])]
                                 for a in range(3)} for p in range(self.lo.shape[0])},
            "fraction_variants": list(self.variants),
        }


def iter_tau_intervals(models: Mapping[str, Any], side: int | None = None, twins: int | None = None,
                       seed: int = 13579, variants: Mapping[str, Any] | None = None
                       ) -> Generator[JobProgress, None, TauIntervals]:
    """Twins of every model (the first one the selected structure) and the tau interval per phase and axis.

    A job: one event per twin (a stop acts within one twin's nine solves); returns :class:`TauIntervals`.
    ``side`` defaults to :data:`INTERVAL_SIDE`; ``twins`` per model to :data:`INTERVAL_TWINS` for the
    first and :data:`OTHER_TWINS` for the others. ``variants``: the selected structure at other input
    values (:func:`fraction_variants`), one twin each, in the interval but not counted as structures.
    """
    from .volume_score import iter_statistics

    if not models:
        raise ValueError("tau intervals need at least one model")
    side = int(side or INTERVAL_SIDE)
    counts = [int(twins or INTERVAL_TWINS)] + [int(twins or OTHER_TWINS)] * (len(models) - 1)
    labels = list(models)
    every = {**models, **(variants or {})}
    counts += [OTHER_TWINS] * (len(every) - len(models))
    runs = [(label, t) for label, count in zip(every, counts) for t in range(count)]
    n = len(runs)
    stats = yield from iter_statistics(
        [partial(every[label].generate, (side,) * 3, seed=seed + t) for label, t in runs], PHASE_NAMES,
        event=lambda k: JobProgress("plausible", k, n, f"3D twin {k + 1}/{n} ({side}^3): tau of every phase and "
                                                       f"axis: {runs[k][0]}"))
    values = {label: np.stack([np.exp(st["log_tau"]) for (lab, _t), st in zip(runs, stats) if lab == label])
              for label in every}  # (twins, phases, 3)
    yield JobProgress("plausible", n, n, "tau intervals of the plausible structures")
    lo, hi = _span(values, every)
    s_lo, s_hi = _span(values, models)  # the structures alone, without the fraction variants
    selected = np.exp(np.log(values[labels[0]]).mean(0))
    return TauIntervals(labels, values, lo, hi, selected, side, s_lo, s_hi, [v for v in every if v not in models])


def _span(values: Mapping[str, np.ndarray], models: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per phase and axis, the lowest and highest tau of the twins of ``models`` (``values[label]``:
    ``(twins, phases, 3)``), axes each model treats alike pooled."""
    from .measured import alike_axes

    lo = np.full((N_PHASES, 3), np.inf)
    hi = np.full((N_PHASES, 3), -np.inf)
    for label, model in models.items():
        arr = values[label]
        for group in alike_axes(model):
            pooled = arr[:, :, group]
            lo[:, group] = np.minimum(lo[:, group], pooled.min(axis=(0, 2))[:, None])
            hi[:, group] = np.maximum(hi[:, group], pooled.max(axis=(0, 2))[:, None])
    return lo, hi


def fraction_sd(rep: Any) -> np.ndarray | None:
    """SD of the calibration's (pooled) phase fractions from the input's representativeness, or None."""
    if rep is None or not getattr(rep, "pooled", None):
        return None
    sd = rep.pooled_sd() if len(rep.pooled) > 1 else rep.groups[rep.pooled[0]].sd
    return None if sd is None else np.asarray(sd, dtype=float)


def fraction_variants(model: Any, sd: np.ndarray | None, z: float = 1.96) -> dict[str, Any]:
    """The model with each phase's volume fraction moved by +-``z`` SD of the input's estimate (the other
    two rescaled in proportion, the model's one rule): near the percolation threshold tau depends on the
    fraction more than on anything else, and a 256^2 section fixes the active fraction only to +-0.06."""
    out: dict[str, Any] = {}
    if sd is None:
        return out
    for p, name in enumerate(PHASE_NAMES):
        phi = float(model.volume_fractions[name])
        for sign in (-1, 1):
            target = phi + sign * z * float(sd[p])
            if not 0.02 < target < 0.98 or abs(target - phi) < 1e-4:
                continue
            try:
                out[f"{name} fraction {target:.3f}"] = model.with_updates({f"{name}_fraction": target})
            except ValueError:  # outside the model's feasible range: that side is not simulated
                continue
    return out


@dataclass
class Plausibility:
    """What the input decides: the plausible structures, their tau intervals and the words for it."""

    members: list[dict]
    intervals: TauIntervals | None = None
    advice: list[str] = field(default_factory=list)
    measured: list[dict] = field(default_factory=list)

    @property
    def plausible(self) -> list[str]:
        return [m["label"] for m in self.members if m["plausible"]]

    def undecided(self) -> list[str]:
        return [PHASE_NAMES[p] for p in self.intervals.undecided()] if self.intervals is not None else []

    def lines(self) -> list[str]:
        """The report in words (CLI, dock, model file)."""
        n = len(self.plausible)
        out = [f"{n} structure(s) fit within the sampling noise of the score (of {len(self.members)} scored): "
               + "; ".join(self.plausible[:MAX_PLAUSIBLE]) + (" ..." if n > MAX_PLAUSIBLE else "")]
        iv = self.intervals
        if iv is None:
            return out
        axes = ("axis 0", "axis 1", "axis 2")
        for p in range(iv.lo.shape[0]):
            span = ", ".join(f"{ax} {_fmt(iv.lo[p, a])}-{_fmt(iv.hi[p, a])}" for a, ax in enumerate(axes))
            why = ""
            if iv.variants and iv.structures_lo is not None:
                why = (f" (structures alone {_fmt(float(iv.structures_lo[p].min()))}-"
                       f"{_fmt(float(iv.structures_hi[p].max()))}; the rest: the input's fraction interval)")
            out.append(f"tau of {PHASE_NAMES[p]} ({iv.side}^3 twins): {span}{why}")
        for p in iv.undecided():
            name = PHASE_NAMES[p]
            a = int(np.argmax(iv.hi[p] / iv.lo[p]))
            among = (f"among {len(iv.labels)} structures that fit equally well" if len(iv.labels) > 1
                     else "between realisations of the selected structure (near its percolation threshold)")
            if iv.structures_lo is not None and iv.variants and \
                    iv.structures_hi[p, a] / iv.structures_lo[p, a] <= UNDECIDED_RATIO:
                among = "within the 95 % interval of the phase fractions that the input's size allows"
            out.append(f"the input does not determine the connectivity of the {name} phase: tau "
                       f"{_fmt(iv.lo[p, a])}-{_fmt(iv.hi[p, a])} along axis {a} {among}")
        if iv.undecided() and self.advice:
            out.append("what would decide it: " + "; ".join(self.advice))
        for m in self.measured:
            out.append(f"measured tau of {m['phase']} along axis {m['axis']}: {_fmt(m['value'])}; twin "
                       f"{_fmt(m['twin'])} (interval {_fmt(m['lo'])}-{_fmt(m['hi'])})")
        return out

    def to_dict(self) -> dict:
        return {
            "members": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in m.items()} for m in self.members],
            "plausible": self.plausible,
            "intervals": self.intervals.to_dict() if self.intervals is not None else None,
            "undecided": self.undecided(),
            "advice": list(self.advice),
            "measured_tau": list(self.measured),
            "summary": self.lines(),
            "rules": {"bootstrap": BOOTSTRAP, "z": PLAUSIBLE_Z, "undecided_ratio": UNDECIDED_RATIO},
        }


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "nan"
    return f">={v:.0f}" if v >= 50 else f"{v:.3g}"


def advice_for(data: Any, measured: bool = False) -> list[str]:
    """What input would narrow an undecided tau, given what the user already gave."""
    out = []
    planes = set(getattr(data, "planes", ()))
    if not getattr(data, "volumes", None):
        if "axial" not in planes:
            out.append("an axial section (a cut along the stacking axis; then a cylindrical model)")
        out.append("more section area (the score noise falls as 1 / sqrt(area): 4x the area halves it)")
        if getattr(data, "coarse", None) is None:
            out.append("a coarse 3D volume of the same material (--coarse, e.g. a lab CT)")
    if not measured:
        out.append("a measured tortuosity (--measured-tau PHASE:AXIS=VALUE, e.g. from impedance)")
    return out
