"""Model selection over the discrete structure of the excursion-set model (METHOD.md section 7).

Each candidate structure (phase ordering, F1 type and chi-square degrees of freedom with its level
direction, correlation family) is fitted with algorithm 1 (coverage matching) and
ranked by 2D statistics that the fit did NOT use: chord-length distributions per phase and
direction (Wasserstein-1 distance relative to the data's mean chord length) and boundary length per
area per phase pair (relative error). The lower the score, the better.

With the exact (analytic) coverage estimator a fit takes about a second, so each candidate gets a
full fit and the held-out score averages 16 simulated sections per plane. The search is staged
(about 20 fits instead of the full product of 6 orderings x 13 field types x 4 families): first the phase ordering (default field
types), then the type / k / level of F1 for the best ordering, then the correlation family.
F2 stays Gaussian, whose upper and lower level sets have the same law, so its level is irrelevant.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..model import ThreePhaseModel
from ..phases import N_PHASES, PHASE_NAMES
from ..stats.chords import chord_length_distributions
from .data import DIRECTIONS, CalibrationData
from .engine import CalibrationConfig, Calibrator
from .losses import loss_to_rmse

__all__ = ["Candidate", "SelectionResult", "boundary_densities", "chord_score", "default_candidates", "select_model"]

FAMILY_CHOICES: dict[str, dict[str, float]] = {
    "gaussian": {},
    "exponential": {},
    "matern": {"nu": 1.5},
    "damped_wave": {},
}


@dataclass(frozen=True)
class Candidate:
    """One discrete model structure."""

    order: tuple[str, str, str] = ("active", "pore", "electrolyte")
    f1: str = "chi2"
    f1_dof: int = 3
    level1: str = "lower"
    family: str = "gaussian"

    @property
    def label(self) -> str:
        f1 = "gauss" if self.f1 == "gaussian" else f"chi2(k={self.f1_dof}) {self.level1}"
        a, b, c = self.order
        return f"{a}={f1}(F1); {b}=gauss(F2); {c}=rest; {self.family}"

    def config_updates(self) -> dict:
        return dict(
            order=tuple(self.order), f1=self.f1, f1_dof=self.f1_dof if self.f1 == "chi2" else 1,
            levels=(self.level1, "upper"), family=self.family, extras=dict(FAMILY_CHOICES.get(self.family, {})),
        )


def default_candidates(stage: str) -> list[Candidate]:
    """Candidates of one stage of the staged search (``order``, ``field`` or ``family``) around the
    default structure; :func:`select_model` re-centres later stages on the winner of earlier ones."""
    base = Candidate()
    if stage == "order":
        return [replace(base, order=tuple(p)) for p in itertools.permutations(PHASE_NAMES)]
    if stage == "field":
        out = [replace(base, f1="gaussian", f1_dof=1, level1="lower")]
        out += [replace(base, f1="chi2", f1_dof=k, level1=lev) for k in range(1, 7) for lev in ("lower", "upper")]
        return out
    if stage == "family":
        return [replace(base, family=f) for f in FAMILY_CHOICES]
    raise ValueError(f"stage must be order, field or family, got {stage!r}")


# ------------------------------------------------------------------------------------------------
# held-out 2D statistics
# ------------------------------------------------------------------------------------------------
def boundary_densities(image: np.ndarray, axis: int) -> np.ndarray:
    """Boundary length per area between each phase pair along one image axis: the number of
    neighbouring pixel pairs (i, j), i < j, per pixel pair (3 values, order (0,1), (0,2), (1,2))."""
    a = np.moveaxis(np.asarray(image), axis, 0)
    x, y = a[:-1], a[1:]
    out = np.zeros(3)
    for k, (i, j) in enumerate(((0, 1), (0, 2), (1, 2))):
        out[k] = np.count_nonzero(((x == i) & (y == j)) | ((x == j) & (y == i))) / x.size
    return out


def _stats(images: Sequence[np.ndarray], plane: str) -> dict:
    """Chord lengths and boundary densities per (direction, phase) pooled over images of one plane."""
    chords: dict[tuple[str, int], list[np.ndarray]] = {}
    bound: dict[str, list[np.ndarray]] = {}
    for im in images:
        res = chord_length_distributions(np.asarray(im), n_phases=N_PHASES)
        for axis, direction in enumerate(DIRECTIONS[plane]):
            for p in range(N_PHASES):
                chords.setdefault((direction, p), []).append(res.lengths[(p, axis)])
            bound.setdefault(direction, []).append(boundary_densities(im, axis))
    return {
        "chords": {k: np.concatenate(v) for k, v in chords.items()},
        "boundary": {k: np.mean(v, axis=0) for k, v in bound.items()},
    }


def _w1(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def chord_score(
    data: CalibrationData, model: ThreePhaseModel, n_sections: int = 8, seed: int = 12345
) -> dict[str, float]:
    """Held-out score of ``model`` against ``data`` (lower is better).

    For each plane of the data, ``n_sections`` hard sections of the data's size are simulated
    (twice as large and cropped, so border-censored chords are treated as in the data).

    Returns
    -------
    dict
        ``chord_w1``: mean over (plane, direction, phase) of W1(chord lengths) / data mean chord;
        ``boundary``: mean relative error of boundary length per area over planes, directions and
        phase pairs; ``score``: their sum.
    """
    g = torch.Generator(device=model.device)
    g.manual_seed(seed)
    chord_terms, bound_terms = [], []
    for plane in data.planes:
        imgs = data.images(plane)
        real = _stats(imgs, plane)
        h, w = imgs[0].shape
        size = (min(2 * h, 512), min(2 * w, 512))
        with torch.no_grad():
            sims = model.sample_sections(size, plane, batch=n_sections, generator=g).cpu().numpy()
        sims = [s[: min(h, size[0]), : min(w, size[1])] for s in sims]
        fake = _stats(sims, plane)
        for key, lens in real["chords"].items():
            if lens.size < 5:
                continue
            d = _w1(lens.astype(float), fake["chords"][key].astype(float))
            chord_terms.append(d / max(float(lens.mean()), 1e-9) if math.isfinite(d) else 2.0)
        for key, b in real["boundary"].items():
            fb = fake["boundary"][key]
            for k in range(3):
                if b[k] > 0:
                    bound_terms.append(abs(fb[k] - b[k]) / b[k])
    cw = float(np.mean(chord_terms)) if chord_terms else float("nan")
    bd = float(np.mean(bound_terms)) if bound_terms else float("nan")
    return {"chord_w1": cw, "boundary": bd, "score": cw + bd}


# ------------------------------------------------------------------------------------------------
# the search
# ------------------------------------------------------------------------------------------------
@dataclass
class SelectionResult:
    """Ranked candidates (best first) with their fitted models."""

    rows: list[dict] = field(default_factory=list)
    models: dict[str, ThreePhaseModel] = field(default_factory=dict)

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
        head = f"{'rank':>4}  {'score':>7}  {'chord W1':>8}  {'boundary':>8}  {'C rmse':>7}  {'s':>5}  structure"
        lines = [head, "-" * len(head)]
        for k, r in enumerate(self.rows[:top] if top else self.rows, 1):
            lines.append(
                f"{k:>4}  {r['score']:7.4f}  {r['chord_w1']:8.4f}  {r['boundary']:8.4f}  "
                f"{r['coverage_rmse']:7.4f}  {r['seconds']:5.1f}  {r['label']}"
            )
        return "\n".join(lines)


def select_model(
    data: CalibrationData,
    variant: str = "lp-iso",
    *,
    stages: Sequence[str] = ("order", "field", "family"),
    candidates: Sequence[Candidate] | None = None,
    iterations: int = 300,
    seed: int = 0,
    device: str = "auto",
    config: CalibrationConfig | None = None,
    n_sections: int = 16,
    callback: Callable[[int, int, dict], None] | None = None,
) -> SelectionResult:
    """Fit candidate structures with short coverage matching and rank them by :func:`chord_score`.

    Parameters
    ----------
    data
        Calibration sections.
    variant
        ``lp-iso`` or ``lp-cyl`` (selection works on low-parametric models; HP variants are fitted
        afterwards on the selected structure).
    stages
        The staged search (see module docstring); ignored when ``candidates`` is given.
    candidates
        An explicit list of structures to compare instead of the staged search.
    iterations
        Coverage-matching steps per candidate.
    config
        Base settings (batch, r_max, ...); structure fields are overwritten per candidate.
    callback
        Called as ``callback(done, total, row)`` after each fit (for progress bars).
    """
    if variant.startswith("hp"):
        variant = "lp-" + variant[3:]
    base = replace(config or CalibrationConfig(), variant=variant, algorithm="coverage", iterations=iterations,
                   seed=seed, device=device, checkpoint_path=None, eval_every=max(1, iterations // 2))
    result = SelectionResult()
    done: dict[Candidate, dict] = {}

    def fit(cands: Sequence[Candidate], total: int) -> None:
        for cand in cands:
            if cand in done:
                continue
            t0 = time.perf_counter()
            cal = Calibrator(data, replace(base, **cand.config_updates()))
            model = cal.run_all()
            sc = chord_score(data, model, n_sections=n_sections)
            row = {
                "label": cand.label,
                "candidate": cand,
                **sc,
                "coverage_loss": cal.best_loss,
                "coverage_rmse": loss_to_rmse(cal.best_loss),
                "seconds": time.perf_counter() - t0,
                "params": model.interpretable(),
            }
            done[cand] = row
            result.models[cand.label] = model
            if callback is not None:
                callback(len(done), total, row)

    def ranked() -> list[dict]:
        return sorted(done.values(), key=lambda r: (math.isnan(r["score"]), r["score"]))

    if candidates is not None:
        fit(list(candidates), len(candidates))
    else:
        plan = {s: default_candidates(s) for s in stages}
        total = len(set(itertools.chain.from_iterable(plan.values())))
        centre = Candidate()
        for s in stages:
            if s == "order":
                cands = [replace(centre, order=c.order) for c in plan[s]]
            elif s == "field":
                cands = [replace(centre, f1=c.f1, f1_dof=c.f1_dof, level1=c.level1) for c in plan[s]]
            else:
                cands = [replace(centre, family=c.family) for c in plan[s]]
            fit(cands, total)
            centre = ranked()[0]["candidate"]
    result.rows = ranked()
    return result
