"""Corpus reading: files -> documents, with every record that cannot be a document rejected.

The reader is a Ray Data datasource, so files stream through the cluster and the corpus is never
materialised. Formats (suffixes matched case-insensitively): JSONL (``.jsonl``, ``.json``, also
compressed ``.gz``, ``.bz2``, ``.zst``), Parquet, Arrow files of a `datasets` dataset saved with
``save_to_disk``, and plain-text files (``.txt``, ``.md``, also compressed: one document per file).

Nothing under the input is dropped silently:

- a file the listing does not read (unsupported format, hidden or ``_``-prefixed, a second path to
  a file or directory already listed, a broken link, a name that is not UTF-8) is a
  :class:`SkippedFile`, written by :func:`reject_skipped` to ``_rejects/stage=corpus/`` with its
  reason; bonito-ray's own outputs (``_rejects``, ``_manifest.json``, ...) are the one exception;
- a record that cannot be read (invalid JSON or UTF-8, JSON nested deeper than the parser follows,
  a lone surrogate escape, a missing, null, empty or non-string context, a Parquet cell Python
  cannot hold) goes there too, with its reason and line, and the records after it are read;
- a file that holds no record at all (0 bytes, blank lines only, no rows) is one ``empty_file``
  reject, so that it shows in the summary;
- a compressed file cut short keeps every complete record before the cut, and one
  ``truncated_file`` reject names the record after which it was cut; a file deleted between
  listing and reading is one ``missing_file`` reject. Neither stops the job.
"""

from __future__ import annotations

import bz2
import fnmatch
import itertools
import json
import logging
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from ray.data.datasource import FileBasedDatasource

from bonito_ray.errors import UserError
from bonito_ray.rejects import (DUPLICATE_PATH, EMPTY_CONTEXT, EMPTY_FILE, HIDDEN_FILE, INVALID_JSON, INVALID_UTF8,
                                MISSING_CONTEXT_COLUMN, MISSING_FILE, NON_STRING_CONTEXT, NOT_AN_OBJECT, NULL_CONTEXT,
                                TRUNCATED_FILE, UNREADABLE_FILE, UNSUPPORTED_FORMAT, write_rejects)
from bonito_ray.schema import CORPUS_STAGE, DOCUMENT_SCHEMA, OWNED_ENTRIES, is_utf8, stable_id, table_from_rows
from bonito_ray.storage import display_uri, resolve_filesystem

logger = logging.getLogger(__name__)

JSONL, PARQUET, ARROW, TEXT = "jsonl", "parquet", "arrow", "text"
_FORMATS = {".jsonl": JSONL, ".json": JSONL, ".parquet": PARQUET, ".arrow": ARROW, ".txt": TEXT, ".md": TEXT}
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
_COMPRESSIBLE = (JSONL, TEXT)  # Parquet and Arrow compress inside the file
CORPUS_SUFFIXES = tuple(_FORMATS) + tuple(f"{s}{c}" for s, f in _FORMATS.items() if f in _COMPRESSIBLE
                                          for c in _COMPRESSIONS)
BLOCK_ROWS = 4096
READ_CHUNK_BYTES = 1 << 20
# Compressed bytes fed to a decompressor at a time, and the output asked of pyarrow's zstd stream
# per read: the output of a read that meets a cut is lost, so it is kept small.
_RAW_CHUNK_BYTES = 1 << 16
_PEEK_LINES = 100  # lines the up-front column check looks at
_BOM = b"\xef\xbb\xbf"



class CorpusError(UserError, ValueError):
    """The corpus cannot be read at all (missing input, no files, wrong context column)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file or directory under the input that is not read, and why."""

    path: str  # as the input's filesystem names it
    reason: str
    detail: str


@dataclass(frozen=True)
class CorpusListing:
    """The files to read under an input, and every entry there that will not be read."""

    fs: pafs.FileSystem
    files: list[str]
    skipped: tuple[SkippedFile, ...] = ()


def corpus_format(path: str) -> tuple[str, str | None] | None:
    """(format, compression or None) of a corpus file by its name, or None for an unsupported name."""
    name = path.rsplit("/", 1)[-1].lower()
    compression = None
    for suffix, codec in _COMPRESSIONS.items():
        if name.endswith(suffix):
            name, compression = name[: -len(suffix)], codec
    for suffix, kind in _FORMATS.items():
        if name.endswith(suffix) and (compression is None or kind in _COMPRESSIBLE):
            return kind, compression
    return None


def _format_of(path: str) -> str:
    return (corpus_format(path) or (JSONL, None))[0]


def list_corpus_files(uri: str, s3_endpoint: str | None = None) -> CorpusListing:
    """The corpus files at ``uri`` (a file, a directory/prefix searched recursively, or a glob).

    An existing path is always taken as itself, even when it holds glob characters.
    """
    fs, path, pattern = _resolve_input(uri, s3_endpoint)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise CorpusError(f"input {pattern or uri} does not exist")
    if info.type == pafs.FileType.File:
        if corpus_format(path) is None:
            raise CorpusError(f"input {uri} is not a corpus file; supported: {', '.join(CORPUS_SUFFIXES)}")
        return CorpusListing(fs, [path])
    found, skipped = _scan_local(path) if isinstance(fs, pafs.LocalFileSystem) else _scan(fs, path)
    in_scope = (lambda p: True) if pattern is None else (
        lambda p: fnmatch.fnmatchcase(display_uri(pattern, p), _absolute(pattern)))
    files = []
    for file in filter(in_scope, found):
        name = file.rsplit("/", 1)[-1]
        if name.startswith((".", "_")):
            skipped.append(SkippedFile(file, HIDDEN_FILE, "name starts with '.' or '_'"))
        elif corpus_format(file) is None:
            skipped.append(SkippedFile(file, UNSUPPORTED_FORMAT, f"supported: {', '.join(CORPUS_SUFFIXES)}"))
        else:
            files.append(file)
    if pattern is not None:  # a glob names files, not the directories beside them
        skipped = [s for s in skipped if in_scope(s.path)]
    skipped.sort(key=lambda s: s.path)
    if not files:
        raise CorpusError(f"no corpus files ({', '.join(CORPUS_SUFFIXES)}) under {pattern or uri}"
                          + (f"; not read: {_describe(skipped)}" if skipped else ""))
    return CorpusListing(fs, sorted(files), tuple(skipped))


def _resolve_input(uri: str, s3_endpoint: str | None) -> tuple[pafs.FileSystem, str, str | None]:
    """(filesystem, path to list, glob pattern or None) for an input URI."""
    fs, path = resolve_filesystem(uri, s3_endpoint)
    if not any(c in uri for c in "*?[") or fs.get_file_info(path).type != pafs.FileType.NotFound:
        return fs, path, None
    base = uri[: min(uri.find(c) for c in "*?[" if c in uri)].rsplit("/", 1)[0]
    fs, path = resolve_filesystem(base, s3_endpoint)
    return fs, path, uri


def _absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)


def _describe(skipped: list[SkippedFile]) -> str:
    counts = Counter(s.reason for s in skipped)
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) + f" (e.g. {skipped[0].path})"


def _scan(fs: pafs.FileSystem, root: str) -> tuple[list[str], list[SkippedFile]]:
    """Files under ``root`` on an object store (no links there), and the hidden directories not read."""
    files, hidden = [], {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        parts = info.path[len(root) + 1 :].split("/")
        directory = next((i for i, part in enumerate(parts[:-1]) if _is_hidden(part)), None)
        if directory is None:
            if not _is_own_output(parts[-1]):
                files.append(info.path)
        elif not _is_own_output(parts[directory]):
            path = "/".join([root, *parts[: directory + 1]])
            hidden[path] = SkippedFile(path, HIDDEN_FILE, "a directory whose name starts with '.' or '_'")
    return files, list(hidden.values())


def _scan_local(root: str) -> tuple[list[str], list[SkippedFile]]:
    """Files under ``root`` on local disk, each real file and directory once.

    Links are followed, but a directory or file whose real identity (device, inode) was met before
    is not entered again: a symlink loop ends, and no file is listed under two names.
    """
    status = os.stat(root)
    files, skipped, seen = [], [], {(status.st_dev, status.st_ino)}
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name, reverse=True)
        except OSError as err:
            skipped.append(SkippedFile(directory, UNREADABLE_FILE, f"cannot list: {err.strerror or err}"))
            continue
        for entry in entries:
            if _is_own_output(entry.name):
                continue
            path = f"{directory}/{entry.name}"
            if not is_utf8(entry.name):  # pyarrow cannot open it, nor can a reject's source column hold it
                skipped.append(SkippedFile(os.fsencode(path).decode("utf-8", errors="replace"), INVALID_UTF8,
                                           f"a name that is not UTF-8: {os.fsencode(entry.name)!r}"))
                continue
            try:
                status = entry.stat()  # follows links
            except OSError as err:
                skipped.append(SkippedFile(path, UNREADABLE_FILE, f"cannot read: {err.strerror or err}"
                                           + (" (a broken link)" if entry.is_symlink() else "")))
                continue
            is_dir = entry.is_dir()
            if is_dir and _is_hidden(entry.name):
                skipped.append(SkippedFile(path, HIDDEN_FILE, "a directory whose name starts with '.' or '_'"))
                continue
            identity = (status.st_dev, status.st_ino)
            if identity in seen:
                skipped.append(SkippedFile(path, DUPLICATE_PATH, f"a link to {os.path.realpath(path)}, "
                                           "already listed under another name"))
                continue
            seen.add(identity)
            if is_dir:
                stack.append(path)
            elif entry.is_file():
                files.append(path)
            else:
                skipped.append(SkippedFile(path, UNSUPPORTED_FORMAT, "not a regular file"))
    return files, skipped


def _is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _is_own_output(name: str) -> bool:
    """A hidden entry bonito-ray writes next to a dataset (``_rejects``, ``.staging``, ...): not worth a reject."""
    return _is_hidden(name) and any(fnmatch.fnmatchcase(name, pattern) for pattern in OWNED_ENTRIES)


def reject_skipped(input_uri: str, skipped: tuple[SkippedFile, ...] | list[SkippedFile], output_uri: str,
                       s3_endpoint: str | None = None) -> None:
    """ReadRecord the entries under the input that are not read as corpus rejects of the run at ``output_uri``."""
    if not skipped:
        return
    logger.warning("corpus: %d file(s) under %s not read: %s", len(skipped), input_uri, _describe(list(skipped)))
    write_rejects(output_uri, CORPUS_STAGE, [
        {"source": display_uri(input_uri, s.path), "reason": s.reason, "detail": s.detail} for s in skipped],
        s3_endpoint)


def check_context_column(fs: pafs.FileSystem, path: str, column: str, source: str) -> None:
    """Fail fast, before any cluster work, when the first file has no ``column`` at all.

    A file that cannot be read is left to the reader, which rejects it with the reason.
    """
    if _format_of(path) == TEXT:
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
    kind = _format_of(path)
    if kind == PARQUET:
        with fs.open_input_file(path) as f:
            return pq.read_schema(f).names
    if kind == ARROW:
        with fs.open_input_stream(path) as f:
            return ipc.open_stream(f).schema.names
    with fs.open_input_stream(path, compression=None) as f:
        for _, line in itertools.islice(_lines(_decompressed(f, path)), _PEEK_LINES):
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue  # rejected at read time; look a little further for a readable record
            if isinstance(record, dict):
                return list(record)
    return None


class _MissingFile:
    """Stands in for a listed file that is gone when read, so that it becomes a reject, not a failed job."""

    def __enter__(self) -> _MissingFile:
        return self

    def __exit__(self, *_: object) -> None:
        return None


class CorpusDatasource(FileBasedDatasource):
    """Streams corpus files as documents (source, position, context)."""

    def __init__(self, input_uri: str, paths: list[str], filesystem: pafs.FileSystem, context_column: str,
                 output_uri: str, s3_endpoint: str | None = None) -> None:
        self._input_uri = input_uri
        self._context_column = context_column
        self._output_uri = output_uri
        self._s3_endpoint = s3_endpoint
        try:  # Ray looks every file up here: one deleted since the listing is a reject, not a failed job
            super().__init__(paths, filesystem=filesystem, ignore_missing_paths=True)
        except ValueError as err:
            raise CorpusError(f"every corpus file listed under {input_uri} is gone: {err}") from None
        gone = sorted(set(paths) - set(self._paths()))
        for path in gone:
            self._reject(display_uri(input_uri, path), [_missing_file(input_uri, path, "when the read began")])


    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> pa.NativeFile | _MissingFile:
        try:
            return open_corpus_file(filesystem, path, self._resolve_buffer_size(open_args))
        except FileNotFoundError:
            return _MissingFile()

    def _read_stream(self, f: pa.NativeFile | _MissingFile, path: str) -> Iterator[pa.Table]:
        source = display_uri(self._input_uri, path)
        if isinstance(f, _MissingFile):
            self._reject(source, [_missing_file(self._input_uri, path, "when read")])
            return
        rejects: list[dict] = []
        yield from file_documents(f, path, source, self._context_column, rejects)
        self._reject(source, rejects)

    def _reject(self, source: str, rejects: list[dict]) -> None:
        if rejects:
            logger.warning("%s: %d record(s) rejected (%s)", source, len(rejects),
                           ", ".join(sorted({r["reason"] for r in rejects})))
            write_rejects(self._output_uri, CORPUS_STAGE, rejects, self._s3_endpoint)


def open_corpus_file(fs: pafs.FileSystem, path: str, buffer_size: int | None = None) -> pa.NativeFile:
    """A corpus file opened as ``file_documents`` reads it."""
    if _format_of(path) == PARQUET:
        return fs.open_input_file(path)  # Parquet needs random access
    # Raw bytes: compressed streams are decompressed by `_decompressed`, which keeps what precedes a cut.
    return fs.open_input_stream(path, compression=None, buffer_size=buffer_size)


def file_documents(f: pa.NativeFile, path: str, source: str, column: str, rejects: list[dict]) -> Iterator[pa.Table]:
    """The documents of one corpus file (``f``, opened by ``open_corpus_file``) in blocks of ``BLOCK_ROWS``;
    each record that is no document goes to ``rejects`` with its reason. Needs no Ray cluster (the datasource
    reads with it, and so does ``bonito-ray plan``)."""
    documents: list[dict] = []
    position = read = 0
    earlier = len(rejects)
    try:
        for position, context, reason, detail, raw in _records(f, path, column):
            read += 1
            if reason is None:
                documents.append({"source": source, "position": position, "context": context})
                if len(documents) >= BLOCK_ROWS:
                    yield table_from_rows(documents, DOCUMENT_SCHEMA)
                    documents = []
            else:
                rejects.append({"source": source, "position": position, "reason": reason,
                                "detail": detail, "raw": raw})
    except StreamError as err:  # a compressed stream cut short or corrupt; what came before it is kept
        rejects.append({"source": source, "position": err.after + 1, "reason": err.reason,
                        "detail": f"{err} (after record {err.after})", "raw": err.partial_text()})
    except (OSError, EOFError, pa.ArrowException) as err:
        if _is_transient(err):
            raise  # Ray Data retries the whole file (DataContext.retried_io_errors)
        # A file cut short or corrupt: keep what was read, reject the rest with the reason.
        rejects.append({"source": source, "position": position + 1, "reason": UNREADABLE_FILE,
                        "detail": f"{type(err).__name__}: {err} (after record {position})"})
    if not read and len(rejects) == earlier:  # otherwise a 0-byte file would leave no trace in the run
        rejects.append({"source": source, "reason": EMPTY_FILE, "detail": "no record in the file"})
    if documents:
        yield table_from_rows(documents, DOCUMENT_SCHEMA)


def _missing_file(input_uri: str, path: str, when: str) -> dict:
    return {"source": display_uri(input_uri, path), "reason": MISSING_FILE,
            "detail": f"listed, but gone {when} (deleted or moved meanwhile)"}


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


ReadRecord = tuple[int, str | None, str | None, str | None, str | None]  # position, context, reason, detail, raw
Cell = tuple[str | None, str | None, str | None, str | None]  # a table cell: context, reason, detail, raw


def _records(f: pa.NativeFile, path: str, column: str) -> Iterator[ReadRecord]:
    kind = _format_of(path)
    if kind == PARQUET:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        batches = parquet.iter_batches(columns=[column], batch_size=BLOCK_ROWS) if column in names else iter(())
        return _table_records(names, batches, column)
    if kind == ARROW:
        reader = ipc.open_stream(f)
        return _table_records(reader.schema.names, reader, column)
    if kind == TEXT:
        return _text_record(_decompressed(f, path))
    return _jsonl_records(_lines(_decompressed(f, path)), column)


class StreamError(Exception):
    """A compressed stream that ends early or holds bytes its codec rejects.

    ``after`` is the last complete line before the fault and ``partial`` the bytes after it, set by
    the reader that met the fault; everything before them was read normally.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.after = 0
        self.partial = b""

    def partial_text(self) -> str | None:
        return self.partial.decode("utf-8", errors="replace") if self.partial else None


def _decompressed(f: pa.NativeFile, path: str) -> Iterator[bytes]:
    """The bytes of a corpus file, decompressed by its suffix, without a leading UTF-8 BOM.

    Python's incremental decompressors (gzip, bz2) hand out all they could decode before a cut;
    pyarrow's stream decodes zstd, which the standard library lacks. zstd decodes whole blocks (up to
    128 kB), so the block a cut falls in is lost by any decoder: measured, pyarrow keeps exactly what
    the ``zstandard`` package keeps, so that package would add nothing here.
    """
    compression = (corpus_format(path) or (None, None))[1]
    if compression is None:
        chunks = iter(lambda: f.read(READ_CHUNK_BYTES), b"")
    elif compression == "zstd":
        chunks = _arrow_decompressed(f, compression)
    else:
        chunks = _python_decompressed(f, _NEW_DECOMPRESSOR[compression])
    return _without_bom(chunks)


_NEW_DECOMPRESSOR: dict[str, Callable[[], Any]] = {
    "gzip": lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), "bz2": bz2.BZ2Decompressor}


def _python_decompressed(f: pa.NativeFile, new_decompressor: Callable[[], Any]) -> Iterator[bytes]:
    """Decompress a stream of one or more concatenated members, at most READ_CHUNK_BYTES out at a time."""
    decompressor, pending = None, b""
    while True:
        if not pending:
            pending = f.read(_RAW_CHUNK_BYTES)
            if not pending:
                break
        if decompressor is None:
            if not pending.strip(b"\0"):  # zero padding after the last member (tape and block devices)
                pending = b""
                continue
            decompressor = new_decompressor()
        try:
            while True:  # drain: a small input can hold far more than READ_CHUNK_BYTES of output
                out = decompressor.decompress(pending, READ_CHUNK_BYTES)
                pending = getattr(decompressor, "unconsumed_tail", b"")
                if out:
                    yield out
                more = pending or len(out) == READ_CHUNK_BYTES or not getattr(decompressor, "needs_input", True)
                if decompressor.eof or not more:
                    break
        except (zlib.error, OSError, EOFError) as err:
            raise StreamError(UNREADABLE_FILE, f"corrupt compressed data: {err}") from None
        if decompressor.eof:
            pending, decompressor = decompressor.unused_data, None
    if decompressor is not None:
        raise StreamError(TRUNCATED_FILE, "compressed file cut short")


def _arrow_decompressed(f: pa.NativeFile, compression: str) -> Iterator[bytes]:
    stream = pa.CompressedInputStream(f, compression)
    while True:
        try:
            chunk = stream.read(_RAW_CHUNK_BYTES)
        except OSError as err:
            if "truncated" in str(err).lower():  # pyarrow's only sign of a cut: its message
                raise StreamError(TRUNCATED_FILE, "compressed file cut short") from None
            raise
        if not chunk:
            return
        yield chunk


def _without_bom(chunks: Iterator[bytes]) -> Iterator[bytes]:
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= len(_BOM):
            yield head.removeprefix(_BOM)
            yield from chunks
            return
    if head:
        yield head.removeprefix(_BOM)


def _lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line bytes) for each non-blank line of a stream.

    A fault in the stream is raised once every complete line before it was handed out.
    """
    buffer = b""
    number = 0
    try:
        for chunk in chunks:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                number += 1
                if line.strip():
                    yield number, line
    except StreamError as err:
        err.after, err.partial = number, buffer
        raise
    if buffer.strip():
        yield number + 1, buffer


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
