"""The rows that go to the engine and come back: passages -> requests, generations -> examples -> validated
(Ray Data map functions).

Requests follow the engine row contract (see ``bonito_ray.engines``): a ``prompt`` and a
``sampling_params`` mapping per row, every other column carried through untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from bonito_ray import validators
from bonito_ray.generators import DEFAULT_GENERATOR, GENERATORS
from bonito_ray.passages import cached_tokenizer
from bonito_ray.prompt import Task
from bonito_ray.rejects import ENGINE_ERROR
from bonito_ray.schema import LOCATION_FIELDS, TOKEN_FIELDS, stable_id

SAMPLING_PARAMS_TYPE = pa.struct(
    [("max_tokens", pa.int64()), ("temperature", pa.float64()), ("top_p", pa.float64()), ("seed", pa.int64()),
     ("top_k", pa.int64())]  # top_k null: no top-k cut
)
_CARRIED = [pa.field("context", pa.string()), pa.field("model", pa.string())]
REQUEST_SCHEMA = pa.schema(
    LOCATION_FIELDS + _CARRIED + [pa.field("prompt", pa.string()), pa.field("sampling_params", SAMPLING_PARAMS_TYPE)]
)
EXAMPLE_SCHEMA = pa.schema(
    LOCATION_FIELDS + _CARRIED
    + [
        pa.field("input", pa.string()),
        pa.field("output", pa.string()),
        pa.field("reason", pa.string()),  # null for an accepted example
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),  # the generated text
    ]
    + TOKEN_FIELDS
    + [pa.field("finish_reason", pa.string())]  # the engine's: stop, length (not written out)
)


def row_seed(seed: int | None, example_id: str) -> int | None:
    """A per-request seed derived from the job seed and the example id (None: unseeded)."""
    if seed is None:
        return None
    return int(stable_id(seed, example_id)[:8], 16) & 0x7FFFFFFF


def to_requests(passages: pa.Table, *, task_types: list[str], n: int, sampling_params: dict[str, Any],
                seed: int | None, model: str, generator: str = DEFAULT_GENERATOR) -> pa.Table:
    """Cross each passage with each task type and ``n`` samples: one request row each, prompted by ``generator``
    (a chat generator renders ``model``'s chat template here, so that no engine needs to know of it)."""
    prompter = GENERATORS[generator]
    tokenizer = cached_tokenizer(model) if prompter.chat_template else None
    rows = []
    for passage in passages.to_pylist():
        for task_type in task_types:
            prompt = prompter.prompt(passage["context"], task_type, tokenizer)
            for sample_index in range(n):
                example_id = stable_id(passage["passage_id"], task_type, sample_index)
                rows.append({
                    **passage,
                    "id": example_id,
                    "task_type": task_type,
                    "sample_index": sample_index,
                    "model": model,
                    "prompt": prompt,
                    "sampling_params": {**sampling_params, "seed": row_seed(seed, example_id)},
                })
    return pa.Table.from_pylist(rows, REQUEST_SCHEMA)


def to_examples(generations: pa.Table, generator: str = DEFAULT_GENERATOR) -> pa.Table:
    """Parse engine output rows into accepted examples and rejects (``reason`` set), as ``generator`` reads them."""
    parse = GENERATORS[generator].parse
    return pa.Table.from_pylist([_to_example(row, parse) for row in generations.to_pylist()], EXAMPLE_SCHEMA)


def _to_example(generations: dict[str, Any], parse) -> dict[str, Any]:
    row = {name: generations.get(name) for name in EXAMPLE_SCHEMA.names}
    text = generations.get("generated_text") or ""
    row["raw"] = text
    if generations.get("engine_error"):
        row["reason"], row["detail"] = ENGINE_ERROR, generations["engine_error"]
        return row
    parsed = parse(text, generations["context"])
    if isinstance(parsed, Task):
        row["input"], row["output"] = parsed.input, parsed.output
    else:
        row["reason"] = parsed.reason
    return row


def validate_examples(examples: pa.Table, *, level: str, extra: list[str] = ()) -> pa.Table:
    """The validation stage: reject the parsed tasks that ``level``'s validators and the user's reject.

    A generation cut at the token limit is ``truncated`` even when it did not parse either (its
    parse reason goes to the detail): the cut is the cause to fix (``--max-tokens``).
    """
    checks = validators.validators_for(level, extra)
    if not checks:
        return examples
    return pa.Table.from_pylist([_validate(row, checks) for row in examples.to_pylist()], EXAMPLE_SCHEMA)


def _validate(row: dict[str, Any], checks: tuple) -> dict[str, Any]:
    if row["reason"] == ENGINE_ERROR:
        return row
    task = validators.Candidate(row["task_type"], row["input"] or "", row["output"] or "", row["context"] or "",
                                row["finish_reason"], row["num_generated_tokens"])
    if row["reason"] is not None:
        cut = validators.truncated(task) if validators.truncated in checks else None
        if cut is not None:
            row["detail"] = f"{cut.detail}; it did not parse either ({row['reason']})"
            row["reason"], row["input"], row["output"] = cut.reason, None, None
        return row
    verdict = validators.check(task, checks)
    if verdict is not None:
        row["reason"], row["detail"] = verdict.reason, verdict.detail
    return row


def drop_done(requests: pa.Table, *, done: Any, progress: Any = None) -> pa.Table:
    """Drop the requests whose example an earlier attempt already wrote (``done``: sorted 16-byte ids);
    ``progress``: a ``bonito_ray.progress.ProgressCounter`` told how many were dropped."""
    import ray

    done = ray.get(done) if isinstance(done, ray.ObjectRef) else done
    keys = np.array([bytes.fromhex(i) for i in requests["id"].to_pylist()], dtype="S16")
    at = np.searchsorted(done, keys).clip(max=len(done) - 1)
    todo = done[at] != keys
    if progress is not None and (~todo).any():
        progress.skipped.remote(int((~todo).sum()))
    return requests.filter(pa.array(todo))
