"""The S3 check before any cluster work (bonito_ray.s3_preflight): each way an s3:// URI cannot be used is one
line naming the URI and what to set, within a deadline, and never shows a credential.

The classification is tested on botocore's own error objects; the check itself against real servers: moto on
127.0.0.1 (the session's, and one of this module's that enforces IAM, for denied access and refused or missing
credentials), a closed port, a server that accepts connections and never answers, and a proxy nobody listens
on (a hermetic stand-in for no network on the way to AWS). The CLI runs as a subprocess for the console.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore import exceptions as bx

from bonito_ray.cluster import FORBID_ENV
from bonito_ray.config import GenerateConfig
from bonito_ray.s3_preflight import (DeadlinePassed, Deadlines, Probe, S3AccessError, check, check_settings, classify,
                                    s3_uris)

ROOT = Path(__file__).resolve().parents[1]
URI = "s3://my-bucket/corpus/"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
# The variables of every source of AWS credentials botocore reads, cleared for a run with none.
CREDENTIAL_SOURCES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                      "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
                      "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                      "AWS_ENDPOINT_URL")
FAST = Deadlines(connect_s=5, read_s=10, attempts=1, overall_s=60)


def client_error(code: str, message: str = "", status: int = 403) -> bx.ClientError:
    return bx.ClientError({"Error": {"Code": code, "Message": message},
                           "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2")


def probe(endpoint: str | None = None, credentials: str | None = "env") -> Probe:
    return Probe(URI, "my-bucket", "corpus/", endpoint, "us-east-1", credentials)


def assert_one_line(line: str, uri: str = URI) -> None:
    assert "\n" not in line and line.startswith(f"{uri}: ") and "Traceback" not in line


# --- the classification, on botocore's own error objects ---------------------------------------------------


@pytest.mark.parametrize(("err", "where", "expected"), [
    (client_error("NoSuchBucket", status=404), None, ["bucket 'my-bucket' does not exist", "--s3-endpoint"]),
    (client_error("NoSuchBucket", status=404), "http://minio:9000", ["does not exist at endpoint http://minio:9000"]),
    (client_error("AccessDenied", "Access Denied"), None, ["access denied (AccessDenied)", "s3:ListBucket",
                                                           "credentials from env", "AWS_ACCESS_KEY_ID"]),
    (client_error("InvalidAccessKeyId"), "http://minio:9000", ["refused the AWS credentials", "InvalidAccessKeyId",
                                                               "AWS_SECRET_ACCESS_KEY"]),
    (client_error("SignatureDoesNotMatch"), None, ["refused the AWS credentials", "--s3-endpoint"]),
    (client_error("AuthorizationHeaderMalformed", status=400), None, ["not in region us-east-1", "AWS_REGION"]),
    (client_error("SlowDown", "Please reduce your request rate", 503), None,
     ["answered SlowDown", "Please reduce your request rate"]),
    (bx.EndpointConnectionError(endpoint_url="http://127.0.0.1:9/my-bucket"), "http://127.0.0.1:9",
     ["cannot connect to endpoint http://127.0.0.1:9", "--s3-endpoint"]),
    (bx.EndpointConnectionError(endpoint_url="https://my-bucket.s3.amazonaws.com"), None,
     ["cannot connect to AWS S3 (region us-east-1)", "AWS_REGION", "--s3-endpoint"]),
    (bx.ConnectTimeoutError(endpoint_url="http://10.0.0.1:9000"), "http://10.0.0.1:9000",
     ["connecting timed out to endpoint http://10.0.0.1:9000"]),
    (bx.ReadTimeoutError(endpoint_url="http://10.0.0.1:9000"), "http://10.0.0.1:9000", ["did not answer in time"]),
    (DeadlinePassed(30), "http://10.0.0.1:9000", ["no answer from endpoint http://10.0.0.1:9000 within 30 s"]),
    (DeadlinePassed(30, "AWS credentials"), None, ["looking up AWS credentials", "more than 30 s",
                                                   "AWS_ACCESS_KEY_ID"]),
    (bx.SSLError(endpoint_url="https://127.0.0.1:9000", error="wrong version number"), "https://127.0.0.1:9000",
     ["TLS handshake", "http://host:port"]),
    (bx.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), None,
     ["incomplete", "missing: AWS_SECRET_ACCESS_KEY"]),
    (bx.ProfileNotFound(profile="nightly"), None, ["nightly", "AWS_PROFILE"]),
    (bx.ParamValidationError(report="Invalid bucket name"), None, ["'my-bucket' is not a valid S3 bucket name"]),
])
def test_each_error_is_one_line_naming_the_uri_and_what_to_set(err, where, expected):
    line = classify(err, probe(where))
    assert_one_line(line)
    for part in expected:
        assert part in line, (part, line)


@pytest.mark.parametrize("err", [client_error("AccessDenied"), client_error("500", "Internal Server Error", 500),
                                 bx.EndpointConnectionError(endpoint_url="https://s3.amazonaws.com"),
                                 DeadlinePassed(30)])
def test_without_credentials_the_line_says_to_set_them(err):
    line = classify(err, probe(credentials=None))
    assert_one_line(line)
    assert "no AWS credentials were found" in line and "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line


def test_with_credentials_the_line_does_not_ask_for_them():
    assert "no AWS credentials" not in classify(bx.EndpointConnectionError(endpoint_url="x"), probe())


def test_credentials_in_the_servers_message_are_masked_and_the_line_stays_one(monkeypatch):
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN")
    err = client_error("SlowDown", f"key {SECRET}\nand token FwoGZXIvYXdzEXAMPLETOKEN\r\n", 503)
    line = classify(err, probe(), secrets=[SECRET])
    assert_one_line(line)
    assert SECRET not in line and "FwoGZXIvYXdzEXAMPLETOKEN" not in line and line.count("***") == 2


def test_a_proxy_is_shown_without_its_credentials():
    err = bx.ProxyConnectionError(proxy_url="http://user:hunter2@proxy.internal:3128", error="refused")
    line = classify(err, probe(credentials=None))
    assert_one_line(line)
    assert "http://proxy.internal:3128" in line and "hunter2" not in line and "HTTPS_PROXY" in line


def test_the_s3_uris_of_a_config_and_of_parsed_arguments():
    config = GenerateConfig(input="s3://corpus/docs/*.jsonl", output="s3a://out/run", model="org/model")
    assert s3_uris(config) == ["s3://corpus/docs/*.jsonl", "s3a://out/run"]
    assert s3_uris({"eval_sets": ["s3://b/a.jsonl", "local.jsonl"], "output": "/tmp/x", "seed": 3}) == [
        "s3://b/a.jsonl"]
    # settings in any order: the output is probed last
    assert s3_uris({"output": "s3://out/run", "input": "s3://corpus/a.jsonl"}) == ["s3://corpus/a.jsonl",
                                                                                  "s3://out/run"]


def test_no_s3_uri_asks_nothing(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nobody listens: a request would fail
    check_settings({"input": "corpus/", "output": "gs://bucket/out"})


# --- the check against real servers ------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No AWS credentials anywhere botocore (or pyarrow) looks: variables, files, instance metadata."""
    for name in CREDENTIAL_SOURCES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture
def no_network(monkeypatch):
    """Every request goes to a proxy nobody listens on: AWS itself is never reached from a test."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return proxy


@pytest.fixture(scope="module")
def iam_s3(tmp_path_factory):
    """A moto server that enforces IAM, in its own process (the setting is its whole process's): the bucket
    `corpus` with docs/a.jsonl, and the keys of a user with no permission and of one that may only read objects."""
    log = tmp_path_factory.mktemp("moto-iam") / "moto.log"
    # Its first 3 requests go unchecked: they make the admin user whose key makes the rest.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while not (found := re.search(r"Running on http://127\.0\.0\.1:(\d+)", log.read_text())):
            assert server.poll() is None and time.monotonic() - started < 120, log.read_text()
            time.sleep(0.2)
        endpoint = f"http://127.0.0.1:{found.group(1)}"
        iam = boto3.client("iam", endpoint_url=endpoint)
        admin = _user(iam, "admin", "*")
        boto3.client("s3", endpoint_url=endpoint, **admin).create_bucket(Bucket="corpus")
        boto3.client("s3", endpoint_url=endpoint, **admin).put_object(Bucket="corpus", Key="docs/a.jsonl", Body=b"{}")
        iam = boto3.client("iam", endpoint_url=endpoint, **admin)
        # The reader: AWS lets s3:GetObject head an object; moto asks for an s3:HeadObject of its own.
        reader = _user(iam, "reader", ["s3:GetObject", "s3:HeadObject"])
        yield {"endpoint": endpoint, "nobody": _user(iam, "nobody"), "reader": reader}
    finally:
        server.terminate()
        server.wait(60)


def _user(iam, name: str, action: str | list[str] | None = None) -> dict:
    iam.create_user(UserName=name)
    if action:
        statement = {"Effect": "Allow", "Action": action, "Resource": "*"}
        iam.put_user_policy(UserName=name, PolicyName="only",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def use(monkeypatch, credentials: dict) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["aws_secret_access_key"])


def failure(uris: list[str], endpoint: str | None, deadlines: Deadlines = FAST) -> str:
    with pytest.raises(S3AccessError) as caught:
        check(uris, endpoint, deadlines)
    line = str(caught.value)
    assert "\n" not in line and "Traceback" not in line
    return line


def test_a_bucket_that_exists_passes_input_glob_and_new_output_alike(s3_endpoint):
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket="corpus", Key="pre/a.jsonl", Body=b"{}")
    check(["s3://corpus/pre/", "s3://corpus/pre/*.jsonl", "s3://corpus/not-written-yet/run1"], s3_endpoint, FAST)


def test_unknown_bucket_at_the_endpoint(s3_endpoint):
    line = failure(["s3://corpus/pre/", "s3://no-such-bucket/out/run1"], s3_endpoint)
    assert line.startswith("s3://no-such-bucket/out/run1: bucket 'no-such-bucket' does not exist at endpoint "
                           f"{s3_endpoint}")


def test_access_denied(monkeypatch, iam_s3):
    use(monkeypatch, iam_s3["nobody"])
    line = failure(["s3://corpus/docs/"], iam_s3["endpoint"])
    assert line.startswith("s3://corpus/docs/: access denied (AccessDenied) to bucket 'corpus' for the AWS "
                           "credentials from env")
    assert iam_s3["nobody"]["aws_secret_access_key"] not in line
    assert iam_s3["nobody"]["aws_access_key_id"] not in line


def test_a_file_that_may_be_read_but_not_listed_passes(monkeypatch, iam_s3):
    use(monkeypatch, iam_s3["reader"])
    check(["s3://corpus/docs/a.jsonl"], iam_s3["endpoint"], FAST)  # pyarrow reads it with s3:GetObject alone
    assert "access denied" in failure(["s3://corpus/docs/"], iam_s3["endpoint"])  # a prefix must be listed


def test_refused_credentials(monkeypatch, iam_s3):
    use(monkeypatch, {"aws_access_key_id": "AKIAUNKNOWNUNKNOWN00", "aws_secret_access_key": SECRET})
    line = failure(["s3://corpus/docs/"], iam_s3["endpoint"])
    assert "refused the AWS credentials (from env: InvalidAccessKeyId)" in line
    assert SECRET not in line and "AKIAUNKNOWNUNKNOWN00" not in line


def test_no_credentials_at_an_endpoint_that_wants_them(no_credentials, iam_s3):
    line = failure(["s3://corpus/docs/"], iam_s3["endpoint"])
    assert line.startswith("s3://corpus/docs/: no AWS credentials were found")
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line


def test_no_credentials_and_no_way_to_aws(no_credentials, no_network, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    line = failure([URI], None)
    assert line.startswith(f"{URI}: cannot connect to the proxy {no_network} on the way to AWS S3 (region "
                           "eu-west-1)")
    assert "no AWS credentials were found" in line and "AWS_ACCESS_KEY_ID" in line


def test_unreachable_endpoint():
    endpoint = f"http://127.0.0.1:{closed_port()}"
    line = failure([URI], endpoint)
    assert line == (f"{URI}: cannot connect to endpoint {endpoint}; check --s3-endpoint (or AWS_ENDPOINT_URL) "
                    "and the network")


@pytest.fixture
def silent_endpoint():
    """A server that accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_silent_endpoint_is_given_up_on_at_the_read_timeout(silent_endpoint):
    started = time.monotonic()
    line = failure([URI], silent_endpoint, Deadlines(connect_s=5, read_s=1, attempts=1, overall_s=600))
    assert f"endpoint {silent_endpoint} accepted the connection but did not answer in time" in line
    assert time.monotonic() - started < 300  # bounded by the read timeout, not the 600 s deadline


def test_the_overall_deadline_ends_a_wait_the_timeouts_would_allow(silent_endpoint):
    started = time.monotonic()
    line = failure([URI], silent_endpoint, Deadlines(connect_s=600, read_s=600, attempts=5, overall_s=1))
    assert line.startswith(f"{URI}: no answer from endpoint {silent_endpoint} within ")
    assert time.monotonic() - started < 300


# --- the console: the CLI as a user runs it ----------------------------------------------------------------


def bonito_ray(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bonito_ray.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, FORBID_ENV: "1", **(env or {})})


def assert_one_line_error(run: subprocess.CompletedProcess, uri: str) -> str:
    assert run.returncode == 2, run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bonito-ray: error: {uri}: "), run.stderr
    return lines[0]


def test_console_no_credentials_no_endpoint(no_credentials, no_network, tmp_path):
    run = bonito_ray("generate", "--input", URI, "--output", str(tmp_path / "m5"))
    line = assert_one_line_error(run, URI)
    assert "no AWS credentials were found" in line and "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line
    assert not (tmp_path / "m5").exists()


def test_console_unreachable_endpoint(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    run = bonito_ray("generate", "--input", URI, "--output", str(tmp_path / "m5"), "--s3-endpoint", endpoint)
    assert f"cannot connect to endpoint {endpoint}" in assert_one_line_error(run, URI)


def test_console_unknown_output_bucket(s3_endpoint, tmp_path):
    run = bonito_ray("generate", "--input", "s3://corpus/pre/", "--output", "s3://no-such-bucket/m5",
                     "--s3-endpoint", s3_endpoint)
    assert "bucket 'no-such-bucket' does not exist" in assert_one_line_error(run, "s3://no-such-bucket/m5")


def test_console_access_denied_shows_no_credentials(iam_s3, tmp_path):
    nobody = iam_s3["nobody"]
    run = bonito_ray("generate", "--input", "s3://corpus/docs/", "--output", str(tmp_path / "m5"),
                     "--s3-endpoint", iam_s3["endpoint"],
                     env={"AWS_ACCESS_KEY_ID": nobody["aws_access_key_id"],
                          "AWS_SECRET_ACCESS_KEY": nobody["aws_secret_access_key"]})
    assert "access denied" in assert_one_line_error(run, "s3://corpus/docs/")
    assert nobody["aws_secret_access_key"] not in run.stderr and nobody["aws_access_key_id"] not in run.stderr


def test_console_other_commands_check_their_uris_too(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    run = bonito_ray("export", "--input", "s3://datasets/run1", "--output", str(tmp_path / "export"),
                     env={"AWS_ENDPOINT_URL": endpoint})
    assert f"cannot connect to endpoint {endpoint}" in assert_one_line_error(run, "s3://datasets/run1")
    run = bonito_ray("stats", "s3://datasets/run1", "--s3-endpoint", endpoint)
    assert f"cannot connect to endpoint {endpoint}" in assert_one_line_error(run, "s3://datasets/run1")
