"""The dataset writer: accepted examples in one folder per task type, rejects kept beside them by stage.

One Ray Data datasink writes both into the run's staging dir, so the pipeline is computed once.
Each write task writes one accepted file per task type it saw and one rejects file; each file
appears whole or not at all. Engine errors are reported to the job's error budget as they come.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import Datasink
from ray.data.block import BlockAccessor

from bonito_ray.schema import (ACCEPTED_FILE_PREFIX, ACCEPTED_SCHEMA, GENERATION_REJECTS_DIR, PARQUET_SUFFIX,
                               REJECT_SCHEMA, REJECTS_SUFFIX, STAGING_DIR, VALIDATION_REJECTS_DIR, accepted_dir,
                               conform)
from bonito_ray.rejects import ENGINE_ERROR, GENERATION_REASONS
from bonito_ray.tasks import TASK_TYPES
from bonito_ray.storage import join, resolve_filesystem, write_parquet

class SyntheticDatasetSink(Datasink):
    """Writes example rows (``reason`` null: accepted; else rejected) under ``OUTPUT/.staging``."""

    def __init__(self, output_uri: str, rows_per_file: int, s3_endpoint: str | None = None,
                 error_budget=None) -> None:
        self.output_uri = output_uri
        self.rows_per_file = rows_per_file
        self.s3_endpoint = s3_endpoint
        self.error_budget = error_budget
        self.write_id = uuid.uuid4().hex[:12]

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file  # bundle blocks so that files are not a swarm of tiny ones

    def write(self, blocks, ctx) -> int:
        fs, output = resolve_filesystem(self.output_uri, self.s3_endpoint)
        root = join(output, STAGING_DIR)
        tables = [t for t in (BlockAccessor.for_block(b).to_arrow() for b in blocks) if t.num_rows]
        if not tables:
            return 0
        table = pa.concat_tables(tables)
        accepted = table.filter(pc.is_null(table["reason"]))
        rejected = table.filter(pc.is_valid(table["reason"]))
        name = f"{self.write_id}-{ctx.task_idx:06d}"
        for task_type in sorted(set(accepted["task_type"].to_pylist())):
            if task_type not in TASK_TYPES:  # a folder name taken from data must never escape the output prefix
                raise ValueError(f"refusing to write accepted examples of unknown task type {task_type!r}")
            rows = conform(accepted.filter(pc.equal(accepted["task_type"], task_type)), ACCEPTED_SCHEMA)
            self._write_files(fs, join(root, accepted_dir(task_type), f"{ACCEPTED_FILE_PREFIX}{name}"), rows,
                              PARQUET_SUFFIX)
        at_generation = pc.is_in(rejected["reason"], value_set=pa.array(GENERATION_REASONS))
        for directory, rows in ((GENERATION_REJECTS_DIR, rejected.filter(at_generation)),
                                (VALIDATION_REJECTS_DIR, rejected.filter(pc.invert(at_generation)))):
            if rows.num_rows:
                self._write_files(fs, join(root, directory, f"rejects-{name}"), conform(rows, REJECT_SCHEMA),
                                  REJECTS_SUFFIX)
        if self.error_budget is not None:
            errors = pc.sum(pc.equal(table["reason"], ENGINE_ERROR)).as_py() or 0
            ray.get(self.error_budget.record.remote(table.num_rows, errors))
        return table.num_rows

    def _write_files(self, fs, stem: str, table: pa.Table, suffix: str) -> None:
        """``table`` as files of at most ``rows_per_file`` rows: ``<stem>-<k><suffix>``."""
        for k, start in enumerate(range(0, table.num_rows, self.rows_per_file)):
            write_parquet(fs, f"{stem}-{k:04d}{suffix}", table.slice(start, self.rows_per_file))
