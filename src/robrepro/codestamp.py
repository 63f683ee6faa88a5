"""One stamp file per set of code files: what a rule declares as its code input.

A job's code is the package files its entry modules import (:mod:`robrepro.importgraph`), 30 to 40
files. Declared one by one as inputs of every job, they cost Snakemake most of a dry run: it
concretizes and looks up each input of each job (tens of thousands for the paper tier). Jobs of one
kind share one set, so a rule declares instead a single file standing for the set, written when the
workflow is parsed. Snakemake then sees in the stamp what it saw in the files:

- its modification time is the newest among its files': a file newer than a job's outputs makes the
  stamp newer too (the mtime trigger);
- its content is each file's path and a hash of its content: Snakemake re-runs a job whose input is
  newer only if the input's checksum differs from the one it recorded, so a file touched but not
  changed (a branch checked out and back) re-runs nothing, as before, and an edit re-runs exactly the
  jobs whose code imports the file (a new or dropped import edits the importing file);
- it is rewritten only when its content changes, atomically (temp + rename): every parse (each job a
  cluster executor starts parses again, concurrently) leaves an unchanged stamp alone, its
  modification time included;
- a file that joins or leaves the set without any file getting newer (a registry's plug-in module
  deleted, one copied in with its old time) made Snakemake's input trigger re-run the jobs; the
  stamp gets the current time then instead. A stamp written for the first time (a fresh clone, a
  deleted ``.snakemake``) keeps the newest file time: finished results stay finished.

No rule produces a stamp: it is an input that exists once the workflow is parsed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

from .importgraph import PACKAGE, job_files
from .results import atomic_path


@functools.cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by the file's size and time too: a file changed within one process is read again.
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _lines(files: Iterable[str], base: Path) -> tuple[list[str], int]:
    """One line per file: its path (relative to ``base``, so a moved clone reads the same) and the
    hash of its content, tab-separated; and the newest modification time (ns) among the files."""
    out, newest = [], 0
    for f in sorted(set(files)):
        st = os.stat(f)
        out.append(f"{os.path.relpath(f, base)}\t{_digest(f, st.st_size, st.st_mtime_ns)}")
        newest = max(newest, st.st_mtime_ns)
    return out, newest


def write_stamp(path: str | os.PathLike, files: Iterable[str], base: str | os.PathLike) -> str:
    """Make ``path`` stand for ``files`` (see the module's docstring); returns ``path`` as a string."""
    path = Path(path)
    lines, mtime = _lines(files, Path(base))
    text = "".join(line + "\n" for line in lines)
    try:
        old = path.read_text()
    except OSError:
        old = None
    if old == text:
        return str(path)
    # A file joined or left the set: the newest file time may not tell (see the module's docstring).
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
    name = "+".join(e.removeprefix(f"{PACKAGE}.") for e in entries)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    files = job_files(entries, root, cache_file, cli) + extra
    return write_stamp(Path(stamp_dir) / f"{name}-{digest}.txt", files, base)
