"""The error budget's decisions, without Ray: when a tally is spent, and what a failed write raises.

``tests/test_fault_tolerance.py`` runs the same decisions on a real cluster (the ``ErrorBudget`` actor, a job
failed by it in the middle of its write).
"""

import pytest

from bonito_ray import budget
from bonito_ray.budget import ErrorBudgetExceeded, Tally
from bonito_ray.pipeline import _write


def test_a_tally_is_spent_only_over_the_rate_and_over_a_fair_sample():
    tally = Tally(0.1, min_sample=200)
    assert tally.spent() is None  # nothing counted yet
    tally.record(150, 50)  # a third failed, but 150 rows are too few to judge
    assert tally.spent() is None
    with pytest.raises(ErrorBudgetExceeded, match=r"^50 of 200 requests \(25.0%\) failed in the engine, over the "
                                                  r"budget of 10.0% \(--max-error-rate\); see the engine_error rows"):
        tally.record(50, 0)
    # The tally keeps the state that failed the job: the driver reads it after the write fails.
    assert tally.spent() == budget.over_budget(200, 50, 0.1)


def test_a_tally_exactly_at_its_rate_is_not_spent():
    tally = Tally(0.25, min_sample=4)
    tally.record(4, 1)  # 25%: the budget allows it
    assert tally.spent() is None
    with pytest.raises(ErrorBudgetExceeded, match=r"^2 of 4 requests \(50.0%\)"):
        tally.record(0, 1)


def test_a_driver_side_tally_judges_every_pass_and_an_empty_one_judges_nothing():
    tally = Tally(0.05, see="a rerun keeps what was staged", min_sample=0)
    assert tally.spent() is None  # no row: nothing to judge (over_budget would say nothing was generated)
    with pytest.raises(ErrorBudgetExceeded, match=r"1 of 2 requests .*; a rerun keeps what was staged$"):
        tally.record(2, 1)


class Dataset:
    """Stands in for the job's dataset: its write raises ``error``, as Ray Data does with a failed write task."""

    def __init__(self, error: Exception | None) -> None:
        self.error, self.written = error, []

    def write_datasink(self, sink) -> None:
        self.written.append(sink)
        if self.error is not None:
            raise self.error


class Sink:
    def __init__(self, error_budget) -> None:
        self.error_budget = error_budget


class Asked:
    """An injected budget state: what the budget actor would answer, and who asked."""

    def __init__(self, reason: str | None) -> None:
        self.reason, self.asked = reason, []

    def __call__(self, error_budget) -> str | None:
        self.asked.append(error_budget)
        return self.reason


# What Ray raised on the driver for a write task failed by the budget: its own wrapping, traceback and all.
RAY_ERROR = RuntimeError("Traceback (most recent call last):\n  File ...\nray.exceptions.RayTaskError(...)")


def test_a_write_failed_with_its_budget_spent_fails_as_the_budget_in_one_line():
    reason = budget.over_budget(300, 90, 0.05)
    handle, spent = object(), Asked(reason)
    with pytest.raises(ErrorBudgetExceeded) as raised:
        _write(Dataset(RAY_ERROR), Sink(handle), budget_spent=spent)
    assert type(raised.value) is ErrorBudgetExceeded and str(raised.value) == reason
    assert raised.value.__suppress_context__ and raised.value.__cause__ is None  # no Ray traceback under it
    assert spent.asked == [handle]


def test_a_write_that_fails_within_the_budget_raises_its_own_error():
    spent = Asked(None)
    with pytest.raises(RuntimeError) as raised:
        _write(Dataset(RAY_ERROR), Sink(object()), budget_spent=spent)
    assert raised.value is RAY_ERROR and len(spent.asked) == 1


def test_a_write_that_succeeds_or_has_no_budget_never_asks_it():
    spent = Asked("would fail the job")
    dataset = Dataset(None)
    _write(dataset, Sink(object()), budget_spent=spent)
    assert len(dataset.written) == 1
    with pytest.raises(RuntimeError) as raised:
        _write(Dataset(RAY_ERROR), Sink(None), budget_spent=spent)
    assert raised.value is RAY_ERROR and spent.asked == []
