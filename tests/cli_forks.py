"""Command-line runs that end before any cluster work, each in a process of its own forked from one interpreter
that has imported ``bonito_ray.cli`` once: a fresh interpreter's imports (several seconds on a busy machine)
are most of such a run's time, and the lifecycle tests make many of them.

Each run is a real process: ``bonito_ray.cli.main`` with the run's arguments, environment and working folder,
its stdout and stderr its own, its exit code what ``python -m bonito_ray.cli`` exits with (an exception that
escapes ``main`` is printed with its traceback and exits 1, as the interpreter does; a crash point's
``os._exit`` ends it as it ends the command). The forking interpreter only imports and forks: no thread,
Ray or file work of its own is copied into a run.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SERVER = r"""
import atexit, json, os, sys, traceback

from bonito_ray import cli
import bonito_ray.pipeline  # generate's own imports (Ray Data among them), which the command makes on its way

print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            sys.argv = [cli.__file__, *request["argv"]]
            code = cli.main(request["argv"])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if not isinstance(stop.code, (int, type(None))):
                print(stop.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                atexit._run_exitfuncs()  # what the interpreter runs at its exit (logging's flush among them)
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
"""

_server: subprocess.Popen | None = None


def _start() -> subprocess.Popen:
    global _server
    if _server is None or _server.poll() is not None:
        log = tempfile.TemporaryFile()
        _server = subprocess.Popen([sys.executable, "-c", _SERVER], cwd=ROOT, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=log, bufsize=0)
        _server.log, _server.pending = log, b""
        atexit.register(_stop, _server)
        if _read(_server, time.monotonic() + 600).get("ready") is not True:
            raise RuntimeError("the CLI fork server did not start")
    return _server


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    server.stdin.close()  # its loop ends
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def _read(server: subprocess.Popen, deadline: float) -> dict:
    """The server's next line, by ``deadline``; an empty dict past it. Read unbuffered: a second line that came
    with the first waits in ``server.pending``, where select would not see it."""
    while b"\n" not in server.pending:
        ready, _, _ = select.select([server.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return {}
        chunk = os.read(server.stdout.fileno(), 65536)
        if not chunk:
            server.log.seek(0)
            raise RuntimeError(f"the CLI fork server ended: {server.log.read().decode()[-3000:]}")
        server.pending += chunk
    line, server.pending = server.pending.split(b"\n", 1)
    return json.loads(line)


def run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """``bonito-ray ARGV`` with environment ``env``, in the repository's root, as ``subprocess.run`` with
    ``capture_output=True, text=True`` would give it; a run past ``timeout`` seconds is killed and raises
    ``subprocess.TimeoutExpired``."""
    global _server
    server = _start()
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        try:
            request = memoryview(json.dumps({"argv": argv, "env": env, "cwd": str(ROOT), "stdout": str(out),
                                             "stderr": str(err)}).encode() + b"\n")
            while request:  # unbuffered: a write may take part of it
                request = request[server.stdin.write(request):]
            deadline = time.monotonic() + timeout
            pid = _read(server, deadline + 60)["pid"]
            done = _read(server, deadline)
            if not done:
                os.kill(pid, signal.SIGKILL)
                _read(server, time.monotonic() + 60)
                raise subprocess.TimeoutExpired(["bonito-ray", *argv], timeout, _text(out), _text(err))
        except BaseException:
            server.kill()  # its next answer could be this run's: the next run gets a new server
            _server = None
            raise
        return subprocess.CompletedProcess(["bonito-ray", *argv], done["returncode"], _text(out), _text(err))


def _text(path: Path) -> str:
    """What a run wrote to ``path``; nothing when it was killed before it opened it."""
    return path.read_text() if path.exists() else ""
