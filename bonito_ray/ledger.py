"""The ledger of an incremental dataset: which input files it already covers, and as of when.

``_ledger.json`` next to the dataset maps each input file (its URI) to its signature when it was
processed, made by the run's ``--incremental-check``:

- ``size-mtime`` (the default): ``"<size>:<mtime_ns>"``, from the listing alone. An edit that keeps
  the size and puts the modification time back (``cp -p``, ``rsync -t``) is not seen.
- ``content``: ``"<size>:sha256:<hex>"``, a hash of every byte, read at each run. Any edit is seen.

An incremental run generates only for files that are new or whose signature changed; at commit (see
``bonito_ray.commit``), rows from a changed or deleted file are removed from the dataset and the new
ones moved in, so the dataset always equals one full run over the current input.

Each signature says which check made it, so a run whose check differs from the one a file was
recorded by compares that file by the recorded check, once, and records it by its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bonito_ray.schema import DATA_SUFFIXES, LEDGER_FILE
from bonito_ray.storage import display_uri, join, list_files, write_bytes, write_parquet

SIZE_MTIME, CONTENT = "size-mtime", "content"
INCREMENTAL_CHECKS = (SIZE_MTIME, CONTENT)
_HASH = "sha256"
_READ_BYTES = 1 << 20


def read_ledger(fs: pafs.FileSystem, root: str) -> dict[str, str]:
    """Input URI -> signature of every file the dataset at ``root`` covers."""
    path = join(root, LEDGER_FILE)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return {}
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def signatures(input_uri: str, input_fs: pafs.FileSystem, files: list[str], check: str = SIZE_MTIME) -> dict[str, str]:
    """Input URI -> signature of each file, made by ``check`` (see the module docstring)."""
    infos = input_fs.get_file_info(files)
    if check == CONTENT:
        return {display_uri(input_uri, i.path): f"{i.size}:{_HASH}:{_content_hash(input_fs, i.path)}" for i in infos}
    return {display_uri(input_uri, i.path): f"{i.size}:{i.mtime_ns}" for i in infos}


def check_of(signature: str) -> str:
    """The check that made ``signature``."""
    return CONTENT if signature.count(":") == 2 else SIZE_MTIME


def _content_hash(fs: pafs.FileSystem, path: str) -> str:
    digest = hashlib.new(_HASH)
    try:
        with fs.open_input_stream(path, compression=None) as f:  # the bytes as stored, not decompressed
            for chunk in iter(lambda: f.read(_READ_BYTES), b""):
                digest.update(chunk)
    except OSError:  # gone or unreadable since the listing: the reader rejects it with the reason
        return "unreadable"
    return digest.hexdigest()


def total_size(signatures: dict[str, str]) -> int:
    """The bytes of the files whose ``signatures`` these are; a file gone since the listing has none."""
    sizes = (signature.split(":", 1)[0] for signature in signatures.values())
    return sum(int(size) for size in sizes if size.isdigit())


Recheck = Callable[[list[str], str], dict[str, str]]  # (input URIs, check) -> their signatures by that check


def pending(current: dict[str, str], ledger: dict[str, str],
            recheck: Recheck) -> tuple[list[str], list[str], list[str], list[str]]:
    """(files to process: new or changed, changed files among them, files deleted since, unchanged files the
    ledger holds by another check than ``current``'s, to record again by this one), as URIs.

    A file recorded by another check is compared by that one: ``recheck`` signs it so.
    """
    other = {uri: check_of(ledger[uri]) for uri in current.keys() & ledger.keys()
             if check_of(ledger[uri]) != check_of(current[uri])}
    comparable = dict(current)
    for check in sorted(set(other.values())):
        comparable |= recheck(sorted(uri for uri, c in other.items() if c == check), check)
    todo = sorted(uri for uri in current if ledger.get(uri) != comparable[uri])
    changed, removed = [uri for uri in todo if uri in ledger], sorted(set(ledger) - set(current))
    return todo, changed, removed, sorted(set(other) - set(todo))


def drop_sources(fs: pafs.FileSystem, root: str, sources: list[str], keep: set[str] = frozenset()) -> None:
    """Rewrite the committed Parquet files under ``root`` without the rows that came from ``sources``.

    Files in ``keep`` (this commit's own, being moved in) are left alone. Idempotent.
    """
    if not sources:
        return
    for path in list_files(fs, root):
        relative = path[len(root) + 1 :]
        if not path.endswith(DATA_SUFFIXES) or relative.startswith(".") or path in keep:
            continue
        table = pq.read_table(path, filesystem=fs)
        stale = pc.is_in(table["source"], value_set=pc.cast(sources, table.schema.field("source").type))
        if pc.any(stale).as_py():
            kept = table.filter(pc.invert(stale))
            if kept.num_rows:
                write_parquet(fs, path, kept)
            else:
                fs.delete_file(path)


def record(fs: pafs.FileSystem, root: str, processed: dict[str, str], removed: list[str] = ()) -> None:
    """Remove ``removed`` URIs from the ledger, then add ``processed`` (URI -> signature). Idempotent."""
    ledger = {uri: s for uri, s in read_ledger(fs, root).items() if uri not in set(removed)} | processed
    write_bytes(fs, join(root, LEDGER_FILE), json.dumps(ledger, indent=1, sort_keys=True).encode("utf-8"))
