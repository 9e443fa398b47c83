"""Fault injection for tests: a flaky engine stage and an S3 proxy that answers 503 now and then."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from pathlib import Path

import pyarrow as pa

from bonito_ray.engines.echo import echo_generations


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
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that fails every ``every``-th request with 503."""

    def __init__(self, upstream: str, every: int = 4, limit: int = 50) -> None:
        self.upstream, self.every, self.limit = upstream, every, limit
        self.requests = 0
        self.injected = 0
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
                with lock:
                    proxy.requests += 1
                    fail = proxy.requests % proxy.every == 0 and proxy.injected < proxy.limit
                    proxy.injected += fail
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

    def __enter__(self) -> "FaultyS3Proxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
