"""The openai engine against hostile endpoints and servers: URLs that mean one host to one parser and
another to the HTTP client, cloud metadata services, servers that echo the key, drip their answers or
answer 200 with something that is no completion (tests/openai_server.py's hostile faults, over HTTP)."""

from __future__ import annotations

import random
import time

import pyarrow as pa
import pytest

from bonito_ray import cli
from bonito_ray.cli import main
from bonito_ray.config import DEMO_MODEL, ConfigError, GenerateConfig
from bonito_ray.engines import endpoint, http_client
from bonito_ray.engines.endpoint import EndpointURLError, endpoint_host, host_scope
from bonito_ray.engines.openai import CompletionsClient, Secret, served_window
from bonito_ray.prompt import build_prompt
from tests.corpus_files import write_jsonl
from tests.openai_server import DRIP_BYTES, DRIP_S, MALFORMED, CompletionsServer

KEY_ENV = "BONITO_RAY_TEST_OPENAI_KEY"
DRIP_TOTAL_S = DRIP_S * DRIP_BYTES  # what a drip takes when nothing cuts it: the deadline must cut it well before
GREEDY = {"max_tokens": 4, "temperature": 0.0, "top_p": 1.0, "seed": 1}
OPENAI = {"input": "in", "output": "out", "engine": "openai"}


def requests_for(count: int) -> pa.Table:
    return pa.Table.from_pylist([{"prompt": build_prompt(f"Passage number {i} is short.", "ynqa"),
                                  "sampling_params": GREEDY} for i in range(count)])


def client(server: CompletionsServer, key: str | None = None, retries: int = 0, timeout_s: float = 30,
           concurrency: int = 1) -> CompletionsClient:
    return CompletionsClient(server.url, server.served_name, Secret(key) if key else None, concurrency, None, retries,
                             0.01, timeout_s)


def new_secret() -> str:
    return f"sk-test-{random.Random().getrandbits(64):016x}"


# --- the host the client connects to --------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://8.8.8.8\\.svc/v1",  # requests: host 8.8.8.8, path /%5C.svc/v1
    "http://8.8.8.8\\@vllm.svc/v1", "http://8.8.8.8\t.svc/v1", "http://8.8.8.8 .svc/v1", "http://vllm.svc/v1 ",
    "http://bücher.svc/v1",
])
def test_urls_with_characters_outside_rfc3986_are_refused(url):
    with pytest.raises(EndpointURLError, match="not a URL character"):
        endpoint_host(url)
    with pytest.raises(ConfigError, match="not a URL character"):
        GenerateConfig(**OPENAI, endpoint=url)


def test_the_host_checked_is_the_one_the_client_reads():
    # requests unquotes %38 to 8 before connecting: the host is 8.8.8.8, not a name that does not resolve.
    assert endpoint_host("http://%38.8.8.8:8000/v1") == "8.8.8.8"
    with pytest.raises(ConfigError, match="8.8.8.8 is a public address"):
        GenerateConfig(**OPENAI, endpoint="http://%38.8.8.8:8000/v1")
    with pytest.raises(EndpointURLError, match="no usable host"):
        endpoint_host("http://vllm%2fx.svc/v1")  # %2f stays quoted: a name no resolver knows
    assert endpoint_host("http://[fe80::1%25eth0]:8000/v1") == "[fe80::1%eth0]"
    assert endpoint_host("http://VLLM.default.SVC:8000/v1") == "vllm.default.svc"


# --- cloud metadata services ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest", "http://[::ffff:169.254.169.254]/v1", "http://[fd00:ec2::254]/v1",
    "http://169.254.170.2/v1", "http://metadata.google.internal/computeMetadata/v1",
    "http://METADATA.google.internal./v1", "http://instance-data.ec2.internal/v1", "http://metadata/v1",
    "http://2852039166/v1",  # 169.254.169.254 as one number: the resolver reads it so, without a lookup
])
def test_metadata_services_are_refused_even_when_external_endpoints_are_allowed(url):
    for allowed in (False, True):
        with pytest.raises(ConfigError, match="not a model server.*cloud metadata service"):
            GenerateConfig(**OPENAI, endpoint=url, allow_external_endpoint=allowed)


def test_a_lookup_that_hangs_is_given_up_at_its_deadline(monkeypatch):
    monkeypatch.setattr(endpoint.socket, "getaddrinfo", lambda *a, **k: time.sleep(3) or [])
    started = time.monotonic()
    assert endpoint.resolve("vllm.corp.example", timeout_s=0.2) == []
    assert time.monotonic() - started < 2


def test_a_name_that_resolves_to_a_metadata_service_is_refused():
    scope = host_scope("imds.example.com", resolver=lambda name: ["10.0.0.7", "169.254.169.254"])
    assert scope.metadata and not scope.private and "resolves to 169.254.169.254" in scope.why
    assert not host_scope("vllm.example.com", resolver=lambda name: ["10.0.0.7"]).metadata
    assert host_scope("169.254.10.1").private  # the rest of link-local stays inside the cluster


def test_the_client_does_not_talk_to_a_metadata_address_whatever_the_name_resolved_to(monkeypatch):
    # 127.0.0.1 stands in for 169.254.169.254: the check is on the peer the connection reached.
    monkeypatch.setattr(endpoint, "METADATA_ADDRESSES", endpoint.METADATA_ADDRESSES | {endpoint._address("127.0.0.1")})
    with CompletionsServer(DEMO_MODEL) as server:
        out = client(server, key=new_secret())(requests_for(1))
        assert server.attempts == []  # nothing was sent: no passage, no key
    assert "127.0.0.1 is a cloud metadata service" in out["engine_error"][0].as_py()


# --- the key a server echoes ----------------------------------------------------------------------------------

def test_a_key_a_server_echoes_in_an_error_is_blanked_out_of_engine_errors():
    secret = new_secret()
    with CompletionsServer(DEMO_MODEL, fault_every=1, faults=("echo-auth",)) as server:
        out = client(server, key=secret)(requests_for(2))
        assert all(a.authorization == f"Bearer {secret}" for a in server.attempts)  # the server had it to echo
    assert out["engine_error"].to_pylist() == ["HTTP 500: bad key Bearer *** (gave up after 1 attempts)"] * 2


def test_a_key_a_server_echoes_at_planning_is_not_printed(tmp_path, monkeypatch, capsys):
    secret = new_secret()
    monkeypatch.setenv(KEY_ENV, secret)
    monkeypatch.setattr(cli.cluster, "connect", lambda *a, **k: pytest.fail("the CLI connected to Ray"))
    write_jsonl(tmp_path / "in.jsonl", ["A passage."])
    with CompletionsServer(DEMO_MODEL, models_fault="echo-auth") as server:
        capsys.readouterr()  # the model's loading, not the CLI's
        code = main(["generate", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"),
                     "--engine", "openai", "--endpoint", server.url, "--served-model-name", server.served_name,
                     "--api-key-env", KEY_ENV])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "answered HTTP 500 (bad key Bearer ***)" in err[0]
    assert secret not in err[0] and secret[3:] not in err[0]


# --- a server that drips ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["drip", "drip-headers"])
def test_a_dripping_answer_times_out_at_the_deadline_and_is_retried(fault):
    with CompletionsServer(DEMO_MODEL, fault_every=1, faults=(fault,)) as server:
        started = time.monotonic()
        out = client(server, retries=1, timeout_s=1)(requests_for(1))
        took = time.monotonic() - started
        assert [a.status for a in server.attempts] == [fault, 200]
    assert out["engine_error"].to_pylist() == [None] and out["num_generated_tokens"].to_pylist() == [4]
    assert took < DRIP_TOTAL_S / 2, f"took {took:.1f} s: the drip was not cut at the 1 s deadline"


def test_a_request_that_drips_to_its_last_attempt_is_an_engine_error():
    with CompletionsServer(DEMO_MODEL, fault_every=1, faults=("drip",)) as server:
        started = time.monotonic()
        out = client(server, timeout_s=1, concurrency=2)(requests_for(2))
        took = time.monotonic() - started
    assert out["engine_error"].to_pylist() == ["timeout: no answer within 1 s (gave up after 1 attempts)"] * 2
    assert took < DRIP_TOTAL_S / 2


@pytest.mark.parametrize("fault", ["drip", "drip-headers"])
def test_a_models_list_that_drips_fails_planning_at_the_deadline(fault, tmp_path):
    with CompletionsServer(DEMO_MODEL, models_fault=fault) as server:
        config = GenerateConfig(**OPENAI, endpoint=server.url, served_model_name=server.served_name,
                                request_timeout_s=1)
        started = time.monotonic()
        with pytest.raises(ConfigError, match=r"/v1/models: no answer within 1 s$"):
            served_window(config)
        assert time.monotonic() - started < DRIP_TOTAL_S / 2


def test_an_answer_past_the_size_limit_is_cut_off(monkeypatch):
    monkeypatch.setattr(http_client, "MAX_ANSWER_BYTES", 64)  # a completion's answer is longer
    with CompletionsServer(DEMO_MODEL) as server:
        out = client(server)(requests_for(1))
    assert out["engine_error"].to_pylist() == [
        "connection error: RequestException: an answer longer than 64 bytes (gave up after 1 attempts)"]


# --- a 200 that is no completion ---------------------------------------------------------------------------------

def test_a_malformed_answer_is_that_rows_engine_error_not_the_batchs_failure():
    faults = tuple(MALFORMED)
    with CompletionsServer(DEMO_MODEL, fault_every=2, faults=faults) as server:
        out = client(server)(requests_for(2 * len(faults)))  # every other request: the next malformed answer
        answered = [a.status for a in server.attempts]
    errors = out["engine_error"].to_pylist()
    assert answered[1::2] == list(faults) and answered[0::2] == [200] * len(faults)
    assert errors[0::2] == [None] * len(faults)  # the well-formed answers in the same batch are kept
    assert dict(zip(faults, errors[1::2])) == {
        "usage-not-counts": "the server's answer has a usage that is not token counts: 'lots'",
        "counts-not-ints": "the server's answer has token counts that are not counts: ('12', 3)",
        "count-too-big": f"the server's answer has token counts that are not counts: ({2 ** 70}, 1)",
        "no-choices": "the server's answer holds no completion",
        "text-not-string": "the server's answer holds no completion",
        "lone-surrogate": "the server's completion is not valid Unicode (a lone surrogate)",
        "not-an-object": "the server's answer holds no completion",
        "too-deep": "the server's answer is not JSON",
    }
    assert out["generated_text"].to_pylist()[1::2] == [""] * len(faults)
