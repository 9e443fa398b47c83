"""Shared fixtures: a real local Ray cluster and tiny models built on the spot."""

from __future__ import annotations

import os

import pytest

from bonito_ray.cluster import PRIVACY_ENV

# Tests never reach a model hub: everything they load is built on the spot.
os.environ["HF_HUB_OFFLINE"] = "1"
from tests import tiny_models


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster on 127.0.0.1 for the whole session."""
    import ray

    os.environ.update(PRIVACY_ENV)
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> str:
    """A tiny model with random weights and a 512-token window."""
    return tiny_models.build_random_model(tmp_path_factory.mktemp("random-model"))
