"""Decompressing a corpus file into a stream of bytes and lines, keeping everything that precedes a cut.

A compressed file cut short or corrupt ends its stream with a :class:`StreamError` that says after which line
it came, so that the records before it are read and the file is one reject.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from bonito_ray.corpus.formats import corpus_format
from bonito_ray.rejects import TRUNCATED_FILE, UNREADABLE_FILE

READ_CHUNK_BYTES = 1 << 20
# Compressed bytes fed to a decompressor at a time, and the output asked of pyarrow's zstd stream
# per read: the output of a read that meets a cut is lost, so it is kept small.
_RAW_CHUNK_BYTES = 1 << 16
_BOM = b"\xef\xbb\xbf"


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


def decompressed(f: pa.NativeFile, path: str) -> Iterator[bytes]:
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


def numbered_lines(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes]]:
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
