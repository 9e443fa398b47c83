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

**Where, and what it costs.** After the pipeline has written every staged file and before commit
(``dedup_staged``): one Ray task per task type (duplicates are looked for within a type), so the
pass is as parallel as the job has task types. Each reads its type's staged accepted rows, and
for an incremental run the committed ones (rows of changed or deleted input files aside),
decides, then for each staged file that holds duplicates writes their rejects, then rewrites the
file without them (each write whole or not at all). CPU: about 0.3 ms per task on one core (three
signatures; a passage's is computed once per type). Memory, measured with
``jobs/benchmark_pipeline.py``: 1.6 GB peak in the worker of one type for 100,000 tasks, about 16 KB
per task (the rows' text as Python strings, datasketch's band keys and tables, the signatures), so
roughly 16 GB per million tasks of one type, in one worker; a 1M-passage run was stopped at 6.8 GB
after five minutes in this pass. Until the pass is partitioned by LSH band with a keyed shuffle (Ray
Data ``groupby``), give jobs of more than a few hundred thousand tasks of one type ``--no-task-dedup``.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from bonito_ray.prompt import CONTEXT_PLACEHOLDER
from bonito_ray.schema import (DUPLICATE_TASK, PARQUET_SUFFIX, REJECT_SCHEMA, REJECTS_SUFFIX, STAGING_DIR,
                               TASK_DEDUP_REJECTS_DIR, accepted_dir, conform, is_accepted_file)
from bonito_ray.storage import join, list_files, resolve_filesystem, write_parquet

NEAR = 0.8  # estimated Jaccard similarity, per part, from which two tasks are near duplicates
BANDS, ROWS = 20, 3  # LSH: 20 bands of 3 values per part; P(candidate) at J=0.8: 0.94, at J=0.5: 0.04
NUM_PERM = BANDS * ROWS  # per part
SEED = 1
COLUMNS = ["id", "input", "output", "context"]


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


def banded(signatures: np.ndarray) -> LeanMinHash:
    """One MinHash whose every band of 3*ROWS values holds ROWS values of each part (the AND of the module docstring)."""
    from datasketch import LeanMinHash

    values = signatures.reshape(3, BANDS, ROWS).transpose(1, 0, 2).reshape(-1)
    return LeanMinHash(seed=SEED, hashvalues=values, scheme="affine32")


def find_duplicates(existing: list[dict], new: list[dict]) -> list[Duplicate]:
    """The ``new`` tasks (rows with COLUMNS) that duplicate a task kept before them (module docstring)."""
    from datasketch import MinHashLSH

    signer = Signer()
    lsh = MinHashLSH(threshold=NEAR, num_perm=3 * NUM_PERM, params=(BANDS, 3 * ROWS))
    exact: dict[bytes, str] = {}
    kept: dict[str, np.ndarray] = {}
    found = []
    ordered = [(False, r) for r in sorted(existing, key=lambda r: r["id"])] + \
              [(True, r) for r in sorted(new, key=lambda r: r["id"])]
    for checked, row in ordered:
        parts = task_parts(row["input"] or "", row["output"] or "", row["context"] or "")
        key = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16).digest()
        if checked and key in exact:
            found.append(Duplicate(row["id"], exact[key], f"same task as example {exact[key]}"))
            continue
        signatures = signer.parts(parts)
        if checked:
            match = _nearest(signatures, lsh.query(banded(signatures)), kept)
            if match is not None:
                found.append(Duplicate(row["id"], match[0], f"near-duplicate of example {match[0]} (estimated "
                                       "Jaccard passage {:.2f}, input {:.2f}, output {:.2f})".format(*match[1])))
                continue
        if key not in exact:
            exact[key] = row["id"]
            kept[row["id"]] = signatures
            lsh.insert(row["id"], banded(signatures), check_duplication=False)
    return found


def _nearest(signatures: np.ndarray, candidates: list[str], kept: dict[str, np.ndarray]):
    """(smallest id, similarities) among the candidates whose three parts are all at least NEAR alike."""
    matches = []
    for candidate in candidates:
        similar = (kept[candidate] == signatures).mean(axis=1)
        if (similar >= NEAR).all():
            matches.append((candidate, tuple(similar.tolist())))
    return min(matches) if matches else None


def dedup_task_type(output_uri: str, s3_endpoint: str | None, task_type: str, stale_sources: list[str]) -> int:
    """Drop one task type's duplicate staged tasks (see the module docstring); returns how many."""
    fs, root = resolve_filesystem(output_uri, s3_endpoint)
    staging = join(root, STAGING_DIR)
    staged = _accepted_files(fs, staging, task_type)
    committed = _accepted_files(fs, root, task_type)
    new = _rows(fs, staged, COLUMNS)
    existing = [r for r in _rows(fs, committed, COLUMNS + ["source"]) if r["source"] not in set(stale_sources)]
    duplicates = {d.id: d for d in find_duplicates(existing, new)}
    if not duplicates:
        return 0
    for path in staged:
        table = pq.read_table(path, filesystem=fs)
        dropped = pc.is_in(table["id"], value_set=pa.array(list(duplicates)))
        if not pc.any(dropped).as_py():
            continue
        rejects = table.filter(dropped)
        details = [duplicates[i].detail for i in rejects["id"].to_pylist()]
        rejects = rejects.append_column("reason", pa.array([DUPLICATE_TASK] * rejects.num_rows, pa.string())) \
                         .append_column("detail", pa.array(details, pa.string()))
        stem = path.rsplit("/", 1)[-1].removesuffix(PARQUET_SUFFIX)
        write_parquet(fs, join(staging, TASK_DEDUP_REJECTS_DIR, f"rejects-{task_type}-{stem}{REJECTS_SUFFIX}"),
                      conform(rejects, REJECT_SCHEMA))
        kept = table.filter(pc.invert(dropped))
        if kept.num_rows:
            write_parquet(fs, path, kept)
        else:
            fs.delete_file(path)
    return len(duplicates)


def dedup_staged(output_uri: str, s3_endpoint: str | None, task_types: list[str], stale_sources: list[str]) -> int:
    """Run ``dedup_task_type`` for every task type, one Ray task each, on the connected cluster."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=3)(dedup_task_type)
    return sum(ray.get([task.remote(output_uri, s3_endpoint, t, stale_sources) for t in task_types]))


def _accepted_files(fs, root: str, task_type: str) -> list[str]:
    """The files of ``task_type``'s accepted examples under ``root`` (an output or its staging dir)."""
    return [f for f in list_files(fs, join(root, accepted_dir(task_type))) if is_accepted_file(f[len(root) + 1 :])]


def _rows(fs, files: list[str], columns: list[str]) -> list[dict]:
    if not files:
        return []
    return pds.dataset(files, filesystem=fs, format="parquet").to_table(columns=columns).to_pylist()
