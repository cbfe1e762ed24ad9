"""Tests of the napari integration: manifest, reader, writer and sample data.

GUI tests (marked ``gui``) use napari's ``make_napari_viewer`` fixture; they run headless with
``QT_QPA_PLATFORM=offscreen`` (set in conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_assb_twin.io import read_label_image
from napari_assb_twin.phases import PHASE_COLORS

PLUGIN = "napari-assb-twin"
MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_assb_twin" / "napari.yaml"
RNG = np.random.default_rng(11)
RAW = RNG.choice(np.array([0, 85, 170], np.uint8), size=(4, 12, 9))
EXPECTED = (RAW // 85).astype(np.uint8)


@pytest.fixture
def calibrated_tif(tmp_path) -> Path:
    path = tmp_path / "cathode.tif"
    tifffile.imwrite(path, RAW, imagej=True, resolution=(1 / 0.39, 1 / 0.39),
                     metadata={"axes": "ZYX", "spacing": 0.39, "unit": "micron"})
    return path


@pytest.fixture
def errors(monkeypatch) -> list[str]:
    """Messages the reader sends to napari's show_error."""
    from napari_assb_twin._napari import _reader

    seen: list[str] = []
    monkeypatch.setattr(_reader, "show_error", seen.append)
    return seen


# --------------------------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------------------------
def test_manifest_valid_and_importable():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # every python_name resolves to a module-level object
    assert manifest.name == PLUGIN
    ids = {c.id for c in manifest.contributions.commands}
    assert all(i.startswith(f"{PLUGIN}.") for i in ids)
    assert {s.key for s in manifest.contributions.sample_data} == {"assb_cathode_3d", "assb_section_2d"}
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories and {"*.tif", "*.tiff", "*.png", "*.npy"} <= set(reader.filename_patterns)
    (writer,) = manifest.contributions.writers
    assert [t.value if hasattr(t, "value") else t for t in writer.layer_types] == ["labels"]


def test_installed_manifest_matches_source():
    from importlib.metadata import PackageNotFoundError, distribution

    from npe2 import PluginManifest

    try:
        distribution(PLUGIN)
    except PackageNotFoundError:
        pytest.skip("package not installed (pip install -e .)")
    installed = PluginManifest.from_distribution(PLUGIN)
    assert installed.model_dump() == PluginManifest.from_file(MANIFEST).model_dump()


# --------------------------------------------------------------------------------------------
# reader, without a viewer
# --------------------------------------------------------------------------------------------
def test_get_reader_claims_and_refuses(tmp_path, calibrated_tif):
    from napari_assb_twin._napari._reader import napari_get_reader, read_labels

    (tmp_path / "a.npy").write_bytes(b"")
    (tmp_path / "b.PNG").write_bytes(b"")
    (tmp_path / "c.jpg").write_bytes(b"")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    assert napari_get_reader(str(calibrated_tif)) is read_labels
    assert napari_get_reader([str(calibrated_tif)]) is read_labels
    assert napari_get_reader(str(tmp_path / "a.npy")) is read_labels
    assert napari_get_reader(str(tmp_path / "b.PNG")) is read_labels
    assert napari_get_reader(str(tmp_path)) is read_labels  # folder holding a TIFF slice
    for unsupported in (str(tmp_path / "c.jpg"), str(tmp_path / "missing.tif"), str(empty_dir),
                        [str(calibrated_tif)] * 2, 42, None, "http://example.org/x.tif"):
        assert napari_get_reader(unsupported) is None, unsupported


def test_reader_layer_data(calibrated_tif, errors, monkeypatch):
    from napari_assb_twin._napari import _reader

    infos: list[str] = []
    monkeypatch.setattr(_reader, "show_info", infos.append)
    (layer,) = _reader.napari_get_reader(str(calibrated_tif))(str(calibrated_tif))
    data, meta, layer_type = layer
    assert layer_type == "labels" and data.dtype == np.uint8
    np.testing.assert_array_equal(data, EXPECTED)
    assert meta["name"] == "cathode"
    assert meta["scale"] == pytest.approx((0.39, 0.39, 0.39), rel=1e-6)
    assert meta["units"] == ("um",) * 3 and meta["axis_labels"] == ("z", "y", "x")
    assert meta["metadata"]["phase_mapping"] == {0: 0, 85: 1, 170: 2}
    assert meta["metadata"]["source"] == str(calibrated_tif)
    colours = meta["colormap"].map(np.array([0, 1, 2]))
    np.testing.assert_allclose(colours, [PHASE_COLORS[p] for p in range(3)], atol=1e-6)
    assert errors == []
    # the user is told which mapping was used
    assert len(infos) == 1 and "0:pore,85:active,170:electrolyte" in infos[0]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [("broken.tif", b"not a tiff", "broken.tif"), ("empty.npy", b"", "empty.npy")],
)
def test_reader_broken_file_reports_and_adds_nothing(tmp_path, errors, name, content, match):
    from napari_assb_twin._napari._reader import napari_get_reader

    path = tmp_path / name
    path.write_bytes(content)
    assert napari_get_reader(str(path))(str(path)) == [(None,)]  # napari's "no layers" sentinel
    assert len(errors) == 1 and match in errors[0]


def test_reader_grey_image_message(tmp_path, errors):
    from napari_assb_twin._napari._reader import read_labels

    path = tmp_path / "sem.tif"
    tifffile.imwrite(path, RNG.random((20, 20)).astype(np.float32))
    assert read_labels(str(path)) == [(None,)]
    assert "continuous grey values" in errors[0]


def test_reader_and_writer_do_not_import_torch(calibrated_tif, tmp_path):
    code = (
        "import sys\n"
        "from napari_assb_twin._napari._reader import read_labels\n"
        "from napari_assb_twin._napari._writer import write_labels\n"
        f"(d, m, t), = read_labels({str(calibrated_tif)!r})\n"
        f"write_labels({str(tmp_path / 'w.tif')!r}, d, m)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


# --------------------------------------------------------------------------------------------
# writer, without a viewer
# --------------------------------------------------------------------------------------------
def test_writer_direct(tmp_path):
    from napari_assb_twin._napari._writer import write_labels

    import pint

    um = pint.get_application_registry().Unit("micrometer")
    path = tmp_path / "out.tif"
    assert write_labels(str(path), EXPECTED, {"scale": (2.0, 0.5, 0.5), "units": (um, um, um)}) == [str(path)]
    image = read_label_image(path)
    np.testing.assert_array_equal(image.data, EXPECTED)
    assert image.spacing == pytest.approx((2.0, 0.5, 0.5)) and image.unit == "um"
    # pixels only: no calibration written
    write_labels(str(path), EXPECTED, {"scale": (1.0, 1.0, 1.0), "units": ("pixel",) * 3})
    assert read_label_image(path).voxel_size is None
    with pytest.raises(ValueError, match="different units"):
        write_labels(str(path), EXPECTED, {"scale": (1.0, 1.0, 1.0), "units": ("um", "nm", "nm")})
    with pytest.raises(ValueError, match="values must be 0"):
        write_labels(str(path), EXPECTED + 5, {})


# --------------------------------------------------------------------------------------------
# through a napari viewer
# --------------------------------------------------------------------------------------------
@pytest.mark.gui
def test_viewer_open(make_napari_viewer, calibrated_tif):
    from napari.layers import Labels

    viewer = make_napari_viewer()
    layers = viewer.open(str(calibrated_tif), plugin=PLUGIN)
    assert len(layers) == 1 and isinstance(layers[0], Labels)
    layer = layers[0]
    assert layer.data.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(layer.data), EXPECTED)
    np.testing.assert_allclose(layer.scale, (0.39, 0.39, 0.39), rtol=1e-6)
    assert [str(u) for u in layer.units] == ["micrometer"] * 3
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    np.testing.assert_allclose(layer.colormap.map(np.array([1])), [PHASE_COLORS[1]], atol=1e-6)


@pytest.mark.gui
def test_viewer_open_folder_and_png(make_napari_viewer, tmp_path):
    from PIL import Image

    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(RAW.shape[0]):
        tifffile.imwrite(folder / f"z{z}.tif", RAW[z])
    Image.fromarray(RAW[0]).save(tmp_path / "section.png")
    viewer = make_napari_viewer()
    (stack,) = viewer.open(str(folder), plugin=PLUGIN)
    np.testing.assert_array_equal(np.asarray(stack.data), EXPECTED)
    (section,) = viewer.open(str(tmp_path / "section.png"), plugin=PLUGIN)
    np.testing.assert_array_equal(np.asarray(section.data), EXPECTED[0])
    assert [str(u) for u in section.units] == ["pixel"] * 2


@pytest.mark.gui
def test_viewer_open_broken_file_no_crash(make_napari_viewer, tmp_path, errors):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"\x00" * 64)
    viewer = make_napari_viewer()
    assert viewer.open(str(path), plugin=PLUGIN) == []
    assert len(viewer.layers) == 0
    assert len(errors) == 1 and "broken.tif" in errors[0]


@pytest.mark.gui
def test_viewer_writer_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(EXPECTED, scale=(1.2, 0.3, 0.3), units="um", name="twin")
    path = tmp_path / "twin.tif"
    written = layer.save(str(path), plugin=PLUGIN)
    assert written == [str(path)]
    image = read_label_image(path)
    np.testing.assert_array_equal(image.data, EXPECTED)
    assert image.spacing == pytest.approx((1.2, 0.3, 0.3)) and image.unit == "um"
    (reopened,) = viewer.open(str(path), plugin=PLUGIN)
    np.testing.assert_allclose(reopened.scale, layer.scale)
    assert [str(u) for u in reopened.units] == ["micrometer"] * 3


@pytest.mark.gui
@pytest.mark.parametrize(("key", "shape"), [("assb_cathode_3d", (96, 96, 96)), ("assb_section_2d", (256, 256))])
def test_sample_data(make_napari_viewer, key, shape):
    from napari.layers import Labels

    from napari_assb_twin.model import load_reference_model

    model = load_reference_model("reference-assb-cathode")
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, key)
    assert len(layers) == 1 and isinstance(layers[0], Labels)
    layer = layers[0]
    data = np.asarray(layer.data)
    assert data.shape == shape and data.dtype == np.uint8
    assert set(np.unique(data)) == {0, 1, 2}
    np.testing.assert_allclose(layer.scale, (model.voxel_size,) * len(shape))
    # a realization's phase fractions scatter around the model's (correlation length << size):
    # 0.05 absolute is > 5 standard deviations here yet would catch a wrong mapping or threshold
    counts = np.bincount(data.ravel(), minlength=3) / data.size
    for phase, name in enumerate(("pore", "active", "electrolyte")):
        assert counts[phase] == pytest.approx(model.volume_fractions[name], abs=0.05)


def test_sample_data_reproducible():
    from napari_assb_twin._napari._sample_data import assb_section_2d

    (a, meta, kind), = assb_section_2d()
    (b, _, _), = assb_section_2d()
    np.testing.assert_array_equal(a, b)
    assert kind == "labels" and "seed" in meta["metadata"]
