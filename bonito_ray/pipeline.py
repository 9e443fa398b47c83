"""The generation job, top to bottom:

corpus -> documents -> passages (clean, chunk, dedup) -> requests -> engine -> examples -> dataset,
all written to a staging dir, then committed (see ``bonito_ray.commit``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import ray
from ray.data import DataContext
from ray.data.expressions import col

from bonito_ray import budget, commit, ledger
from bonito_ray.config import DEMO_MODEL, ConfigError, GenerateConfig
from bonito_ray.corpus import check_context_column, input_fingerprint, list_corpus_files, read_documents
from bonito_ray.dedup import create_shards, drop_duplicates, offer_passages
from bonito_ray.engines import build_engine_stage
from bonito_ray.passages import load_tokenizer, passage_token_budget, prepare_passages
from bonito_ray.report import RunSummary, read_manifest, summarize, write_manifest
from bonito_ray.schema import MANIFEST_FILE, STAGING_DIR, SUCCESS_FILE
from bonito_ray.stages import drop_done, to_examples, to_requests
from bonito_ray.storage import display_uri, join, resolve_filesystem
from bonito_ray.writer import SyntheticDatasetSink

logger = logging.getLogger(__name__)

DEDUP_SHARDS = 2
MAP_RETRIES = 3  # a map task that raises is retried this many times before the job fails


class OutputExistsError(ValueError):
    """The output location already holds data and ``overwrite`` was not asked for."""


@dataclass(frozen=True)
class JobPlan:
    """What a job will read and how, settled before any cluster work."""

    input_fs: pafs.FileSystem
    files: list[str]  # to process: all of them, or for an incremental run the new and changed ones
    passage_tokens: int
    identity: dict[str, Any]
    signatures: dict[str, str]  # input URI -> signature, of the files to process
    changed: list[str]  # incremental: files processed before whose content changed since


def plan_job(config: GenerateConfig) -> JobPlan:
    """Check the input and the model and settle the passage length; needs no Ray cluster."""
    input_fs, files = list_corpus_files(config.input, config.s3_endpoint)
    current = ledger.signatures(config.input, input_fs, files)
    changed: list[str] = []
    if config.incremental:
        fs, root = resolve_filesystem(config.output, config.s3_endpoint)
        todo, changed = ledger.pending(current, ledger.read_ledger(fs, root))
        files = [f for f in files if display_uri(config.input, f) in todo]
        current = {uri: current[uri] for uri in todo}
    if files:
        check_context_column(input_fs, files[0], config.context_column, display_uri(config.input, files[0]))
    passage_tokens = config.passage_tokens or default_passage_tokens(config)
    identity = {**config.identity(), "passage_tokens": passage_tokens,
                "input_fingerprint": input_fingerprint(input_fs, files)}
    return JobPlan(input_fs, files, passage_tokens, identity, current, changed)


def generate(config: GenerateConfig, overwrite: bool = False, plan: JobPlan | None = None) -> RunSummary:
    """Run (or resume) one generation job on the connected Ray cluster and return its summary."""
    started = time.monotonic()
    plan = plan or plan_job(config)
    identity, passage_tokens = plan.identity, plan.passage_tokens
    fs, root = resolve_filesystem(config.output, config.s3_endpoint)
    if overwrite:
        _clear(fs, root, config.output)
    elif config.incremental and not plan.files:
        logger.info("incremental: no new or changed input since the last run; nothing to do")
        return _summary(fs, root, config, started)
    elif commit.is_complete(fs, root) and not config.incremental:
        return _completed(fs, root, config.output, identity)
    elif _has_foreign_files(fs, root):
        raise OutputExistsError(f"output {config.output} holds files that are not a bonito-ray run; "
                                "choose another location or pass --overwrite")
    resumed = commit.start_or_resume(fs, root, identity)
    done = commit.done_ids(fs, root, stale_sources=plan.changed) if resumed else np.empty(0, dtype="S16")
    if resumed:
        logger.info("resuming: %d examples already written are skipped", len(done))
    if config.model == DEMO_MODEL:
        logger.warning("using the small CPU demo model: its tasks are for trying bonito-ray out. "
                       "For real data use --engine vllm --model BatsResearch/bonito-v1 on GPUs.")
    _configure_fault_tolerance()
    storage = {"output_uri": config.output, "s3_endpoint": config.s3_endpoint}

    documents = read_documents(config.input, plan.input_fs, plan.files, config.context_column, **storage)

    passages = documents.map_batches(
        prepare_passages, batch_format="pyarrow",
        fn_kwargs={"tokenizer_source": config.model, "max_tokens": passage_tokens, "overlap": config.passage_overlap,
                   "min_chars": config.min_passage_chars, "max_chars": config.max_passage_chars, **storage})
    if config.dedup:
        shards = create_shards(DEDUP_SHARDS)
        if config.incremental:  # passages already in the dataset keep their text
            _existing_passages(fs, root, plan.changed).map_batches(
                offer_passages, batch_format="pyarrow", fn_kwargs={"shards": shards, "existing": True}).take_all()
        passages.map_batches(offer_passages, batch_format="pyarrow", fn_kwargs={"shards": shards}).take_all()
        passages = passages.map_batches(drop_duplicates, batch_format="pyarrow",
                                        fn_kwargs={"shards": shards, **storage})
    requests = passages.map_batches(
        to_requests, batch_format="pyarrow",
        fn_kwargs={"task_types": config.task_types, "n": config.n, "sampling_params": config.sampling_params,
                   "seed": config.seed, "model": config.model})
    if len(done):
        requests = requests.map_batches(drop_done, batch_format="pyarrow", fn_kwargs={"done": ray.put(done)})
    generations = build_engine_stage(config)(requests)
    examples = generations.map_batches(to_examples, batch_format="pyarrow")
    error_budget = budget.ErrorBudget.remote(config.max_error_rate)
    _write(examples, SyntheticDatasetSink(config.output, config.rows_per_file, config.s3_endpoint, error_budget))

    staged = summarize(fs, join(root, STAGING_DIR), output=config.output,
                       examples_per_passage=len(config.task_types) * config.n)
    budget.check(staged.prompts, staged.engine_errors, config.max_error_rate)
    ledger.drop_sources(fs, root, plan.changed)
    commit.commit(fs, root)
    if config.incremental:
        ledger.record(fs, root, plan.signatures)
    summary = _summary(fs, root, config, started, resumed=resumed, skipped_done=len(done))
    write_manifest(fs, root, summary, config.to_dict(), identity)
    return summary


def _summary(fs: pafs.FileSystem, root: str, config: GenerateConfig, started: float, **run: Any) -> RunSummary:
    return summarize(fs, root, output=config.output, examples_per_passage=len(config.task_types) * config.n,
                     wall_seconds=round(time.monotonic() - started, 3), **run)


def _existing_passages(fs: pafs.FileSystem, root: str, changed: list[str]):
    """The committed passages (id and text) that stay in an incremental dataset."""
    files = [f for f in commit.example_files(fs, root) if not f[len(root) + 1 :].startswith(".")]
    if not files:
        return ray.data.from_items([])
    existing = ray.data.read_parquet(files, filesystem=fs, columns=["passage_id", "source", "context"])
    if changed:
        existing = existing.filter(expr=~col("source").is_in(changed))
    return existing


def _completed(fs: pafs.FileSystem, root: str, output_uri: str, identity: dict) -> RunSummary:
    """The summary of the same job already committed at ``root``; refuses a different job."""
    manifest = read_manifest(fs, root)
    if manifest.get("identity") != identity:
        raise OutputExistsError(f"output {output_uri} already holds a complete dataset made by a different job; "
                                "choose another location or pass --overwrite")
    logger.info("%s already holds this job's complete dataset: nothing to do (--overwrite to redo it)", output_uri)
    return RunSummary(**manifest["summary"])


def _write(examples, sink) -> None:
    """Run the pipeline into ``sink``; an exhausted error budget surfaces as itself, not as a Ray error."""
    try:
        examples.write_datasink(sink)
    except Exception as err:  # noqa: BLE001 - inspected and re-raised
        cause = err
        while cause is not None and not isinstance(cause, budget.ErrorBudgetExceeded):
            cause = cause.__cause__ or getattr(cause, "cause", None)
        if cause is not None:
            raise budget.ErrorBudgetExceeded(str(cause).splitlines()[-1]) from None
        raise


def _configure_fault_tolerance() -> None:
    """Retry what fails transiently; never drop a block silently."""
    context = DataContext.get_current()
    context.max_errored_blocks = 0
    context.retried_map_errors = True
    context.max_map_retries = MAP_RETRIES


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


def _clear(fs: pafs.FileSystem, root: str, output_uri: str) -> None:
    if fs.get_file_info(root).type == pafs.FileType.Directory:
        logger.warning("--overwrite: deleting the existing contents of %s", output_uri)
        fs.delete_dir_contents(root)


def _has_foreign_files(fs: pafs.FileSystem, root: str) -> bool:
    """Whether ``root`` holds anything but a bonito-ray run (its staging dir, partly committed files)."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        return True
    entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    ours = (STAGING_DIR, "_rejects", MANIFEST_FILE, SUCCESS_FILE, ledger.LEDGER_FILE)
    return any(not (e.base_name in ours or e.base_name.startswith("task_type=")) for e in entries)
