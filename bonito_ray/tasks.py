"""Bonito's 16 task types: short names, full names, what each asks for, and name resolution."""

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
# Short name -> what a task of that type is, in one line: told to an instruction-tuned generator
# (``bonito_ray.generators.instruct``), which has no Bonito training to know it. Each says what the
# strict validators (``bonito_ray.validators``) check of the type: a span, an offered option, yes or no.
TASK_DESCRIPTIONS: dict[str, str] = {
    "exqa": "a question about the passage whose answer is a span copied word for word from the passage",
    "mcqa": "a question about the passage with its answer options listed in the input; the output is the "
            "correct option, written as listed",
    "qg": "the input asks for a question that the passage answers; the output is that question",
    "qa": "a question about the passage, answered in a few words, with no answer options given",
    "ynqa": "a question about the passage that is answered Yes or No",
    "coref": "the input asks what a pronoun or phrase of the passage refers to, listing the candidates; the "
             "output is the right candidate, written as listed",
    "paraphrase": "the input asks to say a sentence of the passage in other words; the output is the rewording",
    "paraphrase_id": "the input gives two sentences (one from the passage) and asks whether they mean the same "
                     "thing, Yes or No; the output is Yes or No",
    "sent_comp": "the input gives the start of a sentence from the passage and lists possible endings; the "
                 "output is the right ending, written as listed",
    "sentiment": "the input asks for the sentiment the passage expresses, listing the options (e.g. positive, "
                 "negative); the output is one of them, written as listed",
    "summarization": "the input asks for a short summary of the passage; the output is the summary",
    "text_gen": "the input asks for a text given only its title or topic; the output is the passage itself",
    "topic_class": "the input asks which topic the passage is about, listing the candidate topics; the output "
                   "is one of them, written as listed",
    "wsd": "the input gives a word used in two sentences (one from the passage) and asks whether it has the "
           "same meaning in both, Yes or No; the output is Yes or No",
    "te": "the input takes the passage as a premise with a hypothesis and asks whether the premise entails "
          "the hypothesis, Yes or No; the output is Yes or No",
    "nli": "the input takes the passage as a premise with a hypothesis and asks whether the hypothesis is "
           "true, false or neither, listing those options; the output is one of them, written as listed",
}


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


def task_description(short: str) -> str:
    """What a task of the type ``short`` (or its full name) is, in one line."""
    return TASK_DESCRIPTIONS[resolve_task_type(short)]
