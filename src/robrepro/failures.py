"""What a failed job says on the terminal: its log's tail and the command that runs it again.

Every command of the workflow writes its output to its log file, so a failure shows on the terminal
only as Snakemake's "Error in rule ..., log: ...". The rules wrap their command with
:func:`on_failure`: on a non-zero exit the last lines of the log and a ``snakemake`` line that
rebuilds the failed outputs go to stderr (the terminal, for a local run), and the exit status is kept.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable

TAIL = 30
# The run's --configfile arguments reach the command through the environment, not its text:
# Snakemake reruns a job whose command text changed, and these change with every invocation.
RERUN_VAR = "ROBREPRO_RERUN_ARGS"


def rerun_args(configfiles: Iterable[str | os.PathLike]) -> str:
    """The ``--configfile`` arguments of the run, relative to the working directory where they can be."""
    files = []
    for f in map(str, configfiles):
        rel = os.path.relpath(f) if os.path.isabs(f) else f
        files.append(f if rel.startswith("..") else rel)
    return shlex.join(["--configfile", *files]) if files else ""


def on_failure(cmd: str) -> str:
    """``cmd`` (a Snakemake shell template that writes ``{log}``) that, when it fails, prints the last
    :data:`TAIL` lines of its log and the command to rerun it, then fails with the same status."""
    tell = (
        f'rc=$?; {{{{ echo; echo "failed (exit $rc); last {TAIL} lines of {{log}}:"; tail -n {TAIL} {{log:q}};'
        f' echo "rerun: snakemake {{output:q}} --cores 1 ${{{{{RERUN_VAR}:-}}}}"; }}}} >&2; exit $rc'
    )
    # Doubled braces: Snakemake formats the whole template; they reach the shell as { ...; } groups.
    return f"{{{{ {cmd}; }}}} || {{{{ {tell}; }}}}"
