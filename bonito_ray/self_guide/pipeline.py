"""The SELF-GUIDE job, top to bottom: spec -> input rounds -> annotation and vote -> commit.

It uses the generation job's output protocol (``bonito_ray.output``): the output is leased, every
file is written under ``.staging/`` and moved into place by one commit, a completed rerun does
nothing, and a run with different settings on top of an unfinished one is refused. Resume works
by rounds (``bonito_ray.self_guide.rounds``): a rerun skips the rounds already staged and redoes
annotation whole.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow.dataset as pds
import pyarrow.fs as pafs

from bonito_ray import console
from bonito_ray.budget import Tally
from bonito_ray.cluster import on_driver_node
from bonito_ray.engines import ENGINES, EngineStage, generation_window, keeps_replicas, open_engine_stage
from bonito_ray.output import Output, open_output
from bonito_ray.pipeline import configure_fault_tolerance, model_tokenizer
from bonito_ray.progress import ProgressCounter
from bonito_ray.report import command_time
from bonito_ray.schema import SELF_GUIDE_DIR, SELF_GUIDE_REJECTS_DIRS, SELF_GUIDE_TASK, STAGING_DIR, is_data_file
from bonito_ray.self_guide.annotate import run_annotation
from bonito_ray.self_guide.config import SelfGuideConfig
from bonito_ray.self_guide.progress import SelfGuideProgress
from bonito_ray.self_guide.rounds import generate_inputs
from bonito_ray.self_guide.spec import MANIFEST_KEY, TaskSpec, load_spec
from bonito_ray.storage import join, list_files

logger = logging.getLogger(__name__)

# What a self-guide job's budget error says of the failed rows: none is staged yet.
ENGINE_ERRORS_SEEN = ("nothing is committed, and the engine pass that broke the budget was not staged: a rerun keeps "
                      "the rounds staged before it and does that pass again (a higher --max-error-rate keeps failed "
                      "requests as engine_error rejects instead)")

# The stages of a SELF-GUIDE dataset's rejects, in pipeline order, as the summary names them.
STAGES = dict(zip(("inputs dropped", "samples dropped", "inputs not kept by the vote"), SELF_GUIDE_REJECTS_DIRS))


@dataclass
class Plan:
    """What a job will do, settled before any cluster work; holds the output's lease until ``release``."""

    spec: TaskSpec
    output: Output
    identity: dict
    finished: "SelfGuideSummary | None" = None
    overwrite: bool = False

    def release(self) -> None:
        self.output.release()


@dataclass
class SelfGuideSummary:
    """What a SELF-GUIDE dataset holds, counted from its committed files."""

    output: str
    task: str
    kind: str
    accepted: int
    labels: dict[str, int]  # classification: accepted examples per label
    inputs_kept: int
    dropped: dict[str, dict[str, int]]  # stage (STAGES' keys) -> reason -> rows
    rounds_skipped: int = 0
    wall_seconds: float = 0.0  # the job's own time, from self_guide()'s call to its commit
    startup_seconds: float = 0.0  # before the job: from the command's start (the CLI's) to self_guide()'s call
    nothing_done: str = ""

    def format(self) -> str:
        head = (f"bonito-ray self-guide: nothing to do: {self.nothing_done}; "
                f"{self.output} holds {self.accepted} examples"
                if self.nothing_done else
                f"bonito-ray self-guide: wrote {self.accepted} examples of task {self.task!r} ({self.kind}) to "
                f"{self.output} in {command_time(self.wall_seconds, self.startup_seconds)}"
                + (f" (resumed: {self.rounds_skipped} rounds were already done)" if self.rounds_skipped else ""))
        lines = [head, f"  generated inputs kept: {self.inputs_kept}"]
        if self.labels:
            lines.append(f"  accepted per label: {_counts(self.labels)}")
        for stage, reasons in self.dropped.items():
            lines.append(f"  {stage}: {sum(reasons.values())} ({_counts(reasons)})")
        return "\n".join(lines)


def plan_self_guide(config: SelfGuideConfig, overwrite: bool = False) -> Plan:
    """Check the spec, the model (and the server it is served from) and the output, and lease the output;
    needs no Ray cluster."""
    spec = load_spec(config.spec)
    if ENGINES[config.engine].needs_model:  # the model, its window and the openai server: checked now, as generate
        engine = config.engine_config()
        generation_window(engine, model_tokenizer(engine))
    output = open_output(config.spec, config.output, config.s3_endpoint, overwrite=overwrite)
    try:
        if not overwrite:
            output.recover()
        identity = config.identity(spec)
        done = None if overwrite else output.finished(identity, False, True)
        finished = None
        if done is not None:
            finished = summarize(output.fs, output.root, config.output, spec)
            finished.nothing_done = done.nothing_done
        return Plan(spec, output, identity, finished, overwrite)
    except BaseException:
        output.release()
        raise


def self_guide(config: SelfGuideConfig, overwrite: bool = False, plan: Plan | None = None,
               engine_stage: EngineStage | None = None, command_started: float | None = None) -> SelfGuideSummary:
    """Run (or resume) a SELF-GUIDE job on the connected Ray cluster; returns the dataset's summary.

    ``engine_stage``: the engine to use instead of ``config.engine``'s (tests script a model with it).
    ``command_started``: as ``bonito_ray.pipeline.generate``'s (the summary's ``startup_seconds``).
    """
    started = time.monotonic()
    startup = 0.0 if command_started is None else round(started - command_started, 3)
    plan = plan or plan_self_guide(config, overwrite)
    try:
        return plan.finished or _run(config, plan, engine_stage, started, startup)
    finally:
        plan.release()


def _run(config: SelfGuideConfig, plan: Plan, engine_stage: EngineStage | None, started: float,
         startup: float) -> SelfGuideSummary:
    output, spec = plan.output, plan.spec
    fs, staging = output.fs, join(output.root, STAGING_DIR)
    if plan.overwrite:
        output.clear()
    resumed = output.begin(plan.identity)
    console.quiet_ray_data(config.verbose)
    configure_fault_tolerance()  # as the generation job: retry what fails, never drop a block
    # The engine's replicas say when they have started, for the progress line: once per job where the engine
    # keeps them (vllm), else at every pass.
    engine_watch = None if engine_stage else ProgressCounter.options(scheduling_strategy=on_driver_node()).remote()
    kept = engine_stage is None and keeps_replicas(config.engine)
    logger.info("self-guide: task %r (%s), %d rounds of %d inputs, %d annotations per input; %d engine passes, %s",
                spec.name, spec.kind, config.rounds(spec), config.inputs_per_round, config.samples,
                config.engine_passes(spec), "one engine start for all" if kept else
                "each starting the engine's replicas (fewer: --rounds-per-pass)")
    progress = SelfGuideProgress(fs, output.root, output.lease.run_id, config.rounds(spec), engine=engine_watch,
                                 engine_kept=kept).start()
    state = "failed"
    try:
        with _engine(config, engine_stage, engine_watch) as stage:  # a kept engine's replicas end with the block
            errors = Tally(config.max_error_rate, see=ENGINE_ERRORS_SEEN, min_sample=0)
            inputs, skipped = generate_inputs(config, spec, stage, fs, staging, progress, errors,
                                              guard=output.lease.check)
            run_annotation(config, spec, stage, inputs, fs, staging, progress, errors)
        state = "generated"
    finally:
        progress.stop(state)  # before the commit, which takes the staging dir and the progress file with it
    manifest = {"config": {**config.to_dict(), MANIFEST_KEY: spec.to_dict()}, "identity": plan.identity,
                "examples_per_passage": 1,
                "run": {"resumed": resumed, "skipped_done": 0, "wall_seconds": round(time.monotonic() - started, 3),
                        "startup_seconds": startup},
                "run_id": output.lease.run_id, "command": config.command()}
    output.commit(stale_sources=[], ledger_entries=None, manifest=manifest)
    summary = summarize(fs, output.root, config.output, spec)
    summary.rounds_skipped, summary.wall_seconds = skipped, round(time.monotonic() - started, 3)
    summary.startup_seconds = startup
    return summary


@contextlib.contextmanager
def _engine(config: SelfGuideConfig, given: EngineStage | None, progress) -> Iterator[EngineStage]:
    """The stage every pass of the job runs through: ``given`` (a test's), or ``config.engine``'s, opened for the
    whole job."""
    if given is not None:
        yield given
        return
    with open_engine_stage(config.engine_config(), progress=progress) as stage:
        yield stage


def summarize(fs: pafs.FileSystem, root: str, output: str, spec: TaskSpec) -> SelfGuideSummary:
    """Count the committed dataset at ``root``."""
    accepted = _rows(fs, join(root, SELF_GUIDE_TASK), ["output"])
    kept = _rows(fs, join(root, SELF_GUIDE_DIR), ["id"])
    dropped = {stage: dict(sorted(Counter(r["reason"] for r in _rows(fs, join(root, d), ["reason"])).items()))
               for stage, d in STAGES.items()}
    labels = dict(sorted(Counter(r["output"] for r in accepted).items())) if spec.is_classification else {}
    return SelfGuideSummary(output=output, task=spec.name, kind=spec.kind, accepted=len(accepted), labels=labels,
                            inputs_kept=len(kept), dropped=dropped)


def _rows(fs: pafs.FileSystem, directory: str, columns: list[str]) -> list[dict]:
    files = [f for f in list_files(fs, directory) if is_data_file(f)]
    if not files:
        return []
    return pds.dataset(files, filesystem=fs, format="parquet").to_table(columns=columns).to_pylist()


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"
