"""The corpus as a Ray Data datasource: files stream through the cluster as documents, and the corpus is
never materialised. Each file is read by ``file_documents``; its rejects are written as it is read.

A file deleted between listing and reading is one ``missing_file`` reject, not a failed job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from ray.data.datasource import FileBasedDatasource

from bonito_ray.corpus.documents import file_documents, open_corpus_file
from bonito_ray.corpus.formats import CorpusError
from bonito_ray.rejects import MISSING_FILE, write_rejects
from bonito_ray.schema import CORPUS_STAGE
from bonito_ray.storage import display_uri

logger = logging.getLogger(__name__)


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


def _missing_file(input_uri: str, path: str, when: str) -> dict:
    return {"source": display_uri(input_uri, path), "reason": MISSING_FILE,
            "detail": f"listed, but gone {when} (deleted or moved meanwhile)"}


def read_documents(input_uri: str, fs: pafs.FileSystem, files: list[str], context_column: str, output_uri: str,
                   s3_endpoint: str | None = None):
    """The lazy dataset of documents in the corpus ``files`` (listed by ``list_corpus_files``)."""
    import ray.data

    logger.info("corpus: %d file(s) under %s", len(files), input_uri)
    return ray.data.read_datasource(
        CorpusDatasource(input_uri, files, fs, context_column, output_uri, s3_endpoint))
