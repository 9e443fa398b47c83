"""finetune's progress line (step, loss, tokens/s, ETA) while it trains, and Ray Train's noise kept off the console."""

import io
import logging
import logging.config
import re
from pathlib import Path

import pytest

from bonito_ray import console
from bonito_ray.adapt.finetune import FinetuneConfig, finetune
from bonito_ray.adapt.train_progress import (STARTING, TRAINED, TRAINING, WRITING, StepHistory,
                                             format_train_line)
from bonito_ray.progress import INTERVAL_ENV

STEP_LINE = re.compile(r"fine-tuning step (\d+)/(\d+) \(\d+%\)  loss (\d+\.\d{4})  ")


class TerminalStream(io.StringIO):
    """Stands for a terminal: the line is rewritten in place, at every refresh."""

    def isatty(self) -> bool:
        return True


def test_the_line_shows_step_loss_speed_and_eta():
    report = {"step": 12, "total_steps": 40, "loss": 2.345678, "phase": TRAINING, "tokens_per_second": 1234.4,
              "eta_seconds": 200.0, "state": "running", "elapsed_seconds": 302.0}
    assert format_train_line(report) == (
        "bonito-ray: fine-tuning step 12/40 (30%)  loss 2.3457  1,234 tok/s  ETA 3m20s  [5m02s]")
    starting = {**report, "step": None, "loss": None, "phase": STARTING, "tokens_per_second": None,
                "eta_seconds": None}
    assert format_train_line(starting) == (
        "bonito-ray: fine-tuning step 0/40  loss -  - tok/s  starting the workers  [5m02s]")
    assert format_train_line({**report, "step": 40, "phase": WRITING}).endswith("writing the adapter  [5m02s]")
    assert "  done  " in format_train_line({**report, "step": 40, "state": TRAINED})
    assert "  failed  " in format_train_line({**report, "state": "failed"})


def test_rates_and_eta_come_from_this_runs_steps():
    history = StepHistory(total_steps=40)
    assert history.figures()["phase"] == STARTING
    # A resumed run: its first step is 10; its speed is counted from there, not from step 0.
    history.add(1000.0, 10, 3.0, 500)
    first = history.figures()
    assert first["phase"] == TRAINING and first["eta_seconds"] is None and first["tokens_per_second"] is None
    history.add(1010.0, 12, 2.8, 1000)
    history.add(1020.0, 14, 2.5, 1000)
    later = history.figures()
    assert later["tokens_per_second"] == 100.0  # the 2,000 tokens after the first step, in 20 s
    assert later["eta_seconds"] == 130.0  # 26 steps left at 0.2 steps/s
    assert format_train_line({**later, "state": "running", "elapsed_seconds": 20}) == (
        "bonito-ray: fine-tuning step 14/40 (35%)  loss 2.5000  100 tok/s  ETA 2m10s  [0m20s]")
    # Over the last minute only: a slower pace now shows in the rate and the ETA.
    history.add(1100.0, 15, 2.4, 500)
    history.add(1160.0, 16, 2.3, 500)
    recent = history.figures()
    assert recent["eta_seconds"] == round(24 / (2 / 140), 1) and recent["tokens_per_second"] == round(1000 / 140, 1)
    history.add(1170.0, 40, 2.0, 500)
    assert history.figures()["phase"] == WRITING and history.figures()["eta_seconds"] == 0.0


def test_a_run_shows_its_steps_while_it_trains(ray_cluster, finetune_target, finetune_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0.1")  # refresh often: a tiny run's steps take a fraction of a second each
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    stream = TerminalStream()
    steps = 24  # about 3 s of steps on a quiet machine: a line shows some of them however loaded it is
    config = FinetuneConfig(model=finetune_target, dataset=finetune_dataset, output=str(tmp_path / "run"),
                            lora_rank=4, batch_size=8, per_device_batch_size=1, max_steps=steps, checkpoint_every=100,
                            validation_fraction=0.1)
    summary = finetune(config, progress_stream=stream)
    assert summary.steps == steps

    lines = [line for line in stream.getvalue().split("\r\x1b[K") if line]
    assert lines[-1].startswith(f"bonito-ray: fine-tuning step {steps}/{steps} (100%)")
    assert "  done  " in lines[-1] and lines[-1].endswith("\n")
    shown = [(int(m[1]), int(m[2]), float(m[3])) for m in map(STEP_LINE.search, lines[:-1]) if m]
    # Shown before the run ended: a step strictly between 0 and the total, with its loss as the summary has it.
    during = [(step, loss) for step, total, loss in shown if 0 < step < steps and total == steps]
    assert during, lines
    losses = dict(summary.train_loss)
    assert all(loss == pytest.approx(losses[step], abs=1e-4) for step, loss in during)
    assert [step for step, _, _ in shown] == sorted(step for step, _, _ in shown)


def test_ray_trains_resource_request_timeouts_go_to_the_train_log(ray_cluster):
    """Ray Train's controller logs a timed-out resource request with its traceback (a loaded machine): the
    private cluster's workers write it to the job's train log, not to their console."""
    import ray

    @ray.remote(max_calls=1)  # the hook changes this worker process: it ends after the task
    def timed_out_request():
        from ray.exceptions import GetTimeoutError

        console.quiet_private_cluster_workers()  # what a private cluster runs in each worker
        # then Ray Train sets up its loggers (as its controller does), which resets their children's handlers
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                                   "loggers": {"ray.train": {"level": "INFO"}}})
        shown = io.StringIO()
        logging.getLogger().addHandler(logging.StreamHandler(shown))  # the worker's console
        try:
            raise GetTimeoutError("Get timed out: some object(s) not ready.")
        except GetTimeoutError:
            logging.getLogger(console.TRAIN_AUTOSCALING_LOGGER).warning(
                "Failed to send resource request for train-1.", exc_info=True)
        return shown.getvalue(), str(console.train_log_path())

    shown, log = ray.get(timed_out_request.remote())
    assert shown == ""
    text = Path(log).read_text()
    assert "Failed to send resource request for train-1." in text and "GetTimeoutError" in text
