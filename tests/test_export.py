"""Export of a generated dataset to trainer formats, read back with `datasets`."""

import json

import datasets
import pyarrow as pa
import pytest

from bonito_ray.cli import main
from bonito_ray.adapt.data import load_examples, split
from bonito_ray.adapt.errors import AdaptError, DatasetError
from bonito_ray.adapt.export import export
from bonito_ray.adapt.prompts import plain_prompt
from tests.adapt_fixtures import synthetic_examples, write_generated_dataset

ROWS = synthetic_examples(12)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_generated_dataset(tmp_path_factory.mktemp("generated"), ROWS)


def read_back(path, cache):
    return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache)).to_list()


def test_every_format_reads_back_with_datasets(dataset, tmp_path):
    out = tmp_path / "export"
    summary = export(str(dataset), str(out))
    assert summary.rows == len(ROWS)  # the reject beside the accepted files is not exported
    expected = sorted(ROWS, key=lambda r: (r["task_type"], r["position"]))  # file order: one file per task type

    alpaca = read_back(out / "alpaca.json", tmp_path / "cache")
    assert alpaca == [{"instruction": r["input"], "input": "", "output": r["output"]} for r in expected]
    assert read_back(out / "alpaca.jsonl", tmp_path / "cache") == alpaca
    messages = read_back(out / "messages.jsonl", tmp_path / "cache")
    assert messages == [{"messages": [{"role": "user", "content": r["input"]},
                                      {"role": "assistant", "content": r["output"]}]} for r in expected]
    completion = read_back(out / "prompt_completion.jsonl", tmp_path / "cache")
    assert completion == [{"prompt": plain_prompt(r["input"]), "completion": r["output"]} for r in expected]

    info = json.loads((out / "dataset_info.json").read_text())
    assert info == {
        "bonito_alpaca": {"file_name": "alpaca.json", "formatting": "alpaca",
                          "columns": {"prompt": "instruction", "query": "input", "response": "output"}},
        "bonito_messages": {"file_name": "messages.jsonl", "formatting": "sharegpt",
                            "columns": {"messages": "messages"},
                            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                     "assistant_tag": "assistant", "system_tag": "system"}},
    }


def test_cli_export_to_a_uri_with_a_task_filter(dataset, tmp_path, capsys):
    out = tmp_path / "uri-export"
    assert main(["export", "--input", str(dataset), "--output", f"file://{out}", "--formats", "messages",
                 "--task-types", "yes-no question answering", "--name", "leases"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["_export.json", "dataset_info.json", "messages.jsonl"]
    assert json.loads((out / "_export.json").read_text()) == {"written": ["dataset_info.json", "messages.jsonl"]}
    rows = read_back(out / "messages.jsonl", tmp_path / "cache")
    assert len(rows) == sum(r["task_type"] == "ynqa" for r in ROWS)
    assert list(json.loads((out / "dataset_info.json").read_text())) == ["leases_messages"]
    assert "exported 6 examples" in capsys.readouterr().out


def test_split_is_deterministic_by_id(dataset):
    table = load_examples(str(dataset))
    train, validation = split(table, 0.3)
    assert train.num_rows + validation.num_rows == table.num_rows and validation.num_rows > 0
    again, _ = split(table.take(pa.array(list(reversed(range(table.num_rows))))), 0.3)
    assert set(again["id"].to_pylist()) == set(train["id"].to_pylist())


def test_bad_inputs_name_the_path(dataset, tmp_path, capsys):
    with pytest.raises(AdaptError, match="unknown export format.*parquet"):
        export(str(dataset), str(tmp_path / "x"), "alpaca,parquet")
    with pytest.raises(DatasetError, match=f"{tmp_path / 'missing'}: not a directory"):
        export(str(tmp_path / "missing"), str(tmp_path / "x"))
    assert main(["export", "--input", str(tmp_path), "--output", str(tmp_path / "x")]) == 2
    assert f"{tmp_path} holds no accepted examples" in capsys.readouterr().err


def test_a_dataset_of_an_earlier_version_is_read_from_its_hive_style_folders(dataset, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(dataset, old)
    for folder in [p for p in old.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]:
        folder.rename(old / f"task_type={folder.name}")  # the layout datasets had before the plain folders
    assert load_examples(str(old)).to_pylist() == load_examples(str(dataset)).to_pylist()
