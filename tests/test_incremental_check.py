"""How --incremental tells a changed input file (issue 24, item 18): by size and modification time (the
default), or by content (--incremental-check content), which sees an edit that keeps both, as ``cp -p`` and
``rsync -t`` make. Real files, moto's S3 server, and real runs on the local Ray cluster with the echo engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pytest

from bonito_ray import ledger
from bonito_ray.config import ConfigError, GenerateConfig
from bonito_ray.pipeline import generate
from bonito_ray.storage import resolve_filesystem
from tests.corpus_files import write_jsonl
from tests.tiny_models import sample_passages


def edit_keeping_size_and_mtime(path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (as long) in the file and put its modification time back, as ``cp -p`` does."""
    assert len(old) == len(new) and old != new
    before = path.stat()
    path.write_text(path.read_text().replace(old, new, 1))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def sign(corpus, files, check):
    return ledger.signatures(str(corpus), pafs.LocalFileSystem(), [str(f) for f in files], check)


def test_an_edit_keeping_size_and_mtime_is_seen_by_the_content_check_only(tmp_path):
    corpus = write_jsonl(tmp_path / "day1.jsonl", sample_passages(3))
    before = {check: sign(tmp_path, [corpus], check) for check in ledger.INCREMENTAL_CHECKS}
    edit_keeping_size_and_mtime(corpus, "pays", "owes")
    after = {check: sign(tmp_path, [corpus], check) for check in ledger.INCREMENTAL_CHECKS}
    assert after[ledger.SIZE_MTIME] == before[ledger.SIZE_MTIME]  # the default's documented blind spot
    assert after[ledger.CONTENT] != before[ledger.CONTENT]
    assert ledger.total_size(after[ledger.CONTENT]) == corpus.stat().st_size


def test_a_file_gone_since_the_listing_has_a_signature_of_no_size(tmp_path):
    # Its reader rejects it as missing_file; the plan (which sizes dedup by the bytes to read) goes on.
    for check in ledger.INCREMENTAL_CHECKS:
        gone = sign(tmp_path, [tmp_path / "gone.jsonl"], check)
        assert ledger.total_size(gone) == 0 and ledger.check_of(gone[str(tmp_path / "gone.jsonl")]) == check


def test_a_change_of_check_compares_each_file_by_the_check_it_was_recorded_by(tmp_path):
    same, copied, grown = (write_jsonl(tmp_path / f"{name}.jsonl", sample_passages(3))
                           for name in ("same", "copied", "grown"))
    uris = {str(f): f for f in (same, copied, grown)}

    def recheck(wanted, check):
        return sign(tmp_path, [uris[u] for u in wanted], check)

    by_size_mtime = sign(tmp_path, uris.values(), ledger.SIZE_MTIME)
    edit_keeping_size_and_mtime(copied, "pays", "owes")
    write_jsonl(grown, sample_passages(4))
    now = sign(tmp_path, uris.values(), ledger.CONTENT)
    todo, changed, removed, rechecked = ledger.pending(now, by_size_mtime, recheck)
    # Compared by size and mtime, as recorded: the copy is not seen this once; every unchanged file is recorded
    # again by content, so that from now on it is.
    assert (todo, changed, removed, rechecked) == ([str(grown)], [str(grown)], [], [str(copied), str(same)])
    by_content = {**by_size_mtime, **{uri: now[uri] for uri in todo + rechecked}}
    assert {ledger.check_of(s) for s in by_content.values()} == {ledger.CONTENT}
    edit_keeping_size_and_mtime(same, "pays", "owes")
    assert ledger.pending(sign(tmp_path, uris.values(), ledger.CONTENT), by_content, recheck)[0] == [str(same)]
    # And back: a file recorded by content is compared by content, then recorded by size and mtime.
    edit_keeping_size_and_mtime(copied, "owes", "pays")
    todo, _, _, rechecked = ledger.pending(sign(tmp_path, uris.values(), ledger.SIZE_MTIME), by_content, recheck)
    assert (todo, rechecked) == ([str(copied), str(same)], [str(grown)])


def test_on_s3_a_rewrite_in_the_same_second_is_seen_by_the_content_check_only(s3_endpoint):
    # S3 gives an object's modification time to the second: a rewrite of the same size within that second
    # keeps the size-mtime signature, as cp -p does on disk.
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    fs, path = resolve_filesystem("s3://corpus/checked/a.jsonl", s3_endpoint)

    def put_and_sign(body):
        s3.put_object(Bucket="corpus", Key="checked/a.jsonl", Body=body)
        signed = {check: ledger.signatures("s3://corpus/checked/", fs, [path], check)
                  for check in ledger.INCREMENTAL_CHECKS}
        return signed, s3.head_object(Bucket="corpus", Key="checked/a.jsonl")["LastModified"]

    for _ in range(5):  # until both writes fall in one second
        (before, first), (after, second) = put_and_sign(b'{"text": "the tenant pays"}\n'), put_and_sign(
            b'{"text": "the tenant owes"}\n')
        if first == second:
            break
    assert first == second
    assert list(after[ledger.CONTENT]) == ["s3://corpus/checked/a.jsonl"]
    assert after[ledger.SIZE_MTIME] == before[ledger.SIZE_MTIME]
    assert after[ledger.CONTENT] != before[ledger.CONTENT]


def test_the_check_is_a_flag_and_needs_incremental(tmp_path):
    base = {"input": str(tmp_path / "in"), "output": str(tmp_path / "out")}
    assert GenerateConfig(**base).incremental_check == "size-mtime"
    with pytest.raises(ConfigError, match="incremental_check applies to --incremental runs only"):
        GenerateConfig(**base, incremental_check="content")
    with pytest.raises(ConfigError, match="incremental_check must be one of size-mtime, content, got 'hash'"):
        GenerateConfig(**base, incremental=True, incremental_check="hash")
    done = subprocess.run([sys.executable, "-m", "bonito_ray.cli", "generate", "--help"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert "--incremental-check {size-mtime,content}" in done.stdout


def test_runs_by_either_check_and_a_switch_between_them(ray_cluster, random_model, tmp_path):
    corpus, out = tmp_path / "in", tmp_path / "out"
    texts = sample_passages(6)
    day1, day2 = write_jsonl(corpus / "day1.jsonl", texts[:3]), write_jsonl(corpus / "day2.jsonl", texts[3:])

    def run(check):
        return generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                       task_types=["ynqa"], incremental=True, incremental_check=check))

    def contexts():
        return sorted(pds.dataset(str(out / "ynqa")).to_table(columns=["context"])["context"].to_pylist())

    def checks():
        return {ledger.check_of(s) for s in json.loads((out / "_ledger.json").read_text()).values()}

    assert run("size-mtime").accepted == {"ynqa": 6} and checks() == {"size-mtime"}
    edit_keeping_size_and_mtime(day1, "Clause 0: the tenant pays", "Clause 0: the tenant owes")
    assert run("size-mtime").nothing_done  # the default does not see it
    # A switch of check: day1 is compared by size and mtime, as it was recorded (so the edit is still not seen),
    # and every file is recorded again by content; nothing is generated again.
    switched = run("content")
    assert not switched.nothing_done and switched.accepted == {"ynqa": 6} and checks() == {"content"}
    assert contexts() == sorted(texts)
    edit_keeping_size_and_mtime(day2, "Clause 3: the tenant pays", "Clause 3: the tenant owes")
    assert run("content").accepted == {"ynqa": 6}
    assert contexts() == sorted(texts[:3] + ["Clause 3: the tenant owes" + texts[3][len("Clause 3: the tenant pays"):]]
                                + texts[4:])
    assert run("content").nothing_done
