"""Job types plug into the core (bonito_ray.job_kind): the commit protocol and the card ask a JobKind, and name
no job type themselves. Pure and fast: no Ray."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import LocalFileSystem

from bonito_ray import card, commit, generate_kind, job_kind, schema
from bonito_ray.config import GenerateConfig
from bonito_ray.self_guide import kind as self_guide_kind
from bonito_ray.self_guide.spec import MANIFEST_KEY

PACKAGE = Path(commit.__file__).parent
SUMMARY = {"passages": 1, "prompts": 1, "accepted": {"ynqa": 1}, "corpus_rejected": {}, "passages_dropped": {}}

# A job type the core has never heard of: it keeps staged work in its own folder and says its own words.
OTHER = job_kind.JobKind("other", made=lambda config: config.get("job") == "other",
                         intro=lambda config: f"Made by the other job from {config['source']}.",
                         provenance=lambda manifest: [("other source", manifest["config"]["source"])],
                         staged_work=("_other_work",))


@pytest.fixture
def with_other(monkeypatch):
    known = job_kind.kinds()
    monkeypatch.setattr(job_kind, "kinds", lambda: (OTHER, *known))


def write_rows(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": [None], "source": ["s"]}, pa.schema([("id", pa.string()), ("source", pa.string())])),
                   path)


@pytest.mark.parametrize("module", ["commit.py", "card.py"])
def test_the_core_names_no_job_type(module):
    tree = ast.parse((PACKAGE / module).read_text())
    imported = [getattr(node, "module", None) or alias.name for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names]
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not [m for m in imported if "self_guide" in m or m.endswith("generators")]
    assert not [n for n in names if "SELF_GUIDE" in n or "GENERATOR" in n]


def test_a_job_types_staged_work_keeps_a_different_run_out(tmp_path, with_other):
    fs, root = LocalFileSystem(), str(tmp_path)
    commit.start_or_resume(fs, root, {"model": "m"})
    write_rows(tmp_path / ".staging" / "_not_work" / "part-0.parquet")  # no job type keeps this folder
    assert commit.start_or_resume(fs, root, {"model": "n"}) is False
    write_rows(tmp_path / ".staging" / "_other_work" / "part-0.parquet")
    with pytest.raises(commit.ResumeMismatchError, match="a different model"):
        commit.start_or_resume(fs, root, {"model": "m"})


def test_staged_work_is_every_job_types_folders_once(with_other):
    assert job_kind.staged_work() == ("_other_work", schema.SELF_GUIDE_DIR, *schema.SELF_GUIDE_REJECTS_DIRS)


def test_the_card_speaks_for_the_job_type_that_made_the_manifest(with_other):
    manifest = {"config": {"job": "other", "source": "s3://b/x"}, "summary": SUMMARY}
    text = card.render({"ynqa": card.TaskFigures("ynqa", accepted=1)}, manifest, plots=False)
    assert "\nMade by the other job from s3://b/x.\n" in text and "| other source | s3://b/x |" in text
    assert "SELF-GUIDE" not in text and "generator" not in text


def test_each_manifest_finds_its_job_type():
    generate = GenerateConfig(input="in", output="out").to_dict()
    assert job_kind.kind_of(generate) is generate_kind.KIND
    assert job_kind.kind_of({k: v for k, v in generate.items() if k != "generator"}) is generate_kind.KIND  # older
    assert job_kind.kind_of({**generate, MANIFEST_KEY: {}}) is self_guide_kind.KIND

