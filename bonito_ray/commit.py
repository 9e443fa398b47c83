"""The staging and commit protocol, and resume.

A run first records what it does in ``OUTPUT/.staging/_run.json``, then writes every file under
``OUTPUT/.staging/`` (hidden from dataset readers), each file whole or not at all. A run killed
then leaves complete files behind; started again with the same configuration, it skips the
examples those files already hold and generates only the rest. A run whose configuration or
input differs from the unfinished one is refused rather than mixed in (unless it staged no
example yet: then nothing is lost by starting over).

When the whole pipeline has finished, ``commit`` writes the journal ``.staging/_commit.json``
(the files to move, the input files whose rows to replace or remove, the ledger entries, what the
manifest says) and then rolls it forward, each step idempotent:

1. delete a previous ``_SUCCESS`` (an incremental dataset growing: while files move, it is not complete);
2. drop the rows of stale sources (changed or deleted input files) from the committed files that
   are not being moved in;
3. move each staged file into place (a file already moved is skipped);
4. add to the ledger (incremental runs);
5. write ``_manifest.json`` from the committed files (naming every one of them: what is bonito-ray's at
   the output is decided from it, see ``bonito_ray.ownership``), then the dataset card (``bonito_ray.card``),
   then ``_SUCCESS``;
6. delete the staging dir, journal and run record last.

A run killed at any instant after the journal is written is finished by the next run
(``roll_forward``, before any cluster work), never started afresh. The run record stays until
``_SUCCESS`` is written, so a kill before the journal resumes instead.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import pyarrow.dataset as pds
import pyarrow.fs as pafs

from bonito_ray import card, job_kind, ledger, ownership
from bonito_ray.errors import UserError
from bonito_ray.report import RunSummary, read_manifest, summarize, write_manifest
from bonito_ray.schema import (COMMIT_FILE, EXAMPLE_REJECT_DIRS, MANIFEST_FILE, PROGRESS_FILE, RUN_FILE, STAGING_DIR,
                               SUCCESS_FILE, TEMPORARY_PREFIX, is_accepted_file, is_data_file)
from bonito_ray.storage import join, list_files, write_bytes

logger = logging.getLogger(__name__)

# Tests kill the process at a named step of the protocol (see tests/test_output_lifecycle.py).
CRASH_ENV = "BONITO_RAY_CRASH_AT"
CRASH_EXIT_CODE = 137


class ResumeMismatchError(UserError, ValueError):
    """The output holds an unfinished run that was asked to do something else."""


def is_complete(fs: pafs.FileSystem, root: str) -> bool:
    """Whether ``_SUCCESS`` is at ``root`` beside a manifest of ours (Spark and Hadoop leave a ``_SUCCESS`` too)."""
    return fs.get_file_info(join(root, SUCCESS_FILE)).type == pafs.FileType.File \
        and ownership.manifest_of(fs, root) is not None


def start_or_resume(fs: pafs.FileSystem, root: str, identity: dict[str, Any]) -> bool:
    """Record what this run does; returns True when it resumes an unfinished run of the same job."""
    run_file = join(root, STAGING_DIR, RUN_FILE)
    if fs.get_file_info(run_file).type == pafs.FileType.File:
        with fs.open_input_stream(run_file) as f:
            previous = json.loads(f.read())
        if previous == identity:
            return True
        changed = sorted(k for k in identity.keys() | previous.keys() if identity.get(k) != previous.get(k))
        if staged_example_files(fs, root) or _staged_work(fs, root):
            raise ResumeMismatchError(
                f"{root} holds an unfinished run with a different {', '.join(changed)}; "
                "run it again as it was to resume it, or pass --overwrite to discard it")
        logger.info("%s: an unfinished run with a different %s staged no examples; starting over",
                    root, ", ".join(changed))
    write_bytes(fs, run_file, json.dumps(identity, sort_keys=True).encode("utf-8"))
    return False


def _staged_work(fs: pafs.FileSystem, root: str) -> list[str]:
    """The staged files a job type keeps as a run's work though they are not example rows (``job_kind``), whichever
    job staged them: the run now starting may be another one."""
    staging = join(root, STAGING_DIR)
    return [f for d in job_kind.staged_work() for f in list_files(fs, join(staging, d)) if is_data_file(f)]


def staged_example_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """The Parquet files of generated rows (accepted or rejected) in the staging dir."""
    return _example_files(fs, join(root, STAGING_DIR))


def committed_example_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """The Parquet files of generated rows (accepted or rejected) already in place."""
    return _example_files(fs, root)


def example_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """The Parquet files holding generated rows (accepted or rejected), staged or already moved."""
    return staged_example_files(fs, root) + committed_example_files(fs, root)


def _example_files(fs: pafs.FileSystem, base: str) -> list[str]:
    """Whole files of example rows under ``base``: accepted ones and example rejects; never a file still
    being written (``.tmp-*``: a live or killed attempt's)."""
    return [f for f in list_files(fs, base) if is_data_file(f)
            and (is_accepted_file(f[len(base) + 1 :])
                 or any(f[len(base) + 1 :].startswith(d + "/") for d in EXAMPLE_REJECT_DIRS))]


def done_ids(fs: pafs.FileSystem, root: str, stale_sources: list[str] = ()) -> np.ndarray:
    """Sorted ids (16-byte keys) of the examples already written by earlier attempts.

    Committed rows from ``stale_sources`` (inputs changed since they were processed) do not count:
    they are replaced at commit. Staged rows always count, whatever their source: an attempt of
    this very run made them from the current input.
    """
    staged = _ids(fs, staged_example_files(fs, root), ())
    committed = _ids(fs, committed_example_files(fs, root), stale_sources)
    return np.unique(np.concatenate([staged, committed]))


def _ids(fs: pafs.FileSystem, files: list[str], stale_sources) -> np.ndarray:
    if not files:
        return np.empty(0, dtype="S16")
    table = pds.dataset(files, filesystem=fs, format="parquet").to_table(columns=["id", "source"])
    stale = set(stale_sources)
    ids = [i for i, source in zip(table["id"].to_pylist(), table["source"].to_pylist()) if source not in stale]
    return np.array([bytes.fromhex(i) for i in ids], dtype="S16")


def commit(fs: pafs.FileSystem, root: str, output_uri: str, *, stale_sources: list[str], ledger_entries: dict[str, str] | None,
           manifest: dict[str, Any]) -> RunSummary:
    """Write the journal of this commit, then roll it forward; returns the committed dataset's summary.

    ``ledger_entries``: input URI -> signature to record (None: not an incremental run).
    ``manifest``: ``config``, ``identity``, ``examples_per_passage``, ``run`` (RunSummary fields
    of this run: resumed, skipped_done, wall_seconds, startup_seconds), ``run_id`` and ``command`` (for the card).
    """
    _crash_point("before-journal")
    staging = join(root, STAGING_DIR)
    moves = [path[len(staging) + 1 :] for path in list_files(fs, staging) if _is_staged_data(path[len(staging) + 1 :])]
    journal = {"moves": moves, "stale_sources": sorted(stale_sources), "ledger": ledger_entries,
               "manifest": manifest}
    write_bytes(fs, join(staging, COMMIT_FILE), json.dumps(journal, sort_keys=True).encode("utf-8"))
    _crash_point("journal")
    return roll_forward(fs, root, output_uri)


def has_journal(fs: pafs.FileSystem, root: str) -> bool:
    """Whether a commit is under way (or was interrupted) at ``root``."""
    return fs.get_file_info(join(root, STAGING_DIR, COMMIT_FILE)).type == pafs.FileType.File


def roll_forward(fs: pafs.FileSystem, root: str, output_uri: str) -> RunSummary:
    """Finish the commit whose journal is in the staging dir (see the module docstring)."""
    staging = join(root, STAGING_DIR)
    with fs.open_input_stream(join(staging, COMMIT_FILE)) as f:
        journal = json.loads(f.read())
    if is_complete(fs, root):
        fs.delete_file(join(root, SUCCESS_FILE))
    _crash_point("success-removed")
    moving = {join(root, relative) for relative in journal["moves"]}
    ledger.drop_sources(fs, root, journal["stale_sources"], keep=moving)
    _crash_point("stale-dropped")
    for number, relative in enumerate(journal["moves"], 1):
        _move(fs, join(staging, relative), join(root, relative))
        _crash_point(f"move-{number}")
    _crash_point("moved")
    if journal["ledger"] is not None:
        ledger.record(fs, root, journal["ledger"], removed=journal["stale_sources"])
    _crash_point("ledger")
    manifest = journal["manifest"]
    summary = summarize(fs, root, output=output_uri,
                        examples_per_passage=manifest["examples_per_passage"], **manifest["run"])
    written = write_manifest(fs, root, summary, manifest["config"], manifest["identity"],
                             runs=_runs(fs, root, manifest), command=manifest.get("command"),
                             files=ownership.committed_files(fs, root))
    _crash_point("manifest")
    card.write_card(fs, root, written)
    _crash_point("card")
    write_bytes(fs, join(root, SUCCESS_FILE), b"")
    _crash_point("success")
    fs.delete_dir(staging)
    return summary


def _runs(fs: pafs.FileSystem, root: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs that made the dataset: the previous manifest's (an incremental dataset's earlier runs) and
    this one, once (a commit rolled forward after its manifest was written finds itself there already)."""
    runs = []
    if fs.get_file_info(join(root, MANIFEST_FILE)).type == pafs.FileType.File:
        runs = read_manifest(fs, root).get("runs") or []
    this = {"run_id": manifest.get("run_id"), "resumed": manifest["run"]["resumed"],
            "wall_seconds": manifest["run"]["wall_seconds"],
            "startup_seconds": manifest["run"].get("startup_seconds", 0.0)}  # journals from before it: none
    return [r for r in runs if r.get("run_id") != this["run_id"]] + [this]


def _is_staged_data(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return relative not in (RUN_FILE, COMMIT_FILE, PROGRESS_FILE) and not name.startswith(TEMPORARY_PREFIX)


def _move(fs: pafs.FileSystem, source: str, target: str) -> None:
    """Move one staged file into place; one already moved (by a killed attempt) is left as it is."""
    if fs.get_file_info(source).type != pafs.FileType.File:
        if fs.get_file_info(target).type != pafs.FileType.File:
            raise FileNotFoundError(f"commit journal names {source}, which is neither staged nor in place")
        return
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    fs.move(source, target)


def _crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        logging.shutdown()
        os._exit(CRASH_EXIT_CODE)
