"""The ``evaluate`` driver: the paper's protocol, zero-shot and adapted side by side.

Rows of every evaluation set go through one Ray Data pipeline (``map_batches`` over
:class:`~bonito_ray.adapt.scoring.Scorer` actors, each holding the model once); the driver
then computes macro-F1 (classification sets) or SQuAD F1 / EM (generation sets) per set.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from bonito_ray import cluster
from bonito_ray.adapt.errors import AdaptError, EvalSetError
from bonito_ray.adapt.evalsets import CLASSIFICATION, GENERATION, EvalSet, load_eval_set
from bonito_ray.adapt.fsio import read_text, write_text
from bonito_ray.adapt.metrics import classification_scores, squad_scores
from bonito_ray.hf_models import padded_tokenizer
from bonito_ray.adapt.prompts import check_prompt_format
from bonito_ray.adapt.scoring import ADAPTED, ZERO_SHOT, Scorer
from bonito_ray.adapt.train_loop import ADAPTER_METADATA_FILE
from bonito_ray.storage import driver_path, join

logger = logging.getLogger(__name__)

PAPER_MAX_NEW_TOKENS = 25
PRIMARY_METRIC = {CLASSIFICATION: "macro_f1", GENERATION: "f1"}
_METRIC_LABEL = {"macro_f1": "macro-F1", "f1": "SQuAD F1"}


@dataclass
class EvaluateConfig:
    """Settings of one evaluation run."""

    eval_sets: list[str]
    model: str | None = None  # default: the base model recorded with the adapter
    adapter: str | None = None
    prompt_format: str | None = None  # default: the adapter's training format, else plain
    output: str | None = None  # report JSON (local path or URI)
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS
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


def resolve_model(config: EvaluateConfig) -> tuple[str, str]:
    """The base model and prompt format: given ones first, else those the adapter was trained with."""
    trained: dict[str, Any] = {}
    if config.adapter:
        if read_text(join(config.adapter, "adapter_config.json")) is None:
            raise AdaptError(f"no LoRA adapter at {config.adapter} (adapter_config.json is missing)")
        trained = json.loads(read_text(join(config.adapter, ADAPTER_METADATA_FILE)) or "{}")
    model = config.model or trained.get("base_model")
    if not model:
        raise AdaptError("--model is required (no --adapter with a recorded base model was given)")
    return model, config.prompt_format or trained.get("prompt_format", "plain")


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Score every evaluation set with the base model and, given an adapter, the adapted one; returns the report.

    Settings, model and evaluation sets are checked before Ray is joined (``config.ray_address``).
    """
    import ray

    for flag in ("max_new_tokens", "batch_size", "num_replicas"):
        if getattr(config, flag) <= 0:
            raise AdaptError(f"--{flag.replace('_', '-')} must be positive, not {getattr(config, flag)}")
    model, prompt_format = resolve_model(config)
    check_prompt_format(padded_tokenizer(model), prompt_format, model)
    sets = [load_eval_set(path) for path in config.eval_sets]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise EvalSetError(f"evaluation sets need distinct file names; got {', '.join(names)}")
    items = [{"kind": s.kind, "input": text, "choices": choices}
             for s in sets for text, choices in zip(s.inputs, s.choices)]
    for key, item in enumerate(items):
        item["key"] = key  # rows come back in any order
    cluster.connect(config.ray_address, verbose=config.verbose)
    scored = ray.data.from_items(items).map_batches(
        Scorer,
        fn_constructor_kwargs={"model": model, "adapter": config.adapter, "prompt_format": prompt_format,
                               "max_new_tokens": config.max_new_tokens,
                               "num_threads": max(1, int(config.cpus_per_replica))},
        batch_size=config.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=config.num_replicas),
        num_cpus=config.cpus_per_replica, num_gpus=config.gpus_per_replica,
    ).take_all()
    by_key = {row["key"]: row for row in scored}
    variants = [ZERO_SHOT, ADAPTED] if config.adapter else [ZERO_SHOT]
    report: dict[str, Any] = {"model": model, "adapter": config.adapter, "prompt_format": prompt_format,
                              "max_new_tokens": config.max_new_tokens, "scale": "percent", "sets": []}
    offset = 0
    for eval_set in sets:
        rows = [by_key[offset + i] for i in range(len(eval_set))]
        offset += len(eval_set)
        report["sets"].append(_set_report(eval_set, rows, variants))
    report["average"] = {v: round(sum(s[v][s["metric"]] for s in report["sets"]) / len(sets), 2) for v in variants}
    if config.output:
        write_text(config.output, json.dumps(report, indent=2))
    return report


def _set_report(eval_set: EvalSet, rows: list[dict], variants: list[str]) -> dict[str, Any]:
    """Metrics (in percent) of each variant's predictions on one set."""
    entry: dict[str, Any] = {"name": eval_set.name, "path": eval_set.path, "kind": eval_set.kind,
                             "metric": PRIMARY_METRIC[eval_set.kind], "examples": len(eval_set)}
    for variant in variants:
        predictions = [row[f"{variant}_prediction"] for row in rows]
        if eval_set.kind == CLASSIFICATION:
            scores = classification_scores(predictions, [golds[0] for golds in eval_set.answers])
        else:
            scores = squad_scores(predictions, eval_set.answers)
        entry[variant] = {name: round(100 * value, 2) for name, value in scores.items()}
    return entry


def format_table(report: dict[str, Any]) -> str:
    """The report as a small aligned table: one row per set, zero-shot and adapted side by side."""
    adapted = report["adapter"] is not None
    header = ["eval set", "kind", "metric", "rows", "zero-shot"] + (["adapted", "gain"] if adapted else [])
    lines = [header]
    for s in report["sets"]:
        row = [s["name"], s["kind"], _METRIC_LABEL[s["metric"]], str(s["examples"]),
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
