"""TauFactor wrapper: analytic channels, non-percolating phases, axes, devices, and the TF benchmark."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("taufactor")

from napari_assb_twin.stats.transport import TransportResult, phase_transport, tortuosity_factor  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BENCHMARK_ZIP = DATA / "tldr_taufactor" / "TF-500x500x500-1x2x6-v3.tiff.zip"
#: Published over-converged tau of the full 500^3 benchmark (TauFactor 2 JOSS paper), per direction.
#: Matched to our array axes (tifffile order) by their ordering on every crop we measured:
#: array axis 1 -> 1.1513, axis 2 -> 1.3905, axis 0 -> 4.2431.
PUBLISHED = {1: 1.1513, 2: 1.3905, 0: 4.2431}


def test_straight_channels_have_tau_one_along_every_axis():
    shape = (24, 20, 16)
    for axis in range(3):
        b = np.zeros(shape, bool)
        sl = [slice(4, 9)] * 3
        sl[axis] = slice(None)
        b[tuple(sl)] = True  # square channel along `axis`
        res = tortuosity_factor(b, axis=axis, device="cpu")
        assert isinstance(res, TransportResult)
        assert res.percolating and res.converged
        assert res.tau == pytest.approx(1.0, abs=1e-4)
        assert res.volume_fraction == pytest.approx(b.mean())
        assert res.d_eff == pytest.approx(b.mean(), rel=1e-4)
        # perpendicular to the channel nothing connects the faces
        other = (axis + 1) % 3
        blocked = tortuosity_factor(b, axis=other, device="cpu")
        assert blocked.tau == math.inf and blocked.d_eff == 0.0 and not blocked.percolating
    # 2D straight strip, and a phase filling the whole image
    strip = np.zeros((30, 12), np.uint8)
    strip[:, 3:7] = 1
    assert tortuosity_factor(strip, axis=0).tau == pytest.approx(1.0, abs=1e-4)
    assert tortuosity_factor(np.ones((10, 10, 10), bool), axis=2).tau == pytest.approx(1.0, abs=1e-4)


def test_non_percolating_and_absent_phases_do_not_crash(capsys):
    b = np.zeros((20, 20, 20), bool)
    b[2:6, 2:6, 2:6] = True  # an isolated blob
    b[8:, 10:14, 10:14] = True  # a dead end from the outlet face
    res = tortuosity_factor(b, axis=0)
    assert res.tau == math.inf and res.d_eff == 0.0 and not res.percolating and res.iterations == 0
    empty = tortuosity_factor(np.zeros((8, 8, 8), bool), axis=1)
    assert empty.tau == math.inf and empty.volume_fraction == 0.0
    assert capsys.readouterr().out == ""


def test_axes_are_transposed_consistently_and_output_is_silent(capsys):
    rng = np.random.default_rng(0)
    from scipy import ndimage as ndi

    f = ndi.gaussian_filter(rng.standard_normal((20, 22, 24)), 2.0)
    b = f > np.quantile(f, 0.4)  # 60 % percolating phase
    r1 = tortuosity_factor(b, axis=1)
    r0 = tortuosity_factor(np.ascontiguousarray(b.transpose(1, 0, 2)), axis=0)
    assert r1.percolating and 1.0 < r1.tau < 5.0
    assert r1.tau == pytest.approx(r0.tau, rel=1e-6)
    assert r1.d_eff == pytest.approx(r1.volume_fraction / r1.tau)
    assert capsys.readouterr().out == ""  # nothing printed (TauFactor's own prints are captured)
    # an iteration cap too small to converge: TauFactor prints a warning, which lands in the log
    capped = tortuosity_factor(b, axis=1, iter_limit=100)
    assert not capped.converged and "not converged" in capped.log
    assert capsys.readouterr().out == ""
    # the per-phase helper runs every phase and axis of a phase map
    phases = np.where(b, 1, 2).astype(np.uint8)
    table = phase_transport(phases, axes=(1,))
    assert set(table) == {(0, 1), (1, 1), (2, 1)}
    assert table[(1, 1)].tau == pytest.approx(r1.tau, rel=1e-6)
    assert table[(0, 1)].tau == math.inf  # pore absent


def test_bad_inputs_and_devices():
    with pytest.raises(ValueError, match="only 0 and 1"):
        tortuosity_factor(np.full((4, 4, 4), 2, np.uint8))
    with pytest.raises(ValueError, match="axis 3"):
        tortuosity_factor(np.ones((4, 4, 4), bool), axis=3)
    with pytest.raises(ValueError, match="2D or 3D"):
        tortuosity_factor(np.ones((4,), bool))
    with pytest.raises(ValueError):
        tortuosity_factor(np.ones((4, 4, 4), bool), device="tpu")
    # TauFactor computes tau once per 100 iterations: a smaller cap would leave no tau at all
    for bad in (99, 0, 2.5, True):
        with pytest.raises(ValueError, match="iter_limit must be an integer >= 100"):
            tortuosity_factor(np.ones((4, 4, 4), bool), iter_limit=bad)
    with pytest.raises(ValueError, match="conv_crit"):
        tortuosity_factor(np.ones((4, 4, 4), bool), conv_crit=0.0)
    torch = pytest.importorskip("torch")
    res = tortuosity_factor(torch.ones(6, 6, 6, dtype=torch.bool), device=torch.device("cpu"))
    assert res.device == "cpu" and res.tau == pytest.approx(1.0, abs=1e-4)


@pytest.fixture(scope="module")
def benchmark_volume(tmp_path_factory):
    if not BENCHMARK_ZIP.is_file():
        pytest.skip(f"TauFactor benchmark not found at {BENCHMARK_ZIP} (shared data folder absent)")
    tifffile = pytest.importorskip("tifffile")
    out = tmp_path_factory.mktemp("tf_benchmark")
    with zipfile.ZipFile(BENCHMARK_ZIP) as zf:
        name = next(n for n in zf.namelist() if n.endswith((".tif", ".tiff")) and "__MACOSX" not in n)
        path = Path(zf.extract(name, out))
    vol = tifffile.imread(path)
    path.unlink()
    return vol > 0


def test_taufactor_benchmark_crop(benchmark_volume):
    """A 96^3 corner crop of the 500^3 TauFactor benchmark against the published full-volume tau.

    Measured crop effects with this wrapper (CPU, default convergence), crops (n, offset) -> tau for
    array axes (0, 1, 2):
    64/0: 11.5, 1.224, 1.768;  64/250: inf, 1.087, 1.238;  96/0: 4.69, 1.135, 1.537;
    96/250: 6.90, 1.148, 1.542;  128/0: 5.04, 1.165, 1.593.
    The least tortuous direction is within 2 % of the published 1.1513 from 96^3 up; the middle one
    sits 10-15 % above 1.3905 on crops up to 128^3 (a finite-size effect, not convergence: with
    conv_crit 1e-3 the 96^3 value moves by 3e-5); the long-correlated direction (published 4.2431)
    swings 4.7-11.5 or does not percolate, so it is only checked for ordering (slow test below).
    Tolerances: 4 % (axis 1), +0 .. +20 % (axis 2), ratio tau2 / tau1 above 1.1 (published 1.21).
    About 20 CPU-seconds.
    """
    crop = benchmark_volume[:96, :96, :96]
    assert crop.mean() == pytest.approx(0.33, abs=0.02)
    res = {a: tortuosity_factor(crop, axis=a, device="cpu") for a in (1, 2)}
    assert all(r.converged and r.percolating for r in res.values())
    assert res[1].tau == pytest.approx(PUBLISHED[1], rel=0.04)
    assert PUBLISHED[2] <= res[2].tau <= 1.2 * PUBLISHED[2]
    assert res[2].tau / res[1].tau > 1.1


@pytest.mark.slow
def test_taufactor_benchmark_crop_tortuous_direction(benchmark_volume):
    """Array axis 0 (published 4.2431) is the most tortuous on the crop too (about 30 CPU-seconds)."""
    crop = benchmark_volume[:96, :96, :96]
    res = tortuosity_factor(crop, axis=0, device="cpu")
    assert res.converged and res.percolating
    assert res.tau > 3.0 and res.tau > 1.2 * PUBLISHED[2]
