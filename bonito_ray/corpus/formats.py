"""What a corpus file is: the formats read, known by the file's name, and the error for an input that is none."""

from __future__ import annotations

from bonito_ray.errors import UserError

JSONL, PARQUET, ARROW, TEXT = "jsonl", "parquet", "arrow", "text"
_FORMATS = {".jsonl": JSONL, ".json": JSONL, ".parquet": PARQUET, ".arrow": ARROW, ".txt": TEXT, ".md": TEXT}
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
_COMPRESSIBLE = (JSONL, TEXT)  # Parquet and Arrow compress inside the file
CORPUS_SUFFIXES = tuple(_FORMATS) + tuple(f"{s}{c}" for s, f in _FORMATS.items() if f in _COMPRESSIBLE
                                          for c in _COMPRESSIONS)


class CorpusError(UserError, ValueError):
    """The corpus cannot be read at all (missing input, no files, wrong context column)."""


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


def format_of(path: str) -> str:
    """The format of a corpus file by its name; JSONL for a name ``corpus_format`` does not know."""
    return (corpus_format(path) or (JSONL, None))[0]

