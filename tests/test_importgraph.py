"""The import graph that gives each job its code inputs (robrepro.importgraph) and the stamp files
that stand for them (robrepro.codestamp): on a small package built here, every rule of the graph and
of the stamps; on the real package, that the graph covers what a job really imports and that
touching any module moves exactly the stamps of the jobs that import it."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from robrepro import evaluations, importgraph
from robrepro.codestamp import code_stamp
from robrepro.importgraph import ImportGraph, job_files, job_modules

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


# --- the stamps: one file per set of code files, as old as the newest of them ----------------------


def stamped_files(stamp) -> list[str]:
    return [line.split("\t")[0] for line in Path(stamp).read_text().splitlines()]


def new_parse() -> None:
    """Forget the import graph, as a new parse of the workflow (a new process) does."""
    importgraph.graph.cache_clear()
    importgraph._job_modules.cache_clear()


def set_times(root: Path, t0_ns: int) -> None:
    """Every file of the package 1 s apart, in path order: the newest file differs per stamp."""
    for i, f in enumerate(sorted(root.rglob("*.py"))):
        os.utime(f, ns=(t0_ns + i * 10**9, t0_ns + i * 10**9))


def test_a_stamp_lists_its_files_and_is_as_old_as_the_newest(toy, tmp_path):
    set_times(toy, 1_700_000_000 * 10**9)
    stamp = code_stamp(tmp_path / "stamps", ["robrepro.heavy"], str(toy))
    files = job_files(["robrepro.heavy"], str(toy))
    assert stamped_files(stamp) == [os.path.relpath(f, toy.parent) for f in files]
    assert os.stat(stamp).st_mtime_ns == max(os.stat(f).st_mtime_ns for f in files)
    # Another set of files, another stamp; the same entries read by a script (no CLI), another too.
    assert code_stamp(tmp_path / "stamps", ["robrepro.small"], str(toy)) != stamp
    assert code_stamp(tmp_path / "stamps", ["robrepro.heavy"], str(toy), cli=False) != stamp


def test_an_unchanged_stamp_is_not_rewritten(toy, tmp_path):
    """Every parse (each cluster job's too, concurrently) computes the stamps again: one whose files
    did not change keeps its file, its inode and its time."""
    stamp = code_stamp(tmp_path / "stamps", ["robrepro.uses_build"], str(toy))
    before = os.stat(stamp)
    assert code_stamp(tmp_path / "stamps", ["robrepro.uses_build"], str(toy)) == stamp
    after = os.stat(stamp)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not [p for p in (tmp_path / "stamps").iterdir() if p.name.endswith(".tmp")]


def test_an_edit_moves_the_stamps_of_the_modules_importers_only(toy, tmp_path):
    set_times(toy, 1_700_000_000 * 10**9)
    d = tmp_path / "stamps"
    # heavy, read as a script: without the command line, which imports small.
    uses, other = code_stamp(d, ["robrepro.uses_helper"], str(toy)), code_stamp(d, ["robrepro.heavy"], str(toy), cli=False)
    other_before = os.stat(other)
    # small.py (imported by the command line) now imports heavy: its importers run heavy's code too.
    (toy / "small.py").write_text("from .heavy import go\n")
    new_parse()
    assert code_stamp(d, ["robrepro.uses_helper"], str(toy)) == uses
    # Not older than the edit (a changed set of files may make it as new as the parse).
    assert os.stat(uses).st_mtime_ns >= os.stat(toy / "small.py").st_mtime_ns
    assert "robrepro/deep/leaf.py" in stamped_files(uses)
    assert code_stamp(d, ["robrepro.heavy"], str(toy), cli=False) == other
    assert os.stat(other).st_mtime_ns == other_before.st_mtime_ns


def test_a_file_that_leaves_the_set_with_nothing_newer_makes_the_stamp_new(toy, tmp_path):
    """A registry's plug-in deleted: no file of the set got newer, yet its jobs ran that code."""
    set_times(toy, 1_700_000_000 * 10**9)
    stamp = code_stamp(tmp_path / "stamps", ["robrepro.uses_build"], str(toy))
    (toy / "plug" / "b.py").unlink()
    new_parse()
    before = time.time_ns()
    code_stamp(tmp_path / "stamps", ["robrepro.uses_build"], str(toy))
    assert "robrepro/plug/b.py" not in stamped_files(stamp)
    assert os.stat(stamp).st_mtime_ns >= before - 10**9  # file systems may round the time down


def workflow_entries():
    """Every set of entries the rules stamp (workflow/rules/common.smk, report.smk): each job kind's
    module, training, each table and figure builder's module, the report (run as a script)."""
    from robrepro.config import load
    from robrepro.plan import Plan

    plan = Plan(load(Path(__file__).resolve().parents[1] / "config" / "config.yaml"))
    sets = {(k.module, True) for k in evaluations.registry().values()}
    sets |= {(t.builder.partition(":")[0], True) for t in plan.targets.values()}
    return sorted(sets | {("robrepro.engine", True), ("robrepro.report", False)})


def test_editing_any_module_moves_exactly_the_stamps_of_the_jobs_that_import_it(tmp_path):
    """For every module of the package and every job kind, training, builder and the report: the
    stamps that an edited module makes newer and different (what Snakemake re-runs) are those whose
    jobs import it, by the import graph. A module touched but not changed moves none: Snakemake
    compares an input's checksum too, and re-ran nothing for it when the modules were the inputs."""
    root = tmp_path / "robrepro"
    shutil.copytree(Path(evaluations.__file__).parents[1], root, ignore=shutil.ignore_patterns("__pycache__"))
    t0 = 1_700_000_000 * 10**9
    for f in root.rglob("*.py"):
        os.utime(f, ns=(t0, t0))
    entries = workflow_entries()
    assert len({e for e, _ in entries if e.startswith("robrepro.evaluations.")}) >= 3
    d = tmp_path / "stamps"

    def stamps():
        return {(e, cli): code_stamp(d, [e], str(root), cli=cli) for e, cli in entries}

    def times():
        return {k: os.stat(p).st_mtime_ns for k, p in paths.items()}

    paths = stamps()
    assert len(set(paths.values())) == len(entries)
    graph = ImportGraph(root)
    for i, name in enumerate(sorted(graph.modules), start=1):
        f, before = graph.modules[name].path, times()
        t = t0 + 2 * i * 10**9
        os.utime(f, ns=(t, t))
        assert stamps() == paths and times() == before, name
        f.write_text(f.read_text() + "\n# edited\n")
        os.utime(f, ns=(t + 10**9, t + 10**9))
        assert stamps() == paths
        moved = {k for k, p in paths.items() if os.stat(p).st_mtime_ns != before[k]}
        importers = {(e, cli) for e, cli in entries if name in job_modules([e], str(root), cli=cli)}
        assert moved == importers, name
        assert all(os.stat(paths[k]).st_mtime_ns == t + 10**9 for k in moved), name
    assert len(graph.modules) > 40


SNAKEFILE = """
from robrepro.codestamp import code_stamp


def stamp(entry):
    return code_stamp(".snakemake/stamps", [entry], "pkg/robrepro")


rule all:
    input:
        "a.out",
        "b.out",


rule a:
    input:
        stamp("robrepro.heavy"),
    output:
        "a.out",
    shell:
        "touch {output}"


rule b:
    input:
        stamp("robrepro.uses_helper"),
    output:
        "b.out",
    shell:
        "touch {output}"
"""


def test_snakemake_reruns_by_the_stamps_exactly_what_a_change_affects(toy, tmp_path):
    """A workflow whose jobs declare stamps, in a fresh clone (files just written, no stamps): once
    run, a second parse has nothing to do, nor one after the stamps are lost; editing a module re-runs
    the job that imports it, not the other; touching it without a change re-runs nothing."""
    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(SNAKEFILE)
    shutil.move(toy, wd / "pkg" / "robrepro")
    env = {**os.environ, "PYTHONPATH": str(Path(evaluations.__file__).parents[2])}  # this package

    def snakemake(*args):
        res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=wd, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        out = res.stdout + res.stderr
        return set() if "Nothing to be done" in out else {r for r in ("a", "b") if f"rule {r}:" in out}

    assert snakemake() == {"a", "b"}
    stamps = {p: os.stat(p) for p in (wd / ".snakemake" / "stamps").iterdir()}
    assert snakemake("-n") == set()
    assert {p: (s.st_ino, s.st_mtime_ns) for p, s in stamps.items()} == {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in stamps}
    shutil.rmtree(wd / ".snakemake" / "stamps")
    assert snakemake("-n") == set()
    leaf = wd / "pkg" / "robrepro" / "deep" / "leaf.py"
    os.utime(leaf)
    assert snakemake("-n") == set()
    leaf.write_text("x = 2\n")
    assert snakemake("-n") == {"a"}
