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

Left as it is, explained here once: the error-level ``core_worker.cc`` line "Actor ... has constructor
arguments in the object store and max_restarts > 0" is Ray Data's own actor pool (it passes its map
function by reference and restarts actors); it is harmless while the driver runs, and turning restarts
off to avoid it would lose fault tolerance.
"""

from __future__ import annotations

import logging
import os

import ray

QUIET_LEVEL = "WARNING"
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
TOKEN_AUTH_ON_NOTICE = "Token authentication is enabled for this Ray cluster"


def ray_logging_config(verbose: bool) -> ray.LoggingConfig | None:
    """The job-wide logging config for Ray's processes: None (Ray's own) when verbose."""
    return None if verbose else ray.LoggingConfig(encoding="TEXT", log_level=QUIET_LEVEL)


# Ray Train's placement-group cleaner asks Ray's state API, which the dashboard serves, whether the
# trainer still runs; on a cluster without a dashboard (the private one) every try, once a second, is
# a WARNING. What it would clean after a crashed driver goes away with a private cluster anyway.
TRAIN_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
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
