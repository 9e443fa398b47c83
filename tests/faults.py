"""Fault injection for tests: a flaky engine stage, engine actors that wait (to be killed, or for a gate), a flaky S3 proxy."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pyarrow as pa

from bonito_ray.engines.echo import echo_generations
from bonito_ray.engines.hf import HFGenerator


class FlakyEcho:
    """The echo engine, except that batches holding a passage marked in ``fail_on`` raise.

    Each marked passage raises ``times`` times in all (counted in files under ``state_dir``, so
    that the count survives the worker process), then behaves.
    """

    def __init__(self, fail_on: str, times: int, state_dir: str) -> None:
        self.fail_on, self.times, self.state = fail_on, times, Path(state_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if any(self.fail_on in c for c in batch["context"].to_pylist()):
            failures = len(list(self.state.glob("failure-*")))
            if failures < self.times:
                (self.state / f"failure-{failures}").touch()
                raise RuntimeError(f"injected engine failure {failures + 1} of {self.times}")
        return echo_generations(batch)


def flaky_stage(fail_on: str, times: int, state_dir: Path):
    """An engine stage (see bonito_ray.engines) built on FlakyEcho."""
    state_dir.mkdir(parents=True, exist_ok=True)

    def stage(requests):
        return requests.map_batches(FlakyEcho(fail_on, times, str(state_dir)), batch_format="pyarrow", batch_size=4)

    return stage


class FaultyS3Proxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that answers 503 SlowDown to chosen GETs.

    ``fail_gets(key, times)`` fails the next ``times`` GETs of one object, so that a fault can
    outlast the S3 client's own retries; ``failed_gets`` and ``served_gets`` count, per object key,
    what the proxy did.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.armed: dict[str, int] = {}  # object key -> GETs still to fail
        self.failed_gets: Counter[str] = Counter()
        self.served_gets: Counter[str] = Counter()
        lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # S3 clients send `Expect: 100-continue` and chunked bodies

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _handle(self) -> None:
                key = urllib.parse.urlsplit(self.path).path.lstrip("/")
                with lock:
                    fail = self.command == "GET" and proxy.armed.get(key, 0) > 0
                    if fail:
                        proxy.armed[key] -= 1
                    if self.command == "GET":
                        (proxy.failed_gets if fail else proxy.served_gets)[key] += 1
                body = self._body()
                if fail:
                    payload = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                               b"<Message>injected fault</Message></Error>")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "transfer-encoding", "expect")}
                if body is not None and "content-type" not in map(str.lower, headers):
                    # else urllib declares a form, and the server parses the object's bytes away as one
                    headers["Content-Type"] = "application/octet-stream"
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command,
                                                 headers=headers)
                try:
                    response = urllib.request.urlopen(request, timeout=30)
                    status, response_headers, payload = response.status, response.headers.items(), response.read()
                except urllib.error.HTTPError as err:
                    status, response_headers, payload = err.code, err.headers.items(), err.read()
                self.send_response(status)
                for key, value in response_headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                upstream_length = dict((k.lower(), v) for k, v in response_headers).get("content-length")
                # A HEAD answer has no body but states the object's size.
                self.send_header("Content-Length", upstream_length if self.command == "HEAD" else str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fail_gets(self, key: str, times: int) -> None:
        """Answer the next ``times`` GETs of ``key`` (``bucket/path``) with 503 SlowDown."""
        self.armed[key] = times

    def __enter__(self) -> "FaultyS3Proxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


class KillableHFGenerator(HFGenerator):
    """The hf engine actor, recording each incarnation; the first blocks on its first batch until it is killed.

    Each incarnation writes ``incarnation-<i>.json`` (pid, Ray actor id, job id) under ``state_dir``,
    so that a test kills exactly this actor, by pid, while its batch is pending. Later incarnations
    behave as the engine does and record the rows they generated for (``rows-*``).
    """

    state_dir = ""  # set by killable_hf_generator
    block_seconds = 120.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        import ray

        state = Path(self.state_dir)
        context = ray.get_runtime_context()
        record = {"pid": os.getpid(), "actor_id": context.get_actor_id(), "job_id": context.get_job_id(),
                  "node_id": context.get_node_id()}
        self.incarnation = 0
        while True:
            try:
                with open(state / f"incarnation-{self.incarnation}.json", "x") as f:
                    json.dump(record, f)
                break
            except FileExistsError:
                self.incarnation += 1

    def __call__(self, batch: pa.Table) -> pa.Table:
        state = Path(self.state_dir)
        if self.incarnation == 0:
            (state / "blocked").touch()
            deadline = time.monotonic() + self.block_seconds
            while time.monotonic() < deadline:
                time.sleep(0.05)
            raise RuntimeError("the first engine actor was never killed")
        out = super().__call__(batch)
        (state / f"rows-{uuid.uuid4().hex}").write_text(str(batch.num_rows))
        return out


def killable_hf_generator(state_dir: Path) -> type:
    """A KillableHFGenerator recording under ``state_dir`` (a class: Ray Data builds the actors)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return type("KillableHFGenerator", (KillableHFGenerator,), {"state_dir": str(state_dir)})


def blocked_victim(state_dir: Path, timeout: float) -> dict | None:
    """The record of the first KillableHFGenerator incarnation once it blocks in its first batch
    (pid, actor id, job id, node id), or None if none blocked within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (state_dir / "blocked").exists():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return json.loads((state_dir / "incarnation-0.json").read_text())


class GatedHFGenerator(HFGenerator):
    """The hf engine actor, except that after ``open_rows`` rows it holds every later batch until the
    file ``gate`` exists (or ``hold_seconds`` pass, when it writes ``gate-timed-out`` beside it and goes on).

    A test opens the gate only once it has seen what the first rows must have produced downstream, so
    it checks that the pipeline streams while the engine still holds work, whatever the machine's speed.
    """

    gate = ""  # set by gated_hf_generator
    open_rows = 0
    hold_seconds = 60.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rows_done = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        gate = Path(self.gate)
        if self.rows_done >= self.open_rows and not gate.exists():
            deadline = time.monotonic() + self.hold_seconds
            while not gate.exists():
                if time.monotonic() > deadline:
                    gate.with_name("gate-timed-out").touch()
                    break
                time.sleep(0.05)
        self.rows_done += batch.num_rows
        return super().__call__(batch)


def gated_hf_generator(gate: Path, open_rows: int) -> type:
    """A GatedHFGenerator holding batches after ``open_rows`` rows until ``gate`` exists (a class: Ray Data builds the actors)."""
    gate.parent.mkdir(parents=True, exist_ok=True)
    return type("GatedHFGenerator", (GatedHFGenerator,), {"gate": str(gate), "open_rows": open_rows})


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every process under it (one that already ended: nothing to do)."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:  # it ended by itself: the caller's own check says why
        return
    for proc in parent.children(recursive=True) + [parent]:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def start_then_kill(command: list[str], ready, timeout: float, waiting_for: str, cwd: Path) -> None:
    """Start ``command`` (a driver) and SIGKILL it, with what it started, as soon as ``ready()``; fails if it
    ends first or ``timeout`` seconds pass without ``waiting_for``."""
    first = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert first.poll() is None, "the first run ended before it could be killed"
            assert time.monotonic() < deadline, f"no {waiting_for} appeared"
            time.sleep(0.2)
    finally:
        kill_tree(first.pid)
        first.wait()
