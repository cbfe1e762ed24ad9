"""Real-vs-twin comparison, the report files and `assb-twin compare`."""

from __future__ import annotations

import csv
import math
from html.parser import HTMLParser

import numpy as np
import pytest

from napari_assb_twin.phases import PHASE_NAMES
from napari_assb_twin.validate import DESCRIPTOR_COLUMNS, REPORT_FILES, compare, relative_difference, write_report


def _blobs(shape, seed: int) -> np.ndarray:
    """A small three-phase map: thresholded smoothed noise (all phases present, percolating solid)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.standard_normal(shape), 1.5, mode="wrap")
    lo, hi = np.quantile(f, [0.2, 0.55])
    return np.where(f < lo, 0, np.where(f < hi, 1, 2)).astype(np.uint8)


@pytest.fixture(scope="module")
def vol_a() -> np.ndarray:
    return _blobs((20, 20, 20), 0)


def test_relative_difference_conventions():
    assert relative_difference(2.0, 3.0) == pytest.approx(0.5)
    assert relative_difference(-2.0, -1.0) == pytest.approx(0.5)  # relative to |real|
    assert relative_difference(0.0, 0.0) == 0.0
    assert relative_difference(math.inf, math.inf) == 0.0
    assert relative_difference(math.nan, math.nan) == 0.0
    assert math.isnan(relative_difference(0.0, 1.0))
    assert math.isnan(relative_difference(math.inf, 1.2))


def test_identical_inputs_give_zero_differences_for_every_descriptor(vol_a):
    cmp = compare(vol_a, vol_a.copy(), voxel_size=0.5, unit="um", transport=True, geometry=True)
    df = cmp.descriptors
    assert list(df.columns) == list(DESCRIPTOR_COLUMNS)
    # every descriptor family is there, including transport for 3D
    for name in ("volume_fraction", "specific_surface_area", "interface_area_density", "connected_fraction",
                 "mean_chord_length", "geodesic_tortuosity", "constrictivity", "tau_factor", "effective_diffusivity"):
        assert (df["descriptor"] == name).any(), name
    assert np.all(df["relative_difference"].to_numpy(float) == 0.0)
    np.testing.assert_array_equal(df["real"].to_numpy(float), df["twin"].to_numpy(float))
    assert float(cmp.coverage_error["max_abs_difference"].max()) == 0.0
    assert (df["descriptor"] == "mssim").sum() == 0  # MSSIM only for 2D


def test_known_differences_are_reported_exactly():
    # slabs along x: phase widths (pore, active, electrolyte) = (4, 8, 8) in the real image, (8, 4, 8) in the twin
    real = np.zeros((8, 8, 20), np.uint8)
    real[..., 4:12], real[..., 12:] = 1, 2
    twin = np.zeros_like(real)
    twin[..., 8:12], twin[..., 12:] = 1, 2
    cmp = compare(real, twin, voxel_size=2.0, unit="um", transport=False, geometry=False)
    df = cmp.descriptors.set_index(["descriptor", "phase"])
    vf = df.loc["volume_fraction"]
    assert vf.loc["pore", "real"] == pytest.approx(0.2) and vf.loc["pore", "twin"] == pytest.approx(0.4)
    assert vf.loc["pore", "relative_difference"] == pytest.approx(1.0)
    assert vf.loc["active", "relative_difference"] == pytest.approx(-0.5)
    assert vf.loc["electrolyte", "relative_difference"] == pytest.approx(0.0)
    # plane interfaces are exact: one pore|active and one active|electrolyte plane of 8x8 voxels in both
    ia = df.loc["interface_area_density"]
    assert ia.loc["pore|active", "real"] == pytest.approx(ia.loc["pore|active", "twin"], rel=1e-6)
    # mean chord length of the active phase along x: 8 vs 4 voxels of 2 um
    ch = cmp.descriptors[(cmp.descriptors.descriptor == "mean_chord_length") & (cmp.descriptors.phase == "active")
                         & (cmp.descriptors.axis == 2)].iloc[0]
    assert (ch.real, ch.twin, ch.relative_difference) == pytest.approx((16.0, 8.0, -0.5))
    # the table is internally consistent
    full = cmp.descriptors
    ok = np.isfinite(full["real"].to_numpy(float)) & (full["real"].to_numpy(float) != 0)
    np.testing.assert_allclose(full["difference"][ok], (full["twin"] - full["real"])[ok])
    np.testing.assert_allclose(full["relative_difference"][ok], ((full["twin"] - full["real"]) / full["real"].abs())[ok])
    # the coverage curves of the pore phase along x differ, along z they differ only by the fraction
    assert cmp.coverage_error["max_abs_difference"].max() > 0.1


def test_2d_section_against_3d_twin_uses_many_sections_with_their_spread_and_mssim(vol_a):
    """A 2D section against a 3D twin: the twin's 2D statistics over many of its sections (mean and
    spread), never its middle section alone; MSSIM has no relative difference (its 'real' is 1)."""
    from napari_assb_twin.validate.compare import TWIN_SECTIONS

    real2d = _blobs((24, 24), 1)
    cmp = compare(real2d, vol_a, transport=True, geometry=False)
    assert cmp.real_shape == (24, 24) and cmp.twin_shape == (20, 20)
    n = min(TWIN_SECTIONS, vol_a.shape[0])
    assert cmp.twin_sections == n and any(f"{n} evenly spaced sections" in t or "every section" in t for t in cmp.notes)
    assert not any("middle section" in t for t in cmp.notes)
    assert any("no transport" in n for n in cmp.notes)
    df = cmp.descriptors
    assert not (df["descriptor"] == "tau_factor").any()
    # the twin's volume fractions are the mean over its sections, the spread their (sample) standard deviation
    index = np.unique(np.linspace(0, vol_a.shape[0] - 1, n).round().astype(int))
    per_section = np.array([[np.mean(vol_a[z, :20, :20] == p) for p in range(3)] for z in index])
    vf = df[df["descriptor"] == "volume_fraction"].set_index("phase")
    np.testing.assert_allclose(vf.loc[list(PHASE_NAMES), "twin"].to_numpy(float), per_section.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(vf.loc[list(PHASE_NAMES), "twin_spread"].to_numpy(float), per_section.std(axis=0, ddof=1),
                               rtol=1e-9, atol=1e-12)
    ms = df[df["descriptor"] == "mssim"].set_index("phase")
    assert set(ms.index) == {"all", *PHASE_NAMES}
    assert np.all(ms["real"] == 1.0)  # a section compared with itself
    assert np.all(ms["twin"] < 0.9)  # independent structures
    assert ms["relative_difference"].isna().all()  # not "-89 %" in red: n/a, the notes say why
    assert any("MSSIM" in t and "n/a" in t for t in cmp.notes)
    same = compare(real2d, real2d, transport=False, geometry=False)
    np.testing.assert_allclose(same.descriptors[same.descriptors.descriptor == "mssim"]["twin"].to_numpy(float), 1.0)
    assert same.twin_sections == 0 and same.descriptors["twin_spread"].isna().all()


def test_summary_counts_undefined_rows_instead_of_reading_them_as_zero():
    """Geodesic tortuosity where the measured pore does not percolate (inf) and the twin's does
    (1.1): the row is n/a; the summary said "0.0 %" from the other, equal rows."""
    import pandas as pd

    from napari_assb_twin.validate.compare import Comparison, _descriptor_frame, _row
    from napari_assb_twin.validate.report import _summary_html

    rows = [_row("geodesic_tortuosity", "pore", 0, "1", float("inf"), 1.1),
            _row("geodesic_tortuosity", "active", 0, "1", 1.3, 1.3)]
    cmp = Comparison(_descriptor_frame(rows), {}, {}, {}, (8, 8, 8), (8, 8, 8), 1.0, "px", coverage_error=pd.DataFrame())
    html_text = _summary_html(cmp)
    assert "1 n/a" in html_text
    assert cmp.undefined_rows() == 1 and cmp.largest_difference()["phase"] == "active"


def test_lazy_twin_reads_only_the_real_size(tmp_path, vol_a):
    zarr = pytest.importorskip("zarr")
    big = np.tile(vol_a, (2, 2, 2))
    z = zarr.create_array(str(tmp_path / "t.zarr"), shape=big.shape, chunks=(10, 10, 10), dtype=np.uint8)
    z[:] = big
    real = vol_a[:16, :16, :16]
    cmp = compare(real, zarr.open_array(str(tmp_path / "t.zarr"), mode="r"), transport=False, geometry=False)
    assert cmp.twin_shape == real.shape
    assert np.all(cmp.descriptors["relative_difference"].to_numpy(float) == 0.0)  # the same sub-volume
    with pytest.raises(ValueError, match="2D section"):
        compare(vol_a, vol_a[0], transport=False)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "data", "action") or (k == "style" and v and "url(" in v):
                self.refs.append((tag, k, v or ""))


def test_report_files_csv_columns_and_self_contained_html(tmp_path, vol_a):
    cmp = compare(vol_a, _blobs((20, 20, 20), 5), voxel_size=0.39, unit="um", transport=False, geometry=False)
    files = write_report(cmp, tmp_path / "rep")
    assert set(files) == set(REPORT_FILES)
    with open(files["descriptors.csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(DESCRIPTOR_COLUMNS)
    assert len(rows) == len(cmp.descriptors)
    with open(files["coverage.csv"], newline="") as fh:
        cov = list(csv.DictReader(fh))
    assert list(cov[0]) == ["image", "direction", "r_px", "distance", "phase_i", "phase_j", "value"]
    assert {r["image"] for r in cov} == {"real", "twin"}
    with open(files["chords.csv"], newline="") as fh:
        ch = list(csv.DictReader(fh))
    assert list(ch[0]) == ["image", "phase", "axis", "n_chords", "mean_px", "mean_length", "unit"]
    for name in ("coverage.png", "chords.png", "sections.png"):
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = files["report.html"].read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(text)
    assert not {"script", "link", "iframe"} & parser.tags
    imgs = [r for r in parser.refs if r[0] == "img"]
    assert len(imgs) == 3 and all(v.startswith("data:image/png;base64,") for _, _, v in imgs)
    assert [r for r in parser.refs if r[0] != "img"] == []  # no external link of any kind
    assert "@import" not in text and "url(" not in text
    # the table shows every descriptor row
    assert text.count("<tr><td>") >= len(cmp.descriptors)
    # refusing to overwrite, and --force semantics
    with pytest.raises(FileExistsError, match="force"):
        write_report(cmp, tmp_path / "rep")
    write_report(cmp, tmp_path / "rep", force=True)


def test_cli_compare_end_to_end(tmp_path, capsys, vol_a):
    zarr = pytest.importorskip("zarr")
    from napari_assb_twin.cli import main

    # a 2D measured section against a 3D Zarr twin (as `assb-twin generate --out twin.zarr` writes)
    a = tmp_path / "a.npy"
    np.save(a, _blobs((24, 24), 4))
    b = tmp_path / "twin.zarr"
    z = zarr.create_array(str(b), shape=vol_a.shape, chunks=(10, 10, 10), dtype=np.uint8)
    z[:] = vol_a
    z.attrs.update({"voxel_size": 0.39, "unit": "um"})
    out = tmp_path / "cmp"
    rc = main(["compare", str(a), str(b), "--no-geometry", "--out", str(out)])
    assert rc == 0
    msg = capsys.readouterr().out
    assert "report.html" in msg and "volume fractions" in msg
    assert "voxel 0.39 um" in msg  # the measured file has no calibration: the twin's is used
    assert all((out / f).is_file() for f in REPORT_FILES)
    html_text = (out / "report.html").read_text(encoding="utf-8")
    assert "evenly spaced sections" in html_text and "MSSIM" in html_text
    rc = main(["compare", str(a), str(b), "--no-transport", "--out", str(out)])
    assert rc == 1
    assert "--force" in capsys.readouterr().err
    rc = main(["compare", str(tmp_path / "missing.tif"), str(b), "--out", str(tmp_path / "x")])
    assert rc == 1
    assert "no such file" in capsys.readouterr().err


def test_unconverged_transport_is_named_in_the_notes_and_the_cli_limit_reaches_the_solver(tmp_path, capsys, vol_a):
    # the AMG-CG solver needs 4-12 CG steps on vol_a; a cap of 1 stops every percolating run early,
    # and they must be flagged, not passed off as final
    cmp = compare(vol_a, vol_a.copy(), transport=True, geometry=False, transport_iter_limit=1)
    d = cmp.descriptors
    conv = d[d["descriptor"] == "transport_converged"]
    assert (conv.loc[conv["phase"] == "pore", "real"] == 0).all()
    stuck = [n for n in cmp.notes if "iteration limit (1)" in n]
    # the measured image, its sub-volumes (one note for all 8), the twin
    assert len(stuck) == 3 and "real:" in stuck[0] and "of the 8 sub-volumes of real" in stuck[1] and "twin:" in stuck[2]
    assert "pore axis 0" in stuck[0] and "pore axis 0" in stuck[2]
    # the default limit converges on the same volume: no such note
    ok = compare(vol_a, vol_a.copy(), transport=True, geometry=False)
    assert not any("iteration limit" in n for n in ok.notes)
    assert (ok.descriptors[ok.descriptors["descriptor"] == "transport_converged"]["real"] == 1).all()

    from napari_assb_twin.cli import build_parser, main
    from napari_assb_twin.stats.transport import ITER_LIMIT

    # the CLI spells its default out (so --help shows it without importing torch): it must be the package's
    assert build_parser().parse_args(["compare", "a", "b", "--out", "o"]).transport_iter_limit == ITER_LIMIT
    a = tmp_path / "a.npy"
    np.save(a, vol_a)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(a), "--no-geometry", "--transport-iter-limit", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert "iteration limit (1)" in (out / "report.html").read_text(encoding="utf-8")


def test_cli_solver_taufactor_reaches_taufactor_and_a_bad_solver_is_refused(tmp_path, capsys, monkeypatch, vol_a):
    from napari_assb_twin.cli import build_parser, main
    from napari_assb_twin.jobs import compare as compare_job

    a = tmp_path / "a.npy"
    np.save(a, vol_a)
    with pytest.raises(SystemExit):  # argparse: not one of options.TRANSPORT_SOLVERS
        main(["compare", str(a), str(a), "--solver", "multigrid", "--out", str(tmp_path / "bad")])
    assert "invalid choice: 'multigrid'" in capsys.readouterr().err
    assert build_parser().parse_args(["compare", "a", "b", "--out", "o"]).device == "auto"
    with pytest.raises(ValueError, match="unknown transport solver 'multigrid'"):  # the job checks it too, first
        next(compare_job(vol_a, vol_a, tmp_path / "bad2", solver="multigrid"))
    assert not (tmp_path / "bad2").exists()

    taufactor = pytest.importorskip("taufactor", reason="TauFactor (optional extra [taufactor]) not installed")
    calls = []

    class Spy(taufactor.Solver):
        def __init__(self, img, *args, **kwargs):
            calls.append(img.shape)
            super().__init__(img, *args, **kwargs)

    monkeypatch.setattr(taufactor, "Solver", Spy)
    out = tmp_path / "cmp"
    rc = main(["compare", str(a), str(a), "--no-geometry", "--solver", "taufactor", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    capsys.readouterr()
    # both images, every phase that connects the faces along each of the 3 axes
    assert len(calls) >= 6 and all(len(s) >= 3 for s in calls)


def test_report_figures_keep_their_titles_inside_the_picture(vol_a):
    """The sections figure's titles ran past the top edge of the PNG (clipped in report.html)."""
    import io

    from PIL import Image

    from napari_assb_twin.validate.report import figure_png, sections_figure

    cmp = compare(_blobs((24, 24), 1), vol_a, transport=False, geometry=False,
                  names=("electrode_nmc_3phase_section_253.tif", "twin lp-iso seed 0 (generated)"))
    img = np.asarray(Image.open(io.BytesIO(figure_png(sections_figure(cmp)))).convert("L"))
    assert (img[:3] > 240).all()  # a white margin above the titles: nothing cut at the top edge
    assert (img[:40] < 100).any()  # and the titles are there
