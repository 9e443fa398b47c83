"""The ``latency`` engine: the echo engine's generations after a model's latency, asleep, for scaling benchmarks.

A replica runs up to ``max_concurrent_batches`` batches of ``batch_size`` rows at a time (vLLM's settings), and
each batch takes ``latency_s + token_latency_s * max_tokens`` seconds (its rows decode side by side, as on a GPU:
a batch takes as long as its longest request, cut at ``max_tokens``), spent in ``asyncio.sleep``, not computing.
So one replica's throughput is known exactly (``replica_rate``): batch_size * max_concurrent_batches / that
time, in requests per second; and a replica holds no CPU (``REPLICA_CPUS``), so that many fit on a small
machine and what the benchmark measures is the rest of the job: Ray Data's scheduling, the driver, the writer.
Set through ``engine_kwargs``: ``{"latency_s": 2.0, "token_latency_s": 0.0}`` (the defaults). It produces no
real tasks: never use it for a dataset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bonito_ray.config import ConfigError, GenerateConfig
from bonito_ray.engines import EngineStage
from bonito_ray.engines.echo import echo_generations
from bonito_ray.generators import DEFAULT_GENERATOR
from bonito_ray.progress import reporting

REPLICA_CPUS = 0  # a replica sleeps: it holds none of the CPUs the job's other stages run on
DEFAULTS = {"latency_s": 2.0, "token_latency_s": 0.0}


def latency_settings(config: GenerateConfig) -> dict[str, float]:
    """The model's settings: ``DEFAULTS`` with ``config.engine_kwargs`` on top."""
    return {**DEFAULTS, **config.engine_kwargs}


def batch_seconds(max_tokens: int, latency_s: float, token_latency_s: float) -> float:
    """The model's time for one batch whose longest request may generate ``max_tokens`` tokens."""
    return latency_s + token_latency_s * max_tokens


def replica_rate(config: GenerateConfig) -> float:
    """One replica's throughput in requests per second, all batches full: the ideal the benchmark compares with."""
    settings = latency_settings(config)
    seconds = batch_seconds(config.max_tokens, settings["latency_s"], settings["token_latency_s"])
    return config.batch_size * config.max_concurrent_batches / seconds


def check_latency_config(config: GenerateConfig) -> None:
    """The latency engine's settings (``engine_kwargs``), checked when the configuration is built."""
    if config.engine != "latency":
        return
    unknown = sorted(set(config.engine_kwargs) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"engine_kwargs {', '.join(unknown)} not known to --engine latency; "
                          f"it takes {', '.join(DEFAULTS)}")
    settings = latency_settings(config)
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"engine_kwargs {name} must be a number of seconds >= 0, not {value!r}")
    if batch_seconds(config.max_tokens, **settings) <= 0:
        raise ConfigError("--engine latency needs latency_s or token_latency_s above 0 (a batch must take time)")


def build_latency_stage(config: GenerateConfig, progress=None) -> EngineStage:
    """An engine stage of ``num_replicas`` sleeping replicas (0 CPUs each) reporting to ``progress``."""
    from ray.data import ActorPoolStrategy  # here: the settings' check, on every configuration, needs no Ray

    settings = latency_settings(config)

    def stage(requests):
        return requests.map_batches(
            reporting(LatencyReplica, progress),
            fn_constructor_kwargs={"generator": config.generator, "concurrent_batches": config.max_concurrent_batches,
                                   **settings},
            batch_size=config.batch_size, batch_format="pyarrow",
            # As ray.data.llm runs vLLM's stage: max_concurrent_batches calls at once per replica, twice as many
            # queued, so that a replica is never idle waiting for its next block.
            compute=ActorPoolStrategy(size=config.num_replicas,
                                      max_concurrent_calls_per_actor=config.max_concurrent_batches,
                                      max_tasks_in_flight_per_actor=2 * config.max_concurrent_batches),
            num_cpus=REPLICA_CPUS)

    return stage


class LatencyReplica:
    """One replica: echoes each batch after the model's time, at most ``concurrent_batches`` batches at a time
    (Ray Data may hand an async actor more: the rest wait their turn, as requests queue in vLLM)."""

    def __init__(self, generator: str = DEFAULT_GENERATOR, concurrent_batches: int = 1, latency_s: float = 0.0,
                 token_latency_s: float = 0.0, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.generator, self.latency_s, self.token_latency_s = generator, latency_s, token_latency_s
        self.concurrent_batches, self.sleep = concurrent_batches, sleep
        self._slots: asyncio.Semaphore | None = None  # made in the actor's event loop, at the first batch

    async def __call__(self, batch: pa.Table):
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrent_batches)
        max_tokens = pc.max(pc.struct_field(batch["sampling_params"], "max_tokens")).as_py() or 0
        async with self._slots:
            await self.sleep(batch_seconds(max_tokens, self.latency_s, self.token_latency_s))
        yield echo_generations(batch, self.generator)
