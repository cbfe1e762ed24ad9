"""Regenerate the built-in reference models in src/napari_assb_twin/model/reference/.

They are hand-chosen, plausible all-solid-state cathode morphologies (not calibrated to any data):
~60 % active material (NMC) as a chi-square lower level set (particle-like grains), ~8 % pores and
the solid electrolyte filling the rest. Run: ``python scripts/make_reference_models.py``.
"""

from pathlib import Path

from napari_assb_twin.model import build_model, save_model

OUT = Path(__file__).resolve().parents[1] / "src" / "napari_assb_twin" / "model" / "reference"
VF = {"pore": 0.08, "active": 0.60, "electrolyte": 0.32}
COMMON = dict(volume_fractions=VF, voxel_size=0.25, unit="um", order=("active", "pore", "electrolyte"),
              levels=("lower", "upper"), f1="chi2", f1_dof=3, f2="gaussian")

models = {
    "reference-assb-cathode": build_model("lp-iso", family="gaussian", length_scales_px=(9.0, 4.0), **COMMON),
    "pressed-assb-cathode": build_model(
        "lp-cyl", family="gaussian", length_scales_px=((6.0, 10.0), (3.0, 4.5)), **COMMON
    ),
    "hole-effect-assb-cathode-hp": build_model(
        "hp-iso", family="damped_wave", period_ratio=5.0, length_scales_px=(8.0, 4.0), **COMMON
    ),
}
notes = {
    "reference-assb-cathode": "LP isotropic reference ASSB cathode (default demo and sample-data model)",
    "pressed-assb-cathode": "LP cylindrical: particles flattened along the pressing axis 0",
    "hole-effect-assb-cathode-hp": "HP isotropic: spectral knots of a damped-wave (hole-effect) correlation",
}
for name, model in models.items():
    save_model(model, OUT / f"{name}.json", provenance={"algorithm": "hand-chosen reference", "note": notes[name]})
    print("wrote", name)
