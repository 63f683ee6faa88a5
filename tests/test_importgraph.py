"""The import graph that gives each job its code inputs (robrepro.importgraph): on a small package
built here, every rule of the graph; on the real package, that it covers what a job really imports."""

import json
import subprocess
import sys
import textwrap

import pytest

from robrepro import evaluations
from robrepro.importgraph import ImportGraph, job_modules

TOY = {
    "__init__.py": "",
    "__main__.py": "from .cli import main\n",
    "cli.py": "import json\nfrom . import small\n\ndef run():\n    from .heavy import go\n",
    "small.py": "",
    "heavy.py": "def go():\n    from .deep.leaf import x\n",
    "deep/__init__.py": "",
    "deep/leaf.py": "x = 1\n",
    "registry.py": "def import_submodules(package):\n    pass\n",
    # A registry package: build() reaches import_submodules through _load(); helper() does not.
    "plug/__init__.py": textwrap.dedent(
        """
        def _load():
            from ..registry import import_submodules

            import_submodules(__name__)

        def build():
            _load()

        def helper():
            pass
        """
    ),
    "plug/a.py": "from . import helper\n",
    "plug/b.py": "from . import helper\n",
    "plug/_private.py": "",
    "uses_build.py": "from .plug import build\n",
    "uses_helper.py": "from .plug import helper\n",
    "uses_attr.py": "from . import plug as P\n\ndef f():\n    P.build()\n",
}


@pytest.fixture
def toy(tmp_path):
    root = tmp_path / "robrepro"
    for rel, text in TOY.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def short(names):
    return {n.removeprefix("robrepro.") for n in names}


def test_lazy_imports_and_parent_packages_count(toy):
    g = ImportGraph(toy)
    assert short(g.closure(["robrepro.heavy"])) == {"robrepro", "heavy", "deep", "deep.leaf"}


def test_a_registry_counts_only_for_the_modules_that_use_it(toy):
    g = ImportGraph(toy)
    every_plugin = {"plug.a", "plug.b"}
    assert every_plugin <= short(g.closure(["robrepro.uses_build"]))
    assert every_plugin <= short(g.closure(["robrepro.uses_attr"]))  # through a module alias
    assert not every_plugin & short(g.closure(["robrepro.uses_helper"]))
    assert "plug._private" not in short(g.closure(["robrepro.uses_build"]))  # import_submodules skips it


def test_the_command_line_counts_with_its_top_level_imports_only(toy):
    g = ImportGraph(toy)
    jobs = short(g.closure(["robrepro.uses_helper"], shallow=["robrepro.__main__", "robrepro.cli"]))
    assert {"__main__", "cli", "small", "uses_helper", "plug"} <= jobs
    assert "heavy" not in jobs  # another command's module


def test_the_cache_is_used_while_files_are_unchanged_and_refreshed_when_they_change(toy, tmp_path):
    cache = tmp_path / "imports.json"
    before = ImportGraph(toy, cache).closure(["robrepro.uses_helper"])
    doc = json.loads(cache.read_text())
    doc["robrepro.small"]["imports"] = ["robrepro.heavy"]  # a stale entry with the file's key: trusted
    cache.write_text(json.dumps(doc))
    assert "robrepro.heavy" in ImportGraph(toy, cache).closure(["robrepro.small"])
    (toy / "uses_helper.py").write_text("from .plug import build\n# longer: a new key\n")
    after = ImportGraph(toy, cache).closure(["robrepro.uses_helper"])
    assert short(after - before) == {"plug.a", "plug.b"}


def test_every_job_kind_is_declared_in_a_module_of_the_graph():
    kinds = evaluations.registry()
    assert {"attack", "verify", "landscape"} <= set(kinds)
    for k in kinds.values():
        assert k.module in job_modules([k.module]), k
        assert k.module.startswith("robrepro.evaluations."), k


@pytest.mark.parametrize(
    "entry, registries",
    [
        ("robrepro.engine", ["models", "objectives"]),  # training builds a model and an objective
        ("robrepro.evaluations.robust", ["models", "attacks"]),  # loads a model, makes an attack
        ("robrepro.papers.gm", []),  # a table builder
    ],
)
def test_the_graph_covers_what_a_job_really_imports(entry, registries):
    """Every package module loaded by the CLI's module, a job's entry and the registries its job
    fills is among the graph's modules for that job."""
    code = textwrap.dedent(
        f"""
        import importlib, json, sys
        import robrepro.cli  # what __main__ imports before running a command
        importlib.import_module({entry!r})
        for r in {registries!r}:
            importlib.import_module("robrepro." + r).registry()
        print(json.dumps(sorted(n for n in sys.modules if n == "robrepro" or n.startswith("robrepro."))))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    loaded = set(json.loads(res.stdout.splitlines()[-1]))
    assert loaded - job_modules([entry]) == set()


def test_every_declared_kind_is_registered_by_its_module():
    """The declarations read from the source and the functions the modules register are one set."""
    code = textwrap.dedent(
        """
        from robrepro.evaluations import _FUNCTIONS, registry
        from robrepro.registry import import_submodules
        import_submodules("robrepro.evaluations")  # every module registers what it defines
        kinds = registry()
        assert set(_FUNCTIONS) == set(kinds), (set(_FUNCTIONS), set(kinds))
        assert all(k.fn is _FUNCTIONS[k.name] for k in kinds.values())
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
