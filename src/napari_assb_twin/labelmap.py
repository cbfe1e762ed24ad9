"""Label values -> canonical phases: the one label-to-phase mapping rule (parse, check, apply).

Measured segmentations use arbitrary label values (0/128/255, 0/85/170, 1/2/3 ...); every entry
point (files, napari layers, arrays) converts through :func:`to_phases` with an explicit mapping or
the automatic one (METHOD.md section 2). A ground-floor module (NumPy only): :mod:`.phasemap` and
:mod:`.io.labels` both import it, so neither imports the other's package in a circle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from .phases import N_PHASES, PHASE_NAMES, phase_index

__all__ = ["MappingLike", "format_mapping", "normalize_mapping", "parse_mapping", "phase_fractions", "to_phases"]

# More distinct values than this in an image without a mapping: almost surely grey values.
_GREY_HINT_THRESHOLD = 16

MappingLike = str | Mapping[int | str, int | str]


# --------------------------------------------------------------------------------------------
# label -> phase mapping
# --------------------------------------------------------------------------------------------
def _parse_label(text: str, item: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(
            f"label {text!r} in mapping item {item!r} is not an integer; labels are the integer "
            "values stored in the image, e.g. '0:pore,128:active,255:electrolyte'"
        )
    return int(text)


def parse_mapping(text: str) -> dict[int, int]:
    """Parse a label-to-phase mapping such as ``"0:pore,128:active,255:electrolyte"``.

    Parameters
    ----------
    text : str
        Comma- (or semicolon-) separated ``label:phase`` items (``=`` works too). ``label`` is an
        integer value stored in the image; ``phase`` is ``pore``, ``active``, ``electrolyte`` or
        the canonical index 0, 1, 2. Several labels may map to the same phase (merging).

    Returns
    -------
    dict of int to int
        Image label -> canonical phase index.

    Raises
    ------
    ValueError
        On bad syntax, non-integer labels, a label given twice or an unknown phase.
    """
    if not isinstance(text, str):
        raise TypeError(f"mapping must be a string like '0:pore,1:active,2:electrolyte', got {type(text).__name__}")
    items = [s for s in re.split(r"[,;]", text) if s.strip()]
    if not items:
        raise ValueError("empty label mapping; write it as 'label:phase,...', e.g. '0:pore,128:active,255:electrolyte'")
    mapping: dict[int, int] = {}
    for item in items:
        parts = re.split(r"[:=]", item)
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(
                f"bad mapping item {item.strip()!r}: write each item as 'label:phase', "
                "e.g. '0:pore,128:active,255:electrolyte'"
            )
        label = _parse_label(parts[0], item.strip())
        if label in mapping:
            raise ValueError(f"label {label} appears twice in mapping {text!r}; give each label once")
        mapping[label] = phase_index(parts[1].strip())
    return mapping


def normalize_mapping(mapping: MappingLike) -> dict[int, int]:
    """Return a mapping given as a string or a dict as ``{label: phase index}``.

    Dict keys may be ints or integer strings, values phase names or indices.

    Raises
    ------
    ValueError, TypeError
        If a label is not an integer or a phase is unknown.
    """
    if isinstance(mapping, str):
        return parse_mapping(mapping)
    if not isinstance(mapping, Mapping):
        raise TypeError(
            f"mapping must be a string like '0:pore,1:active,2:electrolyte' or a dict, got {type(mapping).__name__}"
        )
    if not mapping:
        raise ValueError("empty label mapping; give at least one 'label: phase' pair")
    out: dict[int, int] = {}
    for key, value in mapping.items():
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer, str)):
            raise TypeError(f"mapping label {key!r} must be an integer image value")
        label = _parse_label(key, f"{key}: {value}") if isinstance(key, str) else int(key)
        if label in out:
            raise ValueError(f"label {label} appears twice in the mapping; give each label once")
        out[label] = phase_index(value)
    return out


def format_mapping(mapping: Mapping[int, int]) -> str:
    """Format ``{label: phase}`` as ``"0:pore,128:active,255:electrolyte"`` (parseable back)."""
    return ",".join(f"{label}:{PHASE_NAMES[phase]}" for label, phase in sorted(mapping.items()))


def _absent_note(present: set[int]) -> str:
    absent = [PHASE_NAMES[p] for p in range(N_PHASES) if p not in present]
    if not absent:
        return ""
    return f"; absent phase{'s' if len(absent) > 1 else ''}: {', '.join(absent)}"


# --------------------------------------------------------------------------------------------
# arrays -> canonical phases
# --------------------------------------------------------------------------------------------
def _as_integer_array(array: np.ndarray) -> np.ndarray:
    """Return an integer (or bool) view/copy of ``array`` or raise a clear error."""
    kind = array.dtype.kind
    if kind in "biu":
        return array
    if kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError(
                "image contains NaN or infinite values: this is not a segmentation; "
                "replace them by a label (or segment the image) first"
            )
        if not np.array_equal(array, np.round(array)):
            raise ValueError(
                "continuous grey values: this is not a segmentation; segment it first "
                "(e.g. threshold it into pore / active / electrolyte) or pass integer labels"
            )
        if array.size and np.abs(array).max() > 2**53:
            raise ValueError("label values too large to be exact integers; relabel the image with small integers")
        return array.astype(np.int64)
    raise TypeError(
        f"unsupported image dtype {array.dtype}: a label image needs integer (or bool) values"
    )


def _unique_values(array: np.ndarray) -> np.ndarray:
    """Sorted distinct values; bincount for 8/16-bit data (much faster than sorting)."""
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    if array.dtype in (np.uint8, np.uint16):
        counts = np.bincount(array.ravel(), minlength=1)
        return np.flatnonzero(counts).astype(array.dtype)
    if array.dtype == np.int8:
        counts = np.bincount(array.view(np.uint8).ravel(), minlength=256)
        vals = np.flatnonzero(counts).astype(np.int16)
        return np.sort(np.where(vals >= 128, vals - 256, vals)).astype(np.int8)
    return np.unique(array)


def _apply_mapping(array: np.ndarray, keys: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Map every value of ``array`` (all known to be in ``keys``, sorted) to its phase."""
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    if array.dtype in (np.uint8, np.int8, np.uint16):
        # A lookup table over the whole value range: one gather, no search.
        unsigned = array.view(np.uint8) if array.dtype == np.int8 else array
        lut = np.zeros(256 if array.dtype != np.uint16 else 65536, dtype=np.uint8)
        lut[keys.astype(np.int64) % lut.size] = phases
        return lut[unsigned]
    idx = np.searchsorted(keys, array)
    return phases[idx]


def to_phases(
    array: np.ndarray | Sequence, mapping: MappingLike | None = None
) -> tuple[np.ndarray, dict[int, int], str]:
    """Convert a label image into a canonical ``uint8`` phase map.

    Parameters
    ----------
    array : array_like
        Label image (2D or 3D; any integer or bool dtype, or floats holding integer values).
    mapping : str or dict, optional
        Label -> phase (see :func:`parse_mapping`). Without it the distinct values, sorted, become
        pore, active, electrolyte (values that are already a subset of {0, 1, 2} are kept as they
        are, so canonical maps with a missing phase stay canonical).

    Returns
    -------
    phases : numpy.ndarray
        ``uint8`` array of the same shape with values in {0, 1, 2}.
    mapping : dict of int to int
        The mapping used (label -> phase), only for labels present in the image when automatic.
    message : str
        One line naming the mapping and any absent phases, meant to be shown to the user.

    Raises
    ------
    ValueError
        Empty image, NaN/inf, continuous grey values, more than three distinct values without a
        mapping, or values that an explicit mapping does not cover.
    TypeError
        Non-numeric dtype.
    """
    arr = np.asarray(array)
    if arr.size == 0:
        raise ValueError(f"empty image (shape {arr.shape}): nothing to segment; check the file or the array")
    arr = _as_integer_array(arr)
    values = _unique_values(arr)
    int_values = [int(v) for v in values]

    if mapping is not None:
        used = normalize_mapping(mapping)
        missing = [v for v in int_values if v not in used]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise ValueError(
                f"image values {shown} are not in the mapping {format_mapping(used)!r}; "
                "add them to the mapping (several labels may map to one phase)"
            )
        kind = "label mapping"
    else:
        if len(int_values) > N_PHASES:
            shown = ", ".join(map(str, int_values[:8])) + (" ..." if len(int_values) > 8 else "")
            if len(int_values) > _GREY_HINT_THRESHOLD:
                raise ValueError(
                    f"image has {len(int_values)} distinct values ({shown}): this looks like a grey-value "
                    "image, not a segmentation; segment it into pore / active / electrolyte first, "
                    "or pass a mapping that covers every value"
                )
            raise ValueError(
                f"image has {len(int_values)} distinct values ({shown}) but a three-phase map has at most 3; "
                "pass a mapping such as '0:pore,1:active,2:electrolyte,3:electrolyte' to merge labels"
            )
        if set(int_values) <= set(range(N_PHASES)):
            used = {v: v for v in int_values}
            kind = "labels are canonical (identity mapping)"
        else:
            used = {v: p for p, v in enumerate(int_values)}
            kind = "automatic label mapping (sorted values -> pore, active, electrolyte)"

    keys = np.array(sorted(used), dtype=np.int64)
    phase_of = np.array([used[k] for k in sorted(used)], dtype=np.uint8)
    if arr.dtype.kind in "biu" and arr.dtype != np.int64 and arr.dtype != np.bool_:
        # keys beyond the dtype range cannot occur in the image; drop them before the LUT/search
        info = np.iinfo(arr.dtype)
        keep = (keys >= info.min) & (keys <= info.max)
        keys, phase_of = keys[keep].astype(arr.dtype), phase_of[keep]
    phases = _apply_mapping(arr, keys, phase_of)
    present_labels = {v: used[v] for v in int_values}
    message = f"{kind}: {format_mapping(present_labels)}{_absent_note(set(present_labels.values()))}"
    unused = sorted(set(used) - set(int_values))
    if mapping is not None and unused:
        # a label the user named but the image lacks is usually a typo in the mapping: say so
        shown = ", ".join(f"{k} ({PHASE_NAMES[used[k]]})" for k in unused)
        message += f"; mapping label{'s' if len(unused) > 1 else ''} {shown} not found in the image"
    if mapping is None:
        message += "; pass an explicit mapping if this is wrong"
    return phases, used, message


def phase_fractions(phases: np.ndarray) -> dict[str, float]:
    """Volume (area) fraction of each canonical phase of a ``uint8`` phase map."""
    counts = np.bincount(np.asarray(phases, dtype=np.uint8).ravel(), minlength=N_PHASES)[:N_PHASES]
    total = max(int(np.asarray(phases).size), 1)
    return {name: float(counts[i]) / total for i, name in enumerate(PHASE_NAMES)}
