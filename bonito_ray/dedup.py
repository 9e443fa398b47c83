"""Exact passage deduplication across the whole corpus, streaming.

Passages are hashed (64-bit) and sharded over a few small actors. Each actor keeps its keys and
the id of the passage that claimed each key first in sorted numpy runs (16 bytes a passage).
Claims are idempotent: a retried batch re-claims its own passages and keeps them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import ray

from bonito_ray.quarantine import CLEAN_STAGE, write_rejects

DUPLICATE = "duplicate"
_MAX_RUNS = 8  # merge sorted runs beyond this many, so a lookup stays a handful of binary searches


@ray.remote(num_cpus=0)
class DedupShard:
    """The claimed keys of one hash shard: key -> the passage that claimed it first."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    def claim(self, keys: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """The owner of each key: an earlier claimant's if any, else the first in this batch."""
        result = owners.copy()
        unknown = np.ones(len(keys), dtype=bool)
        for run_keys, run_owners in self.runs:
            at = np.searchsorted(run_keys, keys).clip(max=len(run_keys) - 1)
            hit = unknown & (run_keys[at] == keys)
            result[hit] = run_owners[at[hit]]
            unknown &= ~hit
        new_keys, first = np.unique(keys[unknown], return_index=True)
        new_owners = owners[unknown][first]
        if len(new_keys):
            self.runs.append((new_keys, new_owners))
            if len(self.runs) > _MAX_RUNS:
                merged_keys = np.concatenate([k for k, _ in self.runs])
                merged_owners = np.concatenate([o for _, o in self.runs])
                order = np.argsort(merged_keys, kind="stable")
                self.runs = [(merged_keys[order], merged_owners[order])]
        # Within the batch, later copies of a new key belong to its first occurrence.
        lookup = dict(zip(new_keys.tolist(), new_owners.tolist()))
        result[unknown] = [lookup[k] for k in keys[unknown].tolist()]
        return result


def create_shards(count: int) -> list:
    """``count`` dedup shard actors for one job."""
    return [DedupShard.remote() for _ in range(count)]


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def drop_duplicates(passages: pa.Table, *, shards: list, output_uri: str, s3_endpoint: str | None) -> pa.Table:
    """Keep each passage whose text no other passage claimed first; quarantine the rest."""
    if passages.num_rows == 0:
        return passages
    keys = np.array([_hash64(t) for t in passages["context"].to_pylist()], dtype=np.uint64)
    owners = np.array([int(p[:16], 16) for p in passages["passage_id"].to_pylist()], dtype=np.uint64)
    shard_of = keys % np.uint64(len(shards))
    claimed = np.empty_like(owners)
    pending = {i: shards[i].claim.remote(keys[shard_of == i], owners[shard_of == i]) for i in range(len(shards))
               if (shard_of == i).any()}
    for i, ref in pending.items():
        claimed[shard_of == i] = ray.get(ref)
    keep = claimed == owners
    dropped = passages.filter(pa.array(~keep)).to_pylist()
    write_rejects(output_uri, CLEAN_STAGE, [
        {**row, "context": None, "reason": DUPLICATE, "detail": f"same text as passage {int(owner):016x}"}
        for row, owner in zip(dropped, claimed[~keep].tolist())], s3_endpoint)
    return passages.filter(pa.array(keep))
