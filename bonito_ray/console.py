"""What a run prints: bonito-ray's own lines, summary and errors; Ray's own logs only with ``--verbose``.

Each known source of noise on a good run is quieted where it starts, not by hiding warnings wholesale:

- Ray Data's per-stage progress blocks (every 10 s when stdout is not a terminal) and its INFO lines
  ("Starting execution", "Execution plan") come from the ``ray.data`` logger: it is set to WARNING.
- Worker processes (engine replicas) log through Python's ``logging``: the job's Ray logging config
  sets them to WARNING (vLLM's per-batch "Elapsed time" lines are INFO), so their warnings and errors
  still reach the console.
- Model loading bars ("Loading weights") in engine replicas: off through the replicas' environment.
- Ray's token-auth notice: Ray says so when it turns token authentication on, its default. The
  cluster keeps it (nothing is weakened); only that notice is dropped. Ray's warning that a cluster
  runs without authentication still shows.

- Ray Data's "The Ray cluster currently does not have any available CPUs" warning: it reads Ray's
  resource view as each dataset starts, which on a good run can still count the CPUs that the stage
  before has just released, so a run of several passes prints it at random. Shown with ``--verbose``;
  a job whose engine replicas really take every CPU shows no progress on bonito-ray's own line.
- Ray Data's "Cluster resources are not enough to run any task from ... The job may hang forever" warning:
  an operator after the engine stage waits for a CPU while the engine replicas start, and when vLLM takes
  over a minute to load (a busy machine) Ray Data calls that a hang, on runs that then end well. It is
  kept in Ray Data's own log (``ray-data.log``) and shown with ``--verbose``; a real hang shows as a
  progress line that stops moving.

- vLLM engine replicas (``--engine vllm``): vLLM, the libraries it loads and the processes it starts
  write to the replica's stdout and stderr, not only through ``logging`` (notices about the CPU build,
  Python warnings, C++ warnings, multiprocessing's resource tracker at shutdown); a good run printed
  dozens of lines. Their streamed output goes to the job's engine log instead of the console
  (``route_engine_output``), and so do the ``vllm`` and ``ray.llm`` loggers' records in the driver
  (vLLM's import notices, ray.data.llm's model lookup). Nothing is lost: the engine log, named on the
  console, holds every line; Ray's own per-worker log files keep theirs too. An engine that fails
  still fails the job (or its rows, as ``engine_error`` rejects) through bonito-ray's own lines.
- Ray Train's controller (``finetune``): a resource request to Ray Data's autoscaling coordinator that
  times out on a loaded machine is a WARNING with a traceback that Ray calls safe to ignore; it goes to the
  job's train log (``bonito-ray-train-<job id>.log`` beside the engine log), not the console.
- Ray's "Found multiple active Ray instances" warning while ray.data.llm builds its processor (on a
  machine running other Ray clusters): it calls ``ray.init()`` again, and Ray looks for clusters on
  the machine before it sees that the driver is connected. ``naming_this_cluster`` ends the search.

Left as it is, explained here once: the error-level ``core_worker.cc`` line "Actor ... has constructor
arguments in the object store and max_restarts > 0" is Ray Data's own actor pool (it passes its map
function by reference and restarts actors); it is harmless while the driver runs, and turning restarts
off to avoid it would lose fault tolerance. The driver's Ray core prints it straight to the process's
stderr (once per process), below Python, and keeps it in its own log file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

# Ray is imported by the functions that use it: the CLI imports this module, and its `--help` must not wait
# for Ray.

QUIET_LEVEL = "WARNING"
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
TOKEN_AUTH_ON_NOTICE = "Token authentication is enabled for this Ray cluster"


def ray_logging_config(verbose: bool) -> ray.LoggingConfig | None:
    """The job-wide logging config for Ray's processes: None (Ray's own) when verbose."""
    import ray

    return None if verbose else ray.LoggingConfig(encoding="TEXT", log_level=QUIET_LEVEL)


# Ray Train's placement-group cleaner asks Ray's state API, which the dashboard serves, whether the
# trainer still runs; on a cluster without a dashboard (the private one) every try, once a second, is
# a WARNING. What it would clean after a crashed driver goes away with a private cluster anyway.
TRAIN_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
# Ray Train's controller asks Ray Data's autoscaling coordinator (an actor) for its workers' resources every
# 20 s with a 5 s timeout; on a loaded machine a call times out and it logs a WARNING with the GetTimeoutError's
# traceback ("Failed to send resource request ... safe to ignore"), harmless on a fixed-size cluster: its
# records go to the job's train log (``train_log_path``), not the console.
TRAIN_AUTOSCALING_LOGGER = "ray.train.v2._internal.execution.scaling_policy.autoscaling_coordinator_client"
# Ray Train logs each report() of a training worker ("Reporting training result ...") at INFO on a logger
# named by its file's path, outside the ray.train loggers its LoggingConfig sets.
TRAIN_REPORT_MODULE = "ray.train.v2._internal.execution.context"


def train_report_logger() -> str:
    """The name of the logger of Ray Train's "Reporting training result" line (its module's file path)."""
    import importlib.util

    spec = importlib.util.find_spec(TRAIN_REPORT_MODULE)
    return spec.origin if spec and spec.origin else TRAIN_REPORT_MODULE


def quiet_private_cluster_workers() -> None:
    """Run in every worker process of a private cluster's job (``worker_process_setup_hook``) unless
    verbose: model-loading bars off, the cleaner's retries and the report lines (above) silent. (Ray
    Train's other INFO lines follow its ``LoggingConfig``, which ``finetune`` sets: Train configures its
    loggers after this hook.)"""
    import ray

    os.environ.update(worker_env(verbose=False))
    # The cleaner finds "the" cluster by RAY_ADDRESS, else by looking for Ray on this machine: with
    # another one running there (a second job, a test suite) it raised "Found multiple active Ray
    # instances" and printed its traceback. Its own cluster is the one to ask.
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    logging.getLogger(TRAIN_CLEANER_LOGGER).setLevel(logging.ERROR)
    _divert_to(logging.getLogger(TRAIN_AUTOSCALING_LOGGER), train_log_path())
    logging.getLogger(train_report_logger()).setLevel(QUIET_LEVEL)


def worker_env(verbose: bool) -> dict[str, str]:
    """Environment for engine replicas: no model-loading progress bars unless verbose."""
    return {} if verbose else {"HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def quiet_ray_data(verbose: bool) -> None:
    """Ray Data's driver-side INFO lines, progress blocks and per-operator progress bars: shown only
    when verbose (bonito-ray's own progress line says the same, once)."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.DEBUG if verbose else QUIET_LEVEL)
    DataContext.get_current().enable_progress_bars = verbose
    if not verbose:
        from ray.util.debug import log_once

        log_once("ray_data_progress_manager_disabled")  # spends Ray's one "progress bars disabled" warning
        log_once("cpu_warning")  # and its "no available CPUs" (module docstring)
    starvation = logging.getLogger(RAY_DATA_STARVATION_LOGGER)
    if verbose:
        starvation.removeFilter(_STARVATION_NOTICE_TO_FILE)
    elif _STARVATION_NOTICE_TO_FILE not in starvation.filters:
        starvation.addFilter(_STARVATION_NOTICE_TO_FILE)


RAY_DATA_STARVATION_LOGGER = "ray.data._internal.execution.resource_manager"
RAY_DATA_STARVATION_NOTICE = "Cluster resources are not enough to run any task from"


class _StarvationNoticeToFile(logging.Filter):
    """Marks Ray Data's starvation warning (module docstring) hidden: Ray Data's console handler drops
    what is so marked, its ``ray-data.log`` handler keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(RAY_DATA_STARVATION_NOTICE):
            record.hide = True
        return True


_STARVATION_NOTICE_TO_FILE = _StarvationNoticeToFile()


class _TokenAuthOnNotice(logging.Filter):
    """Drops Ray's notice that it turned token authentication on (its default); the warning that a
    cluster runs *without* authentication is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_AUTH_ON_NOTICE)


_TOKEN_NOTICE_FILTER = _TokenAuthOnNotice()


def quiet_token_auth_notice(verbose: bool) -> None:
    """Ray's "Token authentication is enabled" notice: shown only when verbose. (Setting
    ``RAY_AUTH_MODE=token`` ourselves would also silence it, but Ray caches its auth mode at import,
    so a cluster started after that would refuse its own driver.)"""
    auth_logger = logging.getLogger(TOKEN_AUTH_LOGGER)
    if verbose:
        auth_logger.removeFilter(_TOKEN_NOTICE_FILTER)
    else:
        auth_logger.addFilter(_TOKEN_NOTICE_FILTER)


class KeepDriverLogging:
    """Context manager: ``ray.init`` with a logging config reconfigures the driver's root logger too;
    the driver keeps its own (bonito-ray's handler and level) and only Ray's processes are quieted."""

    def __enter__(self) -> "KeepDriverLogging":
        root = logging.getLogger()
        self.level, self.handlers = root.level, list(root.handlers)
        return self

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        root.setLevel(self.level)
        for handler in list(root.handlers):
            if handler not in self.handlers:
                root.removeHandler(handler)


# --- vLLM engine replicas' output: the job's engine log, not the console ----------------------------------------

# In the name of every actor that holds a vLLM engine: ray.data.llm's engine stage class (Ray names an
# actor pool's actors "MapWorker(MapBatches(<class>))").
ENGINE_REPLICA_CLASS = "vLLMEngineStageUDF"
# The driver's own loggers of vLLM and of ray.data.llm (which imports vLLM and looks the model up).
ENGINE_LOGGERS = ("vllm", "ray.llm")
# Ray's handler, in the driver, that prints its workers' streamed stdout and stderr (ray/_private/worker.py).
RAY_PRINT_LOGS = "ray_print_logs"
# The one Ray line a quiet good run still prints (module docstring): for the tests that count the console.
RAY_RESTARTABLE_ACTOR_NOTICE = "has constructor arguments in the object store and max_restarts > 0"


def engine_log_path() -> Path | None:
    """The job's engine log: a file in Ray's log folder of the driver's node, named after the job (None for a
    driver without one: a Ray Client's)."""
    return job_log_path("vllm")


def job_log_path(kind: str) -> Path | None:
    """``bonito-ray-<kind>-<job id>.log`` in Ray's log folder of this process's node (None for a process
    without one: a Ray Client driver)."""
    import ray
    from ray._private.worker import global_worker

    if global_worker.node is None:
        return None
    job = ray.get_runtime_context().get_job_id()
    return Path(global_worker.node.get_logs_dir_path()) / f"bonito-ray-{kind}-{job}.log"


def train_log_path() -> Path | None:
    """The job's train log, beside its engine log: Ray Train's records that a good run need not show
    (``TRAIN_AUTOSCALING_LOGGER``), from this process."""
    return job_log_path("train")


class _DivertToFile(logging.Filter):
    """Writes each record of its logger to a file and stops it there. A filter, not a handler: Ray Train sets
    up its loggers after the worker's setup hook, and that resets the handlers and propagation of the
    ``ray.train`` loggers' children (``logging.config.dictConfig``), not their filters."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.file = logging.FileHandler(path, encoding="utf-8", delay=True)
        self.file.setFormatter(logging.Formatter("(pid %(process)d) %(asctime)s %(levelname)s %(name)s: %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        self.file.handle(record)
        return False


def _divert_to(train_logger: logging.Logger, path: Path | None) -> None:
    """``train_logger``'s records go to ``path`` only (None: as before)."""
    if path is not None and not any(isinstance(f, _DivertToFile) for f in train_logger.filters):
        train_logger.addFilter(_DivertToFile(path))


class _EngineOutput:
    """Ray's printer of its workers' streamed output, wrapped: batches from vLLM engine replicas are appended
    to the engine log (each line prefixed with the replica's pid and node), everything else is printed.
    (Ray's dispatcher calls it under its lock, one batch at a time.)"""

    def __init__(self, printer, path: Path) -> None:
        self.printer, self.path = printer, path

    def __call__(self, batch: dict) -> None:
        if ENGINE_REPLICA_CLASS not in (batch.get("actor_name") or ""):
            self.printer(batch)
            return
        source = f"(pid={batch.get('pid')} ip={batch.get('ip')}{' stderr' if batch.get('is_err') else ''}) "
        with open(self.path, "a", encoding="utf-8") as log:
            log.writelines(source + line + "\n" for line in batch.get("lines", []))


def route_engine_output(verbose: bool) -> Path | None:
    """Send what vLLM engine replicas print, and the driver's vLLM and ray.data.llm log records, to the job's
    engine log (``engine_log_path``) instead of the console; returns its path. Call it in the driver once
    connected and before ray.data.llm is imported (its loggers then log through ``ray.llm``'s handler).
    Verbose, or with Ray's streaming off (``log_to_driver=False``) or no log folder, everything stays as Ray
    has it: None."""
    import ray
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as streams

    if not ray.is_initialized():  # ray.data.llm would start a cluster of its own: nothing to route yet
        return None
    path = None if verbose else engine_log_path()
    with streams._lock:  # swapped in place, under Ray's own lock: no batch falls between two printers
        printer = dict(streams.handlers).get(RAY_PRINT_LOGS)
        if printer is None:
            path = None
        elif not isinstance(printer, _EngineOutput) or printer.path != path:
            printer = getattr(printer, "printer", printer)
            printer = printer if path is None else _EngineOutput(printer, path)
            streams.handlers = [(name, printer if name == RAY_PRINT_LOGS else handler)
                                for name, handler in streams.handlers]
    for name in ENGINE_LOGGERS:
        _log_to(logging.getLogger(name), path)
    return path


class _EngineLogHandler(logging.FileHandler):
    """The driver's engine loggers' handler: their records in the engine log. It keeps what it changed on its
    logger (``propagate``, level) to give it back."""

    def __init__(self, path: Path, engine_logger: logging.Logger) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.setFormatter(logging.Formatter("(driver) %(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.saved = engine_logger.propagate, engine_logger.level


def _log_to(engine_logger: logging.Logger, path: Path | None) -> None:
    """``engine_logger``'s records (INFO and up) go to ``path`` only; None: as they went before."""
    for handler in [h for h in engine_logger.handlers if isinstance(h, _EngineLogHandler)]:
        engine_logger.removeHandler(handler)
        handler.close()
        engine_logger.propagate, level = handler.saved
        engine_logger.setLevel(level)
    if path is not None:
        engine_logger.addHandler(_EngineLogHandler(path, engine_logger))
        engine_logger.propagate = False
        engine_logger.setLevel(logging.INFO)


@contextlib.contextmanager
def naming_this_cluster():
    """Within it, ``RAY_ADDRESS`` names the cluster the driver is connected to (as it was after): a
    ``ray.init()`` called again (ray.data.llm's processor builder calls it) finds that one at once instead
    of looking for clusters on this machine (module docstring)."""
    import ray

    saved = os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = saved
