"""The console of a good run (bonito_ray.console): bonito-ray's summary, none of Ray's known noise;
``--verbose`` brings Ray's own logs and progress back. Real CLI processes: the good run starts its own private
cluster, as a user's command does by default (its workers' quieting included); the verbose run joins the
session's cluster (a second private start would only cost time)."""

import io
import os
import re

from bonito_ray.config import DEMO_MODEL
from tests.corpus_files import write_jsonl
from tests.test_output_lifecycle import cli, job_args, joined_cluster  # noqa: F401  a fixture

# Lines of Ray's and transformers' own known noise on a good run (bonito-ray's lines have no tab).
NOISE = re.compile(r"^\S+ \S+\t(WARNING|ERROR)|Traceback|may be ignored|deprecated|Token authentication|"
                   r"Loading weights")
RAY_PROGRESS = re.compile(r"Starting execution of Dataset|Running Dataset")
# bonito-ray's own lines: its log records (stderr: progress, notices), its summary (stdout).
OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) bonito_ray[\w.]*: |^bonito-ray: |^  \S")


def foreign_lines(*streams: str) -> list[str]:
    """The lines of a run's console (its stdout and stderr) that are not bonito-ray's own; the one line of Ray's
    a quiet run keeps (``console.RAY_RESTARTABLE_ACTOR_NOTICE``, its module docstring says why) is allowed."""
    from bonito_ray.console import RAY_RESTARTABLE_ACTOR_NOTICE

    return [line for stream in streams for line in stream.splitlines()
            if not OWN_LINE.search(line) and RAY_RESTARTABLE_ACTOR_NOTICE not in line]


def _run(tmp_path, random_model, name: str, *extra: str):
    passages = [f"Passage {i} about otters and the rivers they live in." for i in range(4)]
    corpus = write_jsonl(tmp_path / f"{name}.jsonl", passages)
    done = cli(*job_args(corpus, tmp_path / name, random_model, *extra))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_good_run_prints_the_summary_and_no_ray_noise(ray_cluster, tmp_path, random_model):
    # The hf engine on the demo model, whose generation config holds sampling defaults: a replica
    # actor (Ray's `concurrency` deprecation) and transformers' "may be ignored" warning.
    console = _run(tmp_path, random_model, "quiet", "--engine", "hf", "--model", DEMO_MODEL, "--max-tokens", "2")
    assert "bonito-ray: wrote " in console and "accepted:" in console
    noise = [line for line in console.splitlines() if NOISE.search(line) or RAY_PROGRESS.search(line)]
    assert not noise, "\n".join(noise)


def test_verbose_brings_rays_progress_back(joined_cluster, tmp_path, random_model):
    console = _run(tmp_path, random_model, "verbose", "--verbose", *joined_cluster)
    assert "bonito-ray: wrote 4 examples" in console
    # The command's time, from its process's start: the start-up (Python, the checks, Ray) is in it (issue 26, 8).
    assert re.search(r" in \d+\.\ds \(start-up \d+\.\ds: Python, the job's checks, Ray\)", console), console[-3000:]
    assert RAY_PROGRESS.search(console), console[-3000:]


def test_only_rays_token_auth_on_notice_is_dropped():
    # Ray's own warnings, emitted by Ray's own functions: "on" (its default) is noise, "off" is not.
    import logging

    from ray._private.authentication import authentication_token_setup as ray_auth

    from bonito_ray.console import quiet_token_auth_notice

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    auth_logger = logging.getLogger(ray_auth.__name__)
    auth_logger.addHandler(handler)
    try:
        quiet_token_auth_notice(verbose=False)
        ray_auth._warn_token_auth_enabled()
        ray_auth._warn_token_auth_disabled()
        assert [m.split(".")[0] for m in seen] == ["Token authentication is disabled for this Ray cluster"]
        quiet_token_auth_notice(verbose=True)
        ray_auth._warn_token_auth_enabled()
        assert seen[-1].startswith("Token authentication is enabled")
    finally:
        auth_logger.removeHandler(handler)


def test_quiet_spends_ray_datas_one_time_warnings():
    from ray.util import debug
    from ray.util.debug import log_once

    from bonito_ray.console import quiet_ray_data

    debug._logged.difference_update({"cpu_warning", "ray_data_progress_manager_disabled"})  # as in a new driver
    quiet_ray_data(verbose=False)
    assert not log_once("cpu_warning") and not log_once("ray_data_progress_manager_disabled")


def test_quiet_keeps_ray_datas_starvation_warning_in_its_log_file_only(tmp_path):
    """Ray Data's own logging set-up (a console handler that drops hidden records, a file handler), and its
    resource manager's warning as Ray Data words it: off the console when quiet, in the file always."""
    import logging

    from ray.data._internal.logging import HiddenRecordFilter

    from bonito_ray.console import RAY_DATA_STARVATION_LOGGER, quiet_ray_data

    shown, kept = io.StringIO(), io.StringIO()
    console_handler = logging.StreamHandler(shown)
    console_handler.addFilter(HiddenRecordFilter())
    file_handler = logging.StreamHandler(kept)
    manager = logging.getLogger(RAY_DATA_STARVATION_LOGGER)
    for handler in (console_handler, file_handler):
        manager.addHandler(handler)
    warning = ("Cluster resources are not enough to run any task from TaskPoolMapOperator[Map(_postprocess)]. "
               "The job may hang forever unless the cluster scales up.")
    try:
        quiet_ray_data(verbose=False)
        quiet_ray_data(verbose=False)  # a second dataset in the same driver: one filter
        manager.warning(warning)
        manager.warning("Some other resource warning.")
        assert shown.getvalue().splitlines() == ["Some other resource warning."]
        assert kept.getvalue().splitlines() == [warning, "Some other resource warning."]
        quiet_ray_data(verbose=True)
        manager.warning(warning)
        assert shown.getvalue().splitlines()[-1] == warning
    finally:
        for handler in (console_handler, file_handler):
            manager.removeHandler(handler)
        quiet_ray_data(verbose=False)


def test_vllm_replicas_output_and_the_drivers_vllm_records_go_to_the_engine_log(ray_cluster, caplog):
    # Ray's real dispatcher of streamed worker output, with a stand-in for its printer (the session's cluster
    # does not stream to this process); the batches are shaped as Ray's log monitor publishes them.
    import logging

    from ray._private.ray_logging import global_worker_stdstream_dispatcher as streams

    from bonito_ray import console

    printed = []
    streams.add_handler(console.RAY_PRINT_LOGS, printed.append)
    path = console.engine_log_path()
    try:
        assert console.route_engine_output(verbose=False) == path
        replica = {"actor_name": "MapWorker(MapBatches(vLLMEngineStageUDF))", "pid": 41, "ip": "10.0.0.2",
                   "is_err": True, "lines": ["WARNING a notice of vLLM's", "a C++ warning"]}
        other = {"actor_name": "MapWorker(MapBatches(HFEngine))", "pid": 42, "ip": "10.0.0.3", "is_err": True,
                 "lines": ["a warning of an hf replica"]}
        streams.emit(replica)
        streams.emit(other)
        with caplog.at_level(logging.INFO):
            logging.getLogger("vllm.triton_utils.importing").warning("an import notice in the driver")
            logging.getLogger("ray.llm._internal.common").info("a model lookup in the driver")
        assert printed == [other]  # the console gets everything else
        assert "notice in the driver" not in caplog.text and "model lookup" not in caplog.text
        log = path.read_text().splitlines()
        assert log[:2] == ["(pid=41 ip=10.0.0.2 stderr) WARNING a notice of vLLM's",
                           "(pid=41 ip=10.0.0.2 stderr) a C++ warning"]
        assert "WARNING vllm.triton_utils.importing: an import notice in the driver" in log[2]
        assert "INFO ray.llm._internal.common: a model lookup in the driver" in log[3]

        assert console.route_engine_output(verbose=True) is None  # verbose: Ray's printer and loggers as they were
        streams.emit(replica)
        assert printed == [other, replica]
        with caplog.at_level(logging.INFO):
            logging.getLogger("vllm.triton_utils.importing").warning("shown when verbose")
        assert "shown when verbose" in caplog.text and len(path.read_text().splitlines()) == 4
    finally:
        streams.remove_handler(console.RAY_PRINT_LOGS)
        console.route_engine_output(verbose=True)
        path.unlink(missing_ok=True)


def test_a_second_ray_init_finds_the_connected_cluster_without_looking_for_others(ray_cluster, monkeypatch):
    # What ray.init() resolves an address with; unnamed, it looks for clusters on this machine (and warns when
    # it finds several, as a machine running other jobs or test suites has).
    import ray
    from ray._private.services import canonicalize_bootstrap_address

    from bonito_ray.console import naming_this_cluster

    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")  # the user's, given back after
    with naming_this_cluster():
        assert canonicalize_bootstrap_address(None) == ray.get_runtime_context().gcs_address
    assert os.environ["RAY_ADDRESS"] == "10.9.9.9:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    with naming_this_cluster():
        assert os.environ["RAY_ADDRESS"] == ray.get_runtime_context().gcs_address
    assert "RAY_ADDRESS" not in os.environ
