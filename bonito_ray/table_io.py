"""In-memory tables in and out of a generation job, for the Python API (``bonito_ray.bonito``).

In: the context column of the user's text dataset (a ``datasets.Dataset``, a pandas DataFrame or a
Ray Dataset) becomes a Parquet corpus of numbered part files, so that the job reads it like any
other corpus. Out: the committed dataset's accepted examples and its rejects, each row labelled
with the input row it came from (``row``, 0-based) and sorted in the input's order.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bonito_ray.config import ConfigError
from bonito_ray.schema import (ACCEPTED_SCHEMA, DROP_STAGES, REJECT_SCHEMA, conform, is_accepted_file, is_data_file,
                               rejects_dir)
from bonito_ray.storage import join, list_files, write_parquet

CORPUS_COLUMN = "text"  # the context column of the written corpus, whatever the user's is called
PART_ROWS = 50_000  # rows per corpus part file: parts are read in parallel
PART_PREFIX = "part-"
REJECT_COLUMNS = ("row", "chunk", "task_type", "sample_index", "stage", "reason", "detail", "raw")
_TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_null)


def context_table(text_dataset: Any, context_col: str) -> pa.Table:
    """The ``context_col`` column of ``text_dataset`` as a one-column table (``CORPUS_COLUMN``), in row order.

    Raises ``ConfigError`` (one line) for another kind of dataset, a missing column, or a column
    that does not hold text. Nulls are kept: the job rejects them (``null_context``).
    """
    columns, select = _reader(text_dataset)
    if context_col not in columns:
        raise ConfigError(f"context_col {context_col!r} is not a column of text_dataset; "
                          f"its columns: {', '.join(map(str, columns)) or 'none'}")
    try:
        column = select(context_col)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:  # e.g. a pandas object column mixing text and numbers
        raise ConfigError(f"context_col {context_col!r} does not hold text: {str(err).splitlines()[0]}") from None
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not any(is_text(kind) for is_text in _TEXT_TYPES):
        raise ConfigError(f"context_col {context_col!r} holds {column.type} values, not text")
    return pa.table({CORPUS_COLUMN: column.cast(pa.string())})


def _reader(text_dataset: Any):
    """(column names, a function from a column name to its values as one Arrow array) of ``text_dataset``."""
    import ray.data

    datasets = sys.modules.get("datasets")  # never imported here: a datasets.Dataset means it already is
    pandas = sys.modules.get("pandas")
    if datasets is not None and isinstance(text_dataset, datasets.Dataset):
        return (text_dataset.column_names,
                # with_format("arrow") honours an indices mapping (after select, shuffle, ...) that .data would not
                lambda name: _one_array(text_dataset.select_columns([name]).with_format("arrow")[:][name]))
    if pandas is not None and isinstance(text_dataset, pandas.DataFrame):
        return (list(text_dataset.columns),
                lambda name: _one_array(pa.Table.from_pandas(text_dataset[[name]], preserve_index=False)[name]))
    if isinstance(text_dataset, ray.data.Dataset):
        return (text_dataset.schema().names,
                lambda name: _one_array(_ray_column(text_dataset, name)))
    raise ConfigError("text_dataset must be a datasets.Dataset, a pandas DataFrame or a Ray Dataset, "
                      f"got {type(text_dataset).__module__}.{type(text_dataset).__name__}")


def _ray_column(dataset: Any, name: str) -> pa.ChunkedArray:
    """One column of a Ray Dataset in the order Ray Data yields its blocks."""
    import ray

    tables = ray.get(dataset.select_columns([name]).to_arrow_refs())
    if not tables:
        return pa.chunked_array([], pa.string())
    return pa.concat_tables(tables, promote_options="permissive")[name]


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if column.num_chunks else pa.array([], column.type)


def digest(table: pa.Table) -> str:
    """A hex digest of ``table``'s schema and values: the same input always gives the same one."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def write_corpus(fs: pafs.FileSystem, directory: str, table: pa.Table) -> None:
    """``table`` as Parquet part files of ``PART_ROWS`` rows under ``directory`` (``part-00000.parquet``, ...)."""
    for index, start in enumerate(range(0, max(table.num_rows, 1), PART_ROWS)):
        write_parquet(fs, join(directory, f"{PART_PREFIX}{index:05d}.parquet"), table.slice(start, PART_ROWS))


def input_rows(sources: list[str | None], positions: list[int | None]) -> list[int | None]:
    """The 0-based input row of each (source, position): ``source`` a corpus part written by
    ``write_corpus``, ``position`` its 1-based row there (as the corpus reader numbers Parquet rows)."""
    rows = []
    for source, position in zip(sources, positions):
        if source is None or position is None:
            rows.append(None)
            continue
        part = int(source.rsplit("/", 1)[-1].removeprefix(PART_PREFIX).split(".", 1)[0])
        rows.append(part * PART_ROWS + position - 1)
    return rows


def read_accepted(fs: pafs.FileSystem, root: str, task_types: list[str]) -> pa.Table:
    """The accepted examples of the committed dataset at ``root`` (``ACCEPTED_SCHEMA`` and ``row``), in input order."""
    files = [f for f in list_files(fs, root) if is_accepted_file(f[len(root) + 1:])]
    table = _read(fs, files, ACCEPTED_SCHEMA)
    return _in_input_order(table, task_types)


def read_rejects(fs: pafs.FileSystem, root: str, task_types: list[str]) -> pa.Table:
    """Every row the job at ``root`` dropped (``REJECT_COLUMNS``), from each stage, in input order.

    A short last chunk merged into the chunk before it (``_rejects/stage=chunk``) is not a drop: its
    text was prompted with that chunk, so it is left out.
    """
    by_stage = {stage: [f for f in list_files(fs, join(root, rejects_dir(stage))) if is_data_file(f)]
                for stage in DROP_STAGES}
    parts = []
    for stage, files in sorted((stage, files) for stage, files in by_stage.items() if files):
        table = _read(fs, files, REJECT_SCHEMA)
        parts.append(table.append_column("stage", pa.array([stage] * table.num_rows, pa.string())))
    if not parts:
        empty = REJECT_SCHEMA.append(pa.field("stage", pa.string()))
        parts = [empty.empty_table()]
    table = _in_input_order(pa.concat_tables(parts), task_types)
    return table.select(list(REJECT_COLUMNS))


def _read(fs: pafs.FileSystem, files: list[str], schema: pa.Schema) -> pa.Table:
    tables = [conform(pq.read_table(f, filesystem=fs), schema) for f in files]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _in_input_order(table: pa.Table, task_types: list[str]) -> pa.Table:
    """``table`` with ``row`` added, sorted by input row, chunk, task type (as asked) and sample."""
    rows = input_rows(table["source"].to_pylist(), table["position"].to_pylist())
    order = {task: i for i, task in enumerate(task_types)}
    table = table.append_column("row", pa.array(rows, pa.int64()))
    table = table.append_column("task_order", pa.array([order.get(t) for t in table["task_type"].to_pylist()],
                                                       pa.int64()))
    keys = [("row", "ascending"), ("chunk", "ascending"), ("task_order", "ascending"), ("sample_index", "ascending")]
    return table.sort_by(keys).drop_columns(["task_order"])
