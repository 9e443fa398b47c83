"""Object storage for real: corpus read from and dataset written to a local S3 endpoint (moto)."""

import gzip
import io
import json

import boto3
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from bonito_ray.config import GenerateConfig
from bonito_ray.corpus import CorpusError, list_corpus_files
from bonito_ray.pipeline import generate
from bonito_ray.storage import resolve_filesystem
from tests.tiny_models import sample_passages


def put(endpoint, key, body):
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket="corpus", Key=key, Body=body)


def jsonl(texts):
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


@pytest.fixture(scope="module")
def s3_corpus(s3_endpoint):
    """Many files of several formats under one prefix, 60 distinct passages in all."""
    passages = [p + f" Record {i}." for i, p in enumerate(sample_passages(60))]
    for i in range(10):
        put(s3_endpoint, f"docs/part-{i:02d}.jsonl", jsonl(passages[i * 4 : i * 4 + 4]))
    put(s3_endpoint, "docs/gz/part.jsonl.gz", gzip.compress(jsonl(passages[40:50])))
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": passages[50:60]}), buffer)
    put(s3_endpoint, "docs/pq/part.parquet", buffer.getvalue())
    return passages


def test_generate_from_s3_to_s3_and_read_back(ray_cluster, random_model, s3_endpoint, s3_corpus):
    summary = generate(GenerateConfig(input="s3://corpus/docs/", output="s3://corpus/synthetic/run1",
                                      engine="echo", model=random_model, task_types=["ynqa"],
                                      s3_endpoint=s3_endpoint))
    assert summary.passages == 60 and summary.accepted == {"ynqa": 60}
    fs, _ = resolve_filesystem("s3://corpus", s3_endpoint)
    table = pds.dataset("corpus/synthetic/run1", filesystem=fs, partitioning="hive").to_table()
    assert sorted(table["context"].to_pylist()) == sorted(s3_corpus)
    assert all(s.startswith("s3://corpus/docs/") for s in table["source"].to_pylist())
    assert fs.get_file_info("corpus/synthetic/run1/_SUCCESS").type == pafs.FileType.File


def test_glob_selects_files(s3_endpoint, s3_corpus):
    files = list_corpus_files("s3://corpus/docs/part-0*.jsonl", s3_endpoint).files
    assert files == [f"corpus/docs/part-{i:02d}.jsonl" for i in range(10)]


def test_endpoint_from_aws_endpoint_url(monkeypatch, s3_endpoint, s3_corpus):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    files = list_corpus_files("s3://corpus/docs/pq/").files
    assert files == ["corpus/docs/pq/part.parquet"]


def test_empty_or_missing_prefix_is_a_clear_error(s3_endpoint):
    put(s3_endpoint, "empty/readme.csv", b"not a corpus file")
    with pytest.raises(CorpusError, match="no corpus files"):
        list_corpus_files("s3://corpus/empty/", s3_endpoint)
    with pytest.raises(CorpusError, match="does not exist"):
        list_corpus_files("s3://corpus/nothing-here/", s3_endpoint)
