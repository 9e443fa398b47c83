"""Pins for the validators, option detection and task dedup that the broader tests leave loose.

Each test here was written against a mutant that survived `jobs/dev/mutation_test.sh` (docs/mutation.md):
the exact detail a rejected row carries, boundaries (two options, a similarity of exactly 0.8), and
branches no template reached. Pure functions only: no Ray.
"""

import numpy as np
import pyarrow as pa
import pytest

from bonito_ray import options, task_dedup, validators
from bonito_ray.options import offered_options
from bonito_ray.task_dedup import NEAR, NUM_PERM, find_duplicates
from bonito_ray.validators import Candidate, Verdict, check, load_validator, question_of

PASSAGE = "The tenant pays a deposit of 500 euros before moving in, and the landlord returns it within 30 days."


def task(task_type="ynqa", question="Is a deposit paid? Yes or no?", output="Yes", **extra) -> Candidate:
    return Candidate(task_type, f"{PASSAGE}\n{question}", output, PASSAGE, **extra)


# ---- the detail of each rejection, as a person reads it in _rejects/ -----------------------------


@pytest.mark.parametrize(("candidate", "detail"), [
    (task(finish_reason="length", num_generated_tokens=96),
     "the generation stopped at the token limit (96 tokens) without ending"),
    (task(output="?!"), "the output has no letter or digit"),
    (task(output="yes " * 8), "the output repeats 'yes' 8 times in a row"),
    (task(question="Is it " + "very " * 8 + "late?"), "the input repeats 'very' 8 times in a row"),
    (Candidate("ynqa", "Is it late?", "Yes", PASSAGE), "the input does not hold the passage ({{context}} was not in it)"),
    (task("exqa", "How much is the deposit?", "600 euros"),
     "the answer is not a span of the passage (compared SQuAD-normalised)"),
    (task("nli", "True, False, or Neither?", "Maybe"),
     "the answer is none of the options the input offers (true, false, neither)"),
    (task(question="Is a deposit paid?", output="Perhaps"), "a yes-no task answered with something other than yes or no"),
])
def test_each_rejection_says_what_is_wrong(candidate, detail):
    verdict = check(candidate, validators.LEVELS["strict"])
    assert verdict is not None and verdict.detail == detail


def test_an_answer_of_articles_only_is_a_span_when_the_passage_has_it():
    assert validators.not_a_span(task("exqa", "Which word starts the passage?", "The")) is None
    assert validators.not_a_span(task("exqa", "Which article is missing?", "An")).reason == "not_a_span"


def test_without_a_passage_the_question_is_the_whole_input():
    assert question_of(Candidate("ynqa", "Is it late?", "Yes", "")) == "Is it late?"


def test_runs_are_of_identical_neighbours_and_the_first_longest_is_named():
    assert validators._longest_run(("yes no " * 8).split()) == ("yes", 1)  # alternating: no run
    assert validators._longest_run("a a a b b b".split()) == ("a", 3)  # a tie: the first


def test_a_validator_that_returns_something_else_is_named_in_the_error():
    def sloppy(candidate):
        return "bad"

    with pytest.raises(ValueError, match=r"^validator 'sloppy' returned 'bad'; it must return None or "
                                         r"Verdict\(reason, detail\), reason in lower case letters and _$"):
        check(task(), (sloppy,))
    with pytest.raises(ValueError, match=r"^validator 'math:pi' is not a function$"):
        load_validator("math:pi")
    assert check(task(), (lambda c: Verdict("mine", "why"),)) == Verdict("mine", "why")


# ---- option detection: what each form offers, and its text ------------------------------------------


@pytest.mark.parametrize(("question", "items", "text"), [
    # text: what each form that fired matched, joined (a choice sentence and the question's tail both see "Yes or no")
    ("Is the rent paid monthly? Yes or no?", ("yes", "no"), "Yes or no | Yes or no?"),
    ("Answer \"Yes\" or \"No\".", ("yes", "no"), '"Yes" or "No" | yes | no'),
    ("Is the hypothesis true? True, False, or Neither?", ("true", "false", "neither"),
     "True, False, or Neither | True, False, or Neither?"),
    ("Which one?\nOPTIONS:\n- red\n- blue", ("red", "blue"), "red | blue"),
    ("Which one? OPTIONS: red, blue", ("red", "blue"), "red, blue"),
    ("Which one? (A) red (B) blue", ("red", "blue"), "red | blue"),
    ("Option 1: red\nOption 2: blue", ("red", "blue"), "red | blue"),
])
def test_each_form_offers_two_options_and_says_where(question, items, text):
    found = offered_options(question)
    assert found is not None and found.items == items and found.text == text


def test_option_text_is_normalised_at_both_ends():
    assert options.normalise(' "Yes." ') == "yes" and options.normalise("'no!'") == "no"


# ---- task dedup: the three parts count separately, existing tasks are never dropped ------------------


def row(id_, question, output, context=PASSAGE):
    return {"id": id_, "input": f"{context}\n{question}", "output": output, "context": context}


def test_two_questions_on_one_passage_with_one_answer_are_not_duplicates():
    rows = [row("a", "Is a deposit paid before moving in?", "Yes"), row("b", "Does the landlord return it?", "Yes")]
    assert find_duplicates([], rows) == []


def test_tasks_already_in_the_dataset_are_never_dropped_even_if_alike():
    existing = [row("a", "Is a deposit paid?", "Yes"), row("b", "Is a deposit paid?", "Yes")]
    assert find_duplicates(existing, []) == []


def test_a_near_duplicate_names_its_estimates():
    long = " ".join(f"Clause {i}: the tenant pays {100 + i} euros on day {i + 1} of each month." for i in range(8))
    near = row("b", "Is a deposit paid?", "Yes", long + " Pets are allowed.")
    [found] = find_duplicates([], [row("a", "Is a deposit paid?", "Yes", long), near])
    assert found.detail.startswith("near-duplicate of example a (estimated Jaccard passage 0.")
    assert found.detail.endswith(", input 1.00, output 1.00)")


def test_a_part_exactly_at_the_threshold_is_near():
    kept = np.zeros((3, NUM_PERM), dtype=np.uint64)
    at = kept.copy()
    at[:, : round(NUM_PERM * (1 - NEAR))] = 1  # 80% of each part's values equal
    assert task_dedup._nearest(at, ["k"], {"k": kept}) == ("k", (NEAR, NEAR, NEAR))
    below = at.copy()
    below[0, round(NUM_PERM * (1 - NEAR))] = 1
    assert task_dedup._nearest(below, ["k"], {"k": kept}) is None


def test_the_decision_gets_the_shuffles_candidates_told_apart_by_existing_and_id():
    new = pa.Table.from_pylist([{**row(i, "Is a deposit paid?", "Yes"), "task_type": "ynqa"} for i in "abc"])
    records = pa.concat_tables([task_dedup.sign_tasks(new, existing=False),
                                task_dedup.sign_tasks(new.slice(0, 1), existing=True)])  # a committed "a" too
    members = pa.array([task_dedup.member(True, "a"), task_dedup.member(False, "c")])
    kept = task_dedup.only_members(records, members)
    assert sorted(zip(kept["existing"].to_pylist(), kept["id"].to_pylist())) == [(False, "c"), (True, "a")]


def test_committed_tasks_of_changed_input_files_are_left_out_of_the_decision():
    tasks = pa.table({"id": ["1", "2", "3"], "source": ["a.jsonl", "b.jsonl", "a.jsonl"]})
    assert task_dedup._without_stale(tasks, ["b.jsonl", "gone.jsonl"])["id"].to_pylist() == ["1", "3"]
    assert task_dedup._without_stale(tasks, []).equals(tasks)


def test_a_committed_task_goes_through_the_band_shuffle_under_its_own_name_and_is_kept():
    tasks = pa.Table.from_pylist([{**row("a", "Is a deposit paid?", "Yes"), "task_type": "ynqa"}])
    records = pa.concat_tables([task_dedup.sign_tasks(tasks, existing=True),  # committed "a", then a staged copy
                                task_dedup.sign_tasks(tasks.set_column(0, "id", pa.array(["b"])), existing=False)])
    candidates = task_dedup.shared_band_members(task_dedup.band_rows(records, partitions=1))["member"]
    assert task_dedup.decide(task_dedup.only_members(records, candidates)) == [
        task_dedup.Duplicate("b", "a", "same task as example a")]


def test_a_committed_and_a_staged_task_may_share_an_id():
    committed = [row("a", "Is a deposit paid?", "Yes")]
    assert find_duplicates(committed, [row("a", "Does the landlord return it?", "Yes")]) == []


# ---- option detection: each detector on the shape only it sees ----------------------------------------


@pytest.mark.parametrize("question", [
    "Which colour is the door?\nChoose from: red, blue\nAnswer carefully.",  # a header line, not the first
    "Which colour is the door?\nChoose one:\n- red\n- blue\nAnswer carefully.",  # a header, then bullets
    "Which colour is the door?\nChoose one:\n\n- red\n- blue\n\nAnswer carefully.",  # blank lines around them
])
def test_a_header_offers_the_options_that_follow_it(question):
    found = options._option_block(question)
    assert found is not None and found.items == ("red", "blue")
    assert found.text == ("red, blue" if "from:" in question else "red | blue")


def test_bullets_ending_the_input_are_options_with_their_text():
    found = options._option_block("Which colour is the door?\n- red\n- blue")
    assert found.items == ("red", "blue") and found.text == "red | blue"


def test_a_lead_word_makes_two_items_a_list_and_a_bracket_alone_does_not():
    assert offered_options("Which colour? Answer with red or blue.").items == ("red", "blue")
    assert offered_options("Which colour? (red or blue)") is None


def test_quoted_items_after_a_comma_count():
    assert options._quoted('Choose "red", "blue".').items == ("red", "blue")


def test_a_question_tail_lists_every_item_and_needs_label_words_for_two():
    assert options._question_tail("Is it red, green, blue, or white?").items == ("red", "green", "blue", "white")
    assert options._question_tail("Is this clause fair or good?") is None  # "fair" is no label word


def test_separators_and_ends_are_read_in_any_case():
    assert options._split("red OR blue") == ("red", "blue")
    assert options.normalise('"Yes".') == "yes"  # quotes inside the end punctuation go too


def test_a_validator_without_a_name_is_shown_as_itself():
    import functools

    sloppy = functools.partial(lambda candidate, value: value, value="bad")
    with pytest.raises(ValueError, match=r"^validator functools\.partial\(.*\) returned 'bad'"):
        check(task(), (sloppy,))
