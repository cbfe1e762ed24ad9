"""Three-phase excursion model: volume fractions, sections vs 3D slices, determinism, model file."""

import json

import numpy as np
import pytest
import torch

from napari_assb_twin.fields.sections import cut_section, plane_axes
from napari_assb_twin.fields.simulate import make_generator
from napari_assb_twin.model import (
    ModelFileError,
    build_model,
    list_reference_models,
    load_model,
    load_reference_model,
    model_from_dict,
    model_to_dict,
    reference_model_path,
    save_model,
)
from napari_assb_twin.stats.coverage import coverage

VF = {"pore": 0.15, "active": 0.5, "electrolyte": 0.35}


@pytest.mark.parametrize("f1,levels", [("gaussian", ("lower", "upper")), ("gaussian", ("upper", "lower")),
                                       ("chi2", ("lower", "upper")), ("chi2", ("upper", "lower"))])
def test_realised_volume_fractions_within_001_at_128(f1, levels):
    model = build_model("lp-iso", f1=f1, f1_dof=3, f2="chi2" if f1 == "gaussian" else "gaussian", f2_dof=2,
                        levels=levels, length_scales_px=(4.0, 3.0), volume_fractions=VF)
    vol = model.generate((128, 128, 128), seed=1)
    assert vol.dtype == np.uint8 and set(np.unique(vol)) <= {0, 1, 2}
    frac = np.bincount(vol.ravel(), minlength=3) / vol.size
    assert np.abs(frac - [VF["pore"], VF["active"], VF["electrolyte"]]).max() < 0.01, frac


def test_thresholds_follow_marginal_quantiles():
    from scipy import stats

    model = build_model("lp-iso", f1="chi2", f1_dof=3, levels=("lower", "upper"), volume_fractions=VF)
    (t1,), (t2,) = model.thresholds()  # one cut per field in the sequential rule
    assert stats.chi2.cdf(t1, 3) == pytest.approx(0.5)  # active (first) = lower level, P = 0.5
    assert stats.norm.sf(t2) == pytest.approx(0.15 / 0.5)  # pore inside the rest


def _section_coverage(model, plane, seed):
    with torch.no_grad():
        secs = model.sample_sections((128, 128), plane, batch=24, generator=make_generator(seed))
    return coverage(secs, 16, periodic=True, batch=True, radial=False).directional


def _slice_coverage(model, plane, seed):
    with torch.no_grad():
        vols = model.sample((128, 128, 128), batch=2, generator=make_generator(seed)).numpy()
    secs = np.stack([cut_section(v, plane, i, model.axis) for v in vols for i in range(0, 128, 11)])
    return coverage(secs, 16, periodic=True, batch=True, radial=False).directional


@pytest.mark.parametrize("variant,plane", [("lp-iso", "inplane"), ("lp-cyl", "inplane"), ("lp-cyl", "axial")])
def test_direct_sections_match_slices_of_3d_volumes(variant, plane):
    """C_ij of directly simulated sections equals that of slices cut from 3D realisations (+-0.01)."""
    model = build_model(variant, length_scales_px=((6.0, 3.0), (2.0, 4.0)), volume_fractions=VF)
    direct = _section_coverage(model, plane, 1)
    sliced = _slice_coverage(model, plane, 2)
    assert np.abs(direct - sliced).max() < 0.01
    if variant == "lp-cyl" and plane == "axial":
        # the rows of an axial section run along the symmetry axis: anisotropy must show
        assert np.abs(direct[0] - direct[1]).max() > 0.02


def test_plane_axes_and_cut_section_agree():
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    assert plane_axes("inplane", 0) == (1, 2) and plane_axes("axial", 0) == (0, 2)
    assert cut_section(vol, "inplane", 1).shape == (5, 6)
    assert cut_section(vol, "axial", 1).shape == (4, 6)
    assert plane_axes("axial", 2) == (2, 1)
    assert cut_section(vol, "axial", 1, axis=2).shape == (6, 5)  # rows = the symmetry axis


def test_same_seed_same_volume_and_sections():
    model = load_reference_model()
    a, b = model.generate((48, 48, 48), seed=3), model.generate((48, 48, 48), seed=3)
    c = model.generate((48, 48, 48), seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    s1 = model.sample_sections((64, 64), "axial", batch=2, seed=9)
    s2 = model.sample_sections((64, 64), "axial", batch=2, seed=9)
    assert torch.equal(s1, s2)


@pytest.mark.parametrize("mode", ["soft", "st"])
def test_soft_and_straight_through_sections_are_differentiable(mode):
    model = build_model("hp-cyl", length_scales_px=((4.0, 3.0), (2.0, 2.0)), n_knots=8, volume_fractions=VF)
    p = model.sample_sections((32, 32), "axial", batch=2, seed=0, mode=mode, temperature=0.1)
    assert p.shape == (2, 3, 32, 32)
    assert torch.allclose(p.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    if mode == "st":
        hard = model.sample_sections((32, 32), "axial", batch=2, seed=0)
        assert torch.equal(p.argmax(1).to(torch.uint8), hard)
    (p[:, 0] * torch.linspace(0, 1, 32)).sum().backward()
    grads = [q.grad for q in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_with_updates_changes_only_what_was_asked():
    model = load_reference_model("pressed-assb-cathode")
    new = model.with_updates({"electrolyte_fraction": 0.4, "f1.anisotropy_ratio": 0.5, "f1.dof": 2})
    p, q = model.interpretable(), new.interpretable()
    assert q["electrolyte_fraction"] == pytest.approx(0.4)
    assert q["pore_fraction"] / q["active_fraction"] == pytest.approx(p["pore_fraction"] / p["active_fraction"])
    assert q["f1.length_scale_inplane"] == pytest.approx(p["f1.length_scale_inplane"])
    assert q["f1.length_scale_axial"] == pytest.approx(0.5 * p["f1.length_scale_inplane"], rel=1e-5)
    assert q["f1.dof"] == 2 and p["f1.dof"] == 3
    assert model.interpretable() == p  # original untouched
    with pytest.raises(ValueError, match="unknown parameter"):
        model.with_updates({"f3.length_scale": 1.0})
    with pytest.raises(ValueError):
        model.with_updates({"f1.length_scale_axial": -1.0})


def test_a_fraction_edit_with_a_remainder_phase_keeps_the_third_fraction():
    """The generator dock's rule, now the model's (edit_volume_fractions through with_updates): the
    edited and the third fraction are kept exactly, the remainder phase takes 1 - both."""
    from napari_assb_twin.model import edit_volume_fractions

    model = load_reference_model("pressed-assb-cathode")
    p = model.volume_fractions
    new = model.with_updates({"active_fraction": 0.55}, remainder="pore")
    q = new.volume_fractions
    assert q["active"] == pytest.approx(0.55, abs=1e-12) and q["electrolyte"] == pytest.approx(p["electrolyte"], abs=1e-12)
    assert q["pore"] == pytest.approx(1 - 0.55 - p["electrolyte"], abs=1e-12) and sum(q.values()) == pytest.approx(1)
    assert model.volume_fractions == p  # original untouched
    with pytest.raises(ValueError, match="exceeds 1, leaving nothing for pore"):
        model.with_updates({"active_fraction": 1.0 - p["electrolyte"] + 0.01}, remainder="pore")
    with pytest.raises(ValueError, match="takes the remainder"):
        model.with_updates({"pore_fraction": 0.2}, remainder="pore")
    # without a remainder: the other two in proportion (with_updates' rule, the same function)
    vf = edit_volume_fractions({"pore": 0.2, "active": 0.5, "electrolyte": 0.3}, "active", 0.6)
    assert vf["active"] == 0.6 and vf["pore"] / vf["electrolyte"] == pytest.approx(0.2 / 0.3)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        edit_volume_fractions(vf, "active", -0.1, "pore")


@pytest.mark.parametrize("name", list_reference_models())
def test_parameter_ranges_are_what_with_updates_accepts(name):
    """The ranges the generator dock's form takes: every settable key, each bound accepted and a
    step beyond it refused (with the range named), the current value inside."""
    from napari_assb_twin.model.excursion import LENGTH_RANGE_PX

    model = load_reference_model(name)
    values = model.interpretable()
    ranges = model.parameter_ranges()
    gaussian_k = {f"{k}.dof" for k, f in model.fields.items() if f.kind == "gaussian"}
    settable = {k for k in values if "correlation_length" not in k}
    assert set(ranges) == settable - gaussian_k  # a Gaussian field has no k to set
    for key, rng in ranges.items():
        assert rng.low <= values[key] <= rng.high, key
        if rng.kind == "length":
            assert (rng.low, rng.high) == pytest.approx(tuple(v * model.voxel_size for v in LENGTH_RANGE_PX))
        if rng.kind in ("length", "number"):
            for ok in (rng.low, rng.high):
                model.with_updates({key: ok})
            for bad in (rng.low - 0.5 * (abs(rng.low) or 1e-3), rng.high * 2):
                with pytest.raises(ValueError, match="outside"):
                    model.with_updates({key: bad})
        if rng.kind == "count":
            assert (rng.low, rng.high) == (1, 6)
            assert model.with_updates({key: rng.high}).interpretable()[key] == rng.high


@pytest.mark.parametrize("name", list_reference_models())
def test_model_file_round_trip_is_exact(name, tmp_path):
    model = load_reference_model(name)
    d = model_to_dict(model)
    assert model_to_dict(model_from_dict(d)) == d
    path = save_model(model, tmp_path / "m.json", provenance={"seed": 1})
    again = load_model(path)
    assert model_to_dict(again)["fields"] == d["fields"]
    assert again.provenance["seed"] == 1 and "torch" in again.provenance
    assert np.array_equal(again.generate((24, 24, 24), seed=0), model.generate((24, 24, 24), seed=0))


def _ref_dict(version1: bool = False):
    if version1:  # the built-in file as stored (format version 1, with 'construction')
        return json.loads(reference_model_path("pressed-assb-cathode").read_text())
    return model_to_dict(load_reference_model("pressed-assb-cathode"))


def set_path(d, path, value):
    """``d`` with the entry at ``path`` (a key sequence) set to ``value``, or deleted for KeyError."""
    obj = d
    for key in path[:-1]:
        obj = obj[key]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return d


def _mutate(path, value):
    return set_path(_ref_dict(version1=path[0] == "construction"), path, value)


@pytest.mark.parametrize("path,value,match", [
    (("format",), "something-else", "format"),
    (("version",), 99, "version"),
    (("extra_key",), 1, "unknown key"),
    (("voxel_size",), -1, "voxel_size"),
    (("volume_fractions", "pore"), "a lot", "volume_fractions.pore"),
    (("volume_fractions", "pore"), 0.5, "sum to 1"),
    (("construction", "first", "level"), "middle", "construction.first.level"),
    (("construction", "second", "phase"), "active", "different phases"),
    (("fields", "f1", "type"), "poisson", "fields.f1.type"),
    (("fields", "f1", "dof"), 9, "fields.f1.dof"),
    (("fields", "f2", "covariance", "family"), "lorentz", "fields.f2.covariance.family"),
    (("fields", "f2", "covariance", "length_scale"), 2.0, "axial"),
    (("fields", "f2", "covariance", "length_scale", "axial"), 0, "axial"),
    (("fields", "f1", "anisotropy"), "orthotropic", "fields.f1.anisotropy"),
    (("fields", "f1", "covariance", "nu"), 1.5, "unknown key"),
    (("fields", "f2"), KeyError, "missing key 'f2'"),
])
def test_invalid_model_files_are_rejected_naming_the_key(path, value, match):
    with pytest.raises(ModelFileError, match=match):
        model_from_dict(_mutate(path, value))


def test_corrupt_and_empty_model_files(tmp_path):
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    for name, match in (("empty.json", "empty"), ("bad.json", "not valid JSON"), ("list.json", "JSON object"),
                        ("missing.json", "does not exist")):
        with pytest.raises(ModelFileError, match=match):
            load_model(tmp_path / name)


def test_bad_shapes_and_devices_give_clear_errors():
    model = load_reference_model()
    with pytest.raises(ValueError, match="dimensions"):
        model.sample((8, 8, 8, 8))
    with pytest.raises(ValueError, match=">= 2"):
        model.sample((1, 8, 8))
    with pytest.raises(ValueError, match="voxels"):
        model.sample((4096, 4096, 4096))
    with pytest.raises(ValueError, match="device"):
        model.generate((8, 8, 8), device="quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            model.generate((8, 8, 8), device="cuda")


def test_iter_generate_is_generate_step_by_step_and_never_moves_the_model():
    import torch

    from napari_assb_twin.model import load_reference_model

    model = load_reference_model("reference-assb-cathode")
    gen = model.iter_generate((12, 14, 16), seed=4, device="cpu")
    steps = []
    try:
        while True:
            steps.append(next(gen))
    except StopIteration as done:
        vol = done.value
    assert steps == ["f1", "f2"]
    np.testing.assert_array_equal(vol, model.generate((12, 14, 16), seed=4, device="cpu"))
    np.testing.assert_array_equal(vol, model.sample((12, 14, 16), seed=4).numpy())
    assert model.on_device("cpu") is model
    assert model.device.type == "cpu"
