"""``Bonito``: the reference Bonito package's Python API, run on bonito-ray's pipeline.

    from bonito_ray import Bonito
    bonito = Bonito("BatsResearch/bonito-v1")
    synthetic = bonito.generate_tasks(text_dataset, context_col="input", task_type="nli",
                                      sampling_params={"max_tokens": 256, "top_p": 0.95, "temperature": 0.5})

Each ``generate_tasks`` call is one generation job (``bonito_ray.job.generate``): the context
column is written to a temporary Parquet corpus, the job runs on Ray Data into a temporary output,
and the accepted examples are read back, in the input's row order, as a ``datasets.Dataset``. So
prompting, parsing, validators and reject accounting are exactly the job's. Where the job's
defaults differ from the reference package, the call follows the reference (every input row is
prompted, duplicates included; no generated-task dedup). What still differs, and why, is in
docs/python_api.md.

It prompts with Bonito's meta-template only, as the reference does: the ``instruct`` generator
(``bonito_ray.generators``) is a job setting (``bonito-ray generate --generator instruct``,
``GenerateConfig(generator="instruct")``), not an option of ``Bonito``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from datasets.table import InMemoryTable

from bonito_ray import cluster, job
from bonito_ray.budget import ErrorBudgetExceeded
from bonito_ray.config import ConfigError, GenerateConfig
from bonito_ray.engines import check_engine_keywords
from bonito_ray.report import RunSummary, summarize
from bonito_ray.sampling import sampling_settings
from bonito_ray.schema import ACCEPTED_SCHEMA, REJECT_SCHEMA, STAGING_DIR
from bonito_ray.rejects import ENGINE_ERROR
from bonito_ray.storage import driver_path, join
from bonito_ray.table_io import REJECT_COLUMNS, context_table, read_accepted, read_rejects
from bonito_ray.tasks import resolve_task_types
from bonito_ray.workspace import Workspace

logger = logging.getLogger(__name__)

# Options of the engine and the cluster, given to Bonito(...).
ENGINE_OPTIONS = ("num_replicas", "batch_size", "max_concurrent_batches", "engine_kwargs", "accelerator_type",
                  "device", "placement_group_config", "cpus_per_replica", "gpus_per_replica", "ray_address",
                  "s3_endpoint", "verbose")
# Options of each job: given to Bonito(...) they are every call's defaults; to generate_tasks, that call's.
JOB_OPTIONS = ("validate", "validators", "dedup", "task_dedup", "passage_tokens", "passage_overlap",
               "min_passage_chars", "max_passage_chars", "max_error_rate")
# Where the job's defaults differ from the reference package's behaviour, a call follows the reference:
# it prompts every input row, duplicates included, and keeps near-identical tasks.
DROP_IN_DEFAULTS: dict[str, Any] = {"dedup": False, "task_dedup": False}
IGNORED_OPTIONS = ("num_proc",)  # the reference's datasets.map workers: Ray Data sizes its own
TASK_COLUMNS = ("input", "output")
PROVENANCE_COLUMNS = ("row", "chunk", "task_type", "sample_index", "passage_id", "id", "context", "model",
                      "num_input_tokens", "num_generated_tokens")
IN_MEMORY = "the returned dataset"  # the summary's output: the job's own output is temporary


class GeneratedTasks(datasets.Dataset):
    """What ``Bonito.generate_tasks`` returns: a ``datasets.Dataset`` of tasks (``input``, ``output``;
    with ``provenance=True`` also ``PROVENANCE_COLUMNS``), one row per accepted task, in input order.

    ``rejects``: a ``datasets.Dataset`` of every row the job dropped (``REJECT_COLUMNS``: the input
    ``row``, the ``stage`` and ``reason`` it was dropped at, a ``detail`` and the ``raw`` generation
    or record), in input order. ``summary``: the job's ``RunSummary`` (None for an empty input).
    A transform of this dataset (``map``, ``select``, ``shuffle``, ...) returns a plain
    ``datasets.Dataset`` without them: read them here.
    """

    rejects: datasets.Dataset
    summary: RunSummary | None

    @classmethod
    def of(cls, tasks: pa.Table, rejects: pa.Table, summary: RunSummary | None) -> "GeneratedTasks":
        result = cls(InMemoryTable(tasks))
        result.rejects = datasets.Dataset(InMemoryTable(rejects))
        result.summary = summary
        return result


class Bonito:
    """Bonito's task generation on Ray Data: a drop-in for the reference package's ``bonito.Bonito``.

    ``model``: a model folder or hub id (its tokenizer also sizes passages). ``engine``: ``vllm``
    (as the reference; GPUs, or CPUs with vLLM's CPU build), ``hf`` (transformers, CPU or GPU) or
    ``echo`` (a stand-in for tests: no model, no real tasks). ``options``:

    - ``ENGINE_OPTIONS``: ``GenerateConfig``'s fields of the same names (replicas, resources, the Ray
      address: by default ``RAY_ADDRESS``, else a private local cluster, as the CLI);
    - ``JOB_OPTIONS``: every call's defaults (``validate="off"`` keeps all that parses, as the reference);
    - ``workdir``: where calls write their temporary corpus and output (default: the system's
      temporary folder; on a multi-node cluster a location every node reaches, e.g. ``s3://bucket/tmp``);
    - with ``engine="vllm"``, any other keyword is a vLLM engine argument (``max_model_len``,
      ``tensor_parallel_size``, ``dtype``, ...), as the reference's ``LLM`` keywords: it goes into
      ``engine_kwargs``.

    The model and every option are checked here (``ConfigError``, one line); no cluster work is done
    until ``generate_tasks``.
    """

    def __init__(self, model: str, engine: str = "vllm", **options: Any) -> None:
        _check_argument("model", model, isinstance(model, str), "a model folder or hub id (a string)")
        _check_argument("engine", engine, isinstance(engine, str), "an engine name (a string)")
        self.workdir = options.pop("workdir", None)
        _check_argument("workdir", self.workdir, self.workdir is None or isinstance(self.workdir, str),
                        "a folder or URI (a string) or None")
        engine_kwargs = options.pop("engine_kwargs", None) or {}
        if not isinstance(engine_kwargs, dict):
            raise ConfigError(f"engine_kwargs must be a dict, got {type(engine_kwargs).__name__}")
        chosen = {k: options.pop(k) for k in list(options) if k in ENGINE_OPTIONS or k in JOB_OPTIONS}
        if options:
            ours = ", ".join(ENGINE_OPTIONS + JOB_OPTIONS + ("workdir",))
            check_engine_keywords(engine, options, ours)
        self.settings: dict[str, Any] = {**DROP_IN_DEFAULTS, **chosen, "engine": engine,
                                         "model": driver_path(model, only_existing=True),
                                         "engine_kwargs": {**engine_kwargs, **options}}
        _check_model(self._config())

    def generate_tasks(self, text_dataset: Any, context_col: str, task_type: str | list[str],
                       sampling_params: Any = None, *, provenance: bool = False, **options: Any) -> GeneratedTasks:
        """Generate tasks of ``task_type`` from the ``context_col`` texts of ``text_dataset``.

        ``text_dataset``: a ``datasets.Dataset``, a pandas DataFrame or a Ray Dataset (rows in the
        order Ray Data yields them). ``task_type``: a short or full Bonito task name (a comma-separated
        list or a list of them also works: each row is then prompted with each). ``sampling_params``:
        a ``vllm.SamplingParams`` or a dict of ``max_tokens``, ``temperature``, ``top_p``, ``n``,
        ``seed`` (None, or a key left out: the Bonito authors' 256, 0.5, 0.95, 1, unseeded).
        ``provenance``: add ``PROVENANCE_COLUMNS``. ``options``: ``JOB_OPTIONS`` for this call.

        Returns a ``GeneratedTasks``: the accepted tasks in input order (row, chunk, task type as
        asked, sample), with ``.rejects`` and ``.summary``; when no row reaches the engine (all null,
        too short, ...), an empty one whose rejects say why. Bad arguments raise a one-line
        ``ConfigError`` (an unknown task type: ``UnknownTaskTypeError``, a ``ValueError`` as in the
        reference) before any cluster work; an engine that fails more than ``max_error_rate`` of the
        requests raises ``ErrorBudgetExceeded``. The temporary files are removed whatever happens.
        """
        _check_argument("context_col", context_col, isinstance(context_col, str), "a column name (a string)")
        _check_argument("task_type", task_type, isinstance(task_type, str) or isinstance(task_type, (list, tuple))
                        and all(isinstance(t, str) for t in task_type), "a task name or a list of task names")
        _check_argument("provenance", provenance, isinstance(provenance, bool), "True or False")
        config = self._config(task_types=resolve_task_types(task_type), **sampling_settings(sampling_params),
                              **self._job_options(options))
        table = context_table(text_dataset, context_col)
        if table.num_rows == 0:
            empty = pa.table({name: pa.array([], field.type) for name, field in _columns(provenance).items()})
            return GeneratedTasks.of(empty, _reject_schema().empty_table(), None)
        cluster.connect(config.ray_address, verbose=config.verbose)
        self._check_workdir_reaches_every_node()
        with Workspace(table, self.workdir, config.s3_endpoint) as work:
            run = dataclasses.replace(config, input=work.corpus_uri, output=work.output_uri)
            try:
                summary = job.generate(run)
                done = work.output_root
            except ErrorBudgetExceeded:
                done = join(work.output_root, STAGING_DIR)  # what the failed job staged: gone with the workspace
                summary = _nothing_prompted(work.fs, done, config)
            accepted = read_accepted(work.fs, done, config.task_types)
            rejects = read_rejects(work.fs, done, config.task_types)
        summary = dataclasses.replace(summary, output=IN_MEMORY, files=[])
        return GeneratedTasks.of(accepted.select(list(_columns(provenance))), rejects, summary)

    def _config(self, **call: Any) -> GenerateConfig:
        """The job's configuration; the temporary input and output are filled in when the call runs."""
        return GenerateConfig(input="(set per call)", output="(set per call)", **{**self.settings, **call})

    @staticmethod
    def _job_options(options: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(JOB_OPTIONS) - set(IGNORED_OPTIONS))
        if unknown:
            raise ConfigError(f"generate_tasks: unknown option(s) {', '.join(unknown)}; valid: "
                              f"provenance, {', '.join(JOB_OPTIONS)}")
        return {k: v for k, v in options.items() if k in JOB_OPTIONS}

    def _check_workdir_reaches_every_node(self) -> None:
        """A temporary folder on the driver's disk is not on the other nodes, whose workers read and write it."""
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1 and self.workdir is None:
            raise ConfigError(f"the Ray cluster has {len(nodes)} nodes, and the driver's temporary folder is not "
                              "on the others; pass Bonito(..., workdir=LOCATION) with a location every node "
                              "reaches (s3://bucket/prefix, or a shared folder)")


def _check_argument(name: str, value: Any, ok: bool, takes: str) -> None:
    """The Python API's own arguments (``GenerateConfig`` checks the settings it is given): one line, as the CLI's."""
    if not ok:
        raise ConfigError(f"{name} must be {takes}, got {value!r:.60} ({type(value).__name__})")


def _nothing_prompted(fs: pafs.FileSystem, staged: str, config: GenerateConfig) -> RunSummary:
    """The summary of a job that failed its error budget because no row reached the engine: for a call,
    an empty result whose rejects say why (the reference returns what parses, however little). A job
    whose engine failed too often is raised again, with its first engine error: the folder the job's own
    message points to is removed with the workspace."""
    summary = summarize(fs, staged, output=IN_MEMORY, examples_per_passage=len(config.task_types) * config.n)
    if summary.prompts:
        errors = read_rejects(fs, staged, config.task_types).filter(pc.equal(pc.field("reason"), ENGINE_ERROR))
        first = errors["detail"][0].as_py() if errors.num_rows else "none staged"
        raise ErrorBudgetExceeded(f"{summary.engine_errors} of {summary.prompts} requests failed in the engine, over "
                                  f"max_error_rate {config.max_error_rate:.1%}; the first: {first}") from None
    logger.warning("no row of text_dataset reached the engine: every one was rejected (see the result's rejects)")
    return summary


def _check_model(config: GenerateConfig) -> None:
    """Fail now, as the reference does when it loads the model, for a model that cannot be loaded or a
    vLLM window (``max_model_len``) larger than it; the echo engine has no model."""
    from bonito_ray.engines import ENGINES, generation_window
    from bonito_ray.pipeline import model_tokenizer

    if ENGINES[config.engine].needs_model:
        generation_window(config, model_tokenizer(config))


def _columns(provenance: bool) -> dict[str, pa.Field]:
    """The result's columns and their types (the accepted schema's, and the input ``row``)."""
    fields = {f.name: f for f in ACCEPTED_SCHEMA} | {"row": pa.field("row", pa.int64())}
    names = TASK_COLUMNS + (PROVENANCE_COLUMNS if provenance else ())
    return {name: fields[name] for name in names}


def _reject_schema() -> pa.Schema:
    fields = {f.name: f for f in REJECT_SCHEMA} | {"row": pa.field("row", pa.int64()),
                                                    "stage": pa.field("stage", pa.string())}
    return pa.schema([fields[name] for name in REJECT_COLUMNS])
