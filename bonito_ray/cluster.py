"""Connecting to Ray: the cluster named, the one a submitted job runs in, else a private local one.

Which cluster a job uses is never a guess: ``--ray-address`` names it (``auto`` joins a cluster
running on this machine, ``local`` starts a fresh one, anything else is its address); with none,
``RAY_ADDRESS`` does (as under ``ray job submit``); with neither, a private local cluster is
started. A job never joins someone else's cluster because it happened to be running.

Private corpora never leave the cluster: every place that can report usage (Ray, the HF hub
client, vLLM) is switched off in the driver, in a local cluster it starts (its workers inherit the
driver's environment), and through the engine stages' runtime env on a cluster it joins.

A private cluster on a busy machine can be slow to come up: Ray's driver waits 30 s for its node to
register, and then fails with a traceback ("The current node timed out during startup"), leaving the
processes it started behind (alive, they held the command's exit for minutes). Here the wait is longer
(``START_WAIT_SECONDS``), a start that times out is cleaned up and tried once more, and a second
timeout is a ``ClusterStartError``: one line that says what to do.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from bonito_ray import console, interrupt
from bonito_ray.errors import UserError

# Ray is imported by the functions that use it: the CLI imports this module, and `--help` must not wait for Ray.
if TYPE_CHECKING:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

logger = logging.getLogger(__name__)

PRIVACY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
LOCAL = "local"  # the address that starts a private local cluster
ADDRESS_ENV = "RAY_ADDRESS"  # set by `ray job submit` in the job's driver

# How long a private cluster's node may take to register. Ray's driver polls for 30 s (a constant in
# ray/_private/node.py), each poll waiting up to Ray's `raylet_start_wait_time_s` (read from this
# variable by Ray's C++ core, in the driver and in the node's processes; its default is 10 s): so the
# driver waits max(30 s, this). A value the user set is kept.
START_WAIT_ENV = "RAY_raylet_start_wait_time_s"
START_WAIT_SECONDS = 60
START_ATTEMPTS = 2  # a start that timed out is tried once more before the job fails
START_TIMED_OUT = "timed out during startup"  # Ray's message (a bare Exception) when the node never registered
STOP_GRACE_SECONDS = 5.0  # what a failed start left gets to exit on SIGTERM before SIGKILL
# Set to 1 by tests of runs that must end before any cluster work (a refused run, a completed rerun): one
# that connects anyway fails at once, instead of waiting on a cluster, or starting one.
FORBID_ENV = "BONITO_RAY_FORBID_CLUSTER"


class ClusterStartError(UserError, RuntimeError):
    """A private Ray cluster did not come up on this machine."""


def resolve_address(address: str | None) -> str:
    """The Ray address a job uses: ``address``, else ``RAY_ADDRESS``, else ``local``."""
    return address or os.environ.get(ADDRESS_ENV) or LOCAL


def connect(address: str | None = None, verbose: bool = False) -> None:
    """Connect to the Ray cluster ``resolve_address(address)`` names (a no-op when already connected).

    Ray's own logs and progress are quiet unless ``verbose`` (see :mod:`bonito_ray.console`)."""
    import ray

    if os.environ.get(FORBID_ENV) == "1":
        raise RuntimeError(f"this run is connecting to a Ray cluster, which {FORBID_ENV}=1 forbids: "
                           "it was to end before any cluster work")
    os.environ.update(PRIVACY_ENV)
    console.quiet_ray_data(verbose)
    if ray.is_initialized():
        return
    address = resolve_address(address)
    console.quiet_token_auth_notice(verbose)
    with console.KeepDriverLogging(), interrupt.kept_across_ray_init():
        if address == LOCAL:
            _start_private(verbose)
        else:
            ray.init(address=address, log_to_driver=True, logging_config=console.ray_logging_config(verbose))
    if address == LOCAL:
        logger.info("started a private local Ray cluster")
    else:
        logger.info("joined the Ray cluster at %s", address)


def _start_private(verbose: bool) -> None:
    """Start a private local cluster, its Ray logs quiet unless ``verbose`` (see ``start_local``)."""
    setup = {} if verbose else {"worker_process_setup_hook": console.quiet_private_cluster_workers}
    start_local(include_dashboard=False, log_to_driver=True, logging_config=console.ray_logging_config(verbose),
                runtime_env=setup)


def start_local(**init_args: Any) -> None:
    """``ray.init`` a fresh local cluster with ``init_args``, trying once more if its node times out;
    ClusterStartError if it never comes up. (The test suite starts its own cluster with it too.)"""
    import ray

    os.environ.setdefault(START_WAIT_ENV, str(START_WAIT_SECONDS))
    for attempt in range(1, START_ATTEMPTS + 1):
        before = _descendants()
        try:
            ray.init(address=LOCAL, **init_args)
            return
        except Exception as err:  # noqa: BLE001 - Ray's timeout is a bare Exception, told by its message
            if START_TIMED_OUT not in str(err):
                raise
            # Ray leaves the processes of a start that failed running: end them, so that neither the
            # next try nor this command's exit waits on them.
            _stop_processes(_descendants() - before)
            logger.warning("the private Ray cluster did not start within %ss (attempt %d of %d)",
                           os.environ[START_WAIT_ENV], attempt, START_ATTEMPTS)
    raise ClusterStartError(
        f"could not start a private Ray cluster: its node did not come up in time, {START_ATTEMPTS} times "
        f"(the machine is probably too busy; {START_WAIT_ENV}={os.environ[START_WAIT_ENV]} seconds is the wait). "
        f"Rerun when it is less loaded, or pass --ray-address to join a running Ray cluster")


# psutil: Ray ships it (ray/thirdparty_files, on the path once ray is imported) to watch its own processes.

def _descendants() -> set:
    import psutil

    return set(psutil.Process().children(recursive=True))


def _stop_processes(processes: set) -> None:
    """SIGTERM ``processes``, then SIGKILL those still there after STOP_GRACE_SECONDS; returns once all are gone."""
    import psutil

    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE_SECONDS)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=STOP_GRACE_SECONDS)


def on_driver_node() -> NodeAffinitySchedulingStrategy:
    """Where a job's stateful coordination actors run (dedup index, error budget): the driver's node.

    An actor's state is lost with its node. On the driver's node it is lost only with the driver,
    which ends the job anyway; anywhere else, losing one worker node would fail the whole job.
    The actors take no CPU, so they fit a head node that runs no work (``num-cpus: 0``).
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
