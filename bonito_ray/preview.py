"""Look before the big run: ``generate --preview N`` and ``stats OUTPUT``.

``preview`` runs the job's own stages (read, clean, chunk, prompt, engine, parse) on the first N
passages of the input and returns the examples with their verdicts. It writes nothing anywhere:
no output folder, no lease, no staging, no rejects (passages it would reject are just not
shown), and it skips the corpus-wide dedup pass.

``stats`` prints a committed dataset's card figures (``bonito_ray.card``) and N examples per task type,
chosen at random; it reads files only (no Ray).
"""

from __future__ import annotations

import copy
import importlib.util
import random
from typing import Any

import numpy as np

from bonito_ray import card, commit, console
from bonito_ray.config import GenerateConfig
from bonito_ray.corpus import list_corpus_files, read_documents
from bonito_ray.output import OutputError
from bonito_ray.report import read_manifest
from bonito_ray.storage import resolve_filesystem

_SHOWN_CHARS = 2_000  # of an input, output or raw generation in the preview


def preview(config: GenerateConfig, passages: int) -> list[dict[str, Any]]:
    """Examples (accepted: ``reason`` None; rejected: ``reason``, ``detail``, ``raw``) for the first ``passages``."""
    from bonito_ray.pipeline import generated_examples, prepared_passages, settle_passage_tokens

    quiet = copy.copy(config)
    quiet.output = ""  # no side output: rejected rows are dropped, not written (bonito_ray.rejects)
    console.quiet_ray_data(config.verbose)
    listing = list_corpus_files(config.input, config.s3_endpoint)
    documents = read_documents(config.input, listing.fs, listing.files, config.context_column, output_uri="",
                               s3_endpoint=config.s3_endpoint)
    chosen = prepared_passages(quiet, documents, settle_passage_tokens(config)).limit(passages)
    examples = generated_examples(quiet, chosen, np.empty(0, dtype="S16")).take_all()
    return sorted(examples, key=lambda r: (r["source"], r["position"], r["chunk"],
                                           config.task_types.index(r["task_type"]), r["sample_index"]))


def format_preview(examples: list[dict[str, Any]]) -> str:
    """Each task with its verdict, then the tally (what ``generate --preview`` prints)."""
    lines = []
    for row in examples:
        where = f"{row['source']}:{row['position']}" + (f" chunk {row['chunk']}" if row["chunk"] else "")
        verdict = "accepted" if row["reason"] is None else f"rejected: {row['reason']}" + (
            f" ({row['detail']})" if row.get("detail") else "")
        lines.append(f"=== [{row['task_type']}] {where}: {verdict}")
        if row["reason"] is None:
            lines += ["--- input", _cut(row["input"]), "--- output", _cut(row["output"])]
        else:
            lines += ["--- generated", _cut(row.get("raw") or "")]
    accepted = sum(r["reason"] is None for r in examples)
    lines.append(f"bonito-ray: preview of {len({r['passage_id'] for r in examples})} passages: {len(examples)} "
                 f"tasks, {accepted} accepted, {len(examples) - accepted} rejected; nothing was written")
    return "\n".join(lines)


def format_stats(output_uri: str, s3_endpoint: str | None, examples: int, seed: int | None) -> str:
    """The committed dataset's card figures and ``examples`` random examples per task type."""
    fs, root = resolve_filesystem(output_uri, s3_endpoint)
    _require_dataset(fs, root, output_uri)
    manifest = read_manifest(fs, root)
    figures = card.collect(fs, root)
    summary = manifest["summary"]
    lines = [f"{output_uri}: {sum(summary['accepted'].values())} examples from {summary['passages']} passages "
             f"({summary['prompts']} prompts)"]
    lines += [f"  {what}: {value.replace('`', '')}" for what, value in card.provenance(manifest)]
    lines += [""] + _aligned([[cell.strip() for cell in line.strip("|").split("|")]
                              for line in card.figures_table(figures) if "---" not in line])
    lines += ["", f"corpus records rejected: {card._counts(summary['corpus_rejected'])}; "
                  f"passages dropped: {card._counts(summary['passages_dropped'])}"]
    seed = random.randrange(2**31) if seed is None else seed
    for task_type in figures:
        for row in card.sample_rows(fs, root, task_type, examples, seed):
            lines += ["", f"=== [{task_type}] {row['id']}", "--- input", _cut(row["input"]), "--- output",
                      _cut(row["output"])]
    return "\n".join(lines)


def write_card(output_uri: str, s3_endpoint: str | None) -> str:
    """Draw the card of a committed dataset again (after installing matplotlib), holding its lease."""
    from bonito_ray.lease import Lease

    fs, root = resolve_filesystem(output_uri, s3_endpoint)
    _require_dataset(fs, root, output_uri)
    with Lease.acquire(fs, root, output_uri, s3_endpoint):
        card.write_card(fs, root, read_manifest(fs, root))
    plots = "with plots" if importlib.util.find_spec("matplotlib") else f"without plots: {card.PLOTS_HINT}"
    return f"bonito-ray: wrote the dataset card of {output_uri} ({plots})"


def _require_dataset(fs, root: str, output_uri: str) -> None:
    if not commit.is_complete(fs, root):
        raise OutputError(f"{output_uri} is not a committed bonito-ray dataset "
                          "(no _SUCCESS beside a bonito-ray _manifest.json)")


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + f" [... {len(text) - _SHOWN_CHARS} more chars]"
