"""The ledger of an incremental dataset: which input files it already covers, and as of when.

``_ledger.json`` next to the dataset maps each input file (its URI) to its size and modification
time when it was processed. An incremental run generates only for files that are new or whose
signature changed; at commit (see ``bonito_ray.commit``), rows from a changed or deleted file are
removed from the dataset and the new ones moved in, so the dataset always equals one full run over
the current input.
"""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bonito_ray.schema import DATA_SUFFIXES, LEDGER_FILE
from bonito_ray.storage import display_uri, join, list_files, write_bytes, write_parquet


def read_ledger(fs: pafs.FileSystem, root: str) -> dict[str, str]:
    """Input URI -> signature of every file the dataset at ``root`` covers."""
    path = join(root, LEDGER_FILE)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return {}
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def signatures(input_uri: str, input_fs: pafs.FileSystem, files: list[str]) -> dict[str, str]:
    """Input URI -> "size:mtime" of each file."""
    return {display_uri(input_uri, i.path): f"{i.size}:{i.mtime_ns}" for i in input_fs.get_file_info(files)}


def total_size(signatures: dict[str, str]) -> int:
    """The bytes of the files whose ``signatures`` these are."""
    return sum(int(signature.split(":", 1)[0]) for signature in signatures.values())


def pending(current: dict[str, str], ledger: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """(files to process: new or changed, changed files among them, files deleted since), as URIs."""
    todo = sorted(uri for uri, signature in current.items() if ledger.get(uri) != signature)
    return todo, [uri for uri in todo if uri in ledger], sorted(set(ledger) - set(current))


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
