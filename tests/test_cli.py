"""The assb-twin command line: outputs, round trips and one-line errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from napari_assb_twin.cli import main
from napari_assb_twin.io import read_label_image, write_label_tiff
from napari_assb_twin.model import list_reference_models, load_reference_model


def test_models_lists_and_prints_json(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_reference_models():
        assert name in out
    assert main(["models", "pressed-assb-cathode"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "assb-twin-model" and data["fields"]["f1"]["anisotropy"] == "cylindrical"


def test_generate_writes_labelled_tiff_with_voxel_size(tmp_path, capsys):
    out = tmp_path / "twin.tif"
    assert main(["generate", "reference-assb-cathode", "--shape", "32", "40", "48", "--seed", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    img = read_label_image(out)
    model = load_reference_model()
    assert img.data.shape == (32, 40, 48) and img.data.dtype == np.uint8
    assert img.voxel_size == pytest.approx(model.voxel_size) and img.unit == "um"
    assert np.array_equal(img.data, model.generate((32, 40, 48), seed=2))
    frac = np.bincount(img.data.ravel(), minlength=3) / img.data.size
    assert f"pore {frac[0]:.4f}" in text  # realised fractions are printed
    # never overwrite silently
    assert main(["generate", "reference-assb-cathode", "--shape", "8", "8", "8", "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err


def test_coverage_csv_long_format(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 128, 255], dtype=np.uint8), size=(40, 50))
    img = tmp_path / "img.tif"
    write_label_tiff(img, (labels // 127).astype(np.uint8))
    np.save(tmp_path / "raw.npy", labels)
    out = tmp_path / "cov.csv"
    assert main(["coverage", str(tmp_path / "raw.npy"), "--labels", "0:pore,128:active,255:electrolyte",
                 "--rmax", "5", "--voxel-size", "0.5", "--out", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["direction", "r_px", "distance", "phase_i", "phase_j", "value", "unit", "voxel_size", "estimator"]
    assert {(r["unit"], r["voxel_size"], r["estimator"]) for r in rows} == {("um", "0.5", "minus-sampling")}
    assert {r["direction"] for r in rows} == {"0", "1", "radial"}
    pore0 = [r for r in rows if r["direction"] == "0" and r["phase_i"] == r["phase_j"] == "pore" and r["r_px"] == "0"]
    assert float(pore0[0]["value"]) == pytest.approx(np.mean(labels == 0), abs=1e-6)
    r2 = [r for r in rows if r["r_px"] == "2"][0]
    assert float(r2["distance"]) == pytest.approx(1.0)


@pytest.mark.parametrize("argv,needle", [
    (["generate", "no-such-model", "--out", "x.tif"], "neither a file nor a built-in"),
    (["generate", "reference-assb-cathode", "--device", "warp9", "--out", "x.tif"], "device"),
    (["coverage", "missing.tif", "--out", "c.csv"], "missing.tif"),
])
def test_errors_are_one_line_without_traceback(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]


def test_debug_flag_shows_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "napari_assb_twin.cli", "--debug", "generate", "nope", "--out",
                           str(tmp_path / "x.tif")], capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_coverage_refuses_continuous_grey_values(tmp_path, capsys):
    np.save(tmp_path / "grey.npy", np.random.default_rng(1).random((20, 20)))
    assert main(["coverage", str(tmp_path / "grey.npy"), "--out", str(tmp_path / "c.csv")]) == 1
    assert "segment" in capsys.readouterr().err.lower()
