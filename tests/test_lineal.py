"""Lineal-path functions against a brute-force oracle and known values."""

import numpy as np
import pytest

from napari_assb_twin.stats.lineal import lineal_path


def brute_lineal(img: np.ndarray, p: int, r: int, axis: int) -> float:
    """Fraction of all (r + 1)-pixel windows along ``axis`` that lie wholly in phase ``p``."""
    a = np.moveaxis(img, axis, -1)
    n = a.shape[-1]
    hits = total = 0
    for s in range(n - r):
        win = a[..., s : s + r + 1]
        hits += int(np.all(win == p, axis=-1).sum())
        total += int(np.prod(win.shape[:-1]))
    return hits / total


@pytest.mark.parametrize("shape,axis", [((23, 31), 0), ((23, 31), 1), ((9, 11, 13), 2), ((9, 11, 13), 0)])
def test_lineal_path_matches_brute_force(shape, axis):
    rng = np.random.default_rng(7)
    # blocky random labels so long runs exist
    img = rng.integers(0, 3, size=shape).astype(np.uint8)
    img = np.repeat(img, 2, axis=axis)[tuple(slice(0, s) for s in shape)]
    r_max = shape[axis] - 1
    got = lineal_path(img, r_max, axis)
    for p in range(3):
        for r in range(r_max + 1):
            assert got[p, r] == pytest.approx(brute_lineal(img, p, r, axis), abs=1e-12)


def test_lineal_path_basic_properties():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 3, size=(64, 64)).astype(np.uint8)
    L = lineal_path(img, 10, 1)
    np.testing.assert_allclose(L[:, 0], np.bincount(img.ravel(), minlength=3) / img.size)
    assert np.all(np.diff(L, axis=1) <= 1e-15)
    # i.i.d. pixels: L_p(r) = f_p^(r+1)
    f = L[:, 0]
    np.testing.assert_allclose(L[:, 3], f**4, atol=0.01)


def test_lineal_path_batch_pools_images():
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 3, size=(3, 20, 25)).astype(np.uint8)
    pooled = lineal_path(imgs, 5, 0, batch=True)
    each = np.mean([lineal_path(im, 5, 0) for im in imgs], axis=0)  # same size -> same weights
    np.testing.assert_allclose(pooled, each, atol=1e-12)


def test_lineal_path_rejects_bad_input():
    img = np.zeros((10, 10), dtype=np.uint8)
    with pytest.raises(ValueError, match="r_max"):
        lineal_path(img, 10, 0)
    with pytest.raises(ValueError, match="labels must lie"):
        lineal_path(img + 5, 3, 0)
