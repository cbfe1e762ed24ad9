"""The versioned JSON model file (format ``assb-twin-model``, documented in docs/model-format.md).

Lengths in files are physical (px times ``voxel_size``, in ``unit``); frequencies of spectral knots
are in cycles per unit. Loading validates every key and names the bad one with the allowed values.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..fields.bridged import checked_dof, is_bridged
from ..fields.correlation import FAMILIES
from ..io.atomic import atomic_write_text
from ..fields.covariance import ANISOTROPIES, ParametricCovariance, SpectralCovariance
from ..options import FIELD_TYPES, LEVELS, RULES
from ..phases import PHASE_NAMES
from .excursion import FieldModel, ThreePhaseModel
from .rules import FRACTION_TOL, RULE_FAMILIES, Rule, TruncationRule

FORMAT = "assb-twin-model"
#: Written version: 2 adds ``rule`` (truncation-rule family, roles, levels, parameters, grid); 3 allows
#: a fractional ``dof`` in (1, 2), the bridged chi-square field. A model without one is still written
#: as version 2, so older readers keep reading every file they can represent.
VERSION = 3
#: Versions read: 1 (``construction``, the sequential rule) and 2.
READABLE_VERSIONS = (1, 2, 3)
TOP_KEYS = (
    "format", "version", "voxel_size", "unit", "phases", "volume_fractions", "construction", "rule", "fields", "provenance",
)
RULE_KEYS = ("family", "phases", "levels", "parameters", "grid")


class ModelFileError(ValueError):
    """A model file is malformed; the message names the key and what is allowed."""


def _fail(path: str, msg: str) -> None:
    raise ModelFileError(f"model file: {path}: {msg}")


def _num(d: Mapping, key: str, where: str, positive: bool = True) -> float:
    if key not in d:
        _fail(where, f"missing key {key!r}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        _fail(f"{where}.{key}", f"must be a {'positive ' if positive else ''}finite number, got {v!r}")
    return float(v)


def _choice(d: Mapping, key: str, where: str, allowed, default=None):
    if key not in d:
        if default is not None:
            return default
        _fail(where, f"missing key {key!r} (allowed values: {', '.join(map(str, allowed))})")
    if d[key] not in allowed:
        _fail(f"{where}.{key}", f"{d[key]!r} is not allowed; use one of {', '.join(map(str, allowed))}")
    return d[key]


def _check_keys(d: Any, where: str, allowed, required=()) -> None:
    if not isinstance(d, Mapping):
        _fail(where, f"must be a JSON object, got {type(d).__name__}")
    unknown = set(d) - set(allowed)
    if unknown:
        _fail(where, f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(allowed)}")
    for k in required:
        if k not in d:
            _fail(where, f"missing key {k!r}")


# -- to dict ------------------------------------------------------------------------------------
def _covariance_to_dict(cov, vs: float) -> dict:
    if isinstance(cov, ParametricCovariance):
        ls = [v * vs for v in cov.length_scale]
        out: dict[str, Any] = {"family": cov.family.name}
        out["length_scale"] = ls[0] if cov.anisotropy == "isotropic" else {"axial": ls[0], "inplane": ls[1]}
        out.update(cov.extras)
        return out
    dens = np.exp(cov.log_density.detach().cpu().double().numpy())
    dens = dens / dens.max()
    st = [float(v) for v in cov.stretch]
    if cov.anisotropy == "isotropic":
        return {
            "family": "spectral",
            "frequency": (cov.knots.cpu().double().numpy() / vs).tolist(),
            "density": dens.tolist(),
            "stretch": st[0],
        }
    return {
        "family": "spectral",
        "frequency_inplane": (cov.knots_inplane.cpu().double().numpy() / vs).tolist(),
        "frequency_axial": (cov.knots_axial.cpu().double().numpy() / vs).tolist(),
        "density": dens.tolist(),
        "stretch": {"axial": st[0], "inplane": st[1]},
    }


def model_to_dict(model: ThreePhaseModel, provenance: Mapping | None = None) -> dict:
    """The model as a JSON-ready dict (physical lengths); ``provenance`` is merged into the model's."""
    vs = model.voxel_size
    fields = {}
    for key, field in model.fields.items():
        cov = field.covariance
        fields[key] = {
            "type": field.kind,
            "dof": field.dof,
            "anisotropy": cov.anisotropy,
            "axis": cov.axis,
            "covariance": _covariance_to_dict(cov, vs),
        }
    prov = dict(model.provenance)
    prov.update(provenance or {})
    return {
        "format": FORMAT,
        "version": VERSION if any(is_bridged(f.dof) for f in model.fields.values()) else 2,
        "voxel_size": vs,
        "unit": model.unit,
        "phases": {str(i): name for i, name in enumerate(PHASE_NAMES)},
        "volume_fractions": {k: round(v, 10) for k, v in model.volume_fractions.items()},
        "rule": {**model.rule.to_dict(), "grid": model.truncation.to_dict()},
        "fields": fields,
        "provenance": prov,
    }


# -- from dict ----------------------------------------------------------------------------------
def _covariance_from_dict(d: Any, where: str, anisotropy: str, axis: int, vs: float):
    if not isinstance(d, Mapping):
        _fail(where, "must be a JSON object with a 'family' key")
    family = _choice(d, "family", where, sorted(FAMILIES) + ["spectral"])
    if family == "spectral":
        try:
            if anisotropy == "isotropic":
                _check_keys(d, where, ("family", "frequency", "density", "stretch"), ("frequency", "density"))
                knots = np.asarray(d["frequency"], dtype=float) * vs
                if knots.ndim != 1 or knots.size < 2:
                    _fail(f"{where}.frequency", f"needs a list of at least 2 knot frequencies (cycles per unit), "
                          f"got {d['frequency']!r}")
                st = d.get("stretch", 1.0)
            else:
                _check_keys(
                    d, where, ("family", "frequency_inplane", "frequency_axial", "density", "stretch"),
                    ("frequency_inplane", "frequency_axial", "density"),
                )
                knots = (np.asarray(d["frequency_inplane"], float) * vs, np.asarray(d["frequency_axial"], float) * vs)
                for key, k in zip(("frequency_inplane", "frequency_axial"), knots):
                    if k.ndim != 1 or k.size < 2:
                        _fail(f"{where}.{key}", f"needs a list of at least 2 knot frequencies (cycles per unit), "
                              f"got {d[key]!r}")
                st = d.get("stretch", {"axial": 1.0, "inplane": 1.0})
                if isinstance(st, Mapping):
                    st = (st["axial"], st["inplane"])
            return SpectralCovariance(knots, np.asarray(d["density"], dtype=float), anisotropy, axis, st)
        except ModelFileError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            _fail(where, f"invalid spectral covariance: {exc}")
    extras_allowed = tuple(FAMILIES[family].extras)
    _check_keys(d, where, ("family", "length_scale", *extras_allowed), ("length_scale",))
    ls = d["length_scale"]
    if anisotropy == "isotropic":
        if isinstance(ls, Mapping):
            _fail(f"{where}.length_scale", "an isotropic field takes one number, not {axial, inplane}")
        length = _num(d, "length_scale", where) / vs
    else:
        if not isinstance(ls, Mapping):
            _fail(f"{where}.length_scale", 'a cylindrical field takes {"axial": a, "inplane": b}')
        _check_keys(ls, f"{where}.length_scale", ("axial", "inplane"), ("axial", "inplane"))
        length = (_num(ls, "axial", f"{where}.length_scale") / vs, _num(ls, "inplane", f"{where}.length_scale") / vs)
    extras = {k: d[k] for k in extras_allowed if k in d}
    try:
        return ParametricCovariance(family, length, anisotropy, axis, **extras)
    except ValueError as exc:
        _fail(where, str(exc))


def model_from_dict(d: Any) -> ThreePhaseModel:
    """Validate a model-file dict and build the model (raises :class:`ModelFileError`)."""
    _check_keys(d, "<top>", TOP_KEYS, ("format", "version", "volume_fractions", "fields"))
    if d["format"] != FORMAT:
        _fail("format", f"expected {FORMAT!r}, got {d['format']!r} (is this an assb-twin model file?)")
    if isinstance(d["version"], bool) or d["version"] not in READABLE_VERSIONS:
        _fail("version", f"version {d['version']!r} is not supported; this package reads versions "
              f"{', '.join(map(str, READABLE_VERSIONS))}")
    if "voxel_size" not in d:  # lengths are physical: a guessed 1.0 puts the twin on the wrong grid
        _fail("voxel_size", "missing; every length in a model file is physical (px x voxel_size, in 'unit'), so the "
              'voxel size is needed to put the twin on its grid: add e.g. "voxel_size": 0.25')
    vs = _num(d, "voxel_size", "<top>")
    if "unit" not in d:
        _fail("unit", 'missing; add the unit of voxel_size and of every length, e.g. "unit": "um" ("px" when the '
              "lengths are in voxels)")
    unit = d["unit"]
    if not isinstance(unit, str) or not unit:
        _fail("unit", f"must be a non-empty string such as 'um', got {unit!r}")
    phases = d.get("phases", {str(i): n for i, n in enumerate(PHASE_NAMES)})
    expected_phases = {str(i): n for i, n in enumerate(PHASE_NAMES)}
    if phases != expected_phases:
        _fail("phases", f"must be {json.dumps(expected_phases)} (canonical labels), got {json.dumps(phases)}")
    vf_d = d["volume_fractions"]
    _check_keys(vf_d, "volume_fractions", PHASE_NAMES, PHASE_NAMES)
    vf = {k: _num(vf_d, k, "volume_fractions", positive=False) for k in PHASE_NAMES}
    rule = _rule_from_dict(d)
    fd = d["fields"]
    _check_keys(fd, "fields", ("f1", "f2"), ("f1", "f2"))
    fields = []
    for key in ("f1", "f2"):
        f = fd[key]
        where = f"fields.{key}"
        _check_keys(f, where, ("type", "dof", "anisotropy", "axis", "covariance"), ("type", "covariance"))
        kind = _choice(f, "type", where, FIELD_TYPES)
        dof = f.get("dof", 1)
        if kind == "chi2":
            try:
                dof = checked_dof(kind, dof)
            except ValueError as exc:
                _fail(f"{where}.dof", str(exc))
            if is_bridged(dof) and d["version"] < 3:
                _fail(f"{where}.dof", f"a fractional dof ({dof!r}: the bridged field) needs version 3 of the format; "
                      'set "version": 3')
        if kind != "chi2" and dof != 1:  # would be dropped silently: the field is one Gaussian
            _fail(f"{where}.dof", f"a {kind} field has no degrees of freedom (dof 1), got {dof!r}: set "
                  f'"type": "chi2" for a chi-square field of {dof!r} degrees of freedom, or remove "dof"')
        aniso = _choice(f, "anisotropy", where, ANISOTROPIES, default="isotropic")
        axis = _choice(f, "axis", where, (0, 1, 2), default=0) if "axis" in f else 0
        cov = _covariance_from_dict(f["covariance"], f"{where}.covariance", aniso, axis, vs)
        fields.append(FieldModel(kind, cov, dof))
    prov = d.get("provenance", {})
    if not isinstance(prov, Mapping):
        _fail("provenance", "must be a JSON object")
    try:
        model = ThreePhaseModel(rule, fields[0], fields[1], vf, vs, unit, prov)
    except ValueError as exc:
        _fail("rule" if "rule" in d else "volume_fractions", str(exc))
    if isinstance(d.get("rule"), Mapping) and "grid" in d["rule"]:
        _check_grid(d["rule"]["grid"], model)
    return model


def _construction_from_dict(con: Any) -> Rule:
    """Version 1's ``construction`` (first / second / third): the sequential rule."""
    _check_keys(con, "construction", ("first", "second", "third"), ("first", "second", "third"))
    order, levels = [], []
    for key in ("first", "second", "third"):
        part = con[key]
        if key == "third" and isinstance(part, str):
            part = {"phase": part}
        allowed = ("phase",) if key == "third" else ("phase", "level")
        _check_keys(part, f"construction.{key}", allowed, allowed)
        order.append(_choice(part, "phase", f"construction.{key}", PHASE_NAMES))
        if key != "third":
            levels.append(_choice(part, "level", f"construction.{key}", LEVELS))
    if len(set(order)) != 3:
        _fail("construction", f"first, second and third must be three different phases, got {order}")
    return Rule(tuple(order), tuple(levels), "sequential")


def _rule_from_dict(d: Mapping) -> Rule:
    """The rule of a file: ``construction`` (versions 1 and 2) or ``rule`` (version 2)."""
    if "rule" in d and d["version"] < 2:
        _fail("rule", "truncation rules need version 2 of the format; set \"version\": 2")
    if ("rule" in d) == ("construction" in d):
        _fail("<top>", "give exactly one of 'rule' (version 2) and 'construction' (the sequential rule)")
    if "construction" in d:
        return _construction_from_dict(d["construction"])
    rd = d["rule"]
    _check_keys(rd, "rule", RULE_KEYS, ("family", "phases", "levels"))
    family = _choice(rd, "family", "rule", RULES)
    spec = RULE_FAMILIES[family]
    _check_keys(rd["phases"], "rule.phases", spec.roles, spec.roles)
    order = [_choice(rd["phases"], role, "rule.phases", PHASE_NAMES) for role in spec.roles]
    if len(set(order)) != 3:
        _fail("rule.phases", f"{', '.join(spec.roles)} must be three different phases, got {order}")
    _check_keys(rd["levels"], "rule.levels", ("f1", "f2"), ("f1", "f2"))
    levels = [_choice(rd["levels"], k, "rule.levels", LEVELS) for k in ("f1", "f2")]
    params = rd.get("parameters", {})
    names = [p.name for p in spec.parameters]
    _check_keys(params, "rule.parameters", names)
    for k in params:
        _num(params, k, "rule.parameters", positive=False)
    try:
        return Rule(tuple(order), tuple(levels), family, params)
    except ValueError as exc:
        _fail("rule.parameters", str(exc))


def _check_grid(grid: Any, model: ThreePhaseModel) -> None:
    """A file's ``rule.grid`` must be a valid grid with the file's fractions and the one its
    family, roles, levels and parameters build (it is written for readers, not trusted)."""
    _check_keys(grid, "rule.grid", ("u1_edges", "u2_edges", "table"), ("u1_edges", "u2_edges", "table"))
    try:
        tr = TruncationRule(grid["u1_edges"], grid["u2_edges"], grid["table"])
    except (ValueError, TypeError) as exc:
        _fail("rule.grid", str(exc))
    have = np.array(tr.fractions())
    want = np.array([model.volume_fractions[p] for p in PHASE_NAMES])
    if np.abs(have - want).max() > FRACTION_TOL:
        _fail("rule.grid", f"its cells give volume fractions {have.round(6).tolist()} "
              f"(pore, active, electrolyte) but volume_fractions are {want.round(6).tolist()}")
    built = model.truncation
    same = tr.table == built.table and all(
        len(x) == len(y) and np.allclose(x, y, atol=FRACTION_TOL)
        for x, y in ((tr.u1_edges, built.u1_edges), (tr.u2_edges, built.u2_edges))
    )
    if not same:
        _fail("rule.grid", f"does not match the {model.rule.family} rule with these phases, levels and "
              f"parameters, which gives {json.dumps(built.to_dict())}; fix or delete 'grid'")


def default_provenance() -> dict:
    """Package, torch and platform versions and the date, for a model file's provenance."""
    import torch

    from .. import __version__

    return {
        "package": f"napari-assb-twin {__version__}",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def save_model(model: ThreePhaseModel, path: str | os.PathLike, provenance: Mapping | None = None,
               overwrite: bool = True) -> Path:
    """Write the model file atomically (temp file + rename, so no half-written file is ever left).

    ``overwrite=False``: only if ``path`` still does not exist when the file is published.
    """
    path = Path(path)
    data = model_to_dict(model, {**default_provenance(), **(provenance or {})})
    text = json.dumps(data, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text, overwrite=overwrite)  # unique temp name, final mode from the umask


def _too_deep(p: Path) -> str:
    return (f"model file {p}: the JSON nests too deeply to be a model file (check that this is a model "
            "written by assb-twin calibrate)")


def load_model(path: str | os.PathLike | Mapping) -> ThreePhaseModel:
    """Read and validate a model file (or an already parsed dict)."""
    if isinstance(path, Mapping):
        return model_from_dict(path)
    p = Path(path)
    if p.is_dir():
        raise ModelFileError(f"model file {p} is a folder, not a model file; give the model's .json file")
    if not p.is_file():
        raise ModelFileError(f"model file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8-sig", errors="replace")  # a byte-order mark (Windows editors) is fine
    except OSError as exc:
        raise ModelFileError(f"model file {p} cannot be read: {exc.strerror or exc}") from None
    if not text.strip():
        raise ModelFileError(f"model file {p} is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"model file {p} is not valid JSON: {exc}") from None
    except RecursionError:  # e.g. 100000 nested '[': the C parser gives up without a position
        raise ModelFileError(_too_deep(p)) from None
    except ValueError as exc:  # an integer of more than 4300 digits (Python's conversion limit)
        raise ModelFileError(f"model file {p} holds a number too long to read ({str(exc).split(':')[0]}); no model "
                             "value needs that many digits: check the file") from None
    try:
        return model_from_dict(data)
    except ModelFileError as exc:
        raise ModelFileError(f"{p}: {exc}") from None
    except RecursionError:
        raise ModelFileError(_too_deep(p)) from None
