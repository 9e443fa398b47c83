"""Evaluation on a real local Ray cluster: zero-shot and adapted scores match direct computation (SELF-GUIDE's
protocol end to end: test_self_guide); which protocol and prompts a run takes."""

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from bonito_ray.cli import main
from bonito_ray.config import ConfigError
from bonito_ray.adapt.errors import AdaptError, EvalSetError, PromptFormatError
from bonito_ray.adapt.evalsets import load_eval_set
from bonito_ray.adapt.evaluate import (EvaluateConfig, _check_sets, evaluate, format_table, resolve_model,
                                       resolve_protocol)
from bonito_ray.adapt.metrics import macro_f1, squad_scores
from bonito_ray.adapt.models import lora_config
from bonito_ray.hf_models import padded_tokenizer
from bonito_ray.adapt.prompts import encode_answer, encode_prompt
from bonito_ray.adapt.protocols import BONITO, SELF_GUIDE
from bonito_ray.adapt.scoring import continuation_logprobs, greedy_generate
from bonito_ray.adapt.train_loop import ADAPTER_METADATA_FILE
from bonito_ray.self_guide.spec import load_spec
from tests.adapt_fixtures import build_target_model, synthetic_examples

ROOT = Path(__file__).resolve().parents[1]

YNQA = [{"input": r["input"], "choices": ["yes", "no"], "answer": r["output"]}
        for r in synthetic_examples(16) if r["task_type"] == "ynqa"]
EXQA = [{"input": r["input"], "answer": [r["output"], r["output"].split()[-1]]}
        for r in synthetic_examples(8) if r["task_type"] == "exqa"]


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """A tiny base model and a LoRA adapter with random (non-zero) weights, saved as `finetune` saves it."""
    root = tmp_path_factory.mktemp("target")
    model_dir = build_target_model(root / "base")
    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), lora_config(8, 16, 0.0))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    peft_model.save_pretrained(root / "adapter")
    (root / "adapter" / ADAPTER_METADATA_FILE).write_text(json.dumps({"base_model": model_dir,
                                                                      "prompt_format": "plain"}))
    return model_dir, str(root / "adapter")


def write_sets(directory):
    ynqa = directory / "ynqa.jsonl"
    ynqa.write_text("".join(json.dumps(r) + "\n" for r in YNQA))
    exqa = directory / "exqa.parquet"
    pq.write_table(pa.Table.from_pylist(EXQA), exqa)
    return str(ynqa), str(exqa)


def direct_scores(model, tokenizer):
    """The expected metrics, computed here without Ray: ranked classification and greedy generation."""
    predictions = []
    for row in YNQA:
        prompt = encode_prompt(tokenizer, row["input"], "plain")
        choices = [encode_answer(tokenizer, c) for c in row["choices"]]
        scores = continuation_logprobs(model, [prompt] * len(choices), choices, tokenizer.pad_token_id, "cpu")
        predictions.append(row["choices"][scores.index(max(scores))])
    texts = []
    for row in EXQA:  # one at a time: no padding at all
        ids = greedy_generate(model, [encode_prompt(tokenizer, row["input"], "plain")], 25,
                              tokenizer.pad_token_id, tokenizer.eos_token_id, "cpu")[0]
        texts.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
    return (round(100 * macro_f1(predictions, [r["answer"] for r in YNQA]), 2),
            round(100 * squad_scores(texts, [r["answer"] for r in EXQA])["f1"], 2))


def test_zero_shot_and_adapted_match_direct_scoring(ray_cluster, target, tmp_path, capsys):
    model_dir, adapter = target
    ynqa, exqa = write_sets(tmp_path)
    report_path = tmp_path / "report.json"
    # --model and --prompt-format come from the adapter's metadata; a URI adapter is fetched by each actor.
    assert main(["evaluate", "--adapter", f"file://{adapter}", "--eval-set", ynqa, "--eval-set", exqa,
                 "--output", str(report_path), "--batch-size", "3"]) == 0
    report = json.loads(report_path.read_text())
    assert report["model"] == model_dir and report["prompt_format"] == "plain"
    by_name = {s["name"]: s for s in report["sets"]}
    assert by_name["ynqa"]["kind"] == "classification" and by_name["ynqa"]["metric"] == "macro_f1"
    assert by_name["exqa"]["kind"] == "generation" and by_name["exqa"]["metric"] == "f1"
    assert by_name["ynqa"]["examples"] == len(YNQA) and by_name["exqa"]["examples"] == len(EXQA)

    tokenizer = padded_tokenizer(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    assert (by_name["ynqa"]["zero_shot"]["macro_f1"], by_name["exqa"]["zero_shot"]["f1"]) == direct_scores(
        base, tokenizer)
    assert by_name["ynqa"]["adapted"] != by_name["ynqa"]["zero_shot"]  # the adapter was really switched on and off
    adapted = PeftModel.from_pretrained(base, adapter).eval()
    assert (by_name["ynqa"]["adapted"]["macro_f1"], by_name["exqa"]["adapted"]["f1"]) == direct_scores(
        adapted, tokenizer)

    # Ray's raylet prints its own notices (a worker it restarted, say) on the driver's stdout.
    table = "".join(line for line in capsys.readouterr().out.splitlines(True) if "(raylet)" not in line)
    assert table == format_table(report) + "\n"
    assert table.splitlines()[0].split() == ["eval", "set", "kind", "metric", "rows", "zero-shot", "adapted", "gain"]
    assert table.splitlines()[-1].startswith("average")


def test_zero_shot_only_without_adapter(ray_cluster, target, tmp_path, monkeypatch):
    # From another working folder with relative paths: the driver resolves them before Ray's actors
    # (their own working folder) read them, and the report lands where it was asked for.
    model_dir, _ = target
    write_sets(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["evaluate", "--eval-set", "../ynqa.jsonl", "--model", os.path.relpath(model_dir, work),
                 "--output", "reports/zero-shot.json"]) == 0
    report = json.loads((work / "reports" / "zero-shot.json").read_text())
    assert report["adapter"] is None and "adapted" not in report["sets"][0]
    assert report["sets"][0]["examples"] == len(YNQA)
    assert "adapted" not in format_table(report)


def test_bad_evaluation_sets_name_the_row(tmp_path, target, monkeypatch, caplog):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(YNQA[0]) + "\n" + json.dumps({**YNQA[1], "answer": "perhaps"}) + "\n")
    with pytest.raises(EvalSetError, match=f"{bad}, row 2: the answer 'perhaps' is not among its choices"):
        load_eval_set(str(bad))
    bad.write_text(json.dumps({"input": "", "answer": "x"}) + "\n")
    with pytest.raises(EvalSetError, match="row 1: `input` must be a non-empty string"):
        load_eval_set(str(bad))
    with pytest.raises(EvalSetError, match="does not exist"):
        load_eval_set(str(tmp_path / "missing.jsonl"))
    with pytest.raises(EvalSetError, match="expected a .parquet or .jsonl file"):
        load_eval_set(str(tmp_path / "set.csv"))
    with pytest.raises(PromptFormatError, match="has none"):
        evaluate(EvaluateConfig(eval_sets=[str(bad)], model=target[0], prompt_format="chat"))
    # SELF-GUIDE's protocol without rouge-score is refused before any scoring; a set without choices for a
    # classification task is scored, with a warning.
    exqa = tmp_path / "exqa.jsonl"
    exqa.write_text(json.dumps(EXQA[0]) + "\n")
    monkeypatch.setattr("bonito_ray.adapt.evaluate.rouge_available", lambda: False)
    with pytest.raises(AdaptError, match="ROUGE-L \\(set\\(s\\) exqa\\) needs rouge-score"):
        evaluate(EvaluateConfig(eval_sets=[str(exqa)], model=target[0], protocol="self-guide"))
    monkeypatch.undo()
    _check_sets([load_eval_set(str(exqa))], SELF_GUIDE, load_spec(str(ROOT / "jobs/examples/tasks/clause_party.yaml")))
    assert "exqa has no `choices`, so it is scored as generation" in caplog.text


def test_the_protocol_follows_the_task_spec_unless_given(tmp_path):
    spec = str(ROOT / "jobs" / "examples" / "tasks" / "clause_party.yaml")
    model, prompt_format, task = resolve_model(EvaluateConfig(eval_sets=[], model="m", spec=spec))
    assert (model, prompt_format, task.name) == ("m", "plain", "clause_party")
    assert resolve_protocol(EvaluateConfig(eval_sets=[]), task) is SELF_GUIDE
    assert resolve_protocol(EvaluateConfig(eval_sets=[]), None) is BONITO
    assert resolve_protocol(EvaluateConfig(eval_sets=[], protocol="bonito"), task) is BONITO
    with pytest.raises(AdaptError, match="unknown protocol 'rouge'; choose one of bonito, self-guide"):
        resolve_protocol(EvaluateConfig(eval_sets=[], protocol="rouge"), task)
    with pytest.raises(ConfigError, match="cannot read task spec"):
        resolve_model(EvaluateConfig(eval_sets=[], model="m", spec=str(tmp_path / "missing.yaml")))
    # Zero-shot only, SELF-GUIDE's names: the prompting column alone.
    report = {"adapter": None, "variants": {"zero_shot": "prompting"}, "average": {"zero_shot": 12.5},
              "sets": [{"name": "clauses", "kind": "classification", "metric": "exact_match", "examples": 8,
                        "zero_shot": {"exact_match": 12.5, "no_label": 50.0}}]}
    assert format_table(report).splitlines()[:2] == ["eval set  kind            metric       rows  prompting",
                                                     "clauses   classification  exact match     8       12.5"]


@pytest.mark.static
def test_the_documented_finetune_and_evaluate_commands_parse():
    import re
    import shlex

    from bonito_ray.cli import build_parser

    docs = ROOT / "docs"
    text = "\n".join((docs / name).read_text() for name in ("adapt.md", "self_guide.md")).replace("\\\n", " ")
    commands = [shlex.split(line, comments=True)[1:] for line in text.splitlines()
                if re.match(r"\s*bonito-ray [a-z-]+ --", line)]  # commands, not the summaries they print
    assert {c[0] for c in commands} >= {"finetune", "evaluate"}
    for command in commands:
        build_parser().parse_args(command)  # an unknown flag or a missing value exits
