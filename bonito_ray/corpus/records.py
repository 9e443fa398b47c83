"""The records of a corpus file, each checked as a document's context: a usable context, or a reason and detail.

A record that cannot be read (invalid JSON or UTF-8, JSON nested deeper than the parser follows, a lone
surrogate escape, a missing, null, empty or non-string context, a Parquet cell Python cannot hold) is
rejected with its reason and line, and the records after it are read. Here too: the up-front check, before
any cluster work, that the corpus has its context column at all.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from bonito_ray.corpus.decompression import StreamError, decompressed, numbered_lines
from bonito_ray.corpus.formats import ARROW, PARQUET, TEXT, CorpusError, format_of
from bonito_ray.rejects import (EMPTY_CONTEXT, INVALID_JSON, INVALID_UTF8, MISSING_CONTEXT_COLUMN, NON_STRING_CONTEXT,
                                NOT_AN_OBJECT, NULL_CONTEXT)

BLOCK_ROWS = 4096  # documents in a block, and rows in a Parquet batch read
_PEEK_LINES = 100  # lines the up-front column check looks at

ReadRecord = tuple[int, str | None, str | None, str | None, str | None]  # position, context, reason, detail, raw
Cell = tuple[str | None, str | None, str | None, str | None]  # a table cell: context, reason, detail, raw


def check_context_column(fs: pafs.FileSystem, path: str, column: str, source: str) -> None:
    """Fail fast, before any cluster work, when the first file has no ``column`` at all.

    A file that cannot be read is left to the reader, which rejects it with the reason.
    """
    if format_of(path) == TEXT:
        return  # a text file is one document; there are no columns
    try:
        names = _first_record_keys(fs, path)
    except (OSError, EOFError, pa.ArrowException, StreamError):
        return
    if names is not None and column not in names:
        raise CorpusError(
            f"{source}: no context column {column!r}; columns found: {', '.join(map(str, names)) or 'none'}"
            " (set --context-column)"
        )


def _first_record_keys(fs: pafs.FileSystem, path: str) -> list[str] | None:
    """The column names of a Parquet/Arrow file, or the keys of a JSONL file's first object record."""
    kind = format_of(path)
    if kind == PARQUET:
        with fs.open_input_file(path) as f:
            return pq.read_schema(f).names
    if kind == ARROW:
        with fs.open_input_stream(path) as f:
            return ipc.open_stream(f).schema.names
    with fs.open_input_stream(path, compression=None) as f:
        for _, line in itertools.islice(numbered_lines(decompressed(f, path)), _PEEK_LINES):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue  # rejected at read time; look a little further for a readable record
            if isinstance(record, dict):
                return list(record)
    return None


def records(f: pa.NativeFile, path: str, column: str) -> Iterator[ReadRecord]:
    """Each record of a corpus file (``f``, opened by ``open_corpus_file``) with its context or why it has none."""
    kind = format_of(path)
    if kind == PARQUET:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        batches = parquet.iter_batches(columns=[column], batch_size=BLOCK_ROWS) if column in names else iter(())
        return _table_records(names, batches, column)
    if kind == ARROW:
        reader = ipc.open_stream(f)
        return _table_records(reader.schema.names, reader, column)
    if kind == TEXT:
        return _text_record(decompressed(f, path))
    return _jsonl_records(numbered_lines(decompressed(f, path)), column)


def _jsonl_records(lines: Iterator[tuple[int, bytes]], column: str) -> Iterator[ReadRecord]:
    for number, line in lines:
        yield _jsonl_record(number, line, column)


def _jsonl_record(number: int, line: bytes, column: str) -> ReadRecord:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return number, None, INVALID_UTF8, str(err), line.decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except ValueError as err:
        return number, None, INVALID_JSON, str(err), text
    except RecursionError:  # e.g. a line of 100,000 "[": Python's parser recurses once per level
        return number, None, INVALID_JSON, "nested deeper than the JSON parser can follow", text
    if not isinstance(record, dict):
        return number, None, NOT_AN_OBJECT, f"a JSON {type(record).__name__}, not an object", text
    if column not in record:
        return number, None, MISSING_CONTEXT_COLUMN, f"no key {column!r}", text
    context, reason, detail = _check_context(record[column])
    return number, context, reason, detail, None if reason is None else text


def _table_records(names: list[str], batches: Any, column: str) -> Iterator[ReadRecord]:
    if column not in names:
        yield 1, None, MISSING_CONTEXT_COLUMN, f"no column {column!r}; columns: {', '.join(names)}", None
        return
    number = 0
    for batch in batches:
        array = batch.column(batch.schema.get_field_index(column))
        for cell in _text_cells(array) if _is_text(array.type) else _other_cells(array):
            number += 1
            yield (number, *cell)


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _text_cells(array: pa.Array) -> Iterator[Cell]:
    """A string column's cells, decoded here: Parquet does not check that its strings are UTF-8, and
    Arrow's own conversion raises on the first one that is not, ending the file's read."""
    for data in array.cast(pa.large_binary()).to_pylist():
        try:
            text = None if data is None else data.decode("utf-8")
        except UnicodeDecodeError as err:
            yield None, INVALID_UTF8, str(err), data.decode("utf-8", errors="replace")
            continue
        context, reason, detail = _check_context(text)
        yield context, reason, detail, None if reason is None else repr(text)


def _other_cells(array: pa.Array) -> Iterator[Cell]:
    """A column of another type: no cell is a context. Each is converted alone, for the reject's raw
    text, as some cannot be (a timestamp beyond Python's dates): that one keeps Arrow's type name."""
    for i in range(len(array)):
        try:
            value = array[i].as_py()
        except Exception:  # noqa: BLE001 - one cell's conversion; any failure is that cell's alone
            yield None, NON_STRING_CONTEXT, f"context is an Arrow {array.type} that Python cannot hold", None
            continue
        context, reason, detail = _check_context(value)
        yield context, reason, detail, None if reason is None else repr(value)


def _text_record(chunks: Iterator[bytes]) -> Iterator[ReadRecord]:
    parts: list[bytes] = []
    try:
        parts.extend(chunks)
    except StreamError as err:  # a text file is one document: a cut one is rejected whole
        err.partial = b"".join(parts)
        raise
    data = b"".join(parts)
    if not data:
        return  # a 0-byte file: no record, as for the other formats
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        yield 1, None, INVALID_UTF8, str(err), data.decode("utf-8", errors="replace")
        return
    yield (1, *_check_context(text), None)


def _check_context(value: Any) -> tuple[str | None, str | None, str | None]:
    """(context, None, None) for a usable context, else (None, reason, detail)."""
    if value is None:
        return None, NULL_CONTEXT, "context is null"
    if not isinstance(value, str):
        return None, NON_STRING_CONTEXT, f"context is a {type(value).__name__}, not a string"
    if not value.strip():
        return None, EMPTY_CONTEXT, "context is empty or whitespace only"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:  # a JSON escape of a lone surrogate, e.g. "\\ud800"
            return None, INVALID_UTF8, f"context holds a lone surrogate, which UTF-8 cannot encode: {err}"
    return value, None, None
