"""Files the core writes and reads: model.json and calibration checkpoints (modes, temp names, bad files)."""

import os

import numpy as np
import pytest
import torch

from napari_assb_twin.calibrate import CalibrationConfig, CalibrationData, Calibrator
from napari_assb_twin.calibrate import engine as engine_mod
from napari_assb_twin.model import build_model, load_model, save_model
from napari_assb_twin.model.modelfile import ModelFileError


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _calibrator() -> Calibrator:
    rng = np.random.default_rng(0)
    data = CalibrationData.from_arrays([rng.integers(0, 3, (32, 32)).astype(np.uint8) for _ in range(2)])
    cfg = CalibrationConfig(device="cpu", iterations=2, r_max=4, section_size=16, batch=2, eval_every=1, eval_batch=2)
    cal = Calibrator(data, cfg)
    next(cal.run())
    return cal


def test_model_json_mode_follows_the_umask_and_round_trips(tmp_path, umask_022):
    m = build_model("lp-iso", length_scales_px=(4.0, 2.5))
    path = save_model(m, tmp_path / "model.json")
    assert (path.stat().st_mode & 0o777) == 0o644  # open()'s mode, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]  # no temp file left
    assert load_model(path).interpretable() == pytest.approx(m.interpretable())


def test_checkpoint_mode_follows_the_umask_and_temp_names_are_unique(tmp_path, umask_022, monkeypatch):
    cal = _calibrator()
    written = []
    real_save = torch.save

    def spy(obj, f, *a, **kw):
        written.append(os.fspath(f))
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(engine_mod.torch, "save", spy)
    target = tmp_path / "c.ckpt"
    cal.save_checkpoint(target)
    cal.save_checkpoint(target)
    assert (target.stat().st_mode & 0o777) == 0o644
    # two saves (two runs writing one checkpoint) never share a temp name, and it is never the fixed "c.ckpt.tmp"
    assert len(written) == 2 and len(set(written)) == 2 and all(os.path.dirname(w) == str(tmp_path) for w in written)
    assert str(target) + ".tmp" not in written and str(target) not in written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ckpt"]


def test_load_model_says_a_folder_is_a_folder(tmp_path):
    with pytest.raises(ModelFileError, match="is a folder, not a model file") as err:
        load_model(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_load_model_names_the_file_of_a_too_deeply_nested_json(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFileError, match="nests too deeply") as err:
        load_model(deep)
    assert str(deep) in str(err.value)
