"""Task validators: pure checks of a generated task after parsing (the ``validation`` stage).

A validator is a function ``(task: Candidate) -> Verdict | None``: ``None`` keeps the task, a
``Verdict(reason, detail)`` rejects it, and the row goes to ``_rejects/stage=validation/`` with that
reason, counted in the summary and the manifest. The first validator that rejects decides.

Levels (``--validate``, YAML ``validate:``, ``GenerateConfig.validate``; default ``strict``):

- ``off``: none; every task that parses is kept (the reference Bonito package's behaviour).
- ``basic``: form, whatever the task type: ``truncated`` (the engine stopped at ``--max-tokens`` or
  the window, not at the end of sequence; this one also takes precedence over a parse failure,
  since a cut generation tells nothing else), ``degenerate`` (an output without a letter or digit,
  or a run of ``MAX_REPEATS`` identical tokens - words or punctuation marks - in the output or in
  the input outside the passage), ``passage_missing`` (the input does not hold the passage, i.e.
  its ``{{context}}`` was not there; for ``text_gen`` the output may hold it instead).
- ``strict``: ``basic`` and the answer: ``not_a_span`` (exqa: the answer, SQuAD-normalised - lower
  case, punctuation and the articles a/an/the dropped, spaces collapsed - is not a run of whole
  words of the passage normalised alike), ``not_an_option`` (classification-style types: the input
  offers options, see ``bonito_ray.options``, and the answer is none of them), ``not_yes_no``
  (ynqa: no options offered, and the answer is not yes or no).

Your own validators: write a function like the ones below in a module the Ray workers can import
(installed, or shipped with ``ray job submit --working-dir``) and name it with ``--validator
mymodule:my_check`` (repeat the flag, or a YAML list ``validators: [mymodule:my_check]``). It runs
after the level's validators; its reason (lower case letters and ``_``) is counted like the others.
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from bonito_ray.options import normalise, offered_options
from bonito_ray.rejects import DEGENERATE, NOT_A_SPAN, NOT_AN_OPTION, NOT_YES_NO, PASSAGE_MISSING, TRUNCATED

DEFAULT_LEVEL = "strict"
LENGTH = "length"  # the finish reason of a generation cut at the token limit (vLLM's name)
MAX_REPEATS = 8  # identical consecutive tokens that make a text degenerate
# Types whose answer is a label; when the input offers options, the answer must be one of them.
OPTION_TYPES = frozenset({"ynqa", "mcqa", "coref", "paraphrase_id", "sentiment", "topic_class", "wsd", "te", "nli"})
YES_NO_TYPES = frozenset({"ynqa"})
YES_NO = frozenset({"yes", "no"})
PASSAGE_IN_INPUT_OR_OUTPUT = frozenset({"text_gen"})  # "Write a text about X" -> the passage
_REASON = re.compile(r"^[a-z][a-z_]*$")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation + "“”‘’«»–—")


@dataclass(frozen=True)
class Candidate:
    """A parsed task as the validators see it (input and output with the passage put back)."""

    task_type: str
    input: str
    output: str
    context: str
    finish_reason: str | None = None  # "stop", "length" (cut), or None when the engine did not say
    num_generated_tokens: int | None = None


@dataclass(frozen=True)
class Verdict:
    """A rejection: a reason (counted) and a detail for a person."""

    reason: str
    detail: str


Validator = Callable[[Candidate], "Verdict | None"]


def truncated(task: Candidate) -> Verdict | None:
    if task.finish_reason == LENGTH:
        return Verdict(TRUNCATED, f"the generation stopped at the token limit ({task.num_generated_tokens} tokens) "
                                  "without ending")
    return None


def degenerate(task: Candidate) -> Verdict | None:
    if not any(c.isalnum() for c in task.output):
        return Verdict(DEGENERATE, "the output has no letter or digit")
    for name, text in (("output", task.output), ("input", question_of(task))):
        run = _longest_run(_TOKEN.findall(text.casefold()))
        if run[1] >= MAX_REPEATS:
            return Verdict(DEGENERATE, f"the {name} repeats {run[0]!r} {run[1]} times in a row")
    return None


def passage_missing(task: Candidate) -> Verdict | None:
    passage = task.context.strip()
    if passage in task.input or (task.task_type in PASSAGE_IN_INPUT_OR_OUTPUT and passage in task.output):
        return None
    return Verdict(PASSAGE_MISSING, "the input does not hold the passage ({{context}} was not in it)")


def not_a_span(task: Candidate) -> Verdict | None:
    if task.task_type != "exqa":
        return None
    answer, passage = squad_normalise(task.output), squad_normalise(task.context)
    if answer and f" {answer} " in f" {passage} ":
        return None
    articles = normalise(task.output)  # an answer of articles only: whole words of the passage too
    if not answer and articles and re.search(rf"(?<!\w){re.escape(articles)}(?!\w)", task.context.casefold()):
        return None
    return Verdict(NOT_A_SPAN, "the answer is not a span of the passage (compared SQuAD-normalised)")


def not_an_option(task: Candidate) -> Verdict | None:
    if task.task_type not in OPTION_TYPES:
        return None
    options = offered_options(question_of(task))
    if options is None or options.admits(task.output):
        return None
    return Verdict(NOT_AN_OPTION, f"the answer is none of the options the input offers ({', '.join(options.items)})")


def not_yes_no(task: Candidate) -> Verdict | None:
    if task.task_type not in YES_NO_TYPES or offered_options(question_of(task)) is not None:
        return None  # offered options (True or False?) are not_an_option's to check
    if normalise(task.output) in YES_NO:
        return None
    return Verdict(NOT_YES_NO, "a yes-no task answered with something other than yes or no")


BASIC: tuple[Validator, ...] = (truncated, degenerate, passage_missing)
LEVELS: dict[str, tuple[Validator, ...]] = {
    "off": (),
    "basic": BASIC,
    "strict": BASIC + (not_a_span, not_an_option, not_yes_no),
}


def validators_for(level: str, extra: list[str] = ()) -> tuple[Validator, ...]:
    """The validators of ``level`` followed by the user's own (``module:function`` names)."""
    return LEVELS[level] + tuple(load_validator(name) for name in extra)


def load_validator(name: str) -> Validator:
    """Import a user's validator named ``module:function``; a ValueError names what is wrong."""
    module, _, function = name.partition(":")
    if not module or not function:
        raise ValueError(f"validator {name!r} must be written module:function")
    try:
        found = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load validator {name!r}: {err}") from err
    if not callable(found):
        raise ValueError(f"validator {name!r} is not a function")
    return found


def check(task: Candidate, validators: tuple[Validator, ...]) -> Verdict | None:
    """The first rejection among ``validators``, or None when they all keep ``task``."""
    for validator in validators:
        verdict = validator(task)
        if verdict is not None:
            if not isinstance(verdict, Verdict) or not _REASON.match(verdict.reason):
                raise ValueError(f"validator {getattr(validator, '__name__', validator)!r} returned {verdict!r}; "
                                 "it must return None or Verdict(reason, detail), reason in lower case letters and _")
            return verdict
    return None


def question_of(task: Candidate) -> str:
    """The input without the passage: the part the generator wrote (its question, options, template)."""
    passage = task.context.strip()
    return task.input.replace(passage, "\n") if passage else task.input


def squad_normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, punctuation and articles dropped, spaces collapsed."""
    return " ".join(_ARTICLES.sub(" ", text.casefold().translate(_PUNCTUATION)).split())


def _longest_run(tokens: list[str]) -> tuple[str, int]:
    best, run = ("", 0), 0
    for k, token in enumerate(tokens):
        run = run + 1 if k and token == tokens[k - 1] else 1
        if run > best[1]:
            best = (token, run)
    return best
