"""What at an output bonito-ray wrote, decided from its own records (provenance), never from a name alone.

A file under the output is **ours** when one of our records accounts for it::

    _manifest.json         ours when it reads as a manifest (a JSON object with a summary). It names every file its
                           commits put in place (``written``; in a manifest of an earlier version: its data
                           ``files``, and the data files of _rejects/ and _self_guide/ beside them), and makes
                           ours what a commit writes with it: _SUCCESS, _ledger.json, .huggingface.yaml and the
                           card (_card/README.md and its plots)
    .staging/_commit.json  a journal: ours when it reads as one. The files it moves are ours wherever they are
                           (staged or moved), and so is what its commit writes (as for the manifest)
    .staging/_run.json     a run record: ours when it reads as a JSON object. The staging folder is the run's:
                           every file in it is ours
    _lease.json            ours when it reads as a lease record (run_id, heartbeat), and the copies a takeover
                           sets aside (_lease.json.taken-<32 hex>)
    .tmp-<32 hex>-<name>   a file our atomic writes are writing, anywhere: the write id is in the name

Everything else is **foreign**: bonito-ray never deletes or overwrites it, and refuses an output that holds
any (naming the first few). A symbolic link under a local output is refused as well: files written through
it would land outside the output (``links``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import pyarrow.fs as pafs

from bonito_ray.card import PLOTS as CARD_PLOTS
from bonito_ray.errors import UserError
from bonito_ray.schema import (CARD_DIR, CARD_FILE, COMMIT_FILE, HF_YAML_FILE, LEASE_FILE, LEDGER_FILE,
                               MANIFEST_FILE, REJECTS_DIR, RUN_FILE, SELF_GUIDE_DIR, STAGING_DIR, SUCCESS_FILE,
                               TEMPORARY_PREFIX, is_data_file)
from bonito_ray.storage import join

# What a commit writes beside the files it moves (relative to the output root).
COMMIT_WRITES = frozenset({MANIFEST_FILE, SUCCESS_FILE, LEDGER_FILE, HF_YAML_FILE, f"{CARD_DIR}/{CARD_FILE}",
                           *(f"{CARD_DIR}/{plot}" for plot in CARD_PLOTS)})
_TEMPORARY = re.compile(re.escape(TEMPORARY_PREFIX) + r"[0-9a-f]{32}-[^/]+")
_TAKEN_LEASE = re.compile(re.escape(LEASE_FILE) + r"\.taken-[0-9a-f]{32}")
# A manifest of an earlier version lists only accepted and example-reject files; the others of its
# folders were written by the same commit.
_LEGACY_DATA_DIRS = (REJECTS_DIR + "/", SELF_GUIDE_DIR + "/")


@dataclass(frozen=True)
class Inventory:
    """Every file under an output (relative paths), split by whose it is."""

    ours: tuple[str, ...]
    foreign: tuple[str, ...]
    links: tuple[str, ...]  # symbolic links (local outputs), wherever they point


def take_inventory(fs: pafs.FileSystem, root: str) -> Inventory:
    """Read the output's records and sort every file under ``root`` into ours and foreign."""
    files, links = _walk(fs, root)
    claimed = _claimed(fs, root, set(files))
    ours = tuple(f for f in files if f in claimed or _is_transient(f))
    foreign = tuple(f for f in files if f not in set(ours))
    return Inventory(ours, foreign, tuple(links))


def committed_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """The files in place that our commits moved there (a manifest's ``written``): ours, outside the staging
    folder, less what a commit writes with them and what is transient."""
    return [f for f in take_inventory(fs, root).ours
            if not f.startswith(STAGING_DIR + "/") and f not in COMMIT_WRITES and f != LEASE_FILE
            and not _is_transient(f)]


def manifest_of(fs: pafs.FileSystem, root: str) -> dict | None:
    """The output's manifest when it is one of ours; None when absent or not ours."""
    record = _read_json(fs, join(root, MANIFEST_FILE))
    return record if _is_manifest(record) else None


def describe(paths: tuple[str, ...] | list[str], shown: int = 5) -> str:
    """The first ``shown`` paths, and how many more."""
    more = len(paths) - shown
    return ", ".join(paths[:shown]) + (f" and {more} more" if more > 0 else "")


def _claimed(fs: pafs.FileSystem, root: str, files: set[str]) -> set[str]:
    claimed: set[str] = set()
    manifest = manifest_of(fs, root)
    staging = STAGING_DIR + "/"
    journal = _read_json(fs, join(root, STAGING_DIR, COMMIT_FILE))
    journal = journal if isinstance(journal, dict) and isinstance(journal.get("moves"), list) else None
    if manifest is not None:
        claimed |= COMMIT_WRITES | set(_strings(manifest.get("written")))
        if "written" not in manifest:
            claimed |= {f["path"] for f in manifest.get("summary", {}).get("files", []) if isinstance(f, dict)}
            claimed |= {f for f in files if f.startswith(_LEGACY_DATA_DIRS) and is_data_file(f)}
    if journal is not None:
        moves = set(_strings(journal["moves"]))
        claimed |= COMMIT_WRITES | {staging + COMMIT_FILE} | moves | {staging + m for m in moves}
    if isinstance(_read_json(fs, join(root, STAGING_DIR, RUN_FILE)), dict):
        claimed |= {f for f in files if f.startswith(staging)}
    lease = _read_json(fs, join(root, LEASE_FILE))
    if isinstance(lease, dict) and {"run_id", "heartbeat"} <= lease.keys():
        claimed.add(LEASE_FILE)
    return claimed & files


def _is_transient(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return bool(_TEMPORARY.fullmatch(name)) or (relative == name and bool(_TAKEN_LEASE.fullmatch(name)))


def _is_manifest(record: object) -> bool:
    return isinstance(record, dict) and isinstance(record.get("summary"), dict)


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _read_json(fs: pafs.FileSystem, path: str) -> object:
    try:
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):  # absent, a folder, or not JSON: not a record of ours
        return None


def _walk(fs: pafs.FileSystem, root: str) -> tuple[list[str], list[str]]:
    """(every file, every symbolic link) under ``root``, relative and sorted; links are not followed."""
    if isinstance(fs, pafs.LocalFileSystem):
        return _walk_local(root)
    entries = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(e.path[len(root) + 1 :] for e in entries if e.type == pafs.FileType.File), []


def _walk_local(root: str) -> tuple[list[str], list[str]]:
    files, links = [], []
    if not os.path.isdir(root):
        return files, links
    for directory, folders, names in os.walk(root):  # os.walk does not descend into linked folders
        base = os.path.relpath(directory, root)
        for name in folders + names:
            relative = name if base == "." else f"{base}/{name}"
            if os.path.islink(os.path.join(directory, name)):
                links.append(relative + ("/" if name in folders else ""))
            elif name in names:
                files.append(relative)
    return sorted(files), sorted(links)


# ---- the outputs of the other jobs (export, finetune, evaluate) -------------------------------------------
# Each names its own files in a record of its own at the output; these rules are the same as a dataset's.

def refuse_foreign_files(fs: pafs.FileSystem, root: str, uri: str, is_ours, what: str) -> None:
    """Refuse a folder output holding links, or files that ``is_ours(relative)`` does not claim (the job's
    record read first by the caller); ``what`` names the job's output in the message."""
    files, links = _walk(fs, root)
    if links:
        raise OwnershipError(f"{what} {uri} holds symbolic links ({describe(links)}); files written through them "
                             "would land outside it: remove them, or choose a new or empty location")
    foreign = [f for f in files if not is_ours(f)]
    if foreign:
        raise OwnershipError(f"{what} {uri} holds files bonito-ray did not write ({describe(foreign)}); choose a "
                             "new or empty location (bonito-ray overwrites nothing it did not write)")


def read_record(fs: pafs.FileSystem, path: str, keys: set[str]) -> dict | None:
    """A job's record at ``path`` when it reads as a JSON object with ``keys``; None otherwise."""
    record = _read_json(fs, path)
    return record if isinstance(record, dict) and keys <= record.keys() else None


class OwnershipError(UserError, ValueError):
    """An output holds what bonito-ray did not write."""
