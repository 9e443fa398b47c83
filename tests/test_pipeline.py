"""The whole job on a real local Ray cluster, writing real Parquet, read back by pyarrow and datasets."""

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
import yaml

from bonito_ray.config import GenerateConfig
from bonito_ray.pipeline import OutputExistsError, generate
from bonito_ray.schema import (ACCEPTED_SCHEMA, DATA_SUFFIXES, EXAMPLE_REJECT_DIRS, GENERATION_REJECTS_DIR,
                               VALIDATION_REJECTS_DIR)
from tests.corpus_files import write_jsonl
from tests.tiny_models import sample_passages

ROOT = Path(__file__).resolve().parents[1]


def accepted(output: Path) -> list[dict]:
    return pds.dataset(str(output), partitioning="hive").to_table().to_pylist()


def generation_rejects(output: Path) -> list[dict]:
    return pds.dataset(str(output / GENERATION_REJECTS_DIR)).to_table().to_pylist()


def example_rejects(output: Path) -> list[dict]:
    """The rejected example rows of every stage (generation, validation, task dedup)."""
    return [r for d in EXAMPLE_REJECT_DIRS if (output / d).exists()
            for r in pds.dataset(str(output / d)).to_table().to_pylist()]


def test_echo_engine_end_to_end(ray_cluster, random_model, tmp_path):
    passages = sample_passages(30)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", ["  " + passages[0] + "\n"] + passages[1:] + [{"text": None}, ""])
    out = tmp_path / "out"
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                      task_types=["ynqa", "extractive question answering"],
                                      n=2))
    # 30 good passages x 2 task types x 2 samples; the null and the empty context are rejected.
    assert (summary.passages, summary.prompts) == (30, 120)
    assert summary.accepted == {"ynqa": 60, "exqa": 60} and summary.rejected == {}
    assert summary.corpus_rejected == {"null_context": 1, "empty_context": 1}

    rows = accepted(out)
    assert len(rows) == 120 and len({r["id"] for r in rows}) == 120
    assert sorted(p.name for p in out.iterdir()) == [
        ".huggingface.yaml", "_SUCCESS", "_card", "_manifest.json", "_rejects", "exqa", "ynqa"]
    first = next(r for r in rows if r["position"] == 1 and r["task_type"] == "exqa" and r["sample_index"] == 1)
    assert first["context"] == passages[0] and first["chunk"] == 0  # normalised: surrounding space trimmed
    assert first["input"] == passages[0] + "\nWhich words of the passage above come first from word 2 on?"
    assert first["output"] == " ".join(passages[0].split()[1:7])
    assert first["source"] == str(corpus) and first["model"] == summary_model(out)
    for path in out.glob("*/train-*.parquet"):
        assert pq.read_schema(path).remove_metadata() == ACCEPTED_SCHEMA

    files = sorted(out.glob("*/train-*.parquet"))
    assert len(files) == 2  # one file per task type: 60 rows each, under the default 50,000 per file
    assert_every_reader_opens(out, {"ynqa": 60, "exqa": 60})

    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["summary"]["accepted"] == {"ynqa": 60, "exqa": 60}
    assert sum(f["rows"] for f in manifest["summary"]["files"]) == 120
    assert manifest["config"]["n"] == 2 and "ray" in manifest["versions"]

    # The dataset card: one config per task type and a default one, each loaded by `datasets`.
    for name, rows_of in (("ynqa", {"ynqa"}), ("exqa", {"exqa"}), ("default", {"ynqa", "exqa"})):
        loaded = datasets.load_dataset(str(out), name, split="train")
        assert loaded.num_rows == 60 * len(rows_of) and set(loaded["task_type"]) == rows_of
    card = (out / "_card" / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["size_categories"] == ["n<1K"] and header["license"] == "other"
    assert header == yaml.safe_load((out / ".huggingface.yaml").read_text())
    exqa = [r for r in rows if r["task_type"] == "exqa"]
    assert card_row(card, "exqa") == ["exqa", "60", "60", "0", "100.0%", "none", spread(exqa, "num_generated_tokens"),
                                      spread(exqa, "num_input_tokens")]
    assert manifest["runs"][0]["run_id"] in card and f"--input {corpus}" in card and "--n 2" in card
    assert all(p[:20] not in card for p in passages)  # no passage text without --card-samples
    assert all((out / "_card" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for png in ("yield.png", "lengths.png"))


def spread(rows: list[dict], column: str) -> str:
    """Median / p95 / max of ``column``, each the smallest value with that share of rows at or below it."""
    values = sorted(r[column] for r in rows)
    return " / ".join(str(values[math.ceil(q * len(values)) - 1]) for q in (0.5, 0.95, 1.0))


def card_row(card: str, task_type: str) -> list[str]:
    """The cells of ``task_type``'s row in the card's figures table."""
    return next([c.strip() for c in line.strip("|").split("|")] for line in card.splitlines()
                if line.startswith(f"| {task_type} |"))


def assert_every_reader_opens(out: Path, counts: dict[str, int]) -> None:
    """The committed dataset, opened the way users open Parquet, holds the accepted rows with `task_type`."""
    import duckdb
    import pandas as pd
    import polars as pl

    tables = {
        "datasets": datasets.load_dataset("parquet", data_dir=str(out), split="train").to_pandas(),
        "pandas": pd.read_parquet(out),
        "pyarrow.parquet": pq.read_table(out).to_pandas(),
        "pyarrow.dataset": pds.dataset(str(out), partitioning="hive").to_table().to_pandas(),
        "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{out}/**/*.parquet')").df(),
        "polars": pl.read_parquet(f"{out}/**/*.parquet").to_pandas(),
    }
    for reader, table in tables.items():
        assert set(ACCEPTED_SCHEMA.names) <= set(table.columns), reader
        assert table["task_type"].astype(str).value_counts().to_dict() == counts, reader


def summary_model(out: Path) -> str:
    return json.loads((out / "_manifest.json").read_text())["config"]["model"]


def test_hf_engine_random_model_every_generation_is_accounted_for(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(6) + ["word " * 2000])
    out = tmp_path / "out"
    # passage_tokens above the model's 512-token window: the long passage is not chunked, the engine refuses it.
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), model=random_model, passage_tokens=20_000,
                                      task_types=["ynqa", "nli"], max_tokens=8, seed=0, batch_size=4,
                                      max_error_rate=0.5))
    assert summary.prompts == 14 == (sum(summary.accepted.values()) + sum(summary.rejected.values())
                                     + sum(summary.filtered.values()))
    rejects = generation_rejects(out)
    assert len(rejects) == sum(summary.rejected.values())
    too_long = [r for r in rejects if r["reason"] == "engine_error"]
    assert len(too_long) == 2 and all("window is 512" in r["detail"] for r in too_long)
    noise = [r for r in rejects if r["reason"] != "engine_error"]
    assert all(r["reason"] in {"no_separator", "multiple_separators", "empty_input", "empty_output"}
                         and r["raw"] is not None and r["id"] and r["task_type"] for r in noise)
    # 8 tokens of a random model: cut at --max-tokens, so validated as truncated (stage=validation)
    filtered = pds.dataset(str(out / VALIDATION_REJECTS_DIR)).to_table().to_pylist()
    assert summary.filtered.get("truncated", 0) == sum(r["reason"] == "truncated" for r in filtered) > 0
    assert all(r["num_generated_tokens"] == 8 and r["raw"] and "token limit" in r["detail"]
               for r in filtered if r["reason"] == "truncated")
    assert summary.generated_tokens > 0
    # The card counts each task type's rejects by the reasons the files hold.
    card = (out / "_card" / "README.md").read_text()
    for task_type in ("ynqa", "nli"):
        reasons = Counter(r["reason"] for r in rejects + filtered if r["task_type"] == task_type)
        row = card_row(card, task_type)
        assert row[1:4] == ["7", str(summary.accepted.get(task_type, 0)), str(sum(reasons.values()))]
        assert row[5] == ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))


def hf_actors() -> set[str]:
    """Ids of the hf engine actors this test session's Ray cluster has run (the GCS actor table)."""
    from ray._private.state import actors

    return {i for i, a in actors().items() if a["ActorClassName"] == "MapWorker(MapBatches(HFGenerator))"}


def test_same_seed_same_dataset_whatever_the_replicas_and_batches(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(8))

    def run(name, **resources):
        generate(GenerateConfig(input=str(corpus), output=str(tmp_path / name), model=random_model,
                                max_tokens=6, seed=11, temperature=1.0, max_error_rate=1.0, **resources))
        rows = accepted(tmp_path / name) + example_rejects(tmp_path / name)
        return sorted((r["id"], r.get("raw"), r.get("input"), r.get("output")) for r in rows)

    before = hf_actors()
    one = run("a", batch_size=16)
    started = hf_actors() - before
    two = run("b", batch_size=3, num_replicas=2, cpus_per_replica=0.5)
    assert len(hf_actors() - before - started) == 2  # --num-replicas 2: two engine actors served the job
    assert len(one) == 24 and one == two
    assert len({(raw, out) for _, raw, _, out in one}) > 1  # sampled text, not one constant


def test_rerun_of_a_complete_job_is_a_no_op_unless_overwrite(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    config = GenerateConfig(input=str(corpus), output=str(tmp_path / "out"), engine="echo", model=random_model)
    first = generate(config)
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.suffix in DATA_SUFFIXES}
    again = generate(config)
    assert again.accepted == first.accepted and not again.resumed
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.suffix in DATA_SUFFIXES} == files
    other = GenerateConfig(input=str(corpus), output=str(tmp_path / "out"), engine="echo", model=random_model, n=2)
    with pytest.raises(OutputExistsError, match="different job"):
        generate(other)
    assert generate(other, overwrite=True).prompts == 18
    assert len(accepted(tmp_path / "out")) == 18


def test_output_holding_foreign_files_is_refused(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "important.csv").write_text("someone else's data")
    with pytest.raises(OutputExistsError, match="important.csv") as refused:
        generate(GenerateConfig(input=str(corpus), output=str(tmp_path / "out"), engine="echo", model=random_model))
    assert "--overwrite" not in str(refused.value)  # deleting someone's files is not the fix
    assert (tmp_path / "out" / "important.csv").exists()


def test_yaml_config_with_a_flag_override(ray_cluster, random_model, tmp_path, capsys):
    # In this process (a driver process per job costs ~13 s of worker start-up here); jobs/generate.py,
    # which passes its arguments to this same main, runs as a submitted job in tests/test_ray_job_submit.py.
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(5))
    config = tmp_path / "job.yaml"
    config.write_text(f"input: {corpus}\noutput: {tmp_path / 'out'}\nengine: echo\nmodel: {random_model}\n"
                      "task_types: ynqa\nn: 3\n")
    import ray

    from bonito_ray.cli import main

    assert main(["generate", "--config", str(config), "--n", "2",
                 "--ray-address", ray.get_runtime_context().gcs_address]) == 0
    printed = capsys.readouterr().out
    assert "passages: 5   prompts: 10" in printed
    assert "accepted: 10 (ynqa: 10)" in printed
    assert len(accepted(tmp_path / "out")) == 10


def test_cli_reports_bad_input_path_without_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bonito_ray.cli", "generate", "--input", str(tmp_path / "nope"),
                           "--output", str(tmp_path / "out"), "--engine", "echo"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2
    assert f"input {tmp_path / 'nope'} does not exist" in done.stderr and "Traceback" not in done.stderr


def test_cleaning_drops_are_rejected_and_counted(ray_cluster, random_model, tmp_path):
    texts = sample_passages(8)
    write_jsonl(tmp_path / "in" / "a.jsonl", texts + ["Too short."])
    # The same passages again in another file, one with different spacing: exact duplicates once normalised.
    write_jsonl(tmp_path / "in" / "b.jsonl", [texts[0], "  " + texts[1].replace(" ", "   ") + "\r\n", texts[2]])
    out = tmp_path / "out"
    summary = generate(GenerateConfig(input=str(tmp_path / "in"), output=str(out), engine="echo",
                                      model=random_model, task_types=["ynqa"]))
    assert summary.passages == 8
    assert summary.passages_dropped == {"duplicate": 3, "too_short": 1}
    assert sorted(r["context"] for r in accepted(out)) == sorted(texts)
    dropped = pds.dataset(str(out / "_rejects" / "stage=clean")).to_table().to_pylist()
    duplicates = [r for r in dropped if r["reason"] == "duplicate"]
    assert len(duplicates) == 3 and all(r["detail"].startswith("same text as passage") for r in duplicates)


def test_a_short_tail_chunk_is_merged_into_its_neighbour_and_counted(ray_cluster, random_model, tmp_path):
    from transformers import AutoTokenizer

    body, tail = " ".join(sample_passages(12)), "The tenant pays rent on day 3."
    tokens = len(AutoTokenizer.from_pretrained(random_model)(body, add_special_tokens=False)["input_ids"])
    corpus = write_jsonl(tmp_path / "c.jsonl", [body + "\n\n" + tail])
    out = tmp_path / "out"
    # The body fills a chunk: the tail alone would be a second passage.
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                      task_types=["ynqa"], passage_tokens=tokens + 2))
    contexts = [r["context"] for r in sorted(accepted(out), key=lambda r: r["chunk"])]
    assert summary.passages == len(contexts) == 2 and contexts[-1].endswith(tail) and contexts[-1] != tail
    assert summary.tails_merged == 1 and "short tail chunks merged: 1" in summary.format()
    notes = pds.dataset(str(out / "_rejects" / "stage=chunk")).to_table().to_pylist()
    assert [(n["reason"], n["chunk"]) for n in notes] == [("merged_tail", 1)]
    assert json.loads((out / "_manifest.json").read_text())["stages"]["tail_chunks_merged"] == 1


def test_a_single_10mb_document_is_chunked_not_lost(ray_cluster, random_model, tmp_path):
    # Ten of the reader's 1 MB reads and thousands of tokenizer windows in one record; memory at 50
    # and 200 MB is measured by `jobs/dev/benchmark_pipeline.py --document-mb` (docs/input.md), not here.
    sentences = [f"Clause {i}: the tenant pays {100 + i % 900} euros on day {i % 28 + 1}." for i in range(200_000)]
    paragraphs = ["\n\n".join(" ".join(sentences[j : j + 5]) for j in range(i, i + 50, 5))
                  for i in range(0, len(sentences), 50)]
    document = "\n\n".join(paragraphs)
    assert len(document) > 10_000_000
    write_jsonl(tmp_path / "big.jsonl", [document])
    out = tmp_path / "out"
    summary = generate(GenerateConfig(input=str(tmp_path / "big.jsonl"), output=str(out), engine="echo",
                                      model=random_model, task_types=["ynqa"], max_tokens=16, passage_tokens=400,
                                      task_dedup=False))  # chunking is checked here, not thousands of tasks' dedup
    rows = pds.dataset(str(out), partitioning="hive").to_table(columns=["chunk", "context"]).sort_by("chunk")
    assert summary.passages == rows.num_rows > 4_000 and summary.passages_dropped == {}
    assert rows["chunk"].to_pylist() == list(range(rows.num_rows))
    assert " ".join(rows["context"].to_pylist()).split() == document.split()


def test_incremental_runs_over_a_growing_prefix_equal_one_full_run(ray_cluster, random_model, tmp_path):
    corpus = tmp_path / "bucket"
    texts = sample_passages(30)

    def run(output, **extra):
        return generate(GenerateConfig(input=str(corpus), output=str(output), engine="echo", model=random_model,
                                       task_types=["ynqa", "nli"], **extra))

    def rows(output):
        table = pds.dataset(str(output), partitioning="hive").to_table(columns=["id", "source", "context"])
        return sorted(zip(table["id"].to_pylist(), table["source"].to_pylist(), table["context"].to_pylist()))

    incremental = tmp_path / "nightly"
    write_jsonl(corpus / "day1.jsonl", texts[:10])
    assert run(incremental, incremental=True).accepted == {"ynqa": 10, "nli": 10}
    write_jsonl(corpus / "day2.jsonl", texts[10:20])
    files_before = set((incremental).rglob("*.parquet"))
    second = run(incremental, incremental=True)
    new_files = set(incremental.rglob("*.parquet")) - files_before
    assert second.accepted == {"ynqa": 20, "nli": 20}  # the whole dataset
    assert {f.name for f in new_files} and all(
        set(pds.dataset(str(f)).to_table()["source"].to_pylist()) == {str(corpus / "day2.jsonl")}
        for f in new_files if f.name.startswith("train-"))  # the second run generated for day2 only
    assert run(incremental, incremental=True).accepted == {"ynqa": 20, "nli": 20}  # nothing new: no-op
    # Day 3 arrives and day 1 is corrected (one passage replaced): only those two files are redone.
    write_jsonl(corpus / "day3.jsonl", texts[20:30])
    write_jsonl(corpus / "day1.jsonl", texts[:9] + ["Clause 99: a corrected passage that replaces the old one."])
    third = run(incremental, incremental=True)
    assert third.accepted == {"ynqa": 30, "nli": 30}

    full = run(tmp_path / "full")
    assert rows(incremental) == rows(tmp_path / "full")
    assert json.loads((incremental / "_ledger.json").read_text()).keys() == {
        str(corpus / f"day{i}.jsonl") for i in (1, 2, 3)}
    assert (incremental / "_SUCCESS").exists() and full.accepted == third.accepted


def test_rows_per_file_controls_file_size(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(60))
    out = tmp_path / "out"
    generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                            task_types=["ynqa"], rows_per_file=20))
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in out.glob("ynqa/*.parquet")]
    assert sum(sizes) == 60 and len(sizes) == 3 and max(sizes) == 20
