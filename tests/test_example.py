"""The CPU-sized end-to-end example (docs/example.md): its shipped evaluation sets and its commands.

Each command's own behaviour is run for real elsewhere (generate everywhere, export in test_export,
finetune in test_finetune, evaluate in test_evaluate); here: the shipped files are what the script
makes, their gold answers hold, their documents are held out, and every documented command parses
and names files that exist.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bonito_ray.adapt.evalsets import load_eval_set
from bonito_ray.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "jobs" / "examples"
EVAL_SETS = {"ynqa": EXAMPLES / "eval" / "ynqa.jsonl", "exqa": EXAMPLES / "eval" / "exqa.jsonl"}
DOC = ROOT / "docs" / "example.md"


def passage_of(row: dict) -> str:
    return row["input"].rsplit("\n\n", 1)[0]


def test_the_shipped_eval_sets_are_what_the_script_writes(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "make_eval_sets.py"), "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, shipped in EVAL_SETS.items():
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), name


def test_gold_answers_hold_and_the_documents_are_held_out():
    ynqa, exqa = (load_eval_set(str(path)) for path in EVAL_SETS.values())
    assert ynqa.kind == "classification" and exqa.kind == "generation"
    ynqa_rows = [json.loads(line) for line in EVAL_SETS["ynqa"].read_text().splitlines()]
    exqa_rows = [json.loads(line) for line in EVAL_SETS["exqa"].read_text().splitlines()]
    answers = [r["answer"] for r in ynqa_rows]
    assert set(answers) == {"Yes", "No"} and 0.4 <= answers.count("Yes") / len(answers) <= 0.6
    assert all(r["answer"] in passage_of(r) for r in exqa_rows)  # extractive: a span of its passage
    documents = {passage_of(r) for r in ynqa_rows + exqa_rows}
    seen = {json.loads(line)["text"] for name in ("corpus.jsonl", "demo_train.jsonl")
            for line in (EXAMPLES / name).read_text().splitlines()}
    assert len(documents) == len(ynqa_rows) and not documents & seen


def documented_commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.strip().startswith("bonito-ray ")]


def test_every_documented_command_parses_and_names_shipped_files():
    commands = documented_commands()
    assert [c[0] for c in commands] == ["generate", "export", "finetune", "evaluate"]
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(command)
        for name in ("input", "model", "eval_sets"):
            for value in (getattr(args, name, None) or []) if name == "eval_sets" else [getattr(args, name, None)]:
                if value and not value.startswith("out/"):
                    assert (ROOT / value).exists(), (command[0], value)


@pytest.mark.parametrize("path", sorted(EVAL_SETS.values()), ids=lambda p: p.name)
def test_eval_sets_fit_the_demo_models_window(path):
    from transformers import AutoTokenizer

    from bonito_ray.config import DEMO_MODEL

    tokenizer = AutoTokenizer.from_pretrained(DEMO_MODEL)
    longest = max(len(tokenizer(json.loads(line)["input"])["input_ids"]) for line in path.read_text().splitlines())
    assert longest + 32 < 512  # prompt markers and the answer fit; nothing is cut from the left
