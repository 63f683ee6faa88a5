"""What a failed job says on the terminal: its log's tail and the command that runs it again.

Every command of the workflow writes its output to its log file, so a failure shows on the terminal
only as Snakemake's "Error in rule ..., log: ...". The rules wrap their command with
:func:`on_failure`: on a non-zero exit the last lines of the log and a ``snakemake`` line that
rebuilds the failed outputs go to stderr (the terminal, for a local run), and the exit status is kept.
Rules that run a Python ``script:`` (the report, the cost model) say the same through :func:`logged_script`.
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO

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


def _tail(log: str | os.PathLike) -> str:
    try:
        with open(log, errors="replace") as f:
            return "".join(f.readlines()[-TAIL:])
    except OSError:
        return ""


@contextmanager
def logged_script(log: str | os.PathLike, outputs: Iterable[str | os.PathLike]) -> Iterator[TextIO]:
    """The body of a ``script:`` rule with stderr in ``log``: on an exception its traceback goes to the
    log, and the terminal gets what :func:`on_failure` prints for a shell rule (the log's tail and the
    command that reruns the outputs); the script then exits with status 1."""
    real = sys.stderr
    with open(log, "w") as f:
        sys.stderr = f
        try:
            yield f
        except Exception:
            traceback.print_exc(file=f)
        else:
            return
        finally:
            sys.stderr = real
    targets = shlex.join(map(str, outputs))
    rerun = os.environ.get(RERUN_VAR, "")
    real.write(f"\nfailed (exit 1); last {TAIL} lines of {log}:\n{_tail(log)}rerun: snakemake {targets} --cores 1 {rerun}\n".replace(" \n", "\n"))
    sys.exit(1)
