"""The Python API: ``bonito_ray.Bonito`` (the reference package's ``generate_tasks``) and ``bonito_ray.generate``.

The comparison with the reference package (PyPI ``bonito-llm``) runs it in a subprocess
(tests/reference_bonito.py) on vLLM's CPU build while bonito-ray's hf engine runs the same prompts
here, both greedy: on the demo model hf greedy equals vLLM greedy (checked once by hand, on all 144
prompts of the 48 sample passages x ynqa/exqa/nli), so the only vLLM engine the file starts is the
reference's. bonito-ray's side is one job for both task types (a list of task types is one job;
every job starts its own engine replica). The other tests use the echo engine: they test what the
API does around the job (inputs, order, rejects, sampling, errors, temporary files locally and on
S3), not a model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest

from bonito_ray import Bonito, ConfigError, GenerateConfig, GeneratedTasks, RunSummary, generate
from bonito_ray.config import DEMO_MODEL
from bonito_ray.prompt import Task, parse_generation
from bonito_ray.sampling import DEFAULTS, sampling_settings
from bonito_ray.tasks import UnknownTaskTypeError
from tests.corpus_files import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
HAS_REFERENCE = all(importlib.util.find_spec(m) is not None for m in ("bonito", "vllm"))
needs_reference = pytest.mark.skipif(
    not HAS_REFERENCE, reason="the reference package or vLLM is not installed (infra/install.sh installs both)")
COMPARED_TYPES = ["exqa", "nli"]  # exqa: the demo model's greedy answers include one that is not a span
GREEDY = {"max_tokens": 256, "temperature": 0.0, "top_p": 1.0}


def sample_passages(count: int) -> list[str]:
    lines = (ROOT / "jobs" / "examples" / "corpus.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines[:count]]


@pytest.fixture(scope="module")
def comparison(request, tmp_path_factory):
    """(passages, bonito-ray's result, the reference's tasks per task type, and what bonito-ray makes of
    vLLM's classes: the ``read_sampling`` SamplingParams, the ``vllm_options`` Bonito keywords)."""
    work = tmp_path_factory.mktemp("reference")
    passages = sample_passages(6)
    asked = {"model": DEMO_MODEL, "passages": passages, "task_types": COMPARED_TYPES, "sampling": GREEDY,
             "read_sampling": [GREEDY, {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "n": 2, "seed": 3}, {},
                               {"top_k": 5}, {"stop": ["."], "presence_penalty": 1.0}],
             "vllm_options": [{"max_model_len": 256, "dtype": "float32", "engine_kwargs": {"enforce_eager": True}},
                              {"max_model_len": 256, "max_modle_len": 256}, {"max_model_len": 4096}]}
    (work / "request.json").write_text(json.dumps(asked))
    with open(work / "log.txt", "w") as log:  # a file, not a pipe: a full pipe would stall it while ours runs
        reference = subprocess.Popen([sys.executable, str(ROOT / "tests" / "reference_bonito.py"),
                                      str(work / "request.json"), str(work / "result.json")],
                                     cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        request.getfixturevalue("ray_cluster")  # when this file runs alone, Ray starts while vLLM is imported
        ours = Bonito(DEMO_MODEL, engine="hf").generate_tasks(
            datasets.Dataset.from_dict({"text": passages}), context_col="text", task_type=COMPARED_TYPES,
            sampling_params=GREEDY, provenance=True)
        reference.wait(timeout=300)
    finally:
        reference.kill()
    assert reference.returncode == 0, (work / "log.txt").read_text()[-3000:]
    result = json.loads((work / "result.json").read_text())
    return passages, ours, result["tasks"], result["read_sampling"], result["vllm_options"]


def by_passage(tasks: list[dict], passages: list[str]) -> list[list[tuple[str, str]]]:
    """The reference's tasks of each passage: the reference does not say which passage a task comes from,
    but the input of each of these task types holds its passage (``{{context}}`` put back)."""
    found: list[list[tuple[str, str]]] = [[] for _ in passages]
    for task in tasks:
        holders = [i for i, passage in enumerate(passages) if passage.strip() in task["input"]]
        assert len(holders) == 1, f"a reference task whose input holds {len(holders)} of the passages: {task}"
        found[holders[0]].append((task["input"], task["output"]))
    return found


@needs_reference
def test_tasks_bonito_ray_accepts_equal_the_reference_and_its_rejects_say_why(comparison):
    passages, ours, reference, *_ = comparison
    accepted, rejects = ours.to_list(), ours.rejects.to_list()
    for task_type in COMPARED_TYPES:
        theirs_by_passage = by_passage(reference[task_type], passages)
        for row, passage in enumerate(passages):
            mine = [(t["input"], t["output"]) for t in accepted if (t["row"], t["task_type"]) == (row, task_type)]
            dropped = [r for r in rejects if (r["row"], r["task_type"]) == (row, task_type)]
            theirs = theirs_by_passage[row]
            assert len(mine) + len(dropped) == 1, (task_type, row, mine, dropped)  # one prompt per passage
            if mine:
                assert mine == theirs, (task_type, row)
                continue
            assert dropped[0]["stage"] in ("generation", "validation") and dropped[0]["reason"], dropped
            # The reference keeps exactly what parses: a validator's reject is a task it kept, a parse
            # failure one it dropped (silently).
            parsed = parse_generation(dropped[0]["raw"], passage)
            assert theirs == ([(parsed.input, parsed.output)] if isinstance(parsed, Task) else []), (task_type, row)
    assert len(accepted) >= 0.75 * len(passages) * len(COMPARED_TYPES)  # the comparison is not of empty sets


@needs_reference
def test_the_result_is_a_dataset_of_tasks_in_input_order_with_provenance_on_request(comparison):
    passages, ours, *_ = comparison
    assert isinstance(ours, datasets.Dataset) and isinstance(ours.summary, RunSummary)
    assert ours.column_names[:2] == ["input", "output"] and {"row", "task_type", "passage_id"} <= set(ours.column_names)
    keys = [(t["row"], COMPARED_TYPES.index(t["task_type"])) for t in ours]
    assert keys == sorted(keys)
    assert all(passages[t["row"]] in t["input"] for t in ours)  # the passage is put back in each input
    assert ours.summary.prompts == len(passages) * len(COMPARED_TYPES)
    assert sum(ours.summary.accepted.values()) == len(ours)


# --- around the job: the echo engine (no model) ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def echo(ray_cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workdir")
    return Bonito(DEMO_MODEL, engine="echo", workdir=str(workdir)), workdir


def test_each_input_kind_gives_one_task_per_row_in_input_order_duplicates_included(echo):
    import ray.data

    bonito, workdir = echo
    texts = [f"Clause {i}: the tenant pays {100 + i} euros of rent on day {i + 1} of every month." for i in range(4)]
    texts.append(texts[1])  # the reference prompts a duplicate row again: so does generate_tasks
    backwards = datasets.Dataset.from_dict({"text": texts[::-1]}).select(range(len(texts))[::-1])  # an indices mapping
    results = {
        "datasets": bonito.generate_tasks(backwards, "text", "ynqa", {"max_tokens": 64, "n": 2}),
        "pandas": bonito.generate_tasks(pd.DataFrame({"body": texts, "other": 1}), "body", "yes-no question answering",
                                        {"max_tokens": 64, "n": 2}),
        "ray": bonito.generate_tasks(ray.data.from_items([{"text": t} for t in texts]), "text", "ynqa",
                                     {"max_tokens": 64, "n": 2}),
    }
    for kind, result in results.items():
        assert isinstance(result, GeneratedTasks) and result.column_names == ["input", "output"], kind
        assert len(result) == 2 * len(texts) and len(result.rejects) == 0, kind
        assert [texts[i // 2] in task["input"] for i, task in enumerate(result)] == [True] * len(result), kind
        assert result.to_list() == results["datasets"].to_list(), kind
    assert list(workdir.iterdir()) == []  # the temporary corpus and output are gone


def test_rejects_are_on_the_result_with_their_stage_and_reason(echo):
    bonito, workdir = echo
    texts = ["The tenant pays the rent on the first day of every month.", "Too short", None,
             "A passage that holds Bonito's own marker <|pipe|> cannot make a task."]
    result = bonito.generate_tasks(pd.DataFrame({"text": texts}), "text", "ynqa")
    assert [t["input"].count(texts[0]) for t in result] == [1]
    assert [(r["row"], r["stage"], r["reason"]) for r in result.rejects] == [
        (1, "clean", "too_short"), (2, "corpus", "null_context"), (3, "clean", "control_marker")]
    assert all(r["detail"] for r in result.rejects)
    assert result.summary.passages_dropped == {"too_short": 1, "control_marker": 1}
    assert list(workdir.iterdir()) == []


def test_when_no_row_reaches_the_engine_the_result_is_empty_and_says_why_and_an_s3_workdir_is_left_empty(
        ray_cluster, s3_endpoint, monkeypatch):
    import pyarrow.fs as pafs

    from bonito_ray import job
    from bonito_ray.storage import resolve_filesystem

    fs, root = resolve_filesystem("s3://corpus/tmp", s3_endpoint)
    listing = lambda: sorted(f.path for f in fs.get_file_info(pafs.FileSelector(root, recursive=True,  # noqa: E731
                                                                                   allow_not_found=True))
                             if f.type == pafs.FileType.File)
    seen, run = [], job.generate
    monkeypatch.setattr(job, "generate", lambda config: seen.append((config.input, listing())) or run(config))
    bonito = Bonito(DEMO_MODEL, engine="echo", workdir="s3://corpus/tmp", s3_endpoint=s3_endpoint)
    # The job fails its error budget (nothing was prompted); the call reads what it staged, on the bucket.
    nothing = bonito.generate_tasks(pd.DataFrame({"text": ["Too short", None]}), "text", "ynqa")
    assert len(nothing) == 0 and [(r["row"], r["reason"]) for r in nothing.rejects] == [(0, "too_short"),
                                                                                        (1, "null_context")]
    assert nothing.summary.prompts == 0 and nothing.summary.corpus_rejected == {"null_context": 1}
    (corpus, files), = seen  # the job read its corpus from the bucket
    assert corpus.startswith("s3://corpus/tmp/bonito-ray-tasks-") and files == [f"{corpus[5:]}/part-00000.parquet"]
    assert listing() == []  # and nothing is left there


def test_bad_arguments_fail_in_one_line_before_any_cluster_work(tmp_path, monkeypatch):
    from bonito_ray import cluster

    monkeypatch.setattr(cluster, "connect", lambda *a, **k: pytest.fail("connected to Ray for a bad call"))
    bonito = Bonito(DEMO_MODEL, engine="echo", workdir=str(tmp_path))
    frame = pd.DataFrame({"text": ["A passage long enough to be prompted."], "n": [3]})
    failures = {
        "context_col 'body' is not a column of text_dataset; its columns: text, n":
            lambda: bonito.generate_tasks(frame, "body", "ynqa"),
        "context_col 'n' holds int64 values, not text": lambda: bonito.generate_tasks(frame, "n", "ynqa"),
        "text_dataset must be a datasets.Dataset, a pandas DataFrame or a Ray Dataset, got builtins.list":
            lambda: bonito.generate_tasks(["a text"], "text", "ynqa"),
        "generate_tasks: unknown option(s) temprature":
            lambda: bonito.generate_tasks(frame, "text", "ynqa", temprature=0),
        "sampling_params: unknown key(s) temprature": lambda: bonito.generate_tasks(frame, "text", "ynqa",
                                                                                    {"temprature": 0}),
        "sampling_params must be a dict or a vllm.SamplingParams, got tuple":
            lambda: bonito.generate_tasks(frame, "text", "ynqa", (256, 0.5)),
        "temperature must be >= 0": lambda: bonito.generate_tasks(frame, "text", "ynqa", {"temperature": -1}),
        "cannot load model": lambda: Bonito(str(tmp_path / "no-model"), engine="hf"),
        "unknown option(s) max_model_len for engine 'hf'": lambda: Bonito(DEMO_MODEL, engine="hf", max_model_len=64),
    }
    for expected, call in failures.items():
        with pytest.raises(ConfigError) as caught:
            call()
        assert str(caught.value).startswith(expected) and "\n" not in str(caught.value), str(caught.value)
    with pytest.raises(UnknownTaskTypeError, match="unknown task type 'summarise'"):  # a ValueError, as the reference's
        bonito.generate_tasks(frame, "text", "summarise")
    assert list(tmp_path.iterdir()) == []


def test_arguments_of_the_wrong_type_fail_in_one_line_naming_the_argument(tmp_path, monkeypatch):
    """Each was a TypeError from deep inside (``'NoneType' object is not iterable``), or was taken as it was."""
    from bonito_ray import cluster

    monkeypatch.setattr(cluster, "connect", lambda *a, **k: pytest.fail("connected to Ray for a bad call"))
    bonito = Bonito(DEMO_MODEL, engine="echo", workdir=str(tmp_path))
    frame = pd.DataFrame({"text": ["A passage long enough to be prompted."]})
    failures = {
        "task_type must be a task name or a list of task names, got None (NoneType)":
            lambda: bonito.generate_tasks(frame, "text", None),
        "task_type must be a task name or a list of task names, got 5 (int)":
            lambda: bonito.generate_tasks(frame, "text", 5),
        "task_type must be a task name or a list of task names, got ['ynqa', 5] (list)":
            lambda: bonito.generate_tasks(frame, "text", ["ynqa", 5]),
        "context_col must be a column name (a string), got None (NoneType)":
            lambda: bonito.generate_tasks(frame, None, "ynqa"),
        "provenance must be True or False, got 'yes' (str)":
            lambda: bonito.generate_tasks(frame, "text", "ynqa", provenance="yes"),
        "sampling_params: unknown key(s) 1, top_k": lambda: bonito.generate_tasks(frame, "text", "ynqa",
                                                                                {1: 2, "top_k": 3}),
        "n must be an integer, got None (NoneType)": lambda: bonito.generate_tasks(frame, "text", "ynqa", {"n": None}),
        "validate must be a string, got 5 (int)": lambda: bonito.generate_tasks(frame, "text", "ynqa", validate=5),
        "model must be a model folder or hub id (a string), got 123 (int)": lambda: Bonito(123),
        "engine must be an engine name (a string), got ['echo'] (list)":
            lambda: Bonito(DEMO_MODEL, engine=["echo"], max_model_len=64),
        "workdir must be a folder or URI (a string) or None, got 5 (int)":
            lambda: Bonito(DEMO_MODEL, engine="echo", workdir=5),
        "num_replicas must be an integer, got '2' (str)": lambda: Bonito(DEMO_MODEL, engine="echo", num_replicas="2"),
    }
    for expected, call in failures.items():
        with pytest.raises(ConfigError) as caught:
            call()
        assert str(caught.value).startswith(expected) and "\n" not in str(caught.value), str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_multi_node_cluster_needs_a_workdir_every_node_reaches(monkeypatch):
    import ray

    from bonito_ray import cluster

    monkeypatch.setattr(cluster, "connect", lambda *a, **k: None)  # as if joined to a cluster of two live nodes
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}, {"Alive": False}])
    with pytest.raises(ConfigError, match=r"^the Ray cluster has 2 nodes, .* pass Bonito\(..., workdir=LOCATION\)"):
        Bonito(DEMO_MODEL, engine="echo").generate_tasks(pd.DataFrame({"text": ["A passage to prompt."]}), "text", "ynqa")


def test_sampling_params_as_a_dict_take_the_bonito_authors_defaults_for_what_they_leave_out():
    assert sampling_settings(None) == DEFAULTS == {"max_tokens": 256, "temperature": 0.5, "top_p": 0.95, "n": 1,
                                                   "seed": None}
    assert sampling_settings({"n": 3, "seed": 7}) == {**DEFAULTS, "n": 3, "seed": 7}


@needs_reference
def test_a_vllm_sampling_params_reads_as_the_same_dict_and_what_bonito_ray_cannot_apply_is_refused(comparison):
    *_, read, _ = comparison
    greedy, sampled, default, top_k, stop = read
    assert greedy == sampling_settings(GREEDY)  # the SamplingParams the reference ran with, the dict bonito-ray did
    assert sampled == sampling_settings({"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "n": 2, "seed": 3})
    assert default == {"max_tokens": 16, "temperature": 1.0, "top_p": 1.0, "n": 1, "seed": None}  # vLLM's own
    assert top_k.startswith("sampling_params sets top_k, which bonito-ray does not apply")
    assert stop.startswith("sampling_params sets presence_penalty, stop, which bonito-ray does not apply")


@needs_reference
def test_the_reference_llm_keywords_are_vllm_engine_arguments_and_a_wrong_one_is_refused_up_front(comparison):
    *_, options = comparison
    kept, misspelt, too_long = options
    assert kept == {"enforce_eager": True, "max_model_len": 256, "dtype": "float32"}
    assert misspelt.startswith("unknown option(s) max_modle_len: neither a bonito-ray option")
    assert too_long.startswith("engine_kwargs max_model_len=4096 is larger than the window of model")


def test_generate_runs_the_whole_job_from_a_config(ray_cluster, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", sample_passages(3))
    summary = generate(GenerateConfig(input=str(corpus), output=str(tmp_path / "out"), engine="echo",
                                      task_types=["ynqa"], passage_tokens=400, dedup=False, task_dedup=False))
    assert isinstance(summary, RunSummary) and summary.accepted == {"ynqa": 3}
    assert (tmp_path / "out" / "_SUCCESS").exists()


def test_importing_the_package_imports_neither_the_pipeline_nor_datasets_nor_torch():
    script = ("import sys, bonito_ray\n"
              "print(sorted(m for m in ('bonito_ray.pipeline', 'datasets', 'torch', 'ray.data') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
    assert "Bonito" in dir(__import__("bonito_ray"))
