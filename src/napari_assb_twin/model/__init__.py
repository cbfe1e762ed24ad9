"""Three-phase excursion-set model, its parameters and its JSON model file."""

from .excursion import Construction, FieldModel, ThreePhaseModel, build_model
from .modelfile import ModelFileError, load_model, model_from_dict, model_to_dict, save_model
from .reference import DEFAULT_MODEL, list_reference_models, load_reference_model, reference_model_path

__all__ = [
    "DEFAULT_MODEL",
    "Construction",
    "FieldModel",
    "ModelFileError",
    "ThreePhaseModel",
    "build_model",
    "list_reference_models",
    "load_model",
    "load_reference_model",
    "model_from_dict",
    "model_to_dict",
    "reference_model_path",
    "save_model",
]
