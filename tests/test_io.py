"""Tests of napari_assb_twin.io: label mapping, readers of every format, the atomic TIFF writer.

Oracles: the phase map is compared with a per-voxel dictionary lookup of the mapping; files are
written with tifffile / Pillow / NumPy directly and read back through our reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_assb_twin.io import (
    PhaseMap,
    format_mapping,
    normalize_mapping,
    normalize_unit,
    parse_mapping,
    phase_fractions,
    read_label_image,
    to_phases,
    write_label_tiff,
)
from napari_assb_twin.io import labels as labels_mod


def lookup_oracle(array: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Brute-force per-voxel mapping (the definition the fast LUT / search must match)."""
    flat = [mapping[int(v)] for v in np.asarray(array).ravel()]
    return np.array(flat, dtype=np.uint8).reshape(np.shape(array))


def random_labels(values, shape=(7, 9, 11), seed=0, dtype=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.asarray(values, dtype=dtype), size=shape)


# --------------------------------------------------------------------------------------------
# parse_mapping / normalize_mapping
# --------------------------------------------------------------------------------------------
class TestParseMapping:
    def test_names_and_indices(self):
        assert parse_mapping("0:pore,128:active,255:electrolyte") == {0: 0, 128: 1, 255: 2}
        assert parse_mapping(" 1 = 2 ; 2 = 0 ;3=1 ") == {1: 2, 2: 0, 3: 1}
        assert parse_mapping("0:Pore,1:ACTIVE") == {0: 0, 1: 1}

    def test_merge_and_negative_labels(self):
        # several labels may map to one phase (e.g. binder merged into electrolyte)
        assert parse_mapping("-1:pore,0:active,5:electrolyte,6:electrolyte") == {-1: 0, 0: 1, 5: 2, 6: 2}

    @pytest.mark.parametrize(
        ("text", "match"),
        [
            ("", "empty"),
            (" , ", "empty"),
            ("0pore", "label:phase"),
            ("0:pore:active", "label:phase"),
            ("0:", "label:phase"),
            (":pore", "label:phase"),
            ("a:pore", "not an integer"),
            ("1.5:pore", "not an integer"),
            ("0:pore,0:active", "twice"),
            ("0:binder", "unknown phase"),
            ("0:3", "out of range"),
        ],
    )
    def test_errors(self, text, match):
        with pytest.raises(ValueError, match=match):
            parse_mapping(text)

    def test_not_a_string(self):
        with pytest.raises(TypeError):
            parse_mapping({0: "pore"})  # type: ignore[arg-type]

    def test_format_round_trip(self):
        rng = np.random.default_rng(1)
        for _ in range(20):
            labels = rng.choice(np.arange(-300, 300), size=rng.integers(1, 6), replace=False)
            mapping = {int(k): int(rng.integers(0, 3)) for k in labels}
            assert parse_mapping(format_mapping(mapping)) == mapping

    def test_normalize_dict(self):
        assert normalize_mapping({"0": "pore", 85: 1, np.int64(170): "electrolyte"}) == {0: 0, 85: 1, 170: 2}
        with pytest.raises(ValueError, match="twice"):
            normalize_mapping({"5": 0, 5: 1})
        with pytest.raises(TypeError):
            normalize_mapping({True: 0})
        with pytest.raises(TypeError):
            normalize_mapping([(0, 0)])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="empty"):
            normalize_mapping({})


# --------------------------------------------------------------------------------------------
# to_phases
# --------------------------------------------------------------------------------------------
class TestToPhases:
    @pytest.mark.parametrize(
        ("dtype", "values"),
        [
            (np.uint8, (0, 128, 255)),
            (np.int8, (-100, -1, 7)),
            (np.uint16, (3, 4000, 65535)),
            (np.int32, (-70000, 5, 2**30)),
            (np.int64, (-(2**40), 0, 2**40)),
            (np.float32, (0.0, 85.0, 170.0)),
        ],
    )
    def test_auto_mapping_sorted_values(self, dtype, values):
        arr = random_labels(values, dtype=dtype)
        phases, mapping, message = to_phases(arr)
        expected_mapping = {int(v): i for i, v in enumerate(sorted(values))}
        assert mapping == expected_mapping
        assert phases.dtype == np.uint8 and phases.shape == arr.shape
        np.testing.assert_array_equal(phases, lookup_oracle(arr, expected_mapping))
        assert format_mapping(expected_mapping) in message and "automatic" in message

    def test_canonical_subset_keeps_identity(self):
        arr = random_labels((0, 2))
        phases, mapping, message = to_phases(arr)
        assert mapping == {0: 0, 2: 2}
        np.testing.assert_array_equal(phases, arr)
        assert "absent phase: active" in message

    def test_one_based_labels(self):
        arr = random_labels((1, 2, 3), dtype=np.uint8)
        phases, mapping, _ = to_phases(arr)
        assert mapping == {1: 0, 2: 1, 3: 2}
        np.testing.assert_array_equal(phases, arr - 1)

    def test_single_value_names_absent_phases(self):
        phases, mapping, message = to_phases(np.full((4, 5), 200, np.uint8))
        assert mapping == {200: 0} and not phases.any()
        assert "absent phases: active, electrolyte" in message

    def test_bool_is_two_phases(self):
        arr = random_labels((False, True), shape=(6, 6))
        phases, mapping, message = to_phases(arr)
        np.testing.assert_array_equal(phases, arr.astype(np.uint8))
        assert mapping == {0: 0, 1: 1} and "electrolyte" in message

    def test_explicit_mapping_merges_and_ignores_unused_labels(self):
        arr = random_labels((10, 20, 30, 40), dtype=np.uint16)
        text = "10:pore,20:active,30:electrolyte,40:electrolyte,99:pore"
        phases, mapping, message = to_phases(arr, text)
        assert mapping == parse_mapping(text)
        np.testing.assert_array_equal(phases, lookup_oracle(arr, mapping))
        assert "automatic" not in message
        # a dict works the same
        np.testing.assert_array_equal(to_phases(arr, {10: "pore", 20: 1, 30: 2, 40: 2})[0], phases)

    def test_explicit_mapping_keys_outside_dtype_range(self):
        arr = random_labels((0, 1, 2), dtype=np.uint8)
        phases, _, _ = to_phases(arr, "0:pore,1:active,2:electrolyte,-5:pore,1000:active")
        np.testing.assert_array_equal(phases, arr)

    def test_explicit_mapping_missing_values(self):
        arr = random_labels((0, 128, 255), dtype=np.uint8)
        with pytest.raises(ValueError, match=r"255 .*not in the mapping"):
            to_phases(arr, "0:pore,128:active")

    def test_four_values_need_mapping(self):
        with pytest.raises(ValueError, match="4 distinct values.*pass a mapping"):
            to_phases(random_labels((0, 1, 2, 3)))

    def test_grey_image_detected(self):
        grey = np.arange(200, dtype=np.uint8).reshape(10, 20)
        with pytest.raises(ValueError, match="grey-value"):
            to_phases(grey)

    def test_continuous_floats(self):
        with pytest.raises(ValueError, match="continuous grey values.*segment it first"):
            to_phases(np.array([[0.0, 0.5], [1.0, 2.0]]))

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite(self, bad):
        arr = np.zeros((3, 3), np.float64)
        arr[1, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            to_phases(arr)

    def test_empty(self):
        with pytest.raises(ValueError, match="empty"):
            to_phases(np.zeros((0, 4), np.uint8))

    @pytest.mark.parametrize("arr", [np.ones((2, 2), complex), np.array([["a", "b"]])])
    def test_non_numeric(self, arr):
        with pytest.raises(TypeError, match="dtype"):
            to_phases(arr)


def test_phase_fractions():
    arr = np.array([0, 0, 1, 2, 2, 2, 2, 1], np.uint8)
    assert phase_fractions(arr) == {"pore": 0.25, "active": 0.25, "electrolyte": 0.5}


@pytest.mark.parametrize(
    ("unit", "expected"),
    [("micron", "um"), ("\\u00B5m", "um"), ("µm", "um"), ("micrometer", "um"), ("nanometer", "nm"),
     ("pixel", None), ("", None), (None, None), ("furlong", "furlong")],
)
def test_normalize_unit(unit, expected):
    assert normalize_unit(unit) == expected


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------
VOL = random_labels((0, 85, 170), shape=(5, 12, 10), dtype=np.uint8, seed=3)
AUTO = {0: 0, 85: 1, 170: 2}


def check_volume(image: PhaseMap, raw: np.ndarray = VOL, mapping: dict[int, int] = AUTO) -> None:
    assert image.data.dtype == np.uint8
    np.testing.assert_array_equal(image.data, lookup_oracle(raw, mapping))
    assert image.mapping == mapping


class TestTiff:
    def test_plain_multipage(self, tmp_path):
        path = tmp_path / "plain.tif"
        tifffile.imwrite(path, VOL)
        image = read_label_image(path)
        check_volume(image)
        assert image.voxel_size is None and image.unit is None and image.spacing is None
        assert image.source == str(path) and "85:active" in image.message

    def test_single_page_2d(self, tmp_path):
        path = tmp_path / "slice.tiff"
        tifffile.imwrite(path, VOL[2])
        check_volume(read_label_image(path), VOL[2])

    def test_imagej_calibration(self, tmp_path):
        path = tmp_path / "ij.tif"
        tifffile.imwrite(path, VOL, imagej=True, resolution=(1 / 0.39, 1 / 0.39),
                         metadata={"axes": "ZYX", "spacing": 0.8, "unit": "micron"})
        image = read_label_image(path)
        check_volume(image)
        assert image.unit == "um"
        assert image.voxel_size == pytest.approx(0.39, rel=1e-6)
        assert image.spacing == pytest.approx((0.8, 0.39, 0.39), rel=1e-6)

    def test_imagej_without_unit_is_uncalibrated(self, tmp_path):
        path = tmp_path / "ij.tif"
        tifffile.imwrite(path, VOL[0], imagej=True, resolution=(1.0, 1.0), metadata={"axes": "YX"})
        assert read_label_image(path).voxel_size is None

    def test_ome_calibration(self, tmp_path):
        path = tmp_path / "x.ome.tif"
        tifffile.imwrite(path, VOL, ome=True, metadata={
            "axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 0.5,
            "PhysicalSizeXUnit": "nm"})
        image = read_label_image(path)
        check_volume(image)
        assert image.unit == "nm" and image.spacing == pytest.approx((0.5, 0.25, 0.25))

    def test_centimetre_resolution_tag(self, tmp_path):
        path = tmp_path / "cm.tif"
        tifffile.imwrite(path, VOL[0], resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
        image = read_label_image(path)
        assert image.unit == "um" and image.voxel_size == pytest.approx(0.5, rel=1e-6)

    def test_inch_resolution_is_not_a_calibration(self, tmp_path):
        # 72 dpi is a screen/print default, not a microscope calibration
        path = tmp_path / "dpi.tif"
        tifffile.imwrite(path, VOL[0], resolution=(72, 72), resolutionunit="INCH")
        assert read_label_image(path).voxel_size is None

    def test_grey_rgb_ok_true_colour_error(self, tmp_path):
        grey = tmp_path / "grey_rgb.tif"
        tifffile.imwrite(grey, np.stack([VOL[0]] * 3, axis=-1), photometric="rgb")
        check_volume(read_label_image(grey), VOL[0])
        colour = tmp_path / "colour.tif"
        rgb = np.stack([VOL[0], VOL[0], 255 - VOL[0]], axis=-1)
        tifffile.imwrite(colour, rgb, photometric="rgb")
        with pytest.raises(ValueError, match="colour.tif.*true-colour"):
            read_label_image(colour)

    def test_multichannel_error(self, tmp_path):
        path = tmp_path / "channels.tif"
        tifffile.imwrite(path, np.stack([VOL, VOL], axis=1), imagej=True, metadata={"axes": "ZCYX"})
        with pytest.raises(ValueError, match="2 channels"):
            read_label_image(path)

    @pytest.mark.parametrize("content", [b"", b"II*\x00garbage" * 3, b"not a tiff at all"])
    def test_corrupt(self, tmp_path, content):
        path = tmp_path / "broken.tif"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="broken.tif"):
            read_label_image(path)

    def test_truncated(self, tmp_path):
        path = tmp_path / "trunc.tif"
        tifffile.imwrite(path, VOL)
        path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 3])
        with pytest.raises(ValueError, match="trunc.tif"):
            read_label_image(path)

    def test_grey_values_rejected_with_file_name(self, tmp_path):
        path = tmp_path / "sem.tif"
        tifffile.imwrite(path, np.random.default_rng(0).random((16, 16)).astype(np.float32))
        with pytest.raises(ValueError, match="sem.tif.*continuous grey values"):
            read_label_image(path)

    def test_too_large_refused_before_reading(self, tmp_path, monkeypatch):
        path = tmp_path / "big.tif"
        tifffile.imwrite(path, VOL)
        monkeypatch.setattr(labels_mod, "MAX_VOXELS", VOL.size - 1)
        with pytest.raises(ValueError, match="exceeds the limit"):
            read_label_image(path)


class TestPng:
    def test_grey(self, tmp_path):
        path = tmp_path / "g.png"
        Image.fromarray(VOL[1]).save(path)
        check_volume(read_label_image(path), VOL[1])

    def test_sixteen_bit(self, tmp_path):
        raw = random_labels((0, 1000, 60000), shape=(8, 9), dtype=np.uint16)
        path = tmp_path / "g16.png"
        Image.fromarray(raw).save(path)
        check_volume(read_label_image(path), raw, {0: 0, 1000: 1, 60000: 2})

    def test_rgb_equal_channels_and_constant_alpha(self, tmp_path):
        for mode, n in (("RGB", 3), ("RGBA", 4)):
            arr = np.stack([VOL[1]] * 3 + ([np.full_like(VOL[1], 255)] if n == 4 else []), axis=-1)
            path = tmp_path / f"{mode}.png"
            Image.fromarray(arr, mode).save(path)
            check_volume(read_label_image(path), VOL[1])

    def test_true_colour_error(self, tmp_path):
        arr = np.stack([VOL[1], np.zeros_like(VOL[1]), VOL[1]], axis=-1)
        path = tmp_path / "c.png"
        Image.fromarray(arr, "RGB").save(path)
        with pytest.raises(ValueError, match="true-colour"):
            read_label_image(path)

    def test_varying_alpha_error(self, tmp_path):
        arr = np.stack([VOL[1]] * 3 + [VOL[1]], axis=-1)
        path = tmp_path / "a.png"
        Image.fromarray(arr, "RGBA").save(path)
        with pytest.raises(ValueError, match="alpha"):
            read_label_image(path)

    def test_palette_grey_gives_grey_values(self, tmp_path):
        idx = random_labels((0, 1, 2), shape=(9, 8), dtype=np.uint8)
        im = Image.fromarray(idx, "P")
        im.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255])
        path = tmp_path / "p.png"
        im.save(path)
        image = read_label_image(path)
        # the grey levels the user sees are the labels, so a '0:..,128:..,255:..' mapping fits
        assert image.mapping == {0: 0, 128: 1, 255: 2}
        np.testing.assert_array_equal(image.data, idx)

    def test_palette_colour_gives_indices(self, tmp_path):
        idx = random_labels((0, 1, 2), shape=(9, 8), dtype=np.uint8)
        im = Image.fromarray(idx, "P")
        im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
        path = tmp_path / "pc.png"
        im.save(path)
        image = read_label_image(path)
        assert image.mapping == {0: 0, 1: 1, 2: 2}
        np.testing.assert_array_equal(image.data, idx)

    def test_bilevel(self, tmp_path):
        arr = random_labels((False, True), shape=(8, 16))
        path = tmp_path / "b.png"
        Image.fromarray(arr).save(path)
        np.testing.assert_array_equal(read_label_image(path).data, arr.astype(np.uint8))

    def test_corrupt(self, tmp_path):
        path = tmp_path / "x.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
        with pytest.raises(ValueError, match="x.png"):
            read_label_image(path)


class TestNpy:
    @pytest.mark.parametrize("arr", [VOL, VOL[0], VOL[None, 1]])  # 3D, 2D, 2D with singleton axis
    def test_arrays(self, tmp_path, arr):
        path = tmp_path / "a.npy"
        np.save(path, arr)
        check_volume(read_label_image(path), np.squeeze(arr))

    def test_mapping_argument(self, tmp_path):
        path = tmp_path / "a.npy"
        np.save(path, VOL)
        image = read_label_image(path, "0:electrolyte,85:pore,170:active")
        check_volume(image, VOL, {0: 2, 85: 0, 170: 1})

    def test_object_array(self, tmp_path):
        path = tmp_path / "o.npy"
        np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
        with pytest.raises(ValueError, match="o.npy"):
            read_label_image(path)

    def test_wrong_ndim(self, tmp_path):
        path = tmp_path / "4d.npy"
        np.save(path, np.zeros((2, 2, 2, 2), np.uint8))
        with pytest.raises(ValueError, match="2D or 3D"):
            read_label_image(path)

    @pytest.mark.parametrize("content", [b"", b"\x93NUMPY garbage"])
    def test_corrupt(self, tmp_path, content):
        path = tmp_path / "c.npy"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="c.npy"):
            read_label_image(path)

    def test_huge_header_refused_before_reading(self, tmp_path):
        # a header announcing 2**32 voxels and no data: must fail on the size, not on memory
        path = tmp_path / "huge.npy"
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "|u1", "fortran_order": False, "shape": (2**12, 2**12, 2**8)})
        with pytest.raises(ValueError, match="exceeds the limit"):
            read_label_image(path)

    def test_empty_array(self, tmp_path):
        path = tmp_path / "e.npy"
        np.save(path, np.zeros((0, 5), np.uint8))
        with pytest.raises(ValueError, match="empty"):
            read_label_image(path)


class TestFolder:
    def test_natural_order(self, tmp_path):
        folder = tmp_path / "stack"
        folder.mkdir()
        # 11 slices, each with a distinct content, named so that lexical order would be wrong
        vol = random_labels((0, 85, 170), shape=(11, 6, 7), dtype=np.uint8, seed=9)
        for z in range(11):
            tifffile.imwrite(folder / f"slice_{z + 1}.tif", vol[z])
        (folder / ".hidden.tif").write_bytes(b"junk")  # e.g. macOS resource forks: ignored
        (folder / "notes.txt").write_text("ignored")
        image = read_label_image(folder)
        check_volume(image, vol)
        assert image.data.shape == (11, 6, 7)

    def test_calibrated_slices(self, tmp_path):
        folder = tmp_path / "cal"
        folder.mkdir()
        for z in range(3):
            write_label_tiff(folder / f"s{z}.tif", (VOL[z] // 85), voxel_size=0.3)
        image = read_label_image(folder)
        assert image.voxel_size == pytest.approx(0.3) and image.unit == "um"
        assert "assumed" in image.message

    def test_shape_mismatch(self, tmp_path):
        folder = tmp_path / "bad"
        folder.mkdir()
        tifffile.imwrite(folder / "a1.tif", VOL[0])
        tifffile.imwrite(folder / "a2.tif", VOL[0, :5])
        with pytest.raises(ValueError, match="a2.tif"):
            read_label_image(folder)

    def test_3d_slices_rejected(self, tmp_path):
        folder = tmp_path / "vol"
        folder.mkdir()
        tifffile.imwrite(folder / "v.tif", VOL)
        with pytest.raises(ValueError, match="must be 2D"):
            read_label_image(folder)

    def test_empty_folder(self, tmp_path):
        with pytest.raises(ValueError, match="no .tif"):
            read_label_image(tmp_path)

    def test_corrupt_slice(self, tmp_path):
        tifffile.imwrite(tmp_path / "a.tif", VOL[0])
        (tmp_path / "b.tif").write_bytes(b"nope")
        with pytest.raises(ValueError, match="b.tif"):
            read_label_image(tmp_path)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        read_label_image(tmp_path / "nothing.tif")
    other = tmp_path / "x.jpg"
    other.write_bytes(b"123")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_label_image(other)


# --------------------------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------------------------
PHASES = random_labels((0, 1, 2), shape=(6, 10, 8), dtype=np.uint8, seed=5)


class TestWriter:
    @pytest.mark.parametrize(
        ("data", "voxel", "unit", "spacing"),
        [
            (PHASES, 0.39, "um", (0.39, 0.39, 0.39)),
            (PHASES, (1.5, 0.25, 0.25), "nm", (1.5, 0.25, 0.25)),
            (PHASES[0], 0.123456, "um", (0.123456, 0.123456)),
        ],
    )
    def test_round_trip(self, tmp_path, data, voxel, unit, spacing):
        path = write_label_tiff(tmp_path / "out.tif", data, voxel_size=voxel, unit=unit)
        assert path == tmp_path / "out.tif"
        image = read_label_image(path)
        np.testing.assert_array_equal(image.data, data)
        assert image.mapping == {0: 0, 1: 1, 2: 2}
        assert image.unit == unit
        assert image.spacing == pytest.approx(spacing, rel=1e-6)
        assert image.voxel_size == pytest.approx(spacing[-1], rel=1e-6)
        # ImageJ-compatible: ImageJ hyperstack metadata, uint8, z as slices
        with tifffile.TiffFile(path) as tif:
            assert tif.is_imagej and tif.series[0].dtype == np.uint8
            assert tif.series[0].axes == ("ZYX" if data.ndim == 3 else "YX")
            if data.ndim == 3:
                assert tif.imagej_metadata["slices"] == data.shape[0]

    def test_round_trip_missing_phase_stays_canonical(self, tmp_path):
        data = np.where(PHASES == 1, 2, PHASES).astype(np.uint8)  # no active phase
        image = read_label_image(write_label_tiff(tmp_path / "o.tiff", data))
        np.testing.assert_array_equal(image.data, data)
        assert image.voxel_size is None and image.unit is None

    def test_bool_and_int_input(self, tmp_path):
        image = read_label_image(write_label_tiff(tmp_path / "b.tif", PHASES.astype(np.int64)))
        np.testing.assert_array_equal(image.data, PHASES)

    def test_no_temp_file_left(self, tmp_path):
        write_label_tiff(tmp_path / "a.tif", PHASES, 1.0)
        write_label_tiff(tmp_path / "a.tif", PHASES[::-1], 1.0)  # overwrite
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]
        np.testing.assert_array_equal(read_label_image(tmp_path / "a.tif").data, PHASES[::-1])

    def test_failure_does_not_clobber(self, tmp_path, monkeypatch):
        target = tmp_path / "keep.tif"
        write_label_tiff(target, PHASES, 0.5)
        before = target.read_bytes()

        def broken_imwrite(file, *args, **kwargs):
            Path(file).write_bytes(b"partial")  # half-written output, then a crash
            raise RuntimeError("disk full")

        monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
        with pytest.raises(RuntimeError, match="disk full"):
            write_label_tiff(target, PHASES[::-1], 0.5)
        assert target.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]

    @pytest.mark.parametrize(
        ("data", "kwargs", "error", "match"),
        [
            (PHASES + 1, {}, ValueError, "holds labels 1..3"),
            (PHASES.astype(np.float32), {}, TypeError, "integer phase labels"),
            (PHASES[None], {}, ValueError, "2D or 3D"),
            (np.zeros((0, 3), np.uint8), {}, ValueError, "empty"),
            (PHASES, {"voxel_size": 0.0}, ValueError, "positive"),
            (PHASES, {"voxel_size": float("nan")}, ValueError, "positive"),
            (PHASES, {"voxel_size": (1.0, 1.0)}, ValueError, "2 values"),
            (PHASES, {"voxel_size": "big"}, TypeError, "number"),
        ],
    )
    def test_bad_input(self, tmp_path, data, kwargs, error, match):
        with pytest.raises(error, match=match):
            write_label_tiff(tmp_path / "x.tif", data, **kwargs)
        assert list(tmp_path.iterdir()) == []

    def test_bad_path(self, tmp_path):
        with pytest.raises(ValueError, match=r"\.tif or \.tiff"):
            write_label_tiff(tmp_path / "x.png", PHASES)
        with pytest.raises(ValueError, match="does not exist"):
            write_label_tiff(tmp_path / "missing" / "x.tif", PHASES)


def test_io_does_not_import_torch_or_napari():
    code = "import sys, napari_assb_twin.io; print('torch' in sys.modules, 'napari' in sys.modules, 'qtpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


# --------------------------------------------------------------------------------------------
# real data (../shared/data, README table: label -> fraction)
# --------------------------------------------------------------------------------------------
REAL = [
    ("tldr_taufactor/electrode_nmc_3phase_256.tiff", (256, 256, 256), {0: 0.450, 85: 0.400, 170: 0.150}, 1e-3),
    ("tldr_inpainter/nmc_3phase_128.tif", (128, 128, 128), {0: 0.344, 1: 0.519, 2: 0.137}, 1e-3),
    ("tldr_inpainter/nmc_3phase_2d_253.png", (253, 253), {0: 0.325, 128: 0.531, 255: 0.144}, 1e-3),
    ("tldr_inpainter/sofc_3phase_2d_2286x1326.png", (2286, 1326), {0: 0.348, 128: 0.355, 255: 0.297}, 1e-3),
    ("superres/SEM_hr_input.tif", (427, 427), {0: 0.100, 1: 0.666, 2: 0.234}, 1e-3),
    ("superres/NMC_lr_input.tif", (128, 128, 128), {0: 0.58, 1: 0.42}, 5e-3),
]


@pytest.mark.parametrize(("relative", "shape", "fractions", "tol"), REAL, ids=[r[0] for r in REAL])
def test_real_data(shared_file, relative, shape, fractions, tol):
    """Shapes and label fractions as stated in shared/data/README.md (tolerance: its rounding)."""
    image = read_label_image(shared_file(relative))
    assert image.data.shape == shape and image.data.dtype == np.uint8
    # automatic mapping: sorted labels -> 0, 1, 2
    assert image.mapping == {label: i for i, label in enumerate(sorted(fractions))}
    measured = image.fractions
    from napari_assb_twin.phases import PHASE_NAMES

    for label, expected in fractions.items():
        assert measured[PHASE_NAMES[image.mapping[label]]] == pytest.approx(expected, abs=tol + 1e-9)
    assert sum(measured.values()) == pytest.approx(1.0)
