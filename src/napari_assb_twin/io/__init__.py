"""Label images on disk -> canonical phase maps (mapping, TIFF / PNG / NPY / slice folders, writer),
and atomic file writes (:mod:`.atomic`).

Pure NumPy / tifffile / Pillow: importing this package never imports torch, Qt or napari.
"""

from ..phasemap import PhaseMap
from .atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text
from .labels import (
    MAX_VOXELS,
    SUPPORTED_SUFFIXES,
    format_mapping,
    normalize_mapping,
    normalize_unit,
    parse_mapping,
    phase_fractions,
    read_label_image,
    to_phases,
    write_label_tiff,
)

__all__ = [
    "MAX_VOXELS",
    "PhaseMap",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "SUPPORTED_SUFFIXES",
    "format_mapping",
    "normalize_mapping",
    "normalize_unit",
    "parse_mapping",
    "phase_fractions",
    "read_label_image",
    "to_phases",
    "write_label_tiff",
]
