"""The output's lifecycle: what an output holds, what may be done to it, and by whom.

States, read from the files at the output (``inspect``)::

    EMPTY       nothing of bonito-ray's (absent, or an empty folder)
    STAGING     .staging/_run.json: a run is generating into .staging/ (or was, if it was killed)
    COMMITTING  .staging/_commit.json: a commit is under way (or was interrupted)
    COMMITTED   _SUCCESS, no run record: a complete dataset (with _ledger.json if --incremental)
    INCOMPLETE  bonito-ray's files with none of these markers (not written by this protocol)

A run first **leases** the output (``open_output``; one writer at a time, see ``bonito_ray.lease``)
and only the lease holder makes the transitions, each checking the lease first::

    open_output  -> leased     refused: input and output overlap, output is a file, not writable,
                               holds files bonito-ray did not write or symbolic links (decided from
                               bonito-ray's records: bonito_ray.ownership), or another live run holds it
    recover      COMMITTING -> COMMITTED   the interrupted commit rolled forward (bonito_ray.commit)
    finished     COMMITTED, same job, nothing new -> nothing to do (a different job is refused)
    clear        any -> EMPTY              --overwrite: deletes the files our records name, nothing else
    begin        EMPTY -> STAGING; STAGING -> STAGING (resume: same job only);
                 COMMITTED -> STAGING (--incremental, same settings only)
    commit       STAGING -> COMMITTING -> COMMITTED
    release      leased -> free (success or failure)

Every transition is crash-safe: a kill at any instant leaves one of the states above, from which
the next run goes on: STAGING resumes, COMMITTING rolls forward, COMMITTED is a no-op for the
same job (or grows, for --incremental). Only INCOMPLETE needs --overwrite.
"""

from __future__ import annotations

import enum
import logging
import os
import posixpath
import weakref
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow.fs as pafs

from bonito_ray import commit, ledger
from bonito_ray.ownership import describe, take_inventory
from bonito_ray.errors import UserError
from bonito_ray.lease import Lease
from bonito_ray.report import RunSummary, read_manifest
from bonito_ray.schema import LEASE_FILE, RUN_FILE, STAGING_DIR
from bonito_ray.storage import join, resolve_filesystem

logger = logging.getLogger(__name__)


class OutputError(UserError, ValueError):
    """The output location cannot be used as asked."""


class OutputExistsError(OutputError):
    """The output already holds data this run may not add to or replace."""


class State(enum.Enum):
    EMPTY = "empty"
    STAGING = "staging"
    COMMITTING = "committing"
    COMMITTED = "committed"
    INCOMPLETE = "incomplete"


def inspect(fs: pafs.FileSystem, root: str) -> State:
    """The state of the output at ``root`` (read only; the lease is not part of it)."""
    if commit.has_journal(fs, root):
        return State.COMMITTING
    if fs.get_file_info(join(root, STAGING_DIR, RUN_FILE)).type == pafs.FileType.File:
        return State.STAGING
    if commit.is_complete(fs, root):
        return State.COMMITTED
    if commit.committed_example_files(fs, root):
        return State.INCOMPLETE
    return State.EMPTY


def check_no_overlap(input_uri: str, output_uri: str) -> None:
    """Refuse an output that is, holds or lies inside the input (local paths and URIs alike)."""
    (input_store, input_path), (output_store, output_path) = _location(input_uri, True), _location(output_uri)
    if input_store != output_store:
        return
    if input_path == output_path:
        how = "they are the same location"
    elif output_path.startswith(input_path.rstrip("/") + "/"):
        how = "the output lies inside the input, so its files would be read as corpus"
    elif input_path.startswith(output_path.rstrip("/") + "/"):
        how = "the input lies inside the output"
    else:
        return
    raise OutputError(f"input {input_uri} and output {output_uri} overlap ({how}); "
                      "choose an output outside the input")


def _location(uri: str, may_be_glob: bool = False) -> tuple[str, str]:
    """(store, normalised absolute path) of a local path or URI; a glob is cut to its fixed folder."""
    if may_be_glob and any(c in uri for c in "*?[") and not (("://" not in uri) and os.path.exists(uri)):
        uri = uri[: min(uri.find(c) for c in "*?[" if c in uri)].rsplit("/", 1)[0] or "/"
    parsed = urlparse(uri) if "://" in uri else None
    if parsed is None or parsed.scheme == "file":
        return "file", os.path.realpath(parsed.path if parsed else uri)
    scheme = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}.get(parsed.scheme, parsed.scheme)
    return scheme, posixpath.normpath("/" + parsed.netloc + "/" + parsed.path.strip("/"))


def foreign_entries(fs: pafs.FileSystem, root: str) -> list[str]:
    """The files under ``root`` that no record of bonito-ray's accounts for (see bonito_ray.ownership)."""
    return list(take_inventory(fs, root).foreign)


def open_output(input_uri: str, output_uri: str, s3_endpoint: str | None = None, *,
                overwrite: bool = False) -> "Output":
    """Check the output can be used for this input and lease it; no cluster work (see the module docstring)."""
    check_no_overlap(input_uri, output_uri)
    fs, root = resolve_filesystem(output_uri, s3_endpoint)
    try:
        existed = fs.get_file_info(root).type
        if existed == pafs.FileType.File:
            raise OutputError(f"output {output_uri} is a file; the output must be a folder (or prefix)")
        _refuse_foreign(fs, root, output_uri, overwrite)
        lease = Lease.acquire(fs, root, output_uri, s3_endpoint)
    except OSError as err:
        raise OutputError(f"cannot write to output {output_uri}: {_reason(err)}") from err
    except Exception as err:  # noqa: BLE001 - the lease's S3 client errors (access denied, no such bucket)
        if not _is_s3_client_error(err):
            raise
        raise OutputError(f"cannot write to output {output_uri}: {err}") from err
    return Output(output_uri, fs, root, lease, created=existed == pafs.FileType.NotFound)


def _refuse_foreign(fs: pafs.FileSystem, root: str, output_uri: str, overwrite: bool) -> list[str]:
    """Refuse an output holding links or files bonito-ray did not write; returns the files it did write."""
    inventory = take_inventory(fs, root)
    refused = "refusing --overwrite: " if overwrite else ""
    if inventory.links:
        raise OutputExistsError(
            f"{refused}output {output_uri} holds symbolic links ({describe(inventory.links)}); files written "
            "through them would land outside the output: remove them, or choose a new or empty location")
    if inventory.foreign:
        raise OutputExistsError(
            f"{refused}output {output_uri} holds files bonito-ray did not write ({describe(inventory.foreign)}); "
            "choose a new or empty location (bonito-ray deletes nothing it did not write)")
    return list(inventory.ours)


def _is_s3_client_error(err: Exception) -> bool:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return False
    return isinstance(err, (BotoCoreError, ClientError))


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


class Output:
    """A leased output: the transitions of the module docstring, made by this run only."""

    def __init__(self, uri: str, fs: pafs.FileSystem, root: str, lease: Lease, created: bool = False) -> None:
        # created: the folder did not exist before this run leased it
        self.uri, self.fs, self.root, self.lease = uri, fs, root, lease
        # Released when dropped, too: a plan made only to be looked at does not keep the output.
        self._release = weakref.finalize(self, _give_up, lease, fs, root, created)

    @property
    def state(self) -> State:
        return inspect(self.fs, self.root)

    def recover(self) -> None:
        """COMMITTING -> COMMITTED: finish a commit that a killed run started."""
        if self.state is State.COMMITTING:
            self.lease.check()
            logger.warning("%s: finishing the commit of an interrupted run", self.uri)
            commit.roll_forward(self.fs, self.root, self.uri)

    def pending(self, current: dict[str, str], recheck: ledger.Recheck, *,
                fresh: bool = False) -> tuple[list[str], list[str], list[str], list[str]]:
        """For --incremental: (input URIs new or changed, changed ones among them, deleted ones, unchanged ones
        recorded by another --incremental-check) since the ledger (see ``ledger.pending``).

        ``fresh``: the dataset is about to be replaced (--overwrite), so every input file is new.
        """
        return ledger.pending(current, {} if fresh else ledger.read_ledger(self.fs, self.root), recheck)

    def finished(self, identity: dict[str, Any], incremental: bool, has_work: bool) -> RunSummary | None:
        """The dataset's summary when this job has nothing to do; None when it has; refuses a different job."""
        state = self.state
        if state is State.INCOMPLETE:
            raise OutputExistsError(
                f"output {self.uri} holds a bonito-ray dataset without _SUCCESS or a run record to resume "
                "(left by an older version?); pass --overwrite to replace it, or choose another location")
        if state is not State.COMMITTED:
            return None
        manifest = read_manifest(self.fs, self.root)
        compared = ("input_fingerprint",) if incremental else ()
        differs = _differences(manifest.get("identity", {}), identity, ignore=compared)
        if differs:
            raise OutputExistsError(
                f"output {self.uri} already holds a complete dataset made by a different job "
                f"(different {', '.join(differs)}); "
                + ("an incremental run only adds to a dataset made with the same settings; " if incremental else "")
                + "choose another location, or pass --overwrite to replace it")
        if incremental and has_work:
            return None
        why = ("no input file is new, changed or deleted since the last run" if incremental
               else "this job's dataset is already complete (--overwrite to redo it)")
        logger.info("%s: %s", self.uri, why)
        return RunSummary(**{**manifest["summary"], "nothing_done": why, "wall_seconds": 0.0})

    def clear(self) -> None:
        """--overwrite: delete the files bonito-ray's records name (the lease aside); refuse anything else first."""
        self.lease.check()
        ours = [f for f in _refuse_foreign(self.fs, self.root, self.uri, overwrite=True)
                if not f.startswith(LEASE_FILE)]
        if not ours:
            return
        logger.warning("--overwrite: deleting the bonito-ray dataset at %s (%d files: %s)", self.uri, len(ours),
                       describe(sorted({f.split("/", 1)[0] for f in ours})))
        for relative in ours:
            self.fs.delete_file(join(self.root, relative))
        _remove_empty_folders(self.fs, self.root, ours)

    def begin(self, identity: dict[str, Any]) -> bool:
        """-> STAGING: record this run, or resume the unfinished one of the same job; True when resuming."""
        self.lease.check()
        state = self.state
        if state in (State.COMMITTING, State.INCOMPLETE) or (state is State.COMMITTED and not identity["incremental"]):
            raise RuntimeError(f"output {self.uri}: cannot start a run in state {state.value}")  # planning's job
        return commit.start_or_resume(self.fs, self.root, identity)

    def done_ids(self, stale_sources: list[str]) -> np.ndarray:
        """Ids already written by earlier attempts of this run (committed rows of ``stale_sources`` aside)."""
        return commit.done_ids(self.fs, self.root, stale_sources=stale_sources)

    def commit(self, *, stale_sources: list[str], ledger_entries: dict[str, str] | None,
               manifest: dict[str, Any]) -> RunSummary:
        """STAGING -> COMMITTING -> COMMITTED (see bonito_ray.commit); returns the dataset's summary."""
        self.lease.check()
        if self.state is not State.STAGING:
            raise RuntimeError(f"output {self.uri}: cannot commit in state {self.state.value}")
        return commit.commit(self.fs, self.root, self.uri, stale_sources=stale_sources, ledger_entries=ledger_entries,
                             manifest=manifest)

    def release(self) -> None:
        """Give the output up (idempotent); a folder this run created and left empty is removed."""
        self._release()


def _remove_empty_folders(fs: pafs.FileSystem, root: str, deleted: list[str]) -> None:
    """Remove the folders that held ``deleted`` files and are empty now, deepest first (object stores have none)."""
    folders = {relative.rsplit("/", i)[0] for relative in deleted for i in range(1, relative.count("/") + 1)}
    for folder in sorted(folders, key=lambda f: -f.count("/")):
        path = join(root, folder)
        if not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
            if fs.get_file_info(path).type == pafs.FileType.Directory:
                fs.delete_dir(path)


def _give_up(lease: Lease, fs: pafs.FileSystem, root: str, created: bool) -> None:
    lease.release()
    if created and isinstance(fs, pafs.LocalFileSystem):
        try:
            os.rmdir(root)
        except OSError:
            pass  # not empty: it holds this run's work


def _differences(before: dict[str, Any], now: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    return sorted(k for k in before.keys() | now.keys() if k not in ignore and before.get(k) != now.get(k))
