"""The composed configuration, kept between parses of the workflow.

Composing and validating the configuration (:func:`robrepro.config.compose`) checks every model,
objective and attack setting against the components' own code, which imports torch: seconds of
CPU that Snakemake would pay on every parse (every dry run; every job on a cluster, which parses
the workflow again). The result is a pure function of the user's configuration, the configuration
folder and the package's files, so it is kept under a key that hashes all three: any change to any
of them composes and validates again, before any job starts, exactly as without the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).parent
# The package's code and schemas, and the configuration files: everything compose() reads.
_READ = ("*.py", "*.yaml")
# Configurations kept (the most recently used): tiers, profiles and overrides a user switches between.
KEEP = 32


def _files(folder: Path) -> list[Path]:
    return sorted(f for pattern in _READ for f in folder.rglob(pattern) if "__pycache__" not in f.parts)


def key(user: dict[str, Any], config_dir: str | Path) -> str:
    """Hash of what composing reads: the user's configuration, every file of the configuration
    folder and of the package (content, not times: a fresh clone keeps its key), and the Python."""
    h = hashlib.sha256()
    h.update(json.dumps(user, sort_keys=True, default=str).encode())
    h.update(sys.version.encode())
    for base in (Path(config_dir), PACKAGE_DIR):
        for f in _files(base):
            h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def compose_cached(user: dict[str, Any], config_dir: str | Path, cache_dir: str | Path | None) -> dict[str, Any]:
    """:func:`robrepro.config.compose`, or its result for the same inputs from ``cache_dir``
    (no cache: ``None``). Only valid configurations are kept; an invalid one raises every time."""
    path = Path(cache_dir) / f"{key(user, config_dir)}.json" if cache_dir else None
    if path is not None and path.exists():
        try:
            composed = json.loads(path.read_text())
            os.utime(path)  # recently used: kept by _prune
            return composed
        except (OSError, ValueError):
            pass  # a damaged file: compose again
    from .config import compose

    # Through JSON on a miss as on a hit, keys in their written order: the rules' params (a table's
    # notes built from a dict, say) must read the same on the parse that composed as on later ones,
    # or the targets would re-run on the second parse.
    text = json.dumps(compose(user, config_dir))
    composed = json.loads(text)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            _prune(path.parent)
        except OSError:
            pass  # a read-only folder costs time, nothing else
    return composed


def _prune(folder: Path) -> None:
    kept = sorted(folder.glob("*.json"), key=lambda f: f.stat().st_mtime_ns, reverse=True)
    for f in kept[KEEP:]:
        f.unlink(missing_ok=True)
