"""Live progress of a job: one console line and a small JSON file for monitoring.

``LiveProgress`` shows a job's figures (when, and where: below) for every job; this module's
``Reporter`` is the generation job's, ``bonito_ray.self_guide.progress`` SELF-GUIDE's.

How it is observed: one small actor (``ProgressCounter``, 0 CPUs) holds a job's running totals.
- The engine's replicas tell it each batch they return (rows, generated tokens) and that they have
  started (``reporting`` wraps an engine's map function or actor class), so that prompts are counted
  as the engine returns them, whatever ``--rows-per-file``: downstream of the engine, every step is
  fused into the write, whose blocks are bundled into files before any of them runs.
- The last map stage before the writer (``observe``) tells it each block's verdicts: accepted, not
  accepted by reason (and generated tokens, for an engine stage that does not report).
- ``drop_done`` tells it the requests an earlier attempt already wrote.
The cost: one fire-and-forget actor call per engine batch and per written block, nothing per row; on
the driver, one call per refresh. Verdicts lag the prompts done by up to one file of rows.

The total is known once the dedup pass has counted the distinct passages (passages x task types
x n); with ``--no-dedup`` it is not known before the end, and the line shows no ETA. A batch a
failed task retries is counted again (the counts are for reading, the dataset's are the manifest's).

The driver (``LiveProgress``) refreshes every ``BONITO_RAY_PROGRESS_SECONDS`` (default 5):
- on a terminal, one line rewritten in place on stderr (every second);
- otherwise (``ray job logs``, a file), a plain log line every 30 s;
- always, ``OUTPUT/.staging/_progress.json`` (written whole; gone with the staging dir at commit); a
  generation job's::

    {"state": "running" | "generated" | "failed", "run_id", "started_at", "updated_at" (UTC ISO 8601),
     "elapsed_seconds", "step": "reading the corpus" (dedup's pass, before the engine is asked for) |
     "starting the engine" (no replica has started and none has returned a batch) | "generating",
     "prompts_total" (null: not known yet), "prompts_done" (returned by the engine + skipped; never fewer
     than written), "prompts_skipped" (written by an earlier attempt), "accepted", "rejected" (generations
     that did not parse, requests the engine refused), "filtered" (tasks a validator rejected), "by_reason"
     (both), "engine_replicas_started", "generated_tokens", "tokens_per_second", "prompts_per_second"
     (over the last minute), "eta_seconds" (null: not known)}
"""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from bonito_ray.rejects import GENERATION_REASONS
from bonito_ray.schema import PROGRESS_FILE, STAGING_DIR
from bonito_ray.storage import join, write_bytes

logger = logging.getLogger(__name__)

INTERVAL_ENV = "BONITO_RAY_PROGRESS_SECONDS"
FILE_SECONDS = 5.0  # the JSON file and the poll of the counter
TTY_SECONDS = 1.0  # the line on a terminal
LINE_SECONDS = 30.0  # a plain line when stderr is not a terminal
RATE_WINDOW_SECONDS = 60.0
# A counter actor that does not answer in this time (its node lost, a stalled cluster) costs one refresh, and
# at the end the last line's figures: never the job's own end.
COUNTER_DEADLINE_SECONDS = 30.0


READING, STARTING, GENERATING = "reading the corpus", "starting the engine", "generating"  # a job's steps


@ray.remote(num_cpus=0)
class ProgressCounter:
    """Running totals of one job, reported by its stages and its engine's replicas."""

    def __init__(self) -> None:
        self.counts: dict[str, Any] = {"prompts_total": None, "prompts_skipped": 0, "accepted": 0, "rejected": 0,
                                       "filtered": 0, "by_reason": {}, "engine_replicas_started": 0}
        # (rows, generated tokens) as the engine returned them and as they were written
        self.returned, self.written = [0, 0], [0, 0]

    def set_total(self, total: int) -> None:
        self.counts["prompts_total"] = total

    def skipped(self, rows: int) -> None:
        self.counts["prompts_skipped"] += rows

    def engine_started(self) -> None:
        self.counts["engine_replicas_started"] += 1

    def engine_returned(self, rows: int, generated_tokens: int) -> None:
        self.returned[0] += rows
        self.returned[1] += generated_tokens

    def record(self, accepted: int, not_accepted: dict[str, int], generated_tokens: int) -> None:
        """``not_accepted``: rows by reason, generation rejects and validators' alike (split here as the
        summary splits them: rejected, filtered)."""
        counts = self.counts
        counts["accepted"] += accepted
        for reason, rows in not_accepted.items():
            counts["rejected" if reason in GENERATION_REASONS else "filtered"] += rows
            counts["by_reason"][reason] = counts["by_reason"].get(reason, 0) + rows
        self.written[0] += accepted + sum(not_accepted.values())
        self.written[1] += generated_tokens

    def snapshot(self) -> dict[str, Any]:
        """The totals; prompts and tokens as the engine returned them, or as written where more (an engine
        stage that does not report)."""
        rows, tokens = (max(r, w) for r, w in zip(self.returned, self.written))
        return {**json.loads(json.dumps(self.counts)), "prompts_done": self.counts["prompts_skipped"] + rows,
                "generated_tokens": tokens}


def reporting(udf, counter, returns=None):
    """An engine's map function or actor class (``udf``) that tells ``counter`` (a ``ProgressCounter``; None:
    ``udf`` itself) of each batch it returns, and an actor class also of each replica it starts.
    ``returns``: a returned batch -> (rows, generated tokens); default a pyarrow table's (``table_returns``).

    The name stays the engine's (Ray names its operators and actors after it)."""
    if counter is None:
        return udf
    returns = returns or table_returns
    if not isinstance(udf, type):
        @functools.wraps(udf)
        def function(batch, *args, **kwargs):
            out = udf(batch, *args, **kwargs)
            _tell(counter.engine_returned, returns, out)
            return out

        return function
    call = udf.__call__

    def __init__(self, *args, **kwargs) -> None:
        udf.__init__(self, *args, **kwargs)
        _tell(counter.engine_started)

    if inspect.isasyncgenfunction(call):  # ray.data.llm's stages
        async def __call__(self, batch, *args, **kwargs):
            async for out in call(self, batch, *args, **kwargs):
                _tell(counter.engine_returned, returns, out)
                yield out
    else:
        def __call__(self, batch, *args, **kwargs):
            out = call(self, batch, *args, **kwargs)
            _tell(counter.engine_returned, returns, out)
            return out

    return type(udf.__name__, (udf,), {"__init__": __init__, "__call__": __call__, "__module__": udf.__module__,
                                       "__qualname__": udf.__qualname__, "__doc__": udf.__doc__})


def table_returns(batch: pa.Table) -> tuple[int, int]:
    """The rows of an engine's returned batch (a pyarrow table) and the tokens it generated."""
    if "num_generated_tokens" not in batch.column_names:
        return batch.num_rows, 0
    return batch.num_rows, int(pc.sum(batch["num_generated_tokens"]).as_py() or 0)


def _tell(method, figures=None, batch=None) -> None:
    """Call the counter's ``method`` (with ``figures(batch)`` if given), fire and forget."""
    try:
        method.remote(*(figures(batch) if figures else ()))
    except Exception as err:  # noqa: BLE001 - progress must never fail an engine batch
        logger.debug("progress: could not report: %s", err)


def observe(examples, counter):
    """``examples`` with every block's verdicts counted by ``counter`` on its way to the writer (rows unchanged)."""
    # Each block as it comes (batch_size=None; Ray Data's default bundles 1,024 rows). With default
    # resources it is fused into the write, so blocks are counted as each file's rows are bundled
    # (every --rows-per-file rows): the prompts done are the engine's (``reporting``), sooner. Its own
    # operator would count verdicts sooner, but one with 0 or a sliver of CPU held every row back from
    # the writer until the engine had finished them all (measured with a vLLM replica): streaming to
    # the writer comes first.
    return examples.map_batches(count_block, batch_format="pyarrow", batch_size=None,
                                fn_kwargs={"counter": counter})


def count_block(block: pa.Table, *, counter) -> pa.Table:
    """Report one block's accepted rows, rejects by reason and generated tokens; pass it on unchanged."""
    if block.num_rows:
        reasons = {v["values"]: v["counts"] for v in pc.value_counts(block["reason"]).to_pylist()
                   if v["values"] is not None}
        tokens = int(pc.sum(block["num_generated_tokens"]).as_py() or 0)
        counter.record.remote(block.num_rows - sum(reasons.values()), reasons, tokens)
    return block


class LiveProgress:
    """The driver's side of a job's progress, in a daemon thread: ``report(state)`` (the JSON file's fields) and
    ``line(report)`` (the console's words) are the job's; when and where they are shown is here, for every job:
    the JSON file every ``BONITO_RAY_PROGRESS_SECONDS``; on a terminal, the line rewritten in place every second;
    otherwise a plain log line every 30 s and at the end."""

    def __init__(self, fs, root: str | None, run_id: str, stream=None) -> None:
        # fs None: no JSON file (a job without a staging dir: finetune)
        self.fs, self.run_id = fs, run_id
        self.path = join(root, STAGING_DIR, PROGRESS_FILE) if fs is not None else None
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = float(os.environ.get(INTERVAL_ENV, FILE_SECONDS))
        self.started, self.started_at = time.monotonic(), _now()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="bonito-ray-progress", daemon=True)
        self.last_line = 0.0

    def report(self) -> dict[str, Any]:
        """The job's own figures, now (the file adds the state, the run and the times)."""
        raise NotImplementedError

    def line(self, report: dict[str, Any]) -> str:
        raise NotImplementedError

    def start(self) -> "LiveProgress":
        self.thread.start()
        return self

    def stop(self, state: str) -> dict[str, Any]:
        """Stop refreshing and write the last figures with ``state`` (``generated`` or ``failed``)."""
        self.stopped.set()
        self.thread.join()
        try:
            return self._refresh(state, final=True)
        except Exception as err:  # noqa: BLE001 - never hide the job's own outcome
            logger.debug("progress: last refresh failed: %s", err)
            return {}

    def _loop(self) -> None:
        last_file = 0.0
        while not self.stopped.wait(min(self.interval, TTY_SECONDS) if self.tty else self.interval):
            try:
                now = time.monotonic()
                write = now - last_file >= self.interval
                self._refresh("running", write=write)
                last_file = now if write else last_file
            except Exception as err:  # noqa: BLE001 - progress must never fail the job
                logger.debug("progress refresh failed: %s", err)

    def _refresh(self, state: str, *, write: bool = True, final: bool = False) -> dict[str, Any]:
        report = {**self.report(), "state": state, "run_id": self.run_id, "started_at": self.started_at,
                  "updated_at": _now(), "elapsed_seconds": round(time.monotonic() - self.started, 1)}
        if write and self.path is not None:
            write_bytes(self.fs, self.path, json.dumps(report, sort_keys=True).encode("utf-8"))
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line(report) + ("\n" if final else ""))
            self.stream.flush()
        elif final or now - self.last_line >= LINE_SECONDS:
            logger.info("%s", self.line(report))
            self.last_line = now
        return report


class Reporter(LiveProgress):
    """A generation job's progress: the counter's totals, with rates over the last minute and an ETA.

    Until the pipeline calls ``engine_asked`` (dedup's first pass reads the corpus before it), the step is
    reading the corpus; then starting the engine until a replica has started or a batch has come back."""

    def __init__(self, counter, fs, root: str, run_id: str, stream=None) -> None:
        super().__init__(fs, root, run_id, stream)
        self.counter = counter
        self.history: deque[tuple[float, int, int]] = deque()  # (time, generated prompts, generated tokens)
        self.asked = threading.Event()

    def engine_asked(self) -> None:
        """The pipeline runs: the engine's replicas are starting."""
        self.asked.set()

    def report(self) -> dict[str, Any]:
        """The counter's totals, with the step, rates over the last minute and the ETA they give."""
        counts = ray.get(self.counter.snapshot.remote(), timeout=COUNTER_DEADLINE_SECONDS)
        now = time.monotonic()
        generated = counts["prompts_done"] - counts["prompts_skipped"]
        self.history.append((now, generated, counts["generated_tokens"]))
        while len(self.history) > 2 and now - self.history[0][0] > RATE_WINDOW_SECONDS:
            self.history.popleft()
        then, prompts_then, tokens_then = self.history[0]
        if now - then < 1e-6:
            then, prompts_then, tokens_then = self.started, 0, 0
        span = max(now - then, 1e-6)
        prompts_rate = (generated - prompts_then) / span
        total = counts["prompts_total"]
        eta = None
        if total is not None and prompts_rate > 0:
            eta = round(max(total - counts["prompts_done"], 0) / prompts_rate, 1)
        if generated or counts["engine_replicas_started"]:
            step = GENERATING
        else:
            step = STARTING if self.asked.is_set() else READING
        return {**counts, "step": step,
                "tokens_per_second": round((counts["generated_tokens"] - tokens_then) / span, 1),
                "prompts_per_second": round(prompts_rate, 2), "eta_seconds": eta}

    def line(self, report: dict[str, Any]) -> str:
        return format_line(report)


def format_line(report: dict[str, Any]) -> str:
    """The one-line view: prompts done / total, accepted / rejected / filtered, generated tokens/s, and the ETA
    (or what the job waits for: the corpus read, the engine's start)."""
    total = report["prompts_total"]
    done = report["prompts_done"]
    of = f"{done:,}/{total:,} ({done / total:.0%})" if total else f"{done:,}/?"
    eta = report["eta_seconds"]
    running = f"ETA {duration(eta)}" if eta is not None else "ETA ?"
    when = state_word(report["state"], running if report["step"] == GENERATING else report["step"])
    return (f"bonito-ray: prompts {of}  accepted {report['accepted']:,}  rejected {report['rejected']:,}  "
            f"filtered {report['filtered']:,}  "
            f"{report['tokens_per_second']:,.0f} tok/s  {when}  [{duration(report['elapsed_seconds'])}]")


def state_word(state: str, running: str) -> str:
    """What a progress line says of a job's state: ``done``, ``failed``, else ``running`` (e.g. its ETA)."""
    return {"generated": "done", "failed": "failed"}.get(state, running)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
