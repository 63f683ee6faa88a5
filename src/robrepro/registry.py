"""Registries that fill themselves: every module of a plug-in package is imported once.

Models, objectives, attacks, evaluation kinds and papers register themselves with a decorator when
their module is imported. ``import_submodules`` imports every module of a package, so that adding
a component is adding a file: no list of modules to edit anywhere.
"""

from __future__ import annotations

import importlib
import pkgutil

_DONE: set[str] = set()


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (not recursively), once per process."""
    if package in _DONE:
        return
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _DONE.add(package)
