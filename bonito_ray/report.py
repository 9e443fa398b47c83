"""The run summary and the manifest written next to the dataset."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from bonito_ray.schema import MANIFEST_FILE, SUCCESS_FILE
from bonito_ray.storage import join, resolve_filesystem, write_bytes

_PACKAGES = ("bonito-ray", "ray", "pyarrow", "transformers", "torch", "vllm")


@dataclass
class RunSummary:
    """What a generation job did, in counts."""

    output: str
    passages: int
    prompts: int
    accepted: dict[str, int]
    rejected: dict[str, int]
    corpus_rejected: dict[str, int]
    passages_dropped: dict[str, int]
    input_tokens: int
    generated_tokens: int
    wall_seconds: float
    files: list[dict[str, Any]] = field(default_factory=list)

    def format(self) -> str:
        """A human-readable summary for the end of a job."""
        lines = [
            f"bonito-ray: wrote {sum(self.accepted.values())} examples to {self.output} in {self.wall_seconds:.1f}s",
            f"  passages: {self.passages}   prompts: {self.prompts}",
            f"  accepted: {sum(self.accepted.values())} ({_counts(self.accepted)})",
            f"  rejected: {sum(self.rejected.values())} ({_counts(self.rejected)})",
            f"  corpus records quarantined: {sum(self.corpus_rejected.values())} ({_counts(self.corpus_rejected)})",
            f"  passages dropped: {sum(self.passages_dropped.values())} ({_counts(self.passages_dropped)})",
            f"  tokens: {self.input_tokens} in, {self.generated_tokens} generated",
        ]
        return "\n".join(lines)


def write_manifest(summary: RunSummary, config: dict[str, Any], s3_endpoint: str | None = None) -> None:
    """Write ``_manifest.json`` (config, counts, files, versions), then ``_SUCCESS``."""
    fs, root = resolve_filesystem(summary.output, s3_endpoint)
    manifest = {"summary": asdict(summary), "config": config, "versions": _versions()}
    write_bytes(fs, join(root, MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
    write_bytes(fs, join(root, SUCCESS_FILE), b"")


def _versions() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"
