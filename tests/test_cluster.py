"""Two-point cluster functions against a brute-force oracle and known cases."""

import numpy as np
import pytest
from scipy import ndimage

from napari_assb_twin.stats.cluster import two_point_cluster


def _oracle(labels, r_max, axis, n_phases=3):
    """Pair by pair: both pixels in phase p and in the same 4- (6-) connected component of it."""
    out = np.zeros((n_phases, r_max + 1))
    moved = np.moveaxis(labels, axis, -1)
    n = moved.shape[-1]
    for p in range(n_phases):
        comp, _ = ndimage.label(moved == p)  # face connectivity; moveaxis keeps neighbourhoods
        for r in range(r_max + 1):
            hits = total = 0
            for idx in np.ndindex(*moved.shape[:-1]):
                line = comp[idx]
                for i in range(n - r):
                    total += 1
                    hits += line[i] > 0 and line[i] == line[i + r]
            out[p, r] = hits / total
    return out


@pytest.mark.parametrize("shape,axis", [((12, 15), 0), ((12, 15), 1), ((6, 7, 8), 2)])
def test_matches_the_pairwise_oracle(shape, axis):
    labels = np.random.default_rng(3).integers(0, 3, shape)
    r = min(shape[axis] - 1, 6)
    np.testing.assert_allclose(two_point_cluster(labels, r, axis), _oracle(labels, r, axis), atol=1e-12)


def test_separate_clusters_do_not_count_and_a_spanning_one_does():
    """Two vertical bars of phase 1 one pixel apart: C2 along the rows is phi(r) within a bar
    (width 3) and 0 across the gap, although C_11 is not; joined by a bridge row they form one cluster."""
    img = np.zeros((10, 7), np.int64)
    img[:, 0:3] = 1
    img[:, 4:7] = 1
    c2 = two_point_cluster(img, 6, axis=1)
    assert c2[1, 0] == pytest.approx(60 / 70)
    assert c2[1, 4] == 0.0 and c2[1, 6] == 0.0  # every pair 4 or 6 apart is in different bars
    assert c2[1, 1] == pytest.approx(40 / 60)  # pairs (0,1), (1,2), (4,5), (5,6) of each row
    img[0, 3] = 1  # a bridge joins the bars
    assert two_point_cluster(img, 6, axis=1)[1, 6] == pytest.approx(10 / 10)  # (0, 6) of every row


def test_batch_does_not_join_images_and_pools_them():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, (2, 16, 16))
    both = two_point_cluster(np.stack([a, b]), 5, axis=0, batch=True)
    np.testing.assert_allclose(both, (two_point_cluster(a, 5, 0) + two_point_cluster(b, 5, 0)) / 2)


def test_bad_lag_is_refused():
    with pytest.raises(ValueError, match="r_max must be an integer in 0..9"):
        two_point_cluster(np.zeros((10, 10), np.int64), 10, 0)
