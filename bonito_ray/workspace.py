"""The temporary corpus and output of one ``generate_tasks`` call, removed when the call ends.

A workspace is a folder ``bonito-ray-<digest>`` under a work location (the system's temporary
folder, or a URI every node of a multi-node cluster can reach) holding ``corpus/`` and ``out/``.
Its name comes from the input's digest because the job derives passage and example ids, and from
them each request's seed, from the corpus file's path: the same input and seed then give the same
tasks call after call. A call that finds that folder taken (the same input running at the same
time, or left by a killed process) works in a folder of its own instead (``-<random>``), and is
then not reproducible against the others.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid

import pyarrow as pa
import pyarrow.fs as pafs

from bonito_ray.storage import join, resolve_filesystem
from bonito_ray.table_io import digest, write_corpus

logger = logging.getLogger(__name__)

PREFIX = "bonito-ray-tasks-"
DIGEST_CHARS = 16


class Workspace:
    """Context manager: writes ``table`` as the corpus on entry and deletes everything on exit.

    ``corpus_uri`` and ``output_uri`` are what a ``GenerateConfig`` takes; ``fs`` and ``output_root``
    read the committed output back.
    """

    def __init__(self, table: pa.Table, location: str | None = None, s3_endpoint: str | None = None) -> None:
        self.table = table
        self.location = location or tempfile.gettempdir()
        self.fs, self.base = resolve_filesystem(self.location, s3_endpoint)
        self.root = ""

    def __enter__(self) -> "Workspace":
        name = PREFIX + digest(self.table)[:DIGEST_CHARS]
        self.root = self._claim(name) or self._claim(f"{name}-{uuid.uuid4().hex[:8]}")
        if not self.root:
            raise OSError(f"cannot create a work folder under {self.location}")
        try:
            write_corpus(self.fs, join(self.root, "corpus"), self.table)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    @property
    def corpus_uri(self) -> str:
        return self._uri(join(self.root, "corpus"))

    @property
    def output_uri(self) -> str:
        return self._uri(join(self.root, "out"))

    @property
    def output_root(self) -> str:
        return join(self.root, "out")

    def _uri(self, path: str) -> str:
        if "://" not in self.location:
            return path
        return self.location.split("://", 1)[0] + "://" + path

    def _claim(self, name: str) -> str:
        """The folder ``name`` under the work location, created for this call; "" when it is taken."""
        path = join(self.base, name)
        if isinstance(self.fs, pafs.LocalFileSystem):
            try:
                os.makedirs(self.base, exist_ok=True)
                os.mkdir(path)  # atomic: of two calls claiming one name, one gets it
            except FileExistsError:
                return ""
            return path
        # Object stores have no atomic create; a folder already holding objects is taken.
        if self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
            return ""
        return path

    def _remove(self) -> None:
        try:
            if isinstance(self.fs, pafs.LocalFileSystem):
                shutil.rmtree(self.root, ignore_errors=False)
            else:
                self.fs.delete_dir(self.root)
        except (OSError, FileNotFoundError) as err:
            logger.warning("could not remove the work folder %s: %s", self._uri(self.root), err)
