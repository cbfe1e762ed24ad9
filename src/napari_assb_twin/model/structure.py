"""The discrete structure of a model, in one torch-free value type.

:class:`ModelStructure` holds every choice that is not a trained number: the variant, the
correlation family and its fixed extras, the truncation rule (family, roles, level directions,
parameters), the two fields' types and chi-square degrees of freedom, the symmetry axis and the
number of spectral knots. :func:`~napari_assb_twin.model.build_model` builds from it,
:class:`~napari_assb_twin.calibrate.CalibrationConfig` carries the same fields (its defaults are
these) and model selection enumerates structures.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..fields.bridged import MAX_DOF, checked_dof, dof_label
from ..options import FIELD_TYPES, VARIANTS
from ..phases import PHASE_NAMES
from .rules import Rule

__all__ = ["MAX_DOF", "ModelStructure"]



def _frozen(d: Mapping[str, float] | tuple) -> tuple[tuple[str, float], ...]:
    items = d.items() if isinstance(d, Mapping) else d
    return tuple(sorted((str(k), float(v)) for k, v in items))


@dataclass(frozen=True)
class ModelStructure:
    """Discrete choices of a three-phase model (hashable; validated on construction).

    Attributes
    ----------
    variant : ``lp-iso`` | ``lp-cyl`` | ``hp-iso`` | ``hp-cyl``
    family : correlation family of both fields (``gaussian``, ``exponential``, ``matern``,
        ``damped_wave``); ``extras`` its fixed extra parameters (e.g. ``{"nu": 1.5}``)
    rule : truncation-rule family (``options.RULES``); ``rule_params`` its parameters
    order : canonical phases in the rule's roles (sequential: first, second, third)
    levels : level directions of F1 and F2
    f1, f1_dof, f2, f2_dof : field types (``gaussian`` | ``chi2``) and chi-square degrees of freedom
    axis : symmetry axis of cylindrical variants; ``n_knots`` : spectral knots of HP variants
    """

    variant: str = "lp-iso"
    family: str = "gaussian"
    extras: tuple[tuple[str, float], ...] | Mapping[str, float] = ()
    rule: str = "sequential"
    rule_params: tuple[tuple[str, float], ...] | Mapping[str, float] = ()
    order: tuple[str, str, str] = ("active", "pore", "electrolyte")
    levels: tuple[str, str] = ("lower", "upper")
    f1: str = "chi2"
    f1_dof: int = 3
    f2: str = "gaussian"
    f2_dof: int = 1
    axis: int = 0
    n_knots: int = 24

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        for name in ("f1", "f2"):
            if getattr(self, name) not in FIELD_TYPES:
                raise ValueError(f"{name} must be one of {', '.join(FIELD_TYPES)}, got {getattr(self, name)!r}")
        for name, kind in (("f1_dof", self.f1), ("f2_dof", self.f2)):
            try:
                object.__setattr__(self, name, checked_dof(kind, getattr(self, name)))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        if isinstance(self.axis, bool) or self.axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {self.axis!r}")
        if isinstance(self.n_knots, bool) or not isinstance(self.n_knots, numbers.Integral) or self.n_knots < 4:
            raise ValueError(f"n_knots must be an integer >= 4, got {self.n_knots!r}")
        rule = Rule(tuple(self.order), tuple(self.levels), self.rule, dict(_frozen(self.rule_params)))
        object.__setattr__(self, "order", tuple(PHASE_NAMES[p] for p in rule.order))
        object.__setattr__(self, "levels", rule.levels)
        object.__setattr__(self, "rule_params", rule.params)  # defaults filled in
        object.__setattr__(self, "extras", _frozen(self.extras))

    # -- views ---------------------------------------------------------------------------------
    def rule_choice(self) -> Rule:
        """The :class:`~napari_assb_twin.model.rules.Rule` of this structure."""
        return Rule(self.order, self.levels, self.rule, dict(self.rule_params))

    def infeasibility(self, volume_fractions: Mapping[str, float]) -> str | None:
        """None when the rule realises these volume fractions (by phase name), else the reason;
        lets a search skip a structure before any fit."""
        try:
            self.rule_choice().truncation(tuple(float(volume_fractions[p]) for p in PHASE_NAMES))
        except ValueError as exc:
            return str(exc)
        return None

    def replace(self, **changes: Any) -> "ModelStructure":
        """A copy with some choices changed (validated)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain values keyed like :class:`~napari_assb_twin.calibrate.CalibrationConfig`'s fields
        (``extras``, ``rule_params`` as dicts, ``order``, ``levels`` as tuples)."""
        d = asdict(self)
        d["extras"] = dict(self.extras)
        d["rule_params"] = dict(self.rule_params)
        d["order"], d["levels"] = tuple(self.order), tuple(self.levels)
        return d

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> "ModelStructure":
        """From any mapping holding (some of) the field names; other keys are ignored."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("order", "levels"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~napari_assb_twin.model.build_model` for this structure."""
        d = self.as_dict()
        extras = d.pop("extras")
        return {**d, **extras}

    def field_label(self, key: str) -> str:
        kind, dof = (self.f1, self.f1_dof) if key == "f1" else (self.f2, self.f2_dof)
        level = self.levels[0 if key == "f1" else 1]
        return "gauss" if kind == "gaussian" else f"chi2({dof_label(dof)}) {level}"

    @property
    def label(self) -> str:
        """Short readable name, e.g. ``sequential: active=chi2(3) lower(F1); pore=gauss(F2); electrolyte=rest; gaussian``."""
        a, b, c = self.order
        params = "".join(f", {k} {v:.3g}" for k, v in self.rule_params)
        return (f"{self.rule}{params}: {a}={self.field_label('f1')}(F1); {b}={self.field_label('f2')}(F2); "
                f"{c}=rest; {self.family}" + "".join(f" {k}={v:g}" for k, v in self.extras))
