"""Evaluation sets: Parquet or JSONL files of ``input``, ``answer`` and, for classification, ``choices``.

A set with a ``choices`` column is scored by ranked classification (macro-F1); one without is
scored by greedy generation against ``answer`` (a string or a list of accepted strings, SQuAD F1).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bonito_ray.adapt.errors import EvalSetError
from bonito_ray.storage import resolve_filesystem

CLASSIFICATION = "classification"
GENERATION = "generation"


@dataclass
class EvalSet:
    """One evaluation set, checked row by row."""

    name: str
    path: str
    kind: str  # CLASSIFICATION or GENERATION
    inputs: list[str]
    choices: list[list[str]]  # empty lists for generation sets
    answers: list[list[str]]  # gold answers: exactly one for classification, one or more for generation

    def __len__(self) -> int:
        return len(self.inputs)


def read_rows(uri: str) -> list[dict]:
    """The rows of a ``.parquet`` or ``.jsonl`` file at ``uri``."""
    fs, path = resolve_filesystem(uri)
    if not path.endswith((".parquet", ".jsonl", ".json")):
        raise EvalSetError(f"evaluation set {uri}: expected a .parquet or .jsonl file")
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise EvalSetError(f"evaluation set {uri} does not exist")
    if path.endswith(".parquet"):
        return pq.read_table(path, filesystem=fs).to_pylist()
    with fs.open_input_stream(path) as stream:
        lines = stream.read().decode("utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalSetError(f"{uri}: line {number} is not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise EvalSetError(f"{uri}: line {number} is not a JSON object")
            rows.append(row)
    return rows


def load_eval_set(uri: str) -> EvalSet:
    """Read and check the evaluation set at ``uri``; every bad row is an :class:`EvalSetError` naming it."""
    rows = read_rows(uri)
    if not rows:
        raise EvalSetError(f"evaluation set {uri} has no rows")
    kind = CLASSIFICATION if any("choices" in row for row in rows) else GENERATION
    inputs, choices, answers = [], [], []
    for number, row in enumerate(rows, 1):
        where = f"{uri}, row {number}"
        if not isinstance(row.get("input"), str) or not row["input"].strip():
            raise EvalSetError(f"{where}: `input` must be a non-empty string")
        answer = row.get("answer")
        if kind == CLASSIFICATION:
            options = row.get("choices")
            if not isinstance(options, list) or not options or not all(isinstance(c, str) and c for c in options):
                raise EvalSetError(f"{where}: `choices` must be a non-empty list of non-empty strings")
            if len(set(options)) != len(options):
                raise EvalSetError(f"{where}: `choices` has duplicates: {options}")
            if answer not in options:
                raise EvalSetError(f"{where}: the answer {answer!r} is not among its choices {options}")
            golds = [answer]
        else:
            golds = [answer] if isinstance(answer, str) else answer
            if not isinstance(golds, list) or not golds or not all(isinstance(g, str) for g in golds):
                raise EvalSetError(f"{where}: `answer` must be a string or a non-empty list of strings")
            options = []
        inputs.append(row["input"])
        choices.append(list(options))
        answers.append(golds)
    name = os.path.basename(uri.rstrip("/")).rsplit(".", 1)[0]
    return EvalSet(name=name, path=uri, kind=kind, inputs=inputs, choices=choices, answers=answers)
