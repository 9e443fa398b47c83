"""Which Ray cluster a job uses, and the privacy settings its workers get.

A job never joins a cluster because it happens to run on the machine: with no address it uses
RAY_ADDRESS (set by `ray job submit`) or starts a private local cluster. The real checks run the
driver in a subprocess, so that they never touch the test session's own connection.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from bonito_ray import cluster
from bonito_ray.cluster import PRIVACY_ENV

ROOT = Path(__file__).resolve().parents[1]

# Connects as told, then reports where it landed and what a worker task sees of the privacy settings.
_DRIVER = """
import json, os, sys
import ray
from bonito_ray.cluster import PRIVACY_ENV, connect

connect(sys.argv[1] or None)
worker_env = ray.get(ray.remote(lambda: {k: os.environ.get(k) for k in PRIVACY_ENV}).remote())
worker_address = ray.get(ray.remote(lambda: os.environ.get("RAY_ADDRESS")).remote())
cleaner = ray.get(ray.remote(lambda: __import__("logging").getLogger(
    "ray.train.v2._internal.execution.controller.placement_group_cleaner").getEffectiveLevel()).remote())
# The logger of Ray Train's "Reporting training result" line is named by its module's file path.
report = ray.get(ray.remote(lambda: __import__("logging").getLogger(
    __import__("ray.train.v2._internal.execution.context").train.v2._internal.execution.context.__file__
    ).level).remote())
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "worker_env": worker_env, "cleaner_level": cleaner,
                  "report_level": report, "worker_address": worker_address}))
ray.shutdown()
"""


def run_driver(address: str | None, ray_address_env: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PRIVACY_ENV and k != cluster.ADDRESS_ENV}
    if ray_address_env:
        env[cluster.ADDRESS_ENV] = ray_address_env
    done = subprocess.run([sys.executable, "-c", _DRIVER, address or ""], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("address", "env", "expected"), [
    (None, None, "local"),
    (None, "10.0.0.1:6379", "10.0.0.1:6379"),
    ("auto", "10.0.0.1:6379", "auto"),
    ("local", "10.0.0.1:6379", "local"),
    ("10.0.0.2:6379", None, "10.0.0.2:6379"),
])
def test_address_resolution(monkeypatch, address, env, expected):
    if env is None:
        monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    else:
        monkeypatch.setenv(cluster.ADDRESS_ENV, env)
    assert cluster.resolve_address(address) == expected


def test_with_no_address_connect_starts_a_local_cluster_and_never_auto_joins(monkeypatch):
    calls = []
    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    cluster.connect()
    assert [c["address"] for c in calls] == ["local"]


def test_a_driver_with_no_address_gets_a_private_cluster_with_privacy_on(ray_cluster):
    running = set(ray._private.services.find_gcs_addresses())
    assert ray.get_runtime_context().gcs_address in running  # the session's own cluster is there to be joined
    landed = run_driver(None, None)
    assert landed["gcs"] not in running
    # The driver's environment had none of these: connect() set them, and the cluster's workers inherited them.
    assert landed["worker_env"] == PRIVACY_ENV
    # Ray Train's placement-group cleaner cannot reach a private cluster's state API: its retries are silenced.
    assert landed["cleaner_level"] == logging.ERROR
    assert landed["report_level"] == logging.WARNING  # and each training report's INFO line (set, not inherited)
    # Ray Train's state lookups in its workers find their own cluster, not "one of several" on this machine.
    assert landed["worker_address"] == landed["gcs"]


def test_a_submitted_driver_joins_the_cluster_in_ray_address(ray_cluster):
    session = ray.get_runtime_context().gcs_address
    landed = run_driver(None, session)
    assert landed["gcs"] == session
    assert landed["cleaner_level"] < logging.ERROR  # a cluster that may run a dashboard keeps Ray Train's warnings
    assert landed["report_level"] == logging.NOTSET  # left to the cluster's own logging


def test_a_private_start_waits_longer_for_its_node_than_rays_default_and_keeps_the_users_wait(monkeypatch):
    waits = []
    monkeypatch.delenv(cluster.ADDRESS_ENV, raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: waits.append(os.environ.get(cluster.START_WAIT_ENV)))
    monkeypatch.delenv(cluster.START_WAIT_ENV, raising=False)
    cluster.connect()
    monkeypatch.setenv(cluster.START_WAIT_ENV, "200")
    cluster.connect()
    # Ray's C++ core reads the variable (default 10 s); its driver waits max(30 s, that) for the node.
    assert waits == [str(cluster.START_WAIT_SECONDS), "200"] and cluster.START_WAIT_SECONDS > 30


# The real command line, its private cluster's node not registering in its first FAILING_STARTS starts (all, if
# unset): Ray's own start code runs and starts the node's processes, its node lookup fails as it does while the
# raylet is not up, and its clock runs fast, so that Ray's 30 s wait is over at the first failed lookup.
# Reports what it saw.
_SLOW_NODE = """
import json, os, sys, time, types
import ray._private.node as node, ray._private.services as services
import psutil
from bonito_ray import cli
from bonito_ray.cluster import START_WAIT_ENV

failing_starts = int(os.environ.get("FAILING_STARTS", "1000"))
real_get_node, lookups, failed = services.get_node, [], []

def slow_to_register(gcs_address, node_id):
    lookups.append((gcs_address, os.environ.get(START_WAIT_ENV)))
    if len({gcs for gcs, _ in lookups}) <= failing_starts:
        failed.append(1)
        raise RuntimeError("the node is not registered yet")
    return real_get_node(gcs_address, node_id)

class FastClock(types.ModuleType):
    def __getattr__(self, name):
        return getattr(time, name)
    def monotonic(self):
        return time.monotonic() + 1000 * len(failed)

node.time, services.get_node = FastClock("time"), slow_to_register
code = cli.main(sys.argv[1:])
left = [p.name() for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
print(json.dumps({"starts": len({gcs for gcs, _ in lookups}), "waits": sorted({w for _, w in lookups}), "left": left,
                  "returned_at": time.time()}), flush=True)
sys.exit(code)
"""


def run_slow_node_driver(random_model, tmp_path, failing_starts: int | None) -> tuple[subprocess.Popen, str, str]:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text(json.dumps({"text": "One short passage about the rent and the tenant."}) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in (cluster.ADDRESS_ENV, cluster.START_WAIT_ENV)}
    if failing_starts is not None:
        env["FAILING_STARTS"] = str(failing_starts)
    job = subprocess.Popen([sys.executable, "-c", _SLOW_NODE, "generate", "--input", str(corpus), "--output",
                            str(tmp_path / "out"), "--engine", "echo", "--model", random_model, "--task-types", "ynqa",
                            "--passage-tokens", "64", "--ray-address", "local"],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = job.communicate(timeout=600)  # until the driver and everything it started close its pipes
    return job, stdout, stderr


def test_a_private_cluster_that_never_starts_is_tried_twice_then_one_line_and_a_prompt_exit(random_model, tmp_path):
    job, stdout, stderr = run_slow_node_driver(random_model, tmp_path, None)
    ended = time.time()
    assert job.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("bonito-ray:")]
    assert len(errors) == 1 and errors[0].startswith("bonito-ray: error: could not start a private Ray cluster")
    assert "busy" in errors[0] and "--ray-address" in errors[0], errors[0]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["starts"] == cluster.START_ATTEMPTS == 2  # a start that timed out is tried once more
    assert report["waits"] == [str(cluster.START_WAIT_SECONDS)]
    # Nothing either start left runs on (Ray leaves a failed start's processes: they held the exit for
    # minutes), so the command ends with its line, and the lease is given back.
    assert report["left"] == []
    assert ended - report["returned_at"] < 30, ended - report["returned_at"]
    assert not (tmp_path / "out" / "_lease.json").exists()


def test_a_private_start_that_times_out_once_is_cleaned_up_and_the_second_runs_the_job(random_model, tmp_path):
    job, stdout, stderr = run_slow_node_driver(random_model, tmp_path, 1)
    assert job.returncode == 0, stderr[-3000:]
    assert json.loads(stdout.strip().splitlines()[-1])["starts"] == 2
    assert "did not start within" in stderr  # the first try, told as a warning
    assert (tmp_path / "out" / "_SUCCESS").exists()
