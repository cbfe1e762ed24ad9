"""Hostile inputs and faults (issue 10 item 7): each gets a clear message before work, or a safe outcome.

Every test drives the public entry point a user reaches (``assb-twin`` via :func:`main`, the jobs, the
io readers) and checks both the message and that nothing harmful happened (no file replaced, no
partial output, no cluster started, the best model kept).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from napari_assb_twin.cli import build_parser, main
from napari_assb_twin.io import read_label_image, to_phases, write_label_tiff
from napari_assb_twin.jobs import generate, run_job
from napari_assb_twin.jobs.calibrate import CHECKPOINT_EVERY
from napari_assb_twin.model import build_model, load_model, save_model

gen_mod = __import__("napari_assb_twin.jobs.generate", fromlist=["x"])


def _err(capsys) -> str:
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def section_png(calibration_section):
    return calibration_section[0]


# calibration mechanics, not model selection (the default since selection transfers better to 3D)
FAST = ["--model", "lp-iso", "--rmax", "6", "--batch", "2", "--quiet", "--device", "cpu"]


# -- generate: sizes checked before any work ---------------------------------------------------------
def test_huge_zarr_request_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "big.zarr"
    t0 = time.perf_counter()
    rc = main(["generate", "reference-assb-cathode", "--shape", "100000", "100000", "100000", "--out", str(out)])
    assert rc == 1 and time.perf_counter() - t0 < 30
    err = _err(capsys)
    assert "GiB uncompressed" in err and "free" in err
    assert not out.exists()  # no store, no graph built


def test_tif_that_does_not_fit_in_memory_is_refused_with_the_figure_and_the_blockwise_way(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gen_mod, "available_memory_bytes", lambda device: 2**30)  # a 1 GiB machine
    out = tmp_path / "twin.tif"
    rc = main(["generate", "reference-assb-cathode", "--shape", "300", "300", "300", "--device", "cpu", "--out", str(out)])
    assert rc == 1
    err = _err(capsys)
    need = gen_mod.peak_memory_bytes(load_model_ref(), (300, 300, 300)) / 2**30
    assert f"{need:.1f} GiB" in err and "1.0 GiB are free" in err and ".zarr" in err
    assert not out.exists()
    # the same request on the real machine: 1300^3 needs ~ 200 GiB by the estimate, more than any test machine
    assert gen_mod.peak_memory_bytes(load_model_ref(), (1300,) * 3) > 128 * 2**30


def load_model_ref():
    from napari_assb_twin.model import load_reference_model

    return load_reference_model("reference-assb-cathode")


@pytest.mark.parametrize("chunk, shape, used", [(4096, (16, 16, 16), 16), (1, (40, 40, 40), 32), (128, (40, 20, 20), 40)])
def test_chunk_is_clamped_to_the_volume_with_a_minimum(chunk, shape, used):
    assert gen_mod.clamp_chunk(chunk, shape) == used


def test_zarr_chunk_4096_on_a_small_volume_finishes_and_says_it_clamped(tmp_path, capsys):
    out = tmp_path / "small.zarr"
    rc = main(["generate", "reference-assb-cathode", "--shape", "16", "16", "16", "--chunk", "4096", "--out", str(out)])
    assert rc == 0
    err = _err(capsys)
    assert "--chunk 4096 clamped to 16" in err
    import zarr

    assert zarr.open_array(str(out), mode="r").chunks == (16, 16, 16)


# -- Zarr completeness and --force -----------------------------------------------------------------------
def test_interrupted_zarr_twin_never_reads_back_as_valid(tmp_path, capsys):
    out = tmp_path / "cut.zarr"
    job = generate(load_model_ref(), (64, 24, 24), out, seed=1, chunk=32)
    for event in job:
        if event.stage == "generate" and event.done == 1:
            break  # the user pressed Ctrl-C after the first of two slabs
    job.close()
    assert out.is_dir()
    real = tmp_path / "real.npy"
    np.save(real, np.random.default_rng(0).integers(0, 3, (24, 24, 24)).astype(np.uint8))
    rc = main(["compare", str(real), str(out), "--no-transport", "--no-geometry", "--out", str(tmp_path / "rep")])
    assert rc == 1
    assert "incomplete Zarr twin" in _err(capsys)
    assert not (tmp_path / "rep" / "descriptors.csv").exists()
    # finished, the same store reads back and compares
    out2 = tmp_path / "whole.zarr"
    run_job(generate(load_model_ref(), (64, 24, 24), out2, seed=1, chunk=32))
    rc = main(["compare", str(real), str(out2), "--no-transport", "--no-geometry", "--out", str(tmp_path / "rep2")])
    assert rc == 0


def test_force_replaces_only_what_this_program_wrote(tmp_path, capsys):
    foreign = tmp_path / "mine.zarr"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    rc = main(["generate", "reference-assb-cathode", "--shape", "16", "16", "16", "--out", str(foreign), "--force"])
    assert rc == 1
    assert "only replaces twins this program wrote" in _err(capsys)
    assert (foreign / "thesis.tex").read_text() == "precious"
    ours = tmp_path / "ours.zarr"
    assert main(["generate", "reference-assb-cathode", "--shape", "16", "16", "16", "--out", str(ours)]) == 0
    assert main(["generate", "reference-assb-cathode", "--shape", "16", "16", "16", "--out", str(ours)]) == 1
    assert "--force" in _err(capsys)
    assert main(["generate", "reference-assb-cathode", "--shape", "20", "16", "16", "--out", str(ours), "--force"]) == 0
    import zarr

    assert zarr.open_array(str(ours), mode="r").shape == (20, 16, 16)
    # a folder named like a TIFF output is not overwritten either
    (tmp_path / "dir.tif").mkdir()
    assert main(["generate", "reference-assb-cathode", "--shape", "8", "8", "8", "--out", str(tmp_path / "dir.tif"),
                 "--force"]) == 1
    assert "is a folder" in _err(capsys)


def test_demo_does_not_replace_an_existing_model_without_force(tmp_path, capsys):
    (tmp_path / "model.json").write_text('{"mine": true}')
    rc = main(["demo", "--out", str(tmp_path), "--iterations", "1", "--size", "16"])
    assert rc == 1
    assert "model.json exists" in _err(capsys)
    assert (tmp_path / "model.json").read_text() == '{"mine": true}'
    assert not (tmp_path / "section.tif").exists()  # refused before any work


# -- sweep: checked before a cluster starts, worker errors as one line ------------------------------------
@pytest.fixture
def no_cluster(monkeypatch):
    from napari_assb_twin.validate import sweep as sweep_mod

    def refuse(*a, **k):
        raise AssertionError("a cluster was started before the inputs were checked")

    monkeypatch.setattr(sweep_mod, "_make_client", refuse)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--vary", "electrolyte_fraction=0.3:1.5:2"], "--vary values electrolyte_fraction=1.5 are not a valid model"),
        (["--vary", "f1.length_scale=1:2:2", "--device", "cuda:7"], "cuda:7"),
        (["--vary", "f9.length_scale=1:2:2"], "unknown parameter 'f9.length_scale'"),
    ],
)
def test_sweep_checks_values_and_device_before_starting_a_cluster(tmp_path, capsys, no_cluster, extra, fragment):
    rc = main(["sweep", "reference-assb-cathode", "--shape", "8", "8", "8", "--no-transport", "--out",
               str(tmp_path / "s"), *extra])
    assert rc == 1
    assert fragment in _err(capsys)
    assert not (tmp_path / "s" / "cases").exists()


def test_sweep_with_a_missing_model_file_is_one_line(tmp_path, capsys, no_cluster):
    rc = main(["sweep", str(tmp_path / "nope.json"), "--vary", "f1.length_scale=1:2:2", "--out", str(tmp_path / "s")])
    assert rc == 1 and "neither a file nor a built-in model" in _err(capsys)


def test_a_worker_error_reaches_the_user_as_one_line(tmp_path, capsys, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from napari_assb_twin.validate import sweep as sweep_mod

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory in the FFT\nsecond line of a long story")

    monkeypatch.setattr(sweep_mod, "evaluate_case", broken)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        rc = main(["sweep", "reference-assb-cathode", "--vary", "f1.length_scale=1.5:2.5:2", "--shape", "8", "8", "8",
                   "--no-transport", "--no-geometry", "--quiet", "--scheduler", cluster.scheduler_address,
                   "--out", str(tmp_path / "s")])
    assert rc == 1
    lines = [ln for ln in _err(capsys).splitlines() if ln.startswith("assb-twin")]
    assert len(lines) == 1
    assert "failed on a worker: RuntimeError: out of memory in the FFT" in lines[0] and "case-" in lines[0]
    assert "second line" not in lines[0]


def test_truncated_sweep_case_file_is_named_and_computed_again(tmp_path, capsys):
    args = ["sweep", "reference-assb-cathode", "--vary", "f1.length_scale=1.5:2.5:2", "--shape", "8", "8", "8",
            "--no-transport", "--no-geometry", "--quiet", "--scheduler", "sync", "--out", str(tmp_path / "s")]
    assert main(args) == 0
    capsys.readouterr()
    victim = sorted((tmp_path / "s" / "cases").glob("*.json"))[0]
    victim.write_text(victim.read_text()[:20])  # a crash from before atomic writes, or a full disk
    assert main(args) == 0
    out = capsys.readouterr()
    assert f"case file {victim} is unreadable" in out.err
    assert "2 cases (1 computed, 1 reused" in out.out
    assert json.loads(victim.read_text())["case_id"] == victim.stem


# -- calibrate: SIGTERM, periodic checkpoints, junk resume --------------------------------------------------
def test_sigterm_keeps_the_best_model_like_ctrl_c(tmp_path, section_png, monkeypatch):
    from napari_assb_twin.calibrate import Calibrator

    calls = {"n": 0}
    orig = Calibrator._step

    def terminated(self, stage, it):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # what a batch scheduler sends at its time limit
        return orig(self, stage, it)

    monkeypatch.setattr(Calibrator, "_step", terminated)
    out = tmp_path / "batch.json"
    before = signal.getsignal(signal.SIGTERM)
    rc = main(["calibrate", str(section_png), "--iterations", "50", "--out", str(out), *FAST])
    assert rc == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored
    prov = json.loads(out.read_text())["provenance"]
    assert prov["interrupted"] is True and prov["finished"] is False and prov["iterations"] >= 3
    load_model(out)
    assert (tmp_path / "batch.ckpt").is_file()


def test_sigterm_during_model_selection_stops_at_once_and_writes_nothing(tmp_path, section_png, monkeypatch, capsys):
    """The default route (model selection first) runs its candidate fits in the main thread: SIGTERM
    in the third step of the first candidate ends the command there, without a model file."""
    from napari_assb_twin.calibrate import Calibrator

    calls = {"n": 0}
    orig = Calibrator._step

    def terminated(self, stage, it):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return orig(self, stage, it)

    monkeypatch.setattr(Calibrator, "_step", terminated)
    out = tmp_path / "auto.json"
    rc = main(["calibrate", str(section_png), "--iterations", "50", "--out", str(out), "--rmax", "6", "--batch", "2",
               "--quiet", "--device", "cpu"])
    assert rc == 143 and calls["n"] <= 4  # a candidate fit of 50 steps was not run to its end first
    captured = capsys.readouterr()
    assert "interrupted before a model was calibrated" in captured.out and "terminated (SIGTERM)" in captured.err
    assert not out.exists() and not (tmp_path / "auto.ckpt").exists()


def test_long_runs_checkpoint_periodically_by_default(tmp_path, section_png, monkeypatch):
    from napari_assb_twin.calibrate import Calibrator

    assert CHECKPOINT_EVERY > 0 and build_parser().parse_args(["calibrate", "x.png", "--out", "m.json"]).checkpoint_every == CHECKPOINT_EVERY
    saved = []
    orig = Calibrator.save_checkpoint

    def spy(self, path):
        saved.append((len(self.history), os.fspath(path)))
        return orig(self, path)

    monkeypatch.setattr(Calibrator, "save_checkpoint", spy)
    out = tmp_path / "fit.json"
    rc = main(["calibrate", str(section_png), "--iterations", "5", "--checkpoint-every", "2", "--out", str(out), *FAST])
    assert rc == 0
    assert [n for n, _ in saved] == [2, 4]
    assert all(p == str(tmp_path / "fit.ckpt") for _, p in saved)
    assert not (tmp_path / "fit.ckpt").exists()  # a finished run has nothing to resume


def test_junk_resume_file_gives_a_clear_message(tmp_path, section_png, capsys):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    rc = main(["calibrate", str(section_png), "--resume", str(junk), "--out", str(tmp_path / "m.json"),
               "--model", "lp-iso", "--rmax", "6", "--quiet", "--device", "cpu"])  # --resume takes no --iterations / --batch
    assert rc == 1
    err = _err(capsys)
    assert "not a calibration checkpoint" in err and "weights_only" not in err


# -- weak messages made clear -----------------------------------------------------------------------------
def test_mapping_naming_an_absent_label_is_said():
    arr = np.array([[0, 1], [2, 1]], np.uint8)
    _, _, message = to_phases(arr, "0:pore,1:active,2:electrolyte,7:pore")
    assert "mapping label 7 (pore) not found in the image" in message


def test_deeply_nested_json_model_names_the_file(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    rc = main(["generate", str(deep), "--shape", "8", "8", "8", "--out", str(tmp_path / "t.tif")])
    assert rc == 1
    err = _err(capsys)
    assert str(deep) in err and "nests too deeply" in err and "RecursionError" not in err


def test_directory_passed_as_model_file(tmp_path, capsys):
    rc = main(["generate", str(tmp_path), "--shape", "8", "8", "8", "--out", str(tmp_path / "t.tif")])
    assert rc == 1
    assert "is a folder, not a model file" in _err(capsys)


def test_length_scale_far_larger_than_the_volume_warns(tmp_path, capsys):
    m = build_model("lp-iso", length_scales_px=(200.0, 150.0))
    path = tmp_path / "wide.json"
    save_model(m, path)
    rc = main(["generate", str(path), "--shape", "16", "16", "16", "--device", "cpu", "--out", str(tmp_path / "t.tif")])
    assert rc == 0
    err = _err(capsys)
    assert "warning:" in err and "correlation length" in err and "smallest side (16)" in err
    # a model at home in its volume gets no warning
    assert gen_mod.length_scale_warning(build_model("lp-iso", length_scales_px=(3.0, 2.0)), (64, 64, 64)) == ""


def test_coverage_out_with_a_tif_name_is_refused(tmp_path, capsys):
    img = tmp_path / "a.npy"
    np.save(img, np.random.default_rng(1).integers(0, 3, (32, 32)).astype(np.uint8))
    rc = main(["coverage", str(img), "--out", str(tmp_path / "x.tif")])
    assert rc == 1
    assert "must end in .csv" in _err(capsys)
    assert not (tmp_path / "x.tif").exists()


def test_compare_notes_differing_voxel_sizes_with_units_in_the_terminal(tmp_path, capsys):
    rng = np.random.default_rng(2)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    write_label_tiff(a, rng.integers(0, 3, (40, 40)).astype(np.uint8), voxel_size=0.5, unit="um")
    write_label_tiff(b, rng.integers(0, 3, (40, 40)).astype(np.uint8), voxel_size=250, unit="nm")
    rc = main(["compare", str(a), str(b), "--no-geometry", "--out", str(tmp_path / "rep")])
    assert rc == 0
    err = _err(capsys)
    assert "note: voxel sizes differ (measured 0.5 um, twin 250 nm); both compared with 0.5 um" in err
    html = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert "250 nm" in html


def test_24_digit_seed_gets_a_clear_message(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["generate", "reference-assb-cathode", "--seed", "123456789012345678901234", "--out", "x.tif"])
    assert stop.value.code == 2
    err = _err(capsys)
    assert "seed must be an integer in 0..9223372036854775807" in err and "Overflow" not in err


def test_unreadable_folder_is_refused_with_the_reason(tmp_path, monkeypatch):
    folder = tmp_path / "stack"
    folder.mkdir()
    real_iterdir = type(folder).iterdir

    def denied(self):
        if self == folder:  # chmod 000 does not stop root, who runs CI: fake the kernel's answer
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(type(folder), "iterdir", denied)
    with pytest.raises(ValueError, match=r"cannot list the folder \(Permission denied\)"):
        read_label_image(folder)


# -- atomic writes ----------------------------------------------------------------------------------------
def test_atomic_writes_take_the_umask_mode_and_never_leave_a_partial_file(tmp_path):
    from napari_assb_twin.io.atomic import atomic_path, atomic_write_text

    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "model.json", "{}")
        assert (path.stat().st_mode & 0o777) == 0o640  # what open() would give, not mkstemp's 0600
    finally:
        os.umask(old)
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(tmp_path / "model.json") as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("disk full")
    assert (tmp_path / "model.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]
    # two writers at once get different temporary names in the target folder, with the target's suffix
    with atomic_path(tmp_path / "a.png") as t1, atomic_path(tmp_path / "a.png") as t2:
        assert t1 != t2 and t1.parent == t2.parent == tmp_path and t1.name.endswith(".png")
        t1.write_bytes(b"1")
        t2.write_bytes(b"2")
    assert (tmp_path / "a.png").read_bytes() == b"1"  # the last to finish wins, whole


# == issue 20: reliability to the last case ==========================================================
# -- one check of seeds, shapes and units for the API and the CLI --------------------------------------
@pytest.mark.parametrize("shape, fragment", [("32", "'32'"), ((8, 8.5, 8), "8.5 is not an integer"),
                                             ((8, True, 8), "True is not an integer"), ((8, -8, 8), ">= 2 voxels")])
def test_api_refuses_a_string_or_float_shape_instead_of_reading_it_as_sides(shape, fragment):
    with pytest.raises(ValueError, match="shape") as info:
        load_model_ref().generate(shape)
    assert fragment in str(info.value)


@pytest.mark.parametrize("seed, text", [(-1, "-1"), (1.5, "1.5"), (True, None), ("3", None)])
def test_api_and_cli_refuse_the_same_seeds_with_the_same_words(seed, text, capsys):
    with pytest.raises(ValueError) as info:
        load_model_ref().generate((8, 8, 8), seed=seed)
    api = str(info.value)
    assert api.startswith("seed must be an integer in 0..9223372036854775807")
    if text is not None:  # a string on the command line is parsed first, then the same check runs
        with pytest.raises(SystemExit):
            main(["generate", "reference-assb-cathode", "--seed", text, "--out", "x.tif"])
        assert api.split(", got")[0] in _err(capsys)
    assert load_model_ref().generate((8, 8, 8), seed=np.int64(3)).shape == (8, 8, 8)  # NumPy ints are ints


def test_phase_map_refuses_a_number_as_unit_like_the_cli():
    from napari_assb_twin.phasemap import PhaseMap, resolve_geometry

    with pytest.raises(ValueError, match="unit must be a length unit"):
        PhaseMap(np.zeros((4, 4), np.uint8), spacing=0.5, unit=5)
    with pytest.raises(ValueError, match="--unit must be a length unit .* got the number '5'"):
        resolve_geometry(True, None, 0.5, "5")  # `--unit 5`: a voxel size typed in the unit's place
    assert PhaseMap(np.zeros((4, 4), np.uint8), spacing=0.5, unit="micron").unit == "um"


def test_a_5000_digit_number_on_the_command_line_is_one_short_line(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "reference-assb-cathode", "--shape", "9" * 5000, "8", "8", "--out", "x.tif"])
    err = _err(capsys)
    assert "at most 30 digits" in err and "9" * 100 not in err and "4300" not in err


# -- outputs claimed atomically: of two writers without --force exactly one wins -----------------------------
def test_a_tif_written_meanwhile_by_another_run_is_not_replaced(tmp_path):
    from napari_assb_twin.io.atomic import OutputClaimedError

    out = tmp_path / "cc.tif"
    job = generate(load_model_ref(), (16, 16, 16), out, seed=1, device="cpu")
    with pytest.raises(OutputClaimedError, match="cc.tif was written by another process"):
        for event in job:
            if event.stage == "generate" and event.done == 0:
                out.write_bytes(b"the other run's twin")  # the other writer finishes first
    assert out.read_bytes() == b"the other run's twin"
    assert [p.name for p in tmp_path.iterdir()] == ["cc.tif"]  # no temporary file left
    # with --force the later writer replaces it, as asked
    run_job(generate(load_model_ref(), (16, 16, 16), out, seed=1, device="cpu", force=True))
    assert read_label_image(out).shape == (16, 16, 16)


def test_two_concurrent_generate_processes_exactly_one_wins(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "napari_assb_twin.cli", "generate", "reference-assb-cathode", "--shape", "48", "48",
           "48", "--device", "cpu", "--out", "cc.tif"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd + ["--seed", str(k)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    loser = outs[[p.returncode for p in procs].index(1)]
    assert "wrote" not in loser[0]
    assert "cc.tif exists" in loser[1] or "written by another process" in loser[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cc.tif"]


def test_calibrate_model_file_written_meanwhile_is_kept(tmp_path, section_png, monkeypatch, capsys):
    from napari_assb_twin.calibrate import Calibrator

    out = tmp_path / "m.json"
    orig = Calibrator._step

    def other_run_finishes(self, stage, it):
        if it == 1 and not out.exists():
            save_model(load_model_ref(), out)  # the concurrent `calibrate --out m.json` wins
        return orig(self, stage, it)

    monkeypatch.setattr(Calibrator, "_step", other_run_finishes)
    rc = main(["calibrate", str(section_png), "--iterations", "4", "--out", str(out), *FAST])
    assert rc == 1
    assert "m.json was written by another process" in _err(capsys)
    assert load_model(out).voxel_size == load_model_ref().voxel_size  # the winner's file, intact


def test_zarr_being_written_is_not_wiped_by_a_second_force_writer(tmp_path, capsys):
    out = tmp_path / "t.zarr"
    job = generate(load_model_ref(), (64, 24, 24), out, seed=1, chunk=32)
    for event in job:
        if event.stage == "generate" and event.done == 1:
            break  # the first writer is half-way
    rc = main(["generate", "reference-assb-cathode", "--shape", "64", "24", "24", "--chunk", "32", "--force",
               "--out", str(out)])
    assert rc == 1
    err = _err(capsys)
    assert "is being written by" in err and "Errno" not in err
    rest = list(job)  # the first writer finishes undisturbed
    assert rest and json.loads((out / "assb_twin.json").read_text())["complete"] is True
    # once it finished, --force replaces it
    assert main(["generate", "reference-assb-cathode", "--shape", "32", "24", "24", "--force", "--out", str(out)]) == 0


def test_zarr_folder_created_between_the_check_and_the_write_is_said(tmp_path):
    import dask.array as da

    from napari_assb_twin.io.zarrtwin import write_zarr_twin

    out = tmp_path / "t.zarr"
    out.mkdir()  # the other writer's claim
    with pytest.raises(FileExistsError, match="created by another process") as info:
        next(write_zarr_twin(da.zeros((4, 4, 4), dtype=np.uint8, chunks=4), out, {}))
    assert "Errno" not in str(info.value)


# -- a full disk or a folder we cannot write is found at start-up and named --------------------------------
def test_full_disk_is_found_before_the_volume_is_computed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gen_mod, "free_disk_bytes", lambda path: 1000)
    called = []
    monkeypatch.setattr(type(load_model_ref()), "generate", lambda *a, **k: called.append(1))
    rc = main(["generate", "reference-assb-cathode", "--shape", "64", "64", "64", "--device", "cpu",
               "--out", str(tmp_path / "x.tif")])
    assert rc == 1 and not called
    err = _err(capsys)
    assert "x.tif" in err and "0.0 GiB free" in err and "smaller --shape" in err


def test_unwritable_folder_is_named_at_start_up_not_the_hidden_temporary_file(tmp_path, monkeypatch, capsys):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / ".x.tif.ezsurbis.tmp.tif"))

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    called = []
    monkeypatch.setattr(type(load_model_ref()), "generate", lambda *a, **k: called.append(1))
    rc = main(["generate", "reference-assb-cathode", "--shape", "16", "16", "16", "--device", "cpu",
               "--out", str(tmp_path / "ro" / "x.tif")])
    assert rc == 1 and not called
    err = _err(capsys)
    assert f"cannot write in folder {tmp_path / 'ro'}" in err and ".tmp" not in err


def test_disk_full_while_writing_names_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    import errno

    import tifffile

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(tifffile, "imwrite", full)
    target = tmp_path / "x.tif"
    with pytest.raises(OSError) as info:
        write_label_tiff(target, np.zeros((4, 4), np.uint8))
    assert str(info.value).startswith(f"cannot write {target}: No space left on device; free some space")
    assert info.value.errno == errno.ENOSPC
    assert ".tmp" not in str(info.value) and list(tmp_path.iterdir()) == []


# -- model files: silent defaults refused, Windows files read ----------------------------------------------
def _ref_dict():
    from napari_assb_twin.model import model_to_dict

    return model_to_dict(load_model_ref())


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.pop("voxel_size"), 'voxel_size: missing; every length in a model file is physical'),
    (lambda d: d.pop("unit"), 'unit: missing; add the unit of voxel_size'),
    (lambda d: d["fields"]["f2"].update(dof=3), 'fields.f2.dof: a gaussian field has no degrees of freedom'),
    (lambda d: d["fields"]["f2"].update(covariance={"family": "spectral", "frequency": [], "density": []}),
     "fields.f2.covariance.frequency: needs a list of at least 2 knot frequencies"),
])
def test_model_file_keys_that_were_dropped_or_defaulted_silently_are_named(tmp_path, capsys, edit, fragment):
    d = _ref_dict()
    edit(d)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(d))
    rc = main(["generate", str(path), "--shape", "16", "16", "16", "--out", str(tmp_path / "t.tif")])
    assert rc == 1
    err = _err(capsys)
    assert "m.json" in err and fragment in err
    assert not (tmp_path / "t.tif").exists()


def test_model_file_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.json"
    path.write_text(json.dumps(_ref_dict()), encoding="utf-8-sig")  # what Windows Notepad writes
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert load_model(path).voxel_size == 0.25


def test_model_file_with_a_5000_digit_integer_names_the_file(tmp_path):
    from napari_assb_twin.model.modelfile import ModelFileError

    path = tmp_path / "big.json"
    path.write_text(json.dumps(_ref_dict()).replace('"voxel_size": 0.25', '"voxel_size": ' + "9" * 5000))
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value).startswith(f"model file {path} holds a number too long") and "set_int_max" not in str(info.value)


def test_correlation_length_far_below_a_voxel_warns(tmp_path, capsys):
    d = _ref_dict()
    d["fields"]["f2"]["covariance"]["length_scale"] = 1e-12
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(d))
    assert main(["generate", str(path), "--shape", "32", "32", "32", "--out", str(tmp_path / "t.tif")]) == 0
    err = _err(capsys)
    assert "warning:" in err and "shortest correlation length is" in err and "below 0.5 voxel" in err
    assert gen_mod.length_scale_warning(load_model_ref(), (64, 64, 64)) == ""


# -- napari opens the Zarr twins this plugin writes, lazily ----------------------------------------------
@pytest.fixture(scope="module")
def zarr_twin(tmp_path_factory):
    out = tmp_path_factory.mktemp("zarr") / "twin.zarr"
    run_job(generate(load_model_ref(), (64, 40, 40), out, seed=2, chunk=32))
    return out


def test_reader_claims_zarr_twins_in_the_manifest_and_opens_them_lazily(zarr_twin, monkeypatch):
    import dask.array as da
    import yaml
    import zarr

    from napari_assb_twin._napari import _reader

    manifest = yaml.safe_load((Path(_reader.__file__).parents[1] / "napari.yaml").read_text())
    assert "*.zarr" in manifest["contributions"]["readers"][0]["filename_patterns"]
    assert _reader.napari_get_reader(str(zarr_twin)) is _reader.read_zarr_twin
    infos = []
    monkeypatch.setattr(_reader, "show_info", infos.append)
    (data, kwargs, kind), = _reader.read_zarr_twin(str(zarr_twin))
    assert kind == "labels" and isinstance(data, da.Array) and data.dtype == np.uint8
    assert data.shape == (64, 40, 40) and data.chunksize == (32, 32, 32)  # one task per stored chunk
    assert kwargs["scale"] == (0.25, 0.25, 0.25) and kwargs["units"] == ("um",) * 3
    assert kwargs["cache"] is False  # napari's global dask cache would keep every chunk paged through
    np.testing.assert_array_equal(np.asarray(data[10]), zarr.open_array(str(zarr_twin), mode="r")[10])
    assert "read lazily" in infos[0]


def test_reader_refuses_an_incomplete_or_foreign_zarr_with_the_reason(tmp_path, monkeypatch):
    from napari_assb_twin._napari import _reader

    errors = []
    monkeypatch.setattr(_reader, "show_error", errors.append)
    cut = tmp_path / "cut.zarr"
    job = generate(load_model_ref(), (64, 24, 24), cut, seed=1, chunk=32)
    for event in job:
        if event.stage == "generate" and event.done == 1:
            break
    job.close()
    assert _reader.read_zarr_twin(str(cut)) == [(None,)]
    assert "incomplete Zarr twin" in errors[-1]
    other = tmp_path / "notes.zarr"
    other.mkdir()
    (other / "a.txt").write_text("x")
    assert _reader.read_zarr_twin(str(other)) == [(None,)]
    assert "not a Zarr array (no zarr.json or .zarray inside)" in errors[-1] and "ArrayNotFound" not in errors[-1]


def test_compare_names_a_folder_that_is_not_a_twin_without_library_text(tmp_path, capsys):
    real = tmp_path / "real.npy"
    np.save(real, np.random.default_rng(0).integers(0, 3, (24, 24, 24)).astype(np.uint8))
    other = tmp_path / "notes.zarr"
    other.mkdir()
    rc = main(["compare", str(real), str(other), "--no-transport", "--no-geometry", "--out", str(tmp_path / "r")])
    assert rc == 1
    err = _err(capsys)
    assert "TWIN" in err and "notes.zarr: not a Zarr array" in err and "ArrayNotFoundError" not in err


@pytest.mark.gui
def test_viewer_opens_a_zarr_twin_as_a_lazy_labels_layer_and_pages_through_it(make_napari_viewer, zarr_twin):
    import dask.array as da
    from napari.layers import Labels

    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(zarr_twin), plugin="napari-assb-twin")
    assert isinstance(layer, Labels) and isinstance(layer.data, da.Array)
    np.testing.assert_allclose(layer.scale, (0.25, 0.25, 0.25))
    for z in (0, 31, 63):
        viewer.dims.set_point(0, z * 0.25)
        shown = np.asarray(layer._slice.image.raw)
        assert shown.shape == (40, 40)
    assert isinstance(layer.data, da.Array)  # still lazy after paging


# -- raw library text replaced by the file, key or flag and the fix -----------------------------------------
def test_labels_mapping_starting_with_a_minus_is_a_value_not_an_option(tmp_path, capsys):
    img = tmp_path / "neg.npy"
    np.save(img, (np.random.default_rng(0).integers(0, 3, (40, 40)) - 1).astype(np.int16))
    rc = main(["coverage", str(img), "--labels", "-1:pore,0:active,1:electrolyte", "--rmax", "4",
               "--out", str(tmp_path / "c.csv")])
    assert rc == 0, _err(capsys)
    assert (tmp_path / "c.csv").exists()


@pytest.mark.parametrize("shape, fragment", [
    ((1, 1), "the image is 1 x 1 pixels: a phase map needs at least 2 pixels along 2 axes"),
    ((2, 100000), "only 2 px along axis 0: too thin to estimate its correlation length"),
])
def test_degenerate_images_are_named_with_their_size(tmp_path, capsys, shape, fragment):
    img = tmp_path / "thin.npy"
    np.save(img, np.random.default_rng(0).integers(0, 3, shape).astype(np.uint8))
    rc = main(["coverage", str(img), "--out", str(tmp_path / "c.csv")])
    assert rc == 1
    err = _err(capsys)
    assert "thin.npy" in err and fragment in err and "r_max <= 1" not in err and "must be 2D or 3D" not in err


def test_symlink_loop_and_dangling_link_are_named_as_such(tmp_path, capsys):
    os.symlink(tmp_path / "b.tif", tmp_path / "a.tif")
    os.symlink(tmp_path / "a.tif", tmp_path / "b.tif")
    os.symlink(tmp_path / "gone.tif", tmp_path / "d.tif")
    assert main(["coverage", str(tmp_path / "a.tif"), "--out", str(tmp_path / "c.csv")]) == 1
    assert "a.tif: symbolic link loop" in _err(capsys)
    assert main(["compare", str(tmp_path / "d.tif"), str(tmp_path / "a.tif"), "--out", str(tmp_path / "r")]) == 1
    assert "REAL " in (err := _err(capsys)) and "d.tif: symbolic link to" in err and "gone.tif, which does not exist" in err


# -- sweep: --force and the overwrite rule, its folder, scheduler and size checked first ------------------
SWEEP = ["sweep", "reference-assb-cathode", "--shape", "16", "16", "16", "--no-transport", "--no-geometry",
         "--scheduler", "sync", "--quiet"]


def test_sweep_with_another_grid_in_the_same_folder_needs_force(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main([*SWEEP, "--vary", "f2.length_scale=0.5:1:2", "--out", str(out)]) == 0
    first = (out / "results.csv").read_text()
    assert main([*SWEEP, "--vary", "f2.length_scale=0.5:1:2", "--out", str(out)]) == 0  # the same sweep resumes
    assert (out / "results.csv").read_text() == first
    _err(capsys)
    assert main([*SWEEP, "--vary", "f2.length_scale=0.5:1:3", "--out", str(out)]) == 1
    err = _err(capsys)
    assert "holds another sweep" in err and "pass --force to replace it" in err
    assert (out / "results.csv").read_text() == first  # untouched
    assert main([*SWEEP, "--vary", "f2.length_scale=0.5:1:3", "--out", str(out), "--force"]) == 0
    assert (out / "results.csv").read_text().count("\n") == 4  # header + 3 cases


@pytest.mark.parametrize("extra, fragment", [
    (["--out", "EXISTING"], "is a file; a sweep writes a folder"),
    (["--scheduler", "banana"], "--scheduler 'banana' is not a dask.distributed address: give tcp://HOST:PORT"),
    (["--vary", "f1.length_scale=1:2:1000000"], "N = 1000000 values, more than one sweep may hold"),
    (["--vary", "f1.length_scale=1:2:1000", "--realisations", "100"], "= 200000 cases of 16 x 16 x 16 voxels (roughly"),
])
def test_sweep_refuses_bad_folder_scheduler_and_huge_grid_before_any_work(tmp_path, capsys, no_cluster, extra, fragment):
    existing = tmp_path / "existing.tif"
    existing.write_text("x")
    args = [*SWEEP[:-3], "--quiet", "--vary", "f2.length_scale=0.5:1:2", "--out", str(tmp_path / "sw")]
    args += [str(existing) if a == "EXISTING" else a for a in extra]
    t0 = time.perf_counter()
    assert main(args) == 1
    assert time.perf_counter() - t0 < 20
    err = _err(capsys)
    assert fragment in err and "missing port" not in err and "Not a directory" not in err
    assert not (tmp_path / "sw" / "sweep.json").exists()


# -- compare: warnings on stderr, never a half-written report -------------------------------------------------
def test_compare_says_on_stderr_when_transport_did_not_converge(tmp_path, capsys):
    img = tmp_path / "r.npy"
    np.save(img, np.random.default_rng(0).integers(0, 3, (24, 24, 24)).astype(np.uint8))
    rc = main(["compare", str(img), str(img), "--no-geometry", "--solver", "amg", "--device", "cpu",
               "--transport-iter-limit", "1", "--out", str(tmp_path / "rep")])
    assert rc == 0
    err = _err(capsys)
    assert "warning: the transport solver stopped at its iteration limit (1)" in err and "tau is not final" in err


def test_compare_warns_when_a_twin_holds_one_phase(tmp_path, capsys):
    real, twin = tmp_path / "real.npy", tmp_path / "twin.npy"
    np.save(real, np.random.default_rng(0).integers(0, 3, (24, 24, 24)).astype(np.uint8))
    np.save(twin, np.ones((24, 24, 24), np.uint8))
    assert main(["compare", str(real), str(twin), "--no-transport", "--no-geometry", "--out", str(tmp_path / "r")]) == 0
    err = _err(capsys)
    assert "warning: TWIN twin.npy holds one phase only (active)" in err and "--twin-labels" in err


def test_interrupted_report_leaves_no_partial_folder(tmp_path, monkeypatch):
    from napari_assb_twin.validate import report as report_mod
    from napari_assb_twin.validate.compare import compare as compare_fn

    a = np.random.default_rng(0).integers(0, 3, (24, 24, 24)).astype(np.uint8)
    cmp = compare_fn(a, a, transport=False, geometry=False)
    calls = {"n": 0}
    orig = report_mod.figure_png

    def ctrl_c_on_the_third_figure(fig):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return orig(fig)

    monkeypatch.setattr(report_mod, "figure_png", ctrl_c_on_the_third_figure)
    out = tmp_path / "rep"
    with pytest.raises(KeyboardInterrupt):
        report_mod.write_report(cmp, out)
    assert not out.exists()
    monkeypatch.setattr(report_mod, "atomic_write_bytes", lambda p, d: (_ for _ in ()).throw(OSError(28, "full"))
                        if p.name == "chords.png" else Path(p).write_bytes(d))
    with pytest.raises(OSError):
        report_mod.write_report(cmp, out)
    assert not out.exists()  # the files written before the disk filled are gone too


# -- calibrate: settings that were ignored are said --------------------------------------------------------
def test_resume_refuses_settings_it_would_ignore(tmp_path, section_png, capsys):
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"PK")
    rc = main(["calibrate", str(section_png), "--resume", str(ckpt), "--iterations", "50", "--out",
               str(tmp_path / "m.json"), "--quiet", "--device", "cpu"])
    assert rc == 1
    err = _err(capsys)
    assert "--resume continues the checkpoint's run with its own settings; --iterations cannot change them" in err


def test_absurd_iteration_count_is_refused_with_an_estimate(tmp_path, section_png, capsys):
    rc = main(["calibrate", str(section_png), "--iterations", "1000000000000", "--out", str(tmp_path / "m.json"), *FAST])
    assert rc == 1
    err = _err(capsys)
    assert "iterations=1000000000000" in err and "at most 1,000,000 steps" in err and "days" in err


def test_batch_unused_by_the_analytic_estimator_is_said(tmp_path, section_png, capsys):
    rc = main(["calibrate", str(section_png), "--model", "lp-iso", "--algorithm", "adversarial", "--batch", "100000",
               "--iterations", "1000000000000", "--device", "cpu", "--out", str(tmp_path / "m.json")])
    assert rc == 1  # the iterations are refused; the warning came first
    assert "warning: --batch 100000 is not used" in _err(capsys)


# -- the GPU check's CPU half ------------------------------------------------------------------------------
def test_gpu_check_cpu_half_runs_every_comparison_and_prints_the_table():
    import shutil
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("benchmarks/gpu_check.sh needs bash and coreutils' timeout")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "GPU_CHECK_TIMEOUT": "240"}
    res = subprocess.run(["bash", str(script), "--cpu-only", "--quick"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("| ")]
    assert len(lines) == 4 and lines[0].startswith("| check | cpu | device |")  # header + 3 checks
    for name in ("calibration + selection", "generation", "transport electrolyte"):
        (row,) = [ln for ln in lines if name in ln]
        assert "| PASS |" in row
    assert "all checks passed" in res.stdout


def test_gpu_check_fails_a_check_outside_its_tolerance(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    from napari_assb_twin.stats import transport

    orig = transport.tortuosity_factor

    def off_by_one_percent(binary, axis=0, device="cpu", solver="auto", **kw):
        import dataclasses

        res = orig(binary, axis=axis, device=device, solver=solver, **kw)
        return dataclasses.replace(res, tau=res.tau * 1.01) if solver == "torch-cg" else res

    monkeypatch.setattr(transport, "tortuosity_factor", off_by_one_percent)
    twin = load_model_ref().generate((40, 40, 40), seed=5)
    row = gpu_check.check_transport("cpu", gpu_check.SIZES[True], twin)
    assert row["ok"] is False and row["difference"].startswith("rel 1.0")


def test_sampled_batch_that_cannot_fit_is_refused_with_the_figure_before_any_step(tmp_path, section_png, capsys):
    from napari_assb_twin.calibrate.engine import SAMPLED_BYTES_PER_PX

    rc = main(["calibrate", str(section_png), "--model", "lp-iso", "--estimator", "sampled", "--batch", "100000",
               "--iterations", "3", "--rmax", "6", "--quiet", "--device", "cpu", "--out", str(tmp_path / "m.json")])
    assert rc == 1
    err = _err(capsys)
    need = SAMPLED_BYTES_PER_PX * 128**2 * 100000 / 2**30
    assert f"batch=100000: 100000 simulated 128^2 sections per plane and step need about {need:.1f} GiB" in err
    assert "use a batch of at most" in err and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_every_api_entry_with_a_seed_refuses_what_the_cli_refuses(seed):
    from napari_assb_twin.calibrate import CalibrationConfig
    from napari_assb_twin.model.blockwise import BlockwiseTwin

    for make in (lambda: CalibrationConfig(seed=seed).validate(), lambda: BlockwiseTwin(load_model_ref(), seed=seed),
                 lambda: load_model_ref().sample_sections((16, 16), "inplane", seed=seed),
                 lambda: run_job(generate(load_model_ref(), (8, 8, 8), "never.tif", seed=seed))):
        with pytest.raises(ValueError, match=r"seed must be an integer in 0\.\.9223372036854775807"):
            make()
    assert not Path("never.tif").exists()
