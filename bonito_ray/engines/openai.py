"""The ``openai`` engine: requests to an OpenAI-compatible completions server inside the cluster.

The model runs elsewhere (``vllm serve``, Ray Serve LLM, any server of the OpenAI completions
API); this stage is a pool of Ray actors that send each request row to ``ENDPOINT/completions``,
``max_concurrent_requests`` at a time per actor, and map the answers to the engine row contract.

- **Retries**: HTTP 408, 429 and 5xx, timeouts and connection errors are retried up to
  ``max_retries`` times, waiting ``retry_backoff_s`` doubled at each retry (jittered, at most
  ``MAX_BACKOFF_S``; longer if a 429 says ``Retry-After``). Any other answer (a 400 for a prompt
  longer than the window, say) is final. A request that ends without a completion becomes that
  row's ``engine_error``, counted against ``--max-error-rate``; it never fails the job by itself.
- **Rate**: ``requests_per_second`` (job-wide, shared equally by the replicas) spaces out the
  attempts, retries included.
- **The key** is read from the environment variable ``api_key_env`` names, once, on the driver,
  and handed to the actors in memory (never in a runtime env, which Ray logs); it is sent as a
  Bearer header and is nowhere in the configuration, the manifest or the logs. No key: no header.
  What a server says is shown only through ``server_text``, which blanks the key and any
  ``Bearer`` token out of it (a server may echo the request's headers in an error).
- **Where requests go**: the endpoint must be inside the cluster (``bonito_ray.engines.endpoint``)
  unless the user opts in, and never a cloud metadata service; the client follows no redirects
  and ignores proxy variables and ``.netrc``, so passages go to that host and nowhere else.
- **Deadlines**: ``request_timeout_s`` bounds each attempt whole, connection to the answer's last
  byte (``bonito_ray.engines.http_client``): a server that answers a byte at a time times out.
- **A malformed answer** (no completion, a ``usage`` that is not token counts) is that row's
  ``engine_error``, as a refusal is.
- **The window**: the server's own window for the model, where ``/models`` reports one (vLLM's
  ``max_model_len``, Ray Serve LLM's ``max_request_context_length``), else the model's config.
  ``/models`` is asked at planning, which also checks that the server is reachable, accepts the
  key and serves the model.

Not ``ray.data.llm``'s ``HttpRequestProcessorConfig`` (Ray 2.60): it does not retry HTTP 500, has no
timeout setting of its own (aiohttp's 5-minute default), sends a batch's requests one after another,
and when a request's retries are spent it raises, failing the job, with the request's payload (the
passage) in the message.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import pyarrow as pa

from bonito_ray import console
from bonito_ray.cluster import PRIVACY_ENV
from bonito_ray.config import ConfigError, GenerateConfig
from bonito_ray.engines import LENGTH, STOP, EngineStage
from bonito_ray.engines.endpoint import EndpointURLError, endpoint_host, host_scope
from bonito_ray.generators import GENERATORS
from bonito_ray.schema import is_utf8

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0  # the longest wait before a retry, Retry-After included
MODELS_TIMEOUT_S = 30.0  # for the planning-time question to /models
RETRYABLE = frozenset({408, 429})  # and every 5xx
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BEARER = re.compile(r"\bbearer\s+[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)  # RFC 6750's token
_MESSAGE_CHARS = 300  # of a server's error message kept in engine_error


class Secret:
    """A value that prints as ``***``: an API key travelling to the actors without showing in a repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __reduce__(self):
        return (Secret, (self._value,))


class Generation(NamedTuple):
    """One request's outcome, in the engine row contract's columns."""

    generated_text: str
    num_input_tokens: int | None
    num_generated_tokens: int | None
    finish_reason: str | None
    engine_error: str | None


def refused(why: str) -> Generation:
    return Generation("", None, 0, None, why)


def check_openai_config(config: GenerateConfig) -> None:
    """The openai settings, checked when the configuration is built: one ConfigError naming the problem."""
    if config.engine != "openai" and config.endpoint is None:
        return
    if config.engine != "openai":
        raise ConfigError(f"endpoint is for --engine openai (the engine is {config.engine}); "
                          "add --engine openai, or drop --endpoint")
    if GENERATORS[config.generator].chat_template:
        # The server applies the chat template of the model it serves; this engine sends plain text to
        # /completions, and a template rendered here from --model could differ from the server's.
        raise ConfigError(f"--generator {config.generator} does not run on --engine openai: the server owns the "
                          "model's chat template, and this engine sends plain completions; use --engine vllm or hf")
    if not config.endpoint or not isinstance(config.endpoint, str):
        raise ConfigError("--engine openai needs --endpoint, the server's base URL (e.g. http://10.0.0.5:8000/v1)")
    try:
        host = endpoint_host(config.endpoint)
    except EndpointURLError as err:
        raise ConfigError(str(err)) from None
    if not isinstance(config.api_key_env, str) or not ENV_NAME.fullmatch(config.api_key_env):
        # The value is not echoed: a user may have put the key itself here.
        raise ConfigError("api_key_env must be the name of an environment variable (letters, digits, _) that "
                          "holds the API key, not the key itself")
    if config.served_model_name is not None and (not isinstance(config.served_model_name, str)
                                                 or not config.served_model_name):
        raise ConfigError("served_model_name must be a non-empty string")
    scope = host_scope(host)
    if scope.private:
        return
    if scope.metadata:
        raise ConfigError(f"endpoint {config.endpoint} is not a model server ({scope.why}); the API key would be "
                          "sent to it. Use the server's cluster address")
    if not config.allow_external_endpoint:
        raise ConfigError(f"endpoint {config.endpoint} is not inside the cluster ({scope.why}); passages would "
                          "leave it. Use the server's cluster address, or pass --allow-external-endpoint if "
                          "this corpus may go there")
    logger.warning("endpoint %s is outside the cluster (%s): passages are sent there (--allow-external-endpoint)",
                   config.endpoint, scope.why)


def served_model(config: GenerateConfig) -> str:
    """The model name sent in each request: ``served_model_name``, else ``model``."""
    return config.served_model_name or config.model


def api_key(config: GenerateConfig) -> Secret | None:
    """The API key from the environment variable ``api_key_env`` (None when it is unset or empty)."""
    value = os.environ.get(config.api_key_env)
    return Secret(value) if value else None


def auth_headers(key: Secret | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.reveal()}"} if key is not None else {}


def openai_window(config: GenerateConfig, tokenizer: Any) -> int | None:
    """The server's window for the served model where it reports one, else the model's own."""
    from bonito_ray.engines.window import model_window

    served = served_window(config)
    return served if served is not None else model_window(config, tokenizer)


def served_window(config: GenerateConfig) -> int | None:
    """The server's window for the served model, as ``/models`` reports it (None if it does not).

    Asked at planning: a server that cannot be reached, refuses the key or does not serve the
    model fails the job here, in one line, before any cluster work.
    """
    import requests

    from bonito_ray.engines.http_client import fetch, new_session

    url = config.endpoint.rstrip("/") + "/models"
    key = api_key(config)
    timeout = min(config.request_timeout_s, MODELS_TIMEOUT_S)
    try:
        with new_session() as session:
            response = fetch(session, "GET", url, timeout, headers=auth_headers(key))
    except requests.Timeout:
        raise ConfigError(f"cannot reach endpoint {url}: no answer within {timeout:g} s") from None
    except requests.RequestException as err:
        raise ConfigError(f"cannot reach endpoint {url}: {failure_reason(err, key)}") from None
    if response.status_code in (401, 403):
        hint = f"no API key was sent: set {config.api_key_env}" if key is None else \
            f"check the key in {config.api_key_env}"
        raise ConfigError(f"endpoint {url} refused the request (HTTP {response.status_code}); {hint}")
    if response.status_code != 200:
        raise ConfigError(f"endpoint {url} answered HTTP {response.status_code} ({server_message(response, key)}); "
                          "is the base URL right? It usually ends in /v1")
    try:
        models = [m for m in response.json()["data"] if isinstance(m, dict)]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"endpoint {url} did not answer with a model list") from None
    name = served_model(config)
    entry = next((m for m in models if m.get("id") == name), None)
    if entry is None:
        served = server_text(", ".join(repr(m.get("id")) for m in models) or "none", key)
        raise ConfigError(f"endpoint {config.endpoint} does not serve model {name!r} (it serves {served}); "
                          "pass --served-model-name (default: --model, which stays the tokenizer)")
    window = reported_window(entry)
    if window is not None:
        logger.info("openai engine: %s serves %s with a window of %d tokens", config.endpoint, name, window)
    return window


def reported_window(card: dict[str, Any]) -> int | None:
    """The window a ``/models`` entry states: vLLM's ``max_model_len``, or Ray Serve LLM's
    ``metadata.max_request_context_length``; None when it states none."""
    metadata = card.get("metadata")
    for window in (card.get("max_model_len"),
                   metadata.get("max_request_context_length") if isinstance(metadata, dict) else None):
        if isinstance(window, int) and not isinstance(window, bool) and window > 0:
            return window
    return None


def failure_reason(err: Exception, key: Secret | None) -> str:
    """The operating system's words for a failed connection ("Connection refused", "Name or service not
    known"), else the exception's first line, cut: urllib3 wraps them in a paragraph (which may quote
    what the server sent)."""
    text = str(err)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return server_text(found.group(1).strip() if found else
                       f"{type(err).__name__}: {text.splitlines()[0][:200] if text else ''}", key)


def server_text(text: str, key: Secret | None) -> str:
    """Server-sent text made fit to print, log or write: without the API key or any ``Bearer`` token (a
    server may echo the request's headers), on one line, in valid UTF-8, cut. The one way server text
    reaches a message."""
    text = BEARER.sub("Bearer ***", text)  # first: the whole token, were the key only a part of it
    if key is not None:
        text = text.replace(key.reveal(), "***")
    text = " ".join(text.split()).encode("utf-8", "replace").decode("utf-8")
    return text[:_MESSAGE_CHARS] + ("..." if len(text) > _MESSAGE_CHARS else "")


def build_openai_stage(config: GenerateConfig, progress=None) -> EngineStage:
    """An engine stage sending requests to ``config.endpoint`` from ``num_replicas`` actors, which report to
    ``progress`` (``bonito_ray.progress.reporting``)."""
    per_replica_rate = config.requests_per_second / config.num_replicas if config.requests_per_second else None
    kwargs = {"endpoint": config.endpoint, "model": served_model(config), "api_key": api_key(config),
              "max_concurrent_requests": config.max_concurrent_requests, "requests_per_second": per_replica_rate,
              "max_retries": config.max_retries, "retry_backoff_s": config.retry_backoff_s,
              "request_timeout_s": config.request_timeout_s}
    if kwargs["api_key"] is None:
        logger.info("openai engine: %s is not set; requests carry no API key", config.api_key_env)

    def stage(requests):
        from ray.data import ActorPoolStrategy

        from bonito_ray.progress import reporting

        return requests.map_batches(
            reporting(CompletionsClient, progress),
            fn_constructor_kwargs=kwargs,
            batch_size=config.batch_size,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(size=config.num_replicas),
            num_cpus=config.cpus_per_replica,
            runtime_env={"env_vars": {**PRIVACY_ENV, **console.worker_env(config.verbose)}},
        )

    return stage


class RateLimiter:
    """Spaces out calls to ``wait`` at least ``1 / per_second`` seconds apart (None: no limit); thread-safe."""

    def __init__(self, per_second: float | None, clock=time.monotonic, sleep=time.sleep) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.clock, self.sleep = clock, sleep
        self.lock = threading.Lock()
        self.next = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = self.clock()
            start = max(now, self.next)
            self.next = start + self.interval
        if start > now:
            self.sleep(start - now)


def backoff_s(retry: int, base_s: float, retry_after_s: float | None = None, rng: random.Random | None = None) -> float:
    """The wait before retry number ``retry`` (1, 2, ...): ``base_s * 2**(retry - 1)``, jittered down by up to
    half (clients throttled together spread out), no less than a ``Retry-After``, at most MAX_BACKOFF_S."""
    doubled = base_s * 2 ** (retry - 1) * (0.5 + 0.5 * (rng or random).random())
    return min(MAX_BACKOFF_S, max(doubled, retry_after_s or 0.0))


def is_retryable(status: int) -> bool:
    return status in RETRYABLE or 500 <= status <= 599


def retry_after_s(response) -> float | None:
    """A response's ``Retry-After`` in seconds (the delay form; an HTTP date is ignored)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def server_message(response, key: Secret | None) -> str:
    """The error message of a server's answer (OpenAI's and vLLM's JSON shapes, else the text), as server_text."""
    try:
        body = response.json()
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else (body.get("message") or error)
    except (ValueError, AttributeError):
        message = None
    return server_text(str(message or response.text or response.reason or ""), key)


def request_body(model: str, prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    """The ``/completions`` body of one request row: its prompt and sampling parameters, one completion
    (no ``top_k`` field when the row sets no top-k cut: a server that knows only OpenAI's fields takes it)."""
    body = {"model": model, "prompt": prompt, "max_tokens": params["max_tokens"],
            "temperature": params["temperature"], "top_p": params["top_p"], "n": 1}
    if params.get("seed") is not None:
        body["seed"] = params["seed"]
    if params.get("top_k"):  # set by self-guide; vLLM's server (and Ray Serve LLM's) take it beside OpenAI's fields
        body["top_k"] = params["top_k"]
    return body


def parse_completion(answer: Any, key: Secret | None = None) -> Generation:
    """A ``/completions`` answer (parsed JSON) as the contract's columns; a malformed one is refused."""
    try:
        choice = answer["choices"][0]
        text = choice["text"]
        finish = choice.get("finish_reason")
        usage = answer.get("usage") or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        return refused("the server's answer holds no completion")
    if not isinstance(text, str):
        return refused("the server's answer holds no completion")
    if not is_utf8(text):
        return refused("the server's completion is not valid Unicode (a lone surrogate)")
    if finish not in (STOP, LENGTH):
        return refused(f"the server ended the completion with finish_reason {server_text(repr(finish), key)}")
    if not isinstance(usage, dict):
        return refused(f"the server's answer has a usage that is not token counts: {server_text(repr(usage), key)}")
    counts = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not all(n is None or is_token_count(n) for n in counts):
        return refused(f"the server's answer has token counts that are not counts: {server_text(repr(counts), key)}")
    return Generation(text, *counts, finish, None)


def is_token_count(value: Any) -> bool:
    """An int that fits the contract's int64 column (not a bool, a float or a numeral in a string)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63


class CompletionsClient:
    """A Ray Data actor that sends request rows to ``ENDPOINT/completions`` and maps batches to generations."""

    def __init__(self, endpoint: str, model: str, api_key: Secret | None, max_concurrent_requests: int,
                 requests_per_second: float | None, max_retries: int, retry_backoff_s: float,
                 request_timeout_s: float) -> None:
        self.url = endpoint.rstrip("/") + "/completions"
        self.model = model
        self.key = api_key
        self.headers = auth_headers(api_key)
        self.max_retries, self.retry_backoff_s, self.timeout = max_retries, retry_backoff_s, request_timeout_s
        self.limiter = RateLimiter(requests_per_second)
        self.pool = ThreadPoolExecutor(max_workers=max_concurrent_requests, thread_name_prefix="completions")
        self.local = threading.local()  # one session (connection pool) per thread
        self.retried: Counter[str] = Counter()  # retries of the current batch, by cause, for one log line
        self.retried_lock = threading.Lock()
        logger.info("openai engine: %d requests in flight to %s (model %s)", max_concurrent_requests, self.url, model)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.select(["prompt", "sampling_params"]).to_pylist()
        self.retried.clear()
        outcomes = list(self.pool.map(lambda row: self.complete(row["prompt"], row["sampling_params"]), rows))
        if self.retried:
            logger.info("openai engine: retried %s", ", ".join(f"{k}: {v}" for k, v in sorted(self.retried.items())))
        for name, kind in zip(Generation._fields, (pa.string(), pa.int64(), pa.int64(), pa.string(), pa.string())):
            batch = batch.append_column(name, pa.array([getattr(o, name) for o in outcomes], kind))
        return batch

    def complete(self, prompt: str, params: dict[str, Any]) -> Generation:
        """One request, retried as the module doc says; never raises for what the server or network does."""
        import requests

        from bonito_ray.engines.http_client import fetch

        body = request_body(self.model, prompt, params)
        failure, wait_at_least = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self.retried_lock:
                    self.retried[failure.split(":")[0]] += 1
                time.sleep(backoff_s(attempt, self.retry_backoff_s, wait_at_least))
            self.limiter.wait()
            try:
                response = fetch(self._session(), "POST", self.url, self.timeout, json=body, headers=self.headers)
            except requests.Timeout:
                failure, wait_at_least = f"timeout: no answer within {self.timeout:g} s", None
                continue
            except requests.RequestException as err:
                failure, wait_at_least = f"connection error: {failure_reason(err, self.key)}", None
                continue
            if response.status_code == 200:
                try:
                    return parse_completion(response.json(), self.key)
                except ValueError:
                    return refused("the server's answer is not JSON")
            failure = f"HTTP {response.status_code}: {server_message(response, self.key)}"
            if not is_retryable(response.status_code):
                return refused(failure)
            wait_at_least = retry_after_s(response)
        return refused(f"{failure} (gave up after {self.max_retries + 1} attempts)")

    def _session(self):
        from bonito_ray.engines.http_client import new_session

        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = new_session()
        return session
