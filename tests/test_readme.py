"""Every snakemake command of the README works as written: each one is dry-run here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

ROOT_README = "README.md"
# Commands that schedule no jobs run as they are (they change nothing); --report is dry-run without
# writing the report.
AS_IS = ("--unlock", "--lint", "--list-target-rules")


def readme_commands(text: str) -> list[str]:
    """Every command line in the README's bash blocks that runs snakemake (comments stripped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if re.search(r"(^|/|\s)snakemake\s", line + " ") and not line.startswith("#"):
                out.append(line.split("&&")[-1].strip())
    # Commands quoted inline in the text, e.g. `snakemake --profile slurm node_fig1`.
    out += [m for m in re.findall(r"`((?:\.venv/bin/)?snakemake [^`]+)`", text) if m not in out]
    return out


def _commands():
    from pathlib import Path

    return readme_commands((Path(__file__).resolve().parents[1] / ROOT_README).read_text())


def test_the_readme_has_commands_to_check():
    cmds = _commands()
    assert len(cmds) >= 5
    assert any("config/smoke.yaml" in c for c in cmds) and any("--profile slurm" in c for c in cmds)


def test_extraction_keeps_the_target_where_the_user_wrote_it():
    cmds = readme_commands("```bash\nbash envs/setup.sh && .venv/bin/snakemake node_fig1 --cores 2   # one figure\n```\n")
    assert cmds == [".venv/bin/snakemake node_fig1 --cores 2"]


@pytest.mark.parametrize("cmd", _commands())
def test_readme_command_dry_runs(repo_root, cmd):
    argv = [sys.executable, "-m", "snakemake", *shlex.split(cmd)[1:]]
    if "--report" in argv:
        i = argv.index("--report")
        del argv[i : i + 2]
    if not any(flag in argv for flag in AS_IS):
        argv += ["-n", "--quiet", "rules"]
    res = subprocess.run(argv, cwd=repo_root, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{cmd}\n{out[-3000:]}"
    assert "FileNotFoundError" not in out and "MissingRuleException" not in out
