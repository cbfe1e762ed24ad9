"""Blockwise (larger-than-memory) twins: seamless, chunking-independent, same statistics as FFT."""

import numpy as np
import pytest
import torch

from napari_assb_twin.model.blockwise import BlockwiseTwin, counter_normal, truncated_kernel
from napari_assb_twin.model import build_model, load_reference_model
from napari_assb_twin.stats.coverage import coverage


def test_counter_noise_depends_only_on_global_index():
    a = counter_normal(3, 1, (-40, -7, 5), (70, 50, 60))
    b = counter_normal(3, 1, (-10, 0, 20), (25, 30, 33))
    assert torch.equal(a[30:55, 7:37, 15:48], b)
    assert not torch.equal(counter_normal(4, 1, (0, 0, 0), (8, 8, 8)), counter_normal(3, 1, (0, 0, 0), (8, 8, 8)))
    assert not torch.equal(counter_normal(3, 2, (0, 0, 0), (8, 8, 8)), counter_normal(3, 1, (0, 0, 0), (8, 8, 8)))
    x = a.double()
    assert abs(float(x.mean())) < 0.01 and float(x.var()) == pytest.approx(1.0, abs=0.01)
    for axis in range(3):  # white across noise-block borders too
        assert abs(float((x * torch.roll(x, 1, axis)).mean())) < 0.01


def test_truncated_kernel_has_unit_energy_and_reproduces_correlation():
    model = load_reference_model()
    cov = model.fields["f2"].covariance
    k = truncated_kernel(cov).double()
    assert float((k**2).sum()) == pytest.approx(1.0, abs=1e-6)
    # autocorrelation of the kernel at lag 3 along x = rho(3)
    auto = float((k[:, :, 3:] * k[:, :, :-3]).sum())
    with torch.no_grad():
        assert auto == pytest.approx(float(cov.correlation({2: torch.tensor(3.0)})), abs=0.01)


def test_identical_across_chunkings_and_seamless():
    model = build_model("lp-iso", length_scales_px=(3.0, 2.0))
    twin = BlockwiseTwin(model, seed=7, tile=24)
    a = twin.to_dask((60, 50, 40), chunks=(20, 25, 40)).compute()
    b = twin.to_dask((60, 50, 40), chunks=(32, 17, 13)).compute()
    assert np.array_equal(a, b)
    assert np.array_equal(twin.block((10, 5, 3), (30, 30, 30)), a[10:40, 5:35, 3:33])
    assert not np.array_equal(BlockwiseTwin(model, seed=8, tile=24).block((0, 0, 0), (20, 20, 20)), a[:20, :20, :20])


def test_blockwise_matches_fft_generator_in_distribution():
    model = build_model("lp-cyl", length_scales_px=((4.0, 2.5), (2.0, 3.0)))
    twin = BlockwiseTwin(model, seed=1, tile=48)
    block = twin.block((0, 0, 0), (96, 96, 96))
    fft = model.generate((96, 96, 96), seed=1)
    cb = coverage(block, 12, radial=False).directional
    cf = coverage(fft, 12, periodic=True, radial=False).directional
    assert np.abs(cb - cf).max() < 0.02
    frac = np.bincount(block.ravel(), minlength=3) / block.size
    assert np.abs(frac - [model.volume_fractions[k] for k in ("pore", "active", "electrolyte")]).max() < 0.02


def test_zarr_round_trip_and_no_silent_overwrite(tmp_path):
    zarr = pytest.importorskip("zarr")
    model = build_model("lp-iso", length_scales_px=(3.0, 2.0), voxel_size=0.5, unit="um")
    twin = BlockwiseTwin(model, seed=2, tile=24)
    path = tmp_path / "twin.zarr"
    twin.to_zarr(path, (40, 30, 20), chunks=16)
    z = zarr.open_array(str(path), mode="r")
    assert z.shape == (40, 30, 20) and z.dtype == np.uint8 and z.attrs["voxel_size"] == 0.5
    assert np.array_equal(z[:], twin.block((0, 0, 0), (40, 30, 20)))
    with pytest.raises(FileExistsError):
        twin.to_zarr(path, (40, 30, 20))


def test_blockwise_twin_of_a_coating_rule_matches_fft_in_distribution():
    """Blockwise labels use the model's own rule (labels_from_fields) and the field's own
    chi-square combination: a coating twin with a chi2(2) F2 has the FFT generator's statistics."""
    model = build_model("lp-iso", rule="coating", order=("active", "electrolyte", "pore"), rule_params={"coverage": 0.7},
                        f2="chi2", f2_dof=2, length_scales_px=(4.0, 2.5),
                        volume_fractions={"pore": 0.3, "active": 0.45, "electrolyte": 0.25})
    block = BlockwiseTwin(model, seed=1, tile=48).block((0, 0, 0), (96, 96, 96))
    fft = model.generate((96, 96, 96), seed=1)
    cb = coverage(block, 12, radial=False).directional
    cf = coverage(fft, 12, periodic=True, radial=False).directional
    assert np.abs(cb - cf).max() < 0.02
    frac = np.bincount(block.ravel(), minlength=3) / block.size
    assert np.abs(frac - [0.3, 0.45, 0.25]).max() < 0.02


def test_zarr_generation_says_it_runs_on_the_cpu_and_never_moves_the_model(tmp_path, monkeypatch):
    """`generate --device cuda --out x.zarr` checked the device and then ran on the CPU silently."""
    import torch

    from napari_assb_twin import devices
    from napari_assb_twin.jobs import run_job
    from napari_assb_twin.jobs.generate import generate
    from napari_assb_twin.model import load_reference_model

    monkeypatch.setattr(devices, "resolve_device", lambda d="auto": torch.device("meta"))  # an accelerator here
    model = load_reference_model("reference-assb-cathode")
    events = []
    res = run_job(generate(model, (32, 32, 32), tmp_path / "t.zarr", device="cuda", chunk=32), events.append)
    assert any(e.stage == "warning" and "runs on the CPU" in e.message for e in events)
    assert res.device == "cpu" and any("runs on the CPU" in n for n in res.notes)
    assert model.device.type == "cpu"
