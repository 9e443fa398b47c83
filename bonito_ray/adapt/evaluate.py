"""The ``evaluate`` driver: zero-shot and adapted side by side, under Bonito's or SELF-GUIDE's protocol.

Rows of every evaluation set go through one Ray Data pipeline (``map_batches`` over
:class:`~bonito_ray.adapt.scoring.Scorer` actors, each holding the model once); the driver
then computes the protocol's metrics per set (``protocols``): Bonito's macro-F1 / SQuAD F1, or
SELF-GUIDE's exact match / ROUGE-L.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from bonito_ray import cluster
from bonito_ray.adapt.errors import AdaptError, EvalSetError
from bonito_ray.adapt.evalsets import GENERATION, EvalSet, load_eval_set
from bonito_ray.adapt.fsio import read_text, write_text
from bonito_ray.adapt.metrics import rouge_available
from bonito_ray.adapt.protocols import BONITO, METRIC_LABELS, PROTOCOLS, SELF_GUIDE, Protocol
from bonito_ray.hf_models import padded_tokenizer
from bonito_ray.ownership import read_record
from bonito_ray.adapt.prompts import check_prompt_format
from bonito_ray.adapt.scoring import ADAPTED, ZERO_SHOT, Scorer
from bonito_ray.adapt.train_loop import ADAPTER_METADATA_FILE
from bonito_ray.self_guide.spec import TaskSpec, load_spec, parse_spec
from bonito_ray.storage import driver_path, join, resolve_filesystem

logger = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    """Settings of one evaluation run."""

    eval_sets: list[str]
    model: str | None = None  # default: the base model recorded with the adapter
    adapter: str | None = None
    prompt_format: str | None = None  # default: the adapter's training format, else plain
    output: str | None = None  # report JSON (local path or URI)
    protocol: str | None = None  # a PROTOCOLS name; default: self-guide when prompts hold a task spec, else bonito
    spec: str | None = None  # a SELF-GUIDE task spec file; default: the one recorded with the adapter, if any
    max_new_tokens: int | None = None  # default: the protocol's
    batch_size: int = 8
    num_replicas: int = 1
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    ray_address: str | None = None  # the cluster to join once the request is checked (see cluster.connect)
    verbose: bool = False  # Ray's own logs and progress on the console (bonito_ray.console)

    def __post_init__(self) -> None:  # resolved on the driver: Ray workers do not share its working directory
        self.eval_sets = [driver_path(path) for path in self.eval_sets]
        self.model = driver_path(self.model, only_existing=True)
        self.adapter, self.output = driver_path(self.adapter), driver_path(self.output)
        self.spec = driver_path(self.spec)


def resolve_model(config: EvaluateConfig) -> tuple[str, str, TaskSpec | None]:
    """The base model, prompt format and SELF-GUIDE task spec: given ones first, else those the adapter was
    trained with (a spec only if it was trained on a SELF-GUIDE dataset)."""
    trained: dict[str, Any] = {}
    metadata = join(config.adapter, ADAPTER_METADATA_FILE) if config.adapter else ""
    if config.adapter:
        if read_text(join(config.adapter, "adapter_config.json")) is None:
            raise AdaptError(f"no LoRA adapter at {config.adapter} (adapter_config.json is missing)")
        trained = json.loads(read_text(metadata) or "{}")
    model = config.model or trained.get("base_model")
    if not model:
        raise AdaptError("--model is required (no --adapter with a recorded base model was given)")
    if config.spec:
        task = load_spec(config.spec)
    else:
        task = parse_spec(trained["task_spec"], metadata) if trained.get("task_spec") else None
    return model, config.prompt_format or trained.get("prompt_format", "plain"), task


def resolve_protocol(config: EvaluateConfig, task: TaskSpec | None) -> Protocol:
    """The protocol asked for; by default SELF-GUIDE's for a SELF-GUIDE task, else Bonito's."""
    if config.protocol is None:
        return SELF_GUIDE if task else BONITO
    if config.protocol not in PROTOCOLS:
        raise AdaptError(f"unknown protocol {config.protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[config.protocol]


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Score every evaluation set with the base model and, given an adapter, the adapted one; returns the report.

    Settings, model and evaluation sets are checked before Ray is joined (``config.ray_address``).
    """
    import ray

    for flag in ("max_new_tokens", "batch_size", "num_replicas"):
        if getattr(config, flag) is not None and getattr(config, flag) <= 0:
            raise AdaptError(f"--{flag.replace('_', '-')} must be positive, not {getattr(config, flag)}")
    if config.output:
        _refuse_foreign_report(config.output)
    model, prompt_format, task = resolve_model(config)
    protocol = resolve_protocol(config, task)
    max_new_tokens = config.max_new_tokens or protocol.max_new_tokens
    check_prompt_format(padded_tokenizer(model), prompt_format, model)
    sets = [load_eval_set(path) for path in config.eval_sets]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise EvalSetError(f"evaluation sets need distinct file names; got {', '.join(names)}")
    _check_sets(sets, protocol, task)
    items = [{"kind": s.kind, "input": text, "choices": choices}
             for s in sets for text, choices in zip(s.inputs, s.choices)]
    for key, item in enumerate(items):
        item["key"] = key  # rows come back in any order
    cluster.connect(config.ray_address, verbose=config.verbose)
    scored = ray.data.from_items(items).map_batches(
        Scorer,
        fn_constructor_kwargs={"model": model, "adapter": config.adapter, "prompt_format": prompt_format,
                               "max_new_tokens": max_new_tokens, "num_threads": max(1, int(config.cpus_per_replica)),
                               "ranks_choices": protocol.ranks_choices, "task": task},
        batch_size=config.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=config.num_replicas),
        num_cpus=config.cpus_per_replica, num_gpus=config.gpus_per_replica,
    ).take_all()
    by_key = {row["key"]: row for row in scored}
    variants = [ZERO_SHOT, ADAPTED] if config.adapter else [ZERO_SHOT]
    report: dict[str, Any] = {"model": model, "adapter": config.adapter, "prompt_format": prompt_format,
                              "protocol": protocol.name, "task": task.name if task else None,
                              "variants": {v: protocol.variants[v] for v in variants},
                              "max_new_tokens": max_new_tokens, "scale": "percent", "sets": []}
    offset = 0
    for eval_set in sets:
        rows = [by_key[offset + i] for i in range(len(eval_set))]
        offset += len(eval_set)
        report["sets"].append(_set_report(eval_set, rows, variants, protocol))
    report["average"] = {v: round(sum(s[v][s["metric"]] for s in report["sets"]) / len(sets), 2) for v in variants}
    if config.output:
        write_text(config.output, json.dumps(report, indent=2))
    return report


def is_report(fs: pafs.FileSystem, path: str) -> bool:
    """Whether the file at ``path`` is an evaluation report of ours."""
    return read_record(fs, path, {"protocol", "variants", "sets"}) is not None


def _refuse_foreign_report(uri: str) -> None:
    """--output may replace an earlier report of ours, never another file (or write into a folder)."""
    fs, path = resolve_filesystem(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        raise AdaptError(f"--output {uri} is a folder; give the report's file name")
    if kind != pafs.FileType.NotFound and not is_report(fs, path):
        raise AdaptError(f"--output {uri} is a file bonito-ray did not write (not an evaluation report); "
                         "choose another name (bonito-ray overwrites nothing it did not write)")


def _check_sets(sets: list[EvalSet], protocol: Protocol, task: TaskSpec | None) -> None:
    """Refuse (before any scoring) what the protocol cannot score here; warn of a likely mistaken set kind."""
    generation = [s.name for s in sets if s.kind == GENERATION]
    if protocol is SELF_GUIDE and generation and not rouge_available():
        raise AdaptError(f"ROUGE-L (set(s) {', '.join(generation)}) needs rouge-score: pip install -e '.[train]'")
    if task is not None and task.is_classification:
        for name in generation:
            logger.warning("evaluation set %s has no `choices`, so it is scored as generation, but task %r is a "
                           "classification task: give its rows `choices` (the labels)", name, task.name)


def _set_report(eval_set: EvalSet, rows: list[dict], variants: list[str], protocol: Protocol) -> dict[str, Any]:
    """Metrics (in percent) of each variant's predictions on one set."""
    entry: dict[str, Any] = {"name": eval_set.name, "path": eval_set.path, "kind": eval_set.kind,
                             "metric": protocol.metric[eval_set.kind], "examples": len(eval_set)}
    for variant in variants:
        scores = protocol.scores[eval_set.kind](eval_set, [row[f"{variant}_prediction"] for row in rows])
        entry[variant] = {name: round(100 * value, 2) for name, value in scores.items()}
    return entry


def format_table(report: dict[str, Any]) -> str:
    """The report as a small aligned table: one row per set, zero-shot and adapted (as the protocol calls
    them) side by side."""
    adapted = report["adapter"] is not None
    names = report["variants"]
    header = ["eval set", "kind", "metric", "rows", names[ZERO_SHOT]] + ([names[ADAPTED], "gain"] if adapted else [])
    lines = [header]
    for s in report["sets"]:
        row = [s["name"], s["kind"], METRIC_LABELS[s["metric"]], str(s["examples"]),
               f"{s[ZERO_SHOT][s['metric']]:.1f}"]
        if adapted:
            gain = s[ADAPTED][s["metric"]] - s[ZERO_SHOT][s["metric"]]
            row += [f"{s[ADAPTED][s['metric']]:.1f}", f"{gain:+.1f}"]
        lines.append(row)
    average = report["average"]
    lines.append(["average", "", "", "", f"{average[ZERO_SHOT]:.1f}"]
                 + ([f"{average[ADAPTED]:.1f}", f"{average[ADAPTED] - average[ZERO_SHOT]:+.1f}"] if adapted else []))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))).rstrip() for line in lines)
