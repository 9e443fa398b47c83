"""The error budget: a job whose engine refuses too many requests fails, clearly and early.

A systematic failure (a wrong model, a window far too small) would otherwise run for hours and
commit a dataset of rejects. Write tasks report their rows and engine errors to one small actor,
which fails the job once the error rate over a fair sample passes the budget; the exact rate over
the whole run is checked again before commit.
"""

from __future__ import annotations

import ray

from bonito_ray.errors import UserError

MIN_SAMPLE = 200  # rows seen before the running rate can fail a job


class ErrorBudgetExceeded(UserError, RuntimeError):
    """More engine errors than the job's --max-error-rate allows."""


def check(rows: int, errors: int, max_rate: float) -> None:
    """Raise if nothing was generated, or if ``errors`` out of ``rows`` is over ``max_rate``."""
    if rows == 0:
        raise ErrorBudgetExceeded("no passage reached the engine: every record was rejected or filtered; "
                                  "see _rejects/ in the output's .staging folder")
    if errors / rows > max_rate:
        raise ErrorBudgetExceeded(
            f"{errors} of {rows} requests ({errors / rows:.1%}) failed in the engine, over the budget of "
            f"{max_rate:.1%} (--max-error-rate); see the engine_error rows under _rejects/stage=generation "
            "in the output's .staging folder")


@ray.remote(num_cpus=0)
class ErrorBudget:
    """Running totals of rows and engine errors across the write tasks of one job."""

    def __init__(self, max_rate: float) -> None:
        self.max_rate = max_rate
        self.rows = 0
        self.errors = 0

    def record(self, rows: int, errors: int) -> None:
        self.rows += rows
        self.errors += errors
        if self.rows >= MIN_SAMPLE and self.errors / self.rows > self.max_rate:
            check(self.rows, self.errors, self.max_rate)
