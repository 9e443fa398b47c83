"""The dataset card's figures, live progress, `generate --preview` and `stats`, on real runs and files."""

import io
import json
import logging
import threading
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from bonito_ray import card, progress
from bonito_ray.cli import main
from bonito_ray.config import GenerateConfig
from bonito_ray.engines import hf
from bonito_ray.pipeline import generate
from bonito_ray.rejects import write_rejects
from bonito_ray.schema import PROGRESS_FILE, STAGING_DIR
from tests.corpus_files import write_jsonl
from tests.faults import gated_hf_generator
from tests.tiny_models import sample_passages


def test_card_counts_any_reject_stage_and_reason_the_files_hold(tmp_path):
    # Rejects of a stage and reasons bonito-ray does not know today (a later validator, task dedup).
    write_rejects(str(tmp_path), "validate", [
        {"id": "a", "task_type": "ynqa", "reason": "truncated"}, {"id": "b", "task_type": "ynqa", "reason": "truncated"},
        {"id": "c", "task_type": "nli", "reason": "duplicate_task"}])
    write_rejects(str(tmp_path), "corpus", [{"source": "x", "position": 1, "reason": "invalid_json"}])
    figures = card.collect(pafs.LocalFileSystem(), str(tmp_path / STAGING_DIR))
    assert {t: f.rejected for t, f in figures.items()} == {"nli": {"duplicate_task": 1}, "ynqa": {"truncated": 2}}
    assert [line.split("|")[6].strip() for line in card.figures_table(figures)[2:]] == ["duplicate_task: 1",
                                                                                       "truncated: 2"]


def test_card_without_matplotlib_says_how_to_get_the_plots(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert card.draw_plots({"ynqa": card.TaskFigures("ynqa", accepted=1)}) is None
    manifest = {"config": GenerateConfig(input="in", output="out").to_dict(), "runs": [],
                "summary": {"passages": 1, "prompts": 1, "accepted": {"ynqa": 1}, "corpus_rejected": {},
                            "passages_dropped": {}}}
    text = card.render({"ynqa": card.TaskFigures("ynqa", accepted=1)}, manifest, plots=False)
    assert "pip install 'bonito-ray[card]'" in text and "--write-card" in text and ".png" not in text


class SteppedWaits(threading.Event):
    """A progress loop's stop event (``LiveProgress.stopped``) that tells it ``ticks`` intervals have passed,
    one per wait, and then waits for its stop; ``idle`` is set once the loop has refreshed ``ticks`` times."""

    def __init__(self, ticks: int) -> None:
        super().__init__()
        self.ticks, self.idle = ticks, threading.Event()

    def wait(self, timeout=None) -> bool:
        if self.ticks:
            self.ticks -= 1
            return self.is_set()
        self.idle.set()
        return super().wait()


def test_progress_line_on_a_terminal_is_rewritten_in_place(ray_cluster, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    counter = progress.ProgressCounter.remote()
    counter.set_total.remote(10)
    counter.record.remote(3, {"no_separator": 1, "not_a_span": 2}, 120)
    shown = Terminal()
    reporter = progress.Reporter(counter, pafs.LocalFileSystem(), str(tmp_path), "run-1", stream=shown)
    reporter.stopped = SteppedWaits(ticks=2)  # two refreshes while running, whatever this machine's speed
    reporter.start()
    assert reporter.stopped.idle.wait(timeout=300)
    final = reporter.stop("generated")
    assert shown.getvalue().count("\r\x1b[K") == 3  # drawn twice while running, and once at the end
    assert shown.getvalue().startswith("\r\x1b[K") and shown.getvalue().endswith("\n")
    assert shown.getvalue().count("\n") == 1  # one line, redrawn
    assert "prompts 6/10 (60%)  accepted 3  rejected 1  filtered 2" in shown.getvalue()  # as the summary splits them
    written = json.loads((tmp_path / STAGING_DIR / PROGRESS_FILE).read_text())
    assert written["state"] == "generated" and written["by_reason"] == {"no_separator": 1, "not_a_span": 2}
    assert written == final


def test_progress_file_follows_a_running_job(ray_cluster, random_model, tmp_path, monkeypatch, caplog):
    """A real hf run, one request per batch, watched from outside through its progress file.

    The engine holds its third request until the watcher has seen the first two counted, so the
    check does not depend on how fast the engine runs against the writer on this machine.
    """
    monkeypatch.setenv(progress.INTERVAL_ENV, "0.2")
    gate = tmp_path / "engine" / "gate"
    monkeypatch.setattr(hf, "HFGenerator", gated_hf_generator(gate, open_rows=2))
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(6))
    out = tmp_path / "out"
    seen, stop = [], threading.Event()

    def watch():
        path = out / STAGING_DIR / PROGRESS_FILE
        while not stop.is_set():
            try:
                seen.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass
            else:
                if seen[-1]["state"] == "running" and 0 < seen[-1]["prompts_done"] < 6:
                    gate.touch()
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with caplog.at_level(logging.INFO, logger="bonito_ray.progress"):
            summary = generate(GenerateConfig(input=str(corpus), output=str(out), model=random_model, max_tokens=24,
                                              task_types=["ynqa"], batch_size=1, seed=1, max_error_rate=1.0,
                                              rows_per_file=2))  # verdicts counted as each file's rows are bundled
    finally:
        stop.set()
        watcher.join()
    states = sorted({(s["state"], s["prompts_done"], s["prompts_total"]) for s in seen}, key=str)
    assert gate.exists() and not gate.with_name("gate-timed-out").exists(), states  # counted while the engine held work
    running = [s for s in seen if s["state"] == "running" and s["prompts_total"]]
    assert running and all(s["prompts_total"] == summary.prompts == 6 for s in running)
    assert any(0 < s["prompts_done"] < 6 for s in running), states
    done = [s["prompts_done"] for s in seen]
    assert done == sorted(done)
    # Prompts are counted as the engine returns them, verdicts as their file is written: the verdicts follow.
    assert all(s["accepted"] + s["rejected"] + s["filtered"] <= s["prompts_done"] for s in seen)
    assert seen[-1]["accepted"] + seen[-1]["rejected"] + seen[-1]["filtered"] == seen[-1]["prompts_done"] == 6
    assert not (out / STAGING_DIR).exists()  # gone with the staging dir at commit
    assert "bonito-ray: prompts 6/6 (100%)" in caplog.text and "done" in caplog.text  # not a terminal: plain line


def test_preview_prints_tasks_with_verdicts_and_writes_nothing(ray_cluster, random_model, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "in" / "c.jsonl", sample_passages(10) + ["Too short."])
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["generate", "--preview", "3", "--input", str(tmp_path / "in"), "--output", str(out),
                 "--engine", "echo", "--model", random_model, "--task-types", "ynqa,nli"])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.count("=== [ynqa]") == 3 and printed.count("=== [nli]") == 3 and ": accepted" in printed
    assert printed.rstrip().endswith("preview of 3 passages: 6 tasks, 6 accepted, 0 rejected; nothing was written")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and not out.exists()
    assert corpus.exists()


def test_stats_prints_the_figures_and_random_examples(ray_cluster, random_model, tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(6))
    out = tmp_path / "out"
    generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                            task_types=["ynqa", "nli"], card_samples=2))
    assert len(card_samples(out)) == 4 and all(any(p in s for p in sample_passages(6)) for s in card_samples(out))
    capsys.readouterr()
    assert main(["stats", str(out), "--examples", "2", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{out}: 12 examples from 6 passages (12 prompts)")
    assert any(line.split()[:4] == ["ynqa", "6", "6", "0"] for line in printed.splitlines())
    assert printed.count("=== [ynqa]") == 2 and printed.count("=== [nli]") == 2
    assert main(["stats", str(tmp_path / "nothing")]) == 2


def card_samples(out: Path) -> list[str]:
    """The sample inputs shown in the card."""
    text = (out / "_card" / "README.md").read_text()
    return [block.split("\n```", 1)[0] for block in text.split("```text\n")[1:] if "Yes or no?" in block]


@pytest.mark.parametrize("rows, category", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (2_000_000, "1M<n<10M")])
def test_size_categories_are_the_hubs(rows, category):
    assert card.size_category(rows) == category


@pytest.mark.static
def test_every_reason_bonito_ray_writes_is_in_the_one_list():
    """``bonito_ray.rejects.REASONS`` is the one list of reasons: a reason string written anywhere else in the
    library (a ``"reason": "..."`` literal or a module constant of its own) would bypass it."""
    import re
    from pathlib import Path

    from bonito_ray import rejects

    library = Path(rejects.__file__).parent
    for path in library.rglob("*.py"):
        if path.name == "rejects.py":
            continue
        text = path.read_text()
        assert not re.findall(r'"reason":\s*"', text), f"{path.name}: a literal reason; name it in bonito_ray.rejects"
        own = set(re.findall(r'^([A-Z_]+) = "([a-z_]+)"', text, re.M))
        assert not {value for _, value in own} & set(rejects.REASONS), f"{path.name} defines a reason of its own"
    assert all(r.meaning and r.stage for r in rejects.REASONS.values())
