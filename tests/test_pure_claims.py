"""Fast checks, without Ray, of claims the Ray-backed tests also make: a file cut short keeps what came before
the cut, a passing store fault is retried and not rejected, a commit killed at any step is finished by the next
run, the engine actors' restart settings and the Python API's drop-in defaults.

A busy machine can fail the Ray-backed tests on Ray's own start; these still give a verdict.
"""

import json
import shutil
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from bonito_ray import commit
from bonito_ray.config import GenerateConfig
from bonito_ray.corpus import CorpusDatasource
from bonito_ray.corpus.documents import _is_transient
from bonito_ray.schema import ACCEPTED_SCHEMA, REJECT_SCHEMA, STAGING_DIR, stable_id, table_from_rows
from bonito_ray.storage import resolve_filesystem
from tests.faults import FaultyS3Proxy

# ---- a corpus file cut short keeps the records before the cut ----------------------------------------


def corpus_reader(input_uri: str, output_uri: str) -> CorpusDatasource:
    """The corpus datasource's reading half. Its constructor is Ray Data's, which starts Ray to look the files
    up; reading one file needs none of it."""
    reader = CorpusDatasource.__new__(CorpusDatasource)
    reader._input_uri, reader._context_column, reader._output_uri, reader._s3_endpoint = (
        input_uri, "text", output_uri, None)
    return reader


def read_file(fs: pafs.FileSystem, path: str, input_uri: str, out: Path) -> list[dict]:
    """The documents ``_read_stream`` yields from one file, opened as the datasource opens it."""
    reader = corpus_reader(input_uri, str(out))
    with fs.open_input_stream(path, compression=None) as stream:
        return [row for table in reader._read_stream(stream, path) for row in table.to_pylist()]


def corpus_rejects(out: Path) -> list[dict]:
    folder = out / STAGING_DIR / "_rejects" / "stage=corpus"
    return pds.dataset(str(folder)).to_table().to_pylist() if folder.exists() else []


def records(count: int) -> bytes:
    return b"".join(b'{"text": "passage number %d of the corpus"}\n' % i for i in range(count))


def test_a_gzip_stream_cut_short_keeps_every_complete_record_before_the_cut(tmp_path):
    whole = zlib.compress(records(3000), wbits=16 + zlib.MAX_WBITS)
    cut = whole[: len(whole) * 2 // 3]
    corpus = tmp_path / "cut.jsonl.gz"
    corpus.write_bytes(cut)
    # Counted by an independent decompression of the same bytes.
    complete = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(cut).count(b"\n")
    assert 0 < complete < 3000
    rows = read_file(pafs.LocalFileSystem(), str(corpus), str(corpus), tmp_path / "out")
    assert [r["position"] for r in rows] == list(range(1, complete + 1))
    assert [r["context"] for r in rows] == [f"passage number {i} of the corpus" for i in range(complete)]
    (reject,) = corpus_rejects(tmp_path / "out")
    assert (reject["source"], reject["reason"], reject["position"]) == (str(corpus), "truncated_file", complete + 1)
    assert f"after record {complete}" in reject["detail"]


def test_an_arrow_stream_cut_in_its_third_batch_keeps_the_first_two(tmp_path):
    """Not a compressed stream: the reader's own error (pyarrow's, on a batch cut short) ends the file."""
    schema = pa.schema([("text", pa.string())])
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, schema) as writer:
        for batch in range(3):
            writer.write_batch(pa.record_batch([[f"batch {batch} row {i}" for i in range(100)]], schema=schema))
    whole = sink.getvalue().to_pybytes()
    corpus = tmp_path / "cut.arrow"
    corpus.write_bytes(whole[: len(whole) - 1000])  # the third batch's body is over 1,000 bytes
    rows = read_file(pafs.LocalFileSystem(), str(corpus), str(corpus), tmp_path / "out")
    assert [r["context"] for r in rows] == [f"batch {b} row {i}" for b in range(2) for i in range(100)]
    (reject,) = corpus_rejects(tmp_path / "out")
    assert (reject["reason"], reject["position"]) == ("unreadable_file", 201)
    assert "after record 200" in reject["detail"]


# ---- a passing store fault is retried, not rejected ---------------------------------------------------


def test_s3_faults_that_pass_are_transient_and_bad_files_are_not(s3_endpoint, tmp_path):
    """``_is_transient`` on the errors pyarrow's S3 client really raises, and what ``_read_stream`` does
    with them: a transient one is raised for Ray Data to read the file again, and nothing is rejected."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket="corpus", Key="pure/a.jsonl", Body=records(3))
    faults = {}
    with FaultyS3Proxy(s3_endpoint) as proxy:
        fs, path = resolve_filesystem("s3://corpus/pure/a.jsonl", proxy.endpoint)
        proxy.fail_gets("corpus/pure/a.jsonl", 1000)  # 503 SlowDown, past the client's own retries
        with pytest.raises(OSError) as slow_down:
            read_file(fs, path, "s3://corpus/pure/a.jsonl", tmp_path / "out")
        faults["503 SlowDown"] = slow_down.value
        assert proxy.failed_gets["corpus/pure/a.jsonl"] >= 1
    assert corpus_rejects(tmp_path / "out") == []
    fs, path = resolve_filesystem("s3://corpus/pure/a.jsonl", "http://127.0.0.1:1")  # nobody listens there
    with pytest.raises(OSError) as refused:
        fs.open_input_stream(path).read()
    faults["connection refused"] = refused.value
    assert {name: _is_transient(err) for name, err in faults.items()} == {name: True for name in faults}

    fs, path = resolve_filesystem("s3://corpus/pure/gone.jsonl", s3_endpoint)
    with pytest.raises(FileNotFoundError) as missing:
        fs.open_input_stream(path).read()
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(pa.ArrowInvalid) as corrupt:
        pq.ParquetFile(str(tmp_path / "bad.parquet"))
    assert not _is_transient(missing.value) and not _is_transient(corrupt.value)
    # Read through _read_stream, the fetched file is read normally.
    fs, path = resolve_filesystem("s3://corpus/pure/a.jsonl", s3_endpoint)
    assert len(read_file(fs, path, "s3://corpus/pure/a.jsonl", tmp_path / "out")) == 3


# ---- a commit killed at any step is finished by the next run ------------------------------------------


class Killed(BaseException):
    """Stands in for the process killed at a step (a BaseException: nothing on the way catches it)."""


def example_rows(source: str, lines: range, run: str) -> list[dict]:
    return [{"id": stable_id(source, line, run), "passage_id": stable_id(source, line), "source": source,
             "position": line, "chunk": 0, "task_type": "ynqa", "sample_index": 0, "input": f"question {line}",
             "output": "Yes", "context": f"passage {line} of {source}", "model": "m", "num_input_tokens": 10,
             "num_generated_tokens": 3} for line in lines]


def stage(root: Path, run: str, files: dict[str, list[dict]], identity: dict) -> None:
    """What a run's pipeline leaves staged: its run record and whole data files."""
    staging = root / STAGING_DIR
    for relative, rows in files.items():
        (staging / relative).parent.mkdir(parents=True, exist_ok=True)
        schema = REJECT_SCHEMA if relative.startswith("_rejects/") else ACCEPTED_SCHEMA
        pq.write_table(table_from_rows(rows, schema), staging / relative)
    (staging / "_run.json").write_text(json.dumps(identity))


OUTPUT_URI = "s3://bucket/dataset"  # what the manifest and card call the output, the same for every copy of it


def commit_run(root: Path, run: str, stale: list[str], ledger: dict[str, str]) -> None:
    identity = {"input_fingerprint": f"inputs of {run}", "incremental": True}
    config = GenerateConfig(input="corpus", output=OUTPUT_URI, engine="echo", model="m", task_types=["ynqa"])
    manifest = {"config": config.to_dict(), "identity": identity,
                "examples_per_passage": 1, "run": {"resumed": False, "skipped_done": 0, "wall_seconds": 1.0},
                "run_id": run, "command": "bonito-ray generate ..."}
    commit.commit(pafs.LocalFileSystem(), str(root), OUTPUT_URI, stale_sources=stale, ledger_entries=ledger,
                  manifest=manifest)


SECOND_RUN = {  # a.jsonl changed (one more line), c.jsonl new: a's committed rows are replaced, b's kept
    "ynqa/train-run2-0.parquet": example_rows("a.jsonl", range(1, 5), "run2"),
    "ynqa/train-run2-1.parquet": example_rows("c.jsonl", range(1, 3), "run2"),
    "_rejects/stage=generation/rejects-run2.pq": [{**example_rows("c.jsonl", range(3, 4), "run2")[0],
                                                   "reason": "no_separator"}],
}


def incremental_output(root: Path) -> None:
    """A committed dataset of a.jsonl and b.jsonl, and a second incremental run staged over it."""
    stage(root, "run1", {"ynqa/train-run1-0.parquet": example_rows("a.jsonl", range(1, 4), "run1")
                         + example_rows("b.jsonl", range(1, 4), "run1")}, {"run": 1})
    commit_run(root, "run1", [], {"a.jsonl": "1:1", "b.jsonl": "1:1"})
    stage(root, "run2", SECOND_RUN, {"run": 2})


def commit_second_run(root: Path) -> None:
    commit_run(root, "run2", ["a.jsonl"], {"a.jsonl": "2:2", "c.jsonl": "1:1"})


def contents(root: Path) -> dict[str, object]:
    """Every file under ``root``: a data file's rows (in id order), a JSON file's value, else its bytes."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = str(path.relative_to(root))
        if path.suffix in (".parquet", ".pq"):
            found[relative] = sorted(pq.read_table(path).to_pylist(), key=lambda row: row["id"])
        elif path.suffix == ".json":
            found[relative] = json.loads(path.read_text())
        else:
            found[relative] = path.read_bytes()
    return found


def test_a_commit_killed_at_any_step_is_rolled_forward_to_what_an_uninterrupted_one_commits(tmp_path,
                                                                                            monkeypatch):
    before = tmp_path / "before"
    incremental_output(before)
    steps = []
    monkeypatch.setattr(commit, "_crash_point", steps.append)
    uninterrupted = tmp_path / "uninterrupted"
    shutil.copytree(before, uninterrupted)
    commit_second_run(uninterrupted)
    want = contents(uninterrupted)
    # One full run over the current input: a's new rows, b's old ones, c's; the ledger has all three.
    ids = sorted(row["id"] for f, rows in want.items() if f.startswith("ynqa/") for row in rows)
    assert ids == sorted(r["id"] for r in example_rows("a.jsonl", range(1, 5), "run2")
                         + example_rows("b.jsonl", range(1, 4), "run1") + example_rows("c.jsonl", range(1, 3), "run2"))
    assert want["_ledger.json"] == {"a.jsonl": "2:2", "b.jsonl": "1:1", "c.jsonl": "1:1"}
    assert [r["run_id"] for r in want["_manifest.json"]["runs"]] == ["run1", "run2"]
    assert steps == ["before-journal", "journal", "success-removed", "stale-dropped", "move-1", "move-2", "move-3",
                     "moved", "ledger", "manifest", "card", "success"]

    for step in steps:
        out = tmp_path / step
        shutil.copytree(before, out)

        def kill(reached, step=step):
            if reached == step:
                raise Killed(step)

        monkeypatch.setattr(commit, "_crash_point", kill)
        with pytest.raises(Killed):
            commit_second_run(out)
        if step not in ("before-journal", "journal", "success"):  # the growing dataset is incomplete while it moves
            assert not (out / "_SUCCESS").exists(), step
        assert contents(out) != want, step  # killed before its end: the staging dir, at least, is left
        monkeypatch.setattr(commit, "_crash_point", lambda reached: None)
        fs = pafs.LocalFileSystem()
        if commit.has_journal(fs, str(out)):  # what the next run's planning does, before any cluster work
            commit.roll_forward(fs, str(out), OUTPUT_URI)
        else:  # killed before the journal: the next run resumes, finds every row staged, and commits
            assert step == "before-journal"
            commit_second_run(out)
        assert contents(out) == want, step


# ---- the engine actors' restart settings, and the job's retries ---------------------------------------


class RecordedStage:
    """Stands in for the request dataset an engine stage is given: records its map_batches call."""

    def map_batches(self, fn, **kwargs):
        self.fn, self.kwargs = fn, kwargs
        return self


@pytest.mark.parametrize("engine", ["hf", "openai"])
def test_an_engine_actor_that_dies_is_restarted_and_its_batch_retried(engine):
    """bonito-ray's engine actor pools leave Ray Data's actor fault tolerance on: a replica whose process
    dies is created again (max_restarts -1) and its pending batch sent again (max_task_retries -1)."""
    import inspect

    from ray.data import ActorPoolStrategy, DataContext, Dataset
    from ray.data._internal.execution.operators.actor_pool_map_operator import ActorPoolMapOperator

    from bonito_ray.engines import build_engine_stage

    config = GenerateConfig(input="in", output="out", engine=engine, model="m", num_replicas=2,
                            **({"endpoint": "http://127.0.0.1:1/v1"} if engine == "openai" else {}))
    recorded = build_engine_stage(config)(RecordedStage())
    assert isinstance(recorded.kwargs["compute"], ActorPoolStrategy)  # actors: the restart settings apply
    # What map_batches does not name itself it passes on as the actors' options (its **ray_remote_args).
    named = inspect.signature(Dataset.map_batches).parameters
    remote_args = {k: v for k, v in recorded.kwargs.items() if k not in named}
    options = ActorPoolMapOperator._apply_default_remote_args(remote_args, DataContext())
    assert (options["max_restarts"], options["max_task_retries"]) == (-1, -1)


def test_the_job_retries_a_failing_map_task_and_never_drops_a_block():
    from dataclasses import fields

    from ray.data import DataContext

    from bonito_ray import pipeline

    context = DataContext.get_current()  # given back after the test (conftest)
    before = dict(vars(context))
    pipeline.configure_fault_tolerance()
    changed = {name for name, value in vars(context).items() if name not in before or before[name] != value}
    settings = {f.name for f in fields(context)}
    assert changed <= settings, f"not Ray Data settings: {changed - settings}"  # a misspelt one would do nothing
    assert (context.max_errored_blocks, context.retried_map_errors, context.max_map_retries) == (
        0, True, pipeline.MAP_RETRIES)
    assert pipeline.MAP_RETRIES >= 1


# ---- the Python API's drop-in defaults ----------------------------------------------------------------


def test_the_python_api_keeps_duplicates_as_the_reference_does_unless_asked():
    from bonito_ray.bonito import DROP_IN_DEFAULTS, Bonito

    job = GenerateConfig(input="in", output="out")
    assert {name: getattr(job, name) for name in DROP_IN_DEFAULTS} == {"dedup": True, "task_dedup": True}  # the CLI
    config = Bonito("m", engine="echo")._config()
    assert (config.dedup, config.task_dedup) == (False, False)  # as the reference: every row, near-duplicates kept
    chosen = Bonito("m", engine="echo", dedup=True)
    assert (chosen._config().dedup, chosen._config().task_dedup) == (True, False)
    per_call = chosen._config(**chosen._job_options({"task_dedup": True}))
    assert (per_call.dedup, per_call.task_dedup) == (True, True)
