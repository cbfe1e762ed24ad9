"""Truncation rules: which phase each pair of field values (F1, F2) belongs to (torch-free).

Two independent stationary fields F1, F2 (Gaussian or chi-square) are mapped to probability
coordinates u_i = CDF_i(F_i); independence makes (u1, u2) uniform on the unit square. A
:class:`TruncationRule` is a grid on that square (pluri-Gaussian truncation rule)::

    u1_edges: 0 = e_0 < e_1 < ... < e_m = 1     cuts of F1, as probabilities
    u2_edges: 0 = g_0 < g_1 < ... < g_n = 1     cuts of F2
    table[i][j] in {0, 1, 2}: the phase of the cell (e_i, e_{i+1}] x (g_j, g_{j+1}]

so every phase is a union of axis-aligned rectangles, its volume fraction is the sum of their areas
(exact, no simulation), the threshold of a cut e in field units is the marginal quantile Q_i(e),
and the model's C_ij factorise into each field's bivariate interval probabilities
(:mod:`~napari_assb_twin.fields.bivariate`). An upper level set {F >= t} of volume fraction v is the
cell u > 1 - v, a lower level set u <= v.

A :class:`RuleFamily` builds a rule from the volume fractions, the phases' roles (``order``), the
level directions of F1 and F2 (``levels``) and its own interpretable parameters; the families live
in :data:`RULE_FAMILIES`. A :class:`Rule` is one choice (family, order, levels, parameters) and
becomes a :class:`TruncationRule` for given volume fractions.

How three phases map onto two fields: the first role takes a set of F1 (its type: Gaussian or
chi-square(k); its level: lower or upper); the second a set of F2 (F2's type and level) where F1
left room; the third what remains. Choosing ``order`` and the two fields' types gives any phase any
field type and level, two phases at a time; the third phase's shape follows from the other two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..options import LEVELS
from ..phases import N_PHASES, PHASE_NAMES, phase_index

__all__ = [
    "Construction",
    "FRACTION_TOL",
    "RULE_FAMILIES",
    "Rule",
    "RuleFamily",
    "RuleParameter",
    "TruncationRule",
    "get_rule_family",
]

#: Cells narrower than this (in probability) are dropped: they hold no volume.
EPS = 1e-12
#: Tolerance of fraction checks (model files store fractions to 10 digits).
FRACTION_TOL = 1e-6


# ------------------------------------------------------------------------------------------------
# the grid
# ------------------------------------------------------------------------------------------------
def _edges(values: Sequence[float], name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers, got {values!r}") from None
    if len(out) < 2 or out[0] != 0.0 or out[-1] != 1.0:
        raise ValueError(f"{name} must start at 0 and end at 1 (probabilities), got {list(out)}")
    if any(not math.isfinite(v) for v in out) or any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {list(out)}")
    return out


@dataclass(frozen=True)
class TruncationRule:
    """A grid in probability coordinates assigning a phase to each cell (module docstring).

    Parameters
    ----------
    u1_edges, u2_edges
        Strictly increasing cuts of F1 and F2 as probabilities, from 0 to 1.
    table
        ``table[i][j]``: canonical phase (0 pore, 1 active, 2 electrolyte) of the cell
        (u1_edges[i], u1_edges[i+1]] x (u2_edges[j], u2_edges[j+1]].
    """

    u1_edges: tuple[float, ...]
    u2_edges: tuple[float, ...]
    table: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        e1 = _edges(self.u1_edges, "u1_edges")
        e2 = _edges(self.u2_edges, "u2_edges")
        m, n = len(e1) - 1, len(e2) - 1
        try:
            table = tuple(tuple(int(p) for p in row) for row in self.table)
        except (TypeError, ValueError):
            raise ValueError(f"table must be a list of rows of phase indices, got {self.table!r}") from None
        if len(table) != m or any(len(row) != n for row in table):
            raise ValueError(
                f"table must have {m} rows (one per u1 cell) of {n} phases (one per u2 cell), "
                f"got {[len(r) for r in table]}"
            )
        if any(p not in range(N_PHASES) for row in table for p in row):
            raise ValueError(f"table entries must be phase indices 0, 1, 2, got {[list(r) for r in table]}")
        object.__setattr__(self, "u1_edges", e1)
        object.__setattr__(self, "u2_edges", e2)
        object.__setattr__(self, "table", table)

    @property
    def shape(self) -> tuple[int, int]:
        """(number of F1 cells, number of F2 cells)."""
        return len(self.u1_edges) - 1, len(self.u2_edges) - 1

    def cells(self, phase: int | str) -> list[tuple[int, int]]:
        """The (i, j) cells of ``phase``."""
        p = phase_index(phase)
        return [(i, j) for i, row in enumerate(self.table) for j, q in enumerate(row) if q == p]

    def fractions(self) -> tuple[float, float, float]:
        """Exact volume fractions (pore, active, electrolyte): the areas of each phase's cells."""
        out = [0.0] * N_PHASES
        e1, e2 = self.u1_edges, self.u2_edges
        for i, row in enumerate(self.table):
            for j, p in enumerate(row):
                out[p] += (e1[i + 1] - e1[i]) * (e2[j + 1] - e2[j])
        return tuple(out)  # type: ignore[return-value]

    def indicator(self) -> list[list[list[float]]]:
        """``M[p][i][j]`` = 1.0 where cell (i, j) is phase ``p`` (nested lists, shape (3, m, n))."""
        return [[[1.0 if q == p else 0.0 for q in row] for row in self.table] for p in range(N_PHASES)]

    def uses_f2(self) -> bool:
        """False when every row has one phase (then F2 does not change the labels)."""
        return any(len(set(row)) > 1 for row in self.table)

    def to_dict(self) -> dict:
        return {"u1_edges": list(self.u1_edges), "u2_edges": list(self.u2_edges), "table": [list(r) for r in self.table]}

    def describe(self) -> str:
        """One line per phase: its cells as u-intervals."""
        e1, e2 = self.u1_edges, self.u2_edges
        parts = []
        for p in range(N_PHASES):
            cells = [f"u1 in ({e1[i]:.3g}, {e1[i + 1]:.3g}] & u2 in ({e2[j]:.3g}, {e2[j + 1]:.3g}]" for i, j in self.cells(p)]
            parts.append(f"{PHASE_NAMES[p]}: " + (" or ".join(cells) if cells else "empty"))
        return "; ".join(parts)


def compact_rule(u1_edges: Sequence[float], u2_edges: Sequence[float], table: Sequence[Sequence[int]]) -> TruncationRule:
    """A :class:`TruncationRule` from cuts that may coincide: empty cells are dropped and adjacent
    rows / columns with the same phases merged (fewer cuts, the same phases everywhere)."""
    e1, e2 = [float(v) for v in u1_edges], [float(v) for v in u2_edges]
    tab = [list(r) for r in table]
    keep_r = [i for i in range(len(e1) - 1) if e1[i + 1] - e1[i] > EPS]
    keep_c = [j for j in range(len(e2) - 1) if e2[j + 1] - e2[j] > EPS]
    tab = [[tab[i][j] for j in keep_c] for i in keep_r]
    e1 = [0.0] + [e1[i + 1] for i in keep_r[:-1]] + [1.0]
    e2 = [0.0] + [e2[j + 1] for j in keep_c[:-1]] + [1.0]
    # merge identical neighbouring rows, then columns
    rows, r_edges = [tab[0]], [0.0]
    for i in range(1, len(tab)):
        if tab[i] == rows[-1]:
            continue
        rows.append(tab[i])
        r_edges.append(e1[i])
    r_edges.append(1.0)
    cols = list(zip(*rows))
    keep, c_edges = [0], [0.0]
    for j in range(1, len(cols)):
        if cols[j] == cols[keep[-1]]:
            continue
        keep.append(j)
        c_edges.append(e2[j])
    c_edges.append(1.0)
    return TruncationRule(tuple(r_edges), tuple(c_edges), tuple(tuple(r[j] for j in keep) for r in rows))


# ------------------------------------------------------------------------------------------------
# families
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleParameter:
    """An interpretable continuous parameter of a rule family (fixed during gradient calibration,
    like the volume fractions; model selection and the generator vary it)."""

    name: str
    default: float
    low: float
    high: float
    doc: str


Builder = Callable[[tuple[float, float, float], tuple[int, int, int], tuple[str, str], Mapping[str, float]], TruncationRule]
Bounds = Callable[[tuple[float, float, float], tuple[int, int, int]], Mapping[str, tuple[float, float]]]


@dataclass(frozen=True)
class RuleFamily:
    """A named way of building a :class:`TruncationRule` from fractions and interpretable choices.

    ``roles`` names the three positions of ``order`` (e.g. core, coat, rest); ``levels`` are the
    level directions of F1 and F2 the family uses; ``feasible`` gives the range of each parameter
    that the volume fractions allow (narrower than the static ``low``..``high``).
    """

    name: str
    doc: str
    roles: tuple[str, str, str]
    parameters: tuple[RuleParameter, ...]
    builder: Builder = field(repr=False)
    feasible: Bounds | None = field(default=None, repr=False)

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.parameters}

    def check_params(self, params: Mapping[str, float]) -> dict[str, float]:
        """Known names, finite values within the static bounds; missing ones get their defaults."""
        known = {p.name: p for p in self.parameters}
        unknown = set(params) - set(known)
        if unknown:
            allowed = ", ".join(known) or "none"
            raise ValueError(f"rule {self.name!r} has no parameter(s) {', '.join(sorted(unknown))}; its parameters: {allowed}")
        out = self.defaults()
        for name, value in params.items():
            p = known[name]
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"rule parameter {name} must be a number, got {value!r}") from None
            if not (math.isfinite(v) and p.low <= v <= p.high):
                raise ValueError(f"rule parameter {name}={value!r} must lie in [{p.low}, {p.high}]: {p.doc}")
            out[name] = v
        return out

    def bounds(self, fractions: Sequence[float], order: Sequence[int]) -> dict[str, tuple[float, float]]:
        """Feasible range of each parameter for these volume fractions and roles."""
        out = {p.name: (p.low, p.high) for p in self.parameters}
        if self.feasible is not None:
            for k, (lo, hi) in self.feasible(tuple(fractions), tuple(order)).items():
                out[k] = (max(out[k][0], lo), min(out[k][1], hi))
        return out

    def build(
        self, fractions: Sequence[float], order: Sequence[int], levels: Sequence[str], params: Mapping[str, float]
    ) -> TruncationRule:
        """The rule for these canonical-order fractions (pore, active, electrolyte); its fractions
        equal ``fractions`` exactly. Raises ValueError naming the infeasible parameter."""
        vf = tuple(float(v) for v in fractions)
        checked = self.check_params(params)
        for name, (lo, hi) in self.bounds(vf, order).items():
            v = checked[name]
            if not lo - 1e-12 <= v <= hi + 1e-12:
                roles = ", ".join(f"{r} {PHASE_NAMES[p]} {vf[p]:.4g}" for r, p in zip(self.roles, order))
                raise ValueError(
                    f"rule {self.name!r}: {name}={v:.4g} is infeasible for these volume fractions ({roles}); "
                    f"it must lie in [{lo:.4g}, {hi:.4g}]"
                )
        return self.builder(vf, tuple(order), tuple(levels), checked)


def _level_cut(p: float, level: str) -> tuple[float, float]:
    """The u-interval of a level set of probability ``p``: lower (0, p], upper (1 - p, 1]."""
    return (0.0, p) if level == "lower" else (1.0 - p, 1.0)


def _sequential(vf, order, levels, params) -> TruncationRule:
    a, b, c = order
    if vf[a] >= 1.0 - EPS:
        raise ValueError(f"the first phase ({PHASE_NAMES[a]}) cannot fill the whole volume (fraction 1)")
    return _band_then_split(vf, order, levels, _level_cut(vf[a], levels[0]))


def _band_then_split(vf, order, levels, band: tuple[float, float]) -> TruncationRule:
    """Phase a on the F1 interval ``band``; outside it, b = level set of F2 (levels[1]), c = rest."""
    a, b, c = order
    p2 = min(max(vf[b] / (1.0 - vf[a]), 0.0), 1.0) if vf[a] < 1.0 else 0.0
    lo2, hi2 = _level_cut(p2, levels[1])
    split = (b, c) if levels[1] == "lower" else (c, b)  # phases of (0, g] and (g, 1]
    g = hi2 if levels[1] == "lower" else lo2
    rest = list(split)
    lo, hi = band
    return compact_rule((0.0, lo, hi, 1.0), (0.0, g, 1.0), (rest, [a, a], rest))


def _interval(vf, order, levels, params) -> TruncationRule:
    a = order[0]
    room = 1.0 - vf[a]
    if room <= EPS:
        raise ValueError(f"the band phase ({PHASE_NAMES[a]}) cannot fill the whole volume (fraction 1)")
    shift = params["offset"] * room
    band = (shift, shift + vf[a]) if levels[0] == "lower" else (1.0 - shift - vf[a], 1.0 - shift)
    return _band_then_split(vf, order, levels, band)


def _coating_bounds(vf, order):
    core, coat, _ = order
    room = 1.0 - vf[core]
    lo = vf[coat] / room if room > EPS else math.inf
    return {"coverage": (lo, 1.0)}


def _adhering(vf, order, levels, params) -> TruncationRule:
    core, coat, rest = order
    kappa, alpha = params["coverage"], params["adhesion"]
    room = 1.0 - vf[core]
    if room <= EPS:
        raise ValueError(f"the core phase ({PHASE_NAMES[core]}) cannot fill the whole volume (fraction 1)")
    # the shell of F1 next to the core holds the adhering part of the coat as patches of F2 of
    # probability kappa; the rest of the room holds the remainder as a level set of F2 of probability q.
    # kappa >= coat / room (the family's bounds) keeps both inside the room for every adhesion; the min
    # absorbs the bounds' 1e-12 tolerance.
    shell = min(alpha * vf[coat] / kappa, room)
    free = room - shell
    left = (1.0 - alpha) * vf[coat]
    q = min(left / free, 1.0) if free > EPS else 0.0
    cuts = sorted({0.0, 1.0, kappa, q} if levels[1] == "lower" else {0.0, 1.0, 1.0 - kappa, 1.0 - q})

    def row(p: float) -> list[int]:  # coat on F2's level set of probability p, rest elsewhere
        out = []
        for lo, hi in zip(cuts, cuts[1:]):
            mid = 0.5 * (lo + hi)
            inside = mid <= p if levels[1] == "lower" else mid >= 1.0 - p
            out.append(coat if inside else rest)
        return out

    if levels[0] == "lower":
        e1 = (0.0, vf[core], vf[core] + shell, 1.0)
        rows = ([core] * (len(cuts) - 1), row(kappa), row(q))
    else:
        e1 = (0.0, free, free + shell, 1.0)
        rows = (row(q), row(kappa), [core] * (len(cuts) - 1))
    return compact_rule(e1, cuts, rows)


def _coating(vf, order, levels, params) -> TruncationRule:
    # all of the coat on the core: the adhering rule at adhesion 1 (no level set in the rest of the room)
    return _adhering(vf, order, levels, {"coverage": params["coverage"], "adhesion": 1.0})


#: Registered rule families (name -> family); :func:`register_rule_family` adds one.
RULE_FAMILIES: dict[str, RuleFamily] = {}


def register_rule_family(family: RuleFamily) -> RuleFamily:
    """Add a family to :data:`RULE_FAMILIES` (its name must also be listed in ``options.RULES`` for
    the CLI and the docks to offer it)."""
    RULE_FAMILIES[family.name] = family
    return family


register_rule_family(RuleFamily(
    "sequential",
    "first = level set of F1 (levels[0]); second = level set of F2 (levels[1]) outside the first; third = the rest",
    ("first", "second", "third"),
    (),
    _sequential,
))
register_rule_family(RuleFamily(
    "interval",
    "band = {a < F1 <= b} (a shell of F1); second = level set of F2 (levels[1]) outside the band; third = the rest",
    ("band", "second", "third"),
    (RuleParameter(
        "offset", 0.5, 0.0, 1.0,
        "probability of F1 on the levels[0] side of the band, as a fraction of what the band leaves: "
        "0 = the level set of the sequential rule, 1 = the opposite level set, in between a shell",
    ),),
    _interval,
))
#: The coating and adhering rules' coat coverage (one parameter, one meaning).
_COVERAGE = RuleParameter(
    "coverage", 0.7, 1e-6, 1.0,
    "expected fraction of the core's surface covered by the coat (1 = a closed shell); at least "
    "coat fraction / (1 - core fraction), where the shell fills all the room",
)
register_rule_family(RuleFamily(
    "coating",
    "core = level set of F1 (levels[0]); coat = the shell of F1 around the core where a level set of F2 "
    "(levels[1]) of probability `coverage` lies (patches); rest = everything else",
    ("core", "coat", "rest"),
    (_COVERAGE,),
    _coating,
    _coating_bounds,
))


register_rule_family(RuleFamily(
    "adhering",
    "core = level set of F1 (levels[0]); coat = patches of F2 (levels[1], probability `coverage`) on the shell "
    "of F1 around the core, holding the fraction `adhesion` of the coat, and a level set of F2 in the rest of "
    "the room holding the remainder; rest = everything else (adhesion 0: the sequential rule; 1: coating)",
    ("core", "coat", "rest"),
    (_COVERAGE, RuleParameter(
        "adhesion", 0.5, 0.0, 1.0,
        "fraction of the coat that lies on the core's surface (0 = all of it spread through the rest, "
        "as in the sequential rule; 1 = all on the core, as in the coating rule)",
    )),
    _adhering,
    _coating_bounds,
))


def get_rule_family(name: str) -> RuleFamily:
    """The registered family ``name`` (ValueError listing the known ones)."""
    if name not in RULE_FAMILIES:
        raise ValueError(f"unknown rule family {name!r}; use one of {', '.join(RULE_FAMILIES)}")
    return RULE_FAMILIES[name]


# ------------------------------------------------------------------------------------------------
# one choice
# ------------------------------------------------------------------------------------------------
def _order(order: Sequence[int | str]) -> tuple[int, int, int]:
    try:
        out = tuple(phase_index(p) for p in order)
    except TypeError:
        raise ValueError(f"order must be three phases, got {order!r}") from None
    if sorted(out) != [0, 1, 2]:
        raise ValueError(f"order must be a permutation of the 3 phases, got {tuple(order)}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class Rule:
    """One truncation-rule choice: family, the phases' roles, level directions and parameters.

    ``order`` gives the canonical phases in the family's roles (``sequential``: first, second,
    third); ``levels`` the level directions of F1 and F2 (``"lower"``: {F <= t}, ``"upper"``:
    {F >= t}); ``params`` the family's continuous parameters (missing ones take the defaults).
    Hashable; :meth:`truncation` gives the grid for given volume fractions.
    """

    order: tuple[int, int, int] = (1, 0, 2)
    levels: tuple[str, str] = ("lower", "upper")
    family: str = "sequential"
    params: tuple[tuple[str, float], ...] | Mapping[str, float] = ()

    def __post_init__(self) -> None:
        fam = get_rule_family(self.family)
        levels = tuple(self.levels)
        if len(levels) != 2 or any(lev not in LEVELS for lev in levels):
            raise ValueError(f"levels must be two of {LEVELS} (F1, F2), got {self.levels!r}")
        params = dict(self.params) if not isinstance(self.params, Mapping) else dict(self.params)
        checked = fam.check_params(params)
        object.__setattr__(self, "order", _order(self.order))
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "params", tuple(sorted(checked.items())))

    @property
    def parameters(self) -> dict[str, float]:
        """The family's parameters as a dict."""
        return dict(self.params)

    @property
    def spec(self) -> RuleFamily:
        return RULE_FAMILIES[self.family]

    def truncation(self, fractions: Sequence[float]) -> TruncationRule:
        """The grid realising the canonical-order ``fractions`` exactly (ValueError when infeasible)."""
        return self.spec.build(fractions, self.order, self.levels, self.parameters)

    def bounds(self, fractions: Sequence[float]) -> dict[str, tuple[float, float]]:
        """Feasible range of each parameter for these fractions."""
        return self.spec.bounds(fractions, self.order)

    def with_params(self, **params: float) -> "Rule":
        return Rule(self.order, self.levels, self.family, {**self.parameters, **params})

    def describe(self) -> str:
        """Human-readable roles, e.g. ``coating: core active (lower F1), coat electrolyte ...``."""
        roles = self.spec.roles
        a, b, c = (PHASE_NAMES[p] for p in self.order)
        if self.family == "sequential":
            return f"{a} = {self.levels[0]}(F1); {b} = {self.levels[1]}(F2) \\ {a}; {c} = rest"
        extra = ", ".join(f"{k} {v:.3g}" for k, v in self.params)
        return (f"{self.family}: {roles[0]} {a} ({self.levels[0]} F1), {roles[1]} {b} ({self.levels[1]} F2), "
                f"{roles[2]} {c}" + (f"; {extra}" if extra else ""))

    def to_dict(self) -> dict:
        """JSON-ready: family, roles -> phase names, levels of f1 / f2, parameters."""
        return {
            "family": self.family,
            "phases": {r: PHASE_NAMES[p] for r, p in zip(self.spec.roles, self.order)},
            "levels": {"f1": self.levels[0], "f2": self.levels[1]},
            "parameters": self.parameters,
        }


#: The compatible name of today's construction: ``Construction(order, levels)`` is a sequential rule.
Construction = Rule
