"""The error budget: a job whose engine refuses too many requests fails, clearly and early.

A systematic failure (a wrong model, a window far too small, a server down) would otherwise run for
hours and commit a dataset of rejects. A job's engine results are counted in one ``Tally``, which
fails the job once the error rate passes the budget: in a generation job a small actor that the write
tasks report to, over a fair sample, with the exact rate over the whole run checked again before
commit; in a SELF-GUIDE job on the driver, as each engine pass comes back and before it is staged.
"""

from __future__ import annotations

import ray

from bonito_ray.errors import UserError

MIN_SAMPLE = 200  # rows seen before the running rate can fail a job


class ErrorBudgetExceeded(UserError, RuntimeError):
    """More engine errors than the job's --max-error-rate allows."""


GENERATION_REJECTS = "see the engine_error rows under _rejects/stage=generation in the output's .staging folder"


def check(rows: int, errors: int, max_rate: float, see: str = GENERATION_REJECTS) -> None:
    """Raise if nothing was generated, or if ``errors`` out of ``rows`` is over ``max_rate``; ``see``: what the
    message says of the failed requests' rows."""
    if rows == 0:
        raise ErrorBudgetExceeded("no passage reached the engine: every record was rejected or filtered; "
                                  "see _rejects/ in the output's .staging folder")
    if errors / rows > max_rate:
        raise ErrorBudgetExceeded(
            f"{errors} of {rows} requests ({errors / rows:.1%}) failed in the engine, over the budget of "
            f"{max_rate:.1%} (--max-error-rate); {see}")


class Tally:
    """Running totals of rows and engine errors; fails the job once the rate passes the budget over at least
    ``min_sample`` rows (a generation job's write tasks report rows already staged, and the exact rate is checked
    again before commit; a SELF-GUIDE job reports each engine pass before staging it, so it checks every time)."""

    def __init__(self, max_rate: float, see: str = GENERATION_REJECTS, min_sample: int = MIN_SAMPLE) -> None:
        self.max_rate, self.see, self.min_sample = max_rate, see, min_sample
        self.rows = 0
        self.errors = 0

    def record(self, rows: int, errors: int) -> None:
        self.rows += rows
        self.errors += errors
        if self.rows >= self.min_sample and self.errors / self.rows > self.max_rate:
            check(self.rows, self.errors, self.max_rate, self.see)


# One tally for the write tasks of a generation job, which report to it as they stage their files.
ErrorBudget = ray.remote(num_cpus=0)(Tally)
