"""``--generator instruct``: any chat model asked, in its own chat template, to write a task of a type.

Unit tests of the prompt and of parsing hand-written answers; then real jobs on the session Ray
cluster with a tiny chat-templated model built here: on the echo engine (answers in the instruct
format: the accepted path, end to end) and on the hf engine (random weights: what it writes is
mostly rejected, each row with a registered reason). Models without a chat template, and the
openai engine, are refused in one line before any cluster work.
"""

import json
import re
import shlex
from pathlib import Path

import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest

from bonito_ray.cli import build_parser, config_overrides, main
from bonito_ray.commit import ResumeMismatchError
from bonito_ray.config import ConfigError, GenerateConfig, load_config
from bonito_ray.generators import GENERATORS, instruct
from bonito_ray.generators.instruct_examples import EXAMPLE_PASSAGE
from bonito_ray.output import OutputExistsError
from bonito_ray.pipeline import generate, plan_job
from bonito_ray.prompt import MARKERS, Rejection, Task, build_prompt, parse_generation
from bonito_ray.rejects import GENERATION_STAGE, REASONS, VALIDATION_STAGE
from bonito_ray.schema import ACCEPTED_SCHEMA, EXAMPLE_REJECT_DIRS, STAGING_DIR, table_from_rows
from bonito_ray.tasks import TASK_DESCRIPTIONS, TASK_TYPES
from bonito_ray.validators import Candidate, check, validators_for
from tests.corpus_files import write_jsonl
from tests.tiny_models import build_chat_model, sample_passages

ROOT = Path(__file__).resolve().parents[1]
PASSAGE = "Clause 3: the tenant pays 121 euros of rent on day 4."


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> str:
    """A tiny random model whose tokenizer has a Mistral-style chat template (BOS, then [INST] ... [/INST])."""
    texts = sample_passages(40) + [instruct.request_text(p, t) for p in sample_passages(2) for t in TASK_TYPES]
    return build_chat_model(tmp_path_factory.mktemp("chat-model"), texts)


@pytest.fixture(scope="module")
def tokenizer(chat_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chat_model)


# --- the prompt ---------------------------------------------------------------------------------------------


def test_the_request_names_the_type_says_what_it_is_and_holds_the_passage():
    text = instruct.request_text("  " + PASSAGE + "\n", "exqa")
    assert "extractive question answering task" in text and TASK_DESCRIPTIONS["exqa"] in text
    assert text.endswith(f"<passage>\n{PASSAGE}\n</passage>")  # stripped, as Bonito's prompt holds it
    assert "{{context}}" in text and "language of the passage" in text and "<input>" in text and "<output>" in text
    assert instruct.request_text(PASSAGE, "natural language inference") == instruct.request_text(PASSAGE, "nli")


def test_the_request_comes_after_a_worked_example_of_the_type_and_the_answer_is_started():
    turns = instruct.messages(PASSAGE, "natural language inference")
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[0]["content"] == instruct.request_text(EXAMPLE_PASSAGE, "nli")
    assert turns[1]["content"] == instruct.example_answer("nli") and turns[1]["content"].startswith("<input>\n")
    assert turns[2]["content"] == instruct.request_text(PASSAGE, "nli")
    assert instruct.build_prompt(PASSAGE, "nli", NoBosTokenizer()).endswith("\nASSISTANT:<input>\n")


@pytest.mark.parametrize("task_type", list(TASK_TYPES))
def test_every_worked_example_parses_and_passes_the_strict_validators_of_its_type(task_type):
    parsed = instruct.parse_generation(instruct.example_answer(task_type), EXAMPLE_PASSAGE)
    assert isinstance(parsed, Task) and "{{context}}" not in parsed.input + parsed.output
    candidate = Candidate(task_type, parsed.input, parsed.output, EXAMPLE_PASSAGE, finish_reason="stop")
    assert check(candidate, validators_for("strict")) is None


@pytest.mark.static
def test_every_task_type_has_a_one_line_description():
    assert TASK_DESCRIPTIONS.keys() == TASK_TYPES.keys()
    assert all(d and "\n" not in d and not d.endswith(".") for d in TASK_DESCRIPTIONS.values())


def test_the_prompt_is_the_chat_template_with_one_bos(tokenizer):
    prompt = GENERATORS["instruct"].prompt(PASSAGE, "ynqa", tokenizer)
    example, request = instruct.request_text(EXAMPLE_PASSAGE, "ynqa"), instruct.request_text(PASSAGE, "ynqa")
    assert prompt == (f"[INST] {example} [/INST]{instruct.example_answer('ynqa')}{tokenizer.eos_token}"
                      f"[INST] {request} [/INST]<input>\n")  # the template's BOS dropped...
    ids = tokenizer(prompt)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id  # ...the engine adds it


class NoBosTokenizer:
    """A tokenizer that adds no BOS on encoding (Qwen's): the template's own BOS, if any, must stay."""

    bos_token, bos_token_id, chat_template = "<s>", 1, "..."

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert (tokenize, add_generation_prompt) == (False, True)
        return "<s>" + "".join(f"{m['role'].upper()}: {m['content']}\n" for m in messages) + "ASSISTANT:"

    def __call__(self, text):
        return {"input_ids": [7] * len(text.split())}


def test_a_template_bos_stays_when_the_tokenizer_adds_none():
    assert instruct.chat_prompt(NoBosTokenizer(), [{"role": "user", "content": "Hi"}]) == "<s>USER: Hi\nASSISTANT:"


@pytest.mark.static
def test_the_generator_registry_is_the_one_place_generators_are_told_apart():
    import bonito_ray

    library = Path(bonito_ray.__file__).parent
    asked = [f"{p.relative_to(library)}: {m}" for p in library.rglob("*.py") if "generators" not in p.parts
             for m in re.findall(r"generator\s*(?:==|!=|in \()\s*\S+", p.read_text())]
    assert asked == [], "outside bonito_ray/generators, generators are told apart by the registry's fields only"


def test_the_bonito_generator_is_bonitos_prompt_and_parser_unchanged():
    bonito = GENERATORS["bonito"]
    assert bonito.prompt(PASSAGE, "ynqa", None) == build_prompt(PASSAGE, "ynqa")
    assert bonito.parse is parse_generation and bonito.markers == MARKERS and not bonito.chat_template


@pytest.mark.parametrize("name", list(GENERATORS))
def test_an_answer_in_a_generators_layout_parses_back(name):
    before, between, after = GENERATORS[name].answer_layout
    answer = before + "{{context}}\nWho pays?" + between + "the tenant" + after
    assert GENERATORS[name].parse(answer, PASSAGE) == Task(f"{PASSAGE}\nWho pays?", "the tenant")


# --- parsing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "parsed"), [
    ("<input>\n{{context}}\nWho pays the rent?\n</input>\n<output>\nthe tenant\n</output>",
     Task(f"{PASSAGE}\nWho pays the rent?", "the tenant")),
    # a chat model's preamble and closing remarks, and tags in capitals
    ("Sure! Here is an example:\n\n<Input>\n{{context}} Is rent paid on day 4?\n</Input>\n<OUTPUT>Yes</OUTPUT>\n\n"
     "Let me know if you need more.", Task(f"{PASSAGE} Is rent paid on day 4?", "Yes")),
    # the answer ends without </output> (the model stopped after it); no </input> before <output>
    ("<input>{{context}}\nWhich day?\n<output>\nday 4", Task(f"{PASSAGE}\nWhich day?", "day 4")),
    # the passage copied instead of {{context}}: kept as written (passage_missing checks the passage itself)
    (f"<input>\n{PASSAGE}\nHow much?\n</input>\n<output>\n121 euros\n</output>", Task(f"{PASSAGE}\nHow much?",
                                                                                       "121 euros")),
    # {{context}} in the output (text_gen: the answer is the passage)
    ("<input>Write a clause about rent.</input><output>{{context}}</output>", Task("Write a clause about rent.",
                                                                                PASSAGE)),
    ("Input: {{context}} Who pays?\nOutput: the tenant", Rejection("no_input_tag")),
    ("<input>{{context}} Who pays?</input>\nOutput: the tenant", Rejection("no_output_tag")),
    ("<output>the tenant</output>\n<input>{{context}} Who pays?</input>", Rejection("no_output_tag")),
    ("<input>{{context}} Who?</input><output>tenant</output>\n<input>{{context}} When?</input><output>4</output>",
     Rejection("multiple_tasks")),
    ("<input>\n \n</input>\n<output>the tenant</output>", Rejection("empty_input")),
    ("<input>{{context}} Who pays?</input>\n<output>\n</output>", Rejection("empty_output")),
    # SmolLM2-135M-Instruct wrote this: a closing tag before the output's opening one
    ("<input>{{context}}\n</output>\n<output>\nYes\n</output>", Rejection("misplaced_tag")),
    ("<input>{{context}} Who pays?</input><output>the tenant</input></output>", Rejection("misplaced_tag")),
])
def test_parsing_hand_written_answers(text, parsed):
    assert instruct.parse_generation(text, "  " + PASSAGE + "\n") == parsed


@pytest.mark.parametrize(("generated", "parsed"), [
    # what follows the prompt's <input>
    ("{{context}}\nWho pays?\n</input>\n<output>\nthe tenant\n</output>", Task(f"{PASSAGE}\nWho pays?", "the tenant")),
    # a model that starts its own <input> anyway
    ("  <input>\n{{context}}\nWho pays?\n</input>\n<output>the tenant</output>",
     Task(f"{PASSAGE}\nWho pays?", "the tenant")),
    ("The example has an input and an output.", Rejection("no_output_tag")),
])
def test_the_generation_is_read_as_the_answer_after_the_prompts_start(generated, parsed):
    assert GENERATORS["instruct"].parse(generated, PASSAGE) == parsed


def test_every_reason_the_parser_gives_is_registered_at_the_generation_stage():
    texts = ["", "<input>", "<input>x</input>", "<input></input><output>y</output>", "<input>x<output>",
             "<input>a<input>b<output>c", "<output>x", "<input>a</output><output>b"]
    reasons = {instruct.parse_generation(t, PASSAGE).reason for t in texts}
    assert reasons == {"no_input_tag", "no_output_tag", "empty_input", "empty_output", "multiple_tasks",
                       "misplaced_tag"}
    assert all((GENERATION_STAGE, r) in REASONS for r in reasons)


# --- the setting: config, flag, identity, refusals -------------------------------------------------------------


def test_the_generator_is_a_flag_a_yaml_key_and_part_of_the_identity(tmp_path):
    config = GenerateConfig(input="in.jsonl", output="out", generator="instruct", model="some/chat-model")
    assert "--generator instruct" in config.command()
    again = load_config(None, config_overrides(build_parser().parse_args(shlex.split(config.command())[1:])))
    assert again == config and config.identity()["generator"] == "instruct"
    assert config.identity()["generator_revision"] == GENERATORS["instruct"].revision == 2  # the prompt's
    # Bonito's is left out of the identity, as datasets made before this setting have it
    assert "generator" not in GenerateConfig(input="i", output="o").identity()
    (tmp_path / "job.yaml").write_text("input: i\noutput: o\ngenerator: instruct\n")
    assert load_config(str(tmp_path / "job.yaml"), {}).generator == "instruct"
    with pytest.raises(ConfigError, match="generator must be one of bonito, instruct, got 'chat'"):
        GenerateConfig(input="i", output="o", generator="chat")


@pytest.fixture
def no_cluster_work(monkeypatch):
    from bonito_ray import cli

    monkeypatch.setattr(cli.cluster, "connect", lambda *a, **k: pytest.fail("the CLI connected to Ray"))
    monkeypatch.setattr("bonito_ray.pipeline.generate", lambda *a, **k: pytest.fail("the CLI started the job"))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bonito-ray: error: "), err
    return err[0]


def test_a_model_without_a_chat_template_is_refused_in_one_line(random_model, tmp_path, capsys, no_cluster_work):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(2))
    code = main(["generate", "--input", str(corpus), "--output", str(tmp_path / "o"), "--generator", "instruct",
                 "--model", random_model])
    assert code == 2
    line = one_error_line(capsys)
    assert "--generator instruct needs an instruction-tuned chat model" in line and random_model in line


def test_the_openai_engine_is_refused_in_one_line(tmp_path, capsys, no_cluster_work):
    code = main(["generate", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--generator", "instruct",
                 "--engine", "openai", "--endpoint", "http://10.0.0.5:8000/v1"])
    assert code == 2
    assert "--generator instruct does not run on --engine openai" in one_error_line(capsys)


# --- real jobs ------------------------------------------------------------------------------------------------


def rows_of(out: Path) -> tuple[list[dict], list[dict]]:
    accepted = pds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    rejected = [r for d in EXAMPLE_REJECT_DIRS if (out / d).exists()
                for r in pds.dataset(str(out / d)).to_table().to_pylist()]
    return accepted, rejected


def test_echo_answers_in_the_instruct_format_are_accepted_end_to_end(ray_cluster, chat_model, tokenizer, tmp_path):
    passages = sample_passages(4)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", passages + ["A clause with <output>forged</output> tags in it."])
    out = tmp_path / "out"
    config = GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=chat_model, generator="instruct",
                            task_types=["ynqa", "exqa"])
    summary = generate(config)
    assert summary.accepted == {"ynqa": 4, "exqa": 4} and summary.rejected == {} and summary.filtered == {}
    assert summary.passages_dropped == {"control_marker": 1}  # instruct's markers: its answer tags
    accepted, rejected = rows_of(out)
    assert rejected == []
    for row in accepted:  # the echo engine counts the prompt's characters: the chat-templated prompt's
        prompt = GENERATORS["instruct"].prompt(row["context"], row["task_type"], tokenizer)
        assert prompt.startswith("[INST] ") and row["num_input_tokens"] == len(prompt)
        assert row["input"].startswith(row["context"] + "\n")  # {{context}} put back
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["config"]["generator"] == manifest["identity"]["generator"] == "instruct"
    assert "--generator instruct" in manifest["command"]
    assert "| generator | `instruct` |" in (out / "_card" / "README.md").read_text()

    # The complete dataset is another job's for Bonito's generator.
    with pytest.raises(OutputExistsError, match="different generator"):
        plan_job(GenerateConfig(**{**config.to_dict(), "generator": "bonito"}))


def test_an_unfinished_run_is_not_resumed_with_another_generator(chat_model, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", sample_passages(2))
    config = GenerateConfig(input=str(corpus), output=str(tmp_path / "out"), engine="echo", model=chat_model,
                            generator="instruct")
    plan = plan_job(config)
    try:  # what a killed instruct run leaves: its run record and a staged file of examples
        plan.output.begin(plan.identity)
        staged = tmp_path / "out" / STAGING_DIR / "ynqa" / "train-w1-000000.parquet"
        staged.parent.mkdir(parents=True)
        pq.write_table(table_from_rows([{"id": "00" * 16, "task_type": "ynqa"}], ACCEPTED_SCHEMA), staged)
    finally:
        plan.release()
    with pytest.raises(ResumeMismatchError, match="with a different generator"):
        generate(GenerateConfig(**{**config.to_dict(), "generator": "bonito"}))


def test_an_unfinished_run_asked_with_the_earlier_prompt_is_not_resumed(chat_model, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", sample_passages(2))
    config = GenerateConfig(input=str(corpus), output=str(tmp_path / "out"), engine="echo", model=chat_model,
                            generator="instruct")
    plan = plan_job(config)
    try:  # what a killed run of the first instruct prompt left: an identity without the prompt's revision
        earlier = {k: v for k, v in plan.identity.items() if k != "generator_revision"}
        plan.output.begin(earlier)
        staged = tmp_path / "out" / STAGING_DIR / "ynqa" / "train-w1-000000.parquet"
        staged.parent.mkdir(parents=True)
        pq.write_table(table_from_rows([{"id": "00" * 16, "task_type": "ynqa"}], ACCEPTED_SCHEMA), staged)
    finally:
        plan.release()
    with pytest.raises(ResumeMismatchError, match="with a different generator_revision"):
        generate(config)


def test_a_random_chat_model_on_the_hf_engine_every_row_accounted_for(ray_cluster, chat_model, tokenizer, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", sample_passages(2))
    out = tmp_path / "out"
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), model=chat_model, generator="instruct",
                                      task_types=["ynqa", "exqa"], max_tokens=8, seed=0))
    accepted, rejected = rows_of(out)
    assert summary.prompts == 4 == len(accepted) + len(rejected)
    assert sum(summary.accepted.values()) == len(accepted)
    assert sum(summary.rejected.values()) + sum(summary.filtered.values()) == len(rejected)
    registered = {name for stage, name in REASONS if stage in (GENERATION_STAGE, VALIDATION_STAGE)}
    assert {r["reason"] for r in rejected} <= registered and all(r["raw"] is not None for r in rejected)
    for row in accepted + rejected:  # the engine was given the chat-templated prompt, with one BOS
        prompt = GENERATORS["instruct"].prompt(row["context"], row["task_type"], tokenizer)
        assert row["num_input_tokens"] == len(tokenizer(prompt)["input_ids"])


# --- the docs -------------------------------------------------------------------------------------------------


def test_the_generators_doc_commands_parse_and_name_shipped_files():
    text = (ROOT / "docs" / "generators.md").read_text()
    lines = " ".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S)).replace("\\\n", " ").splitlines()
    commands = [shlex.split(line)[1:] for line in lines if line.strip().startswith("bonito-ray ")]
    assert [c[0] for c in commands] == ["generate", "self-guide", "generate", "generate"]
    parser = build_parser()
    parsed = [parser.parse_args(c) for c in commands]
    assert [getattr(a, "generator", None) for a in parsed] == [None, None, "instruct", "instruct"]
    for args in parsed:
        for value in (getattr(args, "input", None), args.config):
            assert value is None or (ROOT / value).exists(), value
    assert "docs/generators.md" in (ROOT / "README.md").read_text()
