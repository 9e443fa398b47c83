"""SELF-GUIDE's near-duplicate input filter, as a pure decision (no Ray, no model): a generated input that is a near
copy of a demonstration's input is set aside as ``near_demonstration``, one that is a near copy of an input kept before
it as ``near_duplicate_input`` (the first is kept), and a genuinely new input on the same topic is kept.

The cases are demonstration-like: the shipped clause_party spec's demonstrations, and a customer-feedback task's, with
the copy SmolLM2-135M-Instruct wrote as a student ("..., thanks." for "..., thank you!", issue 29). They are the cases
the default threshold was chosen on (``bonito_ray.self_guide.filters.NearCopies``)."""

import json
import re
from pathlib import Path

import pytest

from bonito_ray.config import ConfigError
from bonito_ray.rejects import DUPLICATE, NEAR_DEMONSTRATION, NEAR_DUPLICATE_INPUT, REASONS
from bonito_ray.schema import SELF_GUIDE_INPUT_STAGE
from bonito_ray.self_guide import filters
from bonito_ray.self_guide.config import SelfGuideConfig
from bonito_ray.self_guide.rounds import filter_round
from bonito_ray.self_guide.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
LEASE_SPEC = str(ROOT / "jobs" / "examples" / "tasks" / "clause_party.yaml")
LEASE = [d.input for d in load_spec(LEASE_SPEC).demonstrations]
FEEDBACK_SPEC = {
    "name": "feedback_kind", "instruction": "Say whether the customer's message is praise or a complaint.",
    "kind": "classification", "labels": ["praise", "complaint"], "demonstrations": [
        {"input": "Your support agent solved my billing problem in five minutes, thank you!", "output": "praise"},
        {"input": "I was charged twice for the same order and nobody answers my emails.", "output": "complaint"},
        {"input": "The new dashboard makes it much easier to track my monthly spending.", "output": "praise"},
        {"input": "The app logs me out every time I switch to another screen.", "output": "complaint"}]}
FEEDBACK = [d["input"] for d in FEEDBACK_SPEC["demonstrations"]]

# (demonstrations, a generated input, the demonstration it copies: 1-based): a word or two changed, dropped or added.
NEAR_COPIES = [
    (FEEDBACK, "Your support agent solved my billing problem in five minutes, thanks.", 1),  # the one seen (issue 29)
    (FEEDBACK, "I was charged twice for the same order and no one answers my emails.", 2),
    (FEEDBACK, "The new dashboard makes it so much easier to track my spending.", 3),
    (FEEDBACK, "The app logs me out every single time I switch screens.", 4),
    (LEASE, "The tenant pays the rent on the first of each month.", 1),
    (LEASE, "The tenant must pay the rent on the first day of every month.", 1),
    (LEASE, "The landlord pays the rent on the first day of each month.", 1),  # the other label, the same clause
    (LEASE, "The landlord repairs the heating within five days of written notice.", 2),
    (LEASE, "The tenant keeps the garden tidy and mows the lawn in summer.", 3),
    (LEASE, "The landlord insures the building against fire, flood and storm damage.", 4),
    (LEASE, "The tenant pays the rent on the first day of each month by bank transfer to the landlord.", 1),
    (LEASE, "THE TENANT PAYS THE RENT ON THE FIRST DAY OF EACH MONTH", 1),  # case and punctuation aside: a copy
    (LEASE, "The tenant pays the council tax on the first day of each year.", 1),  # a template, new content: a copy
]
# (demonstrations, a genuinely new input on the same topic): new content, even when it reuses a demonstration's words.
NEW_INPUTS = [
    (FEEDBACK, "Your support agent was rude and my billing problem is still not solved."),
    (FEEDBACK, "I got a refund within a day after reporting the double charge."),
    (FEEDBACK, "The dashboard's charts load so slowly that I gave up using them."),
    (FEEDBACK, "Logging in with my fingerprint works every time, even offline."),
    (LEASE, "The tenant pays for the electricity and gas used in the flat."),
    (LEASE, "The landlord returns the deposit within thirty days after the lease ends."),
    (LEASE, "The tenant keeps the windows clean and the gutters free of leaves."),
    (LEASE, "The landlord insures the tenant's furniture against theft."),
]
DEFAULT = SelfGuideConfig(spec=LEASE_SPEC, output="o").near_duplicate_threshold


def near_copies(demonstrations, threshold=DEFAULT, kept=()):
    return filters.NearCopies.of(demonstrations, threshold, kept)


def test_the_issues_near_copy_is_set_aside_with_its_own_reason_and_the_demonstration_named():
    # Words of the demonstration: your support agent solved my billing problem in five minutes thank you (12);
    # of the copy: the same but "thanks" for "thank you" (11). Shared 10 of 13 in all: 0.77.
    text = "Your support agent solved my billing problem in five minutes, thanks."
    assert filters.first_drop(text, bounds=None, use_noise=True, seen=set(FEEDBACK), near=near_copies(FEEDBACK)) == (
        NEAR_DEMONSTRATION, "word similarity 0.77 to demonstration 1 (near_duplicate_threshold 0.5)")
    # Without the filter (and so before it): every other filter keeps the copy, the exact duplicate one included.
    assert filters.first_drop(text, bounds=None, use_noise=True, seen=set(FEEDBACK)) == (None, "")


@pytest.mark.parametrize("demonstrations, text, copied", NEAR_COPIES)
def test_a_near_copy_of_a_demonstration_is_set_aside(demonstrations, text, copied):
    reason, detail = filters.first_drop(text, bounds=None, use_noise=True, seen=set(),
                                        near=near_copies(demonstrations))
    assert reason == NEAR_DEMONSTRATION and f" to demonstration {copied} (" in detail


@pytest.mark.parametrize("demonstrations, text", NEW_INPUTS)
def test_a_new_input_on_the_same_topic_is_kept(demonstrations, text):
    assert filters.first_drop(text, bounds=None, use_noise=True, seen=set(), near=near_copies(demonstrations)) == (
        None, "")


def test_the_default_threshold_lies_between_the_near_copies_and_the_new_inputs():
    """The default was chosen on these cases: every near copy scores at least it, every new input below it, each
    with a margin (a threshold at the edge of one group would be fitted to one case)."""
    def best(demonstrations, text):
        return max(filters.similarity(filters.words(text), filters.words(d)) for d in demonstrations)

    copies = [best(d, t) for d, t, _ in NEAR_COPIES]
    new = [best(d, t) for d, t in NEW_INPUTS]
    assert max(new) + 0.1 <= DEFAULT <= min(copies) - 0.1, (min(copies), max(new))


def test_words_and_similarity_ignore_case_punctuation_and_order():
    assert filters.words("The tenant's RENT, paid.") == {"the", "tenant", "s", "rent", "paid"}
    assert filters.similarity(filters.words("rent the pays tenant"), filters.words("The tenant pays the rent.")) == 1
    assert filters.similarity(filters.words("a b c d"), filters.words("a b e")) == pytest.approx(2 / 5)
    # A text with no word resembles nothing, not even another one: it is for the other filters to drop.
    assert filters.similarity(filters.words("?!"), filters.words("...")) == 0
    assert near_copies(["?!"]).drop("?!") is None
    # Words, not meaning: in a short text one changed word is a near copy (docs/self_guide.md says so).
    great, terrible = "Great customer service!", "Terrible customer service!"
    assert filters.similarity(filters.words(great), filters.words(terrible)) == 0.5
    assert near_copies([terrible]).drop(great)[0] == NEAR_DEMONSTRATION


def test_filters_run_in_order_exact_duplicate_then_demonstration_then_kept_input():
    kept = "The landlord returns the deposit within thirty days after the lease ends."
    near = near_copies(LEASE, kept=[kept])
    assert filters.first_drop(kept, bounds=None, use_noise=True, seen={kept}, near=near)[0] == DUPLICATE
    # An exact copy of a demonstration: the exact duplicate filter looks at kept inputs only, this one catches it.
    assert filters.first_drop(LEASE[0], bounds=None, use_noise=True, seen={kept}, near=near) == (
        NEAR_DEMONSTRATION, "word similarity 1.00 to demonstration 1 (near_duplicate_threshold 0.5)")
    # Close to both a demonstration and a kept input: the demonstration is named.
    both = near_copies(LEASE, kept=["The tenant pays the rent on the first day of every month."])
    assert both.drop("The tenant pays the rent on the first day of each month, in cash.")[0] == NEAR_DEMONSTRATION


def request(spec_path: str, number: int, index: int, label: str | None) -> dict:
    return {"id": f"input-{number}-{index}", "source": spec_path, "position": number, "sample_index": index,
            "model": "student", "label": label}


def generated(requests: list[dict], texts: list[str]) -> dict[str, dict]:
    """The engine's rows for ``requests``: each text in its slot, closed as the prompt's quote asks."""
    return {r["id"]: {"generated_text": json.dumps(t)[1:] + "\n", "num_input_tokens": 100,
                      "num_generated_tokens": 20, "engine_error": None} for r, t in zip(requests, texts)}


def run_round(config: SelfGuideConfig, spec, number: int, texts: list[str], kept_before: list[str]):
    requests = [request(config.spec, number, k, "tenant") for k in range(len(texts))]
    return filter_round(config, spec, requests, generated(requests, texts), kept_before)


def test_near_duplicates_among_generated_inputs_keep_the_first_within_and_across_rounds():
    config, spec = SelfGuideConfig(spec=LEASE_SPEC, output="o"), load_spec(LEASE_SPEC)
    first = "The landlord returns the deposit within thirty days after the lease ends."
    other = "The tenant pays for the electricity and gas used in the flat."
    again = "The landlord returns the deposit within 30 days after the lease has ended."  # 8 of 13 words: 0.62
    kept, rejects = run_round(config, spec, 0, [first, again, other, again], [])
    assert [r["input"] for r in kept] == [first, other]
    assert [(r["sample_index"], r["reason"]) for r in rejects] == [(1, NEAR_DUPLICATE_INPUT), (3, NEAR_DUPLICATE_INPUT)]
    assert rejects[0]["detail"] == (f"word similarity 0.62 to an input kept before it, {first[:57] + '...'!r} "
                                    "(near_duplicate_threshold 0.5) (asked for label tenant)")
    assert rejects[0]["raw"].startswith(again)  # the generated text is kept with its reason

    # A later round: compared with every input kept before it, in earlier rounds too.
    later = "The tenant pays for the electricity, water and gas used in the flat."  # 10 of 11 words: 0.91
    new = "The tenant may keep one small pet with the landlord's written consent."
    kept, rejects = run_round(config, spec, 1, [later, new], [first, other])
    assert [r["input"] for r in kept] == [new]
    assert [r["reason"] for r in rejects] == [NEAR_DUPLICATE_INPUT]
    assert rejects[0]["detail"].startswith(f"word similarity 0.91 to an input kept before it, {other[:57] + '...'!r}")


def test_the_settings_switch_the_filter_and_set_its_threshold():
    spec = load_spec(LEASE_SPEC)
    copies = ["The tenant pays the rent on the first of each month.",  # 0.90 to demonstration 1
              "The tenant must pay the rent on the first day of every month."]  # 0.62 to demonstration 1
    kept, rejects = run_round(SelfGuideConfig(spec=LEASE_SPEC, output="o", near_duplicate_filter=False), spec, 0,
                              copies, [])
    assert [r["input"] for r in kept] == copies and rejects == []  # off: the paper's filters only
    kept, rejects = run_round(SelfGuideConfig(spec=LEASE_SPEC, output="o", near_duplicate_threshold=0.8), spec, 0,
                              copies, [])
    assert [r["input"] for r in kept] == copies[1:] and [r["reason"] for r in rejects] == [NEAR_DEMONSTRATION]
    assert "(near_duplicate_threshold 0.8)" in rejects[0]["detail"]


@pytest.mark.parametrize("value", [0, -0.1, 1.01])
def test_a_threshold_outside_zero_to_one_is_refused_in_one_line(value):
    with pytest.raises(ConfigError, match=re.escape("near_duplicate_threshold must be in (0, 1]")) as caught:
        SelfGuideConfig(spec=LEASE_SPEC, output="o", near_duplicate_threshold=value)
    assert "\n" not in str(caught.value)
    assert SelfGuideConfig(spec=LEASE_SPEC, output="o", near_duplicate_threshold=1).near_duplicate_threshold == 1


def test_the_reasons_are_registered_for_the_input_stage_and_the_feedback_spec_is_valid():
    assert {(SELF_GUIDE_INPUT_STAGE, reason) for reason in (NEAR_DEMONSTRATION, NEAR_DUPLICATE_INPUT)} <= set(REASONS)
    assert parse_spec(FEEDBACK_SPEC).labels == ("praise", "complaint")
