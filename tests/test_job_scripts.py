"""Smoke runs of the benchmark and the demo-model evaluation at a tiny size, so that neither rots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_benchmark_runs_at_a_tiny_size(random_model, tmp_path):
    done = run_script("jobs/dev/benchmark_pipeline.py", "--sizes", "300", "--model", random_model,
                      "--workdir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["passages"] == 300 and figures["passages_per_s"] > 0 and figures["worker_peak_uss_mb"] > 0


def test_demo_model_evaluation_runs_at_a_tiny_size():
    done = run_script("jobs/dev/evaluate_demo_model.py", "--limit", "2", "--max-new-tokens", "48", "--threads", "1")
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: under the quality bar, which 2 passages may be
    assert "2 passages x 3 task types" in done.stdout and "parse rate: " in done.stdout
    assert ("PASS: " in done.stdout) == (done.returncode == 0)


HANDWRITTEN = ROOT / "jobs" / "examples" / "handwritten_passages.jsonl"


def test_demo_model_evaluation_runs_on_another_corpus_without_the_bar(tmp_path):
    dump = tmp_path / "generations.jsonl"
    done = run_script("jobs/dev/evaluate_demo_model.py", "--corpus", str(HANDWRITTEN), "--limit", "3",
                      "--max-new-tokens", "48", "--threads", "1", "--dump", str(dump))
    assert done.returncode == 0, done.stderr[-3000:]  # 0 whatever the figures: no bar off the held-out corpus
    assert "3 passages x 3 task types" in done.stdout and "exact span" in done.stdout
    assert "quality bar not enforced" in done.stdout and "PASS: " not in done.stdout
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    first_ids = [json.loads(line)["id"] for line in HANDWRITTEN.read_text().splitlines()[:3]]
    assert sorted({r["passage_id"] for r in rows}) == sorted(first_ids)
    assert sorted(r["task_type"] for r in rows) == sorted(["ynqa", "exqa", "nli"] * 3)


@pytest.mark.static
def test_handwritten_passages_are_enough_and_well_formed():
    records = [json.loads(line) for line in HANDWRITTEN.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(records) >= 30
    for record in records:
        assert isinstance(record["text"], str) and record["text"].strip(), record
        assert record["domain"] in {"contracts", "hr_insurance", "clinical"}, record
        assert 60 <= len(record["text"].split()) <= 150, record.get("id")
    assert len({r["text"] for r in records}) == len(records)


@pytest.mark.static
def test_handwritten_passages_share_no_eight_word_run_with_the_generator():
    def runs(text: str) -> set[tuple[str, ...]]:
        words = text.lower().split()
        return {tuple(words[i : i + 8]) for i in range(len(words) - 7)}

    generated: set[tuple[str, ...]] = set()
    for name in ("demo_train.jsonl", "corpus.jsonl"):
        for line in (ROOT / "jobs" / "examples" / name).read_text(encoding="utf-8").splitlines():
            generated |= runs(json.loads(line)["text"])
    for line in HANDWRITTEN.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert not runs(record["text"]) & generated, record["id"]
