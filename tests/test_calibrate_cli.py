"""`assb-twin calibrate`: outputs with provenance, Ctrl-C keeps the best model, clear errors."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import numpy as np
import pytest
import torch

from napari_assb_twin.calibrate import CalibrationData, Calibrator
from napari_assb_twin.cli import main
from napari_assb_twin.model import load_model

# the calibration mechanics on a fixed structure; the default (model selection first) is tested below
FAST = ["--rmax", "6", "--batch", "2", "--quiet", "--model", "lp-iso"]


@pytest.fixture(scope="module")
def section(calibration_section):
    return calibration_section


def test_calibrate_writes_model_log_and_figure_with_provenance(tmp_path, section, capsys):
    path, img = section
    out = tmp_path / "fit.json"
    rc = main(["calibrate", str(path), "--labels", "0:pore,128:active,255:electrolyte", "--iterations", "3",
               "--seed", "2", "--device", "cpu", "--voxel-size", "0.5", "--unit", "um", "--out", str(out), *FAST])
    assert rc == 0
    printed = capsys.readouterr().out
    # the summary puts the fit beside the data's own split-half noise (calibrate.noise)
    assert re.search(r"coverage RMSE \d\.\d{4} \(data noise \d\.\d{4}\)", printed)
    # lengths with their unit, and every file written named
    assert re.search(r"f1\.length_scale [\d.]+ um", printed), printed
    assert f"wrote model: {out}" in printed and "wrote log:" in printed and "wrote figure:" in printed
    model = load_model(out)
    prov = json.loads(out.read_text())["provenance"]
    assert prov["algorithm"] == "coverage" and prov["iterations"] == 3 and prov["seed"] == 2
    assert prov["device"].startswith("cpu") and "date" in prov and "torch" in prov and "package" in prov
    want = hashlib.sha256(f"{img.shape}".encode() + img.astype(np.uint8).tobytes()).hexdigest()
    assert prov["data_sha256"] == [want]
    assert "coverage" in prov["final_losses"]
    assert model.voxel_size == pytest.approx(0.5) and model.unit == "um"
    for k, v in CalibrationData.from_arrays([img]).volume_fractions.items():
        assert model.volume_fractions[k] == pytest.approx(v, abs=1e-9)
    rows = list(csv.DictReader((tmp_path / "fit.log.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert "loss.coverage" in rows[0] and "f1.length_scale" in rows[0]
    png = (tmp_path / "fit.coverage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # existing outputs are not overwritten without --force
    rc = main(["calibrate", str(path), "--iterations", "1", "--device", "cpu", "--out", str(out), *FAST])
    assert rc == 1


def test_ctrl_c_keeps_best_model_on_disk(tmp_path, section, monkeypatch):
    path, _ = section
    calls = {"n": 0}
    orig = Calibrator._step

    def interrupting(self, stage, it):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return orig(self, stage, it)

    monkeypatch.setattr(Calibrator, "_step", interrupting)
    out = tmp_path / "stopped.json"
    rc = main(["calibrate", str(path), "--iterations", "50", "--device", "cpu", "--out", str(out), *FAST])
    assert rc == 130
    model = load_model(out)
    prov = json.loads(out.read_text())["provenance"]
    assert prov["interrupted"] is True and prov["iterations"] == 3 and prov["finished"] is False
    assert model.sample_sections((16, 16), "inplane", seed=0).shape == (1, 16, 16)
    assert (tmp_path / "stopped.ckpt").is_file()


def test_calibrate_without_model_flags_selects_the_structure_first(tmp_path, section, capsys):
    """The default of `assb-twin calibrate IMAGE` (options.CALIBRATION_MODEL): model selection, then
    the winner is calibrated; the ranking is in the provenance and the model has the winning structure."""
    path, _ = section
    out = tmp_path / "auto.json"
    rc = main(["calibrate", str(path), "--iterations", "3", "--device", "cpu", "--out", str(out),
               "--rmax", "6", "--batch", "2", "--quiet"])
    assert rc == 0
    prov = json.loads(out.read_text())["provenance"]
    ranking = prov["model_selection"]
    assert len(ranking) >= 2 and ranking[0]["rank"] == 1
    model = load_model(out)
    from napari_assb_twin.phases import PHASE_NAMES

    first = PHASE_NAMES[model.rule.order[0]]
    assert first in ranking[0]["structure"]
    # --quiet: no progress lines (the pre-ranking printed one line per candidate structure)
    assert "pre-ranking" not in capsys.readouterr().out


def test_help_shows_the_defaults(capsys):
    for cmd, flags in (("calibrate", ("--iterations", "--seed")), ("generate", ("--shape", "--seed"))):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for flag in flags:
            after = text[text.rindex(flag + " "):][:400]  # the option list, not the usage line
            assert "default" in after.split(" --")[0], (cmd, flag, after[:200])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "tpu"], "unknown device"),
        (["--rmax", "40"], "too small for r_max"),
        (["--algorithm", "adversarial", "--patch", "64"], "patch"),
        (["--model", "lp-cyl"], "axial section"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, section, capsys, extra, message):
    path, _ = section
    args = ["calibrate", str(path), "--iterations", "1", "--out", str(tmp_path / "m.json"), "--quiet"]
    rc = main(args + (["--device", "cpu"] if "--device" not in extra else []) + extra)
    assert rc == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_two_phase_image_and_empty_file_are_refused(tmp_path, capsys):
    two = tmp_path / "two.npy"
    np.save(two, (np.arange(64 * 64).reshape(64, 64) % 2).astype(np.uint8))
    assert main(["calibrate", str(two), "--device", "cpu", "--out", str(tmp_path / "a.json"), "--quiet"]) == 1
    assert "electrolyte is missing" in capsys.readouterr().err
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    assert main(["calibrate", str(empty), "--device", "cpu", "--out", str(tmp_path / "b.json"), "--quiet"]) == 1
    assert "empty" in capsys.readouterr().err
    assert torch.get_num_threads() >= 1
