"""Descriptors against analytic values: slabs, spheres, checkerboards, channels, blobs, bottlenecks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_assb_twin.phases import PHASE_NAMES
from napari_assb_twin.stats import descriptors as D
from napari_assb_twin.stats.similarity import mssim, mssim_stack


def random_phases(shape, seed=0, sigma=2.0):
    """Small three-phase excursion set of a smoothed white noise (fractions about .35/.45/.2)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return np.digitize(f, np.quantile(f, [0.35, 0.8])).astype(np.uint8)


def face_count_oracle(ph, spacing):
    """Exact interface areas per unit volume of a block structure: count unlike face-neighbour pairs."""
    out: dict[tuple[int, int], float] = {}
    vol = ph.size * float(np.prod(spacing))
    for a in range(ph.ndim):
        face = float(np.prod([spacing[b] for b in range(ph.ndim) if b != a]))
        x = np.moveaxis(ph, a, 0)
        lo, hi = x[:-1], x[1:]
        diff = lo != hi
        for i, j in zip(lo[diff], hi[diff]):
            key = (int(min(i, j)), int(max(i, j)))
            out[key] = out.get(key, 0.0) + face / vol
    return out


# ---------------------------------------------------------------- volume fractions
def test_volume_fractions_match_counts_and_accept_torch():
    ph = random_phases((20, 24, 28))
    vf = D.volume_fractions(ph)
    for p in range(3):
        assert vf[p] == pytest.approx(np.count_nonzero(ph == p) / ph.size, abs=1e-15)
    torch = pytest.importorskip("torch")
    assert D.volume_fractions(torch.from_numpy(ph)) == vf


# ---------------------------------------------------------------- surface areas
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slab_interfaces_are_exact_and_box_boundary_not_counted(axis):
    # three slabs stacked along `axis`, anisotropic voxels: two internal planes, box faces excluded
    shape = (18, 20, 22)
    spacing = (0.5, 2.0, 1.25)
    coord = np.indices(shape)[axis]
    ph = np.digitize(coord, [5, 12]).astype(np.uint8)  # 0 | 1 | 2
    per_phase, per_pair = D.surface_area_densities(ph, voxel_size=spacing)
    plane = 1.0 / (shape[axis] * spacing[axis])  # one plane per unit volume
    assert per_pair[(0, 1)] == pytest.approx(plane, rel=1e-6)
    assert per_pair[(1, 2)] == pytest.approx(plane, rel=1e-6)
    assert per_pair[(0, 2)] == pytest.approx(0.0, abs=1e-9)
    assert per_phase[1] == pytest.approx(2 * plane, rel=1e-6)
    assert per_phase[0] == pytest.approx(plane, rel=1e-6)
    # the face-counting oracle agrees exactly for planes
    oracle = face_count_oracle(ph, spacing)
    assert per_pair[(0, 1)] == pytest.approx(oracle[(0, 1)], rel=1e-6)
    # a single phase filling the box has no surface at all
    assert D.specific_surface_area(np.ones(shape, np.uint8))[1] == 0.0


def test_slabs_2d_perimeter_exact():
    ph = np.zeros((30, 17), np.uint8)
    ph[:, 6:11] = 2
    s = D.specific_surface_area(ph, voxel_size=0.25)
    assert s[2] == pytest.approx(2 / (17 * 0.25), rel=1e-6)
    assert D.interface_area_density(ph, voxel_size=0.25)[(0, 2)] == pytest.approx(2 / (17 * 0.25), rel=1e-6)


@pytest.mark.parametrize("radius", [20.0, 8.0])
def test_sphere_surface_within_five_percent(radius):
    # off-grid centre; analytic 4 pi R^2. Plain marching cubes is ~+9 % here, the default 0.5 px
    # anti-aliasing brings it to about +4 % (R = 20) and +3 % (R = 8)
    n = int(2 * radius + 8)
    centre = (n - 1) / 2 + np.array([0.31, -0.17, 0.23])
    z, y, x = np.ogrid[:n, :n, :n]
    ball = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2).astype(np.uint8)
    h = 0.39
    s = D.specific_surface_area(ball, voxel_size=h)[1]
    area = s * ball.size * h**3
    exact = 4 * math.pi * (radius * h) ** 2
    assert area == pytest.approx(exact, rel=0.05)
    plain = D.specific_surface_area(ball, voxel_size=h, sigma=0.0)[1] * ball.size * h**3
    assert plain > area  # the documented staircase over-estimate that sigma corrects


def test_circle_perimeter_within_five_percent():
    n, radius = 52, 20.0
    c = (n - 1) / 2 + np.array([0.3, -0.2])
    y, x = np.ogrid[:n, :n]
    disk = ((y - c[0]) ** 2 + (x - c[1]) ** 2 <= radius**2).astype(np.uint8)
    perimeter = D.specific_surface_area(disk)[1] * n * n
    assert perimeter == pytest.approx(2 * math.pi * radius, rel=0.05)


def test_checkerboard_interface_areas():
    # three-phase checkerboard of L^3 cubes: label = (i//L + j//L + k//L) % 3; every pair shares a
    # third of the internal planes (exact by symmetry). Marching cubes chamfers the right-angle cube
    # edges, an O(1/L) deficit: measured -6.6 % (L = 8) and -3.3 % (L = 16); allow 5 % at L = 16.
    L = 16
    ph = (np.indices((4 * L,) * 3) // L).sum(axis=0) % 3
    ph = ph.astype(np.uint8)
    _, pair = D.surface_area_densities(ph)
    oracle = face_count_oracle(ph, (1.0, 1.0, 1.0))
    values = np.array([pair[k] for k in sorted(oracle)])
    assert np.ptp(values) < 1e-9 * values.max()
    for k, v in oracle.items():
        assert pair[k] == pytest.approx(v, rel=0.05)
    # 2D section: chamfered corners only, -1.6 % at L = 16; allow 2.5 %
    _, pair2 = D.surface_area_densities(ph[0])
    oracle2 = face_count_oracle(ph[0], (1.0, 1.0))
    for k, v in oracle2.items():
        assert pair2[k] == pytest.approx(v, rel=0.025)
    # the deficit shrinks with the cube size (1/L scaling of edge effects)
    ph8 = ((np.indices((32,) * 3) // 8).sum(axis=0) % 3).astype(np.uint8)
    err8 = abs(D.interface_area_density(ph8)[(0, 1)] / face_count_oracle(ph8, (1, 1, 1))[(0, 1)] - 1)
    err16 = abs(pair[(0, 1)] / oracle[(0, 1)] - 1)
    assert err16 < 0.7 * err8


def test_pair_areas_consistent_with_phase_areas_on_random_structure():
    ph = random_phases((32, 32, 32), seed=3)
    per_phase, per_pair = D.surface_area_densities(ph)
    oracle = face_count_oracle(ph, (1, 1, 1))
    # pore (low field values) and electrolyte (high) never share a face here; the union formula
    # gives a slightly negative S_02 (-0.6 % of S_0: marching-cubes surfaces of the three indicators
    # do not partition space exactly at edge-touching voxels), which is clipped to 0
    assert (0, 2) not in oracle and per_pair[(0, 2)] == 0.0
    # each phase surface is the sum of its interfaces, up to that clipping
    assert per_phase[0] == pytest.approx(per_pair[(0, 1)] + per_pair[(0, 2)], rel=0.02)
    assert per_phase[1] == pytest.approx(per_pair[(0, 1)] + per_pair[(1, 2)], rel=1e-9)
    # and below the staircase face count, which over-counts oblique surfaces (by 4/3 on average)
    for k, v in oracle.items():
        assert 0.55 * v < per_pair[k] < v


# ---------------------------------------------------------------- connectivity
def test_connectivity_slabs_blobs_and_mixture():
    n = 24
    ph = np.zeros((n, n, n), np.uint8)
    ph[:, :, 8:14] = 1  # slab spanning axes 0 and 1, not 2
    cf = D.connected_fraction(ph)
    assert cf[(1, 0)] == 1.0 and cf[(1, 1)] == 1.0 and cf[(1, 2)] == 0.0
    assert math.isnan(cf[(2, 0)])  # phase absent
    # isolated blobs (cubes not touching any face) -> 0 along every axis
    blobs = np.zeros((n, n, n), np.uint8)
    for c in (4, 12, 18):
        blobs[c : c + 3, c : c + 3, 2:5] = 2
    cf = D.connected_fraction(blobs)
    assert all(cf[(2, a)] == 0.0 for a in range(3))
    assert all(cf[(0, a)] == 1.0 for a in range(3))
    # slab plus one blob: fraction = slab volume / total
    ph[3:6, 3:6, 1:4] = 1
    frac = (n * n * 6) / (n * n * 6 + 27)
    assert D.connected_fraction(ph, axes=0)[(1, 0)] == pytest.approx(frac)
    # corner-touching cubes are not face-connected
    diag = np.zeros((2, 2, 2), np.uint8)
    diag[0, 0, 0] = diag[1, 1, 1] = 1
    assert D.connected_fraction(diag)[(1, 0)] == 0.0


# ---------------------------------------------------------------- geodesic tortuosity
@pytest.mark.parametrize("method", ["fmm", "dijkstra"])
def test_geodesic_tortuosity_straight_channels_is_one(method):
    if method == "fmm":
        pytest.importorskip("skfmm")
    ph = np.zeros((20, 16, 18), np.uint8)
    ph[:, 4:9, 3:10] = 2  # channel along axis 0
    ph[5:9, :, 12:] = 1  # an active bar along axis 1, touching only the last face of axis 2
    tg = D.geodesic_tortuosity(ph, voxel_size=(0.5, 1.0, 2.0), method=method)
    assert tg[(2, 0)] == pytest.approx(1.0, abs=1e-9)
    assert tg[(2, 1)] == math.inf and tg[(2, 2)] == math.inf
    assert tg[(1, 1)] == pytest.approx(1.0, abs=1e-9)
    assert tg[(1, 0)] == math.inf and tg[(1, 2)] == math.inf
    # the pore phase must go round the bar from some inlet voxels: a mean detour > 1
    assert tg[(0, 2)] > 1.0


@pytest.mark.parametrize("method, tol", [("fmm", 0.01), ("dijkstra", 0.05)])
def test_geodesic_tortuosity_detour_around_a_wall(method, tol):
    # wall across the middle with a gap at the left: every inlet point must go round the wall's end
    # point; analytic mean of (Euclidean detour / thickness) over the inlet row
    if method == "fmm":
        pytest.importorskip("skfmm")
    n, m, g = 61, 30, 5
    ph = np.ones((n, n), np.uint8)
    ph[m, g:] = 0
    x = np.arange(n)
    length = np.where(x <= g - 1, n - 1, np.hypot(m, x - (g - 1)) + (n - 1 - m))
    exact = float(np.mean(length / (n - 1)))
    got = D.geodesic_tortuosity(ph, axes=0, method=method)[(1, 0)]
    assert got == pytest.approx(exact, rel=tol)  # fmm: 0.2 %, 26-neighbour Dijkstra: +2.9 %
    assert got > 1.15


# ---------------------------------------------------------------- constrictivity
@pytest.mark.parametrize("method", ["bisect", "porespy"])
def test_constrictivity_straight_channel_is_one_and_bottleneck_matches_radius_ratio(method):
    r1, r2, n0 = 8, 4, 60
    w = 2 * r1
    straight = np.zeros((n0, w + 2, 12), np.uint8)
    straight[:, 1 : 1 + w, :] = 1  # slab channel of half-width r1 along axes 0 and 2
    res = D.constrictivity(straight, axes=(0, 1), method=method)
    assert res[(1, 0)]["beta"] == 1.0 and res[(1, 0)]["r_max"] == r1
    assert res[(1, 1)]["beta"] == 0.0  # does not connect the faces of axis 1
    neck = straight.copy()
    c = n0 // 2
    neck[c - 3 : c + 3, 1 : 1 + r1 - r2] = 0
    neck[c - 3 : c + 3, 1 + w - (r1 - r2) : 1 + w] = 0
    res = D.constrictivity(neck, axes=0, voxel_size=0.5, method=method)[(1, 0)]
    assert res["r_max"] == pytest.approx(r1 * 0.5)
    assert res["r_min"] == pytest.approx(r2 * 0.5)
    assert res["beta"] == pytest.approx((r2 / r1) ** 2)
    with pytest.raises(ValueError, match="isotropic"):
        D.constrictivity(neck, voxel_size=(1, 1, 2), method=method)


def test_constrictivity_bisection_refines_porespy_integer_radii():
    # PoreSpy evaluates integer radii only, so its quantiles are the floor of the sub-voxel ones:
    # r_porespy <= r_bisect < r_porespy + 1 for every phase and axis of a random structure
    ph = random_phases((40, 40, 40), seed=2, sigma=2.5)
    fine = D.constrictivity(ph, method="bisect")
    coarse = D.constrictivity(ph, method="porespy")
    for key, f in fine.items():
        for r in ("r_min", "r_max"):
            assert coarse[key][r] <= f[r] + 1e-9
            assert f[r] < coarse[key][r] + 1.0
        assert 0.0 <= f["beta"] <= 1.0
    # radii are square roots of integers (every distinct digital ball)
    radii = np.array([f[r] for f in fine.values() for r in ("r_min", "r_max")])
    assert np.allclose(np.rint(radii**2), radii**2)
    with pytest.raises(ValueError, match="unknown method"):
        D.constrictivity(ph, method="exact")


def _ball(m: int, ndim: int) -> np.ndarray:
    """Digital ball of squared radius m: the offsets d with |d|^2 < m."""
    r = math.isqrt(max(m - 1, 0))
    grid = np.indices((2 * r + 1,) * ndim) - r
    return (grid**2).sum(axis=0) < m


def constrictivity_oracle(ph: np.ndarray, axes) -> dict:
    """Brute force: every level m = 1 .. max dt^2, balls painted by binary dilation, clusters by labelling."""
    from scipy import ndimage as ndi

    out = {}
    conn = ndi.generate_binary_structure(ph.ndim, 1)
    for p in range(3):
        ind = ph == p
        need = 0.5 * ind.sum()
        dt2 = np.rint(ndi.distance_transform_edt(ind) ** 2).astype(int)
        levels = range(1, int(dt2.max()) + 1)
        opened = [ind & ndi.binary_dilation(dt2 >= m, _ball(m, ph.ndim)) for m in levels]
        m_open = max((m for m, o in zip(levels, opened) if o.sum() >= need), default=0)
        labels, _ = ndi.label(ind, conn)
        for a in axes:
            sl0, sl1 = [slice(None)] * ph.ndim, [slice(None)] * ph.ndim
            sl0[a], sl1[a] = 0, -1
            percolates = bool(np.intersect1d(labels[tuple(sl0)], labels[tuple(sl1)]).any())
            m_intr = 0
            for m in levels if percolates else ():
                lab, _ = ndi.label(dt2 >= m, conn)
                inlet = np.setdiff1d(np.unique(lab[tuple(sl0)]), [0])
                seeds = np.isin(lab, inlet)
                if (ind & ndi.binary_dilation(seeds, _ball(m, ph.ndim))).sum() >= need:
                    m_intr = m
            out[(p, a)] = (m_intr, m_open)
    return out


@pytest.mark.parametrize("shape,seed", [((26, 24, 22), 3), ((72, 64), 5)])
def test_constrictivity_equals_brute_force_over_every_radius(shape, seed):
    # the bisection over bounded distance transforms must find exactly the levels that painting every
    # digital ball at every level finds (largest squared radius with >= half of the phase covered)
    ph = random_phases(shape, seed=seed, sigma=2.0)
    axes = tuple(range(ph.ndim))
    fast = D.constrictivity(ph, axes=axes)
    for (p, a), (m_intr, m_open) in constrictivity_oracle(ph, axes).items():
        got = fast[(p, a)]
        assert got["r_max"] ** 2 == pytest.approx(m_open, abs=1e-9), (p, a)
        assert got["r_min"] ** 2 == pytest.approx(m_intr, abs=1e-9), (p, a)
        assert got["beta"] == pytest.approx(m_intr / m_open), (p, a)


def test_constrictivity_of_a_cylinder_with_a_neck():
    # pore cylinder of radius R = 8 along axis 0, a neck of radius 4 at 1/3 of the length. Digitally the
    # largest ball through a disk {|d|^2 <= R^2} has squared radius R^2 + 1 (the nearest outside voxel
    # is at (R, 1)), so beta = (4^2 + 1) / (8^2 + 1) = 0.262, within 5 % of the continuum (4 / 8)^2
    rr, rn, n0 = 8, 4, 60
    yy, xx = np.indices((2 * rr + 5,) * 2) - (rr + 2)
    d2 = yy**2 + xx**2
    ph = np.ones((n0,) + d2.shape, np.uint8)
    ph[:, d2 <= rr**2] = 0
    ph[20:26][:, d2 > rn**2] = 1
    res = D.constrictivity(ph, axes=0)[(0, 0)]
    assert res["r_max"] ** 2 == pytest.approx(rr**2 + 1)
    assert res["r_min"] ** 2 == pytest.approx(rn**2 + 1)
    assert res["beta"] == pytest.approx((rn**2 + 1) / (rr**2 + 1))
    assert res["beta"] == pytest.approx((rn / rr) ** 2, rel=0.05)


@pytest.mark.parametrize("shape", [(17, 23, 19), (41, 37)])
def test_closer_than_counts_equals_exact_distance_transform(shape):
    from scipy import ndimage as ndi

    from napari_assb_twin.stats.ball_cover import closer_than_counts

    rng = np.random.default_rng(7)
    seeds = rng.random(shape) < 0.01
    within = rng.random(shape) < 0.6
    d2 = np.rint(ndi.distance_transform_edt(~seeds) ** 2)[within]
    for cap in (1, 2, 9, 50, 400):
        want = np.array([(d2 < j).sum() for j in range(cap + 1)])
        np.testing.assert_array_equal(closer_than_counts(seeds, within, cap), want)
    np.testing.assert_array_equal(closer_than_counts(np.zeros(shape, bool), within, 5), np.zeros(6))
    with pytest.raises(ValueError, match="cap"):
        closer_than_counts(seeds, within, 0)
    with pytest.raises(ValueError, match="shape"):
        closer_than_counts(seeds, within[..., :-1], 4)


# ---------------------------------------------------------------- describe / records
def test_describe_records_2d_and_3d():
    pd = pytest.importorskip("pandas")
    ph = random_phases((24, 24, 24), seed=1)
    timings: dict[str, float] = {}
    recs = D.describe(ph, voxel_size=0.39, unit="um", transport=True, timings=timings)
    assert all(set(r) == {"descriptor", "phase", "axis", "value", "unit"} for r in recs)
    df = D.records_to_frame(recs)
    vf = df[df.descriptor == "volume_fraction"].set_index("phase")["value"]
    assert vf.sum() == pytest.approx(1.0)
    assert set(df.descriptor) >= {
        "volume_fraction", "specific_surface_area", "interface_area_density", "connected_fraction",
        "geodesic_tortuosity", "constrictivity", "r_min", "r_max", "tau_factor", "effective_diffusivity",
    }
    ssa = df[df.descriptor == "specific_surface_area"]
    assert (ssa.unit == "1/um").all() and len(ssa) == 3
    tau = df[(df.descriptor == "tau_factor")]
    assert len(tau) == 9 and set(tau.phase) == set(PHASE_NAMES)
    # the D_eff records are vf / tau
    for _, row in tau.iterrows():
        deff = df[(df.descriptor == "effective_diffusivity") & (df.phase == row.phase) & (df.axis == row.axis)]
        expected = 0.0 if math.isinf(row.value) else vf[row.phase] / row.value
        assert deff.value.iloc[0] == pytest.approx(expected, rel=1e-6)
    assert {"surface_area", "geodesic_tortuosity", "transport"} <= set(timings)
    # a CSV round trip keeps every record
    assert len(pd.read_csv(__import__("io").StringIO(df.to_csv(index=False)))) == len(recs)
    recs2 = D.describe(ph[0], transport=False)
    assert {r["axis"] for r in recs2 if r["descriptor"] == "connected_fraction"} == {0, 1}


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.zeros((4, 4), np.float32), TypeError, "integer phase labels"),
        (np.full((4, 4), 5, np.uint8), ValueError, "0 \\(pore\\)"),
        (np.zeros((2, 2, 2, 2), np.uint8), ValueError, "2D or 3D"),
        (np.zeros((1, 8), np.uint8), ValueError, "at least 2"),
    ],
)
def test_bad_phase_maps_are_rejected(bad, exc, match):
    with pytest.raises(exc, match=match):
        D.volume_fractions(bad)


def test_bad_arguments_are_rejected():
    ph = np.zeros((6, 6, 6), np.uint8)
    with pytest.raises(ValueError, match="voxel_size has 2 values"):
        D.specific_surface_area(ph, voxel_size=(1, 1))
    with pytest.raises(ValueError, match="axis 3 does not exist"):
        D.connected_fraction(ph, axes=3)
    with pytest.raises(ValueError, match="unknown method"):
        D.geodesic_tortuosity(ph, method="astar")
    with pytest.raises(ValueError, match="positive"):
        D.specific_surface_area(ph, voxel_size=-1)


# ---------------------------------------------------------------- MSSIM
def test_mssim_identity_and_independent_realisations():
    a = random_phases((48, 48), seed=5)
    b = random_phases((48, 48), seed=6)
    assert mssim(a, a) == pytest.approx(1.0)
    assert mssim(a, a, representation="labels") == pytest.approx(1.0)
    per = mssim(a, b, per_phase=True)
    assert set(per) == {"mssim", *PHASE_NAMES}
    # independent realisations: structure term ~0, far below the identical-image score
    assert -0.2 < per["mssim"] < 0.3
    # a phase absent from both images is left out of the mean (not a free 1)
    a2, b2 = np.where(a == 2, 1, a), np.where(b == 2, 1, b)
    per2 = mssim(a2, b2, per_phase=True)
    assert math.isnan(per2["electrolyte"])
    assert per2["mssim"] == pytest.approx((per2["pore"] + per2["active"]) / 2)
    # a slightly perturbed copy scores between the two
    c = a.copy()
    c[::7, ::5] = (c[::7, ::5] + 1) % 3
    assert per["mssim"] < mssim(a, c) < 1.0
    stack = np.stack([a, b])
    assert mssim_stack(stack, stack) == pytest.approx(mssim(a, b))  # self-pairs skipped (baseline)
    assert mssim_stack(stack, stack.copy()) == pytest.approx((2 + 2 * mssim(a, b)) / 4)
    with pytest.raises(ValueError, match="same shape"):
        mssim(a, b[:40])
    with pytest.raises(ValueError, match="2D section"):
        mssim(np.stack([a, b]), np.stack([a, b]))


def test_describe_slab_values_are_exact():
    # active slab 4 voxels thick across axis 2 in a pore box, anisotropic voxels
    ph = np.zeros((12, 14, 20), np.uint8)
    ph[:, :, 5:9] = 1
    sp = (1.0, 1.0, 0.5)
    recs = D.describe(ph, voxel_size=sp, unit="um", transport=False)
    get = {(r["descriptor"], r["phase"], r["axis"]): r["value"] for r in recs}
    assert get[("mean_chord_length", "active", 2)] == pytest.approx(4 * 0.5)
    assert math.isnan(get[("mean_chord_length", "active", 0)])  # only border-cut chords along axis 0
    assert get[("interface_area_density", "pore|active", None)] == pytest.approx(2 / (20 * 0.5))
    assert get[("connected_fraction", "active", 0)] == 1.0 and get[("connected_fraction", "active", 2)] == 0.0
    assert get[("geodesic_tortuosity", "active", 1)] == pytest.approx(1.0)
    assert ("constrictivity", "active", 0) not in get  # anisotropic voxels: no balls, no beta


@pytest.mark.parametrize("shape, spacing", [((9, 11, 10), (1.0, 1.0, 1.0)), ((13, 12), (0.5, 2.0))])
def test_outlet_distances_equal_scikit_image_mcp_geometric(shape, spacing):
    # oracle: scikit-image's Dijkstra on the same 3^d - 1 neighbour graph with the same edge lengths
    from skimage.graph import MCP_Geometric

    from napari_assb_twin.stats.shortest_paths import outlet_distances

    rng = np.random.default_rng(3)
    mask = rng.random(shape) < 0.6
    for axis in range(len(shape)):
        starts = np.argwhere(mask.take(-1, axis=axis))
        starts = np.insert(starts, axis, shape[axis] - 1, axis=1)
        ref, _ = MCP_Geometric(np.where(mask, 1.0, np.inf), fully_connected=True, sampling=spacing).find_costs(
            [tuple(s) for s in starts])
        got = outlet_distances(mask, axis, spacing)
        assert np.array_equal(np.isfinite(got), np.isfinite(ref) & mask)
        fin = np.isfinite(got)
        np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-12)


def test_geodesic_tortuosity_does_not_depend_on_what_happens_to_be_installed(monkeypatch):
    """method="auto" switched to scikit-fmm when it was installed (undeclared, untested, up to 8 % apart)."""
    called = []
    monkeypatch.setattr(D, "_have_skfmm", lambda: True)
    monkeypatch.setattr(D, "_geodesic_lengths_fmm", lambda *a, **k: called.append(a) or (_ for _ in ()).throw(
        AssertionError("fast marching used without being asked for")))
    ph = np.zeros((8, 8, 8), np.uint8)
    ph[:, :4] = 1
    for method in ("auto", "dijkstra"):
        assert D.geodesic_tortuosity(ph, 0, method=method)[(0, 0)] == pytest.approx(1.0)
    assert D.geodesic_tortuosity(ph, 0)[(0, 0)] == pytest.approx(1.0) and not called


def test_constrictivity_kept_for_float32_cubic_voxels_and_its_skip_said():
    """A voxel size read as float32 on one axis (0.38999998) is the same cubic voxel: the exact
    ``max(sp) == min(sp)`` test dropped constrictivity while its block event was still emitted."""
    rng = np.random.default_rng(0)
    ph = rng.integers(0, 3, (12, 12, 12)).astype(np.uint8)
    ph[:, :, :4] = 0
    job = D.iter_describe(ph, voxel_size=(np.float32(0.39), 0.39, 0.39), unit="um", geometry=True, transport=False)
    events, recs = [], None
    try:
        while True:
            events.append(next(job))
    except StopIteration as end:
        recs = end.value
    assert any(r["descriptor"] == "constrictivity" for r in recs)
    job = D.iter_describe(ph, voxel_size=(0.5, 0.39, 0.39), unit="um", geometry=True, transport=False)
    events = []
    try:
        while True:
            events.append(next(job))
    except StopIteration as end:
        recs = end.value
    assert not any(r["descriptor"] == "constrictivity" for r in recs)
    assert "skipped: anisotropic" in events[-1].message, events[-1]


@pytest.mark.parametrize("sigma", [D.DEFAULT_AREA_SIGMA, 0.0])
def test_slab_wise_surfaces_equal_the_whole_volume_computation(monkeypatch, sigma):
    """Surfaces are computed in slabs along axis 0 (scikit-image and scipy.ndimage hold the GIL
    for a whole call: napari froze for seconds during a 256^3 validation); the same area."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(3)
    ind = ndi.gaussian_filter(rng.standard_normal((70, 30, 34)), 2) > 0.2
    sliced = D._clipped_area(ind, (0.5, 0.4, 0.3), sigma)
    monkeypatch.setattr(D, "_SLAB", 10**6)
    whole = D._clipped_area(ind, (0.5, 0.4, 0.3), sigma)
    assert sliced == pytest.approx(whole, rel=1e-6)  # float32 vertices: rounding only


@pytest.mark.parametrize("shape, threshold", [((100, 40, 45), 0.0), ((97, 24, 30), 0.4), ((70, 20, 20), 5.0)])
def test_slab_wise_cluster_labels_equal_scipy_label(shape, threshold):
    """cluster_labels labels a volume slab by slab (ndimage.label holds the GIL for a whole call)
    and merges clusters across slab boundaries: exactly scipy's labels, numbering included."""
    from scipy import ndimage as ndi

    from napari_assb_twin.stats import arrays

    ind = ndi.gaussian_filter(np.random.default_rng(7).standard_normal(shape), 1.5) > threshold
    ref, _ = ndi.label(ind, structure=ndi.generate_binary_structure(3, 1), output=np.int32)
    assert shape[0] > arrays.LABEL_SLAB
    np.testing.assert_array_equal(arrays.cluster_labels(ind), ref)


# ---------------------------------------------------------------- blocks beside the transport solves
def _small_phase_map(seed: int = 3) -> np.ndarray:
    from scipy import ndimage as ndi

    f = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal((28, 30, 32)), 2.0)
    return np.digitize(f, np.quantile(f, [0.3, 0.7])).astype(np.uint8)


def test_blocks_beside_transport_give_the_records_of_the_blocks_alone_in_their_order():
    """With transport the geometric blocks run on a helper thread beside the solves: the same records,
    in the same order, followed by transport's; every stage is announced once and done counts rise."""
    from napari_assb_twin.events import run_job

    ph = _small_phase_map()
    alone = run_job(D.iter_describe(ph, voxel_size=0.5, unit="um", transport=False, geometry=True), None)
    events: list = []
    timings: dict = {}
    both = run_job(D.iter_describe(ph, voxel_size=0.5, unit="um", transport=True, geometry=True, timings=timings),
                   events.append)
    assert both[: len(alone)] == alone
    assert {r["descriptor"] for r in both[len(alone):]} == {"tau_factor", "effective_diffusivity", "transport_converged"}
    assert len(both) - len(alone) == 3 * 9
    done = [e.done for e in events if e.done is not None]
    assert done == sorted(done) and max(done) < events[0].total
    stages = [e.stage for e in events]
    assert all(stages.count(s) == 1 for s in D.DESCRIBE_STAGES)
    assert set(timings) >= {"surface_area", "chords", "transport", "constrictivity"}


def test_a_failing_block_beside_transport_ends_the_job_before_the_solves_end(monkeypatch):
    """A geometric block's exception is raised at the next transport event, not after all nine solves,
    and no helper or solver thread is left running."""
    import threading

    def broken(*args, **kwargs):
        raise MemoryError("surface areas: not enough memory (test)")

    monkeypatch.setattr(D, "surface_area_densities", broken)
    before = threading.active_count()
    seen: list = []
    job = D.iter_describe(_small_phase_map(5), transport=True, geometry=True)
    with pytest.raises(MemoryError, match="surface areas"):
        for ev in job:
            seen.append(ev)
    n_runs = 3 * 3
    assert sum(e.stage.startswith("transport") for e in seen) < n_runs
    assert threading.active_count() == before
    assert not any(t.name.startswith(("assb-describe", "assb-solve")) for t in threading.enumerate())


def test_a_stopped_describe_leaves_no_helper_thread_running():
    import threading

    before = threading.active_count()
    job = D.iter_describe(_small_phase_map(5), transport=True, geometry=True)
    first = next(job)  # the helper has started the blocks; the solves start at the next step
    assert first.stage.startswith("transport")
    next(job)
    job.close()  # what a stopped dock job does
    assert threading.active_count() == before
    assert not any(t.name.startswith(("assb-describe", "assb-solve")) for t in threading.enumerate())
