"""Bonito's 16 task types: short names, full names, and name resolution."""

from __future__ import annotations

from collections.abc import Iterable

from bonito_ray.errors import UserError

# Short name -> full name. The full name is what goes into the prompt (the reference package's SHORTFORM_TO_FULL_TASK_TYPES).
TASK_TYPES: dict[str, str] = {
    "exqa": "extractive question answering",
    "mcqa": "multiple-choice question answering",
    "qg": "question generation",
    "qa": "question answering without choices",
    "ynqa": "yes-no question answering",
    "coref": "coreference resolution",
    "paraphrase": "paraphrase generation",
    "paraphrase_id": "paraphrase identification",
    "sent_comp": "sentence completion",
    "sentiment": "sentiment",
    "summarization": "summarization",
    "text_gen": "text generation",
    "topic_class": "topic classification",
    "wsd": "word sense disambiguation",
    "te": "textual entailment",
    "nli": "natural language inference",
}

_FULL_TO_SHORT = {full: short for short, full in TASK_TYPES.items()}


class UnknownTaskTypeError(UserError, ValueError):
    """A task type that is neither a short nor a full Bonito task name."""


def resolve_task_type(name: str) -> str:
    """Return the short name for a short or full task-type name (case and spaces tolerated)."""
    key = " ".join(str(name).strip().lower().split())
    if key in TASK_TYPES:
        return key
    if key in _FULL_TO_SHORT:
        return _FULL_TO_SHORT[key]
    valid = ", ".join(f"{s} ({f})" for s, f in TASK_TYPES.items())
    raise UnknownTaskTypeError(f"unknown task type {name!r}; valid task types are: {valid}")


def resolve_task_types(names: str | Iterable[str]) -> list[str]:
    """Resolve a comma-separated string or a list of names to unique short names, in order."""
    if isinstance(names, str):
        names = names.split(",")
    resolved: list[str] = []
    for name in names:
        if str(name).strip():
            short = resolve_task_type(name)
            if short not in resolved:
                resolved.append(short)
    if not resolved:
        raise UnknownTaskTypeError(
            "no task type given; choose one or more of: " + ", ".join(TASK_TYPES)
        )
    return resolved


def full_task_name(short: str) -> str:
    """The full task name used in the prompt for a short name."""
    return TASK_TYPES[resolve_task_type(short)]
