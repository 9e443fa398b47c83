"""Generators: how a passage and a task type become the prompt an engine runs, and how its answer becomes a task.

Whatever the generator, a generation parses to the same ``Task(input, output)`` or ``Rejection(reason)``
(``bonito_ray.prompt``), so validators, rejects, task dedup, the card and the manifest are the same:

- ``bonito``: Bonito's meta-template, byte-exact (``bonito_ray.prompt``), for a Bonito model;
- ``instruct``: any instruction-tuned chat model, asked in its own chat template to write a task of the
  type (``bonito_ray.generators.instruct``): for users without Bonito weights, or in other languages.

``GENERATORS`` is the one registry; nothing outside this package asks which generator a job uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bonito_ray import prompt as bonito
from bonito_ray.errors import UserError
from bonito_ray.generators import instruct
from bonito_ray.prompt import Rejection, Task
from bonito_ray.tasks import TASK_TYPES


class ChatTemplateError(UserError, ValueError):
    """A chat generator given a model whose tokenizer has no chat template."""


@dataclass(frozen=True)
class Generator:
    """One generator. ``prompt``: (context, task type, tokenizer or None) -> the prompt text; ``parse``:
    (generated text, context) -> Task or Rejection; ``sizing_prompts``: (tokenizer) -> the prompts around a
    one-character passage whose longest, in tokens, is what a prompt adds to its passage (planning sizes
    passages with it)."""

    name: str
    summary: str  # for --help
    prompt: Callable[[str, str, Any], str]
    parse: Callable[[str, str], Task | Rejection]
    sizing_prompts: Callable[[Any], list[str]]
    markers: tuple[str, ...]  # strings a passage must not hold (rejected as control_marker, the marker named)
    answer_layout: tuple[str, str, str]  # text before the input, between input and output, after the output
    # of an answer that parses (the echo engine answers in it)
    chat_template: bool = False  # the prompt is the model's chat template, rendered here with its tokenizer
    # Raised whenever the prompt changes: a job's identity holds it (``identity``), so that an unfinished run is
    # not resumed, nor a dataset added to, with tasks asked another way.
    revision: int = 1

    def identity(self) -> dict[str, int]:
        """What of the generator, besides its name, a job's identity holds: the prompt's revision, left out at 1
        so that the identity of a dataset made before revisions were counted holds."""
        return {} if self.revision == 1 else {"generator_revision": self.revision}

    def check_model(self, tokenizer: Any, model: str) -> None:
        """Refuse, in one line, a model this generator cannot prompt."""
        if self.chat_template and not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError(
                f"--generator {self.name} needs an instruction-tuned chat model, and the tokenizer of {model} has no "
                "chat template (a base model?); use a chat model, or --generator bonito with a Bonito model")


def _bonito_prompt(context: str, task_type: str, tokenizer: Any = None) -> str:
    return bonito.build_prompt(context, task_type)  # Bonito's prompt is plain text: no tokenizer


def _bonito_sizing_prompts(tokenizer: Any) -> list[str]:
    # The longest task name's prompt: how passages were always sized, so that the passage length recorded in
    # older datasets' identity comes out the same.
    return [bonito.build_prompt("x", max(TASK_TYPES.values(), key=len))]


GENERATORS: dict[str, Generator] = {g.name: g for g in (
    Generator("bonito", "Bonito's meta-template, for a Bonito model", _bonito_prompt, bonito.parse_generation,
              _bonito_sizing_prompts, bonito.MARKERS, ("", f"\n{bonito.SEPARATOR}\n", "")),
    Generator("instruct", "any instruction-tuned chat model, asked in its chat template", instruct.build_prompt,
              instruct.parse_answer, instruct.sizing_prompts, instruct.MARKERS, instruct.ANSWER_LAYOUT,
              chat_template=True, revision=2),  # 2: a worked example, and the answer started (<input>)
)}
GENERATOR_NAMES = tuple(GENERATORS)
GENERATOR_HELP = ", ".join(f"{g.name} ({g.summary})" for g in GENERATORS.values())
DEFAULT_GENERATOR = "bonito"
