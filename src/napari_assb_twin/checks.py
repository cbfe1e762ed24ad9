"""The one check of seeds, shapes and units, shared by the Python API, the jobs and the CLI.

Torch-free and Qt-free. The API (``ThreePhaseModel.generate``, ``PhaseMap``), the jobs and the CLI's
argument parsers all call these, so a string, a float, a bool or a negative value is refused the
same way, with the same words, wherever it comes from. The CLI parses its text with the
``parse_*`` twins, which turn digits into an ``int`` and then apply the same check.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

__all__ = ["SEED_MAX", "check_seed", "check_shape", "check_unit", "parse_int_text", "parse_seed"]

#: Largest seed: torch and NumPy seed from a signed 64-bit integer.
SEED_MAX: int = 2**63 - 1
#: Longest integer text read (Python refuses int() of more than 4300 digits with a confusing message).
_MAX_DIGITS = 30


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _is_integer(value: Any) -> bool:
    """An int (NumPy ints too), never a bool, a float or a string."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as a Python int in ``0..SEED_MAX``, or one ``ValueError`` naming ``name``.

    Refuses strings, floats (``1.5`` and ``1.0`` alike), bools and negative values.
    """
    if not _is_integer(seed) or not 0 <= int(seed) <= SEED_MAX:
        raise ValueError(f"{name} must be an integer in 0..{SEED_MAX} (2^63 - 1), got {_short(seed)}")
    return int(seed)


def parse_int_text(text: str, what: str) -> int:
    """Digits of a command-line value as an int; one clear ``ValueError`` otherwise (never 4300-digit text)."""
    s = str(text).strip()
    body = s[1:] if s[:1] in "+-" else s
    if not body.isdigit() or not body.isascii():
        raise ValueError(f"{what} must be an integer, got {_short(s)}")
    if len(body) > _MAX_DIGITS:
        raise ValueError(f"{what} must be an integer of at most {_MAX_DIGITS} digits, got one of {len(body)} digits")
    return int(s)


def parse_seed(text: str, name: str = "seed") -> int:
    """A seed typed on the command line: digits only, then :func:`check_seed`."""
    try:
        value = parse_int_text(text, name)
    except ValueError:
        raise ValueError(f"{name} must be an integer in 0..{SEED_MAX} (2^63 - 1), got {_short(str(text).strip())}") from None
    return check_seed(value, name)


def check_shape(shape: Any, ndims: Sequence[int] = (3,), name: str = "shape", minimum: int = 2) -> tuple[int, ...]:
    """A shape as a tuple of ints, each ``>= minimum``, with a length in ``ndims``; else one ``ValueError``.

    A string (``"32"`` is not a shape of sides 3 and 2), floats (``32.5`` is never truncated),
    bools and negative or too small sides are refused.
    """
    dims = " or ".join(str(n) for n in ndims)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) and not hasattr(shape, "__len__"):
        raise ValueError(f"{name} must be a sequence of {dims} integers (e.g. (64, 64, 64)), got {_short(shape)}")
    sides = list(shape)
    bad = [s for s in sides if not _is_integer(s)]
    if bad:
        raise ValueError(f"{name} must be {dims} integers, got {_short(tuple(sides))} ({_short(bad[0])} is not an integer)")
    out = tuple(int(s) for s in sides)
    if len(out) not in tuple(ndims):
        raise ValueError(f"{name} must have {dims} dimensions (sides), got {len(out)}: {out}")
    if min(out) < minimum:
        raise ValueError(f"every side of {name} must be >= {minimum} voxels, got {out}")
    return out


def check_unit(unit: Any, name: str = "unit") -> Any:
    """``unit`` unchanged when it can name a length unit (text, or a pint ``Unit``), else a ``ValueError``.

    None means pixels. Numbers, bools and text that reads as a number (``"5"``: a voxel size given in
    the unit's place) are refused.
    """
    if unit is None:
        return None
    if isinstance(unit, (bool, numbers.Number)):
        raise ValueError(f"{name} must be a length unit such as 'um' or 'nm' (or None for pixels), got {_short(unit)}")
    text = str(unit).strip()
    try:
        float(text)
    except ValueError:
        return unit
    raise ValueError(f"{name} must be a length unit such as 'um' or 'nm', got the number {_short(text)} "
                     "(the voxel size goes in voxel_size / --voxel-size)")
