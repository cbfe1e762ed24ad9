"""napari-assb-twin: calibrated parametric 3D digital twins of three-phase battery electrodes.

The pure computation lives in :mod:`napari_assb_twin.fields`, :mod:`~napari_assb_twin.model`,
:mod:`~napari_assb_twin.stats`, :mod:`~napari_assb_twin.calibrate` and :mod:`~napari_assb_twin.io`;
only :mod:`napari_assb_twin._napari` imports napari or Qt. Importing this package imports neither
torch nor napari, so the napari reader loads fast.
"""

try:
    from importlib.metadata import version as _version

    __version__ = _version("napari-assb-twin")
except Exception:  # pragma: no cover - running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
