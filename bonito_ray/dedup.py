"""Exact, deterministic passage deduplication across the whole corpus.

Two streaming passes over the passages: the first offers every passage's text hash and id to a
few shard actors, each keeping the smallest passage id per hash; the second keeps a passage only
if it is that smallest id. The choice does not depend on processing order, so a resumed or
repeated run keeps exactly the same passages. Each shard holds 16 bytes per distinct passage.

Shards: one per GiB of input (``shard_count``). A GiB holds a few million passages, tens of MB in
a shard; offers are only appended and sorted once, so one shard keeps up with many workers. The
number of shards does not change which passage is kept (a text always hashes to one shard).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import ray

from bonito_ray.cluster import on_driver_node
from bonito_ray.rejects import DUPLICATE, write_rejects
from bonito_ray.schema import CLEAN_STAGE

SHARD_INPUT_BYTES = 1 << 30
MAX_SHARDS = 64
_EXISTING = 0  # the owner of texts already in the dataset: smaller than any passage id prefix


@ray.remote(num_cpus=0)
class DedupShard:
    """One hash shard of the index: text hash -> the smallest passage id (64-bit prefix) offered."""

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.uint64)
        self.owners = np.empty(0, dtype=np.uint64)
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []

    def offer(self, keys: np.ndarray, owners: np.ndarray) -> None:
        """Record passages (first pass); they are sorted once, when the second pass starts."""
        self.pending.append((keys, owners))

    def owners_of(self, keys: np.ndarray) -> np.ndarray:
        """The smallest id offered for each key (second pass)."""
        self._compact()
        return self.owners[np.searchsorted(self.keys, keys)]

    def new_texts(self) -> int:
        """Distinct texts offered that are not in the dataset already: the passages the job will prompt."""
        self._compact()
        return int((self.owners != np.uint64(_EXISTING)).sum())

    def _compact(self) -> None:
        if not self.pending:
            return
        keys = np.concatenate([self.keys, *(k for k, _ in self.pending)])
        owners = np.concatenate([self.owners, *(o for _, o in self.pending)])
        self.pending = []
        order = np.lexsort((owners, keys))  # by key, then smallest owner first
        keys, owners = keys[order], owners[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        self.keys, self.owners = keys[first], owners[first]


def shard_count(input_bytes: int) -> int:
    """Shards for a job that reads ``input_bytes`` of corpus: one per GiB, at least one.

    Each shard is a process of its own (about half a second to start on a CPU), which a small job
    need not pay for twice."""
    return max(1, min(MAX_SHARDS, -(-input_bytes // SHARD_INPUT_BYTES)))


def create_shards(count: int) -> list:
    """``count`` dedup shard actors for one job."""
    return [DedupShard.options(scheduling_strategy=on_driver_node()).remote() for _ in range(count)]


def _keys_and_owners(passages: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    keys = np.array([int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little")
                     for t in passages["context"].to_pylist()], dtype=np.uint64)
    owners = np.array([int(p[:16], 16) for p in passages["passage_id"].to_pylist()], dtype=np.uint64)
    return keys, owners


def offer_passages(passages: pa.Table, *, shards: list, existing: bool = False) -> pa.Table:
    """First pass: offer each passage to its shard; returns no rows.

    ``existing`` passages (already in an incremental dataset) are offered with owner 0, so that
    they keep their text against any new passage.
    """
    if passages.num_rows == 0:
        return passages
    keys, owners = _keys_and_owners(passages)
    if existing:
        owners[:] = _EXISTING
    shard_of = keys % np.uint64(len(shards))
    ray.get([shards[i].offer.remote(keys[shard_of == i], owners[shard_of == i])
             for i in range(len(shards)) if (shard_of == i).any()])
    return passages.slice(0, 0)


def drop_duplicates(passages: pa.Table, *, shards: list, output_uri: str, s3_endpoint: str | None) -> pa.Table:
    """Second pass: keep the passages that own their text; reject the others as duplicates."""
    if passages.num_rows == 0:
        return passages
    keys, owners = _keys_and_owners(passages)
    shard_of = keys % np.uint64(len(shards))
    claimed = np.empty_like(owners)
    pending = {i: shards[i].owners_of.remote(keys[shard_of == i]) for i in range(len(shards))
               if (shard_of == i).any()}
    for i, ref in pending.items():
        claimed[shard_of == i] = ray.get(ref)
    keep = claimed == owners
    dropped = passages.filter(pa.array(~keep)).to_pylist()
    write_rejects(output_uri, CLEAN_STAGE, [
        {**row, "context": None, "reason": DUPLICATE,
         "detail": "same text as a passage already in the dataset" if owner == _EXISTING
         else f"same text as passage {int(owner):016x}"}
        for row, owner in zip(dropped, claimed[~keep].tolist())], s3_endpoint)
    return passages.filter(pa.array(keep))
