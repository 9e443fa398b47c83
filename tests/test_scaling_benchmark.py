"""The latency engine (bonito_ray/engines/latency.py) keeps its model and holds no CPU, and the scaling benchmark
(jobs/dev/benchmark_scaling.py) runs at a tiny size, so that neither rots."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from bonito_ray.config import ConfigError, GenerateConfig
from bonito_ray.engines.latency import REPLICA_CPUS, LatencyReplica, batch_seconds, build_latency_stage, replica_rate

ROOT = Path(__file__).resolve().parents[1]


def requests(rows: int, max_tokens: list[int] | None = None) -> pa.Table:
    max_tokens = max_tokens or [256] * rows
    return pa.table({"context": [f"word{i} " * 10 for i in range(rows)], "sample_index": [0] * rows,
                     "task_type": ["ynqa"] * rows, "prompt": ["p"] * rows,
                     "sampling_params": [{"max_tokens": m, "temperature": 0.5, "top_p": 0.9, "seed": i}
                                         for i, m in enumerate(max_tokens)]})


class FakeSleep:
    """An injected ``sleep`` that records what it was asked for and how many sleepers there were at once."""

    def __init__(self) -> None:
        self.slept, self.running, self.most_running = [], 0, 0

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        for _ in range(3):  # let every batch that may start do so before this one ends
            await asyncio.sleep(0)
        self.running -= 1


async def collect(replica: LatencyReplica, batch: pa.Table) -> list[pa.Table]:
    return [out async for out in replica(batch)]


def test_a_batch_takes_the_models_time_and_the_replica_runs_at_most_its_concurrent_batches():
    clock = FakeSleep()
    replica = LatencyReplica(concurrent_batches=2, latency_s=1.5, token_latency_s=0.01, sleep=clock)

    async def five_batches():
        return await asyncio.gather(*(collect(replica, requests(4, [100, 300, 50, 7])) for _ in range(5)))

    outs = asyncio.run(five_batches())
    # Each batch: latency + per token x its longest request's max_tokens (its rows decode side by side).
    assert clock.slept == [pytest.approx(1.5 + 0.01 * 300)] * 5
    assert clock.most_running == 2  # five offered at once, two at a time: the rate replica_rate counts on
    assert all(len(out) == 1 and out[0].num_rows == 4 and out[0]["generated_text"].null_count == 0 for out in outs)


def test_a_replicas_measured_time_for_its_batches_is_the_models():
    """Real sleeps: four batches, two at a time, of 0.2 s each take two rounds (never less; generous above)."""
    replica = LatencyReplica(concurrent_batches=2, latency_s=0.2)

    async def four_batches():
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(collect(replica, requests(3)) for _ in range(4)))
        return loop.time() - started

    seconds = asyncio.run(four_batches())
    assert 0.4 <= seconds < 0.4 + 5.0


def test_the_replicas_ask_for_no_cpu_and_the_ideal_rate_is_batch_times_concurrency_over_latency():
    config = GenerateConfig(input="in", output="out", engine="latency", num_replicas=3, batch_size=16,
                            max_concurrent_batches=8, max_tokens=200,
                            engine_kwargs={"latency_s": 1.0, "token_latency_s": 0.005})
    asked = {}

    class Requests:
        def map_batches(self, fn, **kwargs):
            asked.update(kwargs)
            return self

    build_latency_stage(config)(Requests())
    assert REPLICA_CPUS == 0 and asked["num_cpus"] == 0
    assert asked["compute"].min_size == asked["compute"].max_size == 3 and asked["batch_size"] == 16
    assert asked["compute"].max_concurrent_calls_per_actor == 8
    assert batch_seconds(200, 1.0, 0.005) == pytest.approx(2.0)
    assert replica_rate(config) == pytest.approx(16 * 8 / 2.0)


@pytest.mark.parametrize("kwargs, says", [({"latency": 1}, "latency not known"), ({"latency_s": -1}, ">= 0"),
                                          ({"latency_s": "1"}, ">= 0"), ({"latency_s": 0}, "above 0")])
def test_bad_latency_settings_are_refused_in_one_line(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        GenerateConfig(input="in", output="out", engine="latency", engine_kwargs=kwargs)


def test_the_scaling_benchmark_runs_at_a_tiny_size(random_model, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "jobs/dev/benchmark_scaling.py", "--replicas", "1", "2", "--prompts", "40",
                           "--latency-s", "0.2", "--model", random_model, "--workdir", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    points = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [p["replicas"] for p in points] == [1, 2] and all(p["prompts"] == 40 for p in points)
    # ideal = replicas x 16 rows x 8 batches / 0.2 s; measured end to end is below it, above nothing
    assert [p["ideal_per_s"] for p in points] == [640.0, 1280.0]
    assert all(0 < p["efficiency"] <= 1 for p in points)
    assert "| replicas | prompts | wall s |" in done.stdout
