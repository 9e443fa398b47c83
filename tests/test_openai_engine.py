"""The openai engine: an OpenAI-compatible completions server (tests/openai_server.py, on 127.0.0.1,
generating with the demo model through transformers) driven by the request client and by a whole job."""

from __future__ import annotations

import json
import random
import shlex
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pds
import pytest

from bonito_ray.cli import build_parser, config_overrides, main
from bonito_ray.config import DEMO_MODEL, ConfigError, GenerateConfig, load_config
from bonito_ray.engines.endpoint import EndpointURLError, endpoint_host, host_scope
from bonito_ray.engines.openai import (MAX_BACKOFF_S, CompletionsClient, RateLimiter, Secret, backoff_s,
                                       reported_window)
from bonito_ray.passages import cached_tokenizer, passage_token_budget
from bonito_ray.pipeline import generate, settle_passage_tokens
from bonito_ray.prompt import Task, build_prompt, parse_generation
from bonito_ray.schema import GENERATION_REJECTS_DIR
from tests.corpus_files import write_jsonl
from tests.openai_server import SLOW_S, CompletionsServer

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "BONITO_RAY_TEST_OPENAI_KEY"
GREEDY = {"max_tokens": 64, "temperature": 0.0, "top_p": 1.0, "seed": 1}


def short_documents(count: int) -> list[str]:
    """Documents of the sample corpus that fit the demo model's window whole."""
    texts = [json.loads(line)["text"] for line in (ROOT / "jobs/examples/corpus.jsonl").read_text().splitlines()]
    return [t for t in texts if len(t) < 1200][:count]


def openai_config(server: CompletionsServer, tmp_path: Path, **values) -> GenerateConfig:
    return GenerateConfig(**{"input": str(tmp_path / "in.jsonl"), "output": str(tmp_path / "out"), "engine": "openai",
                             "endpoint": server.url, "served_model_name": server.served_name, "temperature": 0.0,
                             **values})


# --- where the endpoint may be -------------------------------------------------------------------------------

NAMES = {  # what the fake resolver says; a name missing here does not resolve
    "vllm": ["10.96.0.12"], "gpu-box.corp.example": ["192.168.4.20", "fd00::20"],
    "api.example.com": ["93.184.216.34"], "split.example.com": ["10.0.0.9", "93.184.216.34"],
}


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.8.9.10", "::1", "[::1]", "10.0.0.5", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.10.1", "fe80::1", "fe80::1%eth0", "fd12:3456::1", "fc00::1", "::ffff:10.0.0.1", "0.0.0.0",
    "localhost", "LOCALHOST", "vllm.localhost", "vllm.default.svc", "vllm.default.svc.cluster.local",
    "vllm.default.svc.cluster.local.", "ip-10-0-0-5.ec2.internal", "gpu-box.local", "vllm", "gpu-box.corp.example",
])
def test_inside_the_cluster(host):
    assert host_scope(host, resolver=lambda name: NAMES.get(name, [])).private


@pytest.mark.parametrize(("host", "why"), [
    ("8.8.8.8", "public address"), ("172.32.0.1", "public address"), ("172.15.255.255", "public address"),
    ("192.169.0.1", "public address"), ("100.64.0.1", "public address"), ("11.0.0.1", "public address"),
    ("2001:4860::8888", "public address"), ("::ffff:8.8.8.8", "public address"),
    ("api.example.com", "resolves to public address 93.184.216.34"),
    ("split.example.com", "resolves to public address 93.184.216.34"),  # one public address is enough
    ("nowhere.example.com", "does not resolve"), ("svc.example.com", "does not resolve"),
    ("localhost.example.com", "does not resolve"), ("internal.evil.example", "does not resolve"),
    ("vllm.svc.evil.example", "does not resolve"),
])
def test_outside_the_cluster(host, why):
    scope = host_scope(host, resolver=lambda name: NAMES.get(name, []))
    assert not scope.private and why in scope.why


@pytest.mark.parametrize(("url", "message"), [
    ("10.0.0.5:8000/v1", "http:// or https:// base URL"),
    ("ftp://10.0.0.5/v1", "http:// or https:// base URL"),
    ("http://user:sk-hunter2@10.0.0.5:8000/v1", "has credentials in it"),
    ("http://10.0.0.5:8000/v1?api_key=sk-hunter2", "query or fragment"),
    ("http://10.0.0.5:eighty/v1", "invalid port"),
])
def test_endpoint_urls_that_are_refused_do_not_echo_secrets(url, message):
    with pytest.raises(EndpointURLError, match=message) as refused:
        endpoint_host(url)
    assert "hunter2" not in str(refused.value)


def test_config_refuses_a_public_endpoint_unless_opted_in(tmp_path):
    values = {"input": "in", "output": "out", "engine": "openai"}
    with pytest.raises(ConfigError, match="needs --endpoint"):
        GenerateConfig(**values)
    with pytest.raises(ConfigError, match=r"8\.8\.8\.8 is a public address.*--allow-external-endpoint"):
        GenerateConfig(**values, endpoint="http://8.8.8.8:8000/v1")
    assert GenerateConfig(**values, endpoint="http://8.8.8.8:8000/v1", allow_external_endpoint=True)
    assert GenerateConfig(**values, endpoint="http://vllm.default.svc.cluster.local:8000/v1")
    with pytest.raises(ConfigError, match="is for --engine openai"):
        GenerateConfig(input="in", output="out", endpoint="http://10.0.0.5:8000/v1")  # engine hf: a forgotten flag
    with pytest.raises(ConfigError, match="api_key_env must be the name") as refused:
        GenerateConfig(**values, endpoint="http://10.0.0.5/v1", api_key_env="sk-hunter2")
    assert "hunter2" not in str(refused.value)
    for name, value in (("max_retries", -1), ("max_concurrent_requests", 0), ("request_timeout_s", 0),
                        ("requests_per_second", 0)):
        with pytest.raises(ConfigError, match=name):
            GenerateConfig(**values, endpoint="http://10.0.0.5/v1", **{name: value})


def test_cli_flags_and_what_the_manifest_records():
    args = build_parser().parse_args([
        "generate", "--input", "i", "--output", "o", "--engine", "openai", "--endpoint", "http://10.0.0.5:8000/v1",
        "--served-model-name", "bonito", "--api-key-env", "MY_KEY", "--max-concurrent-requests", "32",
        "--requests-per-second", "50", "--max-retries", "2", "--retry-backoff-s", "0.5", "--request-timeout-s", "60",
        "--allow-external-endpoint"])
    config = load_config(None, config_overrides(args))
    assert (config.endpoint, config.served_model_name, config.api_key_env, config.max_concurrent_requests,
            config.requests_per_second, config.max_retries, config.retry_backoff_s, config.request_timeout_s,
            config.allow_external_endpoint) == ("http://10.0.0.5:8000/v1", "bonito", "MY_KEY", 32, 50.0, 2, 0.5,
                                                60.0, True)
    # The command reproduces the job; the identity holds what decides the generations, not where they come from.
    assert load_config(None, config_overrides(build_parser().parse_args(shlex.split(config.command())[1:]))) == config
    assert config.identity()["served_model_name"] == "bonito" and "endpoint" not in config.identity()
    assert "served_model_name" not in GenerateConfig(input="i", output="o").identity()  # older datasets' identity


def test_cli_refuses_a_public_endpoint_in_one_line_before_any_cluster_work(tmp_path, capsys, monkeypatch):
    from bonito_ray import cli

    monkeypatch.setattr(cli.cluster, "connect", lambda *a, **k: pytest.fail("the CLI connected to Ray"))
    code = main(["generate", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--engine", "openai",
                 "--endpoint", "http://8.8.8.8:8000/v1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--allow-external-endpoint" in err[0]


# --- pacing ----------------------------------------------------------------------------------------------------

def test_backoff_doubles_with_jitter_honours_retry_after_and_is_capped():
    rng = random.Random(0)
    for retry in range(1, 6):
        assert 0.5 * 2 ** (retry - 1) <= backoff_s(retry, 1.0, rng=rng) <= 2 ** (retry - 1)
    assert backoff_s(1, 1.0, retry_after_s=7.0, rng=rng) == 7.0
    assert backoff_s(20, 1.0, rng=rng) == backoff_s(1, 1.0, retry_after_s=3600, rng=rng) == MAX_BACKOFF_S


def test_rate_limiter_spaces_calls_out():
    now, slept = [100.0], []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25] * 4
    now[0] += 10  # idle for a while: no burst credit beyond the next slot
    limiter.wait()
    assert slept == [0.25] * 4
    unlimited = RateLimiter(None, sleep=lambda s: pytest.fail("slept without a limit"))
    unlimited.wait()


# --- the request client against the server -------------------------------------------------------------------

def rows(contexts: list[str], **params) -> pa.Table:
    return pa.Table.from_pylist([{"prompt": build_prompt(c, "ynqa"), "sampling_params": GREEDY | params, "row": i}
                                 for i, c in enumerate(contexts)])


def test_client_retries_what_is_transient_refuses_what_is_not_and_equals_the_hf_engine():
    from bonito_ray.engines.hf import HFGenerator

    contexts = short_documents(5) + ["word " * 600]  # the last fills the 512-token window: HTTP 400
    with CompletionsServer(DEMO_MODEL, fault_every=1, faults=("429", "500", "drop"), api_key="k-1") as server:
        client = CompletionsClient(server.url, server.served_name, Secret("k-1"), max_concurrent_requests=3,
                                   requests_per_second=None, max_retries=2, retry_backoff_s=0.01,
                                   request_timeout_s=60)
        out = client(rows(contexts))
        attempts = list(server.attempts)
    assert out.column_names == ["prompt", "sampling_params", "row", "generated_text", "num_input_tokens",
                                "num_generated_tokens", "finish_reason", "engine_error"]
    assert out["row"].to_pylist() == list(range(6))  # order and carried columns kept
    # Every first attempt failed (429, 500 or a dropped connection); the second was answered.
    assert sorted(str(a.status) for a in attempts) == ["200"] * 5 + ["400", "429", "429", "500", "500", "drop", "drop"]
    assert all(a.authorization == "Bearer k-1" for a in attempts)
    errors = out["engine_error"].to_pylist()
    assert errors[:5] == [None] * 5 and "HTTP 400: This model's maximum context length is 512" in errors[5]

    # The same prompts through the hf engine (transformers in-process, greedy): the same generations.
    reference = HFGenerator(DEMO_MODEL)(rows(contexts[:5]))
    for column in ("generated_text", "num_input_tokens", "num_generated_tokens", "finish_reason"):
        assert out[column].to_pylist()[:5] == reference[column].to_pylist(), column
    assert all("<|pipe|>" in text for text in out["generated_text"].to_pylist()[:5])


def test_client_retries_a_request_that_timed_out():
    with CompletionsServer(DEMO_MODEL, fault_every=1, faults=("slow",)) as server:
        client = CompletionsClient(server.url, server.served_name, None, 1, None, 1, 0.01, SLOW_S / 2)  # 3 s
        out = client(rows(short_documents(1), max_tokens=4))  # 4 tokens: answered well within the timeout
        assert [a.status for a in server.attempts] == ["slow", 200]
    assert out["engine_error"].to_pylist() == [None] and out["num_generated_tokens"].to_pylist() == [4]


def test_client_gives_up_after_max_retries_as_an_engine_error():
    with CompletionsServer(DEMO_MODEL, fault_every=1, faults=("500",)) as server:
        client = CompletionsClient(server.url, server.served_name, None, 2, None, 0, 0.01, 10)
        out = client(rows(short_documents(2)))
        assert all(a.authorization is None for a in server.attempts)  # no key: no header
    assert out["engine_error"].to_pylist() == ["HTTP 500: internal error (gave up after 1 attempts)"] * 2
    assert out["generated_text"].to_pylist() == ["", ""] and out["finish_reason"].to_pylist() == [None, None]


# --- planning: the window and the server's checks ------------------------------------------------------------

def test_planning_takes_the_servers_window_and_checks_server_key_and_model(tmp_path, monkeypatch):
    tokenizer = cached_tokenizer(DEMO_MODEL)
    monkeypatch.setenv(KEY_ENV, "k-2")
    with CompletionsServer(DEMO_MODEL, max_model_len=384, api_key="k-2") as server:
        config = openai_config(server, tmp_path, api_key_env=KEY_ENV, max_tokens=64)
        assert settle_passage_tokens(config) == passage_token_budget(tokenizer, 384, 64)
        with pytest.raises(ConfigError, match="does not serve model 'bonito-v1' \\(it serves 'bonito-demo'\\)"):
            settle_passage_tokens(openai_config(server, tmp_path, served_model_name="bonito-v1", api_key_env=KEY_ENV))
        monkeypatch.delenv(KEY_ENV)
        with pytest.raises(ConfigError, match=f"HTTP 401.*no API key was sent: set {KEY_ENV}"):
            settle_passage_tokens(config)
    with CompletionsServer(DEMO_MODEL) as server:  # no max_model_len on /models: the model's own window (512)
        assert settle_passage_tokens(openai_config(server, tmp_path)) == passage_token_budget(tokenizer, 512, 256)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ConfigError, match=f"cannot reach endpoint http://127.0.0.1:{port}/v1/models: "
                                          "Connection refused$"):
        settle_passage_tokens(GenerateConfig(input="in", output="out", engine="openai",
                                             endpoint=f"http://127.0.0.1:{port}/v1"))


def test_the_window_as_vllm_and_ray_serve_llm_report_it():
    assert reported_window({"id": "m", "max_model_len": 4096}) == 4096  # vllm serve
    assert reported_window({"id": "m", "metadata": {"max_request_context_length": 8192}}) == 8192  # Ray Serve LLM
    assert reported_window({"id": "m", "metadata": {"max_request_context_length": None}}) is None
    assert reported_window({"id": "m", "max_model_len": True}) is None and reported_window({"id": "m"}) is None


# --- a whole job ----------------------------------------------------------------------------------------------

def test_openai_job_end_to_end(ray_cluster, tmp_path, monkeypatch, capfd):
    secret = f"sk-test-{random.Random().getrandbits(64):016x}"
    monkeypatch.setenv(KEY_ENV, secret)  # the driver's environment only: Ray's workers started without it
    documents = short_documents(6)
    write_jsonl(tmp_path / "in.jsonl", documents + ["word " * 2000])  # too long for the window, not chunked
    with CompletionsServer(DEMO_MODEL, max_model_len=512, api_key=secret, fault_every=3, echo_auth=True) as server:
        config = openai_config(server, tmp_path, api_key_env=KEY_ENV, task_types=["ynqa", "exqa"], max_tokens=64,
                               passage_tokens=20_000, seed=0, max_retries=3, retry_backoff_s=0.01, batch_size=4,
                               max_concurrent_requests=4, max_error_rate=0.5)
        summary = generate(config)
        attempts = list(server.attempts)
    out = tmp_path / "out"

    # Every request is accounted for: the long passage's two are engine errors (HTTP 400), not a crash.
    assert summary.prompts == 14 == sum(summary.accepted.values()) + sum(summary.rejected.values()) + sum(
        summary.filtered.values())
    assert summary.engine_errors == 2 and sum(summary.accepted.values()) >= 6
    refused = [r for r in pds.dataset(str(out / GENERATION_REJECTS_DIR)).to_table().to_pylist()
               if r["reason"] == "engine_error"]
    assert len(refused) == 2 and all("maximum context length is 512" in r["detail"] for r in refused)
    assert all("(Authorization: Bearer ***)" in r["detail"] for r in refused)  # the server's echo, blanked out

    # Throttled, failed and dropped first attempts were retried until answered.
    faulted = {a.prompt for a in attempts if a.status in ("429", "500", "drop")}
    assert {a.status for a in attempts} >= {"429", "500", "drop"} and len(faulted) == 14 // 3
    answered = {a.prompt: a.text for a in attempts if a.status == 200}
    assert faulted <= set(answered) | {a.prompt for a in attempts if a.status == 400}
    assert len(answered) == 12 and all(a.authorization == f"Bearer {secret}" for a in attempts)

    # The dataset holds exactly what the server generated, parsed into tasks.
    examples = pds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    assert examples and all(r["input"] and r["output"] for r in examples)
    for row in examples:
        generated = answered[build_prompt(row["context"], row["task_type"])]
        assert parse_generation(generated, row["context"]) == Task(row["input"], row["output"])

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["config"]["api_key_env"] == KEY_ENV and "--engine openai" in manifest["command"]
    assert_key_nowhere(secret, out, capfd)


def assert_key_nowhere(secret: str, out: Path, capfd) -> str:
    """The API key is not in the output's files (the manifest among them), the console or Ray's logs; returns
    what was printed to stdout."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    files = [p for p in [*out.rglob("*"), *logs.rglob("*")] if p.is_file()]
    assert len(files) > 10 and not [p for p in files if secret.encode() in p.read_bytes()]
    printed = capfd.readouterr()
    assert secret not in printed.out + printed.err
    return printed.out


# --- a whole SELF-GUIDE job ------------------------------------------------------------------------------------

def test_self_guide_job_on_the_openai_engine(ray_cluster, tmp_path, monkeypatch, capfd):
    """``bonito-ray self-guide --engine openai`` with generate's openai flags, against the server: every request
    carries the key and its pass's top-k, failed first attempts are retried until answered, the committed
    dataset accounts for every input, and the key is nowhere. (The server decodes greedily: temperatures 0.)"""
    import ray
    import pyarrow.fs as pafs

    from bonito_ray.self_guide.pipeline import summarize
    from bonito_ray.self_guide.spec import load_spec
    from tests.test_self_guide import assert_accounted_for, write_spec

    secret = f"sk-test-{random.Random().getrandbits(64):016x}"
    monkeypatch.setenv(KEY_ENV, secret)  # the driver's environment only: Ray's workers started without it
    spec, out = write_spec(tmp_path / "spec.yaml", examples=4), tmp_path / "out"
    with CompletionsServer(DEMO_MODEL, max_model_len=512, api_key=secret, fault_every=3) as server:
        code = main(["self-guide", "--spec", spec, "--output", str(out), "--engine", "openai",
                     "--endpoint", server.url, "--served-model-name", server.served_name, "--api-key-env", KEY_ENV,
                     "--max-retries", "3", "--retry-backoff-s", "0.01", "--inputs-per-round", "4", "--samples", "2",
                     "--input-temperature", "0", "--output-temperature", "0", "--no-input-length-filter",
                     "--input-max-tokens", "24", "--output-max-tokens", "8", "--seed", "1",
                     "--ray-address", ray.get_runtime_context().gcs_address])  # the test's own cluster
        attempts = list(server.attempts)
    assert code == 0
    summary = summarize(pafs.LocalFileSystem(), str(out), str(out), load_spec(spec))
    found = assert_accounted_for(out, spec, summary, rounds=1, per_round=4, samples=2)

    assert found["_self_guide"], "no input was kept: annotation did not run"  # greedy and seeded: the same every run
    # Input requests asked for top-k 40, annotation requests for 10 (the paper's); all with the key.
    assert {a.prompt.endswith('[input] = "'): a.top_k for a in attempts} == {True: 40, False: 10}
    assert all(a.authorization == f"Bearer {secret}" for a in attempts)
    faulted = {a.prompt for a in attempts if a.status in ("429", "500", "drop")}
    assert faulted and faulted <= {a.prompt for a in attempts if a.status == 200}  # retried until answered
    assert "engine_error" not in str(summary.dropped)

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["config"]["api_key_env"] == KEY_ENV and "--engine openai" in manifest["command"]
    printed = assert_key_nowhere(secret, out, capfd).strip().splitlines()
    assert printed[-len(summary.format().splitlines()) + 1:] == summary.format().splitlines()[1:]  # the CLI's summary
