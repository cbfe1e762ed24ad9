"""Label images on disk -> canonical phase maps (mapping, TIFF / PNG / NPY / slice folders, writer).

Pure NumPy / tifffile / Pillow: importing this package never imports torch, Qt or napari.
"""

from .labels import (
    MAX_VOXELS,
    SUPPORTED_SUFFIXES,
    LabelImage,
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
    "SUPPORTED_SUFFIXES",
    "LabelImage",
    "format_mapping",
    "normalize_mapping",
    "normalize_unit",
    "parse_mapping",
    "phase_fractions",
    "read_label_image",
    "to_phases",
    "write_label_tiff",
]
