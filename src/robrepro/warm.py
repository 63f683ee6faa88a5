"""A warm job server for local runs: train and evaluate jobs forked from a process that has torch
and the package imported already, instead of each job importing them (1.5-2 s of a median smoke job).

Client (``python -m robrepro train|evaluate ...``, see ``__main__``): when ``ROBREPRO_WARM`` names a
Unix socket that accepts, the command, its working directory, its whole environment and its fds
0/1/2 go to the server; the client waits and exits with the job's status, forwarding the signals a
job reacts to. Anything else (variable unset, no server, a stale socket, a refusal) runs the job in
the client's own process exactly as before. This side imports nothing heavy: it runs before every job.

Server (``python -m robrepro.warm serve --socket PATH --parent-fd N``, started by the workflow's
``onstart`` hook, workflow/rules/warm.smk): binds first, then imports what the jobs import without
running a torch op (no intra-op thread pool, no CUDA: a fork would inherit them broken), then accepts
and forks, one child per job. It exits when the fd ``--parent-fd`` reads EOF (the workflow closed
its end, or died), or on SIGTERM/SIGINT, and removes its socket.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys

ENV_VAR = "ROBREPRO_WARM"
OPT_OUT = "ROBREPRO_NO_WARM"
# The commands that import torch: the only ones where a fork saves anything.
COMMANDS = ("train", "evaluate")
# Signals a job may react to (training checkpoints on SIGTERM/SIGUSR1), forwarded by the client.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_HEADER = struct.Struct("!I")
# True in a forked worker: the job's provenance says so (its benchmark file measured the client).
_IN_WORKER = False


def in_worker() -> bool:
    return _IN_WORKER


def _package_dir() -> str:
    return os.path.dirname(os.path.realpath(__file__))


# --- client -----------------------------------------------------------------------------------


def _connect(path: str) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:  # no server, a stale socket, a path too long: run cold
        s.close()
        return None
    return s


def _lines(sock: socket.socket):
    """Newline-terminated ASCII messages from ``sock`` until EOF."""
    buf = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except InterruptedError:
            continue
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode("ascii", "replace")


def delegate(argv: list[str]) -> None:
    """Run ``argv`` in the warm server if there is one, and exit with its status; return otherwise."""
    path = os.environ.get(ENV_VAR)
    if not path or os.environ.get(OPT_OUT) == "1" or not argv or argv[0] not in COMMANDS:
        return
    sock = _connect(path)
    if sock is None:
        return
    import json

    # A process started with SIGINT ignored (a background job of a non-interactive shell) keeps
    # ignoring it; the job runs as this process would have, so its worker ignores it too.
    sigint_ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    request = json.dumps(
        {"argv": argv, "argv0": sys.argv[0], "cwd": os.getcwd(), "env": dict(os.environ), "package": _package_dir(), "sigint_ignored": sigint_ignored}
    ).encode()
    try:
        socket.send_fds(sock, [_HEADER.pack(len(request))], [0, 1, 2])
        sock.sendall(request)
    except OSError:
        sock.close()
        return
    forwarded: list[int] = []

    def forward(signum, _frame):
        forwarded.append(signum)
        try:
            sock.sendall(f"sig {signum}\n".encode())
        except OSError:
            pass

    before = {s: signal.getsignal(s) for s in FORWARDED}
    for s in FORWARDED:
        if not (s == signal.SIGINT and sigint_ignored):
            signal.signal(s, forward)
    started = False
    for line in _lines(sock):
        word, _, value = line.partition(" ")
        if word == "cold" and not started:
            sock.close()
            for s, handler in before.items():
                signal.signal(s, handler)
            return  # the server cannot run it (another package): run it here, as it was
        if word == "pid":
            started = True
        elif word == "status":
            sys.exit(int(value))
        elif word == "signal":
            # The job died of a signal: so does the client, as the job's own process would have.
            sig = int(value)
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            sys.exit(128 + sig)
    print("[warm] the job's worker closed the connection without an exit status", file=sys.stderr)
    sys.exit(1)


# --- worker (a forked child of the server) ----------------------------------------------------


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    import json

    head, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
    if len(head) != _HEADER.size or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise OSError("malformed request")
    (n,) = _HEADER.unpack(head)
    body = b""
    while len(body) < n:
        chunk = conn.recv(n - len(body))
        if not chunk:
            raise OSError("truncated request")
        body += chunk
    return json.loads(body), fds


def _send(conn: socket.socket, msg: str) -> None:
    try:
        conn.sendall(msg.encode())
    except OSError:
        pass


def _watch(conn: socket.socket, done) -> None:
    """In the worker: raise each forwarded signal in the job; when the client goes away (killed),
    terminate the job as its own process would have been."""
    for line in _lines(conn):
        word, _, value = line.partition(" ")
        if word == "sig":
            os.kill(os.getpid(), int(value))
    if not done.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


def _run_job(conn: socket.socket, request: dict, fds: list[int], listener: socket.socket, defaults: dict) -> None:
    """The forked child: become the job's process, run it, report its status. Never returns."""
    import random
    import threading

    global _IN_WORKER
    status, died_of = 1, None
    try:
        _IN_WORKER = True
        listener.close()
        for s, handler in defaults.items():
            signal.signal(s, handler)
        # SIGINT as in the client's own process: Python's KeyboardInterrupt, or ignored as it was
        # there (the server's own disposition says nothing of the client's).
        signal.signal(signal.SIGINT, signal.SIG_IGN if request.get("sigint_ignored") else signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        # Python's stdio objects wrap fds 0/1/2: now the job's files (a log redirect, a terminal).
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["argv0"], *request["argv"]]
        # A fork copies the server's RNG state: every worker would draw the same numbers.
        random.seed(os.urandom(32))
        done = threading.Event()
        threading.Thread(target=_watch, args=(conn, done), daemon=True).start()
        _send(conn, f"pid {os.getpid()}\n")
        try:
            from . import cli

            cli.main(request["argv"])
            status = 0
        except SystemExit as stop:
            code = stop.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
            if not isinstance(code, int) and code is not None:
                print(code, file=sys.stderr)
        except KeyboardInterrupt:
            import traceback

            traceback.print_exc()
            died_of = signal.SIGINT  # as Python does in its own process: the client dies of it too
        except BaseException:
            import traceback

            traceback.print_exc()
            status = 1
        from .results import process_usage

        use = process_usage()
        print(f"[warm] ran in a forked worker: cpu {use['cpu_s']:.2f} s, peak rss {use['max_rss_mb']:.0f} MB", file=sys.stderr)
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        done.set()
        if died_of:
            signal.signal(died_of, signal.SIG_DFL)
            os.kill(os.getpid(), died_of)  # the server reports it (_reap)
        _send(conn, f"status {status}\n")
    finally:
        os._exit(status)


# --- server -----------------------------------------------------------------------------------


def preload() -> None:
    """Import what train and evaluate jobs import, running no torch op (fork safety)."""
    import robrepro

    robrepro.import_torchvision()
    from . import attacks, cli, engine, models, objectives, results  # noqa: F401
    from .evaluations import registry

    for kind in registry().values():
        kind.fn  # noqa: B018  (the property imports the kind's module)


def serve(path: str, parent_fd: int, *, log=None) -> None:
    import selectors

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    stop = []

    def on_stop(signum, _frame):
        stop.append(signum)

    changed = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)}
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    # Children reaped as they exit; each one reports its own status, and the server reports those
    # that died of a signal (below).
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        preload()
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        sel.register(parent_fd, selectors.EVENT_READ)
        running: dict[int, socket.socket] = {}
        while not stop:
            for key, _ in sel.select(timeout=0.2):
                if key.fileobj == parent_fd:
                    if not os.read(parent_fd, 1):
                        stop.append(0)  # the workflow is gone, or stopped us
                    continue
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                try:
                    request, fds = _recv_request(conn)
                except (OSError, ValueError):
                    conn.close()
                    continue
                if request.get("package") != _package_dir():
                    _send(conn, "cold\n")  # another checkout's package: this server would run other code
                    conn.close()
                    for fd in fds:
                        os.close(fd)
                    continue
                pid = os.fork()
                if pid == 0:
                    sel.close()
                    os.close(parent_fd)
                    _run_job(conn, request, fds, listener, changed)
                for fd in fds:
                    os.close(fd)
                running[pid] = conn
            _reap(running)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        listener.close()


def _reap(running: dict[int, socket.socket]) -> None:
    """Collect finished workers; tell the client of one killed by a signal (it could not say)."""
    for pid in list(running):
        try:
            done, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, st = pid, 0
        if done == 0:
            continue
        conn = running.pop(pid)
        if os.WIFSIGNALED(st):
            _send(conn, f"signal {os.WTERMSIG(st)}\n")
        conn.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m robrepro.warm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the server until the parent fd reads EOF")
    s.add_argument("--socket", required=True)
    s.add_argument("--parent-fd", type=int, required=True)
    a = p.parse_args(argv)
    serve(a.socket, a.parent_fd)


if __name__ == "__main__":
    # Run as the package's module, not as __main__: the worker's flag (in_worker) must be the one
    # that robrepro.results reads.
    from robrepro.warm import main as _main

    _main()
