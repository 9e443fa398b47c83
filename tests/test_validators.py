"""Task validators and option detection on hand-written, P3-shaped tasks: every rule, every task-type family.

Pure functions: no Ray, no files (these tests are in the mutation-testing selection).
"""

import pyarrow as pa
import pytest

from bonito_ray import validators as v
from bonito_ray.engines import finish_reason
from bonito_ray.options import offered_options
from bonito_ray.engine_rows import EXAMPLE_SCHEMA, validate_examples

P = ("Clause 4: The tenant pays a deposit of 900 euros before moving in. The landlord returns the deposit "
     "within 30 days of the end of the lease, less the cost of any damage.")


def task(task_type, question, output, *, before="", finish="stop", context=P):
    """A task whose input is the passage, then the generator's question (``before``: text ahead of it)."""
    return v.Candidate(task_type, f"{before}{context}\n\n{question}", output, context, finish, 12)


def reason(candidate, level="strict"):
    verdict = v.check(candidate, v.validators_for(level))
    return verdict.reason if verdict else None


# -- options, family by family (P3 templates: ANLI/RTE/CB/MNLI, BoolQ, MRPC/QQP/PAWS, IMDB/Yelp, AG News/
# DBpedia, WiC, WSC/Winogrande, multiple choice) -------------------------------------------------------

OFFERED = [
    # choice sentence
    ('Question: Does this imply that "the deposit is 900 euros"? True, False, or Neither?', ["true", "false", "neither"]),
    ('Based on the previous passage, is it true that "rent is due"? Yes, no, or maybe?', ["yes", "no", "maybe"]),
    ("Does the premise entail the hypothesis? Answer entailment, neutral or contradiction.",
     ["entailment", "neutral", "contradiction"]),
    ("Question: Is the deposit returned?\nAnswer yes or no.", ["yes", "no"]),
    ("Q: Is the deposit returned? (yes/no)", ["yes", "no"]),
    ("What is this text about?\nWorld, Sports, Business, or Science and Technology?",
     ["world", "sports", "business", "science and technology"]),
    # quoted items
    ('Read the text and answer the question with "Yes" or "No".\n\nIs the deposit returned?', ["yes", "no"]),
    ("Are questions 1 and 2 asking the same thing? Please answer 'yes' or 'no'.", ["yes", "no"]),
    # question tail
    ('Using only the above description, "x" is definitely correct, incorrect, or inconclusive?',
     ["correct", "incorrect", "inconclusive"]),
    ('Then, is "the deposit is kept" always, sometimes, or never true?', ["always", "sometimes", "never"]),
    ("Is this review positive or negative?", ["positive", "negative"]),
    ("Did the reviewer find this product good or bad?", ["good", "bad"]),
    # options block
    ('Can we conclude that "x"?\n\nOPTIONS:\n- Yes\n- It\'s impossible to say\n- No',
     ["yes", "it's impossible to say", "no"]),
    ("Choose your answer:\n- yes\n- no", ["yes", "no"]),
    ("Pick one category for the following text. The options are - company, educational institution, artist, "
     "film or written work.", ["company", "educational institution", "artist", "film", "written work"]),
    # lettered
    ("How long does the landlord have?\n(A) 15 days (B) 30 days (C) 60 days", ["15 days", "30 days", "60 days"]),
    ("How long does the landlord have?\nA. 15 days\nB. 30 days\nC. 60 days\nAnswer:", ["15 days", "30 days", "60 days"]),
    ("Fill in the blank: _ pays the deposit.\nOption 1: the tenant\nOption 2: the landlord", ["the tenant", "the landlord"]),
]


@pytest.mark.parametrize("question,items", OFFERED)
def test_each_template_family_offers_its_options(question, items):
    options = offered_options(question)
    assert options is not None and set(items) <= set(options.items)


@pytest.mark.parametrize("question", [
    "Is the tenant required to pay a deposit or not?",  # a question, not a list
    "What is the deposit?", "Who returns the deposit to the tenant?", "John or Bill?", ""])
def test_questions_that_offer_no_options(question):
    assert offered_options(question) is None


def test_answers_are_matched_by_item_letter_or_phrase():
    lettered = offered_options("Which period?\n(A) 15 days (B) 30 days (C) 60 days")
    assert all(lettered.admits(a) for a in ("B", "(b)", "B)", "B. 30 days", "30 days", " 30 Days. "))
    assert not any(lettered.admits(a) for a in ("D", "45 days", "", "days 30"))
    numbered = offered_options("Fill in the blank.\nOption 1: the tenant\nOption 2: the landlord")
    assert numbered.admits("Option 2") and numbered.admits("the landlord") and not numbered.admits("Option 3")
    listed = offered_options("The options are - company, artist, film or written work.")
    assert listed.admits("Written work") and listed.admits("'Film'") and not listed.admits("or")
    assert not offered_options("OPTIONS:\n- Yes\n- It's impossible to say\n- No").admits("impossible")


def test_the_passage_is_cut_out_before_options_are_read():
    clauses = "The tenant must (a) pay rent (b) keep the flat clean (c) insure it. Yes or no?"
    candidate = task("ynqa", "Must the tenant insure the flat?", "Yes", context=clauses)
    assert offered_options(v.question_of(candidate)) is None and reason(candidate) is None


# -- the rules, each against its hand-written cases --------------------------------------------------

def test_truncated_generations_are_rejected_at_every_level_but_off():
    cut = task("exqa", "How much is the deposit?", "900 euros", finish="length")
    assert reason(cut, "basic") == reason(cut, "strict") == "truncated" and reason(cut, "off") is None
    assert reason(task("exqa", "How much is the deposit?", "900 euros", finish=None)) is None  # engine said nothing


def test_finish_reason_is_decided_as_vllm_does():
    eos = frozenset({2})
    assert finish_reason([5, 6, 2], 10, 3, 100, eos) == "stop"  # end of sequence last, even at max_tokens
    assert finish_reason([5, 6, 7], 10, 3, 100, eos) == "length"  # max_tokens reached
    assert finish_reason([5, 6], 98, 8, 100, eos) == "length"  # the window reached
    assert finish_reason([5, 6], 10, 8, None, eos) == "stop" and finish_reason([], 10, 8, 100, eos) == "stop"


@pytest.mark.parametrize("output,why", [
    ("...", "no letter or digit"), ("   ", "no letter or digit"), ("?!", "no letter or digit"),
    ("yes yes yes yes yes yes yes yes", "repeats 'yes' 8 times"), ("Wait!!!!!!!!!!!!", "repeats '!'"),
    ("900 euros . . . . . . . . .", "repeats '.'")])
def test_degenerate_outputs(output, why):
    verdict = v.check(task("qa", "How much is the deposit?", output), v.validators_for("basic"))
    assert verdict.reason == "degenerate" and why in verdict.detail


def test_degenerate_question_and_what_is_not_degenerate():
    assert reason(task("qa", "Why " + "why " * 9 + "?", "Because."), "basic") == "degenerate"
    for fine in ("900 euros", "No.", "7", "The landlord, within 30 days... less damage.", "yes yes yes yes yes yes yes"):
        assert reason(task("qa", "How much is the deposit?", fine), "basic") is None
    assert reason(task("sent_comp", "Fill in: the tenant pays ________ euros.", "900"), "basic") is None


def test_passage_missing_from_the_input():
    missing = v.Candidate("nli", 'Does this imply that "x"? Yes, no, or maybe?', "Yes", P)
    assert reason(missing, "basic") == "passage_missing"
    assert reason(task("nli", 'Does this imply that "x"? Yes, no, or maybe?', "Yes"), "basic") is None
    text_gen = v.Candidate("text_gen", "Write a lease clause about deposits.", P, P)
    assert reason(text_gen, "basic") is None  # text_gen: the passage may be the output
    assert reason(v.Candidate("summarization", "Write a lease clause about deposits.", P, P), "basic") == \
        "passage_missing"


def test_extractive_answers_must_be_spans_of_the_passage():
    for span in ("900 euros", "the deposit", "The Landlord.", "within 30 days of the end of the lease",
                 '"900 euros"', "a deposit of 900 euros", "end of lease"):  # case, punctuation, articles
        assert reason(task("exqa", "What?", span)) is None, span
    for not_span in ("11 days", "900 dollars", "euros 900", "30 day", "the landlord keeps it"):
        assert reason(task("exqa", "What?", not_span)) == "not_a_span", not_span
    assert reason(task("exqa", "What?", "11 days"), "basic") is None  # strict only
    assert reason(task("qa", "What?", "11 days")) is None  # abstractive QA is not checked


@pytest.mark.parametrize("task_type,question,good,bad", [
    ("nli", 'Question: Does this imply that "x"? True, False, or Neither?', "Neither", "Yes"),
    ("te", 'Based on the previous passage, is it true that "x"? Yes, no, or maybe?', "maybe", "Possibly"),
    ("nli", 'Can we conclude that "x"?\n\nOPTIONS:\n- Yes\n- It\'s impossible to say\n- No',
     "It's impossible to say", "Impossible"),
    ("paraphrase_id", "Sentence 1: a. Sentence 2: b. Do they mean the same thing? Please answer 'yes' or 'no'.",
     "no", "They do"),
    ("sentiment", "Is this review positive or negative?", "Positive", "Mixed"),
    ("topic_class", "What is this text about?\nWorld, Sports, Business, or Science and Technology?",
     "Business", "Law"),
    ("mcqa", "How long does the landlord have?\n(A) 15 days (B) 30 days (C) 60 days", "(B)", "(D)"),
    ("wsd", 'Does "deposit" mean the same in both sentences? True or False?', "False", "Maybe"),
    ("coref", "Fill in the blank: _ pays the deposit.\nOption 1: the tenant\nOption 2: the landlord", "the tenant",
     "the agent"),
    ("ynqa", "Is the deposit returned within 30 days? True or False?", "True", "Yes"),
])
def test_classification_answers_must_be_among_the_offered_options(task_type, question, good, bad):
    assert reason(task(task_type, question, good)) is None
    assert reason(task(task_type, question, bad)) == "not_an_option"
    assert reason(task(task_type, question, bad), "basic") is None


def test_options_are_not_checked_for_free_text_types_nor_without_options():
    assert reason(task("qa", "Is this review positive or negative?", "Mixed")) is None
    assert reason(task("sentiment", "What is the sentiment of this text?", "rather mixed")) is None


def test_yes_no_tasks_answer_yes_or_no():
    assert reason(task("ynqa", "Is the deposit returned within 30 days?", "11 days")) == "not_yes_no"
    for answer in ("Yes", "no.", " NO "):
        assert reason(task("ynqa", "Is the deposit returned within 30 days?", answer)) is None
    assert reason(task("ynqa", "Is the deposit returned within 30 days?", "11 days"), "basic") is None


def test_first_failing_rule_decides_and_off_keeps_all():
    bad = v.Candidate("exqa", "What?", "!!!!!!!!!!", P, "length", 256)
    assert reason(bad) == "truncated" and reason(bad, "off") is None


def test_a_users_validator_is_loaded_by_name_and_checked(tmp_path, monkeypatch):
    (tmp_path / "my_checks.py").write_text(
        "from bonito_ray.validators import Verdict\n"
        "def no_euros(task):\n    return Verdict('mentions_money', 'euros') if 'euros' in task.output else None\n"
        "def bad(task):\n    return 'nope'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    checks = v.validators_for("off", ["my_checks:no_euros"])
    assert v.check(task("qa", "How much?", "900 euros"), checks).reason == "mentions_money"
    with pytest.raises(ValueError, match="must return None or Verdict"):
        v.check(task("qa", "How much?", "900"), v.validators_for("off", ["my_checks:bad"]))
    for name, why in (("my_checks", "module:function"), ("my_checks:missing", "cannot load"),
                      ("no_such_module:f", "cannot load")):
        with pytest.raises(ValueError, match=why):
            v.load_validator(name)


def test_validation_stage_routes_rows_and_keeps_engine_errors():
    rows = [
        {"id": "a", "task_type": "ynqa", "input": f"{P}\nIs it so?", "output": "Maybe", "context": P,
         "finish_reason": "stop", "num_generated_tokens": 5},
        {"id": "b", "task_type": "exqa", "input": None, "output": None, "context": P, "reason": "no_separator",
         "finish_reason": "length", "num_generated_tokens": 256, "raw": "cut"},
        {"id": "c", "task_type": "exqa", "context": P, "reason": "engine_error", "detail": "too long"},
        {"id": "d", "task_type": "exqa", "input": f"{P}\nHow much?", "output": "900 euros", "context": P,
         "finish_reason": "stop"},
    ]
    table = pa.Table.from_pylist([{n: r.get(n) for n in EXAMPLE_SCHEMA.names} for r in rows], EXAMPLE_SCHEMA)
    out = {r["id"]: r for r in validate_examples(table, level="strict").to_pylist()}
    assert out["a"]["reason"] == "not_yes_no"
    assert out["b"]["reason"] == "truncated" and "did not parse either (no_separator)" in out["b"]["detail"]
    assert (out["c"]["reason"], out["c"]["detail"]) == ("engine_error", "too long")
    assert out["d"]["reason"] is None
    assert validate_examples(table, level="off") is table


def test_validate_switch_on_the_cli_in_yaml_and_in_the_config(tmp_path):
    from bonito_ray.cli import build_parser, config_overrides
    from bonito_ray.config import ConfigError, GenerateConfig, load_config

    assert GenerateConfig(input="i", output="o").validate == "strict" == v.DEFAULT_LEVEL
    args = build_parser().parse_args(["generate", "--input", "i", "--output", "o", "--validate", "basic",
                                      "--validator", "bonito_ray.validators:degenerate", "--no-task-dedup"])
    config = load_config(None, config_overrides(args))
    assert (config.validate, config.validators, config.task_dedup) == (
        "basic", ["bonito_ray.validators:degenerate"], False)
    yaml_file = tmp_path / "job.yaml"
    yaml_file.write_text("input: i\noutput: o\nvalidate: 'off'\nvalidators: [bonito_ray.validators:truncated]\n")
    assert load_config(str(yaml_file), {}).validate == "off"
    assert {"validate", "validators", "task_dedup"} <= GenerateConfig(input="i", output="o").identity().keys()
    with pytest.raises(ConfigError, match="validate must be one of off, basic, strict, got 'loose'"):
        GenerateConfig(input="i", output="o", validate="loose")
    with pytest.raises(ConfigError, match="cannot load validator 'nowhere:f'"):
        GenerateConfig(input="i", output="o", validators=["nowhere:f"])


def test_a_question_that_ends_in_its_options_offers_those_and_not_itself():
    nli = offered_options("Premise: rent is due.\nHypothesis: rent is late.\nIs that correct, incorrect, or inconclusive?")
    assert nli.items == ("correct", "incorrect", "inconclusive")
    assert offered_options("Is this true or false?").items == ("true", "false")
    assert offered_options("Does it hold? Yes, no, or maybe?").items == ("yes", "no", "maybe")  # a list of its own
