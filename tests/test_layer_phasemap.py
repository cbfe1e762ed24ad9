"""The docks read layers as phasemap.PhaseMap: one isotropy tolerance, planes from fields.sections."""

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.layers import Labels  # noqa: E402

from napari_assb_twin._napari._widgets._common import layer_phase_data  # noqa: E402
from napari_assb_twin._napari._widgets.coverage_widget import compute_coverages  # noqa: E402
from napari_assb_twin.phasemap import VOXEL_RTOL, PhaseMap  # noqa: E402


def _volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, (6, 7, 8)).astype(np.uint8)


@pytest.mark.parametrize("axis, plane", [(0, "inplane"), (1, "axial"), (2, "axial")])
def test_a_section_is_a_phasemap_with_its_plane_and_the_remaining_axes_in_order(axis, plane):
    vol = _volume()
    layer = Labels(vol, scale=(0.5, 0.25, 0.125), name="stack")
    pm = layer_phase_data(layer, section=(axis, 3))
    assert isinstance(pm, PhaseMap) and pm.plane == plane and pm.source == "stack"
    np.testing.assert_array_equal(pm.data, np.take(vol, 3, axis=axis))  # rows keep axis 0 for axial
    assert pm.spacing == tuple(s for d, s in enumerate((0.5, 0.25, 0.125)) if d != axis)


def test_coverage_dock_uses_the_one_voxel_tolerance():
    # a float32-rounded scale (relative error far below VOXEL_RTOL) is isotropic: distances in um;
    # the old dock test (rtol 1e-6) called 1e-4 anisotropic and fell back to pixels
    img = np.random.default_rng(1).integers(0, 3, (24, 24)).astype(np.uint8)
    near = PhaseMap(img, (0.5, 0.5 * (1 + VOXEL_RTOL / 10)), "um", "near")
    far = PhaseMap(img, (0.5, 0.5 * (1 + VOXEL_RTOL * 10)), "um", "far")
    a, b = compute_coverages([("near", near), ("far", far)], 5)
    assert a.result.unit == "um" and a.result.voxel_size == pytest.approx(near.spacing[-1])
    assert b.result.unit == "px" and b.result.voxel_size == 1.0 and far.anisotropy_note()
