"""The intervals of a validation (validate/intervals.py): their coverage on simulated twins of a known
model, the comparison's records, the colour rule of the HTML report, the CLI and the sweep's summary."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from napari_assb_twin.phases import PHASE_NAMES
from napari_assb_twin.validate.intervals import disjoint, mean_interval, sampling_interval, sub_blocks


@pytest.fixture(scope="module")
def model():
    """The reference model with short length scales (3 and 2 voxels), so small images hold many of them."""
    from napari_assb_twin.model import load_reference_model

    return load_reference_model("reference-assb-cathode").with_updates({"f1.length_scale": 0.75, "f2.length_scale": 0.5})


def _exact(model) -> np.ndarray:
    return np.array([model.volume_fractions[p] for p in PHASE_NAMES])


def _within_binomial(hits: list[bool], level: float = 0.95) -> tuple[float, float]:
    """The hit rate and its allowed deviation from ``level``: 3 binomial standard errors."""
    return float(np.mean(hits)), 3.0 * math.sqrt(level * (1 - level) / len(hits))


def test_twin_interval_covers_the_models_exact_fraction_at_the_nominal_rate(model):
    """400 comparisons of 4 realisations each: the model's exact volume fraction (the truth) lies inside
    the twin's 95 % interval 95 % of the time, within 3 binomial SE (too often is as wrong as too rarely:
    an interval made wide to be safe fails too). Realisations: 56^2 windows of 512^2 fields, 8 px apart
    (the correlation lengths are 3 and 2 px, so the windows are independent)."""
    exact = _exact(model)
    fractions = []
    for seed in range(25):
        big = model.generate((512, 512), seed=seed)
        for i, j in np.ndindex(8, 8):
            window = big[i * 64:i * 64 + 56, j * 64:j * 64 + 56]
            fractions.append([np.mean(window == p) for p in range(3)])
    reps = np.asarray(fractions).reshape(400, 4, 3)
    for p in range(3):
        hits = []
        for rep in reps[:, :, p]:
            mean, lo, hi, sd = mean_interval(rep)
            assert mean == pytest.approx(rep.mean()) and sd == pytest.approx(rep.std(ddof=1))
            hits.append(lo <= exact[p] <= hi)
        rate, tol = _within_binomial(hits)
        assert abs(rate - 0.95) <= tol, (PHASE_NAMES[p], rate, tol)


def test_measured_sampling_interval_from_octants_covers_the_exact_fraction(model):
    """320 simulated 'measured' 32^3 volumes: the interval from their 8 octants (batch means, t with 7
    dof) holds the model's exact fraction at the nominal rate within 3 binomial SE (measured 0.93-0.94:
    adjacent octants are slightly correlated, which the rule's docstring states)."""
    exact = _exact(model)
    hits: list[list[bool]] = [[], [], []]
    for seed in range(5):
        big = model.generate((128, 128, 128), seed=100 + seed)
        for c in np.ndindex(4, 4, 4):
            vol = big[tuple(slice(k * 32, (k + 1) * 32) for k in c)]
            blocks = sub_blocks(vol)
            assert len(blocks) == 8 and all(b.shape == (16, 16, 16) for b in blocks)
            for p in range(3):
                lo, hi = sampling_interval(np.mean(vol == p), [np.mean(b == p) for b in blocks])
                hits[p].append(lo <= exact[p] <= hi)
    for p in range(3):
        rate, tol = _within_binomial(hits[p])
        assert abs(rate - 0.95) <= tol, (PHASE_NAMES[p], rate, tol)


def test_disjoint_and_missing_intervals():
    assert disjoint(0.0, 1.0, 1.5, 2.0) and disjoint(1.5, 2.0, 0.0, 1.0)
    assert not disjoint(0.0, 1.0, 0.9, 2.0)  # overlapping
    assert not disjoint(0.0, 1.0, 1.0, 2.0)  # touching counts as overlapping
    assert not disjoint(0.0, 1.0, float("nan"), float("nan"))  # no twin interval: never coloured
    # fewer than two values, or a non-finite one: no interval
    assert all(math.isnan(v) for v in mean_interval([0.3])[1:])
    m, lo, hi, _ = mean_interval([2.0, math.inf, 3.0])
    assert m == math.inf and math.isnan(lo) and math.isnan(hi)
    assert mean_interval([math.inf, math.inf])[0] == math.inf
    assert sub_blocks(np.zeros((10, 10, 10), np.uint8)) == []  # blocks under 8 voxels a side


def test_comparison_records_hold_both_intervals(model):
    """The measured value with the interval of its octants, the twins' mean with the t interval of
    the model's mean, and 'differs' exactly where the two do not overlap (computed here by hand)."""
    from scipy.stats import t

    from napari_assb_twin.validate import compare

    real = model.generate((24, 24, 24), seed=50)
    twins = [model.generate((16, 16, 16), seed=s) for s in range(3)]
    cmp = compare(real, twins, transport=False, geometry=False)
    assert cmp.realisations == 3 and cmp.sampling_blocks == 8 and cmp.twin_shape == (16, 16, 16)
    df = cmp.descriptors.set_index(["descriptor", "phase"])
    for p, name in enumerate(PHASE_NAMES):
        row = df.loc[("volume_fraction", name)]
        per = np.array([np.mean(tw == p) for tw in twins])
        half = t.ppf(0.975, 2) * per.std(ddof=1) / math.sqrt(3)
        assert (row.twin, row.twin_lo, row.twin_hi) == pytest.approx((per.mean(), per.mean() - half, per.mean() + half))
        assert row.twin_spread == pytest.approx(per.std(ddof=1)) and row.realisations == 3
        octs = np.array([np.mean(real[a:a + 12, b:b + 12, c:c + 12] == p) for a in (0, 12) for b in (0, 12) for c in (0, 12)])
        rh = t.ppf(0.975, 7) * octs.std(ddof=1) / math.sqrt(8)
        assert (row.real, row.real_lo, row.real_hi) == pytest.approx((np.mean(real == p), np.mean(real == p) - rh,
                                                                       np.mean(real == p) + rh))
    full = cmp.descriptors
    expected = [disjoint(*v) for v in full[["real_lo", "real_hi", "twin_lo", "twin_hi"]].to_numpy(float)]
    assert full["differs"].tolist() == expected
    assert cmp.differing_rows() == sum(expected)
    # no sub-volumes asked for: no measured interval, so nothing differs
    plain = compare(real, twins, transport=False, geometry=False, sampling=False)
    assert plain.sampling_blocks == 0 and plain.descriptors["real_lo"].isna().all() and not plain.differing_rows()


def _two_row_comparison():
    """A comparison of two volume-fraction rows: +50 % with overlapping intervals, +10 % with disjoint ones."""
    import pandas as pd

    from napari_assb_twin.validate.compare import Comparison, _descriptor_frame, _row

    rows = [_row("volume_fraction", "pore", None, "1", 0.10, 0.15, 0.05, real_lo=0.05, real_hi=0.2, twin_lo=0.1,
                 twin_hi=0.2, realisations=5),
            _row("volume_fraction", "active", None, "1", 0.50, 0.55, 0.01, real_lo=0.49, real_hi=0.51, twin_lo=0.54,
                 twin_hi=0.56, realisations=5)]
    return Comparison(_descriptor_frame(rows), {}, {}, {}, (8, 8, 8), (8, 8, 8), 1.0, "px",
                      coverage_error=pd.DataFrame(), realisations=5, sampling_blocks=8)


def test_html_colours_a_difference_only_where_the_intervals_are_disjoint():
    from napari_assb_twin.validate.report import _table_html

    cmp = _two_row_comparison()
    assert cmp.descriptors["differs"].tolist() == [False, True]
    html_text = _table_html(cmp)
    rows = {name: tr for tr in re.findall(r"<tr><td>.*?</tr>", html_text, flags=re.S)
            for name in ("pore", "active") if f"</span>{name}</td>" in tr}
    pore_rel = re.search(r'<td class="num( [a-z]+)?">\+50\.0 %</td>', rows["pore"])
    active_rel = re.search(r'<td class="num( [a-z]+)?">\+10\.0 %</td>', rows["active"])
    assert pore_rel and pore_rel.group(1) is None  # +50 % but the intervals overlap: neutral
    assert active_rel and active_rel.group(1) == " warn"  # +10 % beyond both intervals: coloured by its size
    # both intervals are printed, measured and twin
    assert "[0.05, 0.2]" in rows["pore"] and "[0.1, 0.2]" in rows["pore"] and "[0.54, 0.56]" in rows["active"]


def test_cli_compare_with_realisations_prints_intervals(tmp_path, capsys, model):
    import pandas as pd

    from napari_assb_twin.cli import main

    real = tmp_path / "real.npy"
    np.save(real, model.generate((24, 24, 24), seed=9))
    rc = main(["compare", str(real), "reference-assb-cathode", "--realisations", "3", "--realisation-size", "16",
               "--no-transport", "--no-geometry", "--out", str(tmp_path / "rep")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "3 realisations (16, 16, 16)" in out and "differ beyond both 95 % intervals" in out
    df = pd.read_csv(tmp_path / "rep" / "descriptors.csv")
    assert (df["realisations"] == 3).all() and df["twin_lo"].notna().any() and df["real_lo"].notna().any()
    for name in PHASE_NAMES:
        r = df[(df.descriptor == "volume_fraction") & (df.phase == name)].iloc[0]
        line = next(ln for ln in out.splitlines() if ln.startswith("volume_fraction") and f" {name} " in ln)
        assert f"{r.real:.4g} [{r.real_lo:.4g}, {r.real_hi:.4g}]" in line
        assert f"{r.twin:.4g} [{r.twin_lo:.4g}, {r.twin_hi:.4g}]" in line
        assert line.rstrip().endswith("*") == bool(r.differs)
    # realisations of an image cannot be simulated: refused before any work, naming the way out
    rc = main(["compare", str(real), str(real), "--realisations", "3", "--out", str(tmp_path / "rep2")])
    assert rc != 0 and "needs the twin's model" in capsys.readouterr().err
    assert not (tmp_path / "rep2").exists()


def test_realisation_shape_rule():
    from napari_assb_twin.jobs.compare import realisation_shape

    assert realisation_shape((256, 256, 256)) == (128, 128, 128)
    assert realisation_shape((64, 300, 90), side=100) == (64, 100, 90)
    assert realisation_shape((253, 253)) == (128, 128, 128)  # a 2D measured section: 3D twins, their sections
    with pytest.raises(ValueError, match="side"):
        realisation_shape((32, 32, 32), side=1)


def test_sweep_summary_holds_mean_and_interval_per_grid_point(tmp_path):
    from napari_assb_twin.model import load_reference_model
    from napari_assb_twin.validate import run_sweep

    res = run_sweep(load_reference_model("reference-assb-cathode"), ["electrolyte_fraction=0.25,0.35"], realisations=3,
                    shape=(12, 12, 12), out=tmp_path / "sw", transport=False, geometry=False, scheduler="sync")
    summary = res.summary
    assert (tmp_path / "sw" / "summary.csv").is_file() and len(summary) == 2
    assert (summary["realisations"] == 3).all()
    for _, row in summary.iterrows():
        cases = res.table[res.table["point"] == row["point"]]
        vals = cases["volume_fraction.electrolyte"].to_numpy(float)
        assert (row["volume_fraction.electrolyte.mean"], row["volume_fraction.electrolyte.lo"],
                row["volume_fraction.electrolyte.hi"]) == pytest.approx(mean_interval(vals)[:3])
