"""The three-phase excursion-set model (METHOD.md section 4).

Two independent fields F1, F2 (Gaussian or chi-square) and a truncation rule
(:mod:`~napari_assb_twin.model.rules`) assigning a phase to every pair of field values: a grid in
probability coordinates, each phase a union of rectangles. Today's construction (first phase = a
level set of F1, second = a level set of F2 in the rest, third = what remains) is the
``sequential`` rule. Thresholds follow exactly from the volume fractions because F1 and F2 are
independent, so the fractions are the first interpretable parameters and the covariances carry the
shapes; C_ij factorise into each field's bivariate interval probabilities.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..checks import check_seed, check_shape
from ..devices import resolve_device
from ..fields.bivariate import IntervalPairProbability, marginal_density, marginal_quantile
from ..fields.bridged import bridge_weight, checked_dof, is_bridged
from ..fields.covariance import Covariance, ParametricCovariance, SpectralCovariance
from ..fields.sections import plane_axes
from ..fields.simulate import chi2_fields, gaussian_fields, make_generator, spectral_sqrt
from ..options import FIELD_TYPES
from ..phases import N_PHASES, PHASE_NAMES, phase_index
from .rules import Construction, Rule, TruncationRule
from .structure import MAX_DOF, ModelStructure

__all__ = [
    "Construction", "FieldModel", "LENGTH_RANGE_PX", "MODES", "ParameterRange", "Rule", "SCALE_RANGE",
    "ThreePhaseModel", "build_model", "edit_volume_fractions",
]

MODES = ("hard", "soft", "st")
#: Range of a hand-set length scale, in voxels: below a hundredth of a voxel the field is white noise
#: on the grid, above 10^4 voxels no volume that can be generated (2048^3) holds one correlation length.
LENGTH_RANGE_PX: tuple[float, float] = (1e-2, 1e4)
#: Range of a hand-set dimensionless scale factor (anisotropy ratio, spectral stretch).
SCALE_RANGE: tuple[float, float] = (1e-3, 1e3)


class ParameterRange(NamedTuple):
    """What a hand edit of one interpretable parameter may be (:meth:`ThreePhaseModel.parameter_ranges`).

    ``low`` / ``high`` in the parameter's own unit (lengths in the model's unit); ``kind`` is
    ``"fraction"``, ``"length"``, ``"dof"`` (an integer count of squared Gaussian fields, or a
    fraction in (1, 2): the bridged field) or ``"number"``.
    """

    low: float
    high: float
    kind: str


class FieldModel(nn.Module):
    """A Gaussian (``dof = 1``) or chi-square(``dof``) field built from a Gaussian covariance."""

    def __init__(self, kind: str, covariance: Covariance, dof: float = 1) -> None:
        super().__init__()
        if kind not in FIELD_TYPES:
            raise ValueError(f"field type must be one of {FIELD_TYPES}, got {kind!r}")
        self.kind = kind
        self.dof = checked_dof(kind, dof)
        self.covariance = covariance

    # marginal distribution ---------------------------------------------------------------------
    def quantile(self, p: float) -> float:
        """Marginal quantile: standard normal or chi-square(dof)."""
        return marginal_quantile(self.kind, self.dof, p)

    def density(self, t: float) -> float:
        """Marginal probability density at ``t``."""
        return marginal_density(self.kind, self.dof, t)

    @property
    def n_components(self) -> int:
        """Independent unit-variance Gaussian fields this field is made of (1, the dof, or 2 for a
        bridged field)."""
        if self.kind == "gaussian":
            return 1
        return 2 if is_bridged(self.dof) else self.dof

    def from_components(self, components: torch.Tensor) -> torch.Tensor:
        """Field values from its Gaussian components stacked on the first axis
        (``n_components``, ...): the component itself, or the sum of their squares (chi-square;
        the second one weighted by the bridge weight in a bridged field)."""
        if components.shape[0] != self.n_components:
            raise ValueError(f"a {self.kind} field of {self.n_components} components got {components.shape[0]}")
        if self.kind == "gaussian":
            return components[0]
        if is_bridged(self.dof):
            return components[0] ** 2 + bridge_weight(self.dof) * components[1] ** 2
        return (components * components).sum(0)

    def sqrt_density(self, shape: Sequence[int], axes: Sequence[int] | None) -> torch.Tensor:
        """Square-root spectral density on a grid; cached while no gradient is needed.

        Generating several realisations of a fixed model reuses the spectrum instead of recomputing
        the correlation grid and its FFT; the cache key includes the parameter values.
        """
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            return spectral_sqrt(self.covariance, shape, axes)
        state = tuple(
            (k, tuple(v.detach().cpu().reshape(-1).tolist())) for k, v in self.covariance.state_dict().items()
        )
        key = (tuple(shape), None if axes is None else tuple(axes), str(self.device_of()), state)
        cached = getattr(self, "_sqrt_cache", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, spectral_sqrt(self.covariance, shape, axes))
            self._sqrt_cache = cached
        return cached[1]

    def device_of(self) -> torch.device:
        return next(self.covariance.parameters()).device

    def sample(
        self,
        shape: Sequence[int],
        batch: int,
        generator: torch.Generator | None,
        axes: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Field values, shape ``(batch, *shape)``."""
        sq = self.sqrt_density(shape, axes)
        if self.kind == "gaussian":
            return gaussian_fields(self.covariance, shape, 1, batch, generator, axes, sq)[:, 0]
        return chi2_fields(self.covariance, shape, self.dof, batch, generator, axes, sq)


def edit_volume_fractions(fractions: Mapping[str, float], phase: str, value: float,
                          remainder: str | None = None) -> dict[str, float]:
    """Volume fractions after setting ``phase``'s to ``value`` (the one rule of hand edits).

    Without ``remainder`` the other two are rescaled in proportion so the three sum to 1. With
    ``remainder`` (a phase name) the third fraction is kept and ``remainder`` takes ``1 - both``;
    ValueError (saying what to change) when that is infeasible or ``phase`` is the remainder.
    """
    value = float(value)
    vf = {n: float(v) for n, v in fractions.items()}
    if value < 0 or (remainder is None and value >= 1):  # with a remainder, > 1 gets the message below
        raise ValueError(f"{phase}_fraction must lie in [0, 1), got {value}")
    if remainder is None:
        rest = sum(v for n, v in vf.items() if n != phase)
        return {n: value if n == phase else (v / rest * (1 - value) if rest > 0 else (1 - value) / 2)
                for n, v in vf.items()}
    if phase == remainder:
        raise ValueError(f"the {remainder} fraction takes the remainder; edit another fraction, or choose "
                         "another 'Remainder to' phase")
    vf[phase] = value
    kept = [n for n in vf if n not in (phase, remainder)]
    rest = 1.0 - value - sum(vf[n] for n in kept)
    if rest < 0:
        others = " + ".join(f"{n} {vf[n]:.3f}" for n in (phase, *kept))
        raise ValueError(f"{others} exceeds 1, leaving nothing for {remainder}; lower one of them first")
    vf[remainder] = rest
    return vf


class ThreePhaseModel(nn.Module):
    """Three-phase excursion-set model: a truncation rule, two fields, volume fractions.

    Lengths inside are in px; ``voxel_size`` and ``unit`` convert to physical units for model files
    and reports. ``parameters()`` are the unconstrained trainable quantities (log length scales,
    log spectral densities, log trainable extras); volume fractions and the rule's parameters are
    fixed numbers (estimated from data, or chosen) that set the thresholds exactly.

    Parameters
    ----------
    rule
        A :class:`~napari_assb_twin.model.rules.Rule` (``Construction(order, levels)`` is the
        sequential one).
    """

    def __init__(
        self,
        rule: Rule,
        f1: FieldModel,
        f2: FieldModel,
        volume_fractions: Mapping[str | int, float],
        voxel_size: float = 1.0,
        unit: str = "px",
        provenance: dict | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(rule, Rule):
            raise TypeError(f"rule must be a Rule (model.rules), got {type(rule).__name__}")
        self._rule = rule
        self.fields = nn.ModuleDict({"f1": f1, "f2": f2})
        if not (math.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        self.voxel_size = float(voxel_size)
        self.unit = str(unit)
        self.provenance = dict(provenance or {})
        self._vf = np.zeros(N_PHASES)
        self.set_volume_fractions(volume_fractions)

    # -- parameters ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def rule(self) -> Rule:
        """The truncation-rule choice (family, roles, levels, parameters)."""
        return self._rule

    def set_rule(self, rule: Rule) -> None:
        """Use another rule with the same volume fractions (ValueError when infeasible for them)."""
        self.truncation = rule.truncation(self._vf)
        self._rule = rule

    @property
    def construction(self) -> Rule:
        """Compatible view of :attr:`rule`: ``order`` (phases in the family's roles), ``levels``
        (of F1, F2) and ``describe()``."""
        return self._rule

    @property
    def volume_fractions(self) -> dict[str, float]:
        return {PHASE_NAMES[i]: float(v) for i, v in enumerate(self._vf)}

    def set_volume_fractions(self, fractions: Mapping[str | int, float]) -> None:
        """Set the target volume fractions (must cover the 3 phases and sum to 1 within 1e-3) and
        rebuild the rule's grid for them (ValueError naming the parameter when infeasible)."""
        vf = np.full(N_PHASES, np.nan)
        for key, val in fractions.items():
            vf[phase_index(key)] = float(val)
        if np.any(np.isnan(vf)):
            missing = [PHASE_NAMES[i] for i in np.flatnonzero(np.isnan(vf))]
            raise ValueError(f"volume fractions missing for {', '.join(missing)}")
        if np.any(vf < 0) or np.any(vf > 1) or abs(vf.sum() - 1) > 1e-3:
            raise ValueError(f"volume fractions must lie in [0, 1] and sum to 1, got {vf.round(4).tolist()}")
        vf = vf / vf.sum()
        self.truncation: TruncationRule = self._rule.truncation(tuple(vf))
        self._vf = vf

    def thresholds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Interior cuts of F1 and F2 in field units (increasing), realising the fractions exactly:
        the marginal quantiles of the rule's ``u1_edges[1:-1]`` and ``u2_edges[1:-1]``."""
        tr = self.truncation
        return tuple(
            tuple(field.quantile(e) for e in edges[1:-1])
            for field, edges in zip(self.fields.values(), (tr.u1_edges, tr.u2_edges))
        )  # type: ignore[return-value]

    # -- labels and phase probabilities ---------------------------------------------------------
    def _cell_index(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        for x, cuts in zip((f1, f2), self.thresholds()):
            idx = torch.zeros(x.shape, dtype=torch.long, device=x.device)
            for t in cuts:  # cell i is (t_i, t_{i+1}]: a value equal to a cut belongs below it
                idx += x > t
            out.append(idx)
        return out[0], out[1]

    def labels_from_fields(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """Hard ``uint8`` phase labels of field values ``f1``, ``f2`` (same shape) under the rule."""
        if f1.shape != f2.shape:
            raise ValueError(f"f1 and f2 must have the same shape, got {tuple(f1.shape)} and {tuple(f2.shape)}")
        i, j = self._cell_index(f1, f2)
        table = torch.as_tensor(self.truncation.table, dtype=torch.uint8, device=f1.device)
        return table[i, j]

    def _hard_onehot(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """One-hot (batch, 3, ...) float32 phase maps of the hard labels (no gradient)."""
        hard = nn.functional.one_hot(self.labels_from_fields(f1.detach(), f2.detach()).long(), N_PHASES)
        return hard.movedim(-1, 1).to(torch.float32)

    def _soft_cells(self, field: FieldModel, x: torch.Tensor, cuts: Sequence[float], temperature: float) -> torch.Tensor:
        """Soft membership (cells, batch, ...) of each cell of one field: differences of sigmoids
        at the cuts, a partition of unity."""
        steps = [torch.ones_like(x)]
        for t in cuts:
            # temperature in probability units: a shift tau of F changes P by about density(t) * tau
            tau = temperature / max(field.density(t), 1e-6)
            steps.append(torch.sigmoid((x - t) / tau))
        steps.append(torch.zeros_like(x))
        s = torch.stack(steps)
        return s[:-1] - s[1:]

    def phase_probabilities(
        self, f1: torch.Tensor, f2: torch.Tensor, mode: str = "soft", temperature: float = 0.05,
        hard: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Differentiable phase maps (batch, 3, ...) of field values (batch, ...).

        ``soft``: each cell's probability is the product of the two fields' sigmoid memberships
        (``temperature`` in probability units), summed over the phase's cells; ``st``: the hard
        one-hot forward with the soft gradient (``hard``: the :meth:`_hard_onehot` of the same
        fields, when the caller has it already).
        """
        if mode not in MODES[1:]:
            raise ValueError(f"mode must be one of {MODES[1:]}, got {mode!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        t1, t2 = self.thresholds()
        s1 = self._soft_cells(self.fields["f1"], f1, t1, temperature)
        s2 = self._soft_cells(self.fields["f2"], f2, t2, temperature)
        # a few elementwise products per phase (one per cell): cheaper than a contraction on big maps
        tr = self.truncation
        p = torch.stack([sum(s1[i] * s2[j] for i, j in tr.cells(q)) if tr.cells(q) else torch.zeros_like(f1)
                         for q in range(N_PHASES)], 1)
        if mode == "soft":
            return p
        if hard is None:
            hard = self._hard_onehot(f1, f2)
        return hard.to(p.dtype) + p - p.detach()

    # -- sampling -----------------------------------------------------------------------------
    def _generator(self, seed: int | None, generator: torch.Generator | None) -> torch.Generator:
        if generator is not None:
            return generator
        return make_generator(None if seed is None else check_seed(seed), self.device)

    def _fields(
        self, shape: Sequence[int], batch: int, generator: torch.Generator, axes: Sequence[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        f1 = self.fields["f1"].sample(shape, batch, generator, axes)
        f2 = self.fields["f2"].sample(shape, batch, generator, axes)
        return f1, f2

    def sample(
        self,
        shape: Sequence[int],
        *,
        batch: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        mode: str = "hard",
        temperature: float = 0.05,
    ) -> torch.Tensor:
        """Periodic 3D (or 2D isotropic) realisations on the model's device.

        Returns ``uint8`` labels of shape ``shape`` (or ``(batch, *shape)``) for ``mode="hard"``,
        float phase probabilities ``(batch or 1, 3, *shape)`` for ``"soft"`` / ``"st"``.
        """
        shape = _check_shape(shape, (3,) if self.is_anisotropic else (2, 3))
        g = self._generator(seed, generator)
        with torch.set_grad_enabled(mode != "hard" and torch.is_grad_enabled()):
            f1, f2 = self._fields(shape, batch or 1, g, None)
            if mode == "hard":
                out = self.labels_from_fields(f1, f2)
                return out if batch is not None else out[0]
            return self.phase_probabilities(f1, f2, mode, temperature)

    def sample_sections(
        self,
        size: Sequence[int],
        plane: str = "inplane",
        *,
        batch: int = 1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        mode: str = "hard",
        temperature: float = 0.05,
    ) -> torch.Tensor:
        """Exact axis-aligned 2D sections of the 3D model, simulated directly in 2D.

        ``plane`` is ``"inplane"`` (perpendicular to the symmetry axis) or ``"axial"`` (containing
        it as rows); see :func:`~napari_assb_twin.fields.sections.plane_axes`. Returns ``uint8``
        ``(batch, H, W)`` for ``"hard"``, float ``(batch, 3, H, W)`` otherwise.
        """
        size = _check_shape(size, (2,))
        axes = plane_axes(plane, self.axis)
        g = self._generator(seed, generator)
        with torch.set_grad_enabled(mode != "hard" and torch.is_grad_enabled()):
            f1, f2 = self._fields(size, batch, g, axes)
            if mode == "hard":
                return self.labels_from_fields(f1, f2)
            return self.phase_probabilities(f1, f2, mode, temperature)

    def section_maps(
        self,
        size: Sequence[int],
        plane: str,
        batch: int,
        generator: torch.Generator,
        mode: str = "st",
        temperature: float = 0.05,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Phase maps of directly simulated sections and their hard one-hot, from *one* draw of the fields.

        Training needs both from the same fields: ``x`` (``mode`` ``"st"``, ``"soft"`` or ``"hard"``)
        carries the gradient, the hard one-hot (no gradient) tracks the best model.

        Returns
        -------
        x, hard : Tensor ``(batch, 3, H, W)`` each
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        size = _check_shape(size, (2,))
        axes = plane_axes(plane, self.axis)
        with torch.set_grad_enabled(mode != "hard" and torch.is_grad_enabled()):
            f1, f2 = self._fields(size, batch, generator, axes)
            hard = self._hard_onehot(f1, f2)
            if mode == "hard":
                return hard, hard
            return self.phase_probabilities(f1, f2, mode, temperature, hard), hard

    def expected_coverage(self, r_max: int, direction: str = "inplane") -> torch.Tensor:
        """The model's exact expected C_ij(r) for r = 0..``r_max`` px along ``direction``.

        No simulation: each field's joint cell probabilities follow from its correlation at each
        lag (:mod:`~napari_assb_twin.fields.bivariate`), and independence of F1 and F2 factorises
        every pair of the rule's cells. Differentiable in the covariance parameters; ``direction`` is
        ``"inplane"`` or ``"axial"`` (the same for isotropic models).

        Returns
        -------
        Tensor ``(3, 3, r_max + 1)``, symmetric in the phase indices.
        """
        if direction not in ("inplane", "axial"):
            raise ValueError(f"direction must be 'inplane' or 'axial', got {direction!r}")
        axis_key = self.axis if direction == "axial" else (self.axis + 1) % 3
        r = torch.arange(int(r_max) + 1, dtype=torch.float32, device=self.device)
        tr = self.truncation
        pairs = []
        for field, edges in zip(self.fields.values(), (tr.u1_edges, tr.u2_edges)):
            key = (field.kind, field.dof, tuple(round(e, 12) for e in edges), str(self.device))
            cache = getattr(field, "_pair_prob", None)
            if cache is None or cache[0] != key:
                cache = (key, IntervalPairProbability(field.kind, field.dof, edges, self.device))
                field._pair_prob = cache
            pairs.append(cache[1](field.covariance.correlation({axis_key: r})))
        p1, p2 = pairs  # (m, m, L), (n, n, L): joint cell probabilities of each field
        m, n = tr.shape
        masks = torch.as_tensor(tr.indicator(), dtype=torch.float32, device=self.device).reshape(N_PHASES, m * n)
        # C_ab = sum over cells (i, j) of a and (k, l) of b of P1[i, k] P2[j, l] (F1, F2 independent);
        # broadcasting and a sum, not einsum: its matmul backward is 15x slower on small CPU tensors
        joint = (p1[:, None, :, None] * p2[None, :, None, :]).reshape(m * n, m * n, -1)
        return (masks[:, None, :, None, None] * masks[None, :, None, :, None] * joint[None, None]).sum((2, 3))

    def generate(self, shape: Sequence[int], seed: int | None = 0, device: str | None = None) -> np.ndarray:
        """Convenience: one hard ``uint8`` realisation as a NumPy array, computed on ``device``
        (this model itself stays where it is: a copy goes to another device)."""
        gen = self.iter_generate(shape, seed, device)
        while True:
            try:
                next(gen)
            except StopIteration as done:
                return done.value

    def on_device(self, device: str | torch.device | None) -> "ThreePhaseModel":
        """This model on ``device`` (resolved): itself when it is there, else a copy (never moved in place)."""
        if device is None:
            return self
        dev = resolve_device(device)
        return self if dev == self.device else copy.deepcopy(self).to(dev)

    def iter_generate(self, shape: Sequence[int], seed: int | None = 0, device: str | torch.device | None = None):
        """:meth:`generate` as a generator: yields the name of each field once it is simulated (a
        caller can stop between fields, e.g. when napari closes), returns the ``uint8`` volume.
        Same random stream, so the same volume as :meth:`generate` for the same seed and device."""
        model = self.on_device(device)
        shape = _check_shape(shape, (3,) if model.is_anisotropic else (2, 3))
        g = model._generator(seed, None)
        with torch.no_grad():
            f1 = model.fields["f1"].sample(shape, 1, g, None)
            yield "f1"
            f2 = model.fields["f2"].sample(shape, 1, g, None)
            yield "f2"
            return model.labels_from_fields(f1, f2)[0].cpu().numpy()

    # -- interpretation -----------------------------------------------------------------------
    @property
    def is_anisotropic(self) -> bool:
        return any(f.covariance.anisotropy == "cylindrical" for f in self.fields.values())

    @property
    def axis(self) -> int:
        """Symmetry axis (that of the first cylindrical field; 0 for isotropic models)."""
        for f in self.fields.values():
            if f.covariance.anisotropy == "cylindrical":
                return f.covariance.axis
        return self.fields["f1"].covariance.axis

    @property
    def structure(self) -> ModelStructure:
        """The model's discrete choices (``n_knots`` of HP fields is their knot count)."""
        f1, f2 = self.fields["f1"], self.fields["f2"]
        cov = f1.covariance
        family = cov.family.name if isinstance(cov, ParametricCovariance) else "gaussian"
        extras = cov.extras if isinstance(cov, ParametricCovariance) else {}
        knots = getattr(cov, "knots", None) if cov.anisotropy == "isotropic" else getattr(cov, "knots_inplane", None)
        n_knots = len(knots) if isinstance(cov, SpectralCovariance) and knots is not None else 24
        r = self.rule
        return ModelStructure(
            variant=self.variant, family=family, extras=extras, rule=r.family, rule_params=r.parameters,
            order=tuple(PHASE_NAMES[p] for p in r.order), levels=r.levels, f1=f1.kind, f1_dof=f1.dof,
            f2=f2.kind, f2_dof=f2.dof, axis=self.axis, n_knots=n_knots,
        )

    @property
    def variant(self) -> str:
        """``lp-iso``, ``lp-cyl``, ``hp-iso`` or ``hp-cyl``."""
        hp = any(isinstance(f.covariance, SpectralCovariance) for f in self.fields.values())
        return f"{'hp' if hp else 'lp'}-{'cyl' if self.is_anisotropic else 'iso'}"

    def interpretable(self) -> dict[str, float]:
        """Flat dict of the physically meaningful numbers (lengths in the model's unit)."""
        out = {f"{name}_fraction": v for name, v in self.volume_fractions.items()}
        out.update({f"rule.{k}": v for k, v in self.rule.params})
        for key, field in self.fields.items():
            cov = field.covariance
            out[f"{key}.dof"] = float(field.dof)
            if isinstance(cov, ParametricCovariance):
                ls = [v * self.voxel_size for v in cov.length_scale]
                if cov.anisotropy == "isotropic":
                    out[f"{key}.length_scale"] = ls[0]
                else:
                    out[f"{key}.length_scale_axial"] = ls[0]
                    out[f"{key}.length_scale_inplane"] = ls[1]
                    out[f"{key}.anisotropy_ratio"] = ls[0] / ls[1]
                for name, val in cov.extras.items():
                    out[f"{key}.{name}"] = val
            else:
                st = [float(v) for v in cov.stretch]
                if cov.anisotropy == "isotropic":
                    out[f"{key}.stretch"] = st[0]
                else:
                    out[f"{key}.stretch_axial"], out[f"{key}.stretch_inplane"] = st
            out[f"{key}.correlation_length_inplane"] = float(cov.correlation_length("inplane")) * self.voxel_size
            if cov.anisotropy == "cylindrical":
                out[f"{key}.correlation_length_axial"] = float(cov.correlation_length("axial")) * self.voxel_size
        return out

    def parameter_ranges(self) -> dict[str, ParameterRange]:
        """The settable keys of :meth:`interpretable` with the range :meth:`with_updates` accepts.

        Volume fractions in [0, 1] (the other two must leave room: see :meth:`with_updates`); rule
        parameters within their family's static bounds (the fractions may narrow them: an
        infeasible value is refused by :meth:`with_updates`); chi-square degrees of freedom
        1..MAX_DOF, fractions in (1, 2) the bridged field (Gaussian fields have none to set); lengths :data:`LENGTH_RANGE_PX` voxels;
        anisotropy ratios and stretches :data:`SCALE_RANGE`; correlation-family extras their
        family's bounds. A range always contains the model's current value.
        """
        values = self.interpretable()
        out: dict[str, ParameterRange] = {}
        for key in _settable(self):
            attr = key.partition(".")[2]
            if key.endswith("_fraction"):
                rng = ParameterRange(0.0, 1.0, "fraction")
            elif key.startswith("rule."):
                p = {q.name: q for q in self.rule.spec.parameters}[attr]
                rng = ParameterRange(float(p.low), float(p.high), "number")
            elif attr == "dof":
                if self.fields[key.partition(".")[0]].kind != "chi2":
                    continue
                rng = ParameterRange(1.0, float(MAX_DOF), "dof")
            elif attr.startswith("length_scale"):
                rng = ParameterRange(LENGTH_RANGE_PX[0] * self.voxel_size, LENGTH_RANGE_PX[1] * self.voxel_size, "length")
            elif attr == "anisotropy_ratio" or attr.startswith("stretch"):
                rng = ParameterRange(*SCALE_RANGE, "number")
            else:  # a correlation family's extra parameter
                cov = self.fields[key.partition(".")[0]].covariance
                _, lo, hi, _ = cov.family.extras[attr]
                rng = ParameterRange(float(lo), float(hi), "number")
            v = values[key]
            out[key] = rng._replace(low=min(rng.low, v), high=max(rng.high, v))
        return out

    def with_updates(self, updates: Mapping[str, float], *, remainder: str | None = None) -> "ThreePhaseModel":
        """A copy with some interpretable parameters changed (physical units).

        Keys as in :meth:`interpretable`, within :meth:`parameter_ranges`. Changing one volume
        fraction follows :func:`edit_volume_fractions` (the one rule): without ``remainder`` the other
        two are rescaled in proportion so they still sum to 1; with ``remainder`` (a phase name) the
        other fraction is kept and that phase takes ``1 - both``. ``fN.anisotropy_ratio`` keeps the in-plane length and
        sets the axial one. ``fN.dof`` changes the chi-square degrees of freedom. Derived keys
        (``correlation_length_*``) cannot be set. ``rule.NAME`` sets a parameter of the rule
        family (e.g. ``rule.coverage``); the result must be feasible for the fractions.
        """
        new = copy.deepcopy(self)
        vf = dict(new.volume_fractions)
        rule_params = self.rule.parameters
        ranges = self.parameter_ranges() if updates else {}
        for key, value in updates.items():
            value = float(value)
            rng = ranges.get(key)
            if rng is not None and rng.kind in ("length", "number") and not rng.low <= value <= rng.high:
                raise ValueError(f"{key} = {value:g} is outside [{rng.low:g}, {rng.high:g}]")
            if key.startswith("rule."):
                name = key[len("rule."):]
                if name not in rule_params:
                    raise ValueError(
                        f"unknown parameter {key!r}; the {self.rule.family} rule has "
                        f"{', '.join('rule.' + k for k in rule_params) or 'no parameters'}"
                    )
                rule_params[name] = value
                continue
            if key.endswith("_fraction") and key[: -len("_fraction")] in PHASE_NAMES:
                vf = edit_volume_fractions(vf, key[: -len("_fraction")], value, remainder)
                continue
            field_key, _, attr = key.partition(".")
            if field_key not in new.fields or not attr:
                raise ValueError(f"unknown parameter {key!r}; known: {', '.join(self.interpretable())}")
            field = new.fields[field_key]
            cov = field.covariance
            with torch.no_grad():
                if attr == "dof":
                    if field.kind != "chi2":
                        raise ValueError(f"{key}: only chi-square fields have degrees of freedom")
                    # a value in (1, 2) is the bridged field's knob (1 + bridge weight), others count fields
                    dof = round(float(value), 3) if 1.0 < value < 2.0 else int(round(value))
                    new.fields[field_key] = FieldModel("chi2", cov, dof)
                elif isinstance(cov, ParametricCovariance) and (attr.startswith("length_scale") or attr == "anisotropy_ratio"):
                    _set_length(cov, attr, value / (1.0 if attr == "anisotropy_ratio" else self.voxel_size), key)
                elif isinstance(cov, ParametricCovariance) and attr in cov.family.extras:
                    checked = cov.family.validate_extras({**cov.extras, attr: value})
                    if attr in cov.log_extras:
                        cov.log_extras[attr].fill_(math.log(checked[attr]))
                    else:
                        cov.fixed_extras[attr] = checked[attr]
                elif isinstance(cov, SpectralCovariance) and attr.startswith("stretch"):
                    if value <= 0:
                        raise ValueError(f"{key} must be positive")
                    idx = {"stretch": 0, "stretch_axial": 0, "stretch_inplane": 1}[attr]
                    cov.stretch[idx] = value
                else:
                    raise ValueError(f"parameter {key!r} cannot be set; settable: {', '.join(_settable(self))}")
        new._rule = self.rule.with_params(**rule_params)
        new.set_volume_fractions(vf)
        return new


def _set_length(cov: ParametricCovariance, attr: str, value: float, key: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{key} must be positive, got {value}")
    iso = cov.anisotropy == "isotropic"
    if attr == "length_scale" and iso:
        cov.log_length[0] = math.log(value)
    elif attr == "length_scale_axial" and not iso:
        cov.log_length[0] = math.log(value)
    elif attr == "length_scale_inplane" and not iso:
        cov.log_length[1] = math.log(value)
    elif attr == "anisotropy_ratio" and not iso:
        cov.log_length[0] = cov.log_length[1] + math.log(value)
    else:
        raise ValueError(f"{key} does not apply to a {cov.anisotropy} covariance")


def _settable(model: ThreePhaseModel) -> list[str]:
    return [k for k in model.interpretable() if "correlation_length" not in k]


def _check_shape(shape: Sequence[int], ndims: tuple[int, ...]) -> tuple[int, ...]:
    shape = check_shape(shape, ndims)  # the one shape check (strings, floats, bools refused as in the CLI)
    if math.prod(shape) > 2048**3:
        raise ValueError(
            f"shape {shape} has {math.prod(shape):.3g} voxels, more than one FFT volume can hold; "
            "generate blockwise instead"
        )
    return shape


def build_model(
    variant: str = "lp-iso",
    *,
    structure: ModelStructure | None = None,
    family: str = "gaussian",
    f1: str = "chi2",
    f1_dof: float = 3,
    f2: str = "gaussian",
    f2_dof: float = 1,
    levels: Sequence[str] = ("lower", "upper"),
    order: Sequence[str | int] = ("active", "pore", "electrolyte"),
    rule: str = "sequential",
    rule_params: Mapping[str, float] | None = None,
    length_scales_px: Sequence[float | Sequence[float]] = (8.0, 4.0),
    volume_fractions: Mapping[str | int, float] | None = None,
    voxel_size: float = 1.0,
    unit: str = "px",
    axis: int = 0,
    n_knots: int = 24,
    **extras: float,
) -> ThreePhaseModel:
    """Build a model from its structure and start lengths.

    The structure is ``structure`` (a :class:`~napari_assb_twin.model.structure.ModelStructure`)
    or, when it is None, the keywords ``variant`` ... ``n_knots`` and ``extras`` (the correlation
    family's fixed extras). ``length_scales_px`` gives one entry per field: a number, or
    ``(axial, inplane)`` for cylindrical variants. High-parametric variants start from the spectral
    density of the corresponding low-parametric model.
    """
    if structure is None:
        structure = ModelStructure(
            variant=variant, family=family, extras=extras, rule=rule, rule_params=rule_params or {},
            order=tuple(PHASE_NAMES[phase_index(p)] for p in order), levels=tuple(levels),
            f1=f1, f1_dof=f1_dof, f2=f2, f2_dof=f2_dof, axis=axis, n_knots=n_knots,
        )
    s = structure
    aniso = "cylindrical" if s.variant.endswith("cyl") else "isotropic"
    fields = []
    for kind, dof, ls in zip((s.f1, s.f2), (s.f1_dof, s.f2_dof), length_scales_px):
        if aniso == "isotropic" and np.ndim(ls) > 0:
            ls = float(np.mean(ls))
        cov: Covariance = ParametricCovariance(s.family, ls, aniso, s.axis, **dict(s.extras))
        if s.variant.startswith("hp"):
            cov = SpectralCovariance.from_covariance(cov, n_knots=s.n_knots)
        fields.append(FieldModel(kind, cov, dof))
    vf = volume_fractions or {"pore": 0.1, "active": 0.6, "electrolyte": 0.3}
    return ThreePhaseModel(s.rule_choice(), *fields, vf, voxel_size, unit)
