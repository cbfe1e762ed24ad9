"""Chord-length distributions against a brute-force line walk and analytic cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_assb_twin.stats.chords import (
    chord_histogram,
    chord_length_distributions,
    chord_lengths,
    mean_chord_length,
    runs_along_axis,
)


def brute_chords(lab: np.ndarray, phase: int, axis: int, keep_border: bool) -> list[int]:
    """Walk every line pixel by pixel in plain python."""
    other = [range(n) for d, n in enumerate(lab.shape) if d != axis]
    n = lab.shape[axis]
    out = []
    for idx in itertools.product(*other):
        line = []
        for t in range(n):
            full = list(idx)
            full.insert(axis, t)
            line.append(int(lab[tuple(full)]))
        t = 0
        while t < n:
            if line[t] != phase:
                t += 1
                continue
            s = t
            while t < n and line[t] == phase:
                t += 1
            if keep_border or (s > 0 and t < n):
                out.append(t - s)
    return out


@pytest.mark.parametrize("shape", [(9, 11), (6, 7, 8)])
@pytest.mark.parametrize("keep_border", [False, True])
def test_matches_brute_force(shape, keep_border):
    rng = np.random.default_rng(len(shape))
    # correlated labels (sorted noise blocks) so that chords longer than 1 occur
    lab = (rng.random(shape) * 3).astype(np.uint8)
    lab = np.repeat(lab, 2, axis=-1)[..., : shape[-1]]
    for axis, phase in itertools.product(range(len(shape)), range(3)):
        got = chord_lengths(lab, phase, axis, keep_border=keep_border)
        want = brute_chords(lab, phase, axis, keep_border)
        assert sorted(got.tolist()) == sorted(want), (axis, phase)
        assert got.tolist() == want  # same line order too
    res = chord_length_distributions(lab, keep_border=keep_border)
    for (p, d), lens in res.lengths.items():
        assert sorted(lens.tolist()) == sorted(brute_chords(lab, p, d, keep_border))


def test_runs_partition_every_line():
    lab = np.random.default_rng(0).integers(0, 3, (5, 6, 7))
    for axis in range(3):
        values, lengths, _ = runs_along_axis(lab, axis)
        assert lengths.sum() == lab.size
        for p in range(3):
            assert lengths[values == p].sum() == (lab == p).sum()


def test_stripes_of_known_width():
    # stripes along axis 1 of widths 3 (phase 0), 5 (phase 1), 2 (phase 2), period 10
    row = np.array([0] * 3 + [1] * 5 + [2] * 2)
    lab = np.tile(row, (4, 6))  # (4, 60): six periods
    for p, w in [(0, 3), (1, 5), (2, 2)]:
        lens = chord_lengths(lab, p, axis=1)
        # interior chords only: phase 0 starts the line (first chord cut), phase 2 ends it
        assert np.all(lens == w)
        assert lens.size == 4 * (5 if p != 1 else 6)
        assert mean_chord_length(lens) == w
        # along axis 0 every column is constant: every chord touches both borders
        assert chord_lengths(lab, p, axis=0).size == 0
        assert np.all(chord_lengths(lab, p, axis=0, keep_border=True) == 4)
    assert chord_lengths(lab, 0, axis=1, keep_border=True).size == 4 * 6


def test_single_rectangle_3d():
    lab = np.zeros((10, 12, 14), np.uint8)
    lab[2:6, 3:10, 4:12] = 1  # 4 x 7 x 8 box of phase 1
    res = chord_length_distributions(lab, voxel_size=0.5, unit="um")
    for axis, (length, count) in enumerate([(4, 7 * 8), (7, 4 * 8), (8, 4 * 7)]):
        lens = res.lengths[(1, axis)]
        assert lens.size == count and np.all(lens == length)
        assert res.mean(1, axis) == length
    # phase 0 chords are the gaps on both sides of the box on the lines that cross it
    np.testing.assert_array_equal(np.unique(res.lengths[(0, 0)]), [])  # gaps touch the border
    assert res.lengths[(2, 0)].size == 0 and np.isnan(res.mean(2, 0))
    rows = res.rows()
    assert {r["phase"] for r in rows} == {"pore", "active", "electrolyte"}
    row = next(r for r in rows if r["phase"] == "active" and r["axis"] == 2)
    assert row["mean_px"] == 8 and row["mean_length"] == 4.0 and row["n_chords"] == 28


def test_batch_pools_images():
    rng = np.random.default_rng(1)
    labs = rng.integers(0, 3, (3, 8, 9))
    pooled = chord_lengths(labs, 1, 0, batch=True)
    want = np.concatenate([chord_lengths(lab, 1, 0) for lab in labs])
    assert sorted(pooled.tolist()) == sorted(want.tolist())


def test_histogram_normalisation():
    lens = np.array([1, 1, 2, 3, 3, 3, 10])
    h = chord_histogram(lens, [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(h, [2 / 7, 1 / 7, 3 / 7])  # the 10 is outside but counts in the total
    hd = chord_histogram(lens, [0.5, 2.5, 3.5], density=True)
    np.testing.assert_allclose(hd, [3 / 7 / 2, 3 / 7])
    np.testing.assert_array_equal(chord_histogram(np.array([], int), [0, 1, 2]), [0, 0])
    with pytest.raises(ValueError, match="increasing"):
        chord_histogram(lens, [3, 1])


def test_iid_line_geometric_mean():
    """Interior chords of an i.i.d. image are geometric: mean 1 / (1 - p)."""
    p = 0.6
    lab = (np.random.default_rng(5).random((400, 400)) < p).astype(np.uint8)
    m = mean_chord_length(chord_lengths(lab, 1, 1))
    # about 160 * 400 / 2.5 ~ 26k chords, std of the mean ~ sqrt(p)/(1-p)/sqrt(26k) ~ 0.012
    assert abs(m - 1 / (1 - p)) < 0.06


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((np.zeros((4, 4), np.float32), 0, 0), {}, TypeError, "integer"),
        (([[0, 1]], 0, 0), {}, TypeError, "numpy array"),
        ((np.zeros(5, np.uint8), 0, 0), {}, ValueError, "2D or 3D"),
        ((np.zeros((0, 4), np.uint8), 0, 0), {}, ValueError, "empty"),
        ((np.zeros((4, 4), np.uint8), 0, 2), {}, ValueError, "axis 2"),
        ((np.zeros((4, 4), np.uint8), 0, 1.0), {}, TypeError, "axis"),
    ],
)
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        chord_lengths(*args, **kwargs)


def test_bad_input_distributions():
    with pytest.raises(ValueError, match=r"0\.\.2"):
        chord_length_distributions(np.full((4, 4), 5, np.uint8))
    with pytest.raises(ValueError, match="voxel_size"):
        chord_length_distributions(np.zeros((4, 4), np.uint8), voxel_size=-1)
