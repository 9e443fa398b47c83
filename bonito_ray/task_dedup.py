"""Generated-task dedup: exact and near-duplicate (input, output) pairs, within a run and across
``--incremental`` runs, dropped as ``duplicate_task`` rejects (``_rejects/stage=task_dedup/``).

**What a duplicate is.** A task is three texts: the passage it carries (when its input or output
holds the passage; else nothing), its input with the passage cut out (the question, the options,
the template) and its output, each normalised (case folded, spaces collapsed). Two tasks of one
task type are *exact* duplicates when the three are equal, *near* duplicates when each of the three
pairs has an estimated Jaccard similarity of at least ``NEAR`` over word bigrams: two questions
about one passage are not duplicates, nor is one question answered two ways, but the same
question and answer on two near-identical passages (boilerplate) are.

**How.** MinHash signatures from ``datasketch`` (seeded, with CRC32 shingle hashes: the same values
in every process) of the three parts, banded together into one ``datasketch.MinHashLSH``: each
band holds ``ROWS`` values of each part, so two tasks share a band only when all three parts do
(an AND of the three), and every candidate is verified on the three estimates.

**Deterministic whatever the processing order.** Tasks are visited in a fixed order: the tasks
already in the dataset (``--incremental``) first, then the new ones, each by id. A new task is a
duplicate when it matches a task kept before it, and the detail names the smallest such id. The
decision depends on the set of tasks and their ids only, never on which block, worker or replica
made them, so reruns, resumed runs and any batch size or replica count drop the same tasks. Across
incremental runs the task already in the dataset is kept and the new one dropped (so, like passage
dedup, an incremental dataset may keep the other one of a pair than one full run would). Running
the pass again over files it already cleaned drops nothing more: a kept task stays kept, since
what came before it has not changed; this makes a killed pass safe to repeat.

**Where.** After the pipeline has written every staged file and before commit (``dedup_staged``).
Duplicates are looked for within a task type. Three steps, each a function below:

1. *Sign* (``sign_tasks``, a Ray Data map over the staged accepted files, and for an incremental run
   the committed ones, rows of changed or deleted input files aside): each task becomes a record of
   ``RECORD_SCHEMA``, its id, exact key and three signatures in 720 bytes.
2. *Find the candidates* (``band_rows`` then ``shared_band_members``): a keyed shuffle on the LSH band
   keys (Ray Data ``groupby`` on a hash partition of the keys, as datatrove's MinHash dedup does). A task
   that shares no band with another task of its type can be neither a duplicate nor the task another
   one duplicates, so only the tasks that share one go on.
3. *Decide and drop* (``drop_type_duplicates``, one group per task type): the ordered visit above over
   the candidates, then, for each staged file that holds duplicates, their rejects are written and the
   file rewritten without them (each write whole or not at all).

A job of at most ``IN_MEMORY_TASKS`` tasks skips step 2 and decides over every task of a type in one
Ray task: the decision is the same (step 2 drops only tasks that cannot matter), without the cost of
a shuffle, which is most of a small job's dedup time.

**What it costs.** CPU: about 0.3 ms per task on one core for the three signatures (a passage's is
computed once per block), plus the shuffle of ``BANDS`` keys per task. Memory, measured with
``jobs/dev/benchmark_pipeline.py`` (docs/benchmarks.md): the signing and banding stream in blocks of
``BATCH_ROWS``, but the shuffle's aggregators hold the band keys, about 1.2 GB per million tasks (spread
over a cluster's nodes); a type's decision holds its candidates' records (about 1 KB each with the
index) in one worker. With real text few tasks are candidates; a corpus where most tasks have a near
twin makes most of them candidates. At a million tasks of one type on one 2-core machine: 301 s in all
for the job, the largest worker at 2.6-2.8 GB.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from bonito_ray.prompt import CONTEXT_PLACEHOLDER
from bonito_ray.rejects import DUPLICATE_TASK
from bonito_ray.schema import (ACCEPTED_FILE_PREFIX, PARQUET_SUFFIX, REJECT_SCHEMA, REJECTS_SUFFIX, STAGING_DIR,
                               TASK_DEDUP_REJECTS_DIR, accepted_dir, conform, is_accepted_file)
from bonito_ray.storage import join, list_files, resolve_filesystem, write_parquet

NEAR = 0.8  # estimated Jaccard similarity, per part, from which two tasks are near duplicates
BANDS, ROWS = 20, 3  # LSH: 20 bands of 3 values per part; P(candidate) at J=0.8: 0.94, at J=0.5: 0.04
NUM_PERM = BANDS * ROWS  # per part
SEED = 1
COLUMNS = ["id", "input", "output", "context"]
IN_MEMORY_TASKS = 50_000  # a job with at most this many tasks decides without the band shuffle (module docstring)
BAND_ROWS_PER_PARTITION = 2_000_000  # band keys per shuffle partition: about 120 MB of them
# Tasks per block signed or banded: a staged file's whole block (up to --rows-per-file rows) as Python
# objects took a worker to 2.4 GB at a million tasks.
BATCH_ROWS = 4096
# One task's record: datasketch's values are below 2**32, so each is kept in 4 bytes.
RECORD_SCHEMA = pa.schema([("task_type", pa.string()), ("existing", pa.bool_()), ("id", pa.string()),
                           ("key", pa.binary(16)), ("signatures", pa.binary(3 * NUM_PERM * 4))])


@dataclass(frozen=True)
class Duplicate:
    """A task to drop: the kept task it duplicates, and how."""

    id: str
    of: str
    detail: str


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def task_parts(task_input: str, output: str, context: str) -> tuple[str, str, str]:
    """(passage carried, input without it, output without it), normalised."""
    passage = (context or "").strip()
    if passage and (passage in task_input or passage in output):
        return (normalise(passage), normalise(task_input.replace(passage, CONTEXT_PLACEHOLDER)),
                normalise(output.replace(passage, CONTEXT_PLACEHOLDER)))
    return "", normalise(task_input), normalise(output)


def shingles(text: str) -> list[bytes]:
    """Word bigrams; a text of one word (or none) is its own shingle."""
    words = text.split()
    return [f"{a} {b}".encode("utf-8") for a, b in zip(words, words[1:])] or [text.encode("utf-8")]


class Signer:
    """MinHash signatures with fixed permutations; a passage's is computed once."""

    def __init__(self) -> None:
        from datasketch import MinHash  # here, not at the top: it imports scipy (~0.5 s) into every CLI start and Ray worker

        self.minhash = MinHash  # sign() runs per task: no import statement there
        self.template = MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=zlib.crc32)
        self.passages: dict[str, np.ndarray] = {}

    def sign(self, text: str) -> np.ndarray:
        minhash = self.minhash(num_perm=NUM_PERM, seed=SEED, hashfunc=zlib.crc32, scheme=self.template.scheme,
                               permutations=self.template.permutations)
        minhash.update_batch(shingles(text))
        return minhash.hashvalues.copy()

    def parts(self, parts: tuple[str, str, str]) -> np.ndarray:
        """The three signatures, shape (3, NUM_PERM)."""
        if parts[0] not in self.passages:
            self.passages[parts[0]] = self.sign(parts[0])
        return np.stack([self.passages[parts[0]], self.sign(parts[1]), self.sign(parts[2])])


# ---- step 1: sign -------------------------------------------------------------------------------------


def sign_tasks(tasks: pa.Table, existing: bool) -> pa.Table:
    """Tasks (``task_type`` and COLUMNS) -> their records (``RECORD_SCHEMA``)."""
    signer = Signer()
    keys, signatures = [], []
    for task_input, output, context in zip(*(tasks[c].to_pylist() for c in ("input", "output", "context"))):
        parts = task_parts(task_input or "", output or "", context or "")
        keys.append(hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16).digest())
        signatures.append(signer.parts(parts).astype(np.uint32).tobytes())
    return pa.Table.from_arrays([tasks["task_type"].cast(pa.string()), pa.array([existing] * tasks.num_rows),
                                 tasks["id"].cast(pa.string()), pa.array(keys, pa.binary(16)),
                                 pa.array(signatures, RECORD_SCHEMA.field("signatures").type)], schema=RECORD_SCHEMA)


def signatures_of(record: bytes) -> np.ndarray:
    return np.frombuffer(record, dtype=np.uint32).astype(np.uint64).reshape(3, NUM_PERM)


def banded_values(signatures: np.ndarray) -> np.ndarray:
    """The values reordered so that band ``b`` is ``[b * 3 * ROWS, (b + 1) * 3 * ROWS)``: ROWS values of each
    part (the AND of the module docstring)."""
    return signatures.reshape(3, BANDS, ROWS).transpose(1, 0, 2).reshape(-1)


# ---- step 2: the candidates, by a keyed shuffle on band keys ------------------------------------------


def member(existing: bool, task_id: str) -> str:
    """A task's name in the shuffle: a committed and a staged task may share an id."""
    return ("e" if existing else "n") + task_id


def band_rows(records: pa.Table, partitions: int) -> pa.Table:
    """Each record's ``BANDS`` band keys (its type, the band, the band's values, hashed), each with the
    shuffle partition its key falls in."""
    keys, members = [], []
    for task_type, existing, task_id, signatures in zip(
            *(records[c].to_pylist() for c in ("task_type", "existing", "id", "signatures"))):
        values = banded_values(signatures_of(signatures)).astype(np.uint32).reshape(BANDS, 3 * ROWS)
        for band, band_values in enumerate(values):
            keys.append(hashlib.blake2b(f"{task_type}\x1f{band}\x1f".encode() + band_values.tobytes(),
                                        digest_size=12).digest())
        members.extend([member(existing, task_id)] * BANDS)
    partition = [int.from_bytes(key[:4], "little") % partitions for key in keys]
    return pa.table({"partition": pa.array(partition, pa.int64()), "band": pa.array(keys, pa.binary(12)),
                     "member": pa.array(members, pa.string())})


def shared_band_members(group: pa.Table) -> pa.Table:
    """The members (``member``) of every band key held by more than one task, once each."""
    counts = group.group_by("band").aggregate([("member", "count")])
    shared = counts.filter(pc.greater(counts["member_count"], 1))["band"]
    members = group.filter(pc.is_in(group["band"], value_set=shared))["member"]
    return pa.table({"member": pc.unique(members)})


def only_members(records: pa.Table, members: pa.Array) -> pa.Table:
    names = pa.array([member(e, i) for e, i in zip(records["existing"].to_pylist(), records["id"].to_pylist())],
                     pa.string())
    return records.filter(pc.is_in(names, value_set=members))


# ---- step 3: decide and drop --------------------------------------------------------------------------


def decide(records: pa.Table) -> list[Duplicate]:
    """The duplicates among the records of one task type: the ordered visit of the module docstring."""
    from datasketch import LeanMinHash, MinHashLSH

    lsh = MinHashLSH(threshold=NEAR, num_perm=3 * NUM_PERM, params=(BANDS, 3 * ROWS))
    exact: dict[bytes, str] = {}
    kept: dict[str, np.ndarray] = {}
    found = []
    rows = zip(*(records[c].to_pylist() for c in ("existing", "id", "key", "signatures")))
    for existing, task_id, key, record in sorted(rows, key=lambda row: (not row[0], row[1])):
        checked = not existing
        if checked and key in exact:
            found.append(Duplicate(task_id, exact[key], f"same task as example {exact[key]}"))
            continue
        signatures = signatures_of(record)
        banded = LeanMinHash(seed=SEED, hashvalues=banded_values(signatures), scheme="affine32")
        if checked:
            match = _nearest(signatures, lsh.query(banded), kept)
            if match is not None:
                found.append(Duplicate(task_id, match[0], f"near-duplicate of example {match[0]} (estimated "
                                       "Jaccard passage {:.2f}, input {:.2f}, output {:.2f})".format(*match[1])))
                continue
        if key not in exact:
            exact[key] = task_id
            kept[task_id] = signatures
            lsh.insert(task_id, banded, check_duplication=False)
    return found


def _nearest(signatures: np.ndarray, candidates: list[str], kept: dict[str, np.ndarray]):
    """(smallest id, similarities) among the candidates whose three parts are all at least NEAR alike."""
    matches = []
    for candidate in candidates:
        similar = (kept[candidate] == signatures).mean(axis=1)
        if (similar >= NEAR).all():
            matches.append((candidate, tuple(similar.tolist())))
    return min(matches) if matches else None


def find_duplicates(existing: list[dict], new: list[dict]) -> list[Duplicate]:
    """The ``new`` tasks (rows with COLUMNS) that duplicate a task kept before them (module docstring)."""
    def signed(rows: list[dict], is_existing: bool) -> pa.Table:
        table = pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows],
                                     pa.schema([(c, pa.string()) for c in COLUMNS]))
        return sign_tasks(table.append_column("task_type", pa.array([""] * len(rows), pa.string())), is_existing)

    return decide(pa.concat_tables([signed(existing, True), signed(new, False)]))


def drop_type_duplicates(records: pa.Table, output_uri: str, s3_endpoint: str | None) -> pa.Table:
    """Decide over one task type's records, then drop the duplicates from its staged files; returns how
    many were dropped, as a one-row table (``dropped``). Safe to repeat: see the module docstring."""
    if not records.num_rows:
        return pa.table({"dropped": [0]})
    duplicates = {d.id: d for d in decide(records)}
    if duplicates:
        _drop_from_staged(output_uri, s3_endpoint, records["task_type"][0].as_py(), duplicates)
    return pa.table({"dropped": [len(duplicates)]})


def _drop_from_staged(output_uri: str, s3_endpoint: str | None, task_type: str,
                      duplicates: dict[str, Duplicate]) -> None:
    fs, root = resolve_filesystem(output_uri, s3_endpoint)
    staging = join(root, STAGING_DIR)
    for path in _accepted_files(fs, staging, task_type):
        table = pq.read_table(path, filesystem=fs)
        dropped = pc.is_in(table["id"], value_set=pa.array(list(duplicates), pa.string()))
        if not pc.any(dropped).as_py():
            continue
        rejects = table.filter(dropped)
        details = [duplicates[i].detail for i in rejects["id"].to_pylist()]
        rejects = rejects.append_column("reason", pa.array([DUPLICATE_TASK] * rejects.num_rows, pa.string())) \
                         .append_column("detail", pa.array(details, pa.string()))
        # Not "train-...": `datasets` puts any file whose name holds the word "train" in the train split.
        stem = path.rsplit("/", 1)[-1].removesuffix(PARQUET_SUFFIX).removeprefix(ACCEPTED_FILE_PREFIX)
        write_parquet(fs, join(staging, TASK_DEDUP_REJECTS_DIR, f"rejects-{task_type}-{stem}{REJECTS_SUFFIX}"),
                      conform(rejects, REJECT_SCHEMA))
        kept = table.filter(pc.invert(dropped))
        if kept.num_rows:
            write_parquet(fs, path, kept)
        else:
            fs.delete_file(path)


# ---- the pass -----------------------------------------------------------------------------------------


def dedup_staged(output_uri: str, s3_endpoint: str | None, task_types: list[str], stale_sources: list[str],
                 in_memory_tasks: int | None = None) -> int:
    """Drop the duplicate staged tasks of every type (module docstring) on the connected Ray cluster;
    returns how many were dropped. ``in_memory_tasks``: ``IN_MEMORY_TASKS`` unless given."""
    import ray

    in_memory_tasks = IN_MEMORY_TASKS if in_memory_tasks is None else in_memory_tasks
    fs, root = resolve_filesystem(output_uri, s3_endpoint)
    files = {t: (_accepted_files(fs, join(root, STAGING_DIR), t), _accepted_files(fs, root, t)) for t in task_types}
    files = {t: (staged, committed) for t, (staged, committed) in files.items() if staged}
    tasks = sum(_count_rows(fs, staged + committed) for staged, committed in files.values())
    if tasks <= in_memory_tasks:
        task = ray.remote(num_cpus=1, max_retries=3)(_dedup_type_in_memory)
        return sum(ray.get([task.remote(output_uri, s3_endpoint, staged, committed, stale_sources)
                            for staged, committed in files.values()]))
    return _dedup_by_band_shuffle(fs, output_uri, s3_endpoint, files, stale_sources, tasks)


def _dedup_type_in_memory(output_uri: str, s3_endpoint: str | None, staged: list[str], committed: list[str],
                          stale_sources: list[str]) -> int:
    fs, _ = resolve_filesystem(output_uri, s3_endpoint)
    records = [sign_tasks(_read(fs, staged), existing=False)]
    if committed:
        records.append(sign_tasks(_without_stale(_read(fs, committed, ["source"]), stale_sources), existing=True))
    return drop_type_duplicates(pa.concat_tables(records), output_uri, s3_endpoint)["dropped"][0].as_py()


def _dedup_by_band_shuffle(fs, output_uri: str, s3_endpoint: str | None, files: dict[str, tuple[list, list]],
                           stale_sources: list[str], tasks: int) -> int:
    import ray

    staged = [f for s, _ in files.values() for f in s]
    committed = [f for _, c in files.values() for f in c]
    sign = {"batch_format": "pyarrow", "batch_size": BATCH_ROWS}
    records = _read_dataset(fs, staged).map_batches(sign_tasks, **sign, fn_kwargs={"existing": False})
    if committed:
        records = records.union(
            _read_dataset(fs, committed, ["source"]).map_batches(_without_stale, batch_format="pyarrow",
                                                                 fn_kwargs={"stale_sources": stale_sources})
            .map_batches(sign_tasks, **sign, fn_kwargs={"existing": True}))
    records = records.materialize()
    partitions = max(1, math.ceil(tasks * BANDS / BAND_ROWS_PER_PARTITION))
    candidates = (records.map_batches(band_rows, batch_format="pyarrow", batch_size=BATCH_ROWS,
                                      fn_kwargs={"partitions": partitions})
                  .groupby("partition", num_partitions=partitions)
                  .map_groups(shared_band_members, batch_format="pyarrow"))
    members = pa.concat_tables([ray.get(ref) for ref in candidates.to_arrow_refs()])["member"].combine_chunks()
    if not len(members):
        return 0
    dropped = (records.map_batches(only_members, batch_format="pyarrow", fn_kwargs={"members": members})
               .groupby("task_type", num_partitions=len(files))
               .map_groups(drop_type_duplicates, batch_format="pyarrow",
                           fn_kwargs={"output_uri": output_uri, "s3_endpoint": s3_endpoint}))
    return int(sum(row["dropped"] for row in dropped.take_all()))


def _accepted_files(fs, root: str, task_type: str) -> list[str]:
    """The files of ``task_type``'s accepted examples under ``root`` (an output or its staging dir)."""
    return [f for f in list_files(fs, join(root, accepted_dir(task_type))) if is_accepted_file(f[len(root) + 1 :])]


def _count_rows(fs, files: list[str]) -> int:
    return pds.dataset(files, filesystem=fs, format="parquet").count_rows() if files else 0


def _read(fs, files: list[str], extra: list[str] = ()) -> pa.Table:
    return pds.dataset(files, filesystem=fs, format="parquet").to_table(columns=["task_type", *COLUMNS, *extra])


def _read_dataset(fs, files: list[str], extra: list[str] = ()):
    import ray

    # No partitioning: the folders are plain task names, and a staging path's ".staging" is no hive key.
    return ray.data.read_parquet(files, filesystem=fs, columns=["task_type", *COLUMNS, *extra], partitioning=None)


def _without_stale(tasks: pa.Table, stale_sources: list[str]) -> pa.Table:
    """Committed tasks less those of input files changed or deleted since (they are being replaced)."""
    if not stale_sources:
        return tasks
    return tasks.filter(pc.invert(pc.is_in(tasks["source"], value_set=pa.array(stale_sources, pa.string()))))
