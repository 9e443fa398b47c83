"""The self-consistency vote at its threshold: a share exactly at it keeps the answer (pure, no Ray;
in the mutation-testing selection, jobs/dev/mutation_test.sh)."""

from __future__ import annotations

from bonito_ray.self_guide import vote


def test_a_share_exactly_at_the_threshold_keeps_the_answer():
    threshold = 0.3  # the paper's, and consistency_threshold's default
    answers = ["tenant"] * 3 + [f"other {i}" for i in range(7)]  # 3 of 10: a share of exactly 0.3
    assert 3 / 10 == threshold  # the boundary itself, not a float just above or below it
    assert vote.majority(answers, threshold) == vote.Vote("tenant", 3, 10)
    below = vote.majority(answers[1:], threshold)  # 2 of 9 (0.22)
    assert below.answer is None and below.reason == vote.NO_MAJORITY and "2 of 9" in below.detail
