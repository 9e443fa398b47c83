"""How bonito-ray scales with engine replicas: end-to-end generate with 1, 2, 4, ... replicas of the `latency`
engine (a stand-in that sleeps a set time per batch and holds no CPU, bonito_ray/engines/latency.py), whose own
throughput is known exactly, so that what falls short of replicas x that rate is the rest of the job's doing.

Each point runs in a fresh local Ray on a synthetic corpus (benchmark_pipeline.py's: distinct passages of one
chunk, one ynqa prompt each) sized to ``--seconds`` of engine time at the ideal rate, with the engine batch
settings the vLLM engine uses by default (--batch-size, --max-concurrent-batches). Printed per point:

- wall: generate()'s call to its commit (planning, dedup's pass over the corpus, replica start, generation,
  task dedup, commit); measured = prompts / wall;
- steady: prompts per second while the engine returned the middle 80% of them (10% to 90%, from the job's
  progress file, sampled every 0.2 s): the rate once replicas run, without the fixed costs before and after;
- ideal = replicas x batch_size x max_concurrent_batches / batch time; efficiency = measured (steady) / ideal.

    python jobs/dev/benchmark_scaling.py --replicas 1 2 4 8 16 32 --seconds 40
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_pipeline  # noqa: E402 - a sibling script: its synthetic corpus

from bonito_ray.cluster import PRIVACY_ENV  # noqa: E402
from bonito_ray.config import DEMO_MODEL, GenerateConfig  # noqa: E402
from bonito_ray.engines.latency import DEFAULTS, replica_rate  # noqa: E402
from bonito_ray.pipeline import generate  # noqa: E402
from bonito_ray.progress import INTERVAL_ENV  # noqa: E402
from bonito_ray.schema import PROGRESS_FILE, STAGING_DIR  # noqa: E402

SAMPLE_SECONDS = 0.2  # how often the progress file is written and read


class ProgressTrace:
    """Samples (time, prompts done) from a job's progress file until stopped."""

    def __init__(self, path: Path) -> None:
        self.path, self.samples = path, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ProgressTrace":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS / 2):
            try:
                report = json.loads(self.path.read_text())
            except (OSError, ValueError):  # not written yet, or being replaced
                continue
            self.samples.append((time.monotonic(), report.get("prompts_done") or 0))

    def rate_between(self, total: int, low: float = 0.1, high: float = 0.9) -> float | None:
        """Prompts per second from the first sample at ``low`` of ``total`` done to the first at ``high``."""
        start = next(((t, d) for t, d in self.samples if d >= low * total), None)
        end = next(((t, d) for t, d in self.samples if d >= high * total), None)
        if start is None or end is None or end[0] <= start[0]:
            return None
        return (end[1] - start[1]) / (end[0] - start[0])


def run_point(replicas: int, prompts: int, args: argparse.Namespace, workdir: Path) -> dict:
    """One generate() of ``prompts`` passages (one prompt each) with ``replicas`` latency replicas, in a fresh Ray."""
    corpus = workdir / f"corpus-{prompts}-{args.passages_per_file}"
    if not corpus.exists():
        benchmark_pipeline.PASSAGES_PER_FILE = args.passages_per_file
        benchmark_pipeline.make_corpus(corpus, prompts, benchmark_pipeline.vocabulary(5000))
    output = workdir / f"out-{replicas}"
    shutil.rmtree(output, ignore_errors=True)
    config = GenerateConfig(input=str(corpus), output=str(output), engine="latency", model=args.model,
                            task_types=["ynqa"], passage_tokens=2048, num_replicas=replicas,
                            batch_size=args.batch_size, max_concurrent_batches=args.max_concurrent_batches,
                            max_tokens=args.max_tokens, engine_kwargs=engine_kwargs(args))
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, runtime_env={"env_vars": PRIVACY_ENV})
    try:
        with ProgressTrace(output / STAGING_DIR / PROGRESS_FILE) as trace:
            started = time.monotonic()
            summary = generate(config)
            wall = time.monotonic() - started
    finally:
        ray.shutdown()
    assert summary.prompts == prompts, summary  # every prompt made it to the dataset: nothing dropped
    ideal = replicas * replica_rate(config)
    steady = trace.rate_between(prompts)
    return {"replicas": replicas, "prompts": prompts, "wall_s": round(wall, 1),
            "measured_per_s": round(prompts / wall, 1), "steady_per_s": None if steady is None else round(steady, 1),
            "ideal_per_s": round(ideal, 1), "efficiency": round(prompts / wall / ideal, 3),
            "steady_efficiency": None if steady is None else round(steady / ideal, 3)}


def engine_kwargs(args: argparse.Namespace) -> dict[str, float]:
    return {"latency_s": args.latency_s, "token_latency_s": args.token_latency_s}


def table(rows: list[dict]) -> str:
    """The figures as a Markdown table."""
    def pct(x):
        return "-" if x is None else f"{x:.0%}"

    lines = ["| replicas | prompts | wall s | measured prompts/s | steady prompts/s | ideal prompts/s "
             "| efficiency | steady efficiency |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['replicas']} | {r['prompts']:,} | {r['wall_s']} | {r['measured_per_s']} | "
              f"{'-' if r['steady_per_s'] is None else r['steady_per_s']} | {r['ideal_per_s']} | "
              f"{pct(r['efficiency'])} | {pct(r['steady_efficiency'])} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    defaults = GenerateConfig(input="-", output="-")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=40.0, help="engine time per point at the ideal rate")
    parser.add_argument("--prompts", type=int, help="instead: this many prompts at every point")
    parser.add_argument("--latency-s", type=float, default=4.0, help="seconds per batch (latency engine)")
    parser.add_argument("--token-latency-s", type=float, default=DEFAULTS["token_latency_s"],
                        help="seconds per token of max_tokens, per batch")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-concurrent-batches", type=int, default=defaults.max_concurrent_batches)
    parser.add_argument("--passages-per-file", type=int, default=benchmark_pipeline.PASSAGES_PER_FILE,
                        help="corpus file size: a file is read in blocks of up to 4,096 documents, and a replica "
                             "takes a whole block, so small files give the engine more, smaller blocks")
    parser.add_argument("--cpus", type=int, default=2, help="the local Ray's CPUs")
    parser.add_argument("--model", default=DEMO_MODEL, help="model whose tokenizer chunks passages")
    parser.add_argument("--workdir", help="where corpora and outputs go (default: a temporary directory)")
    args = parser.parse_args()
    os.environ[INTERVAL_ENV] = str(SAMPLE_SECONDS)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bonito-ray-scaling-"))
    rate = replica_rate(GenerateConfig(input="-", output="-", engine="latency", batch_size=args.batch_size,
                                       max_concurrent_batches=args.max_concurrent_batches,
                                       max_tokens=args.max_tokens, engine_kwargs=engine_kwargs(args)))
    print(f"one replica: {rate:g} prompts/s (batch {args.batch_size} x {args.max_concurrent_batches} concurrent "
          f"batches / {args.latency_s + args.token_latency_s * args.max_tokens:g} s); load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} cores", flush=True)
    rows = []
    for replicas in args.replicas:
        prompts = args.prompts or math.ceil(args.seconds * replicas * rate)
        rows.append(run_point(replicas, prompts, args, workdir))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows), flush=True)


if __name__ == "__main__":
    main()
