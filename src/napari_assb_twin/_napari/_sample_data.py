"""Sample data: synthetic ASSB cathodes made by the built-in reference model (fixed seeds).

No measured data ships with the plugin; these samples are realizations of
``load_reference_model("reference-assb-cathode")``, so they are reproducible and show the phase
colours, scale and units a real twin gets. torch is imported inside the functions.
"""

from __future__ import annotations

import numpy as np

from ._layers import phase_labels_layer_data

__all__ = ["assb_cathode_3d", "assb_section_2d"]

REFERENCE_MODEL = "reference-assb-cathode"
SEED_3D = 2026
SEED_2D = 2027


def _metadata(model, seed: int, what: str) -> dict:
    return {
        "source": f"synthetic: {what} of built-in model {REFERENCE_MODEL!r}, seed {seed}",
        "model": REFERENCE_MODEL,
        "seed": seed,
        "volume_fractions": dict(model.volume_fractions),
    }


def assb_cathode_3d() -> list[tuple]:
    """A 96^3 synthetic ASSB cathode (pore / active / electrolyte) as a phase Labels layer."""
    from ..model import load_reference_model

    model = load_reference_model(REFERENCE_MODEL)
    data = np.asarray(model.generate((96, 96, 96), seed=SEED_3D, device="cpu"), dtype=np.uint8)
    return [
        phase_labels_layer_data(
            data, "ASSB cathode 3D (synthetic)", model.voxel_size, model.unit,
            _metadata(model, SEED_3D, "96^3 realization"),
        )
    ]


def assb_section_2d() -> list[tuple]:
    """A 256^2 in-plane section (perpendicular to the pressing axis) of the same model."""
    import torch

    from ..model import load_reference_model

    model = load_reference_model(REFERENCE_MODEL).to("cpu")
    generator = torch.Generator(device="cpu").manual_seed(SEED_2D)
    with torch.no_grad():
        section = model.sample_sections((256, 256), plane="inplane", batch=1, generator=generator, mode="hard")
    data = section[0].cpu().numpy().astype(np.uint8)
    return [
        phase_labels_layer_data(
            data, "ASSB section 2D (synthetic, in-plane)", model.voxel_size, model.unit,
            _metadata(model, SEED_2D, "256^2 exact in-plane section"),
        )
    ]
