"""One corpus file -> blocks of documents, and a reject for each record that is no document. Needs no Ray
cluster: the datasource reads each file with it, and so does ``bonito-ray plan``.

A file that holds no record at all (0 bytes, blank lines only, no rows) is one ``empty_file`` reject, so
that it shows in the summary. A compressed file cut short keeps every complete record before the cut, and
one ``truncated_file`` reject names the record after which it was cut.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs

from bonito_ray.corpus.decompression import StreamError
from bonito_ray.corpus.formats import PARQUET, format_of
from bonito_ray.corpus.records import BLOCK_ROWS, records
from bonito_ray.rejects import EMPTY_FILE, UNREADABLE_FILE
from bonito_ray.schema import DOCUMENT_SCHEMA, table_from_rows


def open_corpus_file(fs: pafs.FileSystem, path: str, buffer_size: int | None = None) -> pa.NativeFile:
    """A corpus file opened as ``file_documents`` reads it."""
    if format_of(path) == PARQUET:
        return fs.open_input_file(path)  # Parquet needs random access
    # Raw bytes: compressed streams are decompressed by ``decompressed``, which keeps what precedes a cut.
    return fs.open_input_stream(path, compression=None, buffer_size=buffer_size)


def file_documents(f: pa.NativeFile, path: str, source: str, column: str, rejects: list[dict]) -> Iterator[pa.Table]:
    """The documents of one corpus file (``f``, opened by ``open_corpus_file``) in blocks of ``BLOCK_ROWS``;
    each record that is no document goes to ``rejects`` with its reason. Needs no Ray cluster (the datasource
    reads with it, and so does ``bonito-ray plan``)."""
    documents: list[dict] = []
    position = read = 0
    earlier = len(rejects)
    try:
        for position, context, reason, detail, raw in records(f, path, column):
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


def _is_transient(err: BaseException) -> bool:
    """Whether an I/O error is a passing fault of the store (throttling, network) rather than bad data."""
    from ray.data import DataContext

    message = str(err)
    return any(pattern in message for pattern in DataContext.get_current().retried_io_errors)
