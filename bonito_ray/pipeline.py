"""The generation job, top to bottom: corpus -> passages -> requests -> engine -> examples -> dataset."""

from __future__ import annotations

import logging
import time

import pyarrow.fs as pafs

from bonito_ray.config import DEMO_MODEL, GenerateConfig
from bonito_ray.corpus import read_passages
from bonito_ray.engines import build_engine_stage
from bonito_ray.report import RunSummary, corpus_reject_counts, write_manifest
from bonito_ray.stages import to_examples, to_requests
from bonito_ray.storage import resolve_filesystem
from bonito_ray.writer import SyntheticDatasetSink

logger = logging.getLogger(__name__)


class OutputExistsError(ValueError):
    """The output location already holds data and ``overwrite`` was not asked for."""


def generate(config: GenerateConfig, overwrite: bool = False) -> RunSummary:
    """Run one generation job on the connected Ray cluster and return its summary."""
    started = time.monotonic()
    if config.model == DEMO_MODEL:
        logger.warning("using the small CPU demo model: its tasks are for trying bonito-ray out. "
                       "For real data use --engine vllm --model BatsResearch/bonito-v1 on GPUs.")
    prepare_output(config.output, overwrite)

    passages = read_passages(config.input, config.context_column, config.output)
    requests = passages.map_batches(
        to_requests,
        batch_format="pyarrow",
        fn_kwargs={"task_types": config.task_types, "n": config.n, "sampling_params": config.sampling_params,
                   "seed": config.seed, "model": config.model},
    )
    generations = build_engine_stage(config)(requests)
    examples = generations.map_batches(to_examples, batch_format="pyarrow")
    sink = SyntheticDatasetSink(config.output)
    examples.write_datasink(sink)

    written = sink.result
    prompts = sum(written["accepted"].values()) + sum(written["rejected"].values())
    summary = RunSummary(
        output=config.output,
        passages=prompts // (len(config.task_types) * config.n),
        prompts=prompts,
        accepted=dict(written["accepted"]),
        rejected=dict(written["rejected"]),
        corpus_rejected=dict(corpus_reject_counts(config.output)),
        input_tokens=written["input_tokens"],
        generated_tokens=written["generated_tokens"],
        wall_seconds=round(time.monotonic() - started, 3),
        files=sorted(written["files"], key=lambda f: f["path"]),
    )
    write_manifest(summary, config.to_dict())
    return summary


def prepare_output(output_uri: str, overwrite: bool) -> None:
    """Refuse to mix a new dataset into an existing one; with ``overwrite``, delete the old one."""
    fs, path = resolve_filesystem(output_uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type == pafs.FileType.File:
        raise OutputExistsError(f"output {output_uri} is a file, not a directory")
    if not fs.get_file_info(pafs.FileSelector(path)):
        return
    if not overwrite:
        raise OutputExistsError(f"output {output_uri} already holds data; choose another location or pass --overwrite")
    logger.warning("--overwrite: deleting the existing contents of %s", output_uri)
    fs.delete_dir_contents(path)
