"""Benchmark of the non-LLM stages: read, clean, chunk, dedup, prompt, parse, write.

Makes a synthetic corpus of distinct passages (JSONL, 10,000 per file, 30-60 words each: one
chunk each, so the tokenizer is not on the path) drawn from a vocabulary of ``--vocabulary`` words
(default 5,000, so that two unrelated passages share few word pairs, as real text does; a small one
makes most passages alike enough to be candidates of task dedup: its worst case), runs the whole job with
the `echo` engine (a zero-cost stand-in for the model, for tests and benchmarks only) on a local
Ray, and prints throughput and peak memory of the driver (RSS) and of the Ray workers (USS).

    python jobs/dev/benchmark_pipeline.py --sizes 100000 1000000 --model PATH_WITH_TOKENIZER

With ``--document-mb``, each size is instead one single-line JSONL document of that many MB (a
worst case for a worker's memory: the whole document is one record), chunked into 400-token passages.

    python jobs/dev/benchmark_pipeline.py --document-mb 50 200
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import ray

from bonito_ray.cluster import PRIVACY_ENV
from bonito_ray.config import DEMO_MODEL, GenerateConfig
from bonito_ray.pipeline import generate

PASSAGES_PER_FILE = 10_000
WORDS = ("tenant landlord premises rent notice clause party agreement term payment insurance policy claim "
         "patient dose clinic record schedule liability warranty supplier delivery invoice audit").split()
SYLLABLES = "ba be bi bo bu da de di do du ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro ru".split()


def vocabulary(size: int) -> list[str]:
    """``size`` words: WORDS, then made-up words of two or three syllables, always the same ones."""
    rng = random.Random(size)
    words = list(dict.fromkeys(WORDS))[:size]
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def make_document(directory: Path, megabytes: int) -> int:
    """Write one JSONL record holding a single document of about ``megabytes`` MB of distinct
    sentences in paragraphs; returns its length in characters."""
    directory.mkdir(parents=True, exist_ok=True)
    sentences, paragraphs, size, i = [], [], 0, 0
    while size < megabytes * 1_000_000:
        sentence = f"Clause {i}: the tenant pays {100 + i % 900} euros on day {i % 28 + 1}."
        sentences.append(sentence)
        size += len(sentence) + 1
        i += 1
        if len(sentences) == 5:
            paragraphs.append(" ".join(sentences))
            sentences = []
    document = "\n\n".join(paragraphs + [" ".join(sentences)] if sentences else paragraphs)
    with open(directory / "document.jsonl", "w") as f:
        f.write(json.dumps({"text": document}) + "\n")
    return len(document)


def make_corpus(directory: Path, count: int, words: list[str], seed: int = 0) -> None:
    """Write ``count`` distinct passages of 30-60 of ``words`` as JSONL files under ``directory``."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, PASSAGES_PER_FILE):
        with open(directory / f"part-{start // PASSAGES_PER_FILE:05d}.jsonl", "w") as f:
            for i in range(start, min(start + PASSAGES_PER_FILE, count)):
                text = " ".join(rng.choice(words) for _ in range(rng.randint(30, 60)))
                f.write(json.dumps({"text": f"Record {i}. The {text}."}) + "\n")


class PeakMemory:
    """Samples the private memory (USS) of Ray's worker processes until stopped.

    USS leaves out the pages of Ray's shared-memory object store that a worker maps, which RSS counts
    and which Ray bounds on its own (object_store_memory).
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.worker_max = 0
        self.workers_total = 0
        self.by_process: dict[str, int] = {}  # peak USS by Ray process title
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = []
            # Only this benchmark's own Ray (its processes descend from this one): other clusters on a
            # shared machine are not counted.
            for proc in psutil.Process().children(recursive=True):
                try:
                    cmdline = " ".join(proc.cmdline())
                    if "ray::" not in proc.name() and "ray::" not in cmdline and "default_worker.py" not in cmdline:
                        continue
                    rss = proc.memory_full_info().uss  # private memory: the shared object store is not counted
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                sizes.append(rss)
                title = cmdline.split(" ")[0][:60]
                self.by_process[title] = max(self.by_process.get(title, 0), rss)
            if sizes:
                self.worker_max = max(self.worker_max, max(sizes))
                self.workers_total = max(self.workers_total, sum(sizes))
            self._stop.wait(self.interval)


def run(size: int, model: str, workdir: Path, document_mb: bool = False, task_dedup: bool = True,
        vocabulary_size: int = 5000) -> dict:
    """One benchmark run in a fresh local Ray, of ``size`` passages or (``document_mb``) of one
    document of ``size`` MB; returns the figures."""
    corpus = workdir / (f"document-{size}mb" if document_mb else f"corpus-{size}-{vocabulary_size}")
    characters = make_document(corpus, size) if document_mb else make_corpus(corpus, size, vocabulary(vocabulary_size))
    output = workdir / f"out-{size}"
    shutil.rmtree(output, ignore_errors=True)
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": PRIVACY_ENV})
    try:
        with PeakMemory() as memory:
            started = time.monotonic()
            summary = generate(GenerateConfig(input=str(corpus), output=str(output), engine="echo", model=model,
                                              task_types=["ynqa"], passage_tokens=400 if document_mb else 2048,
                                              task_dedup=task_dedup))
            seconds = time.monotonic() - started
    finally:
        ray.shutdown()
    if document_mb:
        figures = {"document_mb": round(characters / 1e6, 1), "passages": summary.passages}
    else:
        assert summary.passages == size, summary
        figures = {"passages": size, "vocabulary": vocabulary_size, "task_dedup": task_dedup,
                   "duplicate_tasks": summary.filtered.get("duplicate_task", 0)}
    return {**figures, "seconds": round(seconds, 1), "passages_per_s": round(summary.passages / seconds),
            "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "worker_peak_uss_mb": memory.worker_max // 2**20, "workers_total_peak_uss_mb": memory.workers_total // 2**20,
            "peak_uss_mb_by_process": {k: v // 2**20 for k, v in sorted(memory.by_process.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="passages per run")
    sizes.add_argument("--document-mb", type=int, nargs="+", help="instead: one single-line document of N MB per run")
    parser.add_argument("--model", default=DEMO_MODEL, help="model whose tokenizer chunks passages")
    parser.add_argument("--workdir", help="where corpora and outputs go (default: a temporary directory)")
    parser.add_argument("--no-task-dedup", dest="task_dedup", action="store_false",
                        help="skip generated-task dedup")
    parser.add_argument("--vocabulary", type=int, default=5000,
                        help="words the passages are drawn from (22: most tasks are task-dedup candidates)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bonito-ray-bench-"))
    flag, sizes = ("--document-mb", args.document_mb) if args.document_mb else ("--sizes", args.sizes)
    if len(sizes) == 1:
        print(json.dumps(run(sizes[0], args.model, workdir, document_mb=bool(args.document_mb),
                             task_dedup=args.task_dedup, vocabulary_size=args.vocabulary)), flush=True)
        return
    for size in sizes:  # each size in its own process, so that peak memory is that size's own
        subprocess.run([sys.executable, __file__, flag, str(size), "--model", args.model, "--workdir", str(workdir),
                        "--vocabulary", str(args.vocabulary), *([] if args.task_dedup else ["--no-task-dedup"])],
                       check=True)


if __name__ == "__main__":
    main()
