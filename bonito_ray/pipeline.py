"""The generation job, top to bottom:

corpus -> documents -> passages (clean, chunk, dedup) -> requests -> engine -> examples (parse)
-> validation -> dataset, all written to a staging dir; then generated-task dedup over the staged
files, then the commit. What the output holds and what may be done to it is
decided in ``bonito_ray.output``; the job leases the output in planning and gives it up at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import ray
from ray.data import DataContext
from ray.data.expressions import col

from bonito_ray import budget, commit, console, ledger, progress
from bonito_ray.cluster import on_driver_node
from bonito_ray.config import DEMO_MODEL, ConfigError, GenerateConfig
from bonito_ray.corpus import (SkippedFile, check_context_column, input_fingerprint, list_corpus_files,
                               reject_skipped, read_documents)
from bonito_ray.dedup import create_shards, drop_duplicates, offer_passages, shard_count
from bonito_ray.engines import ENGINES, build_engine_stage, generation_window
from bonito_ray.generators import GENERATORS
from bonito_ray.output import Output, OutputExistsError, open_output  # noqa: F401 - OutputExistsError: API
from bonito_ray.passages import cached_tokenizer, passage_token_budget, prepare_passages
from bonito_ray.report import RunSummary, summarize
from bonito_ray.schema import STAGING_DIR
from bonito_ray.engine_rows import drop_done, to_examples, to_requests, validate_examples
from bonito_ray.task_dedup import dedup_staged
from bonito_ray.storage import display_uri, join
from bonito_ray.writer import SyntheticDatasetSink

logger = logging.getLogger(__name__)

MAP_RETRIES = 3  # a map task that raises is retried this many times before the job fails


@dataclass(frozen=True)
class JobPlan:
    """What a job will read and how, settled before any cluster work."""

    input_fs: pafs.FileSystem
    files: list[str]  # to process: all of them, or for an incremental run the new and changed ones
    passage_tokens: int
    identity: dict[str, Any]
    signatures: dict[str, str]  # input URI -> signature, of the files to process
    changed: list[str]  # incremental: files processed before whose content changed since
    skipped: tuple[SkippedFile, ...] = ()  # entries under the input that are not read: corpus rejects
    output: Output | None = None  # leased for this job until ``release``
    removed: list[str] = field(default_factory=list)  # incremental: files processed before, deleted since
    # incremental: files unchanged since the ledger recorded them by another --incremental-check, and their
    # signatures by this run's, recorded at commit
    rechecked: dict[str, str] = field(default_factory=dict)
    finished: RunSummary | None = None  # set when the job has nothing to do (the dataset's summary)
    overwrite: bool = False

    def release(self) -> None:
        """Give the output up (idempotent); ``generate`` does it when it ends."""
        if self.output is not None:
            self.output.release()


def plan_job(config: GenerateConfig, overwrite: bool = False) -> JobPlan:
    """Check the input, the output and the model and settle the passage length; needs no Ray cluster.

    The plan holds the output's lease (see ``bonito_ray.output``): run it with ``generate``, or
    ``release`` it. A job with nothing to do (a completed rerun) is known here: ``plan.finished``.
    """
    output = open_output(config.input, config.output, config.s3_endpoint, overwrite=overwrite)
    try:
        return _plan_job(config, output, overwrite)
    except BaseException:
        output.release()
        raise


def _plan_job(config: GenerateConfig, output: Output, overwrite: bool) -> JobPlan:
    listing = list_corpus_files(config.input, config.s3_endpoint)
    input_fs, files = listing.fs, listing.files
    current = ledger.signatures(config.input, input_fs, files, config.incremental_check)
    changed: list[str] = []
    removed: list[str] = []
    rechecked: dict[str, str] = {}
    if not overwrite:
        output.recover()  # a commit a killed run started is finished first
    if config.incremental:
        paths = {display_uri(config.input, f): f for f in files}
        todo, changed, removed, unchanged = output.pending(
            current, lambda uris, check: ledger.signatures(config.input, input_fs, [paths[u] for u in uris], check),
            fresh=overwrite)
        files = [f for f in files if display_uri(config.input, f) in todo]
        current, rechecked = {uri: current[uri] for uri in todo}, {uri: current[uri] for uri in unchanged}
    if files:
        check_context_column(input_fs, files[0], config.context_column, display_uri(config.input, files[0]))
    passage_tokens = settle_passage_tokens(config)
    identity = {**config.identity(), "passage_tokens": passage_tokens,
                "input_fingerprint": input_fingerprint(input_fs, files)}
    finished = None if overwrite else output.finished(identity, config.incremental,
                                                      bool(files or removed or rechecked))
    return JobPlan(input_fs, files, passage_tokens, identity, current, changed, skipped=listing.skipped,
                   output=output, removed=removed, rechecked=rechecked, finished=finished, overwrite=overwrite)


def generate(config: GenerateConfig, overwrite: bool = False, plan: JobPlan | None = None,
             command_started: float | None = None) -> RunSummary:
    """Run (or resume) one generation job on the connected Ray cluster and return its summary.

    A job with nothing to do returns the dataset's summary at once, without cluster work. The
    output's lease is released at the end, success or failure. With ``plan``, its ``overwrite`` holds.
    ``command_started``: the ``time.monotonic()`` at which the command started (the CLI's,
    ``bonito_ray.command_clock``); the time until this call is the summary's ``startup_seconds``.
    """
    started = time.monotonic()
    startup = 0.0 if command_started is None else round(started - command_started, 3)
    plan = plan or plan_job(config, overwrite)
    try:
        return plan.finished or _generate(config, plan, started, startup)
    finally:
        plan.release()


def _generate(config: GenerateConfig, plan: JobPlan, started: float, startup: float) -> RunSummary:
    resumed, done = _prepare_output(plan)
    if plan.files:
        _run_pipeline(config, plan, done)
    return _commit(config, plan, resumed, len(done), started, startup)


def _prepare_output(plan: JobPlan) -> tuple[bool, np.ndarray]:
    """Clear (``--overwrite``) or resume the output; returns (resumed, ids of the examples already written)."""
    if plan.overwrite:
        plan.output.clear()
    resumed = plan.output.begin(plan.identity)
    done = plan.output.done_ids(plan.changed) if resumed else np.empty(0, dtype="S16")
    if resumed:
        logger.info("resuming: %d examples already written are skipped", len(done))
    return resumed, done


def _commit(config: GenerateConfig, plan: JobPlan, resumed: bool, skipped_done: int, started: float,
            startup: float) -> RunSummary:
    """Move the staged dataset into place with its manifest (``bonito_ray.commit``); returns its summary."""
    manifest = {"config": config.to_dict(), "identity": plan.identity,
                "examples_per_passage": len(config.task_types) * config.n,
                "run": {"resumed": resumed, "skipped_done": skipped_done,
                        "wall_seconds": round(time.monotonic() - started, 3), "startup_seconds": startup},
                "run_id": plan.output.lease.run_id, "command": config.command()}
    return plan.output.commit(stale_sources=plan.changed + plan.removed,
                              ledger_entries=plan.signatures | plan.rechecked if config.incremental else None,
                              manifest=manifest)


def _run_pipeline(config: GenerateConfig, plan: JobPlan, done: np.ndarray) -> None:
    """Generate for ``plan.files`` into the output's staging dir; fails if the error budget is spent."""
    fs, root = plan.output.fs, plan.output.root
    if config.model == DEMO_MODEL:
        logger.warning("using the small CPU demo model: its tasks are for trying bonito-ray out. "
                       "For real data use --engine vllm --model BatsResearch/bonito-v1 on GPUs.")
    configure_fault_tolerance()
    console.quiet_ray_data(config.verbose)
    counter = progress.ProgressCounter.options(scheduling_strategy=on_driver_node()).remote()
    reporter = progress.Reporter(counter, fs, root, plan.output.lease.run_id).start()
    state = "failed"
    try:
        examples = progress.observe(example_chain(config, plan, done, counter), counter)
        error_budget = budget.ErrorBudget.options(scheduling_strategy=on_driver_node()).remote(config.max_error_rate)
        reporter.engine_asked()  # dedup's first pass (in example_chain) has read the corpus
        _write(examples, SyntheticDatasetSink(config.output, config.rows_per_file, config.s3_endpoint, error_budget))
        if config.task_dedup:
            dropped = dedup_staged(config.output, config.s3_endpoint, config.task_types, plan.changed + plan.removed)
            logger.info("task dedup: %d duplicate tasks dropped", dropped)
        state = "generated"
    finally:
        reporter.stop(state)

    staged = summarize(fs, join(root, STAGING_DIR), output=config.output,
                       examples_per_passage=len(config.task_types) * config.n)
    budget.check(staged.prompts, staged.engine_errors, config.max_error_rate)


def example_chain(config: GenerateConfig, plan: JobPlan, done: np.ndarray, counter):
    """The dataset chain from ``plan.files`` to validated examples: documents -> passages (clean, chunk,
    dedup) -> requests -> engine -> examples. Lazy, except dedup's first pass, which runs here."""
    storage = {"output_uri": config.output, "s3_endpoint": config.s3_endpoint}
    documents = read_documents(config.input, plan.input_fs, plan.files, config.context_column, **storage)
    reject_skipped(config.input, plan.skipped, **storage)
    passages = prepared_passages(config, documents, plan.passage_tokens)
    if config.dedup:
        shards = create_shards(shard_count(ledger.total_size(plan.signatures)))
        if config.incremental:  # passages already in the dataset keep their text
            _existing_passages(plan.output.fs, plan.output.root, plan.changed + plan.removed).map_batches(
                offer_passages, batch_format="pyarrow", fn_kwargs={"shards": shards, "existing": True}).take_all()
        passages.map_batches(offer_passages, batch_format="pyarrow", fn_kwargs={"shards": shards}).take_all()
        new_passages = sum(ray.get([shard.new_texts.remote() for shard in shards]))
        counter.set_total.remote(new_passages * len(config.task_types) * config.n)
        # The second pass reads and chunks the corpus again rather than keeping the first pass's
        # passages: held, they would fill the object store in proportion to the corpus (and spill);
        # streamed twice, memory stays flat whatever its size, for the cost of a second read.
        passages = passages.map_batches(drop_duplicates, batch_format="pyarrow",
                                        fn_kwargs={"shards": shards, **storage})
    return generated_examples(config, passages, done, counter)


def prepared_passages(config: GenerateConfig, documents, passage_tokens: int):
    """Documents -> clean passages of at most ``passage_tokens`` tokens (drops rejected under the output)."""
    return documents.map_batches(
        prepare_passages, batch_format="pyarrow",
        fn_kwargs={"tokenizer_source": config.model, "passage_tokens": passage_tokens, "overlap": config.passage_overlap,
                   "min_chars": config.min_passage_chars, "max_chars": config.max_passage_chars,
                   "markers": GENERATORS[config.generator].markers, "output_uri": config.output,
                   "s3_endpoint": config.s3_endpoint})


def generated_examples(config: GenerateConfig, passages, done: np.ndarray, counter=None):
    """Passages -> requests (less those already written, ``done``) -> engine -> examples with verdicts; the
    engine's replicas report to ``counter`` (a ``bonito_ray.progress.ProgressCounter``) as they return batches."""
    requests = passages.map_batches(
        to_requests, batch_format="pyarrow",
        fn_kwargs={"task_types": config.task_types, "n": config.n, "sampling_params": config.sampling_params,
                   "seed": config.seed, "model": config.model, "generator": config.generator})
    if len(done):
        requests = requests.map_batches(drop_done, batch_format="pyarrow",
                                        fn_kwargs={"done": ray.put(done), "progress": counter})
    generations = build_engine_stage(config, progress=counter)(requests)
    # batch_size=None: each block as it comes. Ray Data's default bundles 1,024 rows, which held a small
    # job's examples back from the writer until the engine had finished them all.
    examples = generations.map_batches(to_examples, batch_format="pyarrow", batch_size=None,
                                       fn_kwargs={"generator": config.generator})
    if config.validate != "off" or config.validators:
        examples = examples.map_batches(validate_examples, batch_format="pyarrow", batch_size=None,
                                        fn_kwargs={"level": config.validate, "extra": config.validators})
    return examples


def _existing_passages(fs: pafs.FileSystem, root: str, stale: list[str]):
    """The committed passages (id and text) that stay in an incremental dataset (not from ``stale`` sources)."""
    files = commit.committed_example_files(fs, root)
    if not files:
        return ray.data.from_items([])
    # No partitioning: rejects' folders (_rejects/stage=...) are hive keys the accepted files lack.
    existing = ray.data.read_parquet(files, filesystem=fs, columns=["passage_id", "source", "context"],
                                     partitioning=None)
    if stale:
        existing = existing.filter(expr=~col("source").is_in(stale))
    return existing


def _write(examples, sink, budget_spent=budget.spent) -> None:
    """Run the pipeline into ``sink``. A write that fails once the sink's error budget is spent fails as
    ``ErrorBudgetExceeded``, in one line: the budget actor's own state says so (``budget_spent``), not Ray's
    wrapping of the write task's error, whose form is Ray's to change."""
    try:
        examples.write_datasink(sink)
    except Exception:  # noqa: BLE001 - re-raised unless the budget is spent
        reason = None if sink.error_budget is None else budget_spent(sink.error_budget)
        if reason is not None:
            raise budget.ErrorBudgetExceeded(reason) from None
        raise


def configure_fault_tolerance() -> None:
    """Retry what fails transiently; never drop a block silently."""
    context = DataContext.get_current()
    context.max_errored_blocks = 0
    context.retried_map_errors = True
    context.max_map_retries = MAP_RETRIES


def model_tokenizer(config: GenerateConfig) -> Any:
    """The tokenizer of ``config.model``, loaded now: a model that cannot be loaded fails in one line."""
    try:
        return cached_tokenizer(config.model)
    except (OSError, ValueError) as err:  # ValueError: a folder that holds no tokenizer
        raise ConfigError(f"cannot load model {config.model!r}: {str(err).splitlines()[0]}") from err


def settle_passage_tokens(config: GenerateConfig) -> int:
    """The passage length: the user's, or the longest that keeps prompt + max_tokens inside the window.

    The model and its window are checked either way (a model that cannot be loaded, one the generator
    cannot prompt, a vLLM ``max_model_len`` beyond the model's window, an openai server that cannot be
    reached or does not serve the model), except for the model-free echo engine prompted without the model.
    """
    generator = GENERATORS[config.generator]
    if config.passage_tokens and not ENGINES[config.engine].needs_model and not generator.chat_template:
        return config.passage_tokens
    tokenizer = model_tokenizer(config)
    generator.check_model(tokenizer, config.model)  # e.g. a chat generator and a model without a chat template
    window = generation_window(config, tokenizer)
    if config.passage_tokens:
        return config.passage_tokens
    try:
        return passage_token_budget(tokenizer, window, config.max_tokens, generator.sizing_prompts(tokenizer))
    except ValueError as err:
        raise ConfigError(str(err)) from err
