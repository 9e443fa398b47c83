"""The summary's time counts from the command's start, with the start-up's share (issue 26, item 8); the card
and `stats` name the model as the user knows it, while the manifest keeps the folder that was loaded (item 12)."""

import json
import subprocess
import sys
import time

from bonito_ray.cli import main
from bonito_ray.config import DEMO_MODEL, GenerateConfig
from bonito_ray.pipeline import generate
from bonito_ray.report import RunSummary
from bonito_ray.self_guide.pipeline import SelfGuideSummary
from tests.corpus_files import write_jsonl
from tests.tiny_models import sample_passages


def test_the_command_clock_starts_with_the_process_not_the_import():
    # Taken before bonito_ray is imported: the process started earlier still, and its start is what counts.
    code = ("import time; before = time.monotonic()\n"
            "from bonito_ray.command_clock import command_started\n"
            "started = command_started(); print(started <= before, before - started)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    earlier, age = done.stdout.split()
    assert earlier == "True" and 0 <= float(age) < 300, done.stdout


def _summary(**times) -> RunSummary:
    return RunSummary(output="out/x", passages=1, prompts=1, accepted={"ynqa": 1}, rejected={}, corpus_rejected={},
                      passages_dropped={}, input_tokens=5, generated_tokens=3, **times)


def test_the_headline_says_the_commands_time_and_the_start_ups_share():
    headline = _summary(wall_seconds=148.8, startup_seconds=56.3).format().splitlines()[0]
    assert headline.endswith(" in 205.1s (start-up 56.3s: Python, the job's checks, Ray)")
    # The Python API has no command start: the job's own time, as before.
    assert _summary(wall_seconds=148.8).format().splitlines()[0].endswith(" in 148.8s")
    guide = SelfGuideSummary(output="out/g", task="t", kind="classification", accepted=1, labels={}, inputs_kept=1,
                             dropped={}, wall_seconds=10.0, startup_seconds=5.0).format().splitlines()[0]
    assert guide.endswith(" in 15.0s (start-up 5.0s: Python, the job's checks, Ray)")


def test_a_job_records_its_start_up_and_its_card_and_stats_name_the_bundled_model(ray_cluster, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    out = tmp_path / "out"
    # An injected command start, 40 s before the call: the start-up is at least that, the job's time apart.
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=DEMO_MODEL,
                                      task_types=["ynqa"]), command_started=time.monotonic() - 40)
    assert summary.startup_seconds >= 40
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["summary"]["startup_seconds"] == summary.startup_seconds
    assert manifest["stages"]["startup_seconds"] == summary.startup_seconds
    assert manifest["runs"][-1]["startup_seconds"] == summary.startup_seconds
    # The manifest keeps the folder that was loaded (the job's identity); the card and stats, the model's name.
    assert manifest["config"]["model"] == manifest["identity"]["model"] == DEMO_MODEL
    card_text = (out / "_card" / "README.md").read_text()
    assert "`bonito_ray/demo_model`" in card_text and DEMO_MODEL not in card_text
    capsys.readouterr()
    assert main(["stats", str(out), "--examples", "0"]) == 0
    printed = capsys.readouterr().out
    assert "generator model: bonito_ray/demo_model" in printed and DEMO_MODEL not in printed
