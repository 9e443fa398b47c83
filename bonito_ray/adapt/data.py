"""Reading the accepted examples of a generated dataset, and the train/validation split.

Only ``<task type>/train-*.parquet`` files directly under the dataset root are read
(``bonito_ray.schema``; also the ``task_type=<t>/`` folders of datasets from earlier versions): rejects, the manifest, an unfinished run's ``.staging/`` copy and any
stray file beside them never leak into training or export.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs

from bonito_ray.adapt.errors import DatasetError
from bonito_ray.adapt.fsio import read_text
from bonito_ray.schema import MANIFEST_FILE, SELF_GUIDE_TASK, SUCCESS_FILE, is_accepted_file, is_legacy_accepted_file
from bonito_ray.self_guide.spec import MANIFEST_KEY, TaskSpec, spec_from_manifest
from bonito_ray.storage import join, list_files, resolve_filesystem

logger = logging.getLogger(__name__)

# Columns every consumer here needs; all are in the files (`task_type` too: the folders are not hive partitions).
EXAMPLE_COLUMNS = ("id", "task_type", "input", "output")


def accepted_files(uri: str) -> tuple[pafs.FileSystem, str, list[str]]:
    """The filesystem, root path and sorted accepted Parquet files of the dataset at ``uri``."""
    fs, root = resolve_filesystem(uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise DatasetError(f"no generated dataset at {uri}: not a directory")
    files = list_files(fs, root)
    if files and join(root, SUCCESS_FILE) not in files:
        logger.warning("%s has no %s marker: its generation may be unfinished", uri, SUCCESS_FILE)
    return fs, root, [f for f in files if _is_accepted(f[len(root):].lstrip("/"))]


def _is_accepted(relative: str) -> bool:
    return is_accepted_file(relative) or is_legacy_accepted_file(relative)


def _open(uri: str, task_types: list[str] | None) -> tuple[pds.Dataset, pc.Expression | None]:
    """The accepted files of ``uri`` as a dataset and the row filter; raises :class:`DatasetError` naming ``uri``
    when there is no accepted file, no (matching) row, or the files lack a needed column."""
    fs, root, files = accepted_files(uri)
    if not files:
        raise DatasetError(f"{uri} holds no accepted examples: no <task type>/train-*.parquet files "
                           "(is it the output of `bonito-ray generate`?)")
    dataset = pds.dataset(files, filesystem=fs, format="parquet")
    missing = [c for c in EXAMPLE_COLUMNS if c not in dataset.schema.names]
    if missing:
        raise DatasetError(f"{uri} is not a generated dataset: its accepted files lack the column(s) "
                           f"{', '.join(missing)} (found: {', '.join(dataset.schema.names)})")
    row_filter = pc.field("task_type").isin(task_types) if task_types else None
    if dataset.count_rows(filter=row_filter) == 0:
        which = f" of task type(s) {', '.join(task_types)}" if task_types else ""
        raise DatasetError(f"{uri} holds no accepted examples{which}")
    return dataset, row_filter


def _checked(uri: str, batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """``batch`` as a table of string columns; raises :class:`DatasetError` on a null id, input or output."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    nulls = sum(table[c].null_count for c in ("id", "input", "output"))
    if nulls:
        raise DatasetError(f"{uri}: {nulls} null id/input/output value(s) in its accepted files; "
                           "the dataset is damaged")
    return table.cast(pa.schema([(c, pa.string()) for c in EXAMPLE_COLUMNS]))


def load_examples(uri: str, task_types: list[str] | None = None) -> pa.Table:
    """All accepted examples under ``uri`` (columns ``EXAMPLE_COLUMNS``), sorted by id.

    ``task_types`` keeps only those (short) task types.
    """
    dataset, row_filter = _open(uri, task_types)
    table = _checked(uri, dataset.to_table(columns=list(EXAMPLE_COLUMNS), filter=row_filter))
    return table.take(pc.sort_indices(table, [("id", "ascending")]))


def iter_examples(uri: str, task_types: list[str] | None = None, batch_rows: int = 10_000) -> Iterator[dict]:
    """The accepted examples under ``uri`` one row dict at a time, in file order, without loading them all."""
    dataset, row_filter = _open(uri, task_types)
    for batch in dataset.to_batches(columns=list(EXAMPLE_COLUMNS), filter=row_filter, batch_size=batch_rows):
        yield from _checked(uri, batch).to_pylist()


def example_task_types(uri: str, task_types: list[str] | None = None) -> pa.Table:
    """The ``task_type`` column of the accepted examples under ``uri`` (of ``task_types`` only, if given): what
    :func:`self_guide_task` needs, read without the rest of the rows."""
    dataset, row_filter = _open(uri, task_types)
    return dataset.to_table(columns=["task_type"], filter=row_filter)


def self_guide_task(uri: str, table: pa.Table) -> TaskSpec | None:
    """The SELF-GUIDE task spec that ``table``'s examples (read from ``uri``) were made for, from the dataset's
    manifest; None for Bonito's examples. Raises :class:`DatasetError` for a mix of both (their prompts differ:
    ``adapt.prompts``) or SELF-GUIDE examples without a spec in the manifest."""
    kinds = set(table["task_type"].to_pylist())
    if SELF_GUIDE_TASK not in kinds:
        return None
    if kinds != {SELF_GUIDE_TASK}:
        raise DatasetError(f"{uri} holds both SELF-GUIDE ({SELF_GUIDE_TASK}) and Bonito examples; they are prompted "
                           f"differently: pick one with --task-types")
    where = join(uri, MANIFEST_FILE)
    try:
        task = spec_from_manifest(json.loads(read_text(where) or "{}"), where)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{where} is not JSON ({err.msg})") from None
    if task is None:
        raise DatasetError(f"{uri} holds SELF-GUIDE examples, but its {MANIFEST_FILE} holds no task spec (config."
                           f"{MANIFEST_KEY}, written by `bonito-ray self-guide`): their instruction is unknown")
    return task


def in_validation(example_id: str, fraction: float) -> bool:
    """Whether ``example_id`` falls in the validation split: a hash of the id, so stable across runs."""
    bucket = int.from_bytes(hashlib.sha256(example_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return bucket < fraction


def split(table: pa.Table, validation_fraction: float) -> tuple[pa.Table, pa.Table]:
    """(train, validation) rows of ``table``, split deterministically by example id."""
    mask = pa.array([in_validation(i, validation_fraction) for i in table["id"].to_pylist()], pa.bool_())
    return table.filter(pc.invert(mask)), table.filter(mask)
