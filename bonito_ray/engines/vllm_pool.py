"""The ``vllm`` engine kept for a whole job: one engine start, however many Ray Data executions use it.

Ray Data starts a map stage's actors for each execution and ends them with it, so a job that runs its
engine stage many times (SELF-GUIDE: every round, then annotation) loads and compiles the model at every
pass through ray.data.llm's processor (``bonito_ray.engines.vllm``). Here the job holds the replicas:
``num_replicas`` Ray actors, each running the very stage ray.data.llm's processor would run
(``vLLMEngineStageUDF``, reporting to the job's progress), with the processor's arguments, resources and
runtime environment. They are made when the job opens the stage and killed when it closes it: at its end,
also when it fails or is interrupted. They are the driver's own (not detached), so a driver that dies
takes them with it.

Each execution's Ray Data tasks hand their batch to a replica through its handle and wait for its rows,
which go through the processor's preprocess, the engine stage and its postprocess, then the engine row
contract, as ``build_vllm_stage``'s do: the same requests, seeds, CPU settings and ``engine_error`` rows.
A pass's first batch empties the replica's prefix cache, so that each pass meets the engine as a fresh
start did: a resumed job's passes, run without the passes before them, generate what an uninterrupted
job's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from bonito_ray.config import GenerateConfig
from bonito_ray.console import ENGINE_REPLICA_CLASS
from bonito_ray.engine_rows import REQUEST_SCHEMA
from bonito_ray.engines import EngineStage
from bonito_ray.engines.vllm import ENGINE_STAGE, _to_contract, build_vllm_processor, contract_kwargs

logger = logging.getLogger(__name__)

# A replica whose process dies (vLLM exits it on a fatal engine error) is started again, at most this many
# times in a job: a replica that cannot stay up fails the job instead of restarting forever.
REPLICA_RESTARTS = 3
# How long the replicas' engines get to shut down (ending vLLM's own processes) before they are killed anyway.
SHUTDOWN_SECONDS = 60
# Calls a replica takes beside its batches: the pass's cache reset, the shutdown.
CONTROL_CALLS = 2
# The rows of the engine row contract, as they come out of the stage.
CONTRACT_SCHEMA = REQUEST_SCHEMA.append(pa.field("generated_text", pa.string())).append(
    pa.field("num_input_tokens", pa.int64())).append(pa.field("num_generated_tokens", pa.int64())).append(
    pa.field("engine_error", pa.string())).append(pa.field("finish_reason", pa.string()))


class EngineReplica:
    """One engine replica: ray.data.llm's engine stage (``udf``, with the processor's constructor arguments) in
    an actor of the job's. Async, as in Ray Data: the batches in flight on it share its engine."""

    def __init__(self, udf: type, kwargs: dict[str, Any]) -> None:
        self.udf = udf(**kwargs)
        self.pass_number = None
        self.pass_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        # Ray names the actor's streamed output by it; the console sends an engine replica's to the engine log.
        return f"EngineReplica({ENGINE_REPLICA_CLASS})"

    def ready(self) -> bool:
        return True

    async def generate(self, batch: dict[str, Any], pass_number: int) -> list[dict[str, Any]]:
        """The stage's output for ``batch`` (``{data_column: [row, ...]}``) of pass ``pass_number``."""
        await self._begin(pass_number)
        return [out async for out in self.udf(batch)]

    async def _begin(self, pass_number: int) -> None:
        if self.pass_lock is None:
            self.pass_lock = asyncio.Lock()
        async with self.pass_lock:  # the pass's other batches wait for the reset: it needs an idle engine
            if pass_number != self.pass_number:
                await self.udf.llm.engine.reset_prefix_cache()
                self.pass_number = pass_number

    def shutdown(self) -> None:
        self.udf.llm.shutdown()


class EnginePool:
    """The job's engine replicas and the engine stage that sends each execution's batches to them."""

    def __init__(self, config: GenerateConfig, progress: Any = None) -> None:
        import ray

        processor = build_vllm_processor(config, progress=progress)
        engine = processor.get_stage_by_name(ENGINE_STAGE)
        batches = engine.get_dataset_map_batches_kwargs(batch_size=config.batch_size,
                                                        data_column=processor.DATA_COLUMN)
        self.forward = {"preprocess": processor.preprocess, "postprocess": processor.postprocess,
                        "column": processor.DATA_COLUMN, "contract": contract_kwargs(config)}
        self.batch_size, self.passes = config.batch_size, 0
        self.in_flight = config.num_replicas * config.max_concurrent_batches
        self.replicas: list[Any] = []
        self.groups: list[Any] = []
        self.ready: list[Any] = []
        # A pass smaller than the replicas' batches in flight is no fault of its own: Ray Data warns of it on the
        # console at every such pass.
        warnings.filterwarnings("ignore", message=r"The maximum number of concurrent tasks for "
                                                  rf"'MapBatches\({_through_replica.__name__}\)'")
        replica = ray.remote(EngineReplica)
        try:
            for _ in range(config.num_replicas):
                options = replica_options(batches)
                if "ray_remote_args_fn" in batches:  # tensor/pipeline parallel on Ray: a placement group each
                    options.update(batches["ray_remote_args_fn"]())
                    self.groups.append(options["scheduling_strategy"].placement_group)
                self.replicas.append(replica.options(**options).remote(engine.fn, batches["fn_constructor_kwargs"]))
                self.ready.append(self.replicas[-1].ready.remote())
        except BaseException:
            self.close()
            raise
        logger.info("vllm engine: %d replica(s) kept for the whole job", config.num_replicas)

    def stage(self, requests: Any) -> Any:
        """The engine stage: ``requests`` (a dataset of request rows) through the replicas, as generations."""
        from ray.data import TaskPoolStrategy

        self.passes += 1
        return requests.map_batches(_through_replica, batch_size=self.batch_size, batch_format="pyarrow",
                                    fn_kwargs={**self.forward, "replicas": self.replicas, "pass_number": self.passes},
                                    # the replicas hold the engine's resources; a task only waits for one
                                    num_cpus=0, compute=TaskPoolStrategy(size=self.in_flight))

    def close(self) -> None:
        """End the replicas: their engines shut down (those that started, within ``SHUTDOWN_SECONDS``), then
        the actors are killed and their placement groups removed."""
        import ray

        started, _ = ray.wait(self.ready, num_returns=len(self.ready), timeout=0) if self.ready else ([], [])
        up = [r for r, ready in zip(self.replicas, self.ready) if ready in started]
        if up:
            ray.wait([r.shutdown.remote() for r in up], num_returns=len(up), timeout=SHUTDOWN_SECONDS)
        for r in self.replicas:
            ray.kill(r, no_restart=True)
        for group in self.groups:
            ray.util.remove_placement_group(group)
        self.replicas, self.ready, self.groups = [], [], []


def replica_options(batches: dict[str, Any]) -> dict[str, Any]:
    """A replica actor's options from the engine stage's ``map_batches`` arguments (its resources, runtime
    environment and concurrent batches)."""
    options = {k: batches[k] for k in ("num_cpus", "num_gpus", "resources", "accelerator_type", "runtime_env")
               if batches.get(k)}
    return {**options, "max_concurrency": batches["max_concurrency"] + CONTROL_CALLS,
            "max_restarts": REPLICA_RESTARTS}


def _through_replica(table: pa.Table, replicas: list[Any], pass_number: int, preprocess, postprocess,
                     column: str, contract: dict[str, Any]) -> pa.Table:
    """One batch of request rows through a replica (the one its first request id picks: ids are hashes, so the
    replicas get even shares), as engine-contract rows."""
    import ray

    rows = table.to_pylist()
    if not rows:
        return CONTRACT_SCHEMA.empty_table()
    replica = replicas[zlib.crc32(rows[0]["id"].encode()) % len(replicas)]
    # Bounded by the replica's life: a replica that dies fails this task (Ray Data retries it, on the replica
    # started again), and the job's end kills the replicas.
    outputs = ray.get(replica.generate.remote({column: [preprocess(row)[column] for row in rows]}, pass_number))
    generated = [row for out in outputs for row in out.get(column, [])]
    return pa.Table.from_pylist([_to_contract(postprocess({column: row}), **contract) for row in generated],
                                CONTRACT_SCHEMA)


@contextlib.contextmanager
def open_vllm_stage(config: GenerateConfig, progress: Any = None) -> Iterator[EngineStage]:
    """The vllm engine stage for a job that runs it many times: its replicas start once, when first used, and
    end when the ``with`` block does (also on an error or an interrupt)."""
    pool = EnginePool(config, progress)
    try:
        yield pool.stage
    finally:
        pool.close()
