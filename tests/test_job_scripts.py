"""Smoke runs of the benchmark and the demo-model evaluation at a tiny size, so that neither rots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_benchmark_runs_at_a_tiny_size(random_model, tmp_path):
    done = run_script("jobs/benchmark_pipeline.py", "--sizes", "300", "--model", random_model,
                      "--workdir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["passages"] == 300 and figures["passages_per_s"] > 0 and figures["worker_peak_uss_mb"] > 0


def test_demo_model_evaluation_runs_at_a_tiny_size():
    done = run_script("jobs/evaluate_demo_model.py", "--limit", "2", "--max-new-tokens", "48", "--threads", "1")
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: under the quality bar, which 2 passages may be
    assert "2 passages x 3 task types" in done.stdout and "parse rate: " in done.stdout
    assert ("PASS: " in done.stdout) == (done.returncode == 0)
