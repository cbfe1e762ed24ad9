"""Canonical phases of a three-phase electrode and their display colours.

Every phase map in this package is a ``uint8`` array with values 0 = pore, 1 = active material
(NMC), 2 = solid electrolyte (METHOD.md section 2). Colours are shared by every layer, plot and
report so a phase looks the same everywhere.
"""

from __future__ import annotations

PORE: int = 0
ACTIVE: int = 1
ELECTROLYTE: int = 2
N_PHASES: int = 3
PHASE_NAMES: tuple[str, str, str] = ("pore", "active", "electrolyte")
PHASE_INDEX: dict[str, int] = {name: i for i, name in enumerate(PHASE_NAMES)}

#: RGBA in 0..1, colour-blind safe (Okabe-Ito): pore dark grey, active orange, electrolyte blue.
PHASE_COLORS: dict[int, tuple[float, float, float, float]] = {
    PORE: (0.20, 0.20, 0.20, 1.0),
    ACTIVE: (0.902, 0.624, 0.0, 1.0),
    ELECTROLYTE: (0.337, 0.706, 0.914, 1.0),
}
#: Hex versions of :data:`PHASE_COLORS` for matplotlib and HTML.
PHASE_HEX: dict[int, str] = {
    p: "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in rgba[:3]))
    for p, rgba in PHASE_COLORS.items()
}


def phase_index(name_or_index: str | int) -> int:
    """Return the canonical index of a phase given by name (``"pore"``...) or index.

    Raises
    ------
    ValueError
        If the name or index is not one of the three phases.
    """
    if isinstance(name_or_index, str):
        key = name_or_index.strip().lower()
        if key in PHASE_INDEX:
            return PHASE_INDEX[key]
        if key.isdigit():
            name_or_index = int(key)
        else:
            raise ValueError(
                f"unknown phase {name_or_index!r}; use one of {', '.join(PHASE_NAMES)} or 0, 1, 2"
            )
    idx = int(name_or_index)
    if not 0 <= idx < N_PHASES:
        raise ValueError(f"phase index {idx} out of range; phases are 0 (pore), 1 (active), 2 (electrolyte)")
    return idx
