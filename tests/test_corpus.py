"""Corpus reading on a real local Ray cluster: formats, rejects with reasons, up-front errors."""

import gzip

import pyarrow.dataset as pds
import pytest

from bonito_ray.corpus import CorpusError, check_context_column, list_corpus_files, read_documents
from bonito_ray.storage import display_uri
from tests.corpus_files import write_jsonl, write_parquet


def read(corpus, column, out):
    listing = list_corpus_files(str(corpus))
    return read_documents(str(corpus), listing.fs, listing.files, column, str(out)).take_all()


def preflight(corpus, column):
    listing = list_corpus_files(str(corpus))
    check_context_column(listing.fs, listing.files[0], column, display_uri(str(corpus), listing.files[0]))


def rejects(output):
    path = output / ".staging" / "_rejects" / "stage=corpus"
    if not path.exists():
        return []
    return sorted(pds.dataset(str(path)).to_table().to_pylist(), key=lambda r: (r["source"], r["position"] or 0))


def test_jsonl_bad_records_are_rejected_with_reason_and_line(ray_cluster, tmp_path):
    corpus = tmp_path / "in" / "a.jsonl"
    corpus.parent.mkdir()
    corpus.write_bytes(
        b'{"text": "  good one  "}\n'
        b'{not json\n'
        b'\n'
        b'{"text": null}\n'
        b'{"text": 42}\n'
        b'{"body": "no text key"}\n'
        b'{"text": "   "}\n'
        b'["a", "list"]\n'
        b'{"text": "caf\xc3\xa9 \xff\xfe bad bytes"}\n'
        b'{"text": "good two"}'  # no trailing newline
    )
    out = tmp_path / "out"
    rows = read(corpus, "text", out)
    assert [(r["position"], r["context"]) for r in rows] == [(1, "  good one  "), (10, "good two")]
    assert all(r["source"] == str(corpus) for r in rows)
    got = [(r["position"], r["reason"]) for r in rejects(out)]
    assert got == [(2, "invalid_json"), (4, "null_context"), (5, "non_string_context"),
                   (6, "missing_context_column"), (7, "empty_context"), (8, "not_an_object"), (9, "invalid_utf8")]
    assert rejects(out)[0]["raw"] == "{not json"


def test_directory_of_jsonl_gz_and_parquet_with_custom_column(ray_cluster, tmp_path):
    corpus = tmp_path / "in"
    write_jsonl(corpus / "a.jsonl.gz", ["gz one", "gz two"], column="body")
    write_parquet(corpus / "sub" / "b.parquet", {"body": ["pq one", None, "pq three"], "n": [1, 2, 3]})
    write_parquet(corpus / "sub" / "c.parquet", {"text": ["wrong column"]})
    (corpus / "doc.txt").write_text("A whole text file\nis one document.\n")
    out = tmp_path / "out"
    rows = read(corpus, "body", out)
    assert sorted(r["context"] for r in rows) == [
        "A whole text file\nis one document.\n", "gz one", "gz two", "pq one", "pq three"]
    got = {(r["source"].rsplit("/", 1)[1], r["position"], r["reason"]) for r in rejects(out)}
    assert got == {("b.parquet", 2, "null_context"), ("c.parquet", 1, "missing_context_column")}


def test_truncated_gzip_keeps_what_was_read_and_rejects_the_rest(ray_cluster, tmp_path):
    data = gzip.compress(b"".join(b'{"text": "passage %d"}\n' % i for i in range(200_000)))
    corpus = tmp_path / "in" / "cut.jsonl.gz"
    corpus.parent.mkdir()
    corpus.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    rows = read(corpus, "text", out)
    assert 0 < len(rows) < 200_000
    (reject,) = rejects(out)
    assert reject["reason"] == "truncated_file" and reject["position"] == len(rows) + 1


def test_missing_input_and_empty_directory_fail_up_front(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        list_corpus_files(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no corpus files"):
        list_corpus_files(str(tmp_path / "empty"))


def test_missing_context_column_fails_up_front_listing_columns(tmp_path):
    corpus = write_jsonl(tmp_path / "a.jsonl", [{"body": "x", "title": "y"}])
    with pytest.raises(CorpusError, match=r"no context column 'text'; columns found: body, title"):
        preflight(corpus, "text")
    parquet = write_parquet(tmp_path / "b.parquet", {"body": ["x"]})
    with pytest.raises(CorpusError, match="no context column 'text'"):
        preflight(parquet, "text")


def test_zstd_jsonl_and_a_saved_datasets_dataset(ray_cluster, tmp_path):
    import datasets
    import pyarrow as pa

    corpus = tmp_path / "in"
    corpus.mkdir()
    with pa.CompressedOutputStream(str(corpus / "a.jsonl.zst"), "zstd") as f:
        f.write(b'{"text": "zstd one"}\n{"text": "zstd two"}\n')
    datasets.Dataset.from_dict({"text": ["saved one", "saved two", "saved three"]}).save_to_disk(
        str(corpus / "saved"))
    rows = read(corpus, "text", tmp_path / "out")
    assert sorted(r["context"] for r in rows) == ["saved one", "saved three", "saved two", "zstd one", "zstd two"]
    assert sorted(r["position"] for r in rows if "saved" in r["context"]) == [1, 2, 3]
