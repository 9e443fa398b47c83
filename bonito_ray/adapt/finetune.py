"""The ``finetune`` driver: check the request, tokenise the data once, train LoRA adapters on Ray Train.

Output layout (a local directory or a URI)::

    finetune_config.json     the settings; a re-run resumes only if the training settings match
    checkpoints/             Ray Train's run directory: checkpoint_<step>/ (adapter, optimizer, state)
    adapter/                 the final LoRA adapter, its tokenizer and bonito_ray_adapter.json
    merged/                  with --merge: base + adapter merged, loadable without peft
    finetune_summary.json    losses (train per step, validation per checkpoint) and counts

Running the same command again after a crash resumes from the last checkpoint: Ray Train finds
the run (same storage path and name) and hands its latest checkpoint to the workers.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bonito_ray import cluster, console
from bonito_ray.adapt.batches import StepPlan, encode_examples
from bonito_ray.adapt.data import load_examples, self_guide_task, split
from bonito_ray.adapt.errors import FinetuneConfigError
from bonito_ray.adapt.evaluate import is_report
from bonito_ray.adapt.fsio import delete, read_text, write_text
from bonito_ray.adapt.models import bitsandbytes_available
from bonito_ray.hf_models import padded_tokenizer
from bonito_ray.output import check_no_overlap
from bonito_ray.ownership import read_record, refuse_foreign_files
from bonito_ray.adapt.prompts import check_prompt_format
from bonito_ray.adapt.train_loop import ADAPTER_DIR, MERGED_DIR, TrainingData, train_loop_per_worker
from bonito_ray.self_guide.spec import TaskSpec
from bonito_ray.storage import driver_path, join, resolve_filesystem

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
CONFIG_FILE = "finetune_config.json"
SUMMARY_FILE = "finetune_summary.json"
RUN_ENTRIES = (CONFIG_FILE, CHECKPOINTS_DIR, ADAPTER_DIR, MERGED_DIR, SUMMARY_FILE)  # what a run writes
CHECKPOINTS_KEPT = 2  # the newest ones: enough to resume even if the last was cut short


@dataclass
class FinetuneConfig:
    """Settings of one fine-tuning run; defaults follow the paper (Q-LoRA setup of Nayak et al. 2024)."""

    model: str
    dataset: str
    output: str
    task_types: list[str] | None = None
    prompt_format: str = "plain"
    lora_rank: int = 64
    lora_alpha: int = 16  # the paper gives no alpha; 16 is the Q-LoRA recipe's value for rank 64
    lora_dropout: float = 0.0
    learning_rate: float = 1e-4
    batch_size: int = 16  # effective: per_device_batch_size x gradient accumulation x num_workers
    per_device_batch_size: int = 4
    epochs: int = 1
    max_steps: int | None = None
    max_length: int = 2048
    max_grad_norm: float = 0.3
    validation_fraction: float = 0.05
    checkpoint_every: int = 100
    seed: int = 0
    num_workers: int = 1
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    qlora: bool = False
    merge: bool = False
    max_failures: int = 0
    ray_address: str | None = None  # the cluster to join once the request is checked (see cluster.connect)
    verbose: bool = False  # Ray's own logs and progress on the console (bonito_ray.console)

    def __post_init__(self) -> None:
        # Resolved here, on the driver: Ray Train workers run in their own folder, where a relative
        # --model would be taken for a hub id and a relative --output would land in Ray's temp dir.
        self.model = driver_path(self.model, only_existing=True)
        self.dataset, self.output = driver_path(self.dataset), driver_path(self.output)

    def validate(self) -> None:
        """Raise :class:`FinetuneConfigError` for settings that cannot work together."""
        positive = {"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha, "batch_size": self.batch_size,
                    "per_device_batch_size": self.per_device_batch_size, "epochs": self.epochs,
                    "max_length": self.max_length, "checkpoint_every": self.checkpoint_every,
                    "num_workers": self.num_workers, "learning_rate": self.learning_rate,
                    "max_grad_norm": self.max_grad_norm}
        for name, value in positive.items():
            if value <= 0:
                raise FinetuneConfigError(f"--{name.replace('_', '-')} must be positive, not {value}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise FinetuneConfigError(f"--max-steps must be positive, not {self.max_steps}")
        if not 0 <= self.validation_fraction < 1:
            raise FinetuneConfigError(f"--validation-fraction must be in [0, 1), not {self.validation_fraction}")
        if not 0 <= self.lora_dropout < 1:
            raise FinetuneConfigError(f"--lora-dropout must be in [0, 1), not {self.lora_dropout}")
        per_step = self.per_device_batch_size * self.num_workers
        if self.batch_size % per_step:
            raise FinetuneConfigError(
                f"--batch-size {self.batch_size} (the effective batch) must be a multiple of --per-device-batch-size"
                f" x --num-workers = {self.per_device_batch_size} x {self.num_workers} = {per_step}")
        if self.qlora and not self.use_gpu:
            raise FinetuneConfigError("--qlora (4-bit base weights) runs on GPUs only: add --use-gpu")
        if self.qlora and not bitsandbytes_available():
            raise FinetuneConfigError("--qlora needs bitsandbytes: pip install bitsandbytes (on a CUDA machine)")

    def identity(self) -> dict[str, Any]:
        """The settings that decide what is trained: a run resumes only if these are unchanged."""
        settings = asdict(self)
        for name in ("output", "num_workers", "cpus_per_worker", "use_gpu", "per_device_batch_size",
                     "checkpoint_every", "merge", "max_failures", "ray_address"):
            del settings[name]  # where and how the run is laid out, not what it computes
        return settings


@dataclass
class FinetuneSummary:
    """What a fine-tuning run did."""

    output: str
    steps: int
    resumed_from_step: int
    train_examples: int
    validation_examples: int
    dropped_too_long: int
    train_loss: list[list[float]] = field(default_factory=list)  # [step, mean target-token loss]
    validation_loss: list[list[float]] = field(default_factory=list)  # [step, loss] at each checkpoint
    merged: bool = False
    wall_seconds: float = 0.0
    task: str | None = None  # a SELF-GUIDE dataset's task: its prompts hold the spec's instruction and demonstrations

    def format(self) -> str:
        """A short human-readable report."""
        resumed = f", resumed from step {self.resumed_from_step}" if self.resumed_from_step else ""
        validation = f"{self.validation_loss[-1][1]:.4f}" if self.validation_loss else "n/a (no validation split)"
        lines = [f"fine-tuned {self.steps} steps on {self.train_examples} examples ({self.validation_examples} held "
                 f"out, {self.dropped_too_long} dropped as too long) in {self.wall_seconds:.1f}s{resumed}",
                 f"train loss: {self.train_loss[0][1]:.4f} (step 1) -> {self.train_loss[-1][1]:.4f} "
                 f"(step {self.steps})",
                 f"validation loss: {validation}",
                 f"adapter: {join(self.output, ADAPTER_DIR)}"]
        if self.task:
            lines.insert(1, f"prompts: SELF-GUIDE task {self.task!r}, its instruction and demonstrations around "
                            "each input (as the student saw them when it annotated)")
        if self.merged:
            lines.append(f"merged model: {join(self.output, MERGED_DIR)}")
        return "\n".join(lines)


def prepare_data(config: FinetuneConfig, tokenizer: Any) -> tuple[TrainingData, int, TaskSpec | None]:
    """Read, split and tokenise the dataset; returns the training data, how many examples were too long and,
    for a SELF-GUIDE dataset, its task spec (prompts are built from it: ``adapt.prompts``)."""
    examples = load_examples(config.dataset, config.task_types)
    task = self_guide_task(config.dataset, examples)
    train_rows, validation_rows = split(examples, config.validation_fraction)
    train, dropped = encode_examples(tokenizer, train_rows, config.prompt_format, config.max_length, task)
    validation, dropped_validation = encode_examples(tokenizer, validation_rows, config.prompt_format,
                                                     config.max_length, task)
    plan = StepPlan(len(train), config.batch_size, config.epochs, config.max_steps, config.seed)
    if plan.steps_per_epoch == 0:
        raise FinetuneConfigError(
            f"{config.dataset}: {len(train)} training examples (after holding out {len(validation)} for validation"
            f" and dropping {dropped + dropped_validation} longer than --max-length {config.max_length}) do not fill"
            f" one batch of --batch-size {config.batch_size}")
    return TrainingData(train, validation, plan), dropped + dropped_validation, task


def finetune(config: FinetuneConfig, overwrite: bool = False, progress_stream: Any = None) -> FinetuneSummary:
    """Train LoRA adapters of ``config.model`` on ``config.dataset`` on Ray Train.

    Settings, model and dataset are checked before Ray is joined (``config.ray_address``). While it trains,
    a progress line (``adapt.train_progress``) shows on ``progress_stream`` (default stderr).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from bonito_ray.adapt.train_progress import TRAINED, TrainProgress, started_counter

    started = time.monotonic()
    config.validate()
    _refuse_foreign_output(config)
    tokenizer = padded_tokenizer(config.model)
    check_prompt_format(tokenizer, config.prompt_format, config.model)
    data, dropped, task = prepare_data(config, tokenizer)
    cluster.connect(config.ray_address, verbose=config.verbose)
    if config.use_gpu and not ray.cluster_resources().get("GPU", 0):
        # Not an error: an autoscaling cluster whose GPU group starts at zero adds GPUs on demand.
        logger.warning("--use-gpu: the Ray cluster has no GPU right now; training waits until the "
                       "autoscaler adds %d (it never starts on a cluster that cannot)", config.num_workers)
    _claim_output(config, overwrite)
    logger.info("fine-tuning %s: %d training examples, %d steps of %d", config.model, len(data.train),
                data.plan.total_steps, config.batch_size)

    fs, root = resolve_filesystem(config.output)
    counter = started_counter(data.plan.total_steps)  # rank 0 tells it each step: the progress line
    trainer = TorchTrainer(
        train_loop_per_worker,
        # task_spec: recorded with the adapter, so that `evaluate` prompts as training did
        train_loop_config={**asdict(config), "data": ray.put(data), "task_spec": task.to_dict() if task else None,
                           "progress": counter},
        scaling_config=ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                                     resources_per_worker={"CPU": config.cpus_per_worker}),
        run_config=RunConfig(name=CHECKPOINTS_DIR, storage_path=root, storage_filesystem=fs,
                             checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
                             failure_config=FailureConfig(max_failures=config.max_failures),
                             # Ray Train's worker-group and checkpoint INFO lines: the summary says it once
                             logging_config=LoggingConfig(log_level="INFO" if config.verbose else console.QUIET_LEVEL)),
    )
    progress = TrainProgress(counter, stream=progress_stream).start()
    try:
        state = trainer.fit().return_value
    except BaseException:
        progress.stop("failed")
        raise
    progress.stop(TRAINED)
    summary = FinetuneSummary(
        output=config.output, steps=state["step"], resumed_from_step=state["resumed_from_step"],
        train_examples=len(data.train), validation_examples=len(data.validation), dropped_too_long=dropped,
        train_loss=state["train_loss"], validation_loss=state["validation_loss"],
        merged=config.merge, wall_seconds=round(time.monotonic() - started, 3), task=task.name if task else None)
    write_text(join(config.output, SUMMARY_FILE), json.dumps(asdict(summary), indent=2))
    return summary


def _refuse_foreign_output(config: FinetuneConfig) -> None:
    """Refuse an output inside the dataset, or holding files that no run of ours wrote: a fine-tuning run's
    are those of RUN_ENTRIES beside its settings (CONFIG_FILE), which it writes first; the docs put
    evaluation reports beside them."""
    check_no_overlap(config.dataset, config.output)
    fs, root = resolve_filesystem(config.output)
    run = read_record(fs, join(root, CONFIG_FILE), {"model", "dataset"}) is not None

    def ours(relative: str) -> bool:
        return (run and relative.split("/", 1)[0] in RUN_ENTRIES) or is_report(fs, join(root, relative))

    refuse_foreign_files(fs, root, config.output, ours, "fine-tuning output")


def _claim_output(config: FinetuneConfig, overwrite: bool) -> None:
    """Record the settings at the output; refuse to resume a run whose training settings differ."""
    path = join(config.output, CONFIG_FILE)
    if overwrite:  # only what a run writes: never anything else the user keeps there
        for name in RUN_ENTRIES:
            delete(join(config.output, name))
    previous = read_text(path)
    if previous is not None:
        earlier = json.loads(previous)
        changed = sorted(k for k, v in config.identity().items() if earlier.get(k) != v)
        if changed:
            raise FinetuneConfigError(
                f"{config.output} holds a fine-tuning run with other settings ({', '.join(changed)}); "
                "re-run with the same settings to resume it, or pass --overwrite to start afresh")
        logger.info("%s holds an earlier run with these settings: resuming it", config.output)
    write_text(path, json.dumps(config.identity(), indent=2))
