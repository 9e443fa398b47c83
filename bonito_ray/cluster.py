"""Connecting to Ray: join the running cluster if there is one, else start a local one.

Private corpora never leave the cluster: every place that can report usage (Ray, the HF hub
client, vLLM) is switched off in the driver, in a local cluster it starts (its workers inherit the
driver's environment), and through the engine stages' runtime env on a cluster it joins.
"""

from __future__ import annotations

import logging
import os

import ray

logger = logging.getLogger(__name__)

PRIVACY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def connect(address: str | None = None) -> None:
    """Connect to Ray at ``address``; with none, join a running cluster or start a local one."""
    os.environ.update(PRIVACY_ENV)
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    try:
        ray.init(address="auto", log_to_driver=True)
        logger.info("joined the running Ray cluster")
    except ConnectionError:
        ray.init(include_dashboard=False)
        logger.info("no Ray cluster found: started a local one")
