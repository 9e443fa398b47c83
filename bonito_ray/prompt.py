"""Bonito's meta-template: the prompt sent to the model and the parsing of what it emits.

Byte-compatible with the reference Bonito package (PyPI ``bonito-llm``, BatsResearch/bonito), except that a
generation that does not parse is returned as a :class:`Rejection` with a reason instead of
being dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from bonito_ray.rejects import EMPTY_INPUT, EMPTY_OUTPUT, MULTIPLE_SEPARATORS, NO_SEPARATOR
from bonito_ray.tasks import full_task_name

SEPARATOR = "<|pipe|>"
CONTEXT_PLACEHOLDER = "{{context}}"
# Bonito's markers. A passage holding one could forge or break a task (a fake <|task|> section,
# a <|pipe|> the model copies into its answer, a {{context}} expanded into the passage itself), so
# such passages are rejected with the marker named (bonito_ray.passages), never silently rewritten.
MARKERS = ("<|tasktype|>", "<|context|>", "<|task|>", SEPARATOR, CONTEXT_PLACEHOLDER)


def build_prompt(context: str, task_type: str) -> str:
    """The exact Bonito prompt for a passage and a task type (short or full name)."""
    return (
        "<|tasktype|>\n"
        + full_task_name(task_type)
        + "\n<|context|>\n"
        + context.strip()
        + "\n<|task|>\n"
    )


@dataclass(frozen=True)
class Task:
    """A parsed synthetic example."""

    input: str
    output: str


@dataclass(frozen=True)
class Rejection:
    """A generation that did not parse, with the reason."""

    reason: str


def parse_generation(generated_text: str, context: str) -> Task | Rejection:
    """Split a generation on the separator and put the passage back where ``{{context}}`` stands."""
    parts = generated_text.split(SEPARATOR)
    if len(parts) == 1:
        return Rejection(NO_SEPARATOR)
    if len(parts) > 2:
        return Rejection(MULTIPLE_SEPARATORS)
    passage = context.strip()
    task_input = parts[0].strip().replace(CONTEXT_PLACEHOLDER, passage)
    task_output = parts[1].strip().replace(CONTEXT_PLACEHOLDER, passage)
    if not task_input:
        return Rejection(EMPTY_INPUT)
    if not task_output:
        return Rejection(EMPTY_OUTPUT)
    return Task(task_input, task_output)
