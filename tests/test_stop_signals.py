"""SIGTERM and SIGINT stop a job cleanly (bonito_ray.interrupt): one line, exit code 143 or 130, the lease
released, the progress file saying "failed", and the staged work resumed by a rerun.

The job runs through the real command line on a private Ray cluster, its echo engine held on some
passages (tests/held_engine_driver.py) so that it is still staging when the signal comes, however fast
or slow the machine. Every wait is on a state, with a generous deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bonito_ray.schema import LEASE_FILE, PROGRESS_FILE, STAGING_DIR
from tests.corpus_files import write_jsonl
from tests.held_engine_driver import GATE_ENV, HOLD_MARKER
from tests.test_output_lifecycle import expected, ids_and_sources, job_args
from tests.tiny_models import sample_passages

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 600.0  # seconds for a state to come about on a busy machine (Ray start, first staged files)
EXIT_DEADLINE = 180.0  # seconds from the signal to the driver's exit


def wait_for(condition, what: str, process: subprocess.Popen, log: Path, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the job ended before {what}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s: {log.read_text()[-3000:]}"
        time.sleep(0.2)


def corpus_with_held_passages(root: Path) -> dict[Path, int]:
    """Four files the engine answers at once and one whose passages it holds; file -> lines."""
    free, held = sample_passages(80), [f"{HOLD_MARKER} {p}" for p in sample_passages(86)[80:]]
    files = {write_jsonl(root / f"part-{i}.jsonl", free[20 * i:20 * (i + 1)]): 20 for i in range(4)}
    files[write_jsonl(root / "part-held.jsonl", held)] = len(held)
    return files


@pytest.mark.parametrize(("signum", "code"), [pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
                                              pytest.param(signal.SIGINT, 130, id="SIGINT")])
def test_a_signal_while_staging_stops_in_one_line_releases_the_lease_and_a_rerun_resumes(
        ray_cluster, random_model, tmp_path, capsys, signum, code):
    files = corpus_with_held_passages(tmp_path / "corpus")
    out, log = tmp_path / "out", tmp_path / "stderr.log"
    args = job_args(tmp_path / "corpus", out, random_model, "--batch-size", "1", "--ray-address", "local")
    env = {**os.environ, "PYTHONPATH": str(ROOT), GATE_ENV: str(tmp_path / "gate"),
           "BONITO_RAY_PROGRESS_SECONDS": "0.5"}
    with open(log, "w") as stderr:
        job = subprocess.Popen([sys.executable, str(ROOT / "tests" / "held_engine_driver.py"), "generate", *args],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        progress = out / STAGING_DIR / PROGRESS_FILE
        wait_for(lambda: progress.exists() and ids_and_sources(out), "staged examples", job, log)
        job.send_signal(signum)
        job.wait(timeout=EXIT_DEADLINE)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    stderr = log.read_text()
    assert job.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    stops = [line for line in stderr.splitlines() if line.startswith("bonito-ray: stopped")]
    assert stops == [line for line in stderr.splitlines() if line.startswith("bonito-ray:")], stderr[-3000:]
    assert len(stops) == 1 and signal.Signals(signum).name in stops[0], stderr[-3000:]
    assert not (out / LEASE_FILE).exists()
    assert json.loads(progress.read_text())["state"] == "failed"
    assert "failed" in stderr  # the progress line's last word on the run
    staged = ids_and_sources(out)
    assert staged and set(staged) < set(expected(files))  # the work staged so far is kept, and is not all of it

    # The same command again resumes it: in this process, on the session's cluster (a second private start and
    # interpreter would only cost time).
    import ray

    from bonito_ray.cli import main

    (tmp_path / "gate").touch()  # nothing holds the plain command line's engine; the gate is for completeness
    capsys.readouterr()
    assert main(["generate", *job_args(tmp_path / "corpus", out, random_model, "--batch-size", "1",
                                       "--ray-address", ray.get_runtime_context().gcs_address)]) == 0
    printed = capsys.readouterr().out
    assert "resumed" in printed, printed
    assert ids_and_sources(out) == expected(files)  # every example exactly once


def test_a_self_guide_job_stopped_by_sigterm_is_failed_unleased_and_resumed_by_a_rerun(ray_cluster, tmp_path):
    """The same for SELF-GUIDE, in this process on the scripted model: SIGTERM comes as its second engine pass
    (round 2) starts, after two rounds were staged."""
    from bonito_ray import interrupt
    from bonito_ray.self_guide.config import SelfGuideConfig
    from bonito_ray.self_guide.pipeline import self_guide
    from tests.test_self_guide import scripted_stage, write_spec

    out = tmp_path / "out"
    config = SelfGuideConfig(spec=write_spec(tmp_path / "spec.yaml", examples=18), output=str(out), engine="echo",
                             inputs_per_round=6, rounds_per_pass=2, samples=5, seed=7)
    passes = []

    def stopped_at_second_pass(requests):
        passes.append(1)
        if len(passes) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return scripted_stage(requests)

    with interrupt.stop_on_signals(), pytest.raises(interrupt.Stopped) as stopped:
        self_guide(config, engine_stage=stopped_at_second_pass)
    assert stopped.value.exit_code == 143
    assert not (out / LEASE_FILE).exists()
    assert json.loads((out / STAGING_DIR / PROGRESS_FILE).read_text())["state"] == "failed"
    summary = self_guide(config, engine_stage=scripted_stage)
    assert summary.rounds_skipped == 2


def _like_ray_init(signum: int | None = None) -> None:
    """What ``ray.init`` does to SIGTERM: a handler of its own that exits with the signal's number; then,
    with ``signum``, that signal comes while it runs."""
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(number))
    if signum is not None:
        os.kill(os.getpid(), signum)
        time.sleep(0.01)  # the handler runs between bytecodes


def test_handlers_are_back_after_ray_init_and_a_sigterm_during_it_is_a_stop():
    from bonito_ray import interrupt

    before = signal.getsignal(signal.SIGTERM)
    with interrupt.stop_on_signals():
        ours = signal.getsignal(signal.SIGTERM)
        with interrupt.kept_across_ray_init():
            _like_ray_init()
        assert signal.getsignal(signal.SIGTERM) is ours
        with pytest.raises(interrupt.Stopped) as stopped, interrupt.kept_across_ray_init():
            _like_ray_init(signal.SIGTERM)
        assert stopped.value.exit_code == 143
        assert signal.getsignal(signal.SIGTERM) is interrupt._already_stopping  # a repeat is ignored, as after _stop
    assert signal.getsignal(signal.SIGTERM) is before
    # A process that does not handle the signals this way (the Python API) keeps Ray's handler, and its exit.
    try:
        with pytest.raises(SystemExit), interrupt.kept_across_ray_init():
            _like_ray_init(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is not before
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_second_signal_while_stopping_does_not_cut_the_cleanup_short():
    from bonito_ray import interrupt

    cleaned = False
    with pytest.raises(interrupt.Stopped) as stopped, interrupt.stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # e.g. Ctrl-C pressed again, or kubectl's TERM after it
            time.sleep(0.01)
            cleaned = True
    assert cleaned and stopped.value.exit_code == 130
