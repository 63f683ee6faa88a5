"""Result files with provenance, and atomic writes.

Every result is a JSON document whose ``provenance`` block says what produced it: the config of the
job, its seed, the git commit (and whether the tree was dirty), package versions, the device, wall
time and whether its data were real or synthetic. Files are written to a temporary name in the same
folder, flushed to disk, then renamed over the target: a reader sees either the old file or the
whole new one, never half of it.

A result also records the sha256 of the files it was made from (the model it evaluated or wrote, the
data manifest it read), by path relative to the result's own folder. ``load_result``, which every job
that aggregates results reads them through, refuses a result without the completion marker, one whose
input files have changed since (a swapped ``model.pt``, a result left from an older model; a
removed file is no contradiction), and one
whose rates (accuracies, errors) lie outside [0, 1]; each error names the file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextvars import ContextVar
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class ResultError(ValueError):
    """A result file no aggregation may use (incomplete, foreign, stale or out of range); the message names it."""


_PACKAGES = ("robrepro", "torch", "torchvision", "torchdiffeq", "numpy", "snakemake", "torchattacks", "foolbox", "scipy")


def _new_temp_file(path: Path) -> Path:
    """Create an empty, unique file beside ``path`` with the permissions the umask gives new files.

    Not ``tempfile.mkstemp``: it creates files 0600 whatever the umask, and the rename would carry
    that mode onto the result, so collaborators and a web server could not read any result.
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.
    The file gets the mode the umask gives any new file (0644 under umask 022)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(path)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    # numpy scalars and tensors reach results through metrics; store them as plain numbers.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def git_state(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the checkout this package runs from (None when it is not run from one).

    Without ``repo``, the checkout is the one whose ``src/`` holds this package, and only if git names
    that folder as the top of its work tree: an installed copy (a wheel in a virtual environment kept
    inside some clone, say) must not record the commit of whatever repository happens to enclose it."""
    if repo is None:
        package = Path(__file__).resolve().parent
        if package.parent.name != "src":
            return {"commit": None, "dirty": None}
        repo = package.parent.parent
    repo = Path(repo)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=10).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != repo.resolve():
            return {"commit": None, "dirty": None}
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info(device) -> dict[str, Any]:
    import torch

    info = {
        "device": str(device),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def provenance(*, spec: dict[str, Any], seed: int, device, data_source: str, started: float) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "spec": spec,
        "seed": seed,
        "git": git_state(),
        "packages": package_versions(),
        "device": device_info(device),
        "data_source": data_source,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_time_s": round(time.time() - started, 3),
        "process": process_usage(),
    }


def process_usage() -> dict[str, Any]:
    """CPU seconds and peak memory of the process running the job, so far. A warm job's benchmark
    file measures only its client (robrepro.warm): these are the job's own. In a forked worker the
    CPU time starts at zero; the peak memory counts the pages it shares with the server."""
    import resource

    from .warm import in_worker

    use = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": round(use.ru_utime + use.ru_stime, 3), "max_rss_mb": round(use.ru_maxrss / 1024, 1), "warm": in_worker()}


def warm_usage(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A result's :func:`process_usage` if its job ran in a warm worker (its benchmark file then
    measured only the client), else None."""
    usage = (doc or {}).get("provenance", {}).get("process") or {}
    return usage if usage.get("warm") else None


# --- the files a result was made from ---------------------------------------------------------

# role -> path of the files the running job reads; set by the CLI, which knows them (the library
# code that writes the result does not). One job per process, so one value at a time.
_INPUTS: ContextVar[dict[str, Path] | None] = ContextVar("robrepro_inputs", default=None)
_ROLE = {"model": "model file", "data": "data manifest"}


@contextlib.contextmanager
def reading(**files: str | os.PathLike | None) -> Iterator[None]:
    """Within the block, every result written records the sha256 of ``files`` (role -> path; None
    and missing files are left out), e.g. ``reading(model="…/model.pt", data="…/mnist.json")``."""
    token = _INPUTS.set({role: Path(f) for role, f in files.items() if f})
    try:
        yield
    finally:
        _INPUTS.reset(token)


def sha256(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=1024)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    # Keyed on the file's mtime and size too: a table reads many results of one model, hashed once.
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _input_digests(result: Path) -> dict[str, dict[str, str]]:
    """Path (relative to the result's folder, so the check works from any working directory and
    after the results tree moves) and sha256 of each input file that exists now."""
    out = {}
    for role, f in (_INPUTS.get() or {}).items():
        if f.is_file():
            out[role] = {"path": os.path.relpath(f.resolve(), result.parent.resolve()), "sha256": sha256(f)}
    return out


def write_result(path: str | os.PathLike, kind: str, payload: dict[str, Any], prov: dict[str, Any]) -> dict[str, Any]:
    """Write one result document; ``complete: true`` is what readers check for."""
    inputs = _input_digests(Path(path))
    doc = {"kind": kind, **payload, "provenance": {**prov, "inputs": inputs} if inputs else prov, "complete": True}
    write_json_atomic(path, doc)
    return doc


def _input_errors(path: Path, doc: dict[str, Any]) -> list[str]:
    errs = []
    for role, rec in (doc["provenance"].get("inputs") or {}).items():
        f = Path(os.path.normpath(path.parent / rec["path"]))
        what = _ROLE.get(role, role)
        # A removed file (models deleted to free disk, a copy of the results alone) cannot
        # contradict the result; a different one can.
        if f.is_file() and (now := sha256(f)) != rec["sha256"]:
            errs.append(
                f"{path}: made from the {what} {f} with sha256 {rec['sha256'][:16]}..., but that file now has sha256 {now[:16]}... "
                f"(replaced, or the result is left from an older one); re-run the job that writes {path}"
            )
    return errs


# --- ranges of the values ----------------------------------------------------------------------

# Keys whose numbers are rates, stored as fractions: acc, clean_acc, fgsm_acc@0.1, verified_err
# (and every number under it: {"ibp": 0.3}), std_err, flip_rate, ...
_RATE_KEY = re.compile(r"(^|_)(acc|accuracy|err|error|rate)($|_|@)")


def _range_errors(path: Path, doc: dict[str, Any]) -> list[str]:
    errs: list[str] = []

    def check(v, where: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                check(x, f"{where}.{k}")
        elif isinstance(v, list):
            for i, x in enumerate(v):
                check(x, f"{where}.{i}")
        elif isinstance(v, int | float) and not isinstance(v, bool) and not 0.0 <= v <= 1.0:  # NaN fails it too
            errs.append(f"{path}: {where} = {v} lies outside [0, 1] (rates are stored as fractions)")

    def walk(v, where: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                sub = f"{where}.{k}" if where else str(k)
                check(x, sub) if _RATE_KEY.search(str(k)) else walk(x, sub)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{where}.{i}")

    walk({k: v for k, v in doc.items() if k != "provenance"}, "")
    return errs


def load_result(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read a result, refusing partial or foreign files, changed inputs and out-of-range rates, with
    an error that names the file (and the input file that changed)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultError(f"{path}: not a complete JSON result ({err})") from err
    if not isinstance(doc, dict) or doc.get("complete") is not True or "provenance" not in doc:
        raise ResultError(f"{path}: not a complete result (no completion marker)")
    if kind is not None and doc.get("kind") != kind:
        raise ResultError(f"{path}: expected a {kind!r} result, found {doc.get('kind')!r}")
    errs = _input_errors(path, doc) + _range_errors(path, doc)
    if errs:
        raise ResultError("\n".join(errs))
    return doc
