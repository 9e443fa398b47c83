"""Bonito semantics: task names, the byte-exact prompt, parsing and every reject reason."""

import pytest

from bonito_ray.prompt import Rejection, Task, build_prompt, parse_generation
from bonito_ray.rejects import EMPTY_INPUT, EMPTY_OUTPUT, MULTIPLE_SEPARATORS, NO_SEPARATOR
from bonito_ray.tasks import TASK_TYPES, UnknownTaskTypeError, full_task_name, resolve_task_type, resolve_task_types


def test_sixteen_task_types_with_reference_full_names():
    assert len(TASK_TYPES) == 16
    assert TASK_TYPES["ynqa"] == "yes-no question answering"
    assert TASK_TYPES["exqa"] == "extractive question answering"
    assert TASK_TYPES["paraphrase_id"] == "paraphrase identification"
    assert TASK_TYPES["nli"] == "natural language inference"


def test_short_and_full_names_resolve_to_short():
    assert resolve_task_type("ynqa") == "ynqa"
    assert resolve_task_type("yes-no question answering") == "ynqa"
    assert resolve_task_type("  Natural Language  Inference ") == "nli"
    assert resolve_task_types("ynqa, exqa,yes-no question answering") == ["ynqa", "exqa"]
    assert full_task_name("te") == "textual entailment"


def test_unknown_task_type_lists_valid_names():
    with pytest.raises(UnknownTaskTypeError) as err:
        resolve_task_types(["ynqa", "poetry"])
    message = str(err.value)
    assert "'poetry'" in message
    assert all(short in message for short in TASK_TYPES)


def test_empty_task_type_list_is_an_error():
    with pytest.raises(UnknownTaskTypeError, match="no task type"):
        resolve_task_types(" , ")


def test_prompt_is_byte_exact():
    assert build_prompt("The sky is blue.", "ynqa") == (
        "<|tasktype|>\nyes-no question answering\n<|context|>\nThe sky is blue.\n<|task|>\n"
    )


def test_prompt_strips_surrounding_whitespace_and_takes_full_names():
    expected = "<|tasktype|>\nnatural language inference\n<|context|>\nA\n\nB\n<|task|>\n"
    assert build_prompt("\n  A\n\nB \t\n", "nli") == expected
    assert build_prompt("\n  A\n\nB \t\n", "natural language inference") == expected


def test_parse_replaces_every_context_placeholder_in_input_and_output():
    context = "  Rent is due monthly.  "
    text = "{{context}}\nQ: is rent due? (see {{context}})\n<|pipe|>\n Yes, {{context}} "
    assert parse_generation(text, context) == Task(
        "Rent is due monthly.\nQ: is rent due? (see Rent is due monthly.)", "Yes, Rent is due monthly."
    )


def test_parse_strips_parts():
    assert parse_generation("  question \n<|pipe|>\n  answer \n", "c") == Task("question", "answer")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a question without separator", NO_SEPARATOR),
        ("", NO_SEPARATOR),
        ("q\n<|pipe|>\na\n<|pipe|>\nb", MULTIPLE_SEPARATORS),
        ("  \n<|pipe|>\nanswer", EMPTY_INPUT),
        ("question\n<|pipe|>\n \n", EMPTY_OUTPUT),
    ],
)
def test_each_reject_reason(text, reason):
    assert parse_generation(text, "context") == Rejection(reason)
