"""The progress line moves as the engine returns prompts, whatever the file size (issue 26, item 3).

Counts come from the engine's replicas (``bonito_ray.progress.reporting``), not from the writer, which
bundles a file's rows (``--rows-per-file``, 50,000 by default) before any of them is counted. The
runs below hold the engine after its first batch until the progress file has shown that batch counted,
so what they check does not depend on how fast this machine runs the engine against the reporter.
"""

import asyncio
import functools
import io
import json
import re
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
import ray
import yaml

from bonito_ray import progress
from bonito_ray.config import GenerateConfig
from bonito_ray.engines import hf
from bonito_ray.engines.vllm import ENGINE_STAGE, build_vllm_processor, returned_rows
from bonito_ray.pipeline import generate
from bonito_ray.self_guide.config import SelfGuideConfig
from bonito_ray.self_guide.pipeline import self_guide
from bonito_ray.self_guide.progress import SelfGuideProgress
from tests.corpus_files import write_jsonl
from tests.faults import gated_hf_generator
from tests.test_self_guide import SPEC
from tests.tiny_models import sample_passages

PROMPTS = 150


class Terminal(io.StringIO):
    def isatty(self):
        return True


class FakeCounter:
    """What an engine's replicas see of a ``ProgressCounter`` handle, recording the calls (name, arguments)."""

    class Method:
        def __init__(self, calls: list, name: str) -> None:
            self.calls, self.name = calls, name

        def remote(self, *args) -> None:
            self.calls.append((self.name, *args))

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.engine_started = self.Method(self.calls, "engine_started")
        self.engine_returned = self.Method(self.calls, "engine_returned")


def watch_progress_file(monkeypatch, on_snapshot) -> list[dict]:
    """Every ``_progress.json`` the job's reporter writes, as it writes it (``on_snapshot`` is called with each)."""
    written: list[dict] = []
    write_bytes = progress.write_bytes

    def recording(fs, path, data):
        write_bytes(fs, path, data)
        written.append(json.loads(data))
        on_snapshot(written[-1])

    monkeypatch.setattr(progress, "write_bytes", recording)
    return written


def test_a_150_prompt_job_shows_prompts_as_the_engine_returns_them(ray_cluster, random_model, tmp_path,
                                                                    monkeypatch):
    """hf engine, batches of 16, the default --rows-per-file (one file for the whole job): the file and the
    terminal line count the engine's first batch while it holds the rest."""
    monkeypatch.setenv(progress.INTERVAL_ENV, "0.2")
    gate = tmp_path / "engine" / "gate"
    monkeypatch.setattr(hf, "HFGenerator", gated_hf_generator(gate, open_rows=16))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)  # the reporter's line goes to stderr, a terminal here

    def open_gate(snapshot):
        if snapshot["state"] == "running" and 0 < snapshot["prompts_done"] < PROMPTS:
            gate.touch()

    seen = watch_progress_file(monkeypatch, open_gate)
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(PROMPTS))
    config = GenerateConfig(input=str(corpus), output=str(tmp_path / "out"), model=random_model, max_tokens=8,
                            task_types=["ynqa"], batch_size=16, seed=1, max_error_rate=1.0)
    assert config.rows_per_file >= PROMPTS  # one file: the writer counts nothing before the end
    summary = generate(config)

    states = [(s["state"], s["step"], s["prompts_done"]) for s in seen]
    assert not gate.with_name("gate-timed-out").exists(), states  # counted while the engine held work
    running = [s for s in seen if s["state"] == "running"]
    between = [s for s in running if 0 < s["prompts_done"] < PROMPTS]
    assert between and all(s["prompts_total"] == PROMPTS and s["step"] == progress.GENERATING for s in between)
    assert all(s["generated_tokens"] > 0 and s["engine_replicas_started"] >= 1 for s in between)
    assert [s["prompts_done"] for s in seen] == sorted(s["prompts_done"] for s in seen)
    # Verdicts are counted as rows are written: they follow the prompts done, and meet them at the end.
    assert all(s["accepted"] + s["rejected"] + s["filtered"] <= s["prompts_done"] for s in seen)
    final = seen[-1]
    assert final["state"] == "generated" and final["prompts_done"] == summary.prompts == PROMPTS
    assert final["accepted"] + final["rejected"] + final["filtered"] == PROMPTS

    drawn = re.findall(r"\r\x1b\[K(bonito-ray: prompts [^\r\n]*)", terminal.getvalue())
    shown = [int(m.group(1)) for m in map(re.compile(r"prompts (\d+)/150 ").search, drawn) if m]
    assert any(0 < done < PROMPTS for done in shown), drawn
    assert drawn[-1].startswith("bonito-ray: prompts 150/150 (100%)") and "  done  [" in drawn[-1]


def test_the_line_says_what_the_job_waits_for(ray_cluster, tmp_path):
    """Reading the corpus (dedup's pass), then starting the engine, then prompts as the engine returns them."""
    counter = progress.ProgressCounter.remote()
    reporter = progress.Reporter(counter, pafs.LocalFileSystem(), str(tmp_path), "run-1", stream=Terminal())

    def line():
        return progress.format_line({**reporter.report(), "state": "running", "elapsed_seconds": 1})

    assert "prompts 0/?" in line() and line().endswith("tok/s  reading the corpus  [0m01s]")
    counter.set_total.remote(PROMPTS)
    reporter.engine_asked()
    assert "prompts 0/150 (0%)" in line() and "  starting the engine  [" in line()
    counter.engine_started.remote()
    assert "  ETA ?  [" in line() and reporter.report()["step"] == progress.GENERATING
    counter.engine_returned.remote(16, 400)
    assert "prompts 16/150 (11%)  accepted 0  rejected 0  filtered 0" in line() and "ETA " in line()
    counter.record.remote(10, {"not_a_span": 6}, 400)  # the same 16 rows, written: not counted twice
    report = reporter.report()
    assert (report["prompts_done"], report["generated_tokens"], report["accepted"], report["filtered"]) == (16, 400,
                                                                                                            10, 6)


def test_a_counter_that_does_not_answer_costs_a_refresh_not_the_jobs_end(ray_cluster, tmp_path, monkeypatch):
    """A counter actor that hangs (its node stalled): each refresh, and the last one at the job's end, gives up
    at the deadline, and the job's own end is not held."""
    import time

    from bonito_ray.adapt.train_progress import TrainProgress

    @ray.remote(num_cpus=0)
    class Hung:
        def snapshot(self):
            time.sleep(600)

        figures = snapshot

    monkeypatch.setattr(progress, "COUNTER_DEADLINE_SECONDS", 0.5)
    monkeypatch.setattr("bonito_ray.adapt.train_progress.COUNTER_DEADLINE_SECONDS", 0.5)
    hung = Hung.options(max_concurrency=4).remote()
    for job in (progress.Reporter(hung, pafs.LocalFileSystem(), str(tmp_path), "run-1", stream=Terminal()),
                TrainProgress(hung, stream=Terminal())):
        with pytest.raises(ray.exceptions.GetTimeoutError):
            job.report()
        started = time.monotonic()
        assert job.start().stop("generated") == {}
        assert time.monotonic() - started < 30
    ray.kill(hung)


def test_an_engine_stage_that_does_not_report_is_counted_as_written(ray_cluster):
    counter = progress.ProgressCounter.remote()
    counter.skipped.remote(4)
    counter.record.remote(5, {"no_separator": 1}, 60)
    snapshot = ray.get(counter.snapshot.remote())
    assert (snapshot["prompts_done"], snapshot["prompts_skipped"], snapshot["generated_tokens"]) == (10, 4, 60)


def test_reporting_tells_each_start_and_each_returned_batch():
    """Functions (echo), actor classes (hf, openai) and async generator classes (ray.data.llm's vLLM stage)."""
    def echo(batch, *, suffix):
        return batch.append_column("num_generated_tokens", pa.array([len(suffix)] * batch.num_rows))

    class Engine:
        """An engine."""

        def __init__(self, scale):
            self.scale = scale

        def __call__(self, batch):
            return batch.append_column("num_generated_tokens", pa.array([self.scale] * batch.num_rows))

    class Streaming:
        def __init__(self):
            self.batches = 0

        async def __call__(self, batch):
            self.batches += 1
            yield {"__data": [{"num_generated_tokens": 3}] * len(batch)}

    counter = FakeCounter()
    assert progress.reporting(Engine, None) is Engine  # nobody to tell: the engine itself
    batch = pa.table({"prompt": ["a", "b", "c"]})
    counted = progress.reporting(echo, counter)
    assert counted.__name__ == "echo" and counted(batch, suffix="xy").num_rows == 3
    assert counter.calls == [("engine_returned", 3, 6)]
    broken = progress.reporting(echo, counter, returns=lambda out: 1 / 0)  # progress never fails a batch
    assert broken(batch, suffix="xy").num_rows == 3 and len(counter.calls) == 1

    counter.calls.clear()
    wrapped = progress.reporting(Engine, counter)
    assert (wrapped.__name__, wrapped.__doc__) == ("Engine", "An engine.") and issubclass(wrapped, Engine)
    replica = wrapped(scale=5)
    replica(batch), replica(batch.slice(0, 1))
    assert counter.calls == [("engine_started",), ("engine_returned", 3, 15), ("engine_returned", 1, 5)]

    counter.calls.clear()
    streaming = progress.reporting(Streaming, counter, functools.partial(returned_rows, column="__data"))
    replica = streaming()

    async def run():
        return [out async for out in replica([1, 2])]

    assert len(asyncio.run(run())[0]["__data"]) == 2 and replica.batches == 1
    assert counter.calls == [("engine_started",), ("engine_returned", 2, 6)]


def test_the_vllm_engine_stage_reports_to_the_counter(ray_cluster):
    """The processor's engine stage is ray.data.llm's own, wrapped (its name, so Ray's actor name, unchanged)."""
    pytest.importorskip("ray.llm._internal.batch.stages.vllm_engine_stage",
                        reason="ray.data.llm's vLLM stage needs its extras (torch)")
    from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMEngineStageUDF

    config = GenerateConfig(input="in", output="out", engine="vllm", engine_kwargs={"max_model_len": 256})
    plain = build_vllm_processor(config, device="cpu").get_stage_by_name(ENGINE_STAGE)
    reporting = build_vllm_processor(config, device="cpu", progress=FakeCounter()).get_stage_by_name(ENGINE_STAGE)
    assert plain.fn is vLLMEngineStageUDF
    assert reporting.fn is not plain.fn and issubclass(reporting.fn, plain.fn)
    assert reporting.fn.__name__ == plain.fn.__name__
    # The same replica otherwise: on CPUs, CPUs only (the stage's set-up, run again, would ask for a GPU each).
    assert reporting.map_batches_kwargs.keys() == plain.map_batches_kwargs.keys()
    assert reporting.map_batches_kwargs["num_cpus"] == 1 and not reporting.map_batches_kwargs.get("num_gpus")
    assert reporting.fn_constructor_kwargs == plain.fn_constructor_kwargs


# --- SELF-GUIDE ---------------------------------------------------------------------------------------------------

def test_self_guide_line_says_when_a_pass_waits_for_the_engine_and_has_no_stray_word(ray_cluster, tmp_path):
    engine = progress.ProgressCounter.remote()
    shown = SelfGuideProgress(pafs.LocalFileSystem(), str(tmp_path), "run-1", rounds=8, stream=Terminal(),
                              engine=engine)

    def line():
        return shown.line({**shown.report(), "state": "running", "elapsed_seconds": 726})

    assert line() == ("bonito-ray self-guide: rounds 0/8  inputs kept 0  annotation -  accepted 0  "
                      "dropped 0 inputs, 0 samples, 0 by the vote  [12m06s]")
    shown.engine_pass(80)
    assert line().endswith("(pass 0/80 requests)  inputs kept 0  annotation -  accepted 0  "
                           "dropped 0 inputs, 0 samples, 0 by the vote  starting the engine  [12m06s]")
    engine.engine_started.remote()
    assert line().endswith("0 by the vote  [12m06s]") and "(pass 0/80 requests)" in line()
    engine.engine_returned.remote(8, 90)  # a replica's batch, before Ray Data hands the driver its task's blocks
    assert "(pass 8/80 requests)" in line() and line().endswith("0 by the vote  [12m06s]")
    shown.returned(16)  # the blocks the driver got: its count is the floor
    assert "(pass 16/80 requests)" in line()
    shown.round_done(3, ["noise"] * 7)
    shown.annotation_started(30)  # a pass of its own: the engine starts again
    assert line().endswith("annotation 0/30 samples  accepted 0  dropped 7 inputs, 0 samples, 0 by the vote  "
                           "starting the engine  [12m06s]")
    engine.engine_returned.remote(40, 0)  # retried batches told twice: never more than the pass
    assert "annotation 30/30 samples" in line() and line().endswith("0 by the vote  [12m06s]")


def test_a_self_guide_pass_counts_its_requests_as_the_engine_returns_them(ray_cluster, random_model, tmp_path,
                                                                          monkeypatch):
    """One input pass of 40 requests on the hf engine, batches of 4, held after the first batch until the progress
    file has shown it (Ray Data may hand the driver that batch only with the next ones, in one task's output: the
    count is the engine's)."""
    monkeypatch.setenv(progress.INTERVAL_ENV, "0.2")
    gate = tmp_path / "engine" / "gate"
    monkeypatch.setattr(hf, "HFGenerator", gated_hf_generator(gate, open_rows=4))

    def open_gate(snapshot):
        if snapshot["step"] == "inputs" and 0 < snapshot["pass_requests_done"] < snapshot["pass_requests_total"]:
            gate.touch()

    seen = watch_progress_file(monkeypatch, open_gate)
    told: list[tuple[int, int]] = []
    engine_figures = SelfGuideProgress._engine_figures
    monkeypatch.setattr(SelfGuideProgress, "_engine_figures",
                        lambda self: told.append(engine_figures(self)) or told[-1])
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "examples": 40}))
    self_guide(SelfGuideConfig(spec=str(spec), output=str(tmp_path / "out"), engine="hf", model=random_model,
                               inputs_per_round=10, rounds_per_pass=4, samples=2, batch_size=4, input_max_tokens=8,
                               output_max_tokens=4, seed=1))

    passes = [(s["pass_requests_done"], s["pass_requests_total"]) for s in seen if s["step"] == "inputs"]
    assert not gate.with_name("gate-timed-out").exists(), passes
    assert any(s["state"] == "running" and 0 < s["pass_requests_done"] < 40 == s["pass_requests_total"]
               for s in seen), passes
    assert not any(s["engine_starting"] for s in seen if s["pass_requests_done"] or s["samples_done"])
    replicas, rows = told[-1]  # what the engine's replicas told the job's watch, at the end
    assert replicas >= 1 and rows >= 40
