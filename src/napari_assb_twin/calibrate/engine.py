"""The one training engine behind the CLI, the napari widget and batch jobs.

:class:`Calibrator.run` is a generator of :class:`Progress` records, one per model update (the use case
:func:`napari_assb_twin.jobs.calibrate.calibrate` carries each in a ``JobProgress``), so any front end
can show progress, stop at any step by closing the generator (the one stop mechanism) and keep the
best parameters so far (:attr:`Calibrator.best_model`). Checkpoints hold everything needed to
resume bit for bit: every random draw of iteration ``i`` of stage ``s`` comes from a generator seeded
with ``(seed, s, i)``, so no RNG state has to be carried and a resumed run makes exactly the draws an
uninterrupted one would.

A run is a list of stages:

* ``coverage`` (algorithm 1): Adam on the model's unconstrained parameters against the weighted
  squared distance of C_ij: data vs the model's exact expected C_ij (default ``estimator="analytic"``)
  or vs the batch mean over directly simulated periodic sections (``estimator="sampled"``);
* ``adversarial`` (algorithm 2): a 2D discriminator per plane on P x P crops, WGAN-GP (or BCE), the
  model fed to it through straight-through thresholds so fakes are hard like the data;
* ``combined`` (algorithm 3): adversarial + ``alpha`` x coverage loss, started from algorithm 1;
  ``balance="gradient"`` divides each term's gradient by its running norm first, and
  ``adv_pick`` decides which model the stage returns (see :class:`CalibrationConfig`).

High-parametric variants first fit the low-parametric model (stage ``coverage-lp``) and start from
its spectral density (:meth:`SpectralCovariance.from_covariance`).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from ..devices import resolve_device
from ..fields.covariance import ParametricCovariance, SpectralCovariance
from ..io.atomic import atomic_path
from ..model import ThreePhaseModel, build_model, model_from_dict, model_to_dict
from ..model.excursion import FieldModel
from ..model.structure import ModelStructure
from ..phases import N_PHASES, PHASE_NAMES
from ..stats.minkowski import expected_minkowski_planes, minkowski_correction, minkowski_loss
from .data import CalibrationData
from .discriminator import ADV_LOSSES, Discriminator, critic_loss, generator_loss, random_crops
from .losses import (
    coverage_loss,
    expected_coverage,
    loss_to_rmse,
    model_coverage,
    model_coverage_halves,
    simulate_sections,
    targets_to_tensors,
)

__all__ = ["ALGORITHMS", "VARIANTS", "CalibrationConfig", "Calibrator", "Progress"]

from ..options import (
    ADV_PICKS,
    ALGORITHMS,
    BALANCES,
    ESTIMATORS,
    MINKOWSKI_REFRESH,
    MINKOWSKI_WEIGHT,
    THRESHOLDS,
    VARIANTS,
    WEIGHTINGS,
)
CHECKPOINT_FORMAT = "assb-twin-calibration-checkpoint"
#: Peak bytes per simulated section pixel and unit of ``batch`` with ``estimator="sampled"`` (the training
#: batch with its graph plus the 4x evaluation batch): measured 6.6 MB per section of 128^2 (peak RSS,
#: batch 8 vs 64, CPU, 2026-12-07).
SAMPLED_BYTES_PER_PX: int = 400
#: Most model updates of one stage: 10^6 steps take ~20 min analytic (1 ms each) and ~10 days adversarial.
MAX_ITERATIONS: int = 1_000_000


@dataclass
class Progress:
    """One training step.

    ``losses`` holds the losses of this step (``coverage``: training loss of this batch, 1 = RMS
    deviation 0.01; ``coverage_eval``: hard-threshold loss on the fixed evaluation batch when it was
    evaluated; ``critic``, ``wasserstein``, ``gp``, ``generator`` for adversarial stages);
    ``params`` the model's interpretable parameters after the step.
    """

    iteration: int
    total: int
    losses: dict[str, float]
    params: dict[str, float]
    elapsed_s: float
    best_loss: float
    phase: str
    message: str = ""


_STRUCTURE = ModelStructure()  # the structure defaults, spelled once


@dataclass
class CalibrationConfig:
    """Settings of a calibration run (defaults suit LP models on 128-512 px images on a CPU).

    Attributes
    ----------
    variant : ``lp-iso`` | ``lp-cyl`` | ``hp-iso`` | ``hp-cyl``
    algorithm : ``coverage`` (1) | ``adversarial`` (2) | ``combined`` (3)
    iterations : model updates of the main stage
    pre_iterations : coverage updates before ``combined`` and of the LP fit before HP stages
        (default: ``iterations`` for coverage, else 200)
    seed, device : randomness and ``auto | cpu | cuda | cuda:N | mps``
    r_max : largest distance of the coverage loss in px (default: from the data, 16..64)
    lr, lr_final : Adam step on unconstrained (log) parameters, cosine-decayed to ``lr * lr_final``
    batch, section_size : simulated sections per plane per step and their side (default 128, 192
        or 256 px for r_max up to 32, 48, 64)
    estimator : how coverage stages get the model's C_ij: ``analytic`` (exact expectation from the
        covariances, :meth:`~napari_assb_twin.model.ThreePhaseModel.expected_coverage`; no noise,
        milliseconds per step) or ``sampled`` (batch of simulated sections, the settings below)
    weighting : ``variance`` (each data C_ij(r) weighted by the inverse of its value, about its
        inverse sampling variance) or ``uniform``; see :func:`~napari_assb_twin.calibrate.losses.targets_to_tensors`
    threshold : ``soft`` (sigmoid, temperature annealed ``temperature_start`` -> ``temperature``)
        or ``st`` (straight-through) for the coverage stages; ``st_temperature`` is the backward
        sigmoid width of straight-through sections (also those fed to the discriminator)
    family, f1, f1_dof, f2, f2_dof, levels, order, rule, rule_params, extras, axis, n_knots :
        the model structure, the fields of :class:`~napari_assb_twin.model.structure.ModelStructure`
        (same names and defaults; :attr:`structure` gives it, :meth:`with_structure` sets it)
    init_length_scales : start lengths in px per field (default: from the data's 1/e lengths)
    adv_loss, patch, disc_width, n_critic, gp_lambda, disc_lr, disc_batch, alpha : adversarial
        settings (``disc_width`` 64 = 64-128-256-512 feature maps; ``alpha`` weighs the coverage
        loss in ``combined``)
    balance, balance_decay : how ``combined`` adds its two terms. ``none``: the gradient of
        ``generator + alpha * coverage``; the exact coverage gradient is then typically orders of
        magnitude larger than the critic's and the stage barely moves (docs/benchmarks.md,
        "Adversarial term"). ``gradient``: each term's gradient w.r.t. the model parameters is
        divided by an exponential moving average (decay ``balance_decay``, detached) of its own
        norm, so ``alpha`` is the ratio of the coverage term's contribution to the critic's
    adv_pick : the model an ``adversarial`` or ``combined`` stage ends with: ``average`` (default:
        mean of the unconstrained parameters over the stage's final ``average_last`` fraction, which
        smooths the critic's jitter), ``last``, or ``coverage`` (the lowest coverage loss seen in the
        stage, the rule before; in ``combined`` that is nearly always one of its first steps, i.e.
        algorithm 1's model)
    minkowski : weight of the 2D Minkowski term added to the coverage loss in every coverage and
        combined stage (:func:`~napari_assb_twin.stats.minkowski.minkowski_loss`: perimeter and Euler
        densities of every phase on the data's sections vs the model's exact expectation plus a
        lattice correction refreshed every ``MINKOWSKI_REFRESH`` steps; 1 = "within the data's
        sampling noise", as a coverage loss of 1 is RMS 0.01). It carries the topology and surface
        that C_ij leave open (docs/benchmarks.md, "Fidelity"); the best model is the one with the
        lowest coverage + minkowski loss. 0 switches it off.
    decoupled : differentiate ``(C_1 - C_data)(C_2 - C_data)`` over two independent half
        batches instead of the square of one (unbiased in expectation, see
        :func:`~napari_assb_twin.calibrate.losses.coverage_loss`)
    eval_every, eval_batch : how often / on how many sections (default ``4 * batch``) the
        hard-threshold coverage loss that selects the best model is evaluated (fixed noise, so
        evaluations compare like with like)
    average_last : coverage stages also evaluate the average of the unconstrained parameters over
        this final fraction of the stage (Polyak averaging removes most of the SGD jitter) as a
        candidate for the best model
    checkpoint_path, checkpoint_every : automatic checkpoints for batch jobs (0 = only on request)
    """

    variant: str = "lp-iso"
    algorithm: str = "coverage"
    iterations: int = 300
    seed: int = 0
    device: str = "auto"
    r_max: int | None = None
    lr: float | None = None
    lr_final: float = 0.05
    batch: int = 4
    section_size: int | None = None
    threshold: str = "st"
    estimator: str = "analytic"
    weighting: str = "variance"
    decoupled: bool = True
    temperature: float = 0.02
    temperature_start: float = 0.1
    st_temperature: float = 0.1
    family: str = _STRUCTURE.family
    f1: str = _STRUCTURE.f1
    f1_dof: int = _STRUCTURE.f1_dof
    f2: str = _STRUCTURE.f2
    f2_dof: int = _STRUCTURE.f2_dof
    levels: tuple[str, str] = _STRUCTURE.levels
    order: tuple[str, str, str] = _STRUCTURE.order
    rule: str = _STRUCTURE.rule
    rule_params: dict[str, float] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)
    axis: int = _STRUCTURE.axis
    n_knots: int = _STRUCTURE.n_knots
    init_length_scales: tuple | None = None
    pre_iterations: int | None = None
    adv_loss: str = "wgan-gp"
    patch: int = 64
    disc_width: int = 64
    n_critic: int = 5
    gp_lambda: float = 10.0
    disc_lr: float = 1e-4
    disc_batch: int = 8
    alpha: float = 1.0
    balance: str = "none"
    balance_decay: float = 0.9
    adv_pick: str = "average"
    minkowski: float = MINKOWSKI_WEIGHT
    eval_every: int = 10
    average_last: float = 0.25
    eval_batch: int | None = None
    checkpoint_path: str | None = None
    checkpoint_every: int = 0

    def validate(self) -> "CalibrationConfig":
        """Check every choice; raises ValueError naming the bad setting and the allowed values."""

        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"calibration setting {name}={getattr(self, name)!r} is invalid: {allowed}")

        if self.variant not in VARIANTS:
            raise bad("variant", f"use one of {', '.join(VARIANTS)}")
        if self.algorithm not in ALGORITHMS:
            raise bad("algorithm", f"use one of {', '.join(ALGORITHMS)}")
        if self.threshold not in THRESHOLDS:
            raise bad("threshold", f"use one of {', '.join(THRESHOLDS)}")
        if self.estimator not in ESTIMATORS:
            raise bad("estimator", f"use one of {', '.join(ESTIMATORS)}")
        if self.weighting not in WEIGHTINGS:
            raise bad("weighting", f"use one of {', '.join(WEIGHTINGS)}")
        if self.adv_loss not in ADV_LOSSES:
            raise bad("adv_loss", f"use one of {', '.join(ADV_LOSSES)}")
        if self.balance not in BALANCES:
            raise bad("balance", f"use one of {', '.join(BALANCES)}")
        if self.adv_pick not in ADV_PICKS:
            raise bad("adv_pick", f"use one of {', '.join(ADV_PICKS)}")
        if not (isinstance(self.balance_decay, (int, float)) and 0 <= self.balance_decay < 1):
            raise bad("balance_decay", "must be a number in [0, 1)")
        try:
            self.structure  # noqa: B018 - validates variant, fields, rule, order, levels
        except (ValueError, TypeError) as exc:
            raise ValueError(f"calibration settings: invalid model structure: {exc}") from None
        for name in ("iterations", "batch", "n_critic", "disc_batch", "disc_width", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise bad(name, "must be a positive integer")
        if self.pre_iterations is not None and (not isinstance(self.pre_iterations, (int, np.integer)) or self.pre_iterations < 0):
            raise bad("pre_iterations", "must be a non-negative integer or None")
        from ..checks import check_seed

        check_seed(self.seed, "calibration setting seed")  # the one seed check (API and CLI)
        for name in ("iterations", "pre_iterations"):
            n = getattr(self, name) or 0
            if n > MAX_ITERATIONS:  # a typo (1e12) would run for years before anyone noticed
                raise bad(name, f"at most {MAX_ITERATIONS:,} steps: a step takes ~1 ms (analytic coverage) to ~1 s "
                                f"(adversarial) on a CPU, so {n:,} steps would take {n * 1e-3 / 86400:,.0f} to "
                                f"{n / 86400:,.0f} days")
        if self.patch < 16 or self.patch % 16:
            raise bad("patch", "must be a multiple of 16 and >= 16")
        for name in ("lr_final", "temperature", "temperature_start", "st_temperature", "gp_lambda", "disc_lr", "alpha",
                     "minkowski"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0) \
                    or (name not in ("alpha", "minkowski") and v == 0):
                raise bad(name, "must be a positive finite number")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "must be a positive finite number (or None for the default)")
        if self.r_max is not None and (isinstance(self.r_max, bool) or not isinstance(self.r_max, (int, np.integer)) or self.r_max < 1):
            raise bad("r_max", "must be a positive integer number of px (or None for automatic)")
        if self.section_size is not None and (self.section_size < 16):
            raise bad("section_size", "must be >= 16 px (or None for automatic)")
        if self.checkpoint_every < 0:
            raise bad("checkpoint_every", "must be >= 0")
        resolve_device(self.device)  # raises a clear error for unknown or absent devices
        return self

    @property
    def structure(self) -> ModelStructure:
        """The model structure these settings describe (validated)."""
        return ModelStructure.from_mapping(asdict(self))

    def with_structure(self, structure: ModelStructure) -> "CalibrationConfig":
        """A copy whose structure fields are those of ``structure``."""
        return replace(self, **structure.as_dict())

    @property
    def is_hp(self) -> bool:
        return self.variant.startswith("hp")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["levels"] = list(self.levels)
        d["order"] = list(self.order)
        d["rule_params"] = dict(self.rule_params)
        if self.init_length_scales is not None:
            d["init_length_scales"] = [list(v) if np.ndim(v) else float(v) for v in self.init_length_scales]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CalibrationConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        for key in ("levels", "order"):
            if key in d:
                d[key] = tuple(d[key])
        if d.get("init_length_scales") is not None:
            d["init_length_scales"] = tuple(tuple(v) if isinstance(v, list) else v for v in d["init_length_scales"])
        return cls(**d)


@dataclass
class _Stage:
    name: str
    kind: str  # coverage | adversarial | combined
    iterations: int
    hp: bool  # convert the model to the HP variant at the start of this stage


# ------------------------------------------------------------------------------------------------
# LP -> HP conversion and random streams
# ------------------------------------------------------------------------------------------------
def _to_hp(model: ThreePhaseModel, n_knots: int, vf: dict) -> ThreePhaseModel:
    """The HP model whose spectral densities are those of ``model``'s parametric covariances."""
    fields_ = []
    for f in model.fields.values():
        cov = f.covariance
        if isinstance(cov, ParametricCovariance):
            cov = SpectralCovariance.from_covariance(cov, n_knots=n_knots)
        else:
            cov = copy.deepcopy(cov)
        fields_.append(FieldModel(f.kind, cov.to(model.device), f.dof))
    return ThreePhaseModel(model.rule, fields_[0], fields_[1], vf, model.voxel_size, model.unit).to(model.device)


def _stream(seed: int, stage: int, it: int, salt: int = 0) -> int:
    """Independent 63-bit seed for (seed, stage, iteration, purpose)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, stage, it, salt]).generate_state(2, np.uint64)[0] >> np.uint64(1))


# ------------------------------------------------------------------------------------------------
# the engine
# ------------------------------------------------------------------------------------------------
class Calibrator:
    """Calibrate a :class:`ThreePhaseModel` on :class:`CalibrationData` with a :class:`CalibrationConfig`.

    Examples
    --------
    >>> cal = Calibrator(data, CalibrationConfig(variant="lp-iso", iterations=200))
    >>> for rec in cal.run():
    ...     print(rec.iteration, rec.losses["coverage"])
    >>> model = cal.best_model
    """

    def __init__(self, data: CalibrationData, config: CalibrationConfig | None = None) -> None:
        if not isinstance(data, CalibrationData):
            raise TypeError(f"data must be a CalibrationData, got {type(data).__name__}")
        self.data = data
        self.config = (config or CalibrationConfig()).validate()
        if data.volumes and self.config.axis != data.axis:
            # a volume's "axial" statistics are along its symmetry axis (CalibrationData.axis): the
            # model's axis must be that one for its expectations and twins to be comparable
            self.config = replace(self.config, axis=data.axis)
        cfg = self.config
        self.device = resolve_device(cfg.device)
        if cfg.variant.endswith("cyl") and "axial" not in data.planes:
            raise ValueError(
                f"a cylindrical model ({cfg.variant}) needs at least one axial section (containing the "
                "symmetry axis) to see the axial length scale; add one, or use an isotropic variant"
            )
        self.r_max = int(cfg.r_max) if cfg.r_max is not None else data.auto_r_max()
        needs_patch = cfg.algorithm != "coverage"
        data.validate(r_max=self.r_max, patch=cfg.patch if needs_patch else None)
        # periodic sections of about 4 r_max (>= 128 px): lags up to r_max see no wrap-around bias
        self.section_size = int(cfg.section_size or (128 if self.r_max <= 32 else 192 if self.r_max <= 48 else 256))
        if self.r_max > self.section_size // 2:
            raise ValueError(
                f"r_max={self.r_max} px needs simulated sections of at least {2 * self.r_max} px; "
                f"section_size is {self.section_size}"
            )
        if cfg.estimator == "sampled":  # a batch of 100000 sections would fail at the first step, or swap
            from ..devices import available_memory_bytes

            need = SAMPLED_BYTES_PER_PX * self.section_size**2 * cfg.batch * len(data.planes)
            have = available_memory_bytes(self.device)
            if have is not None and need > have:
                fits = max(1, int(have // (SAMPLED_BYTES_PER_PX * self.section_size**2 * len(data.planes))))
                raise MemoryError(
                    f"calibration setting batch={cfg.batch}: {cfg.batch} simulated {self.section_size}^2 sections per "
                    f"plane and step need about {need / 2**30:.1f} GiB on {self.device}, {have / 2**30:.1f} GiB are "
                    f"free; use a batch of at most {fits} (--batch)")
        self.volume_fractions = data.volume_fractions
        self._targets_np = data.coverage_targets(self.r_max)
        self._targets = targets_to_tensors(self._targets_np, self.device, cfg.weighting)
        # a coarser volume: its group C_gh at coarse lags (calibrate/coarse.py), shared by every candidate
        self._coarse_r, self._coarse_targets = data.coarse_targets() or (0, None)
        self._mk_targets = data.minkowski_targets() if cfg.minkowski > 0 else None
        self._mk_corr: dict[str, torch.Tensor] = {}  # lattice corrections per plane (detached)
        self.stages = self._plan()
        self.total = sum(s.iterations for s in self.stages)
        self.history: list[Progress] = []
        self._lock = threading.Lock()  # best_model may be read from another thread while run() trains
        # mutable training state (everything a checkpoint holds)
        self._stage_idx = 0
        self._it = 0  # next iteration within the current stage
        self._elapsed = 0.0
        self.model: ThreePhaseModel = self._initial_model()
        self._opt: torch.optim.Optimizer | None = None
        self._discs: dict[str, Discriminator] = {}
        self._disc_opts: dict[str, torch.optim.Optimizer] = {}
        self._best: ThreePhaseModel = copy.deepcopy(self.model)
        self._best_loss = float("inf")  # coverage loss of the best model (what the RMSE reports)
        self._best_objective = float("inf")  # coverage + minkowski loss of the best model (what picks it)
        self._best_stage = -1
        self._stage_started = False
        self._last_losses: dict[str, float] = {}
        self._avg: list[torch.Tensor] | None = None
        self._avg_n = 0
        self._balance_ema: dict[str, float] = {}  # running gradient norms of the combined terms

    # -- setup -------------------------------------------------------------------------------------
    def _plan(self) -> list[_Stage]:
        cfg = self.config
        pre = cfg.pre_iterations if cfg.pre_iterations is not None else (cfg.iterations if cfg.algorithm == "coverage" else 200)
        main_kind = cfg.algorithm
        stages: list[_Stage] = []
        if cfg.is_hp:
            if pre:
                stages.append(_Stage("coverage-lp", "coverage", pre, hp=False))
            stages.append(_Stage(main_kind, main_kind, cfg.iterations, hp=True))
        elif main_kind == "combined":
            if pre:
                stages.append(_Stage("coverage", "coverage", pre, hp=False))
            stages.append(_Stage("combined", "combined", cfg.iterations, hp=False))
        else:
            stages.append(_Stage(main_kind, main_kind, cfg.iterations, hp=False))
        return stages

    def _init_lengths(self) -> list:
        """Start length scales (px) per field from the data's indicator 1/e lengths."""
        cfg = self.config
        if cfg.init_length_scales is not None:
            return list(cfg.init_length_scales)
        lengths = self.data.correlation_lengths(self.r_max)
        order = [PHASE_NAMES.index(p) if isinstance(p, str) else int(p) for p in cfg.order]
        out = []
        for k, phase in enumerate(order[:2]):
            ip = [v[phase] for (pl, d), v in lengths.items() if d == "inplane"]
            ax = [v[phase] for (pl, d), v in lengths.items() if d == "axial"]
            lip = float(np.mean(ip)) if ip else float(np.mean(ax))
            lax = float(np.mean(ax)) if ax else lip
            # chi-square fields decorrelate faster than their Gaussian components (rho^2): start longer
            kind = cfg.f1 if k == 0 else cfg.f2
            scale = 1.4 if kind == "chi2" else 1.0
            lip, lax = max(lip * scale, 0.7), max(lax * scale, 0.7)
            out.append((lax, lip) if cfg.variant.endswith("cyl") else float(np.sqrt(lip * lax)))
        return out

    def _structure_kwargs(self) -> dict:
        cfg = self.config
        return dict(structure=cfg.structure, volume_fractions=self.volume_fractions, voxel_size=self.data.pixel_size,
                    unit=self.data.unit)

    def _initial_model(self) -> ThreePhaseModel:
        # always start low-parametric: HP stages convert the LP solution (or this start) themselves
        cfg = self.config
        variant = "lp-" + cfg.variant[3:]
        kw = self._structure_kwargs()
        kw["structure"] = kw["structure"].replace(variant=variant)
        return build_model(length_scales_px=self._init_lengths(), **kw).to(self.device)

    def _lr(self, stage: _Stage, it: int) -> float:
        cfg = self.config
        base = cfg.lr if cfg.lr is not None else (0.03 if stage.hp else 0.05)
        if stage.kind != "coverage":
            base *= 0.2  # adversarial gradients are noisier: smaller steps
        frac = it / max(1, stage.iterations - 1)
        return base * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * frac)))

    def _temperature(self, stage: _Stage, it: int) -> float:
        cfg = self.config
        if cfg.threshold == "st" or stage.kind != "coverage":
            return cfg.st_temperature
        frac = min(1.0, it / max(1, 0.7 * stage.iterations))
        return float(cfg.temperature_start * (cfg.temperature / cfg.temperature_start) ** frac)

    def _start_stage(self) -> None:
        """Create the optimiser(s) of the current stage (converting LP -> HP when it asks)."""
        cfg = self.config
        stage = self.stages[self._stage_idx]
        if stage.hp and self.model.variant.startswith("lp"):
            src = self._best if self._best_stage >= 0 else self.model
            self.model = _to_hp(src, cfg.n_knots, self.volume_fractions)
        elif self._stage_idx > 0 and self._best_stage >= 0:
            self.model = copy.deepcopy(self._best)  # continue from the previous stage's solution
        self._opt = torch.optim.Adam(self.model.parameters(), lr=self._lr(stage, 0))
        self._avg, self._avg_n = None, 0
        self._balance_ema = {}
        self._discs, self._disc_opts = {}, {}
        if stage.kind != "coverage":
            g = torch.Generator().manual_seed(_stream(cfg.seed, self._stage_idx, 0, salt=7))
            for plane in self.data.planes:
                d = Discriminator(cfg.patch, cfg.disc_width, N_PHASES, generator=g).to(self.device)
                self._discs[plane] = d
                self._disc_opts[plane] = torch.optim.Adam(d.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        self._stage_started = True

    def _real_onehots(self) -> dict[str, list[torch.Tensor]]:
        if not hasattr(self, "_real_cache"):
            self._real_cache = {
                plane: [
                    torch.nn.functional.one_hot(torch.as_tensor(im, dtype=torch.long), N_PHASES).permute(2, 0, 1).float().to(self.device)
                    for im in self.data.images(plane)
                ]
                for plane in self.data.planes
            }
        return self._real_cache

    # -- public API ----------------------------------------------------------------------------------
    @property
    def best_model(self) -> ThreePhaseModel:
        """Best model so far (lowest hard-threshold coverage loss of the latest stage that has been
        evaluated); before any evaluation, the start model. Always a valid, independent copy."""
        with self._lock:
            return copy.deepcopy(self._best)

    @property
    def best_loss(self) -> float:
        return self._best_loss

    @property
    def finished(self) -> bool:
        return self._stage_idx >= len(self.stages)

    def _generator(self, it: int, salt: int) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(_stream(self.config.seed, self._stage_idx, it, salt))
        return g

    def evaluate(self, model: ThreePhaseModel | None = None) -> float:
        """Coverage loss of ``model`` (default: the current one) that selects the best model: exact
        (``estimator="analytic"``) or hard-threshold on the fixed evaluation batch (same noise every
        call, so values of different parameters compare fairly)."""
        model = self.model if model is None else model
        cfg = self.config
        if cfg.estimator == "analytic":
            with torch.no_grad():
                loss = coverage_loss(expected_coverage(model, self.data.planes, self.r_max), self._targets)
                return float(loss + self._coarse_term(model))
        g = torch.Generator(device=self.device)
        g.manual_seed(_stream(cfg.seed, 10_000, 0, salt=99))
        covs = {}
        with torch.no_grad():
            for plane in self.data.planes:
                x, _ = simulate_sections(model, self.section_size, plane, cfg.eval_batch or 4 * cfg.batch, g, "hard")
                covs.update(model_coverage(x, plane, self.r_max))
            return float(coverage_loss(covs, self._targets) + self._coarse_term(model))

    def _coarse_term(self, model: ThreePhaseModel) -> torch.Tensor | float:
        """Coverage loss of the coarse volume's group C_gh (exact model expectation; 0 without one)."""
        if self._coarse_targets is None:
            return 0.0
        from .coarse import coarse_coverage_loss, model_coarse_coverage

        c = self.data.coarse
        return coarse_coverage_loss(model_coarse_coverage(model, c.groups, c.ratio, self._coarse_r),
                                    self._coarse_targets).to(torch.float32)

    def _minkowski_term(self, model: ThreePhaseModel) -> torch.Tensor | None:
        """Weighted Minkowski loss of ``model`` (differentiable), or None when the term is off."""
        if self._mk_targets is None:
            return None
        expect = expected_minkowski_planes(model, list(self._mk_targets), corrections=self._mk_corr)
        return self.config.minkowski * minkowski_loss(expect, self._mk_targets).to(self.device)

    def _refresh_minkowski(self, it: int) -> None:
        """Re-estimate the lattice correction on simulated sections of the current model. Its random
        stream depends on the step only, not on ``seed``: with the exact C_ij the whole fit stays
        independent of the seed, and a resumed run makes the same draws."""
        if self._mk_targets is None or (it % MINKOWSKI_REFRESH and self._mk_corr):
            return
        seed = _stream(0, self._stage_idx, it, salt=31) % (2**31)
        # 16 sections of 256^2: the loss then varies by ~2 % between refreshes (8 of 128^2: ~10 %)
        self._mk_corr = {pl: minkowski_correction(self.model, pl, size=256, batch=16, seed=seed).to(self.device)
                         for pl in self._mk_targets}

    def objective(self, model: ThreePhaseModel | None = None) -> tuple[float, float]:
        """``(coverage loss, coverage + minkowski loss)`` of ``model``: the first is what the RMSE
        reports, the second picks the best model."""
        model = self.model if model is None else model
        cov = self.evaluate(model)
        with torch.no_grad():
            mk = self._minkowski_term(model)
        return cov, cov + (0.0 if mk is None else float(mk))

    def _coverage_term(self, stage: _Stage, it: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to differentiate, plain squared-distance value of this batch for the log)."""
        cfg = self.config
        if cfg.estimator == "analytic":
            loss = coverage_loss(expected_coverage(self.model, self.data.planes, self.r_max), self._targets)
            loss = loss + self._coarse_term(self.model)
            return loss, loss.detach()
        mode = cfg.threshold if stage.kind == "coverage" else "st"
        covs, covs_a, covs_b = {}, {}, {}
        for plane in self.data.planes:
            x, _ = simulate_sections(self.model, self.section_size, plane, cfg.batch, g, mode, self._temperature(stage, it))
            if cfg.decoupled and cfg.batch >= 2:
                full, a, b = model_coverage_halves(x, plane, self.r_max)
                covs.update(full)
                covs_a.update(a)
                covs_b.update(b)
            else:
                covs.update(model_coverage(x, plane, self.r_max))
        coarse = self._coarse_term(self.model)
        plain = coverage_loss(covs, self._targets) + coarse
        if covs_a:
            return coverage_loss(covs_a, self._targets, covs_b) + coarse, plain.detach()
        return plain, plain.detach()

    def _fake_crops(self, plane: str, g: torch.Generator, mode: str) -> torch.Tensor:
        cfg = self.config
        P = cfg.patch
        x, _ = simulate_sections(self.model, 2 * P, plane, cfg.disc_batch, g, mode, cfg.st_temperature)
        return x[:, :, :P, :P]

    def _accumulate_average(self, stage: _Stage, it: int) -> None:
        start = int(math.floor(stage.iterations * (1 - self.config.average_last)))
        if it < start:
            return
        if it == start or self._avg is None:
            self._avg = [p.detach().clone() for p in self.model.parameters()]
            self._avg_n = 1
            return
        self._avg_n += 1
        for a, p in zip(self._avg, self.model.parameters()):
            a.add_((p.detach() - a) / self._avg_n)

    def _averaged_model(self) -> ThreePhaseModel:
        m = copy.deepcopy(self.model)
        with torch.no_grad():
            for p, a in zip(m.parameters(), self._avg):
                p.copy_(a)
        return m

    def _step(self, stage: _Stage, it: int) -> dict[str, float]:
        cfg = self.config
        lr = self._lr(stage, it)
        for group in self._opt.param_groups:
            group["lr"] = lr
        g = self._generator(it, 0)
        losses: dict[str, float] = {}
        if stage.kind in ("adversarial", "combined"):
            real = self._real_onehots()
            info_sum: dict[str, float] = {}
            for _ in range(cfg.n_critic):
                for plane, disc in self._discs.items():
                    r = random_crops(real[plane], cfg.disc_batch, cfg.patch, g)
                    with torch.no_grad():
                        f = self._fake_crops(plane, g, "hard")
                    loss_d, info = critic_loss(disc, r, f, cfg.adv_loss, cfg.gp_lambda, g)
                    self._disc_opts[plane].zero_grad(set_to_none=True)
                    loss_d.backward()
                    self._disc_opts[plane].step()
                    for k, v in info.items():
                        info_sum[k] = info_sum.get(k, 0.0) + v / (cfg.n_critic * len(self._discs))
            losses.update(info_sum)
        self._opt.zero_grad(set_to_none=True)
        total = None
        if stage.kind in ("adversarial", "combined"):
            gen = sum(generator_loss(disc, self._fake_crops(plane, g, "st"), cfg.adv_loss) for plane, disc in self._discs.items())
            losses["generator"] = float(gen.detach())
            total = gen
        if stage.kind in ("coverage", "combined"):
            cov, plain = self._coverage_term(stage, it, g)
            losses["coverage"] = float(plain)
            self._refresh_minkowski(it)
            mk = self._minkowski_term(self.model)
            if mk is not None:
                losses["minkowski"] = float(mk.detach())
                cov = cov + mk
            total = cov if total is None else total + cfg.alpha * cov
        if stage.kind == "combined":
            losses.update(self._combine_gradients(gen, cov))
        else:
            total.backward()
        self._opt.step()
        losses["lr"] = lr
        if stage.kind == "coverage" and cfg.threshold == "soft":
            losses["temperature"] = self._temperature(stage, it)
        return losses

    def _combine_gradients(self, gen: torch.Tensor, cov: torch.Tensor) -> dict[str, float]:
        """Set the model's ``.grad`` to the weighted sum of the critic's and the coverage term's
        gradients (``balance``) and return both norms and the ratio of their contributions."""
        cfg = self.config
        params = list(self.model.parameters())

        def grads(loss: torch.Tensor, retain: bool) -> list[torch.Tensor]:
            gs = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
            return [torch.zeros_like(p) if gp is None else gp for p, gp in zip(params, gs)]

        g_gen = grads(gen, True)
        g_cov = grads(cov, False)
        n_gen = math.sqrt(sum(float((gp.double() ** 2).sum()) for gp in g_gen))
        n_cov = math.sqrt(sum(float((gp.double() ** 2).sum()) for gp in g_cov))
        tiny = 1e-30
        if cfg.balance == "gradient":
            # running norms (plain floats, detached; the current step included so the ratio holds
            # from the first step): dividing by them makes each term's contribution about 1 and alpha
            d = cfg.balance_decay
            for key, n in (("generator", n_gen), ("coverage", n_cov)):
                prev = self._balance_ema.get(key)
                self._balance_ema[key] = n if prev is None else d * prev + (1 - d) * n
            w_gen = 1.0 / max(self._balance_ema["generator"], tiny)
            w_cov = cfg.alpha / max(self._balance_ema["coverage"], tiny)
        else:
            w_gen, w_cov = 1.0, cfg.alpha
        for p, a, b in zip(params, g_gen, g_cov):
            p.grad = w_gen * a + w_cov * b
        return {"grad_generator": n_gen, "grad_coverage": n_cov, "grad_ratio": w_cov * n_cov / max(w_gen * n_gen, tiny)}

    def run(self) -> Iterator[Progress]:
        """Train, yielding one :class:`Progress` per model update; returns when done.

        Stop by closing the generator (``gen.close()``, or leaving a ``for`` loop over it): every
        yielded step is complete, so the calibrator keeps its best model and a checkpoint or a
        new ``run()`` continues where it stopped.
        """
        cfg = self.config
        while self._stage_idx < len(self.stages):
            stage = self.stages[self._stage_idx]
            if not self._stage_started:
                self._start_stage()
            offset = sum(s.iterations for s in self.stages[: self._stage_idx])
            while self._it < stage.iterations:
                t0 = time.perf_counter()
                it = self._it
                losses = self._step(stage, it)
                last = it == stage.iterations - 1
                # adversarial stages may keep their latest model instead of the coverage-best one,
                # which in a combined stage is nearly always its first step (algorithm 1's model)
                keep_latest = stage.kind != "coverage" and cfg.adv_pick != "coverage"
                if it % cfg.eval_every == 0 or last:
                    ev, obj = self.objective()
                    losses["coverage_eval"] = ev
                    losses["coverage_rmse"] = loss_to_rmse(ev)
                    if self._mk_targets is not None:
                        losses["objective_eval"] = obj
                    with self._lock:
                        if keep_latest or obj < self._best_objective or self._best_stage != self._stage_idx:
                            self._best_loss, self._best_objective = ev, obj
                            self._best_stage = self._stage_idx
                            self._best = copy.deepcopy(self.model)
                if cfg.average_last > 0 and (stage.kind == "coverage" or cfg.adv_pick == "average"):
                    self._accumulate_average(stage, it)
                    if last and self._avg_n:
                        avg = self._averaged_model()
                        ev, obj = self.objective(avg)
                        losses["coverage_eval_averaged"] = ev
                        if self._mk_targets is not None:
                            losses["objective_eval_averaged"] = obj
                        with self._lock:
                            if obj < self._best_objective or keep_latest:
                                self._best_loss, self._best_objective = ev, obj
                                self._best = avg
                self._it += 1
                self._elapsed += time.perf_counter() - t0
                rec = Progress(
                    iteration=offset + it + 1,
                    total=self.total,
                    losses={k: float(v) for k, v in losses.items()},
                    params={k: float(v) for k, v in self.model.interpretable().items()},
                    elapsed_s=self._elapsed,
                    best_loss=float(self._best_loss),
                    phase=stage.name,
                    message=f"{stage.name} {it + 1}/{stage.iterations}",
                )
                self.history.append(rec)
                self._last_losses = losses
                if cfg.checkpoint_path and cfg.checkpoint_every and (offset + it + 1) % cfg.checkpoint_every == 0:
                    self.save_checkpoint(cfg.checkpoint_path)
                yield rec
            self._stage_idx += 1
            self._it = 0
            self._stage_started = False
        if cfg.checkpoint_path:
            self.save_checkpoint(cfg.checkpoint_path)

    def run_all(self) -> ThreePhaseModel:
        """Run to the end (or until stopped) and return the best model."""
        for _ in self.run():
            pass
        return self.best_model

    # -- provenance ------------------------------------------------------------------------------
    def provenance(self) -> dict:
        """What a model file should record about this calibration."""
        from ..devices import describe_device

        done = sum(s.iterations for s in self.stages[: self._stage_idx]) + self._it
        final = {k: v for k, v in self._last_losses.items() if k not in ("lr", "temperature")}
        return {
            "algorithm": self.config.algorithm,
            "variant": self.config.variant,
            "iterations": int(done),
            "iterations_planned": int(self.total),
            "stages": [f"{s.name}:{s.iterations}" for s in self.stages],
            "finished": self.finished,
            "final_losses": final,
            "best_coverage_loss": self._best_loss,
            "best_coverage_rmse": loss_to_rmse(self._best_loss) if math.isfinite(self._best_loss) else None,
            "best_objective": self._best_objective if math.isfinite(self._best_objective) else None,
            "seed": int(self.config.seed),
            "device": describe_device(self.device),
            "r_max_px": self.r_max,
            "data_sha256": self.data.sha256,
            "data_digest": self.data.digest,
            "data_sources": [s.source for s in self.data.given_sections + self.data.volumes],
            "data_planes": [s.plane for s in self.data.given_sections] + ["volume"] * len(self.data.volumes),
            "elapsed_s": round(self._elapsed, 3),
            "config": {k: v for k, v in self.config.to_dict().items() if k not in ("checkpoint_path",)},
        }

    # -- checkpoints -------------------------------------------------------------------------------
    def _model_state(self, model: ThreePhaseModel) -> dict:
        return {"dict": model_to_dict(model), "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}

    def _model_from_state(self, st: dict) -> ThreePhaseModel:
        m = model_from_dict(st["dict"])
        m.set_volume_fractions(self.volume_fractions)  # the exact fractions, not the rounded file ones
        m.load_state_dict(st["state"])
        return m.to(self.device)

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write everything needed to resume this run exactly (atomic replace)."""
        path = Path(path)
        with self._lock:
            ck = {
                "format": CHECKPOINT_FORMAT,
                "version": 1,
                "config": self.config.to_dict(),
                "data_digest": self.data.digest,
                "stage_idx": self._stage_idx,
                "it": self._it,
                "stage_started": self._stage_started,
                "elapsed": self._elapsed,
                "model": self._model_state(self.model),
                "opt": self._opt.state_dict() if (self._opt is not None and self._stage_started) else None,
                "discs": {p: d.state_dict() for p, d in self._discs.items()} if self._stage_started else {},
                "disc_opts": {p: o.state_dict() for p, o in self._disc_opts.items()} if self._stage_started else {},
                "best": self._model_state(self._best),
                "best_loss": self._best_loss,
                "best_objective": self._best_objective,
                "mk_corr": {p: c.cpu() for p, c in self._mk_corr.items()},
                "best_stage": self._best_stage,
                "history": [asdict(r) for r in self.history],
                "last_losses": dict(self._last_losses),
                "avg": [a.cpu() for a in self._avg] if self._avg is not None else None,
                "avg_n": self._avg_n,
                "balance_ema": dict(self._balance_ema),
            }
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # unique temp name: two runs never share one; mode from the umask
            torch.save(ck, tmp)
        return path

    @classmethod
    def from_checkpoint(cls, path: str | Path, data: CalibrationData, device: str | None = None) -> "Calibrator":
        """Resume a run from :meth:`save_checkpoint` on the same data (checked by digest)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"checkpoint {path} does not exist")
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear message
            raise ValueError(f"{path} is not a readable calibration checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not an assb-twin calibration checkpoint")
        if ck["data_digest"] != data.digest:
            raise ValueError(
                f"{path} was made with different calibration data (digest {ck['data_digest'][:12]}..., "
                f"these data {data.digest[:12]}...); resume with the same images, planes and pixel size"
            )
        cfg = CalibrationConfig.from_dict(ck["config"])
        if device is not None:
            cfg.device = device
        cal = cls(data, cfg)
        cal._stage_idx = ck["stage_idx"]
        cal._it = ck["it"]
        cal._elapsed = ck["elapsed"]
        cal.model = cal._model_from_state(ck["model"])
        cal._best = cal._model_from_state(ck["best"])
        cal._best_loss = ck["best_loss"]
        cal._best_objective = ck.get("best_objective", ck["best_loss"])
        cal._mk_corr = {p: c.to(cal.device) for p, c in ck.get("mk_corr", {}).items()}
        cal._best_stage = ck["best_stage"]
        cal._last_losses = ck["last_losses"]
        cal._avg = [a.to(cal.device) for a in ck["avg"]] if ck["avg"] is not None else None
        cal._avg_n = ck["avg_n"]
        cal._balance_ema = dict(ck.get("balance_ema", {}))
        cal.history = [Progress(**r) for r in ck["history"]]
        if ck["stage_started"] and cal._stage_idx < len(cal.stages):
            stage = cal.stages[cal._stage_idx]
            cal._opt = torch.optim.Adam(cal.model.parameters(), lr=cal._lr(stage, 0))
            if ck["opt"] is not None:
                cal._opt.load_state_dict(ck["opt"])
            for plane, sd in ck["discs"].items():
                d = Discriminator(cfg.patch, cfg.disc_width, N_PHASES).to(cal.device)
                d.load_state_dict(sd)
                cal._discs[plane] = d
                o = torch.optim.Adam(d.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
                o.load_state_dict(ck["disc_opts"][plane])
                cal._disc_opts[plane] = o
            cal._stage_started = True
        return cal
