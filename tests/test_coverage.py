"""Two-point coverage estimators against a brute-force oracle and their exact properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from napari_assb_twin.phases import PHASE_NAMES
from napari_assb_twin.stats.coverage import CoverageResult, coverage, coverage_onehot, radial_bins

P = 3


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a loaded 2-core CI runner the
    thread pool's contention made gradcheck 25x slower; restore the setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------
# brute-force oracle: explicit loops over shifts h and over pixels x (pure numpy/python)
# ---------------------------------------------------------------------------------------------
def oracle_c(lab: np.ndarray, h: tuple[int, ...], periodic: bool) -> np.ndarray:
    """C_ij(h) = mean over valid x of 1{lab[x]=i} 1{lab[x+h]=j} by a double loop."""
    shape = lab.shape
    acc = np.zeros((P, P))
    count = 0
    for x in itertools.product(*(range(n) for n in shape)):
        y = tuple(xi + hi for xi, hi in zip(x, h))
        if periodic:
            y = tuple(yi % n for yi, n in zip(y, shape))
        elif any(yi < 0 or yi >= n for yi, n in zip(y, shape)):
            continue  # minus-sampling: both points must lie in the window
        acc[lab[x], lab[y]] += 1.0
        count += 1
    return acc / count


def oracle(lab: np.ndarray, r_max: int, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    nd = lab.ndim
    cache = {
        h: oracle_c(lab, h, periodic) for h in itertools.product(range(-r_max, r_max + 1), repeat=nd)
    }
    directional = np.zeros((nd, P, P, r_max + 1))
    for d in range(nd):
        for r in range(r_max + 1):
            e = [0] * nd
            e[d] = r
            plus = cache[tuple(e)]
            e[d] = -r
            directional[d, :, :, r] = 0.5 * (plus + cache[tuple(e)])
    radial = np.zeros((P, P, r_max + 1))
    counts = np.zeros(r_max + 1)
    for h, c in cache.items():
        r = int(math.floor(math.sqrt(sum(v * v for v in h)) + 0.5))
        if r <= r_max:
            radial[:, :, r] += c
            counts[r] += 1
    return directional, radial / counts


def random_labels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, P, size=shape).astype(np.uint8)


CASES = [
    ((7, 9), 6, False),
    ((7, 9), 3, False),
    ((7, 9), 3, True),
    ((5, 6, 7), 4, False),
    ((5, 6, 7), 2, True),
    ((5, 6, 7), 0, False),
    ((7, 9), 0, True),
]


@pytest.mark.parametrize("shape,r_max,periodic", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_matches_brute_force(shape, r_max, periodic, dtype, tol):
    lab = random_labels(shape, seed=sum(shape) + r_max)
    want_dir, want_rad = oracle(lab, r_max, periodic)
    res = coverage(lab, r_max, periodic=periodic, dtype=dtype)
    np.testing.assert_allclose(res.directional, want_dir, rtol=0, atol=tol)
    np.testing.assert_allclose(res.radial, want_rad, rtol=0, atol=tol)
    # the 1D-transform path (radial=False) gives the same directional profiles
    res1 = coverage(lab, r_max, periodic=periodic, dtype=dtype, radial=False)
    assert res1.radial is None
    np.testing.assert_allclose(res1.directional, want_dir, rtol=0, atol=tol)
    # coverage() uses the partition shortcut (P-1 transforms); the plain all-pairs path agrees too
    onehot = torch.nn.functional.one_hot(torch.from_numpy(lab).long(), P).movedim(-1, 0)[None].to(dtype)
    for rad in (True, False):
        d, _ = coverage_onehot(onehot, r_max, periodic=periodic, radial=rad, partition=False)
        np.testing.assert_allclose(d[0].double().numpy(), want_dir, rtol=0, atol=tol)


def test_batch_is_mean_and_matches_oracle():
    labs = np.stack([random_labels((7, 9), seed=s) for s in range(3)])
    res = coverage(labs, 4, batch=True, dtype=torch.float64)
    want = np.mean([oracle(lab, 4, False)[0] for lab in labs], axis=0)
    np.testing.assert_allclose(res.directional, want, atol=1e-12)
    x = torch.stack([torch.from_numpy(lab).long() for lab in labs])
    onehot = torch.nn.functional.one_hot(x, P).movedim(-1, 1).double()
    d, r = coverage_onehot(onehot, 4, periodic=False)
    assert d.shape == (3, 2, P, P, 5) and r.shape == (3, P, P, 5)
    np.testing.assert_allclose(d[1].numpy(), oracle(labs[1], 4, False)[0], atol=1e-12)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("shape", [(20, 24), (10, 12, 14)])
def test_exact_properties(shape, periodic):
    lab = random_labels(shape, seed=3)
    r_max = 5
    res = coverage(lab, r_max, periodic=periodic, dtype=torch.float64)
    v = np.bincount(lab.ravel(), minlength=P) / lab.size
    np.testing.assert_allclose(res.volume_fractions, v, atol=1e-15)
    for d in range(len(shape)):
        # C_ii(0) = v_i, C_ij(0) = 0 for i != j
        np.testing.assert_allclose(res.directional[d, :, :, 0], np.diag(v), atol=1e-12)
        np.testing.assert_allclose(res.directional[d], res.directional[d].transpose(1, 0, 2), atol=0)
        if periodic:  # sum_j C_ij(h) = v_i exactly for the circular estimator
            np.testing.assert_allclose(res.directional[d].sum(1), v[:, None] * np.ones(r_max + 1), atol=1e-12)
    np.testing.assert_allclose(res.radial[:, :, 0], np.diag(v), atol=1e-12)
    if periodic:
        np.testing.assert_allclose(res.radial.sum(1), v[:, None] * np.ones(r_max + 1), atol=1e-12)
    assert np.all(res.directional >= -1e-12) and np.all(res.directional <= 1 + 1e-12)


def test_iid_image_decorrelates():
    """For i.i.d. pixels C_ij(r) = p_i p_j for every r >= 1 (in expectation)."""
    p = np.array([0.3, 0.5, 0.2])
    rng = np.random.default_rng(11)
    lab = rng.choice(P, size=(256, 256), p=p).astype(np.uint8)
    res = coverage(lab, 20)
    # std of one C_ij(r) is about sqrt(p_i p_j / N) <= 0.5 / 256 = 0.002; radial bins average many
    # shifts; 0.008 is > 4 sigma for the directional values
    want = np.outer(p, p)[None, :, :, None]
    assert np.abs(res.directional[:, :, :, 1:] - want).max() < 0.008
    assert np.abs(res.radial[:, :, 1:] - want[0]).max() < 0.008
    np.testing.assert_allclose(res.directional[0, :, :, 0], np.diag(res.volume_fractions), atol=1e-6)


def test_known_stripes():
    """Vertical stripes of width 2 with period 6 (phases 0,1,2): exact periodic values along x."""
    row = np.repeat(np.arange(3), 2)  # 0 0 1 1 2 2
    lab = np.tile(row, (12, 4)).astype(np.uint8)  # (12, 24)
    res = coverage(lab, 6, periodic=True, dtype=torch.float64)
    # along axis 0 (rows) the image is constant: C_ij(r) = delta_ij / 3
    np.testing.assert_allclose(res.directional[0], np.eye(3)[:, :, None] / 3 * np.ones(7), atol=1e-12)
    # along axis 1: C_00(r) for a period-6 pattern with width 2: overlap (2 - r)/6 for r <= 2
    c00 = res.directional[1, 0, 0]
    np.testing.assert_allclose(c00[:3], [2 / 6, 1 / 6, 0.0], atol=1e-12)
    np.testing.assert_allclose(c00[6], 2 / 6, atol=1e-12)  # full period


@pytest.mark.parametrize("periodic", [False, True])
def test_gradcheck(periodic):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, P, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: coverage_onehot(t, 1, periodic=periodic), (x,))
    torch.autograd.gradcheck(lambda t: coverage_onehot(t, 1, periodic=periodic, radial=False)[0], (x,))
    # larger 3D input: fast mode checks random projections of the Jacobian (few evaluations)
    x3 = torch.rand(1, 2, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: coverage_onehot(t, 1, periodic=periodic), (x3,), fast_mode=True)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("radial", [True, False])
def test_partition_shortcut_on_soft_input(periodic, radial):
    """Soft probabilities summing to 1: the P-1 shortcut equals the all-pairs computation."""
    gen = torch.Generator().manual_seed(1)
    for shape in [(2, P, 9, 10), (1, P, 6, 7, 8)]:
        x = torch.softmax(3 * torch.randn(*shape, generator=gen, dtype=torch.float64), dim=1)
        full = coverage_onehot(x, 3, periodic=periodic, radial=radial, partition=False)
        fast = coverage_onehot(x, 3, periodic=periodic, radial=radial, partition=True)
        for a, b in zip(full, fast):
            if a is None:
                assert b is None
            else:
                torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("periodic", [False, True])
def test_gradcheck_partition(periodic):
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(1, P, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    for radial in (True, False):
        torch.autograd.gradcheck(
            lambda t: tuple(
                c for c in coverage_onehot(torch.softmax(t, 1), 2, periodic, radial=radial, partition=True) if c is not None
            ),
            (z,),
            fast_mode=True,
        )


def test_gradient_of_loss_reaches_input():
    x = torch.rand(2, P, 16, 16, requires_grad=True)
    d, r = coverage_onehot(x, 5, periodic=False)
    ((d - 0.1) ** 2).sum().add(r.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_torch_input_and_result_api(tmp_path):
    lab = torch.from_numpy(random_labels((10, 11, 12), seed=5))
    res = coverage(lab, 4, voxel_size=0.39, unit="um")
    assert res.directional.dtype == np.float64 and res.directional.shape == (3, P, P, 5)
    assert res.radial.shape == (P, P, 5) and res.ndim == 3 and res.r_max == 4
    np.testing.assert_allclose(res.distance, 0.39 * np.arange(5))
    assert res.pairs() == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    rows = res.rows()
    assert len(rows) == (3 + 1) * 6 * 5
    assert set(rows[0]) == {"direction", "r_px", "distance", "phase_i", "phase_j", "value"}
    assert {r["phase_i"] for r in rows} == set(PHASE_NAMES)
    path = res.to_csv(tmp_path / "c.csv")
    back = CoverageResult.read_csv(path)
    np.testing.assert_array_equal(back.directional, res.directional)
    np.testing.assert_array_equal(back.radial, res.radial)
    np.testing.assert_array_equal(back.r_px, res.r_px)
    np.testing.assert_allclose(back.volume_fractions, res.volume_fractions, atol=1e-6)
    assert (back.voxel_size, back.unit, back.phase_names, back.periodic) == (0.39, "um", PHASE_NAMES, False)
    # a plain long table for pandas / spreadsheets: no comment lines, metadata as columns
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(path)
    assert list(df.columns) == ["direction", "r_px", "distance", "phase_i", "phase_j", "value",
                                "unit", "voxel_size", "estimator"]
    assert set(df["unit"]) == {"um"} and set(df["voxel_size"]) == {0.39} and set(df["estimator"]) == {"minus-sampling"}
    # periodic results say so, and round-trip
    per = coverage(random_labels((8, 8, 8), 3), 3, periodic=True)
    assert CoverageResult.read_csv(per.to_csv(tmp_path / "p.csv")).periodic is True
    # files of the first release (a "#" metadata line before the header) still read
    old = tmp_path / "old.csv"
    lines = path.read_text().splitlines()
    old.write_text("# napari-assb-twin coverage; unit=nm; voxel_size=2.5; periodic=true; phases=pore,active,electrolyte\n"
                   + "\n".join(",".join(line.split(",")[:6]) for line in lines) + "\n")
    back_old = CoverageResult.read_csv(old)
    assert (back_old.unit, back_old.voxel_size, back_old.periodic) == ("nm", 2.5, True)
    np.testing.assert_array_equal(back_old.directional, res.directional)
    # directional only, two phases with custom names
    res2 = coverage(random_labels((9, 9), 1) % 2, 3, n_phases=2, radial=False, phase_names=("a", "b"))
    back2 = CoverageResult.read_csv(res2.to_csv(tmp_path / "d.csv"))
    assert back2.radial is None and back2.phase_names == ("a", "b")
    np.testing.assert_array_equal(back2.directional, res2.directional)


def test_bool_input_and_two_phases():
    lab = random_labels((12, 13), 2) == 1
    res = coverage(lab, 3, n_phases=2)
    assert res.phase_names == ("phase0", "phase1")
    np.testing.assert_allclose(res.volume_fractions[1], lab.mean(), atol=1e-7)


def test_radial_bins_cover_axes():
    bins, counts = radial_bins(3, 4)
    # round(|h|) == 1: the 6 axis shifts and the 12 face diagonals (|h| = 1.414); not the 8
    # body diagonals (|h| = 1.732 -> 2)
    assert bins.shape == (9, 9, 9) and counts[0] == 1 and counts[1] == 18
    assert bins[5, 5, 5] == 2 and bins[8, 4, 4] == 4 and bins[8, 8, 4] == -1
    assert counts.sum() == (bins >= 0).sum()


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(labels=np.zeros((5, 5), np.float32), r_max=2), TypeError, "integer"),
        (dict(labels=[[0, 1], [1, 0]], r_max=1), TypeError, "numpy array or torch tensor"),
        (dict(labels=np.zeros(5, np.uint8), r_max=2), ValueError, "2D"),
        (dict(labels=np.zeros((2, 2, 2, 2), np.uint8), r_max=1), ValueError, "2D"),
        (dict(labels=np.zeros((0, 5), np.uint8), r_max=0), ValueError, "empty"),
        (dict(labels=np.full((5, 5), 3, np.uint8), r_max=2), ValueError, r"0\.\.2"),
        (dict(labels=np.full((5, 5), -1, np.int16), r_max=2), ValueError, r"0\.\.2"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=5), ValueError, "too large"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=3, periodic=True), ValueError, "periodic"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=-1), ValueError, ">= 0"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=2.5), TypeError, "integer"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=2, voxel_size=0), ValueError, "voxel_size"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=2, n_phases=0), ValueError, "n_phases"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=2, phase_names=("a", "b")), ValueError, "phase_names"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=2, dtype=torch.float16), TypeError, "dtype"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=2, device="nonsense"), ValueError, "device"),
        (dict(labels=np.zeros((5, 8), np.uint8), r_max=2, batch=True), ValueError, "spatial"),
    ],
)
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        coverage(**kwargs)


def test_bad_onehot_input():
    with pytest.raises(TypeError, match="floating"):
        coverage_onehot(torch.zeros(1, 3, 5, 5, dtype=torch.long), 1, periodic=False)
    with pytest.raises(TypeError, match="torch.Tensor"):
        coverage_onehot(np.zeros((1, 3, 5, 5)), 1, periodic=False)
    with pytest.raises(ValueError, match="spatial"):
        coverage_onehot(torch.zeros(3, 5, 5), 1, periodic=False)
    with pytest.raises(ValueError, match="too large"):
        coverage_onehot(torch.zeros(1, 3, 5, 50), 5, periodic=False)


def test_read_csv_rejects_other_tables(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a coverage table"):
        CoverageResult.read_csv(p)
    res = coverage(random_labels((6, 6), 0), 2)
    path = res.to_csv(tmp_path / "c.csv")
    lines = path.read_text().splitlines()
    (tmp_path / "cut.csv").write_text("\n".join(lines[:-5]) + "\n")
    with pytest.raises(ValueError, match="incomplete"):
        CoverageResult.read_csv(tmp_path / "cut.csv")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    lab = random_labels((6, 7, 8), seed=9)
    cpu = coverage(lab, 3, dtype=torch.float64)
    gpu = coverage(lab, 3, dtype=torch.float64, device="cuda")
    np.testing.assert_allclose(gpu.directional, cpu.directional, atol=1e-12)
    np.testing.assert_allclose(gpu.radial, cpu.radial, atol=1e-12)
