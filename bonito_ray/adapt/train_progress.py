"""Live progress of a fine-tuning run: one console line (step, loss, tokens/s, ETA), as generate has.

Rank 0 tells a small actor (``StepCounter``, 0 CPUs) of each optimizer step it finishes: the step, its
loss and the tokens of the global batch (one fire-and-forget actor call per step; a failing call never
fails training). The driver (``TrainProgress``, a ``bonito_ray.progress.LiveProgress``) asks it for the
latest figures and shows them where and when generate's line is shown: on a terminal, one line rewritten
in place every second; otherwise a plain log line every 30 s and at the end. There is no progress file:
the output holds the checkpoints and, at the end, the summary.

Rates are over the last minute of this run's steps (``StepHistory``), timed where the reports arrive; the
ETA is the steps left at that rate.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import ray

from bonito_ray.progress import COUNTER_DEADLINE_SECONDS, RATE_WINDOW_SECONDS, LiveProgress, duration

logger = logging.getLogger(__name__)

STARTING, TRAINING, WRITING = "starting the workers", "training", "writing the adapter"  # a run's phases
TRAINED = "trained"  # the state of a run that ended well (``stop``'s argument)


class StepHistory:
    """A run's steps as they come, with the times they came (``clock``'s seconds): the figures of its
    progress line. Rates are over the last minute of this run's steps, from its first step seen: a resumed
    run's earlier steps and the workers' start are not counted as its speed."""

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.latest: tuple[int, float] | None = None  # (step, loss)
        self.tokens = 0  # trained by this run so far
        self.seen: deque[tuple[float, int, int]] = deque()  # (time, step, tokens)

    def add(self, now: float, step: int, loss: float, tokens: int) -> None:
        self.latest, self.tokens = (step, loss), self.tokens + tokens
        self.seen.append((now, step, self.tokens))
        while len(self.seen) > 2 and now - self.seen[1][0] > RATE_WINDOW_SECONDS:
            self.seen.popleft()

    def figures(self) -> dict[str, Any]:
        """The step, its loss, the phase, tokens/s and the ETA (None: not known yet)."""
        if self.latest is None:
            return {"step": None, "total_steps": self.total_steps, "loss": None, "phase": STARTING,
                    "tokens_per_second": None, "eta_seconds": None}
        (then, step_then, tokens_then), (now, step, tokens) = self.seen[0], self.seen[-1]
        span = now - then
        steps_rate = (step - step_then) / span if span > 0 else 0.0
        left = self.total_steps - step
        eta = 0.0 if left <= 0 else round(left / steps_rate, 1) if steps_rate > 0 else None
        return {"step": step, "total_steps": self.total_steps, "loss": self.latest[1],
                "phase": WRITING if left <= 0 else TRAINING,
                "tokens_per_second": round((tokens - tokens_then) / span, 1) if span > 0 else None,
                "eta_seconds": eta}


@ray.remote(num_cpus=0)
class StepCounter:
    """A fine-tuning run's ``StepHistory``, on the clock of the one process that receives rank 0's reports."""

    def __init__(self, total_steps: int) -> None:
        self.history = StepHistory(total_steps)

    def step(self, step: int, loss: float, tokens: int) -> None:
        self.history.add(time.monotonic(), step, loss, tokens)

    def figures(self) -> dict[str, Any]:
        return self.history.figures()


def started_counter(total_steps: int) -> Any:
    """A run's ``StepCounter``, up before the workers start: reports sent to an actor still starting wait for it,
    and on a loaded machine a short run's steps then all came in at once, at its end. One that does not start
    within the deadline is used as it is (it starts late: the line moves late)."""
    counter = StepCounter.remote(total_steps)
    try:
        ray.get(counter.figures.remote(), timeout=COUNTER_DEADLINE_SECONDS)
    except ray.exceptions.GetTimeoutError:
        logger.debug("progress: the step counter did not start within %.0f s", COUNTER_DEADLINE_SECONDS)
    return counter


def tell_step(counter: Any, step: int, loss: float, tokens: int) -> None:
    """Rank 0, after each step: report it to ``counter`` (None: no progress is kept), fire and forget."""
    if counter is None:
        return
    try:
        counter.step.remote(step, loss, tokens)
    except Exception as err:  # noqa: BLE001 - progress must never fail training
        logger.debug("progress: could not report step %d: %s", step, err)


class TrainProgress(LiveProgress):
    """The driver's view of a fine-tuning run: its ``StepCounter``'s figures, shown as generate's line is."""

    def __init__(self, counter: Any, stream=None) -> None:
        super().__init__(None, None, run_id="", stream=stream)
        self.counter = counter

    def report(self) -> dict[str, Any]:
        return ray.get(self.counter.figures.remote(), timeout=COUNTER_DEADLINE_SECONDS)

    def line(self, report: dict[str, Any]) -> str:
        return format_train_line(report)


def format_train_line(report: dict[str, Any]) -> str:
    """The one-line view: step / total, the last step's loss, tokens/s, and the ETA (or the phase: the workers
    starting, the adapter being written), then the time so far."""
    step, total = report["step"], report["total_steps"]
    of = f"{step:,}/{total:,} ({step / total:.0%})" if step is not None else f"0/{total:,}"
    loss = f"{report['loss']:.4f}" if report["loss"] is not None else "-"
    rate = report["tokens_per_second"]
    speed = f"{rate:,.0f} tok/s" if rate is not None else "- tok/s"
    eta = report["eta_seconds"]
    running = report["phase"] if report["phase"] != TRAINING else f"ETA {duration(eta) if eta is not None else '?'}"
    when = {TRAINED: "done", "failed": "failed"}.get(report.get("state", "running"), running)
    return (f"bonito-ray: fine-tuning step {of}  loss {loss}  {speed}  {when}  "
            f"[{duration(report.get('elapsed_seconds', 0.0))}]")
