"""Unit tests of the pure core that kill the mutants the broader tests let live (jobs/dev/mutation_test.sh).

Every expected value is computed independently here (hashlib, plain Python) rather than read back
from the code under test. Nothing here starts Ray: the dedup shard's logic runs on the plain class
behind the actor, and auto-connection is switched off so that a mutant calling ``ray.get`` fails
instead of starting a cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from pyarrow.fs import LocalFileSystem, SubTreeFileSystem

from bonito_ray import commit, dedup, engine_rows, output, schema
from bonito_ray.prompt import build_prompt
from bonito_ray.report import RunSummary
from bonito_ray.tasks import (TASK_DESCRIPTIONS, TASK_TYPES, UnknownTaskTypeError, resolve_task_type, resolve_task_types,
                              task_description)


@pytest.fixture(autouse=True)
def _no_ray_started(monkeypatch):
    """These tests must not start Ray, not even through a mutant's ``ray.get`` (auto-init)."""
    monkeypatch.setenv("RAY_ENABLE_AUTO_CONNECT", "0")
    was_up = ray.is_initialized()
    yield
    assert ray.is_initialized() == was_up, "a core unit test started Ray"


def sha256_id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:32]


# ---- tasks ----------------------------------------------------------------------------------------


def test_unknown_task_type_message_pairs_each_short_name_with_its_full_name():
    with pytest.raises(UnknownTaskTypeError) as err:
        resolve_task_type("poetry")
    pairs = ", ".join(f"{short} ({full})" for short, full in TASK_TYPES.items())
    assert str(err.value) == f"unknown task type 'poetry'; valid task types are: {pairs}"


def test_no_task_type_message_lists_the_short_names():
    with pytest.raises(UnknownTaskTypeError) as err:
        resolve_task_types([])
    assert str(err.value) == "no task type given; choose one or more of: " + ", ".join(TASK_TYPES)


def test_task_type_lists_accept_iterables_and_skip_blank_entries():
    assert resolve_task_types(("nli", " ", "NLI", "te")) == ["nli", "te"]
    assert resolve_task_types("exqa") == ["exqa"]


def test_a_task_description_is_found_by_short_or_full_name():
    assert task_description(TASK_TYPES["exqa"]) == task_description("exqa") == TASK_DESCRIPTIONS["exqa"]


# ---- schema ---------------------------------------------------------------------------------------


def test_stable_id_is_the_sha256_prefix_of_the_unit_separated_parts():
    assert schema.stable_id("a", 1, None) == sha256_id("a", 1, None)
    assert len(schema.stable_id("x")) == 32
    assert schema.stable_id("a", "b") != schema.stable_id("ab")
    assert schema.stable_id("é") == hashlib.sha256("é".encode("utf-8")).hexdigest()[:32]


def test_conform_casts_drops_extra_and_nulls_missing_columns_in_schema_order():
    target = pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.float64())])
    table = pa.table({"c": pa.array([1, 2], pa.int32()), "extra": ["x", "y"], "a": pa.array([3, 4], pa.int8())})
    conformed = schema.conform(table, target)
    assert conformed.schema == target
    assert conformed.to_pydict() == {"a": [3, 4], "b": [None, None], "c": [1.0, 2.0]}


def test_table_from_rows_nulls_missing_fields():
    target = pa.schema([("a", pa.int64()), ("b", pa.string())])
    table = schema.table_from_rows([{"a": 1, "zzz": 0}, {"b": "x"}], target)
    assert table.schema == target
    assert table.to_pylist() == [{"a": 1, "b": None}, {"a": None, "b": "x"}]
    assert schema.table_from_rows([{"a": 1}], target).schema == target  # b null in every row: still a string


def test_utf8_text_is_writable_and_a_lone_surrogate_is_not():
    assert schema.is_utf8("naïve café ✓") and not schema.is_utf8("name \udc80.jsonl")


def test_data_files_are_whole_parquet_or_rejects_files_wherever_they_lie():
    temporary = schema.TEMPORARY_PREFIX
    assert schema.is_data_file("train-0.parquet") and schema.is_data_file("out/_rejects/stage=x/rejects-0.pq")
    for path in (f"{temporary}train-0.parquet", f"out/ynqa/{temporary}train-0.parquet", "out/ynqa/train-0.json"):
        assert not schema.is_data_file(path), path


def test_accepted_files_are_train_parquet_files_right_in_a_task_folder():
    assert schema.is_accepted_file("ynqa/train-a-0.parquet")
    for path in ("ynqa/train-a/0.parquet", "ynqa/sub/train-a-0.parquet", "x/train-a-0.parquet", "ynqa/a-0.parquet"):
        assert not schema.is_accepted_file(path), path


def test_legacy_accepted_files_are_train_parquet_files_right_in_a_hive_task_folder():
    assert schema.is_legacy_accepted_file("task_type=ynqa/train-0-1.parquet")
    for path in ("ynqa/train-0-1.parquet", "xtask_type=ynqa/train-0.parquet", "task_type=ynqa/sub/train-0.parquet",
                 "task_type=ynqa/train-0/1.parquet",
                 "task_type=ynqa/rejects-0.parquet", "task_type=ynqa/train-0.parquet.tmp"):
        assert not schema.is_legacy_accepted_file(path), path


# ---- engine_rows ---------------------------------------------------------------------------------------


def test_row_seed_is_31_bits_of_the_seeded_id_hash_and_none_when_unseeded():
    assert engine_rows.row_seed(None, "abc") is None
    for seed in (0, 1, 12345):
        for example_id in ("abc", "f" * 32):
            expected = int(sha256_id(seed, example_id)[:8], 16) & 0x7FFFFFFF
            assert engine_rows.row_seed(seed, example_id) == expected
    # the mask matters: find an id whose hash has its top bit set
    top_bit = next(i for i in map(str, range(100)) if int(sha256_id(3, i)[:8], 16) >= 2**31)
    assert engine_rows.row_seed(3, top_bit) == int(sha256_id(3, top_bit)[:8], 16) - 2**31


PASSAGES = [
    {"passage_id": "p1" * 16, "source": "a.jsonl", "position": 1, "chunk": 0, "context": " One. "},
    {"passage_id": "p2" * 16, "source": "b.jsonl", "position": 7, "chunk": 2, "context": "Two."},
]


@pytest.mark.parametrize("seed", [5, None])
def test_to_requests_crosses_passages_task_types_and_samples(seed):
    params = {"max_tokens": 16, "temperature": 0.5, "top_p": 0.9}
    table = engine_rows.to_requests(pa.Table.from_pylist(PASSAGES, schema.PASSAGE_SCHEMA), task_types=["ynqa", "exqa"],
                               n=2, sampling_params=params, seed=seed, model="the-model")
    assert table.schema == engine_rows.REQUEST_SCHEMA
    expected = []
    for passage in PASSAGES:
        for task_type in ("ynqa", "exqa"):
            for sample in range(2):
                example_id = sha256_id(passage["passage_id"], task_type, sample)
                row_seed = None if seed is None else int(sha256_id(seed, example_id)[:8], 16) & 0x7FFFFFFF
                expected.append({**passage, "id": example_id, "task_type": task_type, "sample_index": sample,
                                 "model": "the-model", "prompt": build_prompt(passage["context"], task_type),
                                 "sampling_params": {**params, "seed": row_seed, "top_k": None}})  # generate: no top-k
    assert table.to_pylist() == expected


def generation(**fields):
    row = {"id": "i", "passage_id": "p", "source": "s", "position": 3, "chunk": 1, "task_type": "ynqa",
           "sample_index": 0, "context": " Ctx. ", "model": "m", "prompt": "P", "sampling_params": None,
           "generated_text": None, "engine_error": None, "num_input_tokens": 11, "num_generated_tokens": 5}
    return {**row, **fields}


def test_to_examples_accepts_parses_rejects_and_keeps_engine_errors():
    rows = [
        generation(generated_text="Is {{context}}<|pipe|> yes "),
        generation(generated_text="no separator"),
        generation(generated_text="partial <|pipe|> out", engine_error="CUDA out of memory"),
        generation(generated_text=None, engine_error="timeout"),
        generation(generated_text=None),
    ]
    table = engine_rows.to_examples(pa.Table.from_pylist(rows))
    assert table.schema == engine_rows.EXAMPLE_SCHEMA
    carried = {"id": "i", "passage_id": "p", "source": "s", "position": 3, "chunk": 1, "task_type": "ynqa",
               "sample_index": 0, "context": " Ctx. ", "model": "m", "num_input_tokens": 11,
               "num_generated_tokens": 5, "finish_reason": None}
    none = {"input": None, "output": None, "reason": None, "detail": None}
    assert table.to_pylist() == [
        {**carried, **none, "input": "Is Ctx.", "output": "yes", "raw": "Is {{context}}<|pipe|> yes "},
        {**carried, **none, "reason": "no_separator", "raw": "no separator"},
        {**carried, **none, "reason": "engine_error", "detail": "CUDA out of memory", "raw": "partial <|pipe|> out"},
        {**carried, **none, "reason": "engine_error", "detail": "timeout", "raw": ""},
        {**carried, **none, "reason": "no_separator", "raw": ""},
    ]


def test_to_examples_keeps_the_schema_when_a_column_is_null_in_every_row():
    accepted = engine_rows.to_examples(pa.Table.from_pylist([generation(generated_text="q<|pipe|>a")]))
    assert accepted.schema == engine_rows.EXAMPLE_SCHEMA and accepted["reason"].to_pylist() == [None]
    empty = engine_rows.to_examples(pa.Table.from_pylist([generation()]).slice(0, 0))
    assert empty.schema == engine_rows.EXAMPLE_SCHEMA and empty.num_rows == 0


def test_drop_done_drops_exactly_the_done_ids_wherever_they_sort():
    ids = [f"{i:032x}" for i in (1, 5, 9, 12, 20, 30)]
    requests = pa.table({"id": ids, "n": list(range(len(ids)))})
    done = np.array(sorted(bytes.fromhex(i) for i in (ids[0], ids[2], ids[5])), dtype="S16")
    kept = engine_rows.drop_done(requests, done=done)
    assert kept["id"].to_pylist() == [ids[1], ids[3], ids[4]]
    # done ids that are not among the requests, some sorting after every request
    done = np.array([bytes.fromhex(f"{i:032x}") for i in (2, 12, 40, 41)], dtype="S16")
    assert engine_rows.drop_done(requests, done=done)["id"].to_pylist() == [i for i in ids if i != ids[3]]
    one = np.array([bytes.fromhex(ids[4])], dtype="S16")
    assert engine_rows.drop_done(requests, done=one)["n"].to_pylist() == [0, 1, 2, 3, 5]


def test_drop_done_tells_the_progress_counter_how_many_it_dropped_and_only_when_it_dropped_some():
    ids = [f"{i:032x}" for i in (1, 5, 9)]
    told = []
    progress = SimpleNamespace(skipped=SimpleNamespace(remote=told.append))  # the counter actor's handle, in shape
    two = np.array([bytes.fromhex(ids[0]), bytes.fromhex(ids[2])], dtype="S16")
    engine_rows.drop_done(pa.table({"id": ids}), done=two, progress=progress)
    engine_rows.drop_done(pa.table({"id": ids}), done=np.array([bytes.fromhex(f"{7:032x}")], dtype="S16"),
                          progress=progress)
    assert told == [2]


def test_validation_keeps_the_schema_the_verdicts_detail_and_the_users_validators(tmp_path, monkeypatch):
    (tmp_path / "house_rules.py").write_text(
        "from bonito_ray.validators import Verdict\n\n\n"
        "def no_sums(task):\n"
        "    return Verdict('names_a_sum', 'the answer names a sum') if 'euros' in task.output else None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    passage = "The tenant pays 900 euros a month."

    def example(id_, **fields):
        row = {"id": id_, "task_type": "exqa", "input": f"{passage}\nHow much?", "output": "900 euros",
               "context": passage, "finish_reason": "stop", "num_generated_tokens": 5} | fields
        return {name: row.get(name) for name in engine_rows.EXAMPLE_SCHEMA.names}

    accepted = pa.Table.from_pylist([example("a")], engine_rows.EXAMPLE_SCHEMA)
    assert engine_rows.validate_examples(accepted, level="strict").schema == engine_rows.EXAMPLE_SCHEMA  # detail: all null
    cut = example("c", input=None, output=None, reason="no_separator", finish_reason="length", num_generated_tokens=256)
    table = pa.Table.from_pylist([example("a"), cut], engine_rows.EXAMPLE_SCHEMA)
    out = {r["id"]: r for r in engine_rows.validate_examples(table, level="strict", extra=["house_rules:no_sums"])
           .to_pylist()}
    assert (out["a"]["reason"], out["a"]["detail"]) == ("names_a_sum", "the answer names a sum")
    assert out["c"]["reason"] == "truncated" and out["c"]["detail"].startswith(
        "the generation stopped at the token limit (256 tokens) without ending; it did not parse either")
    # level off with a user's validator: the user's rule runs, the level's truncation rule does not
    out = {r["id"]: r for r in engine_rows.validate_examples(table, level="off", extra=["house_rules:no_sums"])
           .to_pylist()}
    assert out["a"]["reason"] == "names_a_sum" and (out["c"]["reason"], out["c"]["detail"]) == ("no_separator", None)


# ---- dedup (the logic of the shard actor and the keys; the actor plumbing needs a cluster) --------------


Shard = dedup.DedupShard.__ray_actor_class__  # the plain class behind the actor


def u64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def test_keys_are_blake2b_little_endian_and_owners_the_id_prefix():
    texts = ["Rent is due.", "Ünïcode ☃"]
    ids = ["0123456789abcdef" + "0" * 16, "ffffffffffffffff" + "1" * 16]
    keys, owners = dedup._keys_and_owners(pa.table({"context": texts, "passage_id": ids}))
    expected = [int.from_bytes(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(), "little") for t in texts]
    assert keys.dtype == np.uint64 and owners.dtype == np.uint64
    assert keys.tolist() == expected
    assert owners.tolist() == [0x0123456789ABCDEF, 0xFFFFFFFFFFFFFFFF]


def test_shard_starts_empty_and_keeps_the_smallest_owner_per_key_in_any_order():
    shard = Shard()
    assert shard.keys.dtype == np.uint64 and shard.owners.dtype == np.uint64
    assert len(shard.keys) == 0 and len(shard.owners) == 0 and shard.pending == []
    big = 2**64 - 1
    shard.offer(u64(5, big, 5, 7), u64(9, 3, 2, 4))
    shard.offer(u64(5, 7, big), u64(6, 8, big))
    assert shard.owners_of(u64(big, 5, 7)).tolist() == [3, 2, 4]
    assert shard.keys.tolist() == [5, 7, big] and shard.pending == []
    # more offers after a lookup are merged with what was already compacted
    shard.offer(u64(7, 1), u64(1, 50))
    assert shard.owners_of(u64(1, 5, 7, big)).tolist() == [50, 2, 1, 3]
    assert shard.owners.dtype == np.uint64


def test_shard_choice_does_not_depend_on_offer_order():
    keys, owners = u64(4, 4, 4, 9, 9), u64(30, 10, 20, 2, 1)
    forward, backward = Shard(), Shard()
    forward.offer(keys, owners)
    for i in reversed(range(len(keys))):
        backward.offer(keys[i:i + 1], owners[i:i + 1])
    assert forward.owners_of(u64(4, 9)).tolist() == backward.owners_of(u64(4, 9)).tolist() == [10, 1]


# ---- commit: resume decisions and the staged files ---------------------------------------------------


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, pa.schema([("id", pa.string()), ("source", pa.string())])), path)


def test_start_records_the_run_then_resumes_the_same_identity(tmp_path):
    fs, root = LocalFileSystem(), str(tmp_path)
    identity = {"seed": 1, "model": "m"}
    assert commit.start_or_resume(fs, root, identity) is False
    # byte-stable: the same identity always writes the same record
    assert (tmp_path / ".staging" / "_run.json").read_text() == '{"model": "m", "seed": 1}'
    assert commit.start_or_resume(fs, root, dict(identity)) is True


def test_a_different_run_is_refused_once_it_staged_examples(tmp_path):
    fs, root = LocalFileSystem(), str(tmp_path)
    commit.start_or_resume(fs, root, {"model": "m", "seed": 1, "n": 1})
    write_rows(tmp_path / ".staging" / "ynqa" / "train-a-0.parquet", [{"id": "00" * 16, "source": "s"}])
    with pytest.raises(commit.ResumeMismatchError) as err:
        commit.start_or_resume(fs, root, {"model": "m", "seed": 2, "n": 1, "extra": True})
    assert str(err.value) == (f"{root} holds an unfinished run with a different extra, seed; "
                              "run it again as it was to resume it, or pass --overwrite to discard it")


def test_a_different_run_that_staged_no_examples_starts_over(tmp_path, caplog):
    fs, root = LocalFileSystem(), str(tmp_path)
    commit.start_or_resume(fs, root, {"model": "m", "seed": 1})
    write_rows(tmp_path / ".staging" / "_rejects" / "stage=clean" / "rejects-x.pq", [{"id": None, "source": "s"}])
    with caplog.at_level(logging.INFO, logger="bonito_ray.commit"):
        assert commit.start_or_resume(fs, root, {"model": "n", "seed": 2}) is False
    assert (f"{root}: an unfinished run with a different model, seed staged no examples; starting over"
            in caplog.messages)
    assert json.loads((tmp_path / ".staging" / "_run.json").read_text()) == {"model": "n", "seed": 2}


def test_a_different_run_is_refused_once_it_staged_a_self_guide_round_and_not_for_a_temporary_file(tmp_path):
    fs, root = LocalFileSystem(), str(tmp_path)
    commit.start_or_resume(fs, root, {"model": "m"})
    rounds = tmp_path / ".staging" / schema.SELF_GUIDE_DIR
    write_rows(rounds / f"{schema.TEMPORARY_PREFIX}round-0.parquet", [{"id": None, "source": "s"}])  # a killed write
    assert commit.start_or_resume(fs, root, {"model": "n"}) is False
    write_rows(rounds / "round-0.parquet", [{"id": None, "source": "s"}])
    with pytest.raises(commit.ResumeMismatchError, match="a different model"):
        commit.start_or_resume(fs, root, {"model": "m"})


def test_example_files_are_the_accepted_and_generation_reject_parquet_files(tmp_path):
    fs, root = LocalFileSystem(), str(tmp_path)
    row = [{"id": "00" * 16, "source": "s"}]
    wanted = {
        "staged": [".staging/_rejects/stage=generation/rejects-a.pq", ".staging/qa/train-a.parquet"],
        "committed": ["_rejects/stage=generation/rejects-b.pq", "ynqa/train-b.parquet"],
    }
    for relative in wanted["staged"] + wanted["committed"] + [
            "_rejects/stage=clean/rejects-c.pq", ".staging/_rejects/stage=corpus/rejects-d.pq",
            "ynqa/notes.txt", "ynqa/x.parquet", "other/ynqa/train-x.parquet", "notatask/train-x.parquet",
            "ynqa/deeper/train-x.parquet", "_rejects/stage=generation.parquet"]:
        write_rows(tmp_path / relative, row)
    (tmp_path / "ynqa" / "notes.txt").write_text("not parquet")
    staged = [f"{root}/{r}" for r in wanted["staged"]]
    committed = [f"{root}/{r}" for r in wanted["committed"]]
    assert commit.staged_example_files(fs, root) == staged
    assert commit.committed_example_files(fs, root) == committed
    assert commit.example_files(fs, root) == staged + committed


def test_done_ids_are_sorted_unique_and_skip_committed_rows_of_stale_sources(tmp_path):
    # a filesystem whose paths are not local paths (as on S3): every read must go through it
    fs, root = SubTreeFileSystem(str(tmp_path), LocalFileSystem()), "out"
    assert commit.done_ids(fs, root).dtype == np.dtype("S16") and len(commit.done_ids(fs, root)) == 0
    a, b, c, d = (f"{i:032x}" for i in (4, 3, 2, 1))
    write_rows(tmp_path / "out" / ".staging" / "ynqa" / "train-x.parquet",
               [{"id": a, "source": "stale.jsonl"}, {"id": b, "source": "ok.jsonl"}])
    write_rows(tmp_path / "out" / "ynqa" / "train-y.parquet",
               [{"id": b, "source": "ok.jsonl"}, {"id": c, "source": "stale.jsonl"}, {"id": d, "source": "ok.jsonl"}])
    done = commit.done_ids(fs, root, stale_sources=["stale.jsonl"])
    assert done.dtype == np.dtype("S16")
    assert done.tolist() == [bytes.fromhex(i) for i in (d, b, a)]
    assert commit.done_ids(fs, root).tolist() == [bytes.fromhex(i) for i in (d, c, b, a)]
    every = commit.done_ids(fs, root, stale_sources=["stale.jsonl", "ok.jsonl"])  # committed rows all stale
    assert every.dtype == np.dtype("S16") and every.tolist() == [bytes.fromhex(i) for i in (b, a)]


def test_staged_data_is_every_staged_file_but_the_records_and_temporaries():
    assert commit._is_staged_data("task_type=ynqa/train-a.parquet")
    assert commit._is_staged_data("_ledger.json")
    assert not commit._is_staged_data("_run.json")
    assert not commit._is_staged_data("_commit.json")
    assert not commit._is_staged_data(".tmp-123")
    assert not commit._is_staged_data("task_type=ynqa/.tmp-train-a.parquet")
    assert not commit._is_staged_data("_rejects/stage=generation/.tmp-rejects-a.pq")
    assert commit._is_staged_data("task_type=ynqa/train.tmp-a.parquet")


def test_move_places_a_staged_file_skips_one_already_moved_and_names_a_lost_one(tmp_path):
    fs = LocalFileSystem()
    (tmp_path / ".staging" / "task_type=a").mkdir(parents=True)
    (tmp_path / ".staging" / "task_type=a" / "f.parquet").write_bytes(b"data")
    source, target = f"{tmp_path}/.staging/task_type=a/f.parquet", f"{tmp_path}/task_type=a/f.parquet"
    commit._move(fs, source, target)
    assert (tmp_path / "task_type=a" / "f.parquet").read_bytes() == b"data"
    assert not (tmp_path / ".staging" / "task_type=a" / "f.parquet").exists()
    commit._move(fs, source, target)  # a killed attempt moved it already
    assert (tmp_path / "task_type=a" / "f.parquet").read_bytes() == b"data"
    # a target folder more than one level deep that does not exist yet
    (tmp_path / ".staging" / "_rejects" / "stage=generation").mkdir(parents=True)
    (tmp_path / ".staging" / "_rejects" / "stage=generation" / "r.parquet").write_bytes(b"r")
    commit._move(fs, f"{tmp_path}/.staging/_rejects/stage=generation/r.parquet",
                 f"{tmp_path}/_rejects/stage=generation/r.parquet")
    assert (tmp_path / "_rejects" / "stage=generation" / "r.parquet").read_bytes() == b"r"
    with pytest.raises(FileNotFoundError) as err:
        commit._move(fs, f"{tmp_path}/.staging/g.parquet", f"{tmp_path}/g.parquet")
    assert str(err.value) == (f"commit journal names {tmp_path}/.staging/g.parquet, "
                              "which is neither staged nor in place")


def test_completion_and_journal_markers_are_files(tmp_path):
    fs, root = LocalFileSystem(), str(tmp_path)
    (tmp_path / "_SUCCESS").mkdir()
    (tmp_path / ".staging" / "_commit.json").mkdir(parents=True)
    assert not commit.is_complete(fs, root) and not commit.has_journal(fs, root)
    (tmp_path / "_SUCCESS").rmdir()
    (tmp_path / ".staging" / "_commit.json").rmdir()
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / ".staging" / "_commit.json").write_text("{}")
    assert not commit.is_complete(fs, root) and commit.has_journal(fs, root)  # a _SUCCESS alone: Spark's, Hadoop's
    (tmp_path / "_manifest.json").write_text(json.dumps({"summary": "lots"}))
    assert not commit.is_complete(fs, root)
    (tmp_path / "_manifest.json").write_text(json.dumps({"summary": {}}))
    assert commit.is_complete(fs, root)


# ---- output: overlap, foreign entries, what a finished job does ----------------------------------------


@pytest.mark.parametrize(("input_uri", "output_uri", "how"), [
    ("s3://b/in", "s3://b/in/", "they are the same location"),
    ("s3://b/in", "s3://b/in/out", "the output lies inside the input, so its files would be read as corpus"),
    ("s3://b/in/x", "s3://b/in", "the input lies inside the output"),
])
def test_overlap_message_says_how_they_overlap(input_uri, output_uri, how):
    with pytest.raises(output.OutputError) as err:
        output.check_no_overlap(input_uri, output_uri)
    assert str(err.value) == (f"input {input_uri} and output {output_uri} overlap ({how}); "
                              "choose an output outside the input")


def test_the_root_folder_overlaps_everything_and_a_name_prefix_is_no_overlap():
    with pytest.raises(output.OutputError, match="the output lies inside the input"):
        output.check_no_overlap("/", "/srv/out")
    with pytest.raises(output.OutputError, match="the input lies inside the output"):
        output.check_no_overlap("/srv/in", "/")
    output.check_no_overlap("s3://b/dataX", "s3://b/data/out")
    output.check_no_overlap("s3://b/data/in", "s3://b/dataX")


def test_locations_normalise_schemes_paths_and_globs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert output._location("s3a://b/x//y/") == ("s3", "/b/x/y")
    assert output._location("s3n://b/x") == ("s3", "/b/x")
    assert output._location("gcs://b/x/../y") == ("gs", "/b/y")
    assert output._location("abfs://c/d") == ("abfs", "/c/d")
    assert output._location(f"file://{tmp_path}/a") == ("file", f"{tmp_path}/a")
    assert output._location("rel/a") == ("file", f"{tmp_path}/rel/a")
    assert output._location("s3://b/in/*.jsonl", True) == ("s3", "/b/in")
    assert output._location("s3://b/in/part?/x", True) == ("s3", "/b/in")
    assert output._location("s3://b/in/[ab]/x", True) == ("s3", "/b/in")
    assert output._location("s3://b/in/*/x/*.jsonl", True) == ("s3", "/b/in")  # cut at the first wildcard
    assert output._location("s3://b/in/X.jsonl", True) == ("s3", "/b/in/X.jsonl")  # no wildcard at all
    assert output._location("s3://b/inX/sub/*.jsonl", True) == ("s3", "/b/inX/sub")
    assert output._location("s3://b/X") == ("s3", "/b/X")
    assert output._location("s3://b/x ") == ("s3", "/b/x ")  # a key may end in a space
    assert output._location("s3://b/in/*.jsonl") == ("s3", "/b/in/*.jsonl")  # an output is never a glob
    assert output._location("*.jsonl", True) == ("file", "/")
    (tmp_path / "odd[1]").mkdir()  # a local folder whose name looks like a glob is that folder
    assert output._location("odd[1]", True) == ("file", f"{tmp_path}/odd[1]")


def test_ownership_comes_from_our_records_not_from_names(tmp_path):
    def write(relative, text=""):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)

    def foreign():
        return output.foreign_entries(LocalFileSystem(), str(tmp_path))

    names = ["ynqa/train-a-0.parquet", "_rejects/stage=corpus/rejects-b.pq", "_self_guide/inputs-round-1.pq",
             "_SUCCESS", "_ledger.json", "_card/README.md", "_card/yield.png", ".huggingface.yaml", "_lease.json",
             ".staging/ynqa/train-c-0.parquet", "task_type=a/train-d-0.parquet", ".tmp-9", "zeta/alpha.txt"]
    for name in names:
        write(name)
    assert foreign() == sorted(names)  # no record: nothing is ours, whatever the names
    assert output.foreign_entries(LocalFileSystem(), str(tmp_path / "absent")) == []
    write(f".tmp-{'a' * 32}-_manifest.json")  # a write of ours under way: the write id in the name
    write(f"_lease.json.taken-{'b' * 32}")
    write("_lease.json", json.dumps({"run_id": "r", "heartbeat": 1}))
    write(".staging/_run.json", "{}")  # a run record: the staging folder is the run's
    assert foreign() == sorted(set(names) - {"_lease.json", ".staging/ynqa/train-c-0.parquet"})
    write("_manifest.json", json.dumps({"summary": {}, "identity": {}, "written": ["ynqa/train-a-0.parquet"]}))
    assert foreign() == sorted(["_rejects/stage=corpus/rejects-b.pq", "_self_guide/inputs-round-1.pq", ".tmp-9",
                                "task_type=a/train-d-0.parquet", "zeta/alpha.txt"])
    # A manifest of an earlier version (no `written`): its files, and the data files of _rejects/ and _self_guide/.
    write("_manifest.json", json.dumps({"summary": {"files": [{"path": "task_type=a/train-d-0.parquet"}]},
                                        "identity": {}}))
    assert foreign() == [".tmp-9", "ynqa/train-a-0.parquet", "zeta/alpha.txt"]
    write("_manifest.json", json.dumps({"summary": "lots", "identity": {}}))  # not a manifest of ours
    assert "_manifest.json" in foreign() and "_SUCCESS" in foreign()
    write(".staging/_commit.json", json.dumps({"moves": ["ynqa/train-a-0.parquet"]}))  # a journal names its moves
    assert "ynqa/train-a-0.parquet" not in foreign() and "_SUCCESS" not in foreign()


def test_foreign_files_are_refused_naming_the_first_five(tmp_path):
    fs, root = LocalFileSystem(), str(tmp_path)
    output._refuse_foreign(fs, root, "OUT", overwrite=False)  # empty: nothing to refuse
    for i in range(7):
        (tmp_path / f"f{i}").write_text("")
    with pytest.raises(output.OutputExistsError) as err:
        output._refuse_foreign(fs, root, "OUT", overwrite=True)
    assert str(err.value) == ("refusing --overwrite: output OUT holds files bonito-ray did not write "
                              "(f0, f1, f2, f3, f4 and 2 more); choose a new or empty location "
                              "(bonito-ray deletes nothing it did not write)")
    for i in (5, 6):
        (tmp_path / f"f{i}").unlink()
    with pytest.raises(output.OutputExistsError) as err:
        output._refuse_foreign(fs, root, "OUT", overwrite=False)
    assert str(err.value).startswith("output OUT holds files bonito-ray did not write (f0, f1, f2, f3, f4); ")


def test_symbolic_links_in_the_output_are_refused_naming_them(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ynqa").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(output.OutputExistsError) as err:
        output._refuse_foreign(LocalFileSystem(), str(tmp_path / "out"), "OUT", overwrite=False)
    assert str(err.value) == ("output OUT holds symbolic links (ynqa/); files written through them would land "
                              "outside the output: remove them, or choose a new or empty location")


class _FakeLease:
    """Stands in for the output lease (its own tests run it for real): counts checks."""

    def __init__(self):
        self.checks = 0

    def check(self):
        self.checks += 1

    def release(self):
        pass


SUMMARY = {"output": "OUT", "passages": 2, "prompts": 2, "accepted": {"ynqa": 2}, "rejected": {},
           "corpus_rejected": {}, "passages_dropped": {}, "input_tokens": 10, "generated_tokens": 4,
           "wall_seconds": 9.5, "resumed": False, "skipped_done": 0, "files": []}


def committed_output(tmp_path, identity):
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / "_manifest.json").write_text(json.dumps({"summary": SUMMARY, "identity": identity}))
    return output.Output("OUT", LocalFileSystem(), str(tmp_path), _FakeLease())


def test_a_finished_job_says_why_there_is_nothing_to_do(tmp_path, caplog):
    identity = {"model": "m", "input_fingerprint": "f1"}
    out = committed_output(tmp_path, identity)
    with caplog.at_level(logging.INFO, logger="bonito_ray.output"):
        summary = out.finished(dict(identity), incremental=False, has_work=True)
    why = "this job's dataset is already complete (--overwrite to redo it)"
    assert summary == RunSummary(**{**SUMMARY, "nothing_done": why, "wall_seconds": 0.0})
    assert caplog.messages == [f"OUT: {why}"]
    why = "no input file is new, changed or deleted since the last run"
    summary = out.finished({"model": "m", "input_fingerprint": "f2"}, incremental=True, has_work=False)
    assert summary.nothing_done == why and summary.wall_seconds == 0.0 and summary.accepted == {"ynqa": 2}
    assert out.finished({"model": "m", "input_fingerprint": "f2"}, incremental=True, has_work=True) is None


def test_a_different_job_on_a_finished_dataset_is_refused_naming_what_differs(tmp_path):
    out = committed_output(tmp_path, {"model": "m", "seed": 1, "input_fingerprint": "f1"})
    with pytest.raises(output.OutputExistsError) as err:
        out.finished({"model": "m", "seed": 2, "input_fingerprint": "f2", "n": 1}, incremental=False, has_work=True)
    assert str(err.value) == ("output OUT already holds a complete dataset made by a different job "
                              "(different input_fingerprint, n, seed); "
                              "choose another location, or pass --overwrite to replace it")
    with pytest.raises(output.OutputExistsError) as err:
        out.finished({"model": "x", "seed": 1, "input_fingerprint": "f2"}, incremental=True, has_work=True)
    assert str(err.value) == ("output OUT already holds a complete dataset made by a different job "
                              "(different model); an incremental run only adds to a dataset made with the same "
                              "settings; choose another location, or pass --overwrite to replace it")


def test_a_dataset_whose_manifest_has_no_identity_is_a_different_job(tmp_path):
    out = committed_output(tmp_path, None)
    manifest = json.loads((tmp_path / "_manifest.json").read_text())
    del manifest["identity"]
    (tmp_path / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(output.OutputExistsError, match=r"\(different model, seed\)"):
        out.finished({"model": "m", "seed": 1}, incremental=False, has_work=True)


def test_an_unfinished_or_foreign_made_output_is_not_finished(tmp_path):
    fs = LocalFileSystem()
    out = output.Output("OUT", fs, str(tmp_path), _FakeLease())
    assert out.finished({}, incremental=False, has_work=False) is None  # empty
    (tmp_path / "ynqa").mkdir()
    write_rows(tmp_path / "ynqa" / "train-0.parquet", [{"id": "00" * 16, "source": "s"}])
    with pytest.raises(output.OutputExistsError) as err:
        out.finished({}, incremental=False, has_work=False)
    assert str(err.value) == ("output OUT holds a bonito-ray dataset without _SUCCESS or a run record to resume "
                              "(left by an older version?); pass --overwrite to replace it, or choose another "
                              "location")
    (tmp_path / ".staging").mkdir()
    (tmp_path / ".staging" / "_run.json").write_text("{}")
    assert out.finished({}, incremental=False, has_work=False) is None  # staging: a run to resume


def test_differences_are_sorted_and_ignore_what_is_asked():
    before, now = {"a": 1, "b": 2, "c": 3}, {"b": 2, "c": 4, "d": 5}
    assert output._differences(before, now) == ["a", "c", "d"]
    assert output._differences(before, now, ignore=("c",)) == ["a", "d"]
    assert output._differences(before, dict(before)) == []
