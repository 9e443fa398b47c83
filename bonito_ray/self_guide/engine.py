"""Requests through an engine stage on Ray Data, and the rows SELF-GUIDE's steps write.

A step builds its requests on the driver (a few thousand rows at most: one task's inputs times
its samples), runs them through the engine stage as one Ray Data dataset and gets the generations
back by request id. The request rows follow the engine row contract (``bonito_ray.engines``), in
the generation job's request schema so that every engine carries the id through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import ray

from bonito_ray.budget import Tally
from bonito_ray.engines import EngineStage
from bonito_ray.schema import ACCEPTED_SCHEMA, REJECT_SCHEMA, SELF_GUIDE_TASK, table_from_rows
from bonito_ray.engine_rows import REQUEST_SCHEMA, row_seed


def request(request_id: str, prompt: str, sampling: dict[str, Any], seed: int | None, *, source: str,
            model: str, position: int, sample_index: int) -> dict[str, Any]:
    """One request row: ``sampling`` with the row's own seed derived from the job's ``seed`` and the id."""
    return {"id": request_id, "task_type": SELF_GUIDE_TASK, "source": source, "position": position,
            "sample_index": sample_index, "model": model, "prompt": prompt,
            "sampling_params": {**sampling, "seed": row_seed(seed, request_id)}}


def generate(stage: EngineStage, requests: list[dict[str, Any]], block_rows: int, errors: Tally,
             returned: Callable[[int], None] = lambda rows: None) -> dict[str, dict[str, Any]]:
    """Run ``requests`` through ``stage``; request id -> engine output row (``generated_text``, ...).

    The requests go in blocks of ``block_rows`` (the engine's batch size): one block would be one task,
    held by one engine replica while the others wait. The generations come back block by block as the
    engine finishes them, each block's rows told to ``returned`` (the live progress). The pass's engine
    errors are counted in ``errors`` (the job's error budget) before anything of it is staged: a pass
    that breaks the budget fails the job, and a rerun does the pass again.
    """
    if not requests:
        return {}
    table = pa.Table.from_pylist(requests, REQUEST_SCHEMA)
    dataset = ray.data.from_arrow([table.slice(start, block_rows) for start in range(0, table.num_rows, block_rows)])
    found = {}
    for block in stage(dataset).iter_batches(batch_size=None, batch_format="pyarrow"):
        found.update((row["id"], row) for row in block.to_pylist())
        returned(block.num_rows)
    missing = len({r["id"] for r in requests} - found.keys())
    if missing:  # the engine contract: one generation per request row
        raise RuntimeError(f"the engine returned no row for {missing} of {len(requests)} requests")
    errors.record(len(found), sum(bool(row.get("engine_error")) for row in found.values()))
    return found


def accepted_table(rows: list[dict[str, Any]]) -> pa.Table:
    return table_from_rows(rows, ACCEPTED_SCHEMA)


def reject_table(rows: list[dict[str, Any]]) -> pa.Table:
    return table_from_rows(rows, REJECT_SCHEMA)


def engine_fields(generation: dict[str, Any]) -> dict[str, Any]:
    """The engine's figures a written row keeps."""
    return {"num_input_tokens": generation.get("num_input_tokens"),
            "num_generated_tokens": generation.get("num_generated_tokens"), "raw": generation.get("generated_text")}
