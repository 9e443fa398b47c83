"""The generation job, top to bottom:

corpus -> documents -> passages (clean, chunk, dedup) -> requests -> engine -> examples -> dataset.
"""

from __future__ import annotations

import logging
import time

import pyarrow.fs as pafs

from bonito_ray.config import DEMO_MODEL, ConfigError, GenerateConfig
from bonito_ray.corpus import read_documents
from bonito_ray.dedup import create_shards, drop_duplicates
from bonito_ray.engines import build_engine_stage
from bonito_ray.passages import load_tokenizer, passage_token_budget, prepare_passages
from bonito_ray.quarantine import CLEAN_STAGE, CORPUS_STAGE, reject_counts
from bonito_ray.report import RunSummary, write_manifest
from bonito_ray.stages import to_examples, to_requests
from bonito_ray.storage import resolve_filesystem
from bonito_ray.writer import SyntheticDatasetSink

logger = logging.getLogger(__name__)

DEDUP_SHARDS = 2


class OutputExistsError(ValueError):
    """The output location already holds data and ``overwrite`` was not asked for."""


def generate(config: GenerateConfig, overwrite: bool = False) -> RunSummary:
    """Run one generation job on the connected Ray cluster and return its summary."""
    started = time.monotonic()
    if config.model == DEMO_MODEL:
        logger.warning("using the small CPU demo model: its tasks are for trying bonito-ray out. "
                       "For real data use --engine vllm --model BatsResearch/bonito-v1 on GPUs.")
    documents = read_documents(config.input, config.context_column, config.output, config.s3_endpoint)
    passage_tokens = config.passage_tokens or default_passage_tokens(config)
    prepare_output(config.output, overwrite, config.s3_endpoint)
    storage = {"output_uri": config.output, "s3_endpoint": config.s3_endpoint}

    passages = documents.map_batches(
        prepare_passages, batch_format="pyarrow",
        fn_kwargs={"tokenizer_source": config.model, "max_tokens": passage_tokens, "overlap": config.passage_overlap,
                   "min_chars": config.min_passage_chars, "max_chars": config.max_passage_chars, **storage})
    if config.dedup:
        passages = passages.map_batches(drop_duplicates, batch_format="pyarrow",
                                        fn_kwargs={"shards": create_shards(DEDUP_SHARDS), **storage})
    requests = passages.map_batches(
        to_requests, batch_format="pyarrow",
        fn_kwargs={"task_types": config.task_types, "n": config.n, "sampling_params": config.sampling_params,
                   "seed": config.seed, "model": config.model})
    generations = build_engine_stage(config)(requests)
    examples = generations.map_batches(to_examples, batch_format="pyarrow")
    sink = SyntheticDatasetSink(config.output, config.rows_per_file, config.s3_endpoint)
    examples.write_datasink(sink)

    written = sink.result
    prompts = sum(written["accepted"].values()) + sum(written["rejected"].values())
    summary = RunSummary(
        output=config.output,
        passages=prompts // (len(config.task_types) * config.n),
        prompts=prompts,
        accepted=dict(written["accepted"]),
        rejected=dict(written["rejected"]),
        corpus_rejected=dict(reject_counts(config.output, CORPUS_STAGE, config.s3_endpoint)),
        passages_dropped=dict(reject_counts(config.output, CLEAN_STAGE, config.s3_endpoint)),
        input_tokens=written["input_tokens"],
        generated_tokens=written["generated_tokens"],
        wall_seconds=round(time.monotonic() - started, 3),
        files=sorted(written["files"], key=lambda f: f["path"]),
    )
    write_manifest(summary, config.to_dict(), config.s3_endpoint)
    return summary


def default_passage_tokens(config: GenerateConfig) -> int:
    """The passage length that keeps prompt + max_tokens inside the generator's window."""
    if config.engine == "vllm":
        from bonito_ray.engines.vllm import DEFAULT_ENGINE_KWARGS

        window = {**DEFAULT_ENGINE_KWARGS, **config.engine_kwargs}["max_model_len"]
    try:
        if config.engine != "vllm":
            from transformers import AutoConfig

            window = getattr(AutoConfig.from_pretrained(config.model), "max_position_embeddings", None)
        tokenizer = load_tokenizer(config.model)
    except OSError as err:
        raise ConfigError(f"cannot load model {config.model!r}: {err}") from err
    try:
        return passage_token_budget(tokenizer, window, config.max_tokens)
    except ValueError as err:
        raise ConfigError(str(err)) from err


def prepare_output(output_uri: str, overwrite: bool, s3_endpoint: str | None = None) -> None:
    """Refuse to mix a new dataset into an existing one; with ``overwrite``, delete the old one."""
    fs, path = resolve_filesystem(output_uri, s3_endpoint)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type == pafs.FileType.File:
        raise OutputExistsError(f"output {output_uri} is a file, not a directory")
    if not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        return
    if not overwrite:
        raise OutputExistsError(f"output {output_uri} already holds data; choose another location or pass --overwrite")
    logger.warning("--overwrite: deleting the existing contents of %s", output_uri)
    fs.delete_dir_contents(path)
