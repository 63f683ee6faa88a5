"""The workflow's side of the warm job server (robrepro.warm): start it, tell the jobs, stop it.

The server holds the read end of a pipe whose write end only this (Snakemake's) process has: it
exits at EOF, so closing the write end stops it, and so does Snakemake dying in any way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from .warm import ENV_VAR, OPT_OUT

_server: dict = {}


def spawn(folder: str) -> tuple[subprocess.Popen, int, str]:
    """A server listening in ``folder``: its process, the write end of its parent pipe, its socket."""
    path = os.path.join(folder, "s")
    r, w = os.pipe()  # not inherited by the jobs' shells (non-inheritable by default)
    proc = subprocess.Popen(
        [sys.executable, "-m", "robrepro.warm", "serve", "--socket", path, "--parent-fd", str(r)],
        pass_fds=(r,),
        stdin=subprocess.DEVNULL,
        # Its own session: a Ctrl-C on the terminal reaches the jobs' clients, which forward it.
        start_new_session=True,
    )
    os.close(r)
    return proc, w, path


def start() -> str | None:
    """Start the server and point the jobs at its socket; the socket path, or None (opted out)."""
    if os.environ.get(OPT_OUT) == "1" or _server:
        return None
    folder = tempfile.mkdtemp(prefix="robrepro-warm-")  # 0700: only this user may connect
    proc, w, path = spawn(folder)
    _server.update(proc=proc, pipe=w, folder=folder)
    # A job that starts before the server binds finds no socket and runs cold: nothing waits here.
    os.environ[ENV_VAR] = path
    return path


def stop(timeout: float = 30.0) -> None:
    if not _server:
        return
    os.environ.pop(ENV_VAR, None)
    os.close(_server["pipe"])
    try:
        _server["proc"].wait(timeout)
    except subprocess.TimeoutExpired:
        _server["proc"].kill()
        _server["proc"].wait()
    shutil.rmtree(_server["folder"], ignore_errors=True)
    _server.clear()
