"""Self-consistency and the classification steps after it, as pure functions.

- ``to_label``: a classification sample's answer is the first label its text contains (earliest
  position, case-insensitive, whole words; at one position the longer label); none: not a label.
- ``majority``: the most frequent answer among an input's samples that passed the filters; kept
  only if its share of those samples is at least the threshold (the paper: 0.3). Ties go to the
  shortest answer (then the alphabetically first, so that the vote is deterministic).
- ``balance``: classes cut down to the smallest class's size, the examples kept in each class
  chosen by a hash of their id (the same whatever the order they come in).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from bonito_ray.rejects import CLASS_BALANCE, NO_MAJORITY, NO_VALID_OUTPUT, NOT_A_LABEL  # noqa: F401 - vote.X
from bonito_ray.schema import stable_id


def to_label(text: str, labels: tuple[str, ...] | list[str]) -> str | None:
    """The first of ``labels`` that ``text`` contains as whole words, or None."""
    found = []
    for label in labels:
        match = re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.IGNORECASE)
        if match:
            found.append((match.start(), -len(label), label))
    return min(found)[2] if found else None


@dataclass(frozen=True)
class Vote:
    """The outcome of one input's vote: ``answer`` (None: no answer kept), its count out of ``valid``."""

    answer: str | None
    count: int
    valid: int
    reason: str | None = None  # why no answer was kept
    detail: str = ""


def majority(answers: list[str], threshold: float) -> Vote:
    """The self-consistency vote over the answers of the samples that passed the filters."""
    if not answers:
        return Vote(None, 0, 0, NO_VALID_OUTPUT, "every sample was filtered out")
    counts = Counter(answers)
    answer, count = min(counts.items(), key=lambda item: (-item[1], len(item[0]), item[0]))
    share = count / len(answers)
    if share < threshold:
        return Vote(None, count, len(answers), NO_MAJORITY,
                    f"the most frequent answer has {count} of {len(answers)} valid samples "
                    f"({share:.2f} < threshold {threshold})")
    return Vote(answer, count, len(answers))


def balance(rows: list[dict], label_key: str, seed: object = 0) -> tuple[list[dict], list[dict]]:
    """(kept, dropped): each label's rows cut to the smallest label's count, by hash of (``seed``, id)."""
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row[label_key], []).append(row)
    if not by_label:
        return [], []
    smallest = min(map(len, by_label.values()))
    kept, dropped = [], []
    for group in by_label.values():
        ordered = sorted(group, key=lambda r: stable_id(seed, r["id"]))
        kept += ordered[:smallest]
        dropped += ordered[smallest:]
    return kept, dropped
