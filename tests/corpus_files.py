"""Writers of small corpus files for tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_jsonl(path: Path, records: list, column: str = "text") -> Path:
    """One JSON line per record; strings become ``{column: string}``, anything else is dumped as is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({column: r} if isinstance(r, str) else r) for r in records]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_parquet(path: Path, columns: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path
