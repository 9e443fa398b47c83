"""The error budget: a job whose engine refuses too many requests fails, clearly and early.

A systematic failure (a wrong model, a window far too small, a server down) would otherwise run for
hours and commit a dataset of rejects. A job's engine results are counted in one ``Tally``, which
fails the job once the error rate passes the budget: in a generation job a small actor that the write
tasks report to, over a fair sample, with the exact rate over the whole run checked again before
commit; in a SELF-GUIDE job on the driver, as each engine pass comes back and before it is staged.
When a generation job's write fails, the driver asks the actor (``spent``) whether the budget ended it.
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
    reason = over_budget(rows, errors, max_rate, see)
    if reason is not None:
        raise ErrorBudgetExceeded(reason)


def over_budget(rows: int, errors: int, max_rate: float, see: str = GENERATION_REJECTS) -> str | None:
    """Why a job fails its budget (nothing was generated, or ``errors`` out of ``rows`` is over ``max_rate``),
    or None when it is within it."""
    if rows == 0:
        return ("no passage reached the engine: every record was rejected or filtered; "
                "see _rejects/ in the output's .staging folder")
    if errors / rows > max_rate:
        return (f"{errors} of {rows} requests ({errors / rows:.1%}) failed in the engine, over the budget of "
                f"{max_rate:.1%} (--max-error-rate); {see}")
    return None


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
        reason = self.spent()
        if reason is not None:
            raise ErrorBudgetExceeded(reason)

    def spent(self) -> str | None:
        """Why the job is over its budget, once ``min_sample`` rows are in; None while it is within it."""
        if self.rows == 0 or self.rows < self.min_sample:
            return None  # too few rows to judge
        return over_budget(self.rows, self.errors, self.max_rate, self.see)


# One tally for the write tasks of a generation job, which report to it as they stage their files.
ErrorBudget = ray.remote(num_cpus=0)(Tally)


ASK_SECONDS = 30  # an answer the actor does not give in this time is no answer: the write's own error stands


def spent(error_budget) -> str | None:
    """Why an ``ErrorBudget`` actor has failed the job, or None. Asked on the driver after a write failed: a
    write task that reported past the budget raised ``ErrorBudgetExceeded`` in the actor, and Ray hands it
    back wrapped in its own errors; the actor's state says it plainly. An actor that cannot answer (gone with
    its node) has failed no job."""
    try:
        return ray.get(error_budget.spent.remote(), timeout=ASK_SECONDS)
    except ray.exceptions.RayError:
        return None
