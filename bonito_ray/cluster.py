"""Connecting to Ray: the cluster named, the one a submitted job runs in, else a private local one.

Which cluster a job uses is never a guess: ``--ray-address`` names it (``auto`` joins a cluster
running on this machine, ``local`` starts a fresh one, anything else is its address); with none,
``RAY_ADDRESS`` does (as under ``ray job submit``); with neither, a private local cluster is
started. A job never joins someone else's cluster because it happened to be running.

Private corpora never leave the cluster: every place that can report usage (Ray, the HF hub
client, vLLM) is switched off in the driver, in a local cluster it starts (its workers inherit the
driver's environment), and through the engine stages' runtime env on a cluster it joins.
"""

from __future__ import annotations

import logging
import os

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from bonito_ray import console

logger = logging.getLogger(__name__)

PRIVACY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
LOCAL = "local"  # the address that starts a private local cluster
ADDRESS_ENV = "RAY_ADDRESS"  # set by `ray job submit` in the job's driver


def resolve_address(address: str | None) -> str:
    """The Ray address a job uses: ``address``, else ``RAY_ADDRESS``, else ``local``."""
    return address or os.environ.get(ADDRESS_ENV) or LOCAL


def connect(address: str | None = None, verbose: bool = False) -> None:
    """Connect to the Ray cluster ``resolve_address(address)`` names (a no-op when already connected).

    Ray's own logs and progress are quiet unless ``verbose`` (see :mod:`bonito_ray.console`)."""
    os.environ.update(PRIVACY_ENV)
    console.quiet_ray_data(verbose)
    if ray.is_initialized():
        return
    address = resolve_address(address)
    console.quiet_token_auth_notice(verbose)
    with console.KeepDriverLogging():
        if address == LOCAL:
            setup = {} if verbose else {"worker_process_setup_hook": console.quiet_private_cluster_workers}
            ray.init(address=LOCAL, include_dashboard=False, log_to_driver=True,
                     logging_config=console.ray_logging_config(verbose), runtime_env=setup)
        else:
            ray.init(address=address, log_to_driver=True, logging_config=console.ray_logging_config(verbose))
    if address == LOCAL:
        logger.info("started a private local Ray cluster")
    else:
        logger.info("joined the Ray cluster at %s", address)


def on_driver_node() -> NodeAffinitySchedulingStrategy:
    """Where a job's stateful coordination actors run (dedup index, error budget): the driver's node.

    An actor's state is lost with its node. On the driver's node it is lost only with the driver,
    which ends the job anyway; anywhere else, losing one worker node would fail the whole job.
    The actors take no CPU, so they fit a head node that runs no work (``num-cpus: 0``).
    """
    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
