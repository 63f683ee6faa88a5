"""One stamp file per set of code files: what a rule declares as its code input.

A job's code is the package files its entry modules import (:mod:`robrepro.importgraph`), 30 to 40
files. Declared one by one as inputs of every job, they cost Snakemake most of a dry run: it
concretizes and looks up each input of each job (tens of thousands for the paper tier). Jobs of one
kind share one set, so a rule declares instead a single file standing for the set, written when the
workflow is parsed:

- it lists the files with their size and modification time, and is rewritten only when that list
  changes: every parse (each job a cluster executor starts parses again, concurrently) leaves an
  unchanged stamp alone, its modification time included, and a rewrite is atomic (temp + rename);
- its modification time is the newest among its files': Snakemake's mtime trigger then re-runs
  exactly the jobs it re-ran when the files themselves were inputs: a touched or edited module
  re-runs the jobs whose code imports it, and a new or dropped import edits the importing file;
- a file that joins or leaves the set without any file getting newer (a registry's plug-in module
  deleted, one copied in with its old time) made Snakemake's input trigger re-run the jobs; the
  stamp gets the current time then instead. A stamp written for the first time (a fresh clone, a
  deleted ``.snakemake``) keeps the newest file time: finished results stay finished.

No rule produces a stamp: it is an input that exists once the workflow is parsed.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

from .importgraph import job_files
from .results import atomic_path


def _lines(files: Iterable[str], base: Path) -> list[str]:
    """One line per file: its path (relative to ``base``, so a moved clone reads the same), size and
    modification time in nanoseconds, tab-separated."""
    out = []
    for f in sorted(set(files)):
        st = os.stat(f)
        rel = os.path.relpath(f, base)
        out.append(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}")
    return out


def write_stamp(path: str | os.PathLike, files: Iterable[str], base: str | os.PathLike) -> str:
    """Make ``path`` stand for ``files`` (see the module's docstring); returns ``path`` as a string."""
    path = Path(path)
    lines = _lines(files, Path(base))
    text = "".join(line + "\n" for line in lines)
    try:
        old = path.read_text()
    except OSError:
        old = None
    if old == text:
        return str(path)
    mtime = max(int(line.rsplit("\t", 1)[1]) for line in lines)
    if old is not None and {line.split("\t")[0] for line in old.splitlines()} != {line.split("\t")[0] for line in lines}:
        mtime = max(mtime, time.time_ns())
    with atomic_path(path) as tmp:
        tmp.write_text(text)
        # Set on the temporary file: the stamp appears with its final time at once.
        os.utime(tmp, ns=(mtime, mtime))
    return str(path)


def code_stamp(
    stamp_dir: str | os.PathLike,
    entries: Iterable[str],
    root: str,
    cache_file: str | None = None,
    extra: Iterable[str] = (),
    cli: bool = True,
) -> str:
    """The stamp of the code a job entering through ``entries`` runs (:func:`~robrepro.importgraph.job_files`,
    from the package folder ``root``), plus the ``extra`` files its builder reads (published numbers,
    schemas). Named after the entries, with a hash of the whole set's definition: two sets never
    share a stamp."""
    entries, extra = sorted(set(entries)), sorted(set(map(str, extra)))
    base = Path(root).parent
    ident = "\n".join([*entries, f"cli={cli}", *(os.path.relpath(f, base) for f in extra)])
    name = "+".join(e.removeprefix("robrepro.") for e in entries)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    files = job_files(entries, root, cache_file, cli) + extra
    return write_stamp(Path(stamp_dir) / f"{name}-{digest}.txt", files, base)
