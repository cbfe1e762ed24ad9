"""Model selection over the discrete structure of the excursion-set model (METHOD.md section 7, issue 12).

A candidate structure is a phase ordering (which phase takes a level set of F1, which one a level
set of F2 where F1 left room, which one the rest), each field's type (Gaussian, or chi-square(k)
with its level direction: lower or upper level set) and the correlation family. C_ij alone cannot
tell these apart: at the same volume fraction a chi2(1) upper level set and a chi2(3) lower one
have near-identical two-point functions but 3D tortuosity factors 5x apart (issue 12). What does
differ on a 2D section is the topology, the Euler characteristic per area relative to the squared
boundary length per area, ``chi / P^2`` (scale-free), and the statistics along lines.

So the ranking score uses held-out 2D statistics that the coverage fit did not use, computed the same
way on the data and on simulated sections of the fitted candidate (:func:`heldout_score`):

* ``topology``: mean over planes and phases of |chi/P^2 (model) - chi/P^2 (data)|;
* ``chord_w1``: chord-length distributions per phase and direction (Wasserstein-1 / data mean chord);
* ``lineal``: lineal-path functions per phase and direction (L1 distance / the data's L1 norm);
* ``boundary``: boundary length per area per phase pair (relative error).

``score`` is their weighted sum (:data:`~napari_assb_twin.calibrate.heldout.SCORE_WEIGHTS`; lower is better). The search is pruned so that it stays near 2 min on a CPU
(:func:`iter_select_model`, run to its end by :func:`select_model`):

1. *pre-ranking without fitting*: every ordering x F1 type x F2 type (6 x 13 x 13) of the sequential
   rule and every ordering x F1 type x parameter of the other rule families (interval sets, coating)
   is scored by the
   model's exact expected chi/P^2 per phase (:func:`~napari_assb_twin.stats.minkowski.expected_minkowski`,
   the Gaussian kinematic formula) at the data's volume fractions and 1/e lengths: the F1 phase's
   chi/P^2 does not depend on the length scale at all, the others only through the ratio of the two;
2. the best ``n_fit`` are fitted briefly (algorithm 1, exact C_ij) and scored on held-out statistics;
   together with the pre-ranking's favourite in the other correlation families, the best member of
   each other rule family, and (with ``noise``) of each first field of the sequential rule within the
   data's chi/P^2 noise of the best (:func:`~napari_assb_twin.calibrate.plausible.topology_noise`);
3. (``knob``, ``adhesion``; with 3D data) variants: the best brief fit's F1 with its connectivity knob
   fitted to measured transport, and (a fine volume) each structure to refine with the ``adhering``
   rule's split of the coat between the core's surface and the rest (:func:`adhering_variants`, scored
   like every candidate);
4. the best ``n_refine`` get a full fit and a score on more simulated sections;
5. (``noise``) the score's sampling noise and the plausible set (:mod:`.plausible`).

The data-side statistics are computed once per data set (:class:`HeldOutTargets`) and shared by all
candidates.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from ..events import JobProgress, relay, run_job
from ..fields.bridged import dof_label
from ..model import ThreePhaseModel, build_model
from ..model.rules import RULE_FAMILIES, get_rule_family
from ..model.structure import ModelStructure
from ..phases import N_PHASES, PHASE_NAMES
from ..stats.chords import chord_length_distributions
from ..stats.lineal import lineal_path
from ..stats.minkowski import chi_over_p2, expected_minkowski, minkowski_torch
from .data import DIRECTIONS, CalibrationData
from .engine import CalibrationConfig, Calibrator
# boundary_densities and chord_score stay part of this module's API (its __all__) since they moved
from .knob import iter_fit_knob, knob_phase
from .heldout import BOUNDARY_PAIRS, HeldOutTargets, boundary_densities, chord_score, heldout_score  # noqa: F401
from .losses import loss_to_rmse
from .volume_score import VOLUME_WEIGHTS
from .measured import MEASURED_WEIGHT, alike_axes, measured_term
from .plausible import data_units, topology_noise

__all__ = [
    "ADHESION_GRID",
    "Candidate",
    "FIELD_CHOICES",
    "HeldOutTargets",
    "SelectionResult",
    "adhering_variants",
    "boundary_densities",
    "chord_score",
    "default_candidates",
    "heldout_score",
    "iter_prerank",
    "iter_select_model",
    "measured_coverage",
    "prerank",
    "select_model",
]

FAMILY_CHOICES: dict[str, dict[str, float]] = {
    "gaussian": {},
    "exponential": {},
    "matern": {"nu": 1.5},
    "damped_wave": {},
}

#: Field types a phase's level set can take: (kind, dof, level). The Gaussian's upper and lower
#: level sets have the same law, so it appears once.
FIELD_CHOICES: tuple[tuple[str, int, str], ...] = (("gaussian", 1, "lower"),) + tuple(
    ("chi2", k, lev) for k in range(1, 7) for lev in ("lower", "upper")
)

#: Weight of the critic term (:func:`~napari_assb_twin.calibrate.critic_score.data_critic_distance`: 2 AUC - 1
#: of a small CNN telling the data's sections from the candidate's, 0..1) in the score; 0 = off. Off by
#: default (docs/benchmarks.md, "The critic as a selection statistic"): at weight 3 it chose structures with
#: better 3D tau on 3 of 3 sections of the inpainter volume, but it is saturated (0.93-0.97 for every
#: candidate) on the NMC 256^3 volume's z-sections and made one choice there worse; ~5 CPU-s per fit.
#: ``iter_select_model(critic_weight=3)`` turns it on.
CRITIC_WEIGHT: float = 0.0
#: With a fine volume, first fields within this many SDs of the data's chi/P^2 noise of the best are
#: fitted (one with sections alone): the volume's 3D terms decide between them, where sections can
#: only hint. Sections of the NMC half volume perpendicular to its axis 2 put the chi2(1) active
#: (the structure its 3D tau selects) 1.2 SD behind the chi2(2) one.
VOLUME_PRERANK_SDS: float = 2.0
#: Simulated 64^3 twins per fitted candidate for the 3D terms (one left the NMC 256^3 volume's
#: chi2(1) and chi2(4) actives within 0.07 of each other; two halve the twins' part of the scatter).
VOLUME_TWINS: int = 2


def _field_label(kind: str, dof: float, level: str) -> str:
    return "gauss" if kind == "gaussian" else f"chi2(k={dof_label(dof)}) {level}"


@dataclass(frozen=True)
class Candidate:
    """One discrete model structure: truncation rule with its parameters, ordering (the phases in
    the rule's roles), both fields' types and levels, correlation family.

    :attr:`structure` is the :class:`~napari_assb_twin.model.structure.ModelStructure` it stands for.
    """

    order: tuple[str, str, str] = ("active", "pore", "electrolyte")
    f1: str = "chi2"
    f1_dof: float = 3
    level1: str = "lower"
    family: str = "gaussian"
    f2: str = "gaussian"
    f2_dof: float = 1
    level2: str = "upper"
    rule: str = "sequential"
    rule_params: tuple[tuple[str, float], ...] = ()

    @property
    def label(self) -> str:
        a, b, c = self.order
        f1 = _field_label(self.f1, self.f1_dof, self.level1)
        f2 = _field_label(self.f2, self.f2_dof, self.level2)
        if self.rule == "sequential":
            return f"{a}={f1}(F1); {b}={f2}(F2); {c}=rest; {self.family}"
        roles = get_rule_family(self.rule).roles
        params = "".join(f" {k}={v:.2g}" for k, v in self.rule_params)
        return (f"{self.rule}{params}: {a}={roles[0]} {f1}(F1); {b}={roles[1]} with {f2}(F2) patches; "
                f"{c}={roles[2]}; {self.family}")

    def structure(self, variant: str = "lp-iso") -> ModelStructure:
        """The :class:`ModelStructure` of this candidate for ``variant``."""
        return ModelStructure(variant=variant, family=self.family, extras=FAMILY_CHOICES.get(self.family, {}),
                              rule=self.rule, rule_params=dict(self.rule_params), order=tuple(self.order),
                              levels=(self.level1, self.level2), f1=self.f1, f1_dof=self.f1_dof, f2=self.f2,
                              f2_dof=self.f2_dof)

    def config_updates(self) -> dict:
        """The :class:`CalibrationConfig` fields of this structure (all but the variant, axis and knots)."""
        d = self.structure().as_dict()
        for key in ("variant", "axis", "n_knots"):
            d.pop(key)
        return d

    @classmethod
    def from_choices(cls, order: Sequence[str], f1: tuple[str, int, str], f2: tuple[str, int, str],
                     family: str = "gaussian", rule: str = "sequential",
                     rule_params: Mapping[str, float] | None = None) -> "Candidate":
        return cls(order=tuple(order), f1=f1[0], f1_dof=f1[1], level1=f1[2], f2=f2[0], f2_dof=f2[1],
                   level2="upper" if f2[0] == "gaussian" else f2[2], family=family, rule=rule,
                   rule_params=tuple(sorted((rule_params or {}).items())))


#: Parameter values the search tries per rule family (the gradient fit keeps them fixed).
RULE_GRID: dict[str, tuple[dict[str, float], ...]] = {
    "sequential": ({},),
    "interval": ({"offset": 0.5},),
    "coating": ({"coverage": 0.5}, {"coverage": 0.75}, {"coverage": 1.0}),
    # not pre-ranked on its own (it would add a Gaussian-F2 member of every ordering): its members are
    # variants of the structures refined, with a fine volume (:func:`adhering_variants`)
    "adhering": (),
}

#: Adhesions of the :func:`adhering_variants` of each structure to refine (the fraction of the coat on the
#: core's surface; 0 is the sequential rule, 1 the coating rule). On the NMC 256^3 half volume the
#: sequential rule put the binder beside the pore (pore|active interface +78 %, active|binder -65 %).
ADHESION_GRID: tuple[float, ...] = (0.25, 0.5, 0.75)


def default_candidates(stage: str) -> list[Candidate]:
    """Candidates of one stage around the default structure: ``order``, ``field`` (F1's type),
    ``field2`` (F2's type), ``family``, ``rules`` (every registered rule family with the
    parameters of :data:`RULE_GRID`, every ordering and F1 type, Gaussian F2), or ``all``
    (every ordering x F1 type x F2 type of the sequential rule, plus ``rules``)."""
    base = Candidate()
    if stage == "order":
        return [replace(base, order=tuple(p)) for p in itertools.permutations(PHASE_NAMES)]
    if stage == "field":
        return [replace(base, f1=k, f1_dof=d, level1=lev) for k, d, lev in FIELD_CHOICES]
    if stage == "field2":
        return [Candidate.from_choices(base.order, (base.f1, base.f1_dof, base.level1), f) for f in FIELD_CHOICES]
    if stage == "family":
        return [replace(base, family=f) for f in FAMILY_CHOICES]
    if stage == "rules":
        return [Candidate.from_choices(o, f1, ("gaussian", 1, "upper"), rule=r, rule_params=params)
                for r in RULE_FAMILIES if r != "sequential" for params in RULE_GRID.get(r, ({},))
                for o in itertools.permutations(PHASE_NAMES) for f1 in FIELD_CHOICES]
    if stage == "all":
        return [Candidate.from_choices(o, f1, f2) for o in itertools.permutations(PHASE_NAMES)
                for f1 in FIELD_CHOICES for f2 in FIELD_CHOICES] + default_candidates("rules")
    raise ValueError(f"stage must be order, field, field2, family, rules or all, got {stage!r}")


def measured_coverage(targets: HeldOutTargets, core: int, coat: int) -> float | None:
    """The fraction of the core phase's boundary that it shares with the coat in the data's sections
    (pixel-pair counts of :func:`boundary_densities`, every plane and direction); None without a boundary."""
    shared = total = 0.0
    for stats in targets.planes.values():
        for b in stats["boundary"].values():
            for k, pair in enumerate(BOUNDARY_PAIRS):
                if core in pair:
                    total += float(b[k])
                    shared += float(b[k]) if coat in pair else 0.0
    return shared / total if total > 0 else None


def adhering_variants(cand: Candidate, targets: HeldOutTargets, fractions: Mapping[str, float]) -> list[Candidate]:
    """The ``adhering`` variants of a sequential or coating candidate: the same phases, fields and levels,
    the coat split between the core's surface and the rest of the room (:data:`ADHESION_GRID`), the
    coverage the data's sections measure (the core's boundary shared with the coat; at least what the
    fractions allow). Empty for other rules."""
    if cand.rule not in ("sequential", "coating"):
        return []
    order = tuple(PHASE_NAMES.index(p) for p in cand.order)
    kappa = measured_coverage(targets, order[0], order[1])
    if kappa is None:
        return []
    lo, _ = get_rule_family("adhering").bounds([float(fractions[p]) for p in PHASE_NAMES], order)["coverage"]
    if not math.isfinite(lo):  # the core fills the volume: no room for a coat
        return []
    kappa = min(1.0, max(round(kappa, 3), math.ceil(lo * 1000.0) / 1000.0))  # 3 digits, never below the bound
    return [replace(cand, rule="adhering", rule_params=(("adhesion", a), ("coverage", kappa))) for a in ADHESION_GRID]


# ------------------------------------------------------------------------------------------------
# pre-ranking by exact topology
# ------------------------------------------------------------------------------------------------
#: Candidates pre-ranked between two progress events (~0.2 s on a CPU: a Stop acts within that).
PRERANK_CHUNK = 50


def iter_prerank(
    data: CalibrationData,
    candidates: Sequence[Candidate],
    variant: str = "lp-iso",
    targets: HeldOutTargets | None = None,
) -> Generator[JobProgress, None, list[tuple[float, Candidate]]]:
    """Candidates sorted by the distance of their exact expected chi/P^2 per phase from the data's.

    No fitting: each candidate is built at the data's volume fractions with lengths from the data's
    1/e correlation lengths (F1 from its phase's, F2 from its phase's); chi/P^2 of the F1 phase
    does not depend on them, the other phases only through their ratio. Candidates whose structure
    the closed form cannot evaluate get ``inf``. Yields a ``"selection"`` event (``total`` 0) after
    every :data:`PRERANK_CHUNK` candidates, so that a front end can stop it; :func:`prerank` runs it.
    """
    if data is None:
        raise ValueError("pre-ranking needs the calibration data (their volume fractions and 1/e lengths)")
    targets = targets or HeldOutTargets.from_data(data)
    lengths = data.correlation_lengths()
    vf = data.volume_fractions
    lp = "lp-" + variant[3:] if variant.startswith("hp") else variant
    out = []
    for k, cand in enumerate(candidates):
        if k and k % PRERANK_CHUNK == 0:
            yield JobProgress("selection", 0, 0, f"pre-ranking by exact topology: {k}/{len(candidates)} structures")
        ls = []
        for ph, kind in zip(cand.order[:2], (cand.f1, cand.f2)):
            vals = [float(v[PHASE_NAMES.index(ph)]) for v in lengths.values()] or [6.0]
            # the calibrator's start rule: chi-square fields decorrelate faster (rho^2), start longer
            ls.append(max(0.7, float(np.mean(vals)) * (1.4 if kind == "chi2" else 1.0)))
        try:
            model = build_model(structure=cand.structure(lp), length_scales_px=ls, volume_fractions=vf)
            d = 0.0
            for plane, real in targets.planes.items():
                with torch.no_grad():
                    m = expected_minkowski(model, plane)
                chi = chi_over_p2(m).cpu().numpy()
                d += float(np.abs(chi - real["chi_p2"]).mean())
            d /= len(targets.planes)
        except (ValueError, RuntimeError, NotImplementedError):
            d = math.inf
        out.append((d if math.isfinite(d) else math.inf, cand))
    out.sort(key=lambda t: t[0])
    return out


def prerank(
    data: CalibrationData,
    candidates: Sequence[Candidate],
    variant: str = "lp-iso",
    targets: HeldOutTargets | None = None,
) -> list[tuple[float, Candidate]]:
    """:func:`iter_prerank` run to its end (its events dropped)."""
    return run_job(iter_prerank(data, candidates, variant, targets))


# ------------------------------------------------------------------------------------------------
# the search
# ------------------------------------------------------------------------------------------------
@dataclass
class SelectionResult:
    """Ranked candidates (best first) with their fitted models."""

    rows: list[dict] = field(default_factory=list)
    models: dict[str, ThreePhaseModel] = field(default_factory=dict)
    prerank: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0
    volume_targets: Any = None
    #: every scored candidate's score excess over the best, its bootstrap SD and whether it is plausible
    #: (:func:`~napari_assb_twin.calibrate.plausible.plausible_members`), best first
    plausible: list[dict] = field(default_factory=list)
    #: the connectivity knob's fit (:class:`~napari_assb_twin.calibrate.knob.KnobFit`) where 3D data were given
    knob: Any = None

    @property
    def plausible_labels(self) -> list[str]:
        return [m["label"] for m in self.plausible if m["plausible"]]

    @property
    def best(self) -> dict:
        return self.rows[0]

    @property
    def best_candidate(self) -> Candidate:
        return self.rows[0]["candidate"]

    @property
    def best_model(self) -> ThreePhaseModel:
        return self.models[self.rows[0]["label"]]

    def best_config(self, config: CalibrationConfig, **changes) -> CalibrationConfig:
        """``config`` with the winning structure (ordering, fields, levels, family) and ``changes``."""
        return replace(config, **changes, **self.best_candidate.config_updates())

    def table(self, top: int | None = None) -> str:
        """A plain-text ranking table."""
        three_d = any("transport" in r for r in self.rows)
        measured = any("measured" in r for r in self.rows)
        head = (f"{'rank':>4}  {'score':>7}  {'topology':>8}  {'chord W1':>8}  {'lineal':>7}  {'boundary':>8}  "
                + (f"{'3D tau':>7}  {'3D perc':>7}  {'3D topo':>7}  " if three_d else "")
                + (f"{'meas.tau':>8}  " if measured else "")
                + f"{'C rmse':>7}  {'steps':>5}  {'s':>5}  structure")
        lines = [head, "-" * len(head)]
        for k, r in enumerate(self.rows[:top] if top else self.rows, 1):
            lines.append(
                f"{k:>4}  {r['score']:7.4f}  {r['topology']:8.4f}  {r['chord_w1']:8.4f}  {r['lineal']:7.4f}  "
                f"{r['boundary']:8.4f}  "
                + (f"{r.get('transport', math.nan):7.4f}  {r.get('percolation', math.nan):7.4f}  "
                   f"{r.get('topology3d', math.nan):7.4f}  " if three_d else "")
                + (f"{r.get('measured', math.nan):8.4f}  " if measured else "")
                + f"{r['coverage_rmse']:7.4f}  {r['iterations']:>5}  {r['seconds']:5.1f}  {r['label']}"
            )
        return "\n".join(lines)


def iter_select_model(
    data: CalibrationData,
    variant: str = "lp-iso",
    *,
    stages: Sequence[str] | None = None,
    candidates: Sequence[Candidate] | None = None,
    iterations: int = 300,
    short_iterations: int = 60,
    n_fit: int = 8,
    n_refine: int = 2,
    families: bool = True,
    seed: int = 0,
    device: str = "auto",
    config: CalibrationConfig | None = None,
    n_sections: int = 16,
    measured_tau: Sequence[Any] = (),
    noise: bool = True,
    critic_weight: float | None = None,
    knob: bool = True,
    adhesion: bool = True,
) -> Generator[JobProgress, None, SelectionResult]:
    """Choose the structure: pre-rank by exact topology, fit the best briefly, refine the top few.

    A job (:mod:`napari_assb_twin.events`): yields progress, returns the :class:`SelectionResult`.
    Closing it (a Stop button, Ctrl-C thrown in by :func:`~napari_assb_twin.events.run_job`)
    ends the search at the optimisation step it was reporting.

    Parameters
    ----------
    data
        Calibration sections.
    variant
        ``lp-iso`` or ``lp-cyl`` (selection works on low-parametric models; HP variants are fitted
        afterwards on the selected structure).
    stages
        Which candidates enter the pre-ranking: ``None`` = every ordering x F1 type x F2 type
        (:func:`default_candidates` ``"all"``); or stage names of :func:`default_candidates`.
    candidates
        An explicit list: every one is fitted with ``iterations`` steps and scored (no pruning).
    iterations, short_iterations
        Coverage-matching steps of the refined and of the brief fits.
    n_fit, n_refine
        How many pre-ranked candidates are fitted briefly, and how many of those are refined.
    families
        Also fit the pre-ranking's favourite with the other correlation families (brief fits).
    seed, device
        The fits' seed and torch device (same seed, same device: same ranking).
    config
        Base settings (batch, r_max, ...); structure fields are overwritten per candidate.
    n_sections
        Simulated sections per plane for the refined scores (half for the brief ones).
    measured_tau
        :class:`~napari_assb_twin.calibrate.measured.MeasuredTau` constraints: a term of the score
        (``measured``, weight :data:`~napari_assb_twin.calibrate.measured.MEASURED_WEIGHT`) from
        :data:`VOLUME_TWINS` twins of side 64 per candidate.
    noise
        Estimate the score's sampling noise and the plausible set at the end
        (:mod:`~napari_assb_twin.calibrate.plausible`; ``result.plausible``).
    knob
        Where 3D data are given (volumes or a coarse volume), fit the connectivity knob of the best
        brief fit's F1 to the measured transport (:mod:`.knob`) and refine that variant in its place.
    adhesion
        Where a fine 3D volume is given, fit and score the :func:`adhering_variants` of each structure to
        refine (sequential or coating) briefly; a structure's best variant is refined beside it when it
        scores better.
    critic_weight
        Weight of the critic term ``critic`` (a few seconds per fit on a CPU); ``None`` =
        :data:`CRITIC_WEIGHT`, 0 = off.

    Yields
    ------
    JobProgress
        Stage ``"selection"``: one before the pre-ranking (``total`` 0), one per optimisation step of
        a candidate fit (``data``: the calibrator's :class:`~napari_assb_twin.calibrate.engine.Progress`
        record; ``message``: ``"fit k/n, <step>: <structure>"``) and one after each fit (``data``: its
        ranking row; ``message``: score and structure). ``done`` / ``total`` count optimisation steps
        over the whole search; ``total`` is revised once the candidates to refine are known.
    """
    t_start = time.perf_counter()
    short_iterations = max(1, min(short_iterations, iterations))
    if variant.startswith("hp"):
        variant = "lp-" + variant[3:]
    base = replace(config or CalibrationConfig(), variant=variant, algorithm="coverage", iterations=iterations,
                   seed=seed, device=device, checkpoint_path=None, eval_every=max(1, iterations // 2))
    targets = HeldOutTargets.from_data(data)
    critic_w = CRITIC_WEIGHT if critic_weight is None else float(critic_weight)
    if critic_w:
        from .critic_score import check_critic_data

        check_critic_data(data)  # too small sections: the critic's message now, not after the first fit
    result = SelectionResult()
    vol_targets = None
    units = None  # the data's resampling units (plausible.data_units), measured once when needed
    if data.volumes or data.coarse is not None:
        from .volume_score import VolumeTargets, iter_volume_score

        yield JobProgress("selection", 0, 0, "3D connectivity and transport of the measured volume(s)")
        if data.volumes:
            vol_targets = yield from VolumeTargets.iter_from_volumes([v.data for v in data.volumes])
        else:  # a coarse volume: twins are coarse-grained the way it was made before comparing
            vol_targets = yield from VolumeTargets.iter_from_coarse(data.coarse)
        result.volume_targets = vol_targets
    done: dict[tuple[Candidate, int], dict] = {}
    count = {"steps": 0, "total": 0, "fits": 0, "n_fits": 0}  # progress over the whole search

    def plan(pairs: Sequence[tuple[Candidate, int]], estimate: tuple[int, int] = (0, 0)) -> None:
        """Set the planned totals: what has run, these (candidate, steps) fits, and an estimate."""
        todo = {p for p in pairs if p not in done}
        count["n_fits"] = count["fits"] + len(todo) + estimate[0]
        count["total"] = count["steps"] + sum(s for _, s in todo) + estimate[1]

    def fit(cands: Sequence[Candidate], steps: int, sections: int) -> Generator[JobProgress, None, list[dict]]:
        rows = []
        for cand in cands:
            if (cand, steps) in done:
                rows.append(done[(cand, steps)])
                continue
            t0 = time.perf_counter()
            cfg = replace(base, iterations=steps, eval_every=max(1, steps // 2), **cand.config_updates())
            cal = Calibrator(data, cfg)
            count["fits"] += 1
            count["total"] += cal.total - steps  # the plan counted ``steps``; the calibrator knows
            head = f"fit {count['fits']}/{count['n_fits']}"
            for rec in cal.run():
                count["steps"] += 1
                yield JobProgress("selection", count["steps"], count["total"], f"{head}, {rec.message}: {cand.label}",
                                  rec)
            model = cal.best_model
            sc = heldout_score(targets, model, n_sections=sections)
            if critic_w:  # the critic's separability of the data's sections from the candidate's
                from .critic_score import data_critic_distance  # noqa: PLC0415 (torch-heavy only when used)

                sc["critic"] = data_critic_distance(data, model, seed=seed)
                sc["score"] += critic_w * sc["critic"]
            if vol_targets is not None:
                v3 = yield from iter_volume_score(vol_targets, model, n_twins=VOLUME_TWINS)
                sc.update(v3)
                sc["score"] += sum(w * v3[k] for k, w in VOLUME_WEIGHTS.items())
            if measured_tau:
                sc["measured_twins"] = yield from relay(_measured_twins(model, sc, vol_targets), count["steps"],
                                                        count["total"])
                sc["measured"] = measured_term(measured_tau, sc["measured_twins"], alike_axes(model))
                sc["score"] += MEASURED_WEIGHT * sc["measured"]
            row = {"label": cand.label, "candidate": cand, **sc, "coverage_loss": cal.best_loss,
                   "coverage_rmse": loss_to_rmse(cal.best_loss), "seconds": time.perf_counter() - t0,
                   "iterations": steps, "params": model.interpretable()}
            done[(cand, steps)] = row
            result.models[cand.label] = model if steps == iterations or cand.label not in result.models \
                else result.models[cand.label]
            rows.append(row)
            yield JobProgress("selection", count["steps"], count["total"], f"{row['score']:.3f} {row['label']}", row)
        return rows

    def ranked(rows: Sequence[dict]) -> list[dict]:
        return sorted(rows, key=lambda r: (math.isnan(r["score"]), r["score"]))

    if candidates is not None:
        plan([(c, iterations) for c in candidates])
        rows = yield from fit(list(candidates), iterations, n_sections)
        result.rows = ranked(rows)
    else:
        pool = [c for s in (stages or ("all",)) for c in default_candidates(s)]
        pool = list(dict.fromkeys(pool))
        yield JobProgress("selection", 0, 0, f"pre-ranking {len(pool)} candidate structures by their exact topology")
        pre = yield from iter_prerank(data, pool, variant, targets)
        result.prerank = [(d, c.label) for d, c in pre]
        shortlist = [c for d, c in pre if math.isfinite(d)][:n_fit]
        for rule in RULE_FAMILIES:  # every rule family competes with its best pre-ranked member
            best = next((c for d, c in pre if math.isfinite(d) and c.rule == rule), None)
            if best is not None and best not in shortlist:
                shortlist.append(best)
        if noise and pre and math.isfinite(pre[0][0]):
            # every first field of the sequential rule (its phase, type, level) whose exact topology is
            # within one SD of the data's chi/P^2 noise of the best competes with its best member: one NMC
            # section pre-ranked chi2(1) 17th (0.014 off, noise 0.016), and the 8 fitted were all
            # chi2(k >= 2) with a third of the measured tau (2 SD let 19 structures in, coatings included)
            units = data_units(data)
            tol = topology_noise(units) * (VOLUME_PRERANK_SDS if data.volumes else 1.0)
            firsts: dict[tuple, Candidate] = {}
            for d, c in pre:
                if math.isfinite(d) and d <= pre[0][0] + tol and c.rule == "sequential":
                    firsts.setdefault((c.order[0], c.f1, c.f1_dof, c.level1), c)
            shortlist += [c for c in firsts.values() if c not in shortlist]
        if families and shortlist:  # the other correlation families of the topology's favourite
            shortlist += [replace(shortlist[0], family=f) for f in FAMILY_CHOICES if f != shortlist[0].family]
        n_more = 0 if short_iterations == iterations else min(n_refine, len(set(shortlist)))
        plan([(c, short_iterations) for c in shortlist], (n_more, n_more * iterations))
        brief = ranked((yield from fit(shortlist, short_iterations, max(4, n_sections // 2))))
        refine = [r["candidate"] for r in brief[:n_refine]]
        best = brief[0]["candidate"] if brief and math.isfinite(brief[0]["score"]) else None
        phase = knob_phase(best.rule, best.order, best.f1, best.f1_dof) if best is not None else None
        if vol_targets is not None and knob and phase is not None:
            # the connectivity knob fitted to the measured transport (calibrate/knob.py): no structure of
            # the family matched both the sections' topology and the volume's connectivity of the NMC
            # phase (issue 18); the fitted variant takes the best structure's place in the refinement
            yield JobProgress("selection", count["steps"], count["total"],
                              f"connectivity knob of the {phase} phase: {brief[0]['label']}")
            result.knob = yield from relay(iter_fit_knob(vol_targets, result.models[brief[0]["label"]], phase, seed),
                                           count["steps"], count["total"])
            yield JobProgress("selection", count["steps"], count["total"], result.knob.line())
            tuned = replace(best, f1_dof=result.knob.dof)
            if tuned != best:
                plan([(tuned, short_iterations)], (n_more, n_more * iterations))
                brief = ranked(brief + (yield from fit([tuned], short_iterations, max(4, n_sections // 2))))
                refine = [tuned] + [c for c in refine if c != best][: max(0, n_refine - 1)]
        if adhesion and refine and vol_targets is not None and vol_targets.coarse is None:
            # where the coat sits: on the core's surface, in the rest of the room, or split (rules.py's
            # adhering family). Only with a fine volume, whose 3D terms judge the coat's own transport: the
            # adhesion moves it (NMC binder tau 6.7 -> 13.6 from adhesion 0.6 to 0.9), sections do not see
            # that, and from sections alone the boundary term took variants whose binder tau was +21..+59 %
            # (the NMC section pair) and tipped a coin-toss between active structures (one NMC section);
            # a coarse volume merges the coat away. Every structure to refine gets its variants (briefly
            # fitted, the same score): they move the boundary term far more than the field types differ,
            # so variants of the first alone would carry it past the others
            own = {lead: adhering_variants(lead, targets, data.volume_fractions) for lead in refine}
            variants = [v for vs in own.values() for v in vs]
            if variants:
                plan([(c, short_iterations) for c in variants], (n_more, n_more * iterations))
                brief = ranked(brief + (yield from fit(variants, short_iterations, max(4, n_sections // 2))))
                score = {r["candidate"]: r["score"] for r in brief}
                # a lead's best variant is refined beside it where it scores better: a brief score decides
                # between them only within its noise (a sequential twin's adhesion-0.25 variant briefly
                # scored 0.001 better than the truth), and adhesion 0 is the lead itself
                best_of = {lead: min(vs, key=lambda c: score.get(c, math.inf)) for lead, vs in own.items() if vs}
                refine = refine + [v for lead, v in best_of.items()
                                   if score.get(v, math.inf) < score.get(lead, math.inf)]
        plan([(c, iterations) for c in refine])
        rows = yield from fit(refine, iterations, n_sections)
        # the brief fits of candidates that were not refined stay in the table, below the refined ones
        refined = {r["label"] for r in rows}
        result.rows = ranked(rows) + [r for r in brief if r["label"] not in refined]
    if noise and result.rows:
        yield JobProgress("selection", count["steps"], count["total"],
                          "sampling noise of the score: which structures fit equally well")
        result.plausible = yield from relay(_iter_plausible(data, result, vol_targets, measured_tau, seed, units),
                                            count["steps"], count["total"])
    result.seconds = time.perf_counter() - t_start
    return result


def _measured_twins(model: ThreePhaseModel, sc: dict, vol_targets: Any) -> Generator[JobProgress, None, list[dict]]:
    """Twins' statistics for the measured-tau term: those of the 3D terms when they are of the phases
    (a coarse volume's twins are of its merged groups), else :data:`VOLUME_TWINS` new ones of side 64."""
    from .volume_score import VOLUME_CROP, iter_statistics

    if vol_targets is not None and vol_targets.coarse is None:
        return sc["twins"]
    return (yield from iter_statistics([partial(model.generate, (VOLUME_CROP,) * 3, seed=24680 + k)
                                        for k in range(VOLUME_TWINS)], PHASE_NAMES))


def _iter_plausible(data: CalibrationData, result: SelectionResult, vol_targets: Any, measured_tau: Sequence[Any],
                    seed: int, units: Any = None) -> Generator[JobProgress, None, list[dict]]:
    """The plausible set of a finished search (:mod:`.plausible`): paired bootstrap of every ranked
    candidate's score, the 3D and measured-tau terms resampled with their crops and twins."""
    from .plausible import data_units, plausible_members, score_replicates

    models = {r["label"]: result.models[r["label"]] for r in result.rows if r["label"] in result.models}
    extra = {}
    for r in result.rows:
        parts = []
        if vol_targets is not None and "twins" in r:
            parts.append(("volume", r["twins"]))
        if measured_tau and "measured_twins" in r:
            parts.append(("measured", r["measured_twins"]))
        extra[r["label"]] = parts
    reps = yield from score_replicates(units or data_units(data), models, seed=seed,
                                       crops=vol_targets.crops if vol_targets is not None else None,
                                       extra=extra, measured_tau=measured_tau)
    return plausible_members(reps, result.rows[0]["label"])


def select_model(
    data: CalibrationData,
    variant: str = "lp-iso",
    *,
    progress: Callable[[JobProgress], None] | None = None,
    **options: Any,
) -> SelectionResult:
    """:func:`iter_select_model` run to its end (``options``: its keyword arguments), passing each
    event to ``progress``; returns the :class:`SelectionResult`."""
    return run_job(iter_select_model(data, variant, **options), progress)
