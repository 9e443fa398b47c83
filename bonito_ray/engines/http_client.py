"""HTTP requests to an endpoint: to the host named and nowhere else, each within one deadline.

- **Nowhere else**: the session ignores proxy variables (a proxy would take the passages out of
  the cluster) and ``.netrc``, follows no redirects, and refuses to talk to a cloud metadata
  service (``endpoint.is_metadata_address``) whatever the name resolved to on this node: the
  connected peer is checked before the request (and the key with it) is sent.
- **One deadline**: ``requests``' timeout bounds each read, so a server that sends a byte now
  and then never times out. Here a watchdog shuts the request's socket down when its deadline
  passes (connection, headers and body together), and the request fails as a ``requests.Timeout``.
- **A bounded answer**: at most ``MAX_ANSWER_BYTES``; an answer is a completion or a model list.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from bonito_ray.engines.endpoint import is_metadata_address

MAX_ANSWER_BYTES = 16 << 20
_CHUNK_BYTES = 64 << 10
_current = threading.local()  # the _Deadline of the request this thread is making


class Answer(NamedTuple):
    """A server's whole answer: its status, reason, headers and body."""

    status_code: int
    reason: str
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not (nested too deep included)."""
        try:
            return json.loads(self.content)
        except RecursionError:
            raise ValueError("JSON nested too deep") from None


def new_session() -> requests.Session:
    """A session that sends only what we give it, to the host we name (see the module doc)."""
    session = requests.Session()
    session.trust_env = False
    for prefix in ("http://", "https://"):
        session.mount(prefix, _WatchedAdapter())
    return session


def fetch(session: requests.Session, method: str, url: str, deadline_s: float, **kwargs) -> Answer:
    """One request and its whole answer within ``deadline_s`` seconds; raises what ``requests`` raises
    (``requests.Timeout`` when the deadline passes, whatever the socket's end looked like)."""
    deadline = _Deadline(deadline_s)
    _current.deadline = deadline
    try:
        with session.request(method, url, timeout=deadline_s, stream=True, allow_redirects=False,
                             **kwargs) as response:
            body = bytearray()
            for chunk in response.iter_content(_CHUNK_BYTES):
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise requests.RequestException(f"an answer longer than {MAX_ANSWER_BYTES} bytes")
            if deadline.expired:  # cut short, the headers or body can read as a whole answer, a wrong one
                raise requests.Timeout(f"no answer within {deadline_s:g} s")
            return Answer(response.status_code, response.reason or "", response.headers, bytes(body))
    except requests.RequestException:
        if deadline.expired:
            raise requests.Timeout(f"no answer within {deadline_s:g} s") from None
        raise
    finally:
        deadline.cancel()
        _current.deadline = None


class _Deadline:
    """Shuts down the sockets of one request's connections when its time is up."""

    def __init__(self, seconds: float) -> None:
        self.lock = threading.Lock()
        self.connections: list[HTTPConnection] = []
        self.expired = False
        self.timer = threading.Timer(seconds, self._expire)
        self.timer.daemon = True
        self.timer.start()

    def watch(self, connection: HTTPConnection) -> None:
        with self.lock:
            self.connections.append(connection)
            if self.expired:
                _shut(connection)

    def cancel(self) -> None:
        self.timer.cancel()

    def _expire(self) -> None:
        with self.lock:
            self.expired = True
            for connection in self.connections:
                _shut(connection)


def _shut(connection: HTTPConnection) -> None:
    # shutdown, not close: it wakes a recv blocked in the requesting thread.
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Watched:
    """A urllib3 connection that its request's deadline can shut, and that talks to no metadata service."""

    def request(self, *args, **kwargs):
        self._watch()  # a kept-alive connection, already connected
        return super().request(*args, **kwargs)

    def connect(self) -> None:
        super().connect()
        peer = self.sock.getpeername()[0]
        if is_metadata_address(peer):
            self.sock.close()
            self.sock = None
            raise OSError(errno.EACCES, f"refused: {peer} is a cloud metadata service, not a model server")
        self._watch()  # again, now that there is a socket to shut

    def _watch(self) -> None:
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.watch(self)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
