"""Papers are plug-ins: the spine names no paper, and a new paper is only new files."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

import pytest

from robrepro import papers

SPINE = [
    "src/robrepro/plan.py",
    "src/robrepro/paths.py",
    "src/robrepro/tables_figures.py",
    "src/robrepro/cli.py",
    "src/robrepro/config.py",
    "src/robrepro/registry.py",
    "src/robrepro/results.py",
    "src/robrepro/engine.py",
    "src/robrepro/data.py",
    "src/robrepro/papers/__init__.py",
    "src/robrepro/evaluations/__init__.py",
    "src/robrepro/schemas/config.schema.yaml",
    "workflow/rules/common.smk",
    "workflow/rules/jobs.smk",
    "workflow/rules/targets.smk",
    "src/robrepro/report/__init__.py",
    "src/robrepro/report/__main__.py",
    "src/robrepro/report/collect.py",
    "src/robrepro/report/words.py",
    "src/robrepro/report/html_page.py",
    "src/robrepro/report/markdown_page.py",
    "src/robrepro/schemawalk.py",
    "src/robrepro/verdicts.py",
    "workflow/rules/report.smk",
    "workflow/scripts/report.py",
]


def _mentions(text: str, name: str) -> bool:
    """A paper named as a word of its own or as a prefix (``node_fig1``, ``papers/node.py``, ``"node"``)."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?=[_./\"':\s]|$)", text) is not None


def _code_strings(path: Path) -> list[str]:
    """Identifiers and string constants of a Python module, without comments and docstrings."""
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and ast.get_docstring(node) is not None:
            docs.add(id(node.body[0].value))
    out = []
    for node in ast.walk(tree):
        # Identifiers count when they carry a paper's prefix (``node_runs``); a variable called
        # ``node`` (a tree node) is a word, not the paper.
        if isinstance(node, ast.Name) and "_" in node.id:
            out.append(node.id)
        elif isinstance(node, ast.Attribute) and "_" in node.attr:
            out.append(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            out.append(node.value)
    return out


def _texts(repo_root: Path, rel: str) -> list[str]:
    path = repo_root / rel
    if path.suffix == ".py":
        return _code_strings(path)
    return [line.split("#", 1)[0] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("rel", SPINE)
def test_no_shared_module_names_a_paper(repo_root, rel):
    names = list(papers.registry())
    assert len(names) >= 2
    hits = [(name, t.strip()) for t in _texts(repo_root, rel) for name in names if _mentions(t, name)]
    assert not hits, f"{rel} names a paper: {hits[:5]}"


def test_the_mention_check_can_fail():
    assert _mentions('PLAN.eval_files("node", "fig1")', "node") and _mentions("node_table1", "node") and _mentions("papers/gm.py", "gm")
    assert not _mentions("a login node", "nodes") and not _mentions("sigma", "gm")


TOY = """
from robrepro.papers import Job, Paper, Run, Target, register_paper


@register_paper
class Toy(Paper):
    name = "toy"
    title = "A paper added as files only"

    def runs(self):
        return [Run("tiny", "e1", "mnist", {"name": "cifar_resnet", "depth": 8, "width": 2}, self.cfg["train"], {"dataset": "mnist"})]

    def jobs(self):
        return [Job("attack", "fgsm", "tiny", "mnist", {"attack": {"name": "fgsm"}, "eps": [0.1], "eps_labels": ["0.1"], "batch_size": 8})]

    def targets(self):
        return [Target("toy_table", "table", "Toy table", build, [("tiny", "attack", "fgsm")])]


def build(paths, outputs):
    pass
"""

TOY_SCHEMA = """
type: object
additionalProperties: false
default: {}
description: A toy paper.
properties:
  train: {$ref: "#/$defs/train", default: {epochs: 1}}
"""


def test_a_new_paper_is_new_files_only(tmp_path, monkeypatch, repo_root):
    """A paper module, its schema part and its config file, in a folder the papers package scans:
    the plan gets its runs, jobs and targets with no edit of any shared file."""
    from robrepro import registry
    from robrepro.config import load
    from robrepro.plan import Plan

    (tmp_path / "toy.py").write_text(textwrap.dedent(TOY))
    (tmp_path / "toy.schema.yaml").write_text(TOY_SCHEMA)
    cfg_dir = tmp_path / "config"
    (cfg_dir / "papers").mkdir(parents=True)
    for f in (repo_root / "config/papers").iterdir():
        (cfg_dir / "papers" / f.name).write_text(f.read_text())
    (cfg_dir / "papers/toy.yaml").write_text("toy:\n  train: {epochs: 2}\n")
    monkeypatch.setattr(papers, "__path__", [*papers.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_DONE", set())
    monkeypatch.setattr(papers, "_PAPERS", dict(papers._PAPERS))
    monkeypatch.setattr(
        papers.Paper,
        "schema",
        classmethod(lambda cls: __import__("yaml").safe_load((tmp_path / f"{cls.name}.schema.yaml").read_text()) if cls.name == "toy" else _orig_schema(cls)),
    )
    try:
        plan = Plan(load(repo_root / "config/config.yaml", repo_root / "config/smoke.yaml", config_dir=cfg_dir))
    finally:
        sys.modules.pop("robrepro.papers.toy", None)
    assert plan.train_spec("toy", "tiny")["train"]["epochs"] == 2
    assert plan.job_file("toy", "tiny", "attack", "fgsm") == "results/smoke/toy/eval/tiny/attack/fgsm.json"
    assert plan.targets["toy_table"].outputs["md"] == "results/smoke/toy/tables/toy_table.md"
    assert "results/smoke/toy/tables/toy_table.csv" in plan.all_targets()


_orig_schema = papers.Paper.schema.__func__
