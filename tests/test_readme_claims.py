"""README claims that had no test: inputs, length filters, --no-dedup, dedup order, logs, URIs, the ledger.

The CLI run is one subprocess job (module scope) whose output several tests read: the job's own
log is checked for passage text and credentials, as an operator would see it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pytest
import ray

from bonito_ray import ledger
from bonito_ray.dedup import (MAX_SHARDS, SHARD_INPUT_BYTES, create_shards, drop_duplicates, offer_passages,
                              shard_count)
from bonito_ray.schema import PASSAGE_SCHEMA, TASK_DEDUP_REJECTS_DIR, stable_id
from bonito_ray.storage import resolve_filesystem
from tests.corpus_files import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzEXAMPLEKEY"
MARKER = "Quetzalcoatl"  # a word in every passage, to find passage text in the log
MAX_CHARS = 300


def passage(i: int) -> str:
    return f"Clause {i}: the {MARKER} tenant pays {100 + 7 * i} euros of rent on day {i % 28 + 1}."


@pytest.fixture(scope="module")
def cli_run(ray_cluster, tmp_path_factory, random_model):
    """One `bonito-ray generate` at INFO, --no-dedup, --max-passage-chars, over a folder of mixed files; its
    driver joins the session's cluster (a Ray start per CLI process would be most of its time)."""
    import ray

    corpus = tmp_path_factory.mktemp("readme") / "in"
    (corpus / "notes").mkdir(parents=True)
    (corpus / "notes" / "memo.md").write_text(f"# Memo\n\n{passage(0)}\n")
    write_jsonl(corpus / "records.json", [passage(1), passage(2)])
    write_jsonl(corpus / "more.jsonl", [passage(1), passage(3), passage(4) + " Extra words." * 40])
    write_jsonl(corpus / ".hidden.jsonl", [passage(5)])
    write_jsonl(corpus / "_meta" / "skip.jsonl", [passage(6)])
    write_jsonl(corpus / ".cache" / "skip.jsonl", [passage(7)])
    out = corpus.parent / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"AWS_SECRET_ACCESS_KEY": SECRET}
    done = subprocess.run(
        [sys.executable, "-m", "bonito_ray.cli", "generate", "--input", str(corpus), "--output", str(out),
         "--engine", "echo", "--model", random_model, "--task-types", "ynqa", "--no-dedup",
         "--max-passage-chars", str(MAX_CHARS), "--passage-tokens", "2000",  # no chunking: the long one stays long
         "--log-level", "INFO", "--ray-address", ray.get_runtime_context().gcs_address],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return corpus, out, done.stdout + done.stderr


def test_md_and_json_are_read_and_hidden_or_underscore_paths_are_skipped(cli_run):
    corpus, out, _ = cli_run
    sources = set(pds.dataset(str(out), partitioning="hive").to_table(columns=["source"])["source"].to_pylist())
    assert sources == {str(corpus / "notes" / "memo.md"), str(corpus / "records.json"), str(corpus / "more.jsonl")}


def test_no_dedup_keeps_exact_duplicates(cli_run):
    _, out, _ = cli_run
    contexts = pds.dataset(str(out), partitioning="hive").to_table(columns=["context"])["context"].to_pylist()
    # both copies are prompted; the second one's task is the same task, so task dedup drops it
    dropped = pds.dataset(str(out / TASK_DEDUP_REJECTS_DIR)).to_table().to_pylist()
    assert contexts.count(passage(1)) == 1 and [r["context"] for r in dropped] == [passage(1)]
    assert dropped[0]["reason"] == "duplicate_task" and dropped[0]["detail"].startswith("same task as example")


def test_passages_over_max_chars_are_rejected_as_too_long(cli_run):
    _, out, _ = cli_run
    dropped = pds.dataset(str(out / "_rejects" / "stage=clean")).to_table().to_pylist()
    assert [(r["reason"], r["detail"].endswith(f"chars > {MAX_CHARS}")) for r in dropped] == [("too_long", True)]
    assert dropped[0]["context"].startswith(passage(4))


def test_info_logs_hold_no_passage_text_and_no_credentials(cli_run):
    _, _, log = cli_run
    assert "INFO" in log and "wrote" in log  # the log was captured at INFO
    assert MARKER not in log and SECRET not in log


def test_dedup_keeps_the_smallest_id_whatever_the_order(ray_cluster, tmp_path):
    def block(ids_and_texts):
        return pa.Table.from_pylist([{"passage_id": i, "source": "s", "position": 1, "chunk": 0, "context": t}
                                     for i, t in ids_and_texts], PASSAGE_SCHEMA)

    ids = sorted(stable_id("doc", n, 0) for n in range(6))
    rows = [(ids[5], "same"), (ids[1], "same"), (ids[3], "same"), (ids[0], "other"), (ids[4], "other"),
            (ids[2], "alone")]

    def kept(batches, shard_count=2):
        shards = create_shards(shard_count)
        for batch in batches:
            offer_passages(batch, shards=shards)
        out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
        return sorted(i for b in batches
                      for i in drop_duplicates(b, shards=shards, output_uri=str(out), s3_endpoint=None)["passage_id"]
                      .to_pylist())

    forward = kept([block(rows[:3]), block(rows[3:])])
    backward = kept([block(rows[::-1][:3]), block(rows[::-1][3:])])
    assert forward == backward == [ids[0], ids[1], ids[2]]
    assert kept([block(rows)], shard_count=1) == kept([block(rows)], shard_count=3) == forward  # any shard count


def test_one_dedup_shard_per_gib_of_input():
    gib = SHARD_INPUT_BYTES
    assert SHARD_INPUT_BYTES == 1 << 30
    assert [shard_count(n) for n in (0, 1, gib, gib + 1, 5 * gib)] == [1, 1, 1, 2, 5]
    assert shard_count(10_000 * gib) == MAX_SHARDS
    assert ledger.total_size({"s3://b/a.jsonl": "10:1700000000", "s3://b/c.jsonl": "7:1"}) == 17  # "size:mtime"


@pytest.mark.parametrize(("uri", "type_name", "path"), [
    ("gs://bucket/corpus/", "gcs", "bucket/corpus"),
    ("abfs://container@account.dfs.core.windows.net/corpus", "abfs", "container/corpus"),
])
def test_cloud_uris_resolve_to_their_filesystem_without_network(uri, type_name, path):
    fs, resolved = resolve_filesystem(uri)
    assert (fs.type_name, resolved.rstrip("/")) == (type_name, path)


def test_a_file_rewritten_at_the_same_size_is_changed_by_its_mtime(tmp_path):
    corpus = tmp_path / "day1.jsonl"
    corpus.write_text('{"text": "Clause 1: rent is due."}\n')
    fs = pafs.LocalFileSystem()
    before = ledger.signatures(str(tmp_path), fs, [str(corpus)])
    corpus.write_text('{"text": "Clause 2: rent is due."}\n')  # same size, new content
    stat = corpus.stat()
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = ledger.signatures(str(tmp_path), fs, [str(corpus)])
    assert corpus.stat().st_size == len('{"text": "Clause 1: rent is due."}\n')
    assert before.keys() == after.keys() and before != after
