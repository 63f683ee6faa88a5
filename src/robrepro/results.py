"""Result files with provenance, and atomic writes.

Every result is a JSON document whose ``provenance`` block says what produced it: the config of the
job, its seed, the git commit (and whether the tree was dirty), package versions, the device, wall
time and whether its data were real or synthetic. Files are written to a temporary name in the same
folder, flushed to disk, then renamed over the target: a reader sees either the old file or the
whole new one, never half of it. ``load_result`` refuses anything without the completion marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
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
    """Commit and dirtiness of the checkout that holds this package (None outside a git checkout)."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
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
    }


def write_result(path: str | os.PathLike, kind: str, payload: dict[str, Any], prov: dict[str, Any]) -> dict[str, Any]:
    """Write one result document; ``complete: true`` is what readers check for."""
    doc = {"kind": kind, **payload, "provenance": prov, "complete": True}
    write_json_atomic(path, doc)
    return doc


def load_result(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read a result, refusing partial or foreign files with an error that names the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a complete JSON result ({err})") from err
    if not isinstance(doc, dict) or doc.get("complete") is not True or "provenance" not in doc:
        raise ValueError(f"{path}: not a complete result (no completion marker)")
    if kind is not None and doc.get("kind") != kind:
        raise ValueError(f"{path}: expected a {kind!r} result, found {doc.get('kind')!r}")
    return doc
