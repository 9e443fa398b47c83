"""Hostile outputs: what bonito-ray may delete or overwrite is decided from its records, never from a name.

The probes of the third hostile round: a user's files named like ours, a symbolic link inside the output,
a Spark `_SUCCESS`, `export`/`finetune`/`evaluate` outputs holding the user's files, and every reader of a
dataset that holds rejects of every stage.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from bonito_ray.adapt.errors import AdaptError
from bonito_ray.adapt.evaluate import EvaluateConfig, evaluate
from bonito_ray.adapt.export import export
from bonito_ray.adapt.finetune import FinetuneConfig, finetune
from bonito_ray.config import GenerateConfig
from bonito_ray.output import OutputError, OutputExistsError, open_output
from bonito_ray.ownership import OwnershipError, take_inventory
from bonito_ray.pipeline import generate
from bonito_ray.validators import Candidate, Verdict
from bonito_ray.schema import CLEAN_STAGE, CORPUS_STAGE, TASK_DEDUP_STAGE, VALIDATION_STAGE, rejects_dir
from pyarrow.fs import LocalFileSystem
from tests.adapt_fixtures import synthetic_examples, write_generated_dataset
from tests.corpus_files import write_jsonl
from tests.test_output_lifecycle import NO_CLUSTER, job_args, one_line_error
from tests.test_pipeline import assert_every_reader_opens
from tests.tiny_models import sample_passages

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bonito_ray.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, **(env or {})})


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_of_a_users_look_alike_files_is_refused_naming_them(random_model, tmp_path):
    write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    out = tmp_path / "o"
    for name, text in (("qa/my-notes.txt", "notes"), ("_card/README.md", "card"), (".tmp-backup.tar", "b")):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    before = tree(out)
    done = run_cli("generate", *job_args(tmp_path / "c.jsonl", out, random_model, "--overwrite"), env=NO_CLUSTER)
    line = one_line_error(done)
    assert "refusing --overwrite" in line and all(n in line for n in ("qa/my-notes.txt", "_card/README.md",
                                                                       ".tmp-backup.tar"))
    assert tree(out) == before


def test_a_symbolic_link_inside_the_output_is_refused_and_nothing_lands_where_it_points(random_model, tmp_path):
    write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    elsewhere, out = tmp_path / "elsewhere", tmp_path / "o"
    elsewhere.mkdir()
    out.mkdir()
    (out / "ynqa").symlink_to(elsewhere)
    done = run_cli("generate", *job_args(tmp_path / "c.jsonl", out, random_model), env=NO_CLUSTER)
    assert "symbolic links (ynqa/)" in one_line_error(done)
    assert list(elsewhere.iterdir()) == []
    (out / "ynqa").unlink()
    (out / "_card").mkdir()
    (out / "_card" / "README.md").symlink_to(tmp_path / "c.jsonl")  # a linked file: written through, too
    with pytest.raises(OutputExistsError, match=r"symbolic links \(_card/README\.md\)"):
        open_output(str(tmp_path / "c.jsonl"), str(out))


def test_a_spark_success_marker_is_not_a_dataset(random_model, tmp_path):
    write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    out = tmp_path / "spark"
    out.mkdir()
    (out / "_SUCCESS").write_bytes(b"")
    done = run_cli("generate", *job_args(tmp_path / "c.jsonl", out, random_model), env=NO_CLUSTER)
    assert "holds files bonito-ray did not write (_SUCCESS)" in one_line_error(done)
    done = run_cli("stats", str(out))
    assert "is not a committed bonito-ray dataset" in one_line_error(done)
    assert tree(out) == {"_SUCCESS": b""}


def test_what_a_run_writes_is_ours_and_a_file_dropped_in_later_is_not(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(3) + ["{not json"])
    out = tmp_path / "o"
    generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                            task_types=["ynqa"]))
    inventory = take_inventory(LocalFileSystem(), str(out))
    assert inventory.foreign == () and set(inventory.ours) == set(tree(out))
    (out / "ynqa" / "my-notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"\(ynqa/my-notes\.txt\)"):
        open_output(str(corpus), str(out))


def about_ferries(task: Candidate) -> Verdict | None:
    """A validator of the test: sets aside every task of the passages about ferries."""
    return Verdict("about_ferries", "a ferry in the passage") if "ferry" in task.context else None


def test_every_reader_opens_a_dataset_with_rejects_of_every_stage(ray_cluster, random_model, tmp_path):
    # Two passages alike in their first words: the echo engine writes the same yes/no task for both (task dedup);
    # a bad line (corpus), a short one (clean), a ferry (our validator).
    alike = "The harbour authority publishes the tide tables every spring for the fishing fleet "
    lines = [json.dumps({"text": alike + "and the ferry."}), json.dumps({"text": alike + "and the marina."}),
             json.dumps({"text": alike + "and the pilots."}), "{not json", json.dumps({"text": "short"})]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                      task_types=["ynqa"], validators=["tests.test_output_ownership:about_ferries"]))
    for stage in (CORPUS_STAGE, CLEAN_STAGE, VALIDATION_STAGE, TASK_DEDUP_STAGE):
        assert list((out / rejects_dir(stage)).glob("*.pq")), stage
    assert all("train" not in p.name for p in (out / "_rejects").rglob("*"))
    assert_every_reader_opens(out, {"ynqa": sum(summary.accepted.values())})


# ---- the outputs of export, finetune and evaluate ---------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_generated_dataset(tmp_path_factory.mktemp("generated"), synthetic_examples(4))


def test_export_refuses_a_users_files_and_the_dataset_itself(dataset, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "dataset_info.json").write_text('{"my_set": {"file_name": "mine.json"}}')
    (out / "alpaca.json").write_text("[]")
    before = tree(out)
    with pytest.raises(OwnershipError, match=r"did not write \(alpaca\.json, dataset_info\.json\)"):
        export(str(dataset), str(out))
    assert tree(out) == before
    with pytest.raises(OutputError, match="overlap"):
        export(str(dataset), str(dataset))
    with pytest.raises(OutputError, match="overlap"):
        export(str(dataset), str(dataset / "exported"))
    # An export of ours is replaced by the next one; a file added beside it is not.
    fresh = tmp_path / "fresh"
    export(str(dataset), str(fresh), "alpaca")
    export(str(dataset), str(fresh))
    (fresh / "notes.txt").write_text("mine")
    with pytest.raises(OwnershipError, match=r"\(notes\.txt\)"):
        export(str(dataset), str(fresh))
    assert datasets.load_dataset("parquet", data_dir=str(dataset), split="train").num_rows == 4


def test_finetune_and_evaluate_refuse_a_users_files_before_any_work(dataset, random_model, tmp_path):
    out = tmp_path / "ft"
    (out / "adapter").mkdir(parents=True)
    (out / "adapter" / "mine.bin").write_bytes(b"mine")
    with pytest.raises(OwnershipError, match=r"fine-tuning output .* did not write \(adapter/mine\.bin\)"):
        finetune(FinetuneConfig(model=random_model, dataset=str(dataset), output=str(out)), overwrite=True)
    assert tree(out) == {"adapter/mine.bin": b"mine"}
    with pytest.raises(OutputError, match="overlap"):
        finetune(FinetuneConfig(model=random_model, dataset=str(dataset), output=str(dataset / "ft")))
    report = tmp_path / "report.json"
    report.write_text("my notes")
    with pytest.raises(AdaptError, match="not an evaluation report"):
        evaluate(EvaluateConfig(eval_sets=["unused.jsonl"], model=random_model, output=str(report)))
    assert report.read_text() == "my notes"


def test_a_fine_tuning_runs_files_and_evaluation_reports_beside_them_are_ours(dataset, random_model, tmp_path):
    from bonito_ray.adapt.finetune import CONFIG_FILE, _refuse_foreign_output

    out = tmp_path / "ft"
    config = FinetuneConfig(model=random_model, dataset=str(dataset), output=str(out))
    (out / "adapter").mkdir(parents=True)
    (out / "adapter" / "adapter_config.json").write_text("{}")
    (out / "report.json").write_text(json.dumps({"protocol": "bonito", "variants": {}, "sets": []}))
    with pytest.raises(OwnershipError, match=r"\(adapter/adapter_config\.json\)"):  # no run record: not ours
        _refuse_foreign_output(config)
    (out / CONFIG_FILE).write_text(json.dumps(config.identity()))
    _refuse_foreign_output(config)
    (out / "notes.json").write_text(json.dumps({"protocol": "mine"}))
    with pytest.raises(OwnershipError, match=r"\(notes\.json\)"):
        _refuse_foreign_output(config)
