"""The edges of SELF-GUIDE's vote: a share exactly at the threshold, ties, an empty vote, a label
inside a longer one, the class balance's seed (pure, no Ray; in the mutation-testing selection,
jobs/dev/mutation_test.sh, each written against a mutant that lived through the other tests)."""

from __future__ import annotations

from bonito_ray.self_guide import vote


def test_a_share_exactly_at_the_threshold_keeps_the_answer():
    threshold = 0.3  # the paper's, and consistency_threshold's default
    answers = ["tenant"] * 3 + [f"other {i}" for i in range(7)]  # 3 of 10: a share of exactly 0.3
    assert 3 / 10 == threshold  # the boundary itself, not a float just above or below it
    assert vote.majority(answers, threshold) == vote.Vote("tenant", 3, 10)
    below = vote.majority(answers[1:], threshold)  # 2 of 9 (0.22)
    assert below == vote.Vote(None, 2, 9, vote.NO_MAJORITY, below.detail) and "2 of 9" in below.detail


def test_an_empty_vote_counts_nothing_and_says_why():
    assert vote.majority([], 0.3) == vote.Vote(None, 0, 0, vote.NO_VALID_OUTPUT, "every sample was filtered out")


def test_a_tie_of_equal_counts_and_lengths_goes_to_the_first_by_name_whatever_the_order():
    assert vote.majority(["no", "ok"], 0.3).answer == vote.majority(["ok", "no"], 0.3).answer == "no"


def test_at_one_position_the_longer_label_wins():
    labels = ("not", "not entailment", "entailment")
    assert vote.to_label("Not entailment: the passage says otherwise.", labels) == "not entailment"
    assert vote.to_label("Not so: entailment.", labels) == "not"


def test_the_seed_picks_the_rows_a_balance_keeps_and_defaults_to_zero():
    rows = [{"id": f"t{i}", "label": "tenant"} for i in range(5)] + [{"id": "l0", "label": "landlord"}]
    kept = {seed: sorted(r["id"] for r in vote.balance(rows, "label", seed=seed)[0]) for seed in range(4)}
    assert len({tuple(k) for k in kept.values()}) > 1  # another seed, another tenant kept
    assert sorted(r["id"] for r in vote.balance(rows, "label")[0]) == kept[0]
