"""Built-in reference models shipped as JSON model files in ``reference/``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .excursion import ThreePhaseModel
from .modelfile import load_model

DEFAULT_MODEL = "reference-assb-cathode"


def _folder() -> Path:
    return Path(str(resources.files(__package__).joinpath("reference")))


def list_reference_models() -> list[str]:
    """Names of the built-in reference models."""
    return sorted(p.stem for p in _folder().glob("*.json"))


def reference_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a built-in model file; error lists the available names."""
    path = _folder() / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown reference model {name!r}; available: {', '.join(list_reference_models())}")
    return path


def load_reference_model(name: str = DEFAULT_MODEL) -> ThreePhaseModel:
    """Load a built-in reference model by name."""
    return load_model(reference_model_path(name))
