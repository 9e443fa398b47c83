"""Corpus reading: files -> documents, with every record that cannot be a document rejected.

Formats (suffixes matched case-insensitively): JSONL (``.jsonl``, ``.json``, also compressed ``.gz``,
``.bz2``, ``.zst``), Parquet, Arrow files of a `datasets` dataset saved with ``save_to_disk``, and
plain-text files (``.txt``, ``.md``, also compressed: one document per file).

Nothing under the input is dropped silently; each step writes what it cannot read to
``_rejects/stage=corpus/`` with its reason, and none of them stops the job:

- ``listing``: the files under the input, and each entry there that is not read (``SkippedFile``);
- ``decompression``: a compressed file's bytes and lines, up to a cut or corrupt data (``StreamError``);
- ``records``: each record checked as a context (invalid JSON or UTF-8, a missing, null or empty context, ...);
- ``documents``: one file -> blocks of documents and its rejects, without Ray (the job and ``bonito-ray plan``);
- ``datasource``: the Ray Data datasource that streams the files through the cluster.
"""

from bonito_ray.corpus.datasource import CorpusDatasource, read_documents
from bonito_ray.corpus.decompression import StreamError
from bonito_ray.corpus.documents import file_documents, open_corpus_file
from bonito_ray.corpus.formats import CORPUS_SUFFIXES, CorpusError, corpus_format
from bonito_ray.corpus.listing import CorpusListing, SkippedFile, input_fingerprint, list_corpus_files, reject_skipped
from bonito_ray.corpus.records import BLOCK_ROWS, check_context_column

__all__ = ["BLOCK_ROWS", "CORPUS_SUFFIXES", "CorpusDatasource", "CorpusError", "CorpusListing", "SkippedFile",
           "StreamError", "check_context_column", "corpus_format", "file_documents", "input_fingerprint",
           "list_corpus_files", "open_corpus_file", "read_documents", "reject_skipped"]
