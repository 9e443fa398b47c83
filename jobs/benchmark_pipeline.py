"""Benchmark of the non-LLM stages: read, clean, chunk, dedup, prompt, parse, write.

Makes a synthetic corpus of distinct passages (JSONL, 10,000 per file, 30-60 words each: one
chunk each, so the tokenizer is not on the path), runs the whole job with
the `echo` engine (a zero-cost stand-in for the model, for tests and benchmarks only) on a local
Ray, and prints throughput and peak memory of the driver (RSS) and of the Ray workers (USS).

    python jobs/benchmark_pipeline.py --sizes 100000 1000000 --model PATH_WITH_TOKENIZER
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


def make_corpus(directory: Path, count: int, seed: int = 0) -> None:
    """Write ``count`` distinct passages of 30-60 words as JSONL files under ``directory``."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, PASSAGES_PER_FILE):
        with open(directory / f"part-{start // PASSAGES_PER_FILE:05d}.jsonl", "w") as f:
            for i in range(start, min(start + PASSAGES_PER_FILE, count)):
                words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 60)))
                f.write(json.dumps({"text": f"Record {i}. The {words}."}) + "\n")


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
            for proc in psutil.process_iter(["name", "cmdline"]):
                cmdline = " ".join(proc.info["cmdline"] or [])
                if "ray::" in (proc.info["name"] or "") or "ray::" in cmdline or "default_worker.py" in cmdline:
                    try:
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


def run(size: int, model: str, workdir: Path) -> dict:
    """One benchmark run of ``size`` passages in a fresh local Ray; returns the figures."""
    corpus = workdir / f"corpus-{size}"
    if not corpus.exists():
        make_corpus(corpus, size)
    output = workdir / f"out-{size}"
    shutil.rmtree(output, ignore_errors=True)
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": PRIVACY_ENV})
    try:
        with PeakMemory() as memory:
            started = time.monotonic()
            summary = generate(GenerateConfig(input=str(corpus), output=str(output), engine="echo", model=model,
                                              task_types=["ynqa"], passage_tokens=2048))
            seconds = time.monotonic() - started
    finally:
        ray.shutdown()
    assert summary.passages == size, summary
    return {"passages": size, "seconds": round(seconds, 1), "passages_per_s": round(size / seconds),
            "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "worker_peak_uss_mb": memory.worker_max // 2**20, "workers_total_peak_uss_mb": memory.workers_total // 2**20,
            "peak_uss_mb_by_process": {k: v // 2**20 for k, v in sorted(memory.by_process.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--model", default=DEMO_MODEL, help="model whose tokenizer chunks passages")
    parser.add_argument("--workdir", help="where corpora and outputs go (default: a temporary directory)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bonito-ray-bench-"))
    if len(args.sizes) == 1:
        print(json.dumps(run(args.sizes[0], args.model, workdir)), flush=True)
        return
    for size in args.sizes:  # each size in its own process, so that peak memory is that size's own
        subprocess.run([sys.executable, __file__, "--sizes", str(size), "--model", args.model,
                        "--workdir", str(workdir)], check=True)


if __name__ == "__main__":
    main()
