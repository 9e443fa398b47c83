"""The `ray job submit` path end to end: a real Ray head started with `ray start`, the real Jobs CLI.

This is how a job reaches an existing cluster (docs/deploy.md, "Submitting to a running cluster"):
`ray job submit --working-dir <repo> --entrypoint-num-cpus ... -- python jobs/generate.py ...`.
The `echo` engine stands in for the model, so no GPU and no hub are needed.

Isolation from other Ray clusters on the same machine (other tests, other people):
- every port the head opens is chosen free on 127.0.0.1, and its temp dir is private;
- `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps `ray start --node-ip-address 127.0.0.1` on loopback
  (otherwise Ray swaps 127.0.0.1 for the host's routable address);
- token authentication is on (`RAY_AUTH_MODE=token`, a fresh random token), as on the real cluster;
- teardown never runs `ray stop --force`, which would kill *every* Ray process of this user, other
  people's clusters included: it sends SIGTERM to our own `ray start --block` (which shuts down what it
  started), then SIGKILLs whatever is left of the processes it spawned, by pid.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bonito_ray.cluster import PRIVACY_ENV

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 420
# The working dir is uploaded to the cluster: keep it to the code.
UPLOAD_EXCLUDES = [".venv", ".git", ".pytest_cache", "**/__pycache__", "*.egg-info", "out", "jobs/examples/demo-model"]


def _ray_default_missing() -> str | None:
    """Why the Jobs CLI / dashboard cannot run here, or None when `ray[default]` is installed."""
    try:
        from ray._private.utils import get_dashboard_dependency_error
    except ImportError as err:  # not even Ray core
        return f"ray is not importable: {err}"
    error = get_dashboard_dependency_error()
    return None if error is None else f"ray[default] is not installed (the dashboard and Jobs CLI need it): {error}"


_MISSING = _ray_default_missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def _ray_cli() -> str:
    """The `ray` console script of this interpreter's environment (the head must run this venv's Python)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def _free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now (all held open together so that none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class RayHead:
    address: str  # the Jobs API, http://127.0.0.1:<dashboard port>
    env: dict[str, str]  # what `ray job ...` commands need (the auth token, above all)
    token: str
    log: Path

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `ray <args>` against this head; never raises on a non-zero exit."""
        return subprocess.run([_ray_cli(), *args], env=self.env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)

    def api(self, path: str) -> dict:
        """GET a Jobs REST endpoint (JSON), with the bearer token."""
        request = urllib.request.Request(self.address + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read().decode())


def _head_env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    # The job's `python` must be this interpreter (its venv has ray and bonito-ray's dependencies).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(PRIVACY_ENV)
    env.update({
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep the node on 127.0.0.1 (see the module docstring)
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # SIGTERM: stop at once, no 30 s drain
        "HF_HUB_OFFLINE": "1",
    })
    return env


def _die_with_this_process() -> None:
    """In the child before exec: get SIGTERM if pytest dies, so that the head never outlives the tests."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG (Linux)
    except Exception:
        pass


def _start_head(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int, Path]:
    """`ray start --head --block` in its own session; returns the process, the dashboard port and its log."""
    gcs, dashboard, agent_http, agent_grpc, client, runtime_env_agent, metrics = _free_ports(7)
    log = workdir / f"ray-start-{dashboard}.log"
    command = [
        _ray_cli(), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
        "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
        "--ray-client-server-port", str(client), "--runtime-env-agent-port", str(runtime_env_agent),
        "--metrics-export-port", str(metrics),
        "--num-cpus", "2", "--object-store-memory", str(300 * 1024**2),
        "--temp-dir", str(workdir / "ray"), "--disable-usage-stats",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_die_with_this_process if sys.platform.startswith("linux") else None)
    return process, dashboard, log


def _wait_until_up(head: RayHead, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode}:\n{head.log.read_text()[-4000:]}")
        try:
            head.api("/api/jobs/")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
            time.sleep(1)
    raise TimeoutError(f"the Ray head did not answer within {START_TIMEOUT_S}s:\n{head.log.read_text()[-4000:]}")


def _stop_head(process: subprocess.Popen) -> None:
    """Stop our head and everything it spawned, by pid; nothing else on the machine is touched."""
    try:
        import psutil

        spawned = psutil.Process(process.pid).children(recursive=True)
    except Exception:  # psutil missing or the head already gone
        spawned = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # `ray start --block` shuts down the processes it started
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    for child in spawned:  # stragglers only: each was spawned by our head (psutil checks pid reuse)
        try:
            child.kill()
        except Exception:
            pass


@pytest.fixture(scope="module")
def ray_head():
    """A real Ray head (dashboard + Jobs API) on 127.0.0.1, stopped whatever happens in the tests."""
    workdir = Path(tempfile.mkdtemp(prefix="brj-", dir="/tmp"))  # short: Ray's unix socket paths must fit
    token = secrets.token_hex(32)
    env = _head_env(token)
    process = None
    try:
        for attempt in range(2):  # a port picked free may be taken before Ray binds it: try once more
            process, dashboard, log = _start_head(workdir, env)
            head = RayHead(address=f"http://127.0.0.1:{dashboard}", env=env, token=token, log=log)
            try:
                _wait_until_up(head, process)
                break
            except (RuntimeError, TimeoutError):
                _stop_head(process)
                process = None
                if attempt == 1:
                    raise
        yield head
    finally:
        if process is not None:
            _stop_head(process)
        shutil.rmtree(workdir, ignore_errors=True)


# Ray's job server answers before its node's job agent is up; on a busy machine a submission can come
# first, and Ray then asks to try again later. The head is up (_wait_until_up): the agent follows.
AGENT_NOT_UP = "No available agent to submit job"
AGENT_WAIT_S = 180


def _submit(head: RayHead, submission_id: str, job_args: list[str]) -> subprocess.CompletedProcess:
    runtime_env = {"env_vars": {**PRIVACY_ENV, "HF_HUB_OFFLINE": "1"}, "excludes": UPLOAD_EXCLUDES}
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        submitted = head.ray("job", "submit", "--address", head.address, "--submission-id", submission_id,
                             "--working-dir", str(ROOT), "--runtime-env-json", json.dumps(runtime_env),
                             "--entrypoint-num-cpus", "0.5", "--no-wait",
                             "--", "python", "jobs/generate.py", *job_args)
        if AGENT_NOT_UP not in submitted.stderr + submitted.stdout or time.monotonic() > deadline:
            return submitted
        time.sleep(3)


def _wait_for_job(head: RayHead, submission_id: str) -> str:
    """Poll the job until it is terminal (bounded); stop it and fail if it is not by then."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    status = "UNKNOWN"
    while time.monotonic() < deadline:
        try:
            status = head.api(f"/api/jobs/{submission_id}")["status"]
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            status = "UNKNOWN"
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(3)
    head.ray("job", "stop", "--address", head.address, submission_id, timeout=60)
    logs = head.ray("job", "logs", "--address", head.address, submission_id).stdout
    pytest.fail(f"job {submission_id} still {status} after {JOB_TIMEOUT_S}s; logs:\n{logs[-4000:]}")


def _write_corpus(path: Path, count: int) -> Path:
    """A small JSONL corpus, one distinct passage per line in the `text` column."""
    lines = [json.dumps({"text": f"Clause {i}: the tenant pays {100 + 7 * i} euros of rent on day {i + 1} "
                                 f"of each month, by bank transfer to the landlord's account."})
             for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _job_id() -> str:
    return f"bonito-ray-test-{uuid.uuid4().hex[:10]}"


def test_submitted_job_writes_the_dataset(ray_head, random_model, tmp_path):
    import pyarrow.dataset as pds

    corpus = _write_corpus(tmp_path / "corpus.jsonl", 6)
    out = tmp_path / "out"
    submission_id = _job_id()

    submitted = _submit(ray_head, submission_id, ["--engine", "echo", "--model", random_model,
                                                  "--input", str(corpus), "--output", str(out),
                                                  "--task-types", "ynqa"])
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]

    status = _wait_for_job(ray_head, submission_id)
    logs = ray_head.ray("job", "logs", "--address", ray_head.address, submission_id)
    assert logs.returncode == 0, logs.stderr[-3000:]
    assert status == "SUCCEEDED", f"job {status}; logs:\n{logs.stdout[-4000:]}"
    cli_status = ray_head.ray("job", "status", "--address", ray_head.address, "--log-style", "record",
                              "--log-color", "false", submission_id)
    assert cli_status.returncode == 0 and re.search(r"\bsucceeded\b", cli_status.stdout, re.IGNORECASE), (
        cli_status.stdout[-2000:] + cli_status.stderr[-2000:])

    # The job's own summary, then the dataset it describes.
    summary = re.search(r"bonito-ray: wrote (\d+) examples to (\S+)", logs.stdout)
    assert summary, f"no summary line in the job logs:\n{logs.stdout[-4000:]}"
    assert summary.group(2) == str(out)
    table = pds.dataset(str(out), format="parquet", partitioning="hive").to_table()
    assert table.num_rows == int(summary.group(1)) == 6  # 6 passages x 1 task type x n=1, echo parses all
    assert set(table.column("task_type").to_pylist()) == {"ynqa"}
    assert (out / "_SUCCESS").exists()


def test_submitted_job_with_a_bad_flag_fails_with_a_clear_error(ray_head, random_model, tmp_path):
    corpus = _write_corpus(tmp_path / "corpus.jsonl", 2)
    submission_id = _job_id()

    submitted = _submit(ray_head, submission_id, ["--engine", "echo", "--model", random_model,
                                                  "--input", str(corpus), "--output", str(tmp_path / "out"),
                                                  "--task-types", "not-a-task-type"])
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]

    status = _wait_for_job(ray_head, submission_id)
    logs = ray_head.ray("job", "logs", "--address", ray_head.address, submission_id).stdout
    assert status == "FAILED", logs[-4000:]
    assert "bonito-ray: error:" in logs and "not-a-task-type" in logs
    assert not (tmp_path / "out").exists()
