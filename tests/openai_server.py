"""A small OpenAI-compatible completions server for tests, on 127.0.0.1, in a thread of the test process.

It speaks ``GET /v1/models`` (with vLLM's ``max_model_len``) and ``POST /v1/completions``, and
generates with a real model through transformers, greedily, one request at a time. As vLLM does,
it refuses a prompt that fills the window (HTTP 400, vLLM's error body) and cuts a generation at
the window. It can be told to fail the first attempt of every ``fault_every``-th distinct request
(in arrival order), cycling through ``faults``: ``429`` (throttled, with ``Retry-After: 0``),
``500`` (a server error), ``drop`` (the connection closed without an answer) and ``slow`` (the
answer comes after ``SLOW_S`` seconds, or never if the server stops first). With ``api_key``
set, both routes want it as a Bearer header (HTTP 401 otherwise), as ``vllm serve --api-key``
does. It records every attempt: what was asked, what was answered, and the Authorization header.

Hostile faults, for either route (``faults`` for completions, ``models_fault`` for ``/v1/models``):
``drip`` (the headers, then the body a byte every ``DRIP_S`` seconds), ``drip-headers`` (the
status line, then the headers a byte at a time), ``echo-auth`` (HTTP 500 whose message quotes
the request's Authorization header, as every error message does with ``echo_auth``), and the 200 answers of ``MALFORMED`` (a ``usage`` that is not
token counts, no choices, a text that is not a string, JSON that is not JSON...).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

SLOW_S = 6.0  # well past a normal answer's time, even on a loaded machine
DRIP_S, DRIP_BYTES = 0.25, 40  # a drip lasts 10 s: far past the tests' timeouts, yet ends if nothing cuts it
_COMPLETION = {"object": "text_completion", "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}]}
MALFORMED = {  # 200 answers that are no completion
    "usage-not-counts": json.dumps(_COMPLETION | {"usage": "lots"}).encode(),
    "counts-not-ints": json.dumps(_COMPLETION | {"usage": {"prompt_tokens": "12", "completion_tokens": 3}}).encode(),
    "count-too-big": json.dumps(_COMPLETION | {"usage": {"prompt_tokens": 2 ** 70, "completion_tokens": 1}}).encode(),
    "no-choices": json.dumps({"object": "text_completion", "usage": {"prompt_tokens": 1}}).encode(),
    "text-not-string": json.dumps({"choices": [{"text": ["ok"], "finish_reason": "stop"}]}).encode(),
    "lone-surrogate": b'{"choices": [{"text": "ok \\ud800", "finish_reason": "stop"}]}',
    "not-an-object": b'["choices"]',
    "too-deep": b"[" * 100_000 + b"]" * 100_000,
}


@dataclass
class Attempt:
    prompt: str
    status: int | str  # an HTTP status, or the fault's name
    authorization: str | None
    text: str | None = None  # the completion answered
    top_k: int | None = None  # the top-k cut asked for (greedy decoding makes it moot; recorded to check it is sent)


@dataclass
class CompletionsServer:
    model_path: str
    served_name: str = "bonito-demo"
    max_model_len: int | None = None  # reported on /v1/models and enforced; None: the model's window, unreported
    fault_every: int = 0
    faults: tuple[str, ...] = ("429", "500", "drop")
    models_fault: str | None = None  # a hostile fault for every GET /v1/models
    echo_auth: bool = False  # every error message quotes the request's Authorization header, as a careless server's
    api_key: str | None = None
    attempts: list[Attempt] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path).eval()
        self.window = self.max_model_len or self.model.config.max_position_embeddings
        self.seen: Counter[str] = Counter()  # attempts per prompt
        self.lock = threading.Lock()
        self.generate_lock = threading.Lock()
        self.stopped = threading.Event()
        self.complete({"model": self.served_name, "prompt": "warm up", "max_tokens": 1, "temperature": 0})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def __enter__(self) -> CompletionsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def models(self) -> dict:
        card = {"id": self.served_name, "object": "model", "owned_by": "tests"}
        if self.max_model_len is not None:
            card["max_model_len"] = self.max_model_len
        return {"object": "list", "data": [card]}

    def fault_for(self, prompt: str) -> str | None:
        """The fault this attempt gets: only a first attempt, of every fault_every-th distinct prompt."""
        with self.lock:
            self.seen[prompt] += 1
            distinct = len(self.seen)
            if not self.fault_every or self.seen[prompt] > 1 or distinct % self.fault_every:
                return None
            return self.faults[(distinct // self.fault_every - 1) % len(self.faults)]

    def complete(self, body: dict) -> tuple[int, dict]:
        """(status, JSON answer) of a completions request, as vLLM would give them (greedy only)."""
        if body.get("model") != self.served_name:
            return 404, _error(f"The model `{body.get('model')}` does not exist.", "NotFoundError", 404)
        if body.get("temperature") != 0:
            return 400, _error("this test server decodes greedily only (temperature 0)", "BadRequestError", 400)
        ids = self.tokenizer(body["prompt"])["input_ids"]
        if len(ids) >= self.window:
            return 400, _error(f"This model's maximum context length is {self.window} tokens. However, your prompt "
                               f"contains {len(ids)} input tokens.", "BadRequestError", 400)
        max_new = min(body["max_tokens"], self.window - len(ids))
        eos = self.tokenizer.eos_token_id
        with self.generate_lock, torch.inference_mode():
            out = self.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                      max_new_tokens=max_new, do_sample=False, eos_token_id=eos,
                                      pad_token_id=self.tokenizer.pad_token_id)
        tokens = out[0, len(ids):].tolist()
        finish = "stop" if tokens and tokens[-1] == eos else "length"
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return 200, {"object": "text_completion", "model": self.served_name,
                     "choices": [{"index": 0, "text": text, "finish_reason": finish}],
                     "usage": {"prompt_tokens": len(ids), "completion_tokens": len(tokens),
                               "total_tokens": len(ids) + len(tokens)}}


def _error(message: str, kind: str, code: int) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _handler(server: CompletionsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def log_message(self, *args) -> None:  # no request lines on the test's stderr
            pass

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/") != "/v1/models":
                return self._answer(404, _error("not found", "NotFoundError", 404))
            if not self._hostile(server.models_fault):
                self._answer(200, server.models())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/completions":
                return self._answer(404, _error("not found", "NotFoundError", 404))
            record = Attempt(body["prompt"], 401, self.headers.get("Authorization"), top_k=body.get("top_k"))
            with server.lock:
                server.attempts.append(record)
            if not self._authorised():
                return
            fault = record.status = server.fault_for(body["prompt"])
            if fault == "drop":
                self.close_connection = True
                return
            if fault == "429":
                return self._answer(429, _error("too many requests", "RateLimitError", 429), {"Retry-After": "0"})
            if fault == "500":
                return self._answer(500, _error("internal error", "InternalServerError", 500))
            if fault == "slow" and server.stopped.wait(SLOW_S):
                self.close_connection = True
                return
            if self._hostile(fault):
                return
            status, answer = server.complete(body)
            if fault is None:
                record.status = status
                record.text = answer["choices"][0]["text"] if status == 200 else None
            self._answer(status, answer)

        def _hostile(self, fault: str | None) -> bool:
            """Answers as a hostile fault says; False if ``fault`` is none of them."""
            if fault == "echo-auth":
                self._answer(500, _error(f"bad key {self.headers.get('Authorization')}", "AuthError", 500))
            elif fault in MALFORMED:
                self._send(200, MALFORMED[fault])
            elif fault in ("drip", "drip-headers"):
                self.close_connection = True
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {DRIP_BYTES}\r\n"
                        "\r\n").encode()
                dripped = head[16:] + b" " * DRIP_BYTES if fault == "drip-headers" else b" " * DRIP_BYTES
                try:
                    self.wfile.write(head[:16] if fault == "drip-headers" else head)
                    self.wfile.flush()
                    for byte in dripped:
                        if server.stopped.wait(DRIP_S):
                            return True
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:  # the client gave up and closed
                    pass
            else:
                return False
            return True

        def _authorised(self) -> bool:
            if server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}":
                return True
            self._answer(401, _error("Unauthorized", "AuthenticationError", 401))
            return False

        def _answer(self, status: int, answer: dict, headers: dict | None = None) -> None:
            if server.echo_auth and "error" in answer:
                answer["error"]["message"] += f" (Authorization: {self.headers.get('Authorization')})"
            self._send(status, json.dumps(answer).encode(), headers)

        def _send(self, status: int, data: bytes, headers: dict | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # a client that timed out and left
                self.close_connection = True

    return Handler
