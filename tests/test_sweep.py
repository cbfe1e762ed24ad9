"""Parameter sweeps: grid parsing, derived seeds, resumable execution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_assb_twin.model import load_reference_model
from napari_assb_twin.validate import sweep as sweep_mod
from napari_assb_twin.validate.sweep import build_grid, parse_vary, run_sweep


@pytest.fixture(scope="module")
def model():
    return load_reference_model("reference-assb-cathode")


def test_parse_vary_forms():
    v = parse_vary("electrolyte_fraction=0.2:0.4:5")
    assert v.key == "electrolyte_fraction"
    np.testing.assert_allclose(v.values, [0.2, 0.25, 0.3, 0.35, 0.4])
    assert parse_vary("f1.length_scale = 1.5, 2,3").values == (1.5, 2.0, 3.0)
    assert parse_vary("f1.length_scale=4").values == (4.0,)
    assert parse_vary("f1.length_scale=4:4:1").values == (4.0,)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("electrolyte_fraction0.2:0.4:5", "KEY=START:STOP:N"),
        ("electrolyte_fraction=0.2:0.4", "exactly START:STOP:N"),
        ("electrolyte_fraction=0.2:0.4:0", "at least 1"),
        ("electrolyte_fraction=0.2:0.4:x", "positive integer"),
        ("electrolyte_fraction=a:0.4:3", "'a' is not a number"),
        ("electrolyte_fraction=0.2:0.4:1", "START == STOP"),
        ("=0.2:0.4:3", "KEY=START:STOP:N"),
        ("a=b=c", "KEY=START:STOP:N"),
        ("f1.length_scale=1,1", "repeated"),
        ("f1.length_scale=inf", "finite"),
    ],
)
def test_parse_vary_errors_say_what_is_wrong(text, fragment):
    with pytest.raises(ValueError, match="bad --vary") as err:
        parse_vary(text)
    assert fragment in str(err.value)


def test_grid_key_errors(model):
    with pytest.raises(ValueError, match="unknown parameter 'f9.length_scale'.*electrolyte_fraction"):
        build_grid(model, [parse_vary("f9.length_scale=1:2:2")], 1, (8, 8, 8))
    with pytest.raises(ValueError, match="derived"):
        build_grid(model, [parse_vary("f1.correlation_length_inplane=1:2:2")], 1, (8, 8, 8))
    with pytest.raises(ValueError, match="at most one volume fraction"):
        build_grid(model, [parse_vary("pore_fraction=0.1:0.2:2"), parse_vary("electrolyte_fraction=0.2:0.3:2")], 1, (8, 8, 8))
    with pytest.raises(ValueError, match="more than one"):
        build_grid(model, [parse_vary("f1.length_scale=1:2:2"), parse_vary("f1.length_scale=3")], 1, (8, 8, 8))
    with pytest.raises(ValueError, match="realisations"):
        build_grid(model, [parse_vary("f1.length_scale=1:2:2")], 0, (8, 8, 8))


def test_grid_is_full_and_seeds_are_distinct_and_stable(model):
    va, vb = parse_vary("electrolyte_fraction=0.2:0.4:3"), parse_vary("f1.length_scale=1:2:2")
    cases = build_grid(model, [va, vb], 2, (8, 8, 8), seed=7)
    assert len(cases) == 3 * 2 * 2
    assert len({c.case_id for c in cases}) == len(cases)
    assert len({c.seed for c in cases}) == len(cases)
    assert {tuple(sorted(c.params.items())) for c in cases} == {
        (("electrolyte_fraction", a), ("f1.length_scale", b)) for a in va.values for b in vb.values
    }
    # adding a grid value keeps the ids and seeds of the existing cases (their files are reused)
    more = build_grid(model, [parse_vary("electrolyte_fraction=0.2,0.3,0.4,0.5"), vb], 2, (8, 8, 8), seed=7)
    old = {(c.case_id, c.seed) for c in cases}
    assert old <= {(c.case_id, c.seed) for c in more}
    # a different base seed or shape changes every case
    assert not {c.case_id for c in cases} & {c.case_id for c in build_grid(model, [va, vb], 2, (8, 8, 8), seed=8)}
    assert not {c.case_id for c in cases} & {c.case_id for c in build_grid(model, [va, vb], 2, (8, 8, 9), seed=7)}


def test_cli_reports_bad_vary_in_one_line(capsys):
    from napari_assb_twin.cli import main

    rc = main(["sweep", "reference-assb-cathode", "--vary", "electrolyte_fraction=0.2-0.4", "--out", "unused"])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("assb-twin sweep: error: bad --vary") and "\n" not in err
    rc = main(["sweep", "reference-assb-cathode", "--vary", "nonsense=1:2:2", "--shape", "8", "8", "8", "--out", "unused"])
    assert rc == 1
    assert "unknown parameter 'nonsense'" in capsys.readouterr().err


def test_interrupted_sweep_resumes_without_recomputation(model, tmp_path, monkeypatch):
    vary = ["electrolyte_fraction=0.25:0.35:2", "f1.length_scale=1.5:2.5:2"]
    kw = dict(realisations=2, shape=(12, 12, 12), seed=3, transport=False, geometry=False, progress=False, plots=False)
    n_total = 2 * 2 * 2
    real_eval = sweep_mod.evaluate_case
    calls: list[tuple] = []

    class Crash(RuntimeError):
        pass

    def counting(model_dict, params, shape, seed, *args):
        calls.append((tuple(sorted(params.items())), seed))
        if crash_after is not None and len(calls) > crash_after:
            raise Crash("simulated crash")
        return real_eval(model_dict, params, shape, seed, *args)

    monkeypatch.setattr(sweep_mod, "evaluate_case", counting)
    # 1) a run that crashes after 3 finished cases (synchronous scheduler: deterministic order)
    crash_after = 3
    with pytest.raises(Crash):
        run_sweep(model, vary, out=tmp_path / "a", scheduler="sync", **kw)
    files = sorted((tmp_path / "a" / "cases").glob("*.json"))
    assert len(files) == 3
    assert not list((tmp_path / "a" / "cases").glob("*.tmp"))  # atomic writes leave no partial file
    first = set(calls[:3])
    # 2) resume on the threaded scheduler: only the 5 missing cases are computed
    calls.clear()
    crash_after = None
    res = run_sweep(model, vary, out=tmp_path / "a", scheduler="threads", **kw)
    assert (res.n_cases, res.n_computed, res.n_reused) == (n_total, n_total - 3, 3)
    assert len(calls) == n_total - 3 and not first & set(calls)
    # 3) a second resume computes nothing
    calls.clear()
    again = run_sweep(model, vary, out=tmp_path / "a", scheduler="sync", **kw)
    assert calls == [] and again.n_computed == 0
    # 4) the table equals that of an uninterrupted run
    ref = run_sweep(model, vary, out=tmp_path / "b", scheduler="sync", **kw)
    assert len(calls) == n_total
    import pandas as pd

    pd.testing.assert_frame_equal(res.table, ref.table)
    assert (tmp_path / "a" / "results.csv").read_text() == (tmp_path / "b" / "results.csv").read_text()
    # the table holds the grid, one row per case, and the descriptors vary with the electrolyte fraction
    t = res.table
    assert len(t) == n_total and {"electrolyte_fraction", "f1.length_scale", "volume_fraction.electrolyte"} <= set(t)
    means = t.groupby("electrolyte_fraction")["volume_fraction.electrolyte"].mean()
    assert means.loc[0.35] > means.loc[0.25] + 0.05
    rec = json.loads(files[0].read_text())
    assert {"case_id", "params", "seed", "metrics", "seconds"} <= set(rec)


def test_local_sweep_writes_table_and_plots(model, tmp_path):
    res = run_sweep(model, ["f1.length_scale=1.5:2.5:2"], realisations=1, shape=(10, 10, 10), out=tmp_path / "s",
                    transport=True, geometry=False, scheduler="threads", progress=False)
    assert res.n_computed == 2
    assert "tau_factor.active.axis0" in res.table.columns
    assert (tmp_path / "s" / "sweep_f1.length_scale.png").read_bytes()[:4] == b"\x89PNG"
    grid = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [c["case_id"] for c in grid["cases"]] == list(res.table["case_id"])


def test_sweep_on_a_distributed_scheduler_address(model, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    kw = dict(realisations=1, shape=(10, 10, 10), seed=1, transport=False, geometry=False, progress=False, plots=False)
    ref = run_sweep(model, ["f1.length_scale=1.5:2.5:2"], out=tmp_path / "ref", scheduler="sync", **kw)
    # an in-process cluster stands in for a remote one: the client connects by address only
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", dashboard_address=None) as cluster:
        res = run_sweep(model, ["f1.length_scale=1.5:2.5:2"], out=tmp_path / "d", scheduler=cluster.scheduler_address, **kw)
    assert res.scheduler.startswith("dask.distributed at tcp://") and res.n_computed == 2
    import pandas as pd

    pd.testing.assert_frame_equal(res.table, ref.table)  # same seeds, same twins, wherever they ran
    monkeypatch.setattr(sweep_mod, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(ValueError, match="cannot reach the dask scheduler"):
        run_sweep(model, ["f1.length_scale=2"], out=tmp_path / "x", scheduler="tcp://127.0.0.1:9", **kw)
