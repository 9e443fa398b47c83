"""The planner's reading: corpus files counted as the job would count them, on this machine, without Ray.

Each file goes through the job's own steps: its reader (``corpus.file_documents``), cleaning and chunking
(``passages.prepare_passages``, writing no rejects), exact passage dedup (the dedup pass's text key, in this
reading's order: the counts are the job's whatever the order), requests and prompts (``engine_rows.to_requests``),
and the prompts' tokens as the engines count them (the model's tokenizer, its special tokens added: what the hf
engine and vLLM feed the model).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import pyarrow as pa

from bonito_ray.config import GenerateConfig
from bonito_ray.corpus import file_documents, open_corpus_file
from bonito_ray.dedup import _keys_and_owners  # the dedup pass's text key, one place
from bonito_ray.engine_rows import to_requests
from bonito_ray.generators import GENERATORS
from bonito_ray.passages import cached_tokenizer, prepare_passages
from bonito_ray.plan import FileCount
from bonito_ray.storage import display_uri

logger = logging.getLogger(__name__)


@dataclass
class Reading:
    """The files counted so far, the passage texts seen (dedup), and a seeded random choice of ``keep`` passage
    texts (the calibration's corpus: a reservoir sample, so that it is drawn from every file read)."""

    keep: int = 0
    seed: int = 0
    files: list[FileCount] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    kept: list[str] = field(default_factory=list)
    offered: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def offer(self, texts: list[str]) -> None:
        for text in texts:
            self.offered += 1
            if len(self.kept) < self.keep:
                self.kept.append(text)
            elif self.keep:
                at = self._random.randrange(self.offered)
                if at < self.keep:
                    self.kept[at] = text


def count_files(config: GenerateConfig, fs, files: list[str], sizes: dict[str, int], passage_tokens: int,
                keep: int = 0, seed: int = 0) -> Reading:
    """Count ``files`` (paths on ``fs``, ``sizes`` in bytes) as ``config``'s job would; keep ``keep`` passages."""
    reading = Reading(keep=keep, seed=seed)
    for path in files:
        reading.files.append(_count_file(config, fs, path, sizes[path], passage_tokens, reading))
        logger.info("plan: %s: %s", display_uri(config.input, path), reading.files[-1])
    return reading


def _count_file(config: GenerateConfig, fs, path: str, size: int, passage_tokens: int, reading: Reading) -> FileCount:
    source = display_uri(config.input, path)
    rejects: list[dict] = []
    counts = dict.fromkeys(("documents", "passages", "duplicates", "requests", "input_tokens"), 0)
    try:
        with open_corpus_file(fs, path) as f:
            for documents in file_documents(f, path, source, config.context_column, rejects):
                _count_documents(config, documents, passage_tokens, reading, counts)
    except FileNotFoundError:  # gone since the listing: the job's reader rejects it too (missing_file)
        rejects.append({"source": source})
    return FileCount(path, size, records_rejected=len(rejects), **counts)


def _count_documents(config: GenerateConfig, documents: pa.Table, passage_tokens: int, reading: Reading,
                     counts: dict[str, int]) -> None:
    counts["documents"] += documents.num_rows
    # output_uri "": passages that cleaning rejects are not written anywhere (as generate --preview)
    passages = prepare_passages(documents, tokenizer_source=config.model, passage_tokens=passage_tokens,
                                overlap=config.passage_overlap, min_chars=config.min_passage_chars,
                                max_chars=config.max_passage_chars, markers=GENERATORS[config.generator].markers,
                                output_uri="", s3_endpoint=None)
    if config.dedup:
        keep = []
        for at, key in enumerate(_keys_and_owners(passages)[0].tolist()):
            if key not in reading.seen:
                reading.seen.add(key)
                keep.append(at)
        counts["duplicates"] += passages.num_rows - len(keep)
        passages = passages.take(keep)
    counts["passages"] += passages.num_rows
    reading.offer(passages["context"].to_pylist())
    # One request per task type; its n samples are n requests of the same prompt.
    requests = to_requests(passages, task_types=config.task_types, n=1, sampling_params=config.sampling_params,
                           seed=None, model=config.model, generator=config.generator)
    counts["requests"] += requests.num_rows * config.n
    if requests.num_rows:
        tokenizer = cached_tokenizer(config.model)
        counts["input_tokens"] += config.n * sum(map(len, tokenizer(requests["prompt"].to_pylist())["input_ids"]))
