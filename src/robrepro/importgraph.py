"""Which package modules a job runs: the import graph of robrepro, read from the source (no import).

The rules declare the files a job's code comes from as its input (through one stamp file per set of
files, :mod:`robrepro.codestamp`), so that changing a module re-runs exactly the jobs that import it
(Snakemake's own code trigger sees only the rule bodies). Those files are derived here from each
job's entry modules, never listed by hand:

- every ``import`` of a module counts, at the top level or inside a function (a lazy import runs too);
  importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so parent packages count;
- a registry that imports every module of its package (:func:`robrepro.registry.import_submodules`)
  counts only for the modules that use it: a module that names one of the package's functions that
  reach that call (``models.build``, ``attacks.registry``...) depends on every module of the package,
  one that only borrows a helper from it (``attacks.parse_eps``) does not;
- the command line (``__main__``, ``cli``) dispatches lazily, one command per job: it counts with its
  top-level imports only (:func:`job_files`), the command's own modules come from the entries.

Only modules of the package are followed; third-party libraries are the environment's business.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

PACKAGE = "robrepro"
# Modules a job enters through; they import each command's modules inside the command.
CLI = (f"{PACKAGE}.__main__", f"{PACKAGE}.cli")
LOADER = "import_submodules"


@dataclass
class _Module:
    name: str
    path: Path
    is_package: bool
    imports: set[str] = field(default_factory=set)  # every import, lazy ones included
    top_imports: set[str] = field(default_factory=set)  # module-level imports only
    # name bound in this module -> the module it refers to (``from . import data as D``: D -> robrepro.data)
    module_aliases: dict[str, str] = field(default_factory=dict)
    # (module, name) pairs imported by ``from module import name``
    imported_names: set[tuple[str, str]] = field(default_factory=set)
    attributes: set[tuple[str, str]] = field(default_factory=set)  # (bound name, attr) of ``X.attr``
    loaders: set[str] = field(default_factory=set)  # own functions that reach import_submodules(this package)


class ImportGraph:
    """The modules of the package under ``root`` (its folder) and their imports of each other."""

    def __init__(self, root: str | Path | None = None, cache_file: str | Path | None = None):
        self.root = Path(root) if root is not None else Path(__file__).parent
        self.modules: dict[str, _Module] = {}
        for path in sorted(self.root.rglob("*.py")):
            rel = path.relative_to(self.root).with_suffix("").parts
            is_pkg = rel[-1] == "__init__"
            name = ".".join((PACKAGE, *rel[:-1])) if is_pkg else ".".join((PACKAGE, *rel))
            self.modules[name] = _Module(name, path, is_pkg)
        self._load(cache_file)

    # --- reading the package, through a cache of what each file imports ----------------------------

    _FIELDS = ("imports", "top_imports", "module_aliases", "imported_names", "attributes", "loaders")

    def _load(self, cache_file: str | Path | None) -> None:
        """Read every module; a file unchanged since ``cache_file`` was written (same size and
        modification time) is taken from it: parsing the whole package costs a parse of the
        workflow a few tenths of a second."""
        old: dict = {}
        if cache_file:
            try:
                old = json.loads(Path(cache_file).read_text())
            except (OSError, ValueError):
                old = {}
        new, changed = {}, False
        for m in self.modules.values():
            st = m.path.stat()
            key = f"{st.st_size}:{st.st_mtime_ns}"
            hit = old.get(m.name)
            if hit and hit["key"] == key:
                for f in self._FIELDS:
                    v = hit[f]
                    setattr(m, f, dict(v) if f == "module_aliases" else {tuple(x) if isinstance(x, list) else x for x in v})
            else:
                self._read(m)
                changed = True
            d = asdict(m)
            new[m.name] = {"key": key, **{f: d[f] if f == "module_aliases" else sorted(d[f]) for f in self._FIELDS}}
        if cache_file and (changed or new.keys() != old.keys()):
            try:  # a cache that cannot be written (a read-only install) costs time, nothing else
                tmp = f"{cache_file}.{os.getpid()}.tmp"
                Path(tmp).write_text(json.dumps(new))
                os.replace(tmp, cache_file)
            except OSError:
                pass

    # --- reading a module -------------------------------------------------------------------------

    def _resolve(self, m: _Module, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        base = m.name.split(".") if m.is_package else m.name.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def _read(self, m: _Module) -> None:
        tree = ast.parse(m.path.read_text(), str(m.path))
        top = set(tree.body)
        for node in ast.walk(tree):
            found: set[str] = set()
            if isinstance(node, ast.Import):
                for a in node.names:
                    found.add(a.name)
                    if a.asname:
                        m.module_aliases[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom):
                src = self._resolve(m, node.module, node.level)
                found.add(src)
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    if sub in self.modules:  # ``from pkg import submodule``
                        found.add(sub)
                        m.module_aliases[a.asname or a.name] = sub
                    else:
                        m.imported_names.add((src, a.name))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                m.attributes.add((node.value.id, node.attr))
            found = {f for f in found if f == PACKAGE or f.startswith(PACKAGE + ".")}
            m.imports |= found
            if node in top:
                m.top_imports |= found
        # Only attributes of modules matter (``models.build``): keep the cache small.
        m.attributes = {(b, a) for b, a in m.attributes if b in m.module_aliases}
        m.loaders = self._loaders(m, tree)

    def _loaders(self, m: _Module, tree: ast.Module) -> set[str]:
        """Functions of ``m`` that import every module of ``m``'s package, directly or through
        other functions of ``m`` (``build_objective`` -> ``_load_all`` -> ``import_submodules``)."""
        if not m.is_package:
            return set()
        calls: dict[str, set[str]] = {}
        direct: set[str] = set()
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef):
                names = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
                calls[fn.name] = names
                if LOADER in names:
                    direct.add(fn.name)
        loaders = set(direct)
        while True:
            more = {f for f, names in calls.items() if names & loaders} - loaders
            if not more:
                return loaders
            loaders |= more

    # --- queries ----------------------------------------------------------------------------------

    def submodules(self, package: str) -> set[str]:
        """The modules ``import_submodules(package)`` imports (not recursive, no ``_private`` ones)."""
        return {n for n in self.modules if n.rpartition(".")[0] == package and not n.rpartition(".")[2].startswith("_")}

    def _parents(self, name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    def _uses_registry(self, m: _Module, pkg: _Module) -> bool:
        if not pkg.loaders:
            return False
        if any(src == pkg.name and n in pkg.loaders for src, n in m.imported_names):
            return True
        bound = {alias for alias, target in m.module_aliases.items() if target == pkg.name}
        return any(b in bound and attr in pkg.loaders for b, attr in m.attributes)

    def deps(self, name: str, top_level_only: bool = False) -> set[str]:
        """Modules that importing (or, for a package, using the registry of) ``name`` runs directly."""
        m = self.modules[name]
        out = set(m.top_imports if top_level_only else m.imports) | self._parents(name)
        for target in list(out):
            out |= self._parents(target)
        if not top_level_only:
            # The registries this module uses: every module of their package.
            for pkg in {t for t in out if t in self.modules and self.modules[t].is_package}:
                if self._uses_registry(m, self.modules[pkg]):
                    out |= self.submodules(pkg)
        return {d for d in out if d in self.modules and d != name}

    def closure(self, entries: Iterable[str], shallow: Iterable[str] = ()) -> set[str]:
        """Every module that importing ``entries`` may run; ``shallow`` ones count with their
        top-level imports only (a dispatcher whose functions import the rest on demand)."""
        shallow = set(shallow)
        todo = [*entries, *shallow]
        seen: set[str] = set()
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            if n not in self.modules:
                raise KeyError(f"no module {n} in {self.root}")
            seen.add(n)
            todo += self.deps(n, top_level_only=n in shallow)
        return seen

    def files(self, modules: Iterable[str]) -> list[str]:
        return sorted(str(self.modules[n].path) for n in modules)


@cache
def graph(root: str | None = None, cache_file: str | None = None) -> ImportGraph:
    return ImportGraph(root, cache_file)


@cache
def _job_modules(entries: frozenset[str], root: str | None, cache_file: str | None, cli: bool) -> frozenset[str]:
    return frozenset(graph(root, cache_file).closure(entries, shallow=CLI if cli else ()))


def job_modules(entries: Iterable[str], root: str | None = None, cache_file: str | None = None, cli: bool = True) -> set[str]:
    """Modules a job runs whose code enters through ``entries``: a ``python -m robrepro <command>``
    job (``cli``) or a script that imports them. ``root``: the package's folder (default: this
    one); ``cache_file``: see :class:`ImportGraph`."""
    return set(_job_modules(frozenset(entries), root, cache_file, cli))


def job_files(entries: Iterable[str], root: str | None = None, cache_file: str | None = None, cli: bool = True) -> list[str]:
    """The files of :func:`job_modules`: what a rule declares as its code inputs."""
    return graph(root, cache_file).files(job_modules(entries, root, cache_file, cli))
