"""Lazy package exports (PEP 562), so torch-free submodules import without pulling in torch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, str]) -> tuple[
    Callable[[str], Any], Callable[[], list[str]]
]:
    """``__getattr__`` and ``__dir__`` for ``package`` loading ``name`` from submodule ``exports[name]``
    (relative, without the dot) on first use and caching it in the package's ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(import_module(f".{exports[name]}", package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
