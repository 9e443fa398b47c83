"""Input generation in rounds (SELF-GUIDE, Zhao et al., 2024), each round one staged file.

Round ``r`` asks for ``inputs_per_round`` inputs. ``rounds_per_pass`` rounds share one engine pass (one
Ray Data execution; on engines that do not keep their replicas for the job, one engine start). Each prompt
shows the demonstrations' inputs and a random 1-10 (``min_weak_examples``..``max_weak_examples``)
of the inputs kept before its pass; for classification a label is drawn uniformly first and the
prompt asks for an input with that label. Each generated input goes through the filters (empty,
length, noise, duplicate of a kept input, near copy of a demonstration or of a kept input); the
dropped ones are written with their reason to ``_rejects/stage=self_guide_input/``, then the kept
ones to ``_self_guide/inputs-round-<r>.pq``. That second file is the round's commit point: a rerun
skips every round whose file is there and redoes the ones that are not (their rejects files, same
names, are replaced), so a killed run neither loses nor repeats a round.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bonito_ray.engines import EngineStage
from bonito_ray.schema import SELF_GUIDE_DIR, SELF_GUIDE_REJECTS_DIRS, SELF_GUIDE_TASK, stable_id
from bonito_ray.self_guide import engine, filters
from bonito_ray.self_guide.config import SelfGuideConfig
from bonito_ray.self_guide.progress import SelfGuideProgress
from bonito_ray.self_guide.prompts import input_prompt, read_slot
from bonito_ray.self_guide.spec import TaskSpec
from bonito_ray.budget import Tally
from bonito_ray.rejects import ENGINE_ERROR
from bonito_ray.storage import join, write_parquet

logger = logging.getLogger(__name__)

INPUT_REJECTS_DIR = SELF_GUIDE_REJECTS_DIRS[0]
KEPT_SCHEMA = pa.schema([("id", pa.string()), ("round", pa.int64()), ("index", pa.int64()),
                         ("label", pa.string()), ("input", pa.string()),
                         ("num_input_tokens", pa.int64()), ("num_generated_tokens", pa.int64())])


def round_file(staging: str, number: int) -> str:
    return join(staging, SELF_GUIDE_DIR, f"inputs-round-{number:04d}.pq")


def rejects_file(staging: str, number: int) -> str:
    return join(staging, INPUT_REJECTS_DIR, f"rejects-round-{number:04d}.pq")


def random_for(seed: int | None, *parts: object) -> random.Random:
    """The random choices of one step: derived from the job's seed (unseeded: fresh each run)."""
    return random.Random(stable_id(seed, *parts) if seed is not None else None)


def round_requests(config: SelfGuideConfig, spec: TaskSpec, number: int, pool: list[str]) -> list[dict[str, Any]]:
    """The requests of round ``number``; ``pool``: the inputs kept in the rounds before it. Each row's
    ``label`` is the one its prompt asks for (classification), ``prompt`` and ``sampling_params`` as engines want."""
    sampling = config.input_sampling(spec)
    rows = []
    for index in range(config.inputs_per_round):
        # Two draws per request: the label it asks for does not depend on what earlier rounds kept.
        label_rng, weak_rng = (random_for(config.seed, spec.fingerprint(), what, number, index)
                               for what in ("label", "weak"))
        label = label_rng.choice(spec.labels) if spec.is_classification else None
        shown = min(len(pool), weak_rng.randint(config.min_weak_examples, config.max_weak_examples))
        weak = weak_rng.sample(pool, shown) if shown else []
        request_id = stable_id(spec.fingerprint(), "input", number, index)
        rows.append({**engine.request(request_id, input_prompt(spec, weak, label), sampling, config.seed,
                                      source=config.spec, model=config.model, position=number, sample_index=index),
                     "label": label})
    return rows


def filter_round(config: SelfGuideConfig, spec: TaskSpec, requests: list[dict[str, Any]],
                 generations: dict[str, dict[str, Any]], kept_before: list[str]) -> tuple[list[dict], list[dict]]:
    """(kept, rejects) of one round's generations, in request order; ``kept_before``: the inputs kept in the rounds
    before it, in order."""
    demonstrations = [d.input for d in spec.demonstrations]
    bounds = (filters.LengthBounds.around(demonstrations, config.length_std)
              if config.filters_input_length(spec) else None)
    seen = set(kept_before)
    near = (filters.NearCopies.of(demonstrations, config.near_duplicate_threshold, kept_before)
            if config.near_duplicate_filter else None)
    kept, rejects = [], []
    for row in requests:
        generation = generations[row["id"]]
        text = read_slot(generation.get("generated_text"))
        if generation.get("engine_error"):
            reason, detail = ENGINE_ERROR, generation["engine_error"]
        else:
            reason, detail = filters.first_drop(text, bounds=bounds, use_noise=config.noise_filter, seen=seen,
                                                near=near)
        figures = engine.engine_fields(generation)
        if reason is None:
            seen.add(text)
            if near is not None:
                near.add(text)
            kept.append({"id": row["id"], "round": row["position"], "index": row["sample_index"],
                         "label": row["label"], "input": text, "num_input_tokens": figures["num_input_tokens"],
                         "num_generated_tokens": figures["num_generated_tokens"]})
        else:
            rejects.append({**_location(row), **figures, "reason": reason,
                            "detail": detail + (f" (asked for label {row['label']})" if row["label"] else "")})
    return kept, rejects


def _location(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "source": row["source"], "position": row["position"], "task_type": SELF_GUIDE_TASK,
            "sample_index": row["sample_index"], "model": row["model"]}


def generate_inputs(config: SelfGuideConfig, spec: TaskSpec, stage: EngineStage, fs: pafs.FileSystem,
                    staging: str, progress: SelfGuideProgress, errors: Tally,
                    guard: Callable[[], None] = lambda: None) -> tuple[list[dict[str, Any]], int]:
    """Run (or resume) every round; returns (the kept inputs of all rounds in order, rounds skipped as done).
    ``guard`` is called before each round is staged (the output's lease check: a run that lost the output
    to another stops writing); ``progress`` is told each pass and each round, ``errors`` (the error budget)
    each pass's engine errors.

    Rounds go to the engine ``rounds_per_pass`` at a time (the paper: one); the prompts of a pass show
    inputs kept before the pass, and its rounds are filtered and staged one by one, in order.
    """
    total = config.rounds(spec)
    kept_all: list[dict[str, Any]] = []
    skipped = 0
    for first in range(0, total, config.rounds_per_pass):
        numbers = range(first, min(first + config.rounds_per_pass, total))
        staged = {n for n in numbers if fs.get_file_info(round_file(staging, n)).type == pafs.FileType.File}
        pool = [row["input"] for row in kept_all]
        by_round = {n: round_requests(config, spec, n, pool) for n in numbers if n not in staged}
        requests = [r for rows in by_round.values() for r in rows]
        progress.engine_pass(len(requests))
        generations = engine.generate(stage, requests, config.batch_size, errors, returned=progress.returned)
        for number in numbers:
            path = round_file(staging, number)
            if number in staged:
                kept = pq.read_table(path, filesystem=fs).to_pylist()
                kept_all += kept
                skipped += 1
                dropped = pq.read_table(rejects_file(staging, number), filesystem=fs, columns=["reason"])
                progress.round_done(len(kept), dropped["reason"].to_pylist(), skipped=True)
                continue
            kept, rejects = filter_round(config, spec, by_round[number], generations,
                                         [row["input"] for row in kept_all])
            guard()
            write_parquet(fs, rejects_file(staging, number), engine.reject_table(rejects))
            write_parquet(fs, path, pa.Table.from_pylist(kept, KEPT_SCHEMA))  # last: the round is done
            kept_all += kept
            progress.round_done(len(kept), [r["reason"] for r in rejects])
            logger.info("self-guide round %d of %d: %d inputs kept, %d dropped (%s)", number + 1, total,
                        len(kept), len(rejects), _counts(rejects))
    if skipped:
        logger.info("resumed: %d of %d rounds were already done and were skipped", skipped, total)
    return kept_all, skipped


def _counts(rows: list[dict]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(Counter(r["reason"] for r in rows).items())) or "none"
