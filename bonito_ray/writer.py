"""The dataset writer: accepted examples partitioned by task type, rejects kept beside them.

One Ray Data datasink writes both, so the pipeline is computed once. Each write task writes
one accepted file per task type it saw and one rejects file, and reports counts; the driver
adds them up in ``on_write_complete``.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from ray.data import Datasink
from ray.data.block import BlockAccessor

from bonito_ray.schema import ACCEPTED_SCHEMA, GENERATION_REJECTS_DIR, REJECT_SCHEMA, conform
from bonito_ray.storage import join, resolve_filesystem, write_parquet

DEFAULT_ROWS_PER_FILE = 50_000


class SyntheticDatasetSink(Datasink):
    """Writes example rows (``reason`` null: accepted; else rejected) under ``output_uri``."""

    def __init__(self, output_uri: str, rows_per_file: int = DEFAULT_ROWS_PER_FILE,
                 s3_endpoint: str | None = None) -> None:
        self.output_uri = output_uri
        self.s3_endpoint = s3_endpoint
        self.rows_per_file = rows_per_file
        self.write_id = uuid.uuid4().hex[:12]
        self.result: dict[str, Any] | None = None

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file  # bundle blocks so that files are not a swarm of tiny ones

    def write(self, blocks, ctx) -> dict[str, Any]:
        fs, root = resolve_filesystem(self.output_uri, self.s3_endpoint)
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        tables = [t for t in tables if t.num_rows]
        counts: dict[str, Any] = {"accepted": Counter(), "rejected": Counter(), "files": [],
                                  "input_tokens": 0, "generated_tokens": 0}
        if not tables:
            return counts
        table = pa.concat_tables(tables)
        counts["input_tokens"] = int(pc.sum(table["num_input_tokens"]).as_py() or 0)
        counts["generated_tokens"] = int(pc.sum(table["num_generated_tokens"]).as_py() or 0)
        accepted = table.filter(pc.is_null(table["reason"]))
        rejected = table.filter(pc.is_valid(table["reason"]))
        name = f"{self.write_id}-{ctx.task_idx:06d}.parquet"
        for task_type in sorted(set(accepted["task_type"].to_pylist())):
            rows = conform(accepted.filter(pc.equal(accepted["task_type"], task_type)), ACCEPTED_SCHEMA)
            path = f"task_type={task_type}/train-{name}"
            write_parquet(fs, join(root, path), rows)
            counts["accepted"][task_type] += rows.num_rows
            counts["files"].append({"path": path, "rows": rows.num_rows})
        if rejected.num_rows:
            rows = conform(rejected, REJECT_SCHEMA)
            path = f"{GENERATION_REJECTS_DIR}/rejects-{name}"
            write_parquet(fs, join(root, path), rows)
            counts["rejected"].update(rows["reason"].to_pylist())
            counts["files"].append({"path": path, "rows": rows.num_rows})
        return counts

    def on_write_complete(self, write_result) -> None:
        total: dict[str, Any] = {"accepted": Counter(), "rejected": Counter(), "files": [],
                                 "input_tokens": 0, "generated_tokens": 0}
        for counts in write_result.write_returns:
            total["accepted"].update(counts["accepted"])
            total["rejected"].update(counts["rejected"])
            total["files"].extend(counts["files"])
            total["input_tokens"] += counts["input_tokens"]
            total["generated_tokens"] += counts["generated_tokens"]
        self.result = total
