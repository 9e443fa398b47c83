"""The planner's calibration: the configured engine measured on passages of the corpus, through the job itself.

Generation jobs (``bonito_ray.job.generate``, what ``bonito-ray generate`` runs) on one replica, each into a
temporary corpus and output removed afterwards (``bonito_ray.workspace.Workspace``): a quarter of the passages
(at least one engine batch), the same again, then all of them. A job's time is its start-up (planning, reading, the engine's start, the
commit) plus its generation. The first job in a process also pays first imports and worker starts, as a
``bonito-ray generate`` command does: it gives that start-up. The other two, after it, differ in size only:
their difference is the generation's rate alone (``plan.fit_rate``). Every request of the large job gives its
output tokens: their mean, with its interval, is the plan's tokens per request.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import pyarrow as pa
import pyarrow.parquet as pq

from bonito_ray import cluster, job
from bonito_ray.config import ConfigError, GenerateConfig
from bonito_ray.ledger import SIZE_MTIME
from bonito_ray.plan import Calibration, Run, mean_with_interval
from bonito_ray.schema import is_data_file
from bonito_ray.storage import list_files
from bonito_ray.table_io import CORPUS_COLUMN
from bonito_ray.workspace import Workspace

logger = logging.getLogger(__name__)

SMALL_SHARE = 4  # the first job has 1/SMALL_SHARE of the passages


def calibration_passages(prompts: int, config: GenerateConfig) -> int:
    """How many passages give ``prompts`` requests (passages x task types x n), at least one."""
    return max(1, math.ceil(prompts / (len(config.task_types) * config.n)))


def calibrate(config: GenerateConfig, passages: list[str], workdir: str | None = None) -> Calibration:
    """Run ``config``'s job on one replica over a quarter of ``passages``, the same again, then all of them (one
    job when they are too few for two sizes); what they took."""
    started = time.monotonic()
    cluster.connect(config.ray_address, verbose=config.verbose)  # Ray's start, when it is not running yet
    ray_start = time.monotonic() - started
    _check_workdir_reaches_every_node(workdir)
    small = _small_job_passages(config, len(passages))
    first, tokens = _timed_job(config, passages[:small], workdir)
    again = large = None
    if small < len(passages):
        again, _ = _timed_job(config, passages[:small], workdir)
        large, tokens = _timed_job(config, passages, workdir)
    if not tokens:
        raise ConfigError("calibration: no request reached the engine (every passage was rejected before it)")
    return Calibration(first, again, large, mean_with_interval(tokens), ray_start)


def _small_job_passages(config: GenerateConfig, passages: int) -> int:
    """The small job's passages: a quarter, and at least one full engine batch (--batch-size prompts), so that
    both jobs run full batches and their difference is the rate of full batches; a quarter (at least one) when
    the passages are too few for that."""
    batch = math.ceil(config.batch_size / (len(config.task_types) * config.n))
    small = max(1, passages // SMALL_SHARE, batch)
    return small if small < passages else max(1, passages // SMALL_SHARE)


def _timed_job(config: GenerateConfig, passages: list[str], workdir: str | None) -> tuple[Run, list[int]]:
    """One job over ``passages``: its Run, and the output tokens of each request that reached the engine."""
    with Workspace(pa.table({CORPUS_COLUMN: pa.array(passages, pa.string())}), workdir, config.s3_endpoint) as work:
        run_config = dataclasses.replace(
            config, input=work.corpus_uri, output=work.output_uri, context_column=CORPUS_COLUMN, num_replicas=1,
            incremental=False, incremental_check=SIZE_MTIME, card_samples=0)
        started = time.monotonic()
        summary = job.generate(run_config)
        seconds = time.monotonic() - started
        generated = _generated_tokens(work.fs, work.output_root)
    logger.info("plan: calibration job of %d prompts: %d output tokens in %.1f s", summary.prompts,
                summary.generated_tokens, seconds)
    return Run(summary.prompts, summary.generated_tokens, seconds), generated


def _generated_tokens(fs, root: str) -> list[int]:
    """The output tokens of every request the committed dataset at ``root`` holds (accepted or not; the rows
    set aside before the engine have none)."""
    tokens: list[int] = []
    for path in list_files(fs, root):
        if is_data_file(path):
            column = pq.read_table(path, filesystem=fs, columns=["num_generated_tokens"]).column(0)
            tokens += [t for t in column.to_pylist() if t is not None]
    return tokens


def _check_workdir_reaches_every_node(workdir: str | None) -> None:
    """The driver's temporary folder is not on a multi-node cluster's other nodes, whose workers read it."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and workdir is None:
        raise ConfigError(f"--calibrate: the Ray cluster has {len(nodes)} nodes, and the driver's temporary folder "
                          "is not on the others; pass --workdir with a location every node reaches "
                          "(s3://bucket/prefix, or a shared folder)")
