"""SELF-GUIDE's live progress: the line and the JSON file of ``bonito_ray.progress.LiveProgress``.

Every step runs on the driver, so the figures are counted there: a round's kept and dropped inputs
when it is staged (or found staged, on resume), annotation's drops and accepted examples when the vote
is done. An engine pass's requests are counted as the engine returns them: its replicas tell a
``bonito_ray.progress.ProgressCounter`` (``engine``) each batch, and that they have started (once
per job where the engine keeps its replicas, ``engine_kept``: vllm; else every pass starts the engine
anew); Ray Data hands the driver a replica's batches only when its task, which may hold several, is
done (the driver's own count of the blocks it gets is the floor). The line (one line; cut here)::

    bonito-ray self-guide: rounds 3/40 (pass 12/30 requests)  inputs kept 21  annotation -  accepted 0
        dropped 9 inputs, 0 samples, 0 by the vote  [1m05s]

(``starting the engine`` before the time while a pass waits for the engine; ``done`` or ``failed`` at
the end), and the file's fields (beside ``state``, ``run_id``, ``started_at``, ``updated_at``,
``elapsed_seconds``)::

    {"step": "inputs" | "annotation", "engine_starting" (the pass under way waits for the engine: none of
     its replicas has started and nothing has come back), "rounds_total", "rounds_done" (skipped
     included), "rounds_skipped" (staged by an earlier attempt), "pass_requests_total",
     "pass_requests_done" (the input generation pass under way), "inputs_kept", "samples_total",
     "samples_done" (annotation requests), "accepted", "dropped": {stage: {reason: rows}} (the stages of
     ``bonito_ray.schema.SELF_GUIDE_STAGES``, as the rejects folders and the summary count them)}
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import Counter
from typing import Any

import ray

from bonito_ray.progress import STARTING, LiveProgress, duration, state_word
from bonito_ray.schema import SELF_GUIDE_INPUT_STAGE, SELF_GUIDE_SAMPLE_STAGE, SELF_GUIDE_STAGES, SELF_GUIDE_VOTE_STAGE

logger = logging.getLogger(__name__)

INPUTS, ANNOTATION = "inputs", "annotation"  # the steps
DROPPED_WORDS = {SELF_GUIDE_INPUT_STAGE: "inputs", SELF_GUIDE_SAMPLE_STAGE: "samples",
                 SELF_GUIDE_VOTE_STAGE: "by the vote"}


class SelfGuideProgress(LiveProgress):
    """The figures of one SELF-GUIDE run, told by its steps (main thread), read by the refresh (its own);
    ``engine``: the ``ProgressCounter`` the engine's replicas report to (None: no replica reports)."""

    def __init__(self, fs, root: str, run_id: str, rounds: int, stream=None, engine=None,
                 engine_kept: bool = False) -> None:
        super().__init__(fs, root, run_id, stream)
        self.engine = engine
        self.engine_kept = engine_kept  # the engine's replicas start once for the job, not at every pass
        self.before_pass = (0, 0)  # (replicas started, rows returned) before the pass under way, by the engine
        self.lock = threading.Lock()
        self.counts: dict[str, Any] = {
            "step": INPUTS, "rounds_total": rounds, "rounds_done": 0, "rounds_skipped": 0,
            "pass_requests_total": 0, "pass_requests_done": 0, "inputs_kept": 0, "samples_total": 0,
            "samples_done": 0, "accepted": 0, "dropped": {stage: {} for stage in SELF_GUIDE_STAGES}}

    def engine_pass(self, requests: int) -> None:
        """An input generation pass of ``requests`` requests goes to the engine."""
        self._pass_begins()
        with self.lock:
            self.counts["pass_requests_total"], self.counts["pass_requests_done"] = requests, 0

    def returned(self, rows: int) -> None:
        """The engine gave back ``rows`` more generations of the pass under way."""
        with self.lock:
            self.counts["pass_requests_done" if self.counts["step"] == INPUTS else "samples_done"] += rows

    def round_done(self, kept: int, dropped_reasons: list[str], skipped: bool = False) -> None:
        """A round is staged (``skipped``: found staged by an earlier attempt)."""
        with self.lock:
            self.counts["rounds_done"] += 1
            self.counts["rounds_skipped"] += skipped
            self.counts["inputs_kept"] += kept
            self._drop(SELF_GUIDE_INPUT_STAGE, dropped_reasons)

    def annotation_started(self, samples: int) -> None:
        """Annotation's ``samples`` requests go to the engine (a pass of their own)."""
        self._pass_begins()
        with self.lock:
            self.counts["step"], self.counts["samples_total"] = ANNOTATION, samples

    def annotated(self, accepted: int, sample_reasons: list[str], vote_reasons: list[str]) -> None:
        """The vote is done: what annotation accepted and dropped."""
        with self.lock:
            self.counts["accepted"] = accepted
            self._drop(SELF_GUIDE_SAMPLE_STAGE, sample_reasons)
            self._drop(SELF_GUIDE_VOTE_STAGE, vote_reasons)

    def _drop(self, stage: str, reasons: list[str]) -> None:
        counted = Counter(self.counts["dropped"][stage]) + Counter(reasons)
        self.counts["dropped"][stage] = dict(sorted(counted.items()))

    def report(self) -> dict[str, Any]:
        with self.lock:
            counts = copy.deepcopy(self.counts)
        total, done = ("pass_requests_total", "pass_requests_done") if counts["step"] == INPUTS else (
            "samples_total", "samples_done")
        started, returned = self._engine_figures()
        # replicas up for the pass: a kept engine's started once, for every pass; else each pass starts its own
        replicas = started if self.engine_kept else started - self.before_pass[0]
        returned -= self.before_pass[1]
        counts[done] = min(counts[total], max(counts[done], returned))  # a retried batch is told twice
        return {**counts, "engine_starting": bool(counts[total]) and not counts[done] and not replicas}

    def _pass_begins(self) -> None:
        try:
            self.before_pass = self._engine_figures()
        except Exception as err:  # noqa: BLE001 - progress must never fail the job
            logger.debug("progress: the engine's figures are not known: %s", err)

    def _engine_figures(self) -> tuple[int, int]:
        """(replicas started, rows returned) as the engine's replicas told them (none: no engine reports)."""
        if self.engine is None:
            return 0, 0
        told = ray.get(self.engine.snapshot.remote())
        return told["engine_replicas_started"], told["prompts_done"]

    def line(self, report: dict[str, Any]) -> str:
        return format_line(report)


def format_line(report: dict[str, Any]) -> str:
    """The one-line view: rounds, the input pass under way, inputs kept, annotation, accepted, drops by stage, and
    whether a pass waits for the engine to start (or the run's end: done, failed)."""
    rounds = f"rounds {report['rounds_done']}/{report['rounds_total']}"
    if report["step"] == INPUTS and report["pass_requests_total"] and report["state"] == "running":
        rounds += f" (pass {report['pass_requests_done']:,}/{report['pass_requests_total']:,} requests)"
    annotation = (f"{report['samples_done']:,}/{report['samples_total']:,} samples"
                  if report["step"] == ANNOTATION else "-")
    dropped = ", ".join(f"{sum(report['dropped'][stage].values()):,} {word}" for stage, word in DROPPED_WORDS.items())
    when = state_word(report["state"], STARTING if report["engine_starting"] else "")
    return (f"bonito-ray self-guide: {rounds}  inputs kept {report['inputs_kept']:,}  annotation {annotation}  "
            f"accepted {report['accepted']:,}  dropped {dropped}  {when + '  ' if when else ''}"
            f"[{duration(report['elapsed_seconds'])}]")
