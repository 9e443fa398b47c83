"""Generated-task dedup: what is a duplicate, determinism whatever the order, and a real run (echo engine)
that drops near-duplicate tasks within a run and across an --incremental run, counted as duplicate_task."""

import json
import random

import pyarrow.dataset as pds
import pyarrow.parquet as pq

from bonito_ray.config import GenerateConfig
from bonito_ray.pipeline import generate
from bonito_ray.schema import ACCEPTED_SCHEMA, STAGING_DIR, TASK_DEDUP_REJECTS_DIR, table_from_rows
from bonito_ray.task_dedup import dedup_staged, find_duplicates, task_parts
from tests.corpus_files import write_jsonl


def passage(i: int, tail: str = "") -> str:
    return (f"Clause {i}: the tenant pays a deposit of {100 + 37 * i} euros to the landlord before moving into "
            f"flat {i} of the building at {i} Harbour Street, and the landlord returns it within {i % 20 + 10} days "
            f"of the end of the lease, less the cost of repairs.{tail}")


def row(id_, context, question, output):
    return {"id": id_, "input": f"{context}\n{question}", "output": output, "context": context}


def tasks() -> list[dict]:
    rows = []
    for i in range(40):
        rows.append(row(f"{i:04d}a", passage(i), "How much is the deposit?", f"{100 + 37 * i} euros"))
        rows.append(row(f"{i:04d}b", passage(i), "Who returns the deposit?", "the landlord"))
    rows.append(row("0100", passage(3), "How much is the deposit?", f"{100 + 37 * 3} euros"))  # exact, of 0003a
    rows.append(row("0101", passage(5, " Pets are allowed."), "How much is the deposit?",
                    f"{100 + 37 * 5} euros"))  # near: one sentence more in the passage, of 0005a
    rows.append(row("0102", passage(7), "how much is the  deposit?", f"{100 + 37 * 7} Euros"))  # exact once normalised
    rows.append(row("0001z", passage(9), "How much is the deposit?", f"{100 + 37 * 9} euros"))  # smaller id than 0009a
    return rows


def test_duplicates_exact_near_and_not():
    found = {d.id: d for d in find_duplicates([], tasks())}
    assert set(found) == {"0100", "0101", "0102", "0009a"}
    assert found["0100"].of == "0003a" and found["0100"].detail == "same task as example 0003a"
    assert found["0101"].of == "0005a" and "near-duplicate of example 0005a" in found["0101"].detail
    assert found["0009a"].of == "0001z"  # the smaller id is kept, whichever came first
    # two questions on one passage, one question on two passages, one question answered two ways: no duplicates
    answered_twice = [row("x", passage(1), "Is a deposit paid?", "Yes"), row("y", passage(1), "Is a deposit paid?", "No")]
    assert find_duplicates([], answered_twice) == []


def test_the_passage_counts_only_when_the_task_carries_it():
    assert task_parts("Q: pay?", "Yes", "A passage.") == ("", "q: pay?", "yes")
    assert task_parts("A passage.\nQ: pay?", "Yes", "A passage.") == ("a passage.", "{{context}} q: pay?", "yes")
    free = [row("a", passage(1), "", "x"), row("b", passage(2), "", "x")]
    free = [{**r, "input": "Name a colour."} for r in free]  # same (input, output), different passages not in it
    assert [d.id for d in find_duplicates([], free)] == ["b"]


def test_same_decision_whatever_the_order_and_blocks():
    rows = tasks()
    expected = sorted((d.id, d.of, d.detail) for d in find_duplicates([], rows))
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        size = seed + 3  # blocks of different sizes, as workers would produce them, concatenated in any order
        blocks = [shuffled[k : k + size] for k in range(0, len(shuffled), size)]
        random.Random(seed + 100).shuffle(blocks)
        assert sorted((d.id, d.of, d.detail) for d in find_duplicates([], [r for b in blocks for r in b])) == expected


def test_tasks_already_in_the_dataset_are_kept_and_a_second_pass_drops_nothing_more():
    rows = tasks()
    existing = [r for r in rows if r["id"] in ("0009a", "0100")]
    new = [r for r in rows if r not in existing]
    found = {d.id: d.of for d in find_duplicates(existing, new)}
    assert found["0001z"] == "0009a" and found["0003a"] == "0100"  # existing tasks win over smaller new ids
    kept = [r for r in new if r["id"] not in found]
    assert find_duplicates(existing, kept) == []


def test_near_duplicate_tasks_are_dropped_within_a_run_and_across_incremental_runs(ray_cluster, random_model,
                                                                                  tmp_path):
    corpus, out = tmp_path / "in", tmp_path / "out"
    # day 1: passage 2 twice, the copy with one more sentence (passage dedup is exact, so both reach the engine)
    write_jsonl(corpus / "day1.jsonl", [passage(1), passage(2), passage(2, " Pets are allowed.")])

    def run():
        return generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                       task_types=["ynqa", "exqa"], incremental=True))

    first = run()
    assert first.accepted == {"ynqa": 2, "exqa": 2} and first.filtered == {"duplicate_task": 2}
    # day 2: a near copy of passage 1 (its tasks are near duplicates of the committed ones) and a new passage
    write_jsonl(corpus / "day2.jsonl", [passage(1, " Smoking is not allowed."), passage(3)])
    second = run()
    assert second.accepted == {"ynqa": 3, "exqa": 3} and second.filtered == {"duplicate_task": 4}
    rejects = pds.dataset(str(out / TASK_DEDUP_REJECTS_DIR)).to_table().to_pylist()
    assert len(rejects) == 4 and all(r["reason"] == "duplicate_task" and r["detail"].startswith("near-duplicate of")
                                     for r in rejects)
    from_day2 = [r for r in rejects if r["source"].endswith("day2.jsonl")]
    committed = {r["id"] for r in pds.dataset(str(out), partitioning="hive").to_table(columns=["id"]).to_pylist()}
    assert len(from_day2) == 2 and all(r["detail"].split()[3] in committed for r in from_day2)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["summary"]["filtered"] == {"duplicate_task": 4}
    assert manifest["stages"]["accepted"] == 6 and manifest["stages"]["prompts"] == 10


def staged_output(root, rows_by_file: dict[str, list[dict]]) -> None:
    """An output holding accepted files (``<dir>/train-*.parquet`` under ``root``) of the given rows."""
    for relative, rows in rows_by_file.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table_from_rows(rows, ACCEPTED_SCHEMA), path)


def read_back(root) -> tuple[dict, dict]:
    """(accepted ids by file, reject (id, detail) pairs) of an output's staging dir."""
    staging = root / STAGING_DIR
    accepted = {str(p.relative_to(staging)): sorted(pq.read_table(p)["id"].to_pylist())
                for p in sorted(staging.glob("*/train-*.parquet"))}
    rejects = sorted((r["id"], r["detail"]) for p in (staging / TASK_DEDUP_REJECTS_DIR).glob("*.pq")
                     for r in pq.read_table(p).to_pylist())
    return accepted, rejects


def test_the_band_shuffle_drops_what_the_in_memory_pass_drops(ray_cluster, tmp_path):
    """Both ways through ``dedup_staged`` (small jobs decide in memory, large ones shuffle band keys first)
    drop the same tasks with the same details, across task types, files and an incremental dataset's
    committed tasks, those of a changed input file aside."""
    rows = [{**r, "task_type": "exqa", "source": "day2.jsonl"} for r in tasks()]
    ynqa = [{**r, "task_type": "ynqa", "id": "y" + r["id"], "source": "day2.jsonl"} for r in tasks()[:30]]
    ynqa += [{**r, "id": "z" + r["id"]} for r in ynqa[:3]]  # copies: exact duplicates
    committed = [{**tasks()[6], "id": "0000c", "task_type": "exqa", "source": "day1.jsonl"},  # kept over 0003a
                 {**tasks()[10], "id": "0000d", "task_type": "exqa", "source": "changed.jsonl"}]  # stale: ignored
    layout = {f"{STAGING_DIR}/exqa/train-0-0.parquet": rows[:50], f"{STAGING_DIR}/exqa/train-0-1.parquet": rows[50:],
              f"{STAGING_DIR}/ynqa/train-0-0.parquet": ynqa, "exqa/train-old-0.parquet": committed}
    results = []
    for name, in_memory_tasks in (("memory", 10**6), ("shuffle", 0)):
        staged_output(tmp_path / name, layout)
        dropped = dedup_staged(str(tmp_path / name), None, ["ynqa", "exqa", "nli"], ["changed.jsonl"],
                               in_memory_tasks=in_memory_tasks)
        results.append((dropped, read_back(tmp_path / name)))
    assert results[0] == results[1]
    dropped, (accepted, rejects) = results[0]
    expected = find_duplicates(committed[:1], rows) + find_duplicates([], ynqa)
    assert dropped == len(rejects) == len(expected) == 8
    assert rejects == sorted((d.id, d.detail) for d in expected)
    assert ("0003a", "same task as example 0000c") in rejects and "0010a" not in {i for i, _ in rejects}
    assert sum(map(len, accepted.values())) == len(rows) + len(ynqa) - dropped


def test_only_tasks_that_share_a_band_go_on_to_the_decision():
    import pyarrow as pa

    from bonito_ray.task_dedup import band_rows, shared_band_members, sign_tasks

    rows = tasks()
    table = pa.Table.from_pylist([{**r, "task_type": "exqa"} for r in rows])
    records = sign_tasks(table, existing=False)
    members = set(shared_band_members(band_rows(records, partitions=1))["member"].to_pylist())
    duplicates = {d.id for d in find_duplicates([], rows)} | {d.of for d in find_duplicates([], rows)}
    assert {"n" + i for i in duplicates} <= members  # every duplicate and what it duplicates
    # and no task else whose answer is its own (the deposits); the "who returns it" tasks on passages that
    # differ in a few numbers do share bands, and the decision tells them apart
    assert {m for m in members if m.endswith("a")} <= {"n" + i for i in duplicates} and len(members) < len(rows)
    keys = band_rows(records, partitions=3)
    assert set(keys["partition"].to_pylist()) == {0, 1, 2} and keys.num_rows == 20 * len(rows)
    # a partition of the keys finds what the whole finds: equal keys fall in one partition
    parts = [keys.filter(pa.compute.equal(keys["partition"], p)) for p in range(3)]
    assert set().union(*(shared_band_members(p)["member"].to_pylist() for p in parts)) == members
