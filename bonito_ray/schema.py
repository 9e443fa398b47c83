"""Row schemas and the on-storage layout of a synthetic dataset.

Layout under the output prefix (accepted files are named ``train-*`` so that
``datasets.load_dataset("parquet", data_dir=OUTPUT)`` picks them and nothing else, and
``pyarrow.dataset``, pandas, DuckDB and Polars skip every ``_``- and ``.``-prefixed entry)::

    <short name>/train-<write id>-<task>.parquet              accepted examples, one folder per task type
    _rejects/stage=corpus/rejects-<hash>.pq                   unreadable corpus records
    _rejects/stage=clean/rejects-<hash>.pq                    passages filtered out (length, duplicate)
    _rejects/stage=generation/rejects-<write id>-<task>.pq    generations that did not parse
    _rejects/stage=validation/rejects-<write id>-<task>.pq    parsed tasks a validator rejected
    _rejects/stage=task_dedup/rejects-<task>-<write id>-<task>.pq  duplicate generated tasks (no "train" in
                                                              the name: `datasets` would read it as train)
    self_guide/train-*.parquet                                SELF-GUIDE's accepted examples (bonito_ray.self_guide)
    _self_guide/inputs-round-<r>.pq                           SELF-GUIDE: the generated inputs kept, per round
    _rejects/stage=self_guide_{input,sample,vote}/*.pq        SELF-GUIDE: inputs, annotation samples, votes dropped

Only accepted examples end in ``.parquet``: DuckDB and Polars read ``OUTPUT/**/*.parquet`` without
skipping ``_rejects/``, so reject files (Parquet too) are named ``*.pq`` to stay out of that glob.
    _manifest.json, _SUCCESS                                  written last, when all else is
    _card/README.md, _card/*.png                              the dataset card and its plots (bonito_ray.card)
    .huggingface.yaml                                         the card's configs, for datasets.load_dataset(OUTPUT, name)
    _ledger.json                                              --incremental: the input files covered
    _lease.json                                               while a run holds the output (see bonito_ray.lease)

While a job runs, all of it is written under ``.staging/`` with the same layout and moved into
place when every file is written (see ``bonito_ray.commit``). What may be done to the output and
when is decided in ``bonito_ray.output``.
"""

from __future__ import annotations

import fnmatch
import hashlib

import pyarrow as pa

from bonito_ray.tasks import TASK_TYPES

# A document as the corpus reader yields it.
DOCUMENT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("position", pa.int64()),  # 1-based line (JSONL), row (Parquet, Arrow) or 1 (text file) in `source`
        ("context", pa.string()),
    ]
)

# A passage: a normalised chunk of a document, the unit a task is generated from.
PASSAGE_SCHEMA = pa.schema(
    [
        ("passage_id", pa.string()),
        ("source", pa.string()),
        ("position", pa.int64()),
        ("chunk", pa.int64()),  # 0-based chunk of the document
        ("context", pa.string()),
    ]
)

# Where a generated row comes from, first in every row of a job: its id, its passage and the passage's
# place in the corpus, the task type and the sample.
LOCATION_FIELDS = [
    pa.field("id", pa.string()),
    pa.field("passage_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("position", pa.int64()),
    pa.field("chunk", pa.int64()),
    pa.field("task_type", pa.string()),
    pa.field("sample_index", pa.int64()),
]
TOKEN_FIELDS = [pa.field("num_input_tokens", pa.int64()), pa.field("num_generated_tokens", pa.int64())]

# An accepted synthetic example, as written.
ACCEPTED_SCHEMA = pa.schema(
    LOCATION_FIELDS
    + [pa.field("input", pa.string()), pa.field("output", pa.string()), pa.field("context", pa.string()),
       pa.field("model", pa.string())]
    + TOKEN_FIELDS
)

# A rejected row from any stage; fields that do not apply to a stage are null.
REJECT_SCHEMA = pa.schema(
    LOCATION_FIELDS
    + [pa.field("reason", pa.string()), pa.field("detail", pa.string()),
       pa.field("raw", pa.string()),  # the unreadable corpus record, or the generated text
       pa.field("context", pa.string()), pa.field("model", pa.string())]
    + TOKEN_FIELDS
)

# Accepted examples: OUTPUT/<short task name>/train-*.parquet. The folder is a plain name, not a hive
# partition (`task_type=ynqa`): the files hold a `task_type` string column, and pandas and
# pyarrow.parquet.read_table read a hive partition as a dictionary column of the same name and refuse
# to merge the two. Plain folders leave `task_type` to the files, the same for every reader.
ACCEPTED_FILE_PREFIX = "train-"
PARQUET_SUFFIX = ".parquet"  # accepted examples
REJECTS_SUFFIX = ".pq"  # reject files: Parquet, outside the `OUTPUT/**/*.parquet` glob of the accepted examples
DATA_SUFFIXES = (PARQUET_SUFFIX, REJECTS_SUFFIX)
LEGACY_ACCEPTED_DIRS = "task_type=*"  # the hive-style folders of earlier versions: --overwrite still clears them
REJECTS_DIR = "_rejects"
# The stages that set rows aside, each in its folder (``rejects_dir``); bonito_ray.rejects names their reasons.
CORPUS_STAGE = "corpus"  # input records and files that could not be read
CLEAN_STAGE = "clean"  # passages filtered out or duplicate
CHUNK_STAGE = "chunk"  # not a drop: a short last chunk merged into the chunk before it (its text is kept)
GENERATION_STAGE = "generation"  # generations that did not parse, requests the engine refused
VALIDATION_STAGE = "validation"  # parsed tasks a validator rejected (bonito_ray.validators)
TASK_DEDUP_STAGE = "task_dedup"  # duplicate generated tasks (bonito_ray.task_dedup)
SELF_GUIDE_INPUT_STAGE = "self_guide_input"  # SELF-GUIDE: generated inputs filtered out
SELF_GUIDE_SAMPLE_STAGE = "self_guide_sample"  # SELF-GUIDE: annotation samples filtered out
SELF_GUIDE_VOTE_STAGE = "self_guide_vote"  # SELF-GUIDE: inputs whose vote kept no answer, or balanced out
SELF_GUIDE_STAGES = (SELF_GUIDE_INPUT_STAGE, SELF_GUIDE_SAMPLE_STAGE, SELF_GUIDE_VOTE_STAGE)


# The stages whose rows are drops (a merged chunk is counted, its text kept).
DROP_STAGES = (CORPUS_STAGE, CLEAN_STAGE, GENERATION_STAGE, VALIDATION_STAGE, TASK_DEDUP_STAGE, *SELF_GUIDE_STAGES)


def rejects_dir(stage: str) -> str:
    """The folder (relative to the output root) of ``stage``'s rejects."""
    return f"{REJECTS_DIR}/stage={stage}"


GENERATION_REJECTS_DIR = rejects_dir(GENERATION_STAGE)
VALIDATION_REJECTS_DIR = rejects_dir(VALIDATION_STAGE)
TASK_DEDUP_REJECTS_DIR = rejects_dir(TASK_DEDUP_STAGE)
SELF_GUIDE_REJECTS_DIRS = tuple(rejects_dir(stage) for stage in SELF_GUIDE_STAGES)
# Every folder of generated rows that did not become examples: resume counts them as done.
EXAMPLE_REJECT_DIRS = (GENERATION_REJECTS_DIR, VALIDATION_REJECTS_DIR, TASK_DEDUP_REJECTS_DIR)
# SELF-GUIDE (bonito_ray.self_guide): one task, synthesised by the student model from its instruction and
# demonstrations. Its accepted examples are one more task folder (stages above: self_guide_*).
SELF_GUIDE_TASK = "self_guide"
SELF_GUIDE_DIR = "_self_guide"  # the kept generated inputs, one file per round (what a resumed run skips)
# Every folder of accepted examples: Bonito's task types and SELF-GUIDE's task.
ACCEPTED_DIRS = (*TASK_TYPES, SELF_GUIDE_TASK)
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"
# Everything is written here first and moved into place at commit. The leading dot hides it
# from pyarrow.dataset and from datasets.load_dataset.
STAGING_DIR = ".staging"
RUN_FILE = "_run.json"  # in the staging dir: what the unfinished run was asked to do
COMMIT_FILE = "_commit.json"  # in the staging dir: the commit under way (its journal), rolled forward on rerun
PROGRESS_FILE = "_progress.json"  # in the staging dir: live progress of the running job (bonito_ray.progress)
LEDGER_FILE = "_ledger.json"
# The dataset card (bonito_ray.card). Not README.md at the top: every directory reader of OUTPUT
# (pyarrow.dataset, pyarrow.parquet.read_table, pandas.read_parquet) reads each file not starting
# with "_" or "." as Parquet, and would fail on it.
CARD_DIR = "_card"
CARD_FILE = "README.md"
HF_YAML_FILE = ".huggingface.yaml"  # read by `datasets` beside or instead of README.md's header
LEASE_FILE = "_lease.json"
TEMPORARY_PREFIX = ".tmp-"  # a file being written (renamed into place when whole; see bonito_ray.storage)
# The names of the entries bonito-ray writes at the top of an output (glob patterns). Names only: the corpus
# reader skips such hidden entries quietly. What bonito-ray may delete is decided from its records
# (bonito_ray.ownership), never from these.
OWNED_ENTRIES = (*ACCEPTED_DIRS, SELF_GUIDE_DIR, LEGACY_ACCEPTED_DIRS, REJECTS_DIR, MANIFEST_FILE, SUCCESS_FILE, LEDGER_FILE, STAGING_DIR,
                 CARD_DIR, HF_YAML_FILE, LEASE_FILE, f"{LEASE_FILE}.*", f"{TEMPORARY_PREFIX}*")
# The output lease: a run renews it every TTL/5 seconds; one not renewed for TTL seconds is taken over.
LEASE_TTL_SECONDS = 300.0
LEASE_TTL_ENV = "BONITO_RAY_LEASE_TTL"  # seconds; overrides LEASE_TTL_SECONDS
# The TTLs a lease may have, in seconds: renewals (every TTL/5) need room for a slow store, and a killed run's
# output is not kept from the next run for more than a day.
LEASE_TTL_BOUNDS = (10.0, 86_400.0)


def accepted_dir(task_type: str) -> str:
    """The folder (relative to the output root) of ``task_type``'s accepted examples."""
    return task_type


def is_data_file(path: str) -> bool:
    """Whether ``path`` is a whole data file (accepted or rejects), not one still being written
    (``.tmp-*``, which a killed attempt may leave behind)."""
    name = path.rsplit("/", 1)[-1]
    return name.endswith(DATA_SUFFIXES) and not name.startswith(TEMPORARY_PREFIX)


def is_accepted_file(relative: str) -> bool:
    """Whether ``relative`` (a path under an output or staging root) is a file of accepted examples."""
    folder, _, name = relative.partition("/")
    return folder in ACCEPTED_DIRS and name.startswith(ACCEPTED_FILE_PREFIX) and "/" not in name \
        and name.endswith(PARQUET_SUFFIX)


def is_legacy_accepted_file(relative: str) -> bool:
    """Whether ``relative`` is a file of accepted examples in a dataset of an earlier version
    (``task_type=<t>/train-*.parquet``, hive-style folders)."""
    folder, _, name = relative.partition("/")
    return fnmatch.fnmatchcase(folder, LEGACY_ACCEPTED_DIRS) and "/" not in name \
        and name.startswith(ACCEPTED_FILE_PREFIX) and name.endswith(PARQUET_SUFFIX)


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written to a string column as UTF-8 (a lone surrogate cannot: JSON's ``\\ud800``
    escapes decode to one, and Python hands a file name's non-UTF-8 bytes on as them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def stable_id(*parts: object) -> str:
    """A 128-bit hex id derived from ``parts``: the same inputs always give the same id."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()[:32]


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """A table of ``schema`` from row dicts; missing fields become nulls."""
    return pa.Table.from_pylist([{name: row.get(name) for name in schema.names} for row in rows], schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly the columns of ``schema``: missing ones null, extra ones dropped."""
    columns = [table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)
