"""``__all__`` lists in sync with the code (issue 10 item 6): every listed name exists, none twice;
a package lists what it imports from its submodules; what one module of the package imports from
another is in that module's ``__all__`` (when it has one)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import types
from pathlib import Path

import pytest

import napari_assb_twin

ROOT = Path(napari_assb_twin.__file__).parent
PACKAGE = napari_assb_twin.__name__


def _module_names() -> list[str]:
    return [PACKAGE] + sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], PACKAGE + "."))


def _path(module: str) -> Path:
    return Path(importlib.util.find_spec(module).origin)


def _imports(module: str) -> list[tuple[str, str, int]]:
    """``(absolute source module, name, line)`` of every ``from X import name`` inside this package."""
    path = _path(module)
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        if source == PACKAGE or source.startswith(PACKAGE + "."):
            out += [(source, a.name, node.lineno) for a in node.names]
    return out


MODULES = _module_names()
WITH_ALL = [m for m in MODULES if "__all__" in _path(m).read_text()]


@pytest.mark.parametrize("name", WITH_ALL)
def test_every_name_in_all_exists_once(name):
    mod = importlib.import_module(name)
    listed = mod.__all__
    missing = [n for n in listed if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names what the module does not have: {missing}"
    twice = sorted({n for n in listed if list(listed).count(n) > 1})
    assert not twice, f"{name}.__all__ lists {twice} more than once"


def test_packages_list_what_they_import_from_their_submodules():
    unlisted = []
    for name in MODULES:
        if _path(name).name != "__init__.py":
            continue
        mod = importlib.import_module(name)
        listed = set(getattr(mod, "__all__", ()))
        for source, imported, line in _imports(name):
            if source.startswith(name + ".") and not imported.startswith("_") and imported not in listed \
                    and not isinstance(getattr(mod, imported, None), types.ModuleType):
                unlisted.append(f"{name}:{line} {imported} (from {source})")
    assert not unlisted, "imported by a package but missing from its __all__: " + "; ".join(unlisted)


def test_lazy_package_exports_are_listed_where_they_live():
    """A package with lazy exports (``_EXPORTS``: name -> submodule) lists them all, and each is
    in its submodule's ``__all__``."""
    wrong = []
    for name in MODULES:
        mod = importlib.import_module(name)
        exports = getattr(mod, "_EXPORTS", None)
        if exports is None:
            continue
        if sorted(mod.__all__) != sorted(exports):
            wrong.append(f"{name}.__all__ differs from its _EXPORTS")
        for export, sub in exports.items():
            home = importlib.import_module(f"{name}.{sub}")
            if export not in getattr(home, "__all__", [export]) or not hasattr(home, export):
                wrong.append(f"{name}.{export} is not in {home.__name__}.__all__")
    assert not wrong, "; ".join(wrong)


def test_what_modules_import_from_each_other_is_in_the_exporting_modules_all():
    unlisted = []
    for name in MODULES:
        for source, imported, line in _imports(name):
            if imported.startswith("_") or imported == "*" or source == name:
                continue
            target = importlib.import_module(source)
            listed = getattr(target, "__all__", None)
            if listed is None or imported in listed or isinstance(getattr(target, imported, None), types.ModuleType):
                continue
            unlisted.append(f"{name}:{line} imports {imported} from {source}")
    assert not unlisted, "names imported across modules but missing from the exporter's __all__: " + "; ".join(unlisted)
