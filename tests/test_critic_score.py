"""The critic as a selection statistic (calibrate/critic_score.py, issue 21 item 5)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from napari_assb_twin.calibrate import critic_score
from napari_assb_twin.calibrate.critic_score import (
    check_critic_data,
    critic_distance,
    critic_patch,
)
from napari_assb_twin.calibrate.data import CalibrationData
from napari_assb_twin.calibrate.selection import Candidate, iter_select_model
from napari_assb_twin.events import run_job
from napari_assb_twin.model import build_model

VF = {"pore": 0.35, "active": 0.45, "electrolyte": 0.20}
FAST = dict(steps=40, folds=1, fake_sections=2)  # ~1 s a call on one idle core


def _model(cand: Candidate, lengths=(6.0, 3.0)):
    return build_model(structure=cand.structure("lp-iso"), length_scales_px=lengths, volume_fractions=VF)


CHI1_UPPER = Candidate(order=("active", "pore", "electrolyte"), f1="chi2", f1_dof=1, level1="upper")
GAUSS = Candidate(order=("active", "pore", "electrolyte"), f1="gaussian", f1_dof=1, level1="lower")


def _real(model, n: int = 2, size: int = 128, seed: int = 11) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return list(model.sample_sections((size, size), "inplane", batch=n, generator=g).numpy())


@pytest.fixture(scope="module")
def truth():
    return _model(CHI1_UPPER)


def test_same_model_is_closer_than_another_structure_and_deterministic(truth):
    """Sections of the model itself (a real-vs-real test: fresh sections of the law the 'real' ones came
    from) score near 0; a Gaussian active phase at the same fractions and lengths, well above. Margin:
    0.3 between them (measured 0.0-0.1 vs 0.84-0.88 with the default settings, seeds 0 and 1)."""
    real = _real(truth)
    same = critic_distance(real, truth, "inplane", seed=0, **FAST)
    other = critic_distance(real, _model(GAUSS), "inplane", seed=0, **FAST)
    assert abs(same) < 0.25
    assert other > same + 0.3
    # same seed, same device: the same value to the last bit; a list of planes is the same as one plane
    assert critic_distance(real, truth, ["inplane", "inplane"], seed=0, **FAST) == same


def test_wasserstein_kind_orders_the_same_way(truth):
    real = _real(truth)
    same = critic_distance(real, truth, seed=1, kind="wgan-gp", **FAST)
    other = critic_distance(real, _model(GAUSS), seed=1, kind="wgan-gp", **FAST)
    assert other > same


def test_patch_rule():
    assert critic_patch([(256, 256)]) == 32
    assert critic_patch([(128, 128)]) == 32  # halves 64 x 128: two 32 px crops across
    assert critic_patch([(96, 96)]) == 16  # halves 48 x 96
    assert critic_patch([(128, 128), (64, 32)]) == 16  # the smallest section decides


@pytest.mark.parametrize(
    "sections, planes, match",
    [
        ([], "inplane", "at least one real section"),
        ([np.zeros((40, 20), np.uint8)], "inplane", "too small for the critic"),
        ([np.zeros((4, 64, 64), np.uint8)], "inplane", "2D sections"),
        ([np.full((64, 64), 3, np.uint8)], "inplane", "labels must be phases"),
        ([np.zeros((64, 64), np.uint8)] * 2, ["inplane"], "2 sections but 1 planes"),
        ([np.zeros((64, 64), np.uint8)], "sideways", "plane must be one of"),
    ],
)
def test_bad_input_gets_a_clear_message_before_any_work(truth, sections, planes, match):
    with pytest.raises(ValueError, match=match):
        critic_distance(sections, truth, planes)


def test_bad_settings(truth):
    real = [np.zeros((64, 64), np.uint8)]
    with pytest.raises(ValueError, match="critic kind"):
        critic_distance(real, truth, kind="mmd")
    with pytest.raises(ValueError, match="multiple of 16"):
        critic_distance(real, truth, patch=24)
    with pytest.raises(ValueError, match="too little inplane section area"):
        critic_distance(real, truth, patch=32)  # halves of 32 x 64: 3 held-out crops of 32 px, fewer than 4
    with pytest.raises(ValueError, match="steps must be >= 1"):
        critic_distance(real, truth, steps=0)


def test_selection_term_is_the_critic_times_its_weight(truth, monkeypatch):
    """``critic_weight`` adds ``w * critic`` to the score and nothing else (same fits, same 2D terms);
    weight 0 computes no critic. Small data fail with the critic's message before any fit."""
    monkeypatch.setattr(critic_score, "data_critic_distance",
                        functools.partial(critic_score.data_critic_distance, **FAST))
    data = CalibrationData.from_arrays(_real(truth, n=1), planes="inplane")
    kw = dict(candidates=[CHI1_UPPER, GAUSS], iterations=4, device="cpu", n_sections=2, seed=3)
    off = run_job(iter_select_model(data, "lp-iso", **kw))
    on = run_job(iter_select_model(data, "lp-iso", critic_weight=0.5, **kw))
    assert all("critic" not in r for r in off.rows)
    by_label = {r["label"]: r for r in off.rows}
    for r in on.rows:
        assert r["score"] == pytest.approx(by_label[r["label"]]["score"] + 0.5 * r["critic"], abs=1e-12)
        assert r["topology"] == by_label[r["label"]]["topology"]
    assert all(-1.0 <= r["critic"] <= 1.0 for r in on.rows)
    tiny = CalibrationData.from_arrays([np.tile(np.array([[0, 1, 2, 1]], np.uint8), (40, 5))], planes="inplane")
    with pytest.raises(ValueError, match="too small for the critic"):
        check_critic_data(tiny)
    with pytest.raises(ValueError, match="too small for the critic"):
        run_job(iter_select_model(tiny, "lp-iso", critic_weight=1.0, **kw))
