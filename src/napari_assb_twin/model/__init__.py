"""Three-phase excursion-set model, its truncation rules, its structure and its JSON model file.

Names are imported lazily, so the torch-free modules (:mod:`.rules`, :mod:`.structure`) load
without torch.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "Construction": "rules",
    "RULE_FAMILIES": "rules",
    "Rule": "rules",
    "RuleFamily": "rules",
    "TruncationRule": "rules",
    "ModelStructure": "structure",
    "FieldModel": "excursion",
    "ParameterRange": "excursion",
    "ThreePhaseModel": "excursion",
    "build_model": "excursion",
    "edit_volume_fractions": "excursion",
    "ModelFileError": "modelfile",
    "load_model": "modelfile",
    "model_from_dict": "modelfile",
    "model_to_dict": "modelfile",
    "save_model": "modelfile",
    "DEFAULT_MODEL": "reference",
    "list_reference_models": "reference",
    "load_reference_model": "reference",
    "reference_model_path": "reference",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
