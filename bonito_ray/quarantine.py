"""Side output for passage-level drops (unreadable records, filtered or duplicate passages).

Stages before the engine cannot pass dropped rows down the stream (the engine would see them),
so they write them here. Each file is named by a hash of its rows, so a retried task rewrites
the same file rather than adding a copy, and counts are taken over unique rows.
"""

from __future__ import annotations

from collections import Counter

import pyarrow.dataset as pds
import pyarrow.fs as pafs

from bonito_ray.schema import REJECT_SCHEMA, REJECTS_DIR, REJECTS_SUFFIX, STAGING_DIR, stable_id, table_from_rows
from bonito_ray.storage import join, resolve_filesystem, write_parquet

CORPUS_STAGE = "corpus"
CLEAN_STAGE = "clean"
CHUNK_STAGE = "chunk"  # not a drop: a short last chunk merged into the chunk before it (its text is kept)


def write_rejects(output_uri: str, stage: str, rows: list[dict], s3_endpoint: str | None = None) -> None:
    """Write reject rows (REJECT_SCHEMA fields) of a pre-engine ``stage`` under the run's staging dir;
    ``output_uri`` empty: a run that writes nothing (``generate --preview``)."""
    if not rows or not output_uri:
        return
    fs, output = resolve_filesystem(output_uri, s3_endpoint)
    root = join(output, STAGING_DIR)
    name = stable_id(*sorted(f"{r.get('source')}#{r.get('position')}#{r.get('passage_id')}#{r['reason']}"
                             for r in rows))
    write_parquet(fs, join(root, REJECTS_DIR, f"stage={stage}", f"rejects-{name}{REJECTS_SUFFIX}"),
                  table_from_rows(rows, REJECT_SCHEMA))


def reject_counts(fs: pafs.FileSystem, root: str, stage: str) -> Counter:
    """Counts by reason of the unique rows that ``stage`` quarantined in the dataset at ``root``."""
    directory = join(root, REJECTS_DIR, f"stage={stage}")
    if fs.get_file_info(directory).type == pafs.FileType.NotFound:
        return Counter()
    table = pds.dataset(directory, filesystem=fs, format="parquet").to_table(
        columns=["source", "position", "passage_id", "reason"])
    return Counter(reason for *_, reason in set(zip(*(table[c].to_pylist() for c in table.column_names))))
