"""SELF-GUIDE's live progress: the line and the JSON file of ``bonito_ray.progress.LiveProgress``.

Every step runs on the driver, so the figures are counted there, with no actor: a round's kept and
dropped inputs when it is staged (or found staged, on resume), an engine pass's requests as their
blocks come back from the engine, annotation's drops and accepted examples when the vote is done.
The line (one line; cut here)::

    bonito-ray self-guide: rounds 3/40 (pass 12/30 requests)  inputs kept 21  annotation -  accepted 0
        dropped 9 inputs, 0 samples, 0 by the vote  inputs  [1m05s]

and the file's fields (beside ``state``, ``run_id``, ``started_at``, ``updated_at``, ``elapsed_seconds``)::

    {"step": "inputs" | "annotation", "rounds_total", "rounds_done" (skipped included), "rounds_skipped"
     (staged by an earlier attempt), "pass_requests_total", "pass_requests_done" (the input generation
     pass under way), "inputs_kept", "samples_total", "samples_done" (annotation requests), "accepted",
     "dropped": {stage: {reason: rows}} (the stages of ``bonito_ray.schema.SELF_GUIDE_STAGES``, as the
     rejects folders and the summary count them)}
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from typing import Any

from bonito_ray.progress import LiveProgress, duration, state_word
from bonito_ray.schema import SELF_GUIDE_INPUT_STAGE, SELF_GUIDE_SAMPLE_STAGE, SELF_GUIDE_STAGES, SELF_GUIDE_VOTE_STAGE

INPUTS, ANNOTATION = "inputs", "annotation"  # the steps
DROPPED_WORDS = {SELF_GUIDE_INPUT_STAGE: "inputs", SELF_GUIDE_SAMPLE_STAGE: "samples",
                 SELF_GUIDE_VOTE_STAGE: "by the vote"}


class SelfGuideProgress(LiveProgress):
    """The figures of one SELF-GUIDE run, told by its steps (main thread), read by the refresh (its own)."""

    def __init__(self, fs, root: str, run_id: str, rounds: int, stream=None) -> None:
        super().__init__(fs, root, run_id, stream)
        self.lock = threading.Lock()
        self.counts: dict[str, Any] = {
            "step": INPUTS, "rounds_total": rounds, "rounds_done": 0, "rounds_skipped": 0,
            "pass_requests_total": 0, "pass_requests_done": 0, "inputs_kept": 0, "samples_total": 0,
            "samples_done": 0, "accepted": 0, "dropped": {stage: {} for stage in SELF_GUIDE_STAGES}}

    def engine_pass(self, requests: int) -> None:
        """An input generation pass of ``requests`` requests goes to the engine."""
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
            return copy.deepcopy(self.counts)

    def line(self, report: dict[str, Any]) -> str:
        return format_line(report)


def format_line(report: dict[str, Any]) -> str:
    """The one-line view: rounds, the input pass under way, inputs kept, annotation, accepted, drops by stage."""
    rounds = f"rounds {report['rounds_done']}/{report['rounds_total']}"
    if report["step"] == INPUTS and report["pass_requests_total"] and report["state"] == "running":
        rounds += f" (pass {report['pass_requests_done']:,}/{report['pass_requests_total']:,} requests)"
    annotation = (f"{report['samples_done']:,}/{report['samples_total']:,} samples"
                  if report["step"] == ANNOTATION else "-")
    dropped = ", ".join(f"{sum(report['dropped'][stage].values()):,} {word}" for stage, word in DROPPED_WORDS.items())
    return (f"bonito-ray self-guide: {rounds}  inputs kept {report['inputs_kept']:,}  annotation {annotation}  "
            f"accepted {report['accepted']:,}  dropped {dropped}  {state_word(report['state'], report['step'])}  "
            f"[{duration(report['elapsed_seconds'])}]")
