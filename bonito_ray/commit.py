"""The commit protocol and resume.

A run writes every file under ``OUTPUT/.staging/`` (hidden from dataset readers), each file
whole or not at all. When the whole pipeline has finished, ``commit`` moves the files into place,
then writes ``_manifest.json`` and last ``_SUCCESS``. A run killed at any point leaves complete
files behind; started again with the same configuration, it skips the examples those files
already hold and generates only the rest. A run whose configuration or input differs from the
unfinished one is refused rather than mixed in.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow.dataset as pds
import pyarrow.fs as pafs

from bonito_ray.schema import GENERATION_REJECTS_DIR, RUN_FILE, STAGING_DIR, SUCCESS_FILE
from bonito_ray.storage import join, list_files, write_bytes

logger = logging.getLogger(__name__)


class ResumeMismatchError(ValueError):
    """The output holds an unfinished run that was asked to do something else."""


def is_complete(fs: pafs.FileSystem, root: str) -> bool:
    """Whether a committed dataset is at ``root``."""
    return fs.get_file_info(join(root, SUCCESS_FILE)).type == pafs.FileType.File


def start_or_resume(fs: pafs.FileSystem, root: str, identity: dict[str, Any]) -> bool:
    """Record what this run does; returns True when it resumes an unfinished run of the same job."""
    run_file = join(root, STAGING_DIR, RUN_FILE)
    if fs.get_file_info(run_file).type == pafs.FileType.File:
        with fs.open_input_stream(run_file) as f:
            previous = json.loads(f.read())
        if previous != identity:
            changed = sorted(k for k in identity.keys() | previous.keys() if identity.get(k) != previous.get(k))
            raise ResumeMismatchError(
                f"{root} holds an unfinished run with a different {', '.join(changed)}; "
                "run it again as it was to resume it, or pass --overwrite to discard it")
        return True
    write_bytes(fs, run_file, json.dumps(identity, sort_keys=True).encode("utf-8"))
    return False


def example_files(fs: pafs.FileSystem, root: str) -> list[str]:
    """The Parquet files holding generated rows (accepted or rejected), staged or already moved."""
    files = []
    for base in (join(root, STAGING_DIR), root):
        files += [f for f in list_files(fs, base) if f.endswith(".parquet")
                  and (f[len(base) + 1 :].startswith("task_type=")
                       or f[len(base) + 1 :].startswith(GENERATION_REJECTS_DIR + "/"))]
    return files


def done_ids(fs: pafs.FileSystem, root: str, stale_sources: list[str] = ()) -> np.ndarray:
    """Sorted ids (16-byte keys) of the examples already written by earlier attempts.

    Rows from ``stale_sources`` (inputs that changed since they were processed) do not count.
    """
    files = example_files(fs, root)
    if not files:
        return np.empty(0, dtype="S16")
    table = pds.dataset(files, filesystem=fs, format="parquet").to_table(columns=["id", "source"])
    ids = [i for i, source in zip(table["id"].to_pylist(), table["source"].to_pylist()) if source not in stale_sources]
    return np.unique(np.array([bytes.fromhex(i) for i in ids], dtype="S16"))


def commit(fs: pafs.FileSystem, root: str) -> None:
    """Move every staged file into place (the run file aside), then drop the staging dir.

    A previous ``_SUCCESS`` (an incremental dataset growing) is removed first: while files move,
    the dataset is not complete.
    """
    if is_complete(fs, root):
        fs.delete_file(join(root, SUCCESS_FILE))
    staging = join(root, STAGING_DIR)
    for path in list_files(fs, staging):
        relative = path[len(staging) + 1 :]
        if relative == RUN_FILE or relative.rsplit("/", 1)[-1].startswith(".tmp-"):
            continue
        target = join(root, relative)
        if isinstance(fs, pafs.LocalFileSystem):
            fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        fs.move(path, target)
    fs.delete_dir(staging)
