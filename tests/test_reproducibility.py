"""A seeded hf generation is a function of the row (its prompt and its seed) alone: not of the rows that share
its batch, the batch size, the row order, the replica's thread count or the CPU kernels' instruction set
(docs/reproducibility.md says what was measured and where this holds).

The bundled demo model, the job's sampling settings (temperature 0.5, top-p 0.95) and seeds derived as a job
derives them; a few passages of the shipped sample corpus and 32 tokens keep it to seconds.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from bonito_ray.config import DEMO_MODEL
from bonito_ray.engine_rows import row_seed
from bonito_ray.engines.hf import HFGenerator
from bonito_ray.prompt import build_prompt

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "jobs" / "examples" / "corpus.jsonl"
SEED = 0
MAX_TOKENS = 32


def seeded_requests() -> list[dict]:
    """Eight requests: the first four sample documents (their first 500 characters) x ynqa, exqa."""
    documents = [json.loads(line)["text"][:500] for line in CORPUS.read_text().splitlines()[:4]]
    return [{"id": f"{at}-{task}", "prompt": build_prompt(text, task),
             "sampling_params": {"max_tokens": MAX_TOKENS, "temperature": 0.5, "top_p": 0.95,
                                 "seed": row_seed(SEED, f"{at}-{task}")}}
            for at, text in enumerate(documents) for task in ("ynqa", "exqa")]


def generate(num_threads: int, batch_size: int, reverse: bool = False) -> dict[str, list]:
    """id -> [text, generated tokens, finish reason], the requests sent in batches of ``batch_size``."""
    rows = seeded_requests()[::-1] if reverse else seeded_requests()
    generator = HFGenerator(DEMO_MODEL, num_threads=num_threads)
    out = {}
    for start in range(0, len(rows), batch_size):
        batch = generator(pa.Table.from_pylist(rows[start:start + batch_size]))
        for row in batch.to_pylist():
            out[row["id"]] = [row["generated_text"], row["num_generated_tokens"], row["finish_reason"]]
    return out


@pytest.fixture(scope="module")
def reference():
    """One batch of all eight rows, one thread, this machine's own kernels."""
    threads = torch.get_num_threads()
    try:
        yield generate(num_threads=1, batch_size=8)
    finally:
        torch.set_num_threads(threads)  # HFGenerator sets the process's count


def test_the_reference_samples(reference):
    # The comparisons below mean something only if the rows are sampled (not all alike, not empty).
    assert len({text for text, _, _ in reference.values()}) == len(reference)
    assert all(tokens > 0 for _, tokens, _ in reference.values())


def test_other_threads_batches_and_order_give_the_same_rows(reference):
    threads = torch.get_num_threads()
    try:
        assert generate(num_threads=2, batch_size=3, reverse=True) == reference
    finally:
        torch.set_num_threads(threads)


def test_other_cpu_kernels_give_the_same_rows(reference):
    """ATen's portable kernels (no SIMD dispatch) and MKL's compatible code path, as on a CPU of another
    instruction-set class; each row alone in its batch (no padding) and two threads."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "PYTHONPATH": str(REPO)}
    script = ("import json, torch; from tests.test_reproducibility import generate; "
              "print(json.dumps({'capability': torch.backends.cpu.get_cpu_capability(), "
              "'rows': generate(num_threads=2, batch_size=1)}))")
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["capability"] == "DEFAULT"  # the variable took effect: the kernels did differ
    assert result["rows"] == reference
