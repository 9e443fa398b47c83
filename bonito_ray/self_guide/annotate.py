"""Output annotation: each kept input answered ``samples`` times, then voted on.

One engine pass over every kept input times ``samples``. Each sample is read from its slot and
filtered (empty, noise, and for generation tasks length against the demonstrations' outputs; for
classification it is mapped to the first label it contains, or dropped as ``not_a_label``); the
dropped samples go to ``_rejects/stage=self_guide_sample/``. Per input, the vote (``vote.majority``)
keeps an answer or drops the input with its reason to ``_rejects/stage=self_guide_vote/``; for
classification the kept examples are then balanced across labels (``class_balance`` drops, same
folder). The accepted examples are written to ``self_guide/train-*.parquet``.

The pass runs as one step after the last round: a run killed in it redoes it whole on rerun (the
files have fixed names and are replaced), so nothing is lost or written twice.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from bonito_ray.engines import EngineStage
from bonito_ray.schema import (ACCEPTED_FILE_PREFIX, PARQUET_SUFFIX, SELF_GUIDE_REJECTS_DIRS, SELF_GUIDE_TASK,
                               accepted_dir, stable_id)
from bonito_ray.self_guide import engine, filters, vote
from bonito_ray.self_guide.config import SelfGuideConfig
from bonito_ray.self_guide.progress import SelfGuideProgress
from bonito_ray.self_guide.prompts import annotation_prompt, read_slot
from bonito_ray.self_guide.spec import TaskSpec
from bonito_ray.budget import Tally
from bonito_ray.rejects import ENGINE_ERROR
from bonito_ray.storage import join, write_parquet

logger = logging.getLogger(__name__)

SAMPLE_REJECTS_DIR, VOTE_REJECTS_DIR = SELF_GUIDE_REJECTS_DIRS[1], SELF_GUIDE_REJECTS_DIRS[2]
LOCATION = ("id", "source", "position", "task_type", "sample_index", "model")  # the keys _location gives a row


@dataclass
class Annotation:
    """What annotation made: accepted example rows and reject rows by stage."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    sample_rejects: list[dict[str, Any]] = field(default_factory=list)
    vote_rejects: list[dict[str, Any]] = field(default_factory=list)


def sample_requests(config: SelfGuideConfig, spec: TaskSpec, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``samples`` annotation requests per kept input; a request's ``input_id`` names its input."""
    sampling = config.output_sampling()
    rows = []
    for item in inputs:
        prompt = annotation_prompt(spec, item["input"])
        for j in range(config.samples):
            rows.append({**engine.request(stable_id(item["id"], "sample", j), prompt, sampling, config.seed,
                                          source=config.spec, model=config.model, position=item["round"],
                                          sample_index=j),
                         "input_id": item["id"]})
    return rows


def judge_sample(config: SelfGuideConfig, spec: TaskSpec, generation: dict[str, Any],
                 bounds: filters.LengthBounds | None) -> tuple[str | None, str | None, str]:
    """(answer, drop reason, detail) of one annotation sample: exactly one of answer and reason is None."""
    if generation.get("engine_error"):
        return None, ENGINE_ERROR, generation["engine_error"]
    text = read_slot(generation.get("generated_text"))
    reason, detail = filters.first_drop(text, bounds=bounds, use_noise=config.noise_filter)
    if reason is not None:
        return None, reason, detail
    if spec.is_classification:
        label = vote.to_label(text, spec.labels)
        if label is None:
            return None, vote.NOT_A_LABEL, f"none of the labels {list(spec.labels)} in the output"
        return label, None, ""
    return text, None, ""


def annotate(config: SelfGuideConfig, spec: TaskSpec, inputs: list[dict[str, Any]],
             generations: dict[str, dict[str, Any]], requests: list[dict[str, Any]]) -> Annotation:
    """Judge every sample, vote per input, balance classes: the rows to write."""
    bounds = (filters.LengthBounds.around([d.output for d in spec.demonstrations], config.length_std)
              if config.filters_output_length(spec) else None)
    result = Annotation()
    answers: dict[str, list[tuple[str, dict[str, Any]]]] = {item["id"]: [] for item in inputs}
    for row in requests:
        generation = generations[row["id"]]
        answer, reason, detail = judge_sample(config, spec, generation, bounds)
        if reason is None:
            answers[row["input_id"]].append((answer, generation))
        else:
            result.sample_rejects.append({**_location(row, row["id"], row["sample_index"]),
                                          **engine.engine_fields(generation), "reason": reason, "detail": detail})
    voted = []
    for item in inputs:
        outcome = vote.majority([a for a, _ in answers[item["id"]]], config.consistency_threshold)
        where = _location(item, item["id"], item["index"], source=config.spec, model=config.model)
        if outcome.answer is None:
            result.vote_rejects.append({**where, "reason": outcome.reason, "detail": outcome.detail,
                                        "raw": item["input"]})
            continue
        chosen = next(g for a, g in answers[item["id"]] if a == outcome.answer)
        voted.append({**where, "input": item["input"], "output": outcome.answer,
                      "num_input_tokens": chosen.get("num_input_tokens"),
                      "num_generated_tokens": chosen.get("num_generated_tokens")})
    result.accepted = voted
    if spec.is_classification and config.balance_classes:
        result.accepted, unbalanced = vote.balance(voted, "output", seed=config.seed)
        smallest = min(Counter(r["output"] for r in voted).values()) if voted else 0
        result.vote_rejects += [{**{k: r[k] for k in LOCATION}, "reason": vote.CLASS_BALANCE, "raw": r["input"],
                                 "detail": f"label {r['output']!r}: classes are cut to the smallest ({smallest})"}
                                for r in unbalanced]
        result.accepted.sort(key=lambda r: (r["position"], r["sample_index"]))
    return result


def _location(row: dict[str, Any], row_id: str, index: int, source: str | None = None,
              model: str | None = None) -> dict[str, Any]:
    return {"id": row_id, "source": source or row["source"], "position": row.get("position", row.get("round")),
            "task_type": SELF_GUIDE_TASK, "sample_index": index, "model": model or row["model"]}


def run_annotation(config: SelfGuideConfig, spec: TaskSpec, stage: EngineStage, inputs: list[dict[str, Any]],
                   fs: pafs.FileSystem, staging: str, progress: SelfGuideProgress, errors: Tally) -> Annotation:
    """Annotate ``inputs`` and write the accepted examples and the rejects into ``staging``; the engine's errors
    are counted in ``errors`` (the error budget)."""
    for folder in (accepted_dir(SELF_GUIDE_TASK), SAMPLE_REJECTS_DIR, VOTE_REJECTS_DIR):
        fs.delete_dir_contents(join(staging, folder), missing_dir_ok=True)  # a killed attempt's files go
    requests = sample_requests(config, spec, inputs)
    progress.annotation_started(len(requests))
    generations = engine.generate(stage, requests, config.batch_size, errors, returned=progress.returned)
    result = annotate(config, spec, inputs, generations, requests)
    table = engine.accepted_table(result.accepted)
    for k, start in enumerate(range(0, max(table.num_rows, 1), config.rows_per_file)):
        write_parquet(fs, join(staging, accepted_dir(SELF_GUIDE_TASK),
                               f"{ACCEPTED_FILE_PREFIX}annotation-{k:04d}{PARQUET_SUFFIX}"),
                      table.slice(start, config.rows_per_file))
    write_parquet(fs, join(staging, SAMPLE_REJECTS_DIR, "rejects-annotation.pq"),
                  engine.reject_table(result.sample_rejects))
    write_parquet(fs, join(staging, VOTE_REJECTS_DIR, "rejects-annotation.pq"),
                  engine.reject_table(result.vote_rejects))
    progress.annotated(len(result.accepted), [r["reason"] for r in result.sample_rejects],
                       [r["reason"] for r in result.vote_rejects])
    logger.info("self-guide annotation: %d examples kept from %d inputs; samples dropped: %d; inputs dropped: %s",
                len(result.accepted), len(inputs), len(result.sample_rejects),
                ", ".join(f"{k}: {v}" for k, v in sorted(Counter(r["reason"] for r in result.vote_rejects).items()))
                or "none")
    return result
