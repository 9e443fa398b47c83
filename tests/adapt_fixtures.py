"""Small generated datasets, evaluation sets and target models for the adaptation tests, and the fine-tuning
tests' shared fixtures (conftest.py registers them: built once a session, not once a module)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bonito_ray.adapt.prompts import plain_prompt
from bonito_ray.schema import (ACCEPTED_SCHEMA, GENERATION_REJECTS_DIR, REJECT_SCHEMA, STAGING_DIR, stable_id,
                               table_from_rows)
from tests import tiny_models


def synthetic_examples(count: int) -> list[dict]:
    """Yes/no and extractive examples whose answers follow from the passage: learnable in a few steps."""
    rows = []
    for i, passage in enumerate(tiny_models.sample_passages(count)):
        task_type = "ynqa" if i % 2 else "exqa"
        if task_type == "ynqa":
            question, answer = f"Is the rent above 150 euros? {passage}", "yes" if 100 + 7 * i > 150 else "no"
        else:
            question, answer = f"{passage}\nOn which day is the rent paid?", f"day {i % 28 + 1}"
        rows.append({"id": stable_id("p", i, task_type), "passage_id": stable_id("p", i), "source": "corpus.jsonl",
                     "position": i + 1, "task_type": task_type, "sample_index": 1, "input": question,
                     "output": answer, "context": passage, "model": "tiny", "num_input_tokens": 10,
                     "num_generated_tokens": 5})
    return rows


def write_generated_dataset(root: Path, rows: list[dict], schema: pa.Schema = ACCEPTED_SCHEMA) -> Path:
    """The on-storage layout of ``bonito-ray generate`` output, with a reject, the marker files and the
    staging copy of an unfinished re-run beside it: readers must see the accepted ``rows`` only."""
    for task_type in sorted({r["task_type"] for r in rows}):
        for part in (root / task_type, root / STAGING_DIR / task_type):
            part.mkdir(parents=True, exist_ok=True)
            pq.write_table(table_from_rows([r for r in rows if r["task_type"] == task_type], schema),
                           part / "train-w1-000000.parquet")
    rejects = root / GENERATION_REJECTS_DIR
    rejects.mkdir(parents=True, exist_ok=True)
    pq.write_table(table_from_rows([{"id": "rejected", "task_type": "ynqa", "reason": "no_separator",
                                     "raw": "noise"}], REJECT_SCHEMA), rejects / "rejects-w1-000000.pq")
    (root / "_manifest.json").write_text(json.dumps({"summary": {}}))
    (root / "_SUCCESS").write_text("")
    return root


def build_target_model(path: Path, chat_template: str | None = None, seed: int = 0) -> str:
    """A tiny random Llama whose tokenizer knows the prompt markers and the example vocabulary."""
    texts = [plain_prompt(r["input"]) + r["output"] for r in synthetic_examples(60)] * 3
    tokenizer = tiny_models.build_tokenizer(texts + ["[INST] [/INST] yes no maybe"], vocab_size=600)
    if chat_template:
        tokenizer.chat_template = chat_template
    return tiny_models.save(tiny_models.build_model(tokenizer, seed=seed), tokenizer, path)


@pytest.fixture(scope="session")
def finetune_target(tmp_path_factory) -> str:
    """The tiny target model of ``build_target_model``: the runs only read it."""
    return build_target_model(tmp_path_factory.mktemp("target") / "model")


@pytest.fixture(scope="session")
def finetune_dataset(tmp_path_factory) -> str:
    """A generated dataset of 48 synthetic examples: the runs only read it."""
    return str(write_generated_dataset(tmp_path_factory.mktemp("generated"), synthetic_examples(48)))
