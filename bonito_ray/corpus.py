"""Corpus reading: files -> documents, with every record that cannot be a document quarantined.

The reader is a Ray Data datasource, so files stream through the cluster and the corpus is never
materialised. Formats: JSONL (also .gz and .zst), Parquet, Arrow files of a `datasets` dataset
saved with ``save_to_disk``, and plain-text files (one document per file). A record that cannot be
read (invalid JSON or UTF-8, a missing, null, empty or non-string context, a file cut short)
never stops the job: it goes to ``_rejects/stage=corpus/`` with its reason.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from ray.data.datasource import FileBasedDatasource

from bonito_ray.quarantine import CORPUS_STAGE, write_rejects
from bonito_ray.schema import DOCUMENT_SCHEMA, stable_id, table_from_rows
from bonito_ray.storage import display_uri, resolve_filesystem

logger = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")
PARQUET_SUFFIXES = (".parquet",)
ARROW_SUFFIXES = (".arrow",)  # `datasets` save_to_disk shards (Arrow IPC streams)
TEXT_SUFFIXES = (".txt", ".md", ".txt.gz", ".txt.zst")
CORPUS_SUFFIXES = JSONL_SUFFIXES + PARQUET_SUFFIXES + ARROW_SUFFIXES + TEXT_SUFFIXES
BLOCK_ROWS = 4096
READ_CHUNK_BYTES = 1 << 20
_PEEK_LINES = 100  # lines the up-front column check looks at

# Reasons a corpus record is quarantined.
INVALID_JSON = "invalid_json"
INVALID_UTF8 = "invalid_utf8"
NOT_AN_OBJECT = "not_an_object"
MISSING_CONTEXT_COLUMN = "missing_context_column"
NULL_CONTEXT = "null_context"
NON_STRING_CONTEXT = "non_string_context"
EMPTY_CONTEXT = "empty_context"
UNREADABLE_FILE = "unreadable_file"


class CorpusError(ValueError):
    """The corpus cannot be read at all (missing input, no files, wrong context column)."""


def list_corpus_files(uri: str, s3_endpoint: str | None = None) -> tuple[pafs.FileSystem, list[str]]:
    """The corpus files at ``uri``: a file, a directory/prefix (searched recursively) or a glob."""
    pattern = None
    if any(c in uri for c in "*?["):
        pattern = uri
        uri = uri[: min(uri.find(c) for c in "*?[" if c in uri)].rsplit("/", 1)[0]
    fs, path = resolve_filesystem(uri, s3_endpoint)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise CorpusError(f"input {pattern or uri} does not exist")
    if info.type == pafs.FileType.File:
        if not path.endswith(CORPUS_SUFFIXES):
            raise CorpusError(f"input {uri} is not a corpus file; supported: {', '.join(CORPUS_SUFFIXES)}")
        return fs, [path]
    files = sorted(
        f.path
        for f in fs.get_file_info(pafs.FileSelector(path, recursive=True))
        if f.type == pafs.FileType.File
        and f.path.endswith(CORPUS_SUFFIXES)
        and not any(part.startswith((".", "_")) for part in f.path[len(path) :].split("/"))
        and (pattern is None or fnmatch.fnmatchcase(display_uri(uri, f.path), _absolute(pattern)))
    )
    if not files:
        raise CorpusError(f"no corpus files ({', '.join(CORPUS_SUFFIXES)}) under {pattern or uri}")
    return fs, files


def _absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def check_context_column(fs: pafs.FileSystem, path: str, column: str, source: str) -> None:
    """Fail fast, before any cluster work, when the first file has no ``column`` at all.

    A file that cannot be read is left to the reader, which quarantines it with the reason.
    """
    if path.endswith(TEXT_SUFFIXES):
        return  # a text file is one document; there are no columns
    try:
        names = _first_record_keys(fs, path)
    except (OSError, EOFError, pa.ArrowException):
        return
    if names is not None and column not in names:
        raise CorpusError(
            f"{source}: no context column {column!r}; columns found: {', '.join(map(str, names)) or 'none'}"
            " (set --context-column)"
        )


def _first_record_keys(fs: pafs.FileSystem, path: str) -> list[str] | None:
    """The column names of a Parquet/Arrow file, or the keys of a JSONL file's first object record."""
    if path.endswith(PARQUET_SUFFIXES):
        with fs.open_input_file(path) as f:
            return pq.read_schema(f).names
    if path.endswith(ARROW_SUFFIXES):
        with fs.open_input_stream(path) as f:
            return ipc.open_stream(f).schema.names
    with fs.open_input_stream(path, compression="detect") as f:
        for _, line in itertools.islice(_lines(f), _PEEK_LINES):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # quarantined at read time; look a little further for a readable record
            if isinstance(record, dict):
                return list(record)
    return None


class CorpusDatasource(FileBasedDatasource):
    """Streams corpus files as documents (source, position, context)."""

    def __init__(self, input_uri: str, paths: list[str], filesystem: pafs.FileSystem, context_column: str,
                 output_uri: str, s3_endpoint: str | None = None) -> None:
        super().__init__(paths, filesystem=filesystem)
        self._input_uri = input_uri
        self._context_column = context_column
        self._output_uri = output_uri
        self._s3_endpoint = s3_endpoint

    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> pa.NativeFile:
        if path.endswith(PARQUET_SUFFIXES):
            return filesystem.open_input_file(path)  # Parquet needs random access
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        source = display_uri(self._input_uri, path)
        documents: list[dict] = []
        rejects: list[dict] = []
        position = 0
        try:
            for position, context, reason, detail, raw in _records(f, path, self._context_column):
                if reason is None:
                    documents.append({"source": source, "position": position, "context": context})
                    if len(documents) >= BLOCK_ROWS:
                        yield table_from_rows(documents, DOCUMENT_SCHEMA)
                        documents = []
                else:
                    rejects.append({"source": source, "position": position, "reason": reason,
                                    "detail": detail, "raw": raw})
        except (OSError, EOFError, pa.ArrowException) as err:
            if _is_transient(err):
                raise  # Ray Data retries the whole file (DataContext.retried_io_errors)
            # A file cut short or corrupt: keep what was read, quarantine the rest with the reason.
            rejects.append({"source": source, "position": position + 1, "reason": UNREADABLE_FILE,
                            "detail": f"{type(err).__name__}: {err} (after record {position})"})
        if documents:
            yield table_from_rows(documents, DOCUMENT_SCHEMA)
        if rejects:
            logger.warning("%s: %d record(s) quarantined (%s)", source, len(rejects),
                           ", ".join(sorted({r["reason"] for r in rejects})))
            write_rejects(self._output_uri, CORPUS_STAGE, rejects, self._s3_endpoint)


def _is_transient(err: BaseException) -> bool:
    """Whether an I/O error is a passing fault of the store (throttling, network) rather than bad data."""
    from ray.data import DataContext

    message = str(err)
    return any(pattern in message for pattern in DataContext.get_current().retried_io_errors)


def input_fingerprint(fs: pafs.FileSystem, files: list[str]) -> str:
    """A hash of the corpus files' locations, sizes and modification times."""
    return stable_id(*(f"{i.path}|{i.size}|{i.mtime_ns}" for i in fs.get_file_info(files)))


def read_documents(input_uri: str, fs: pafs.FileSystem, files: list[str], context_column: str, output_uri: str,
                   s3_endpoint: str | None = None):
    """The lazy dataset of documents in the corpus ``files`` (listed by ``list_corpus_files``)."""
    import ray.data

    logger.info("corpus: %d file(s) under %s", len(files), input_uri)
    return ray.data.read_datasource(
        CorpusDatasource(input_uri, files, fs, context_column, output_uri, s3_endpoint))


Record = tuple[int, str | None, str | None, str | None, str | None]  # position, context, reason, detail, raw


def _records(f: pa.NativeFile, path: str, column: str) -> Iterator[Record]:
    if path.endswith(PARQUET_SUFFIXES):
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        batches = parquet.iter_batches(columns=[column], batch_size=BLOCK_ROWS) if column in names else iter(())
        return _table_records(names, batches, column)
    if path.endswith(ARROW_SUFFIXES):
        reader = ipc.open_stream(f)
        return _table_records(reader.schema.names, reader, column)
    if path.endswith(TEXT_SUFFIXES):
        return _text_record(f)
    return _jsonl_records(f, column)


def _lines(f: pa.NativeFile) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line bytes) for each non-blank line of a stream."""
    buffer = b""
    number = 0
    while chunk := f.read(READ_CHUNK_BYTES):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            number += 1
            if line.strip():
                yield number, line
    if buffer.strip():
        yield number + 1, buffer


def _jsonl_records(f: pa.NativeFile, column: str) -> Iterator[Record]:
    for number, line in _lines(f):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            yield number, None, INVALID_UTF8, str(err), line.decode("utf-8", errors="replace")
            continue
        try:
            record = json.loads(text)
        except ValueError as err:
            yield number, None, INVALID_JSON, str(err), text
            continue
        if not isinstance(record, dict):
            yield number, None, NOT_AN_OBJECT, f"a JSON {type(record).__name__}, not an object", text
        elif column not in record:
            yield number, None, MISSING_CONTEXT_COLUMN, f"no key {column!r}", text
        else:
            context, reason, detail = _check_context(record[column])
            yield number, context, reason, detail, None if reason is None else text


def _table_records(names: list[str], batches: Any, column: str) -> Iterator[Record]:
    if column not in names:
        yield 1, None, MISSING_CONTEXT_COLUMN, f"no column {column!r}; columns: {', '.join(names)}", None
        return
    number = 0
    for batch in batches:
        for value in batch.column(batch.schema.get_field_index(column)).to_pylist():
            number += 1
            context, reason, detail = _check_context(value)
            yield number, context, reason, detail, None if reason is None else repr(value)


def _text_record(f: pa.NativeFile) -> Iterator[Record]:
    data = f.read()
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
    return value, None, None
