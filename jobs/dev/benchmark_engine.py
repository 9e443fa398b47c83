"""Engine throughput side by side: the same Bonito prompts through raw vLLM, the reference Bonito
package, bonito-ray's vllm engine end to end, and bonito-ray's hf engine.

Each contender runs in a process of its own, one after the other, over the same passages (the demo
training corpus, cycled) and the same sampling settings, and is timed twice:

- with start-up: wall time of the whole thing (process, Ray, engine load, generation, writing);
- steady state: generation alone. Raw vLLM and the reference package time their ``generate`` call;
  bonito-ray's end-to-end run cannot be split from outside, so its steady state is differential:
  (tokens at N - tokens at N/4) / (time at N - time at N/4), which cancels every fixed cost.

Generated tokens per second, and each figure's ratio to raw vLLM, are printed as one table. A
contender that is not installed (the reference package: ``pip install --no-deps bonito-llm``) is
listed as skipped. Runs on CPUs with vLLM's CPU build, or on a GPU where vLLM is installed.

    python jobs/dev/benchmark_engine.py --passages 1000      # 3,000 prompts (3 task types)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN_CORPUS = ROOT / "jobs" / "examples" / "demo_train.jsonl"
TASK_TYPES = ["ynqa", "exqa", "nli"]
KV_CACHE_BYTES = 1 << 30
RESULT = "BENCHMARK-RESULT "  # a child's result line (vLLM prints to stdout too)  # the same KV cache for every vLLM contender (bonito-ray's CPU default)


def write_corpus(path: Path, passages: int) -> Path:
    lines = TRAIN_CORPUS.read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    # Cycled passages get a numbered prefix so that bonito-ray's dedup keeps them all.
    with path.open("w") as f:
        for i in range(passages):
            f.write(json.dumps({"text": f"({i}) {texts[i % len(texts)]}"}) + "\n")
    return path


def prompts_of(corpus: Path) -> tuple[list[str], list[str]]:
    from bonito_ray.prompt import build_prompt
    from bonito_ray.tasks import TASK_TYPES as NAMES

    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    return texts, [build_prompt(t, NAMES[task]) for t in texts for task in TASK_TYPES]


# --- contenders, each run in a child process: `python benchmark_engine.py --child NAME ...` ---------------------

def child_raw_vllm(args) -> dict:
    from vllm import LLM, SamplingParams

    _, prompts = prompts_of(Path(args.corpus))
    started = time.perf_counter()
    llm = LLM(model=args.model, kv_cache_memory_bytes=KV_CACHE_BYTES, max_model_len=args.max_model_len)
    loaded = time.perf_counter()
    outputs = llm.generate(prompts, SamplingParams(max_tokens=args.max_tokens, temperature=0.5, top_p=0.95),
                           use_tqdm=False)
    done = time.perf_counter()
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"tokens": tokens, "generate_s": done - loaded, "prompts": len(prompts)}


def child_reference(args) -> dict:
    from bonito import Bonito
    from datasets import Dataset
    from vllm import SamplingParams

    from bonito_ray.tasks import TASK_TYPES as NAMES

    texts, _ = prompts_of(Path(args.corpus))
    bonito = Bonito(args.model, kv_cache_memory_bytes=KV_CACHE_BYTES, max_model_len=args.max_model_len)

    dataset = Dataset.from_dict({"text": texts})
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.5, top_p=0.95)
    counted: list[int] = []
    generate = bonito.generate

    def counting_generate(*a, **k):  # generate_tasks keeps only parsed tasks: count what was generated
        outputs = generate(*a, **k)
        counted.append(sum(len(o.outputs[0].token_ids) for o in outputs))
        return outputs

    bonito.generate = counting_generate
    started = time.perf_counter()
    for task in TASK_TYPES:
        bonito.generate_tasks(dataset, context_col="text", task_type=NAMES[task], sampling_params=params)
    return {"tokens": sum(counted), "generate_s": time.perf_counter() - started,
            "prompts": len(texts) * len(TASK_TYPES)}


def child_bonito_ray(args) -> dict:
    out = Path(args.workdir) / f"out-{args.engine}-{Path(args.corpus).stem}"
    command = [sys.executable, "-m", "bonito_ray.cli", "generate", "--engine", args.engine, "--model", args.model,
               "--input", args.corpus, "--output", str(out), "--task-types", ",".join(TASK_TYPES),
               "--max-tokens", str(args.max_tokens), "--ray-address", "local", "--log-level", "WARNING",
               "--batch-size", str(args.batch_size), "--max-concurrent-batches", str(args.max_concurrent_batches),
               "--max-error-rate", "1"]
    if args.engine == "vllm":
        command += ["--engine-kwargs", json.dumps({"kv_cache_memory_bytes": KV_CACHE_BYTES})]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    manifest = json.loads((out / "_manifest.json").read_text())
    return {"tokens": manifest["summary"]["generated_tokens"], "prompts": manifest["summary"]["prompts"]}


CHILDREN = {"raw": child_raw_vllm, "reference": child_reference, "bonito-ray": child_bonito_ray}


def run_child(name: str, corpus: Path, args, engine: str = "vllm") -> dict:
    command = [sys.executable, __file__, "--child", name, "--corpus", str(corpus), "--model", args.model,
               "--max-tokens", str(args.max_tokens), "--max-model-len", str(args.max_model_len),
               "--workdir", args.workdir, "--engine", engine, "--batch-size", str(args.batch_size),
               "--max-concurrent-batches", str(args.max_concurrent_batches)]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"})
    wall = time.perf_counter() - started
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["failed"])[-1]}
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith(RESULT))[len(RESULT):])
    return result | {"wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=1000, help="passages (x3 task types = prompts)")
    parser.add_argument("--model", default=str(ROOT / "bonito_ray" / "demo_model"))
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-concurrent-batches", type=int, default=8)
    parser.add_argument("--only", default="raw,reference,bonito-ray-vllm,bonito-ray-hf",
                        help="contenders to run, comma-separated")
    parser.add_argument("--sweep", action="store_true",
                        help="instead: bonito-ray --engine vllm over batch sizes x batches in flight (sizing guidance)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="vllm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(RESULT + json.dumps(CHILDREN[args.child](args)), flush=True)
        return

    if args.sweep:
        sweep(args)
        return
    only = args.only.split(",")
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        full = write_corpus(Path(workdir) / "full.jsonl", args.passages)
        quarter = write_corpus(Path(workdir) / "quarter.jsonl", max(1, args.passages // 4))
        results: dict[str, dict] = {}
        if "raw" in only:
            results["raw vLLM (LLM.generate)"] = run_child("raw", full, args)
        if "reference" in only:
            try:
                import bonito  # noqa: F401
                results["reference Bonito package"] = run_child("reference", full, args)
            except ImportError:
                results["reference Bonito package"] = {"error": "skipped: not installed (pip install --no-deps bonito-llm)"}
        for engine in ("vllm", "hf"):
            if f"bonito-ray-{engine}" not in only:
                continue
            small, large = run_child("bonito-ray", quarter, args, engine), run_child("bonito-ray", full, args, engine)
            if "error" in small or "error" in large:
                results[f"bonito-ray --engine {engine}"] = small if "error" in small else large
                continue
            steady = (large["tokens"] - small["tokens"]) / (large["wall_s"] - small["wall_s"])
            results[f"bonito-ray --engine {engine}"] = large | {"steady_tps": steady}
        print_table(results, args)


def sweep(args) -> None:
    """Wall time and generated tokens/s (start-up included) per (batch size, batches in flight)."""
    print(f"\n{args.passages} passages x {len(TASK_TYPES)} task types, bonito-ray --engine vllm, {os.cpu_count()} CPUs")
    print(f"{'batch size':>10} {'in flight':>9} {'wall s':>8} {'tok/s w/ start':>15}")
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        corpus = write_corpus(Path(workdir) / "sweep.jsonl", args.passages)
        for batch_size in (4, 16, 64):
            for in_flight in (1, 8):
                args.batch_size, args.max_concurrent_batches = batch_size, in_flight
                r = run_child("bonito-ray", corpus, args)
                shutil.rmtree(Path(workdir) / f"out-vllm-{corpus.stem}", ignore_errors=True)
                if "error" in r:
                    print(f"{batch_size:>10} {in_flight:>9} {r['error']}")
                else:
                    print(f"{batch_size:>10} {in_flight:>9} {r['wall_s']:>8.1f} {r['tokens'] / r['wall_s']:>15.0f}",
                          flush=True)


def print_table(results: dict[str, dict], args) -> None:
    for result in results.values():
        if "error" not in result:
            result["with_startup_tps"] = result["tokens"] / result["wall_s"]
            result.setdefault("steady_tps", result["tokens"] / result.get("generate_s", result["wall_s"]))
    raw = results.get("raw vLLM (LLM.generate)", {})
    print(f"\n{args.passages} passages x {len(TASK_TYPES)} task types, model {Path(args.model).name}, "
          f"max_tokens {args.max_tokens}, {os.cpu_count()} CPUs")
    header = f"{'contender':34} {'prompts':>7} {'gen tokens':>10} {'wall s':>8} {'tok/s steady':>13} " \
             f"{'x raw':>6} {'tok/s w/ start':>15} {'x raw':>6}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "error" in r:
            print(f"{name:34} {r['error']}")
            continue
        steady_ratio = r["steady_tps"] / raw["steady_tps"] if "steady_tps" in raw else float("nan")
        start_ratio = r["with_startup_tps"] / raw["with_startup_tps"] if "with_startup_tps" in raw else float("nan")
        print(f"{name:34} {r['prompts']:>7} {r['tokens']:>10} {r['wall_s']:>8.1f} {r['steady_tps']:>13.0f} "
              f"{steady_ratio:>6.2f} {r['with_startup_tps']:>15.0f} {start_ratio:>6.2f}")


if __name__ == "__main__":
    main()
