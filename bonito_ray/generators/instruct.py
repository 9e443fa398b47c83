"""The ``instruct`` generator: any instruction-tuned chat model asked to write one task for a passage.

The request is a user turn (no system turn: some chat templates refuse one) naming the task type, saying
what a task of that type is (``bonito_ray.tasks.TASK_DESCRIPTIONS``), holding the passage, and asking
for the answer in tags, in the passage's language. It comes twice: first about a short example passage,
answered by a worked example of the type (``instruct_examples``), then about the passage; and the prompt
ends with the answer's start (``<input>``), so that the model goes on with the task rather than talking
about the request. The whole answer::

    <input>
    ... the task input, with {{context}} where the passage goes ...
    </input>
    <output>
    ... the task output ...
    </output>

Tags rather than "Input:" / "Output:" lines: a chat model's preamble ("Sure! Here is a task:") and
closing remarks fall outside them, and a task whose own text says "Output:" still parses. The model
writes ``{{context}}`` instead of copying the passage: a copy would spend ``--max-tokens`` on it (and
may not be word for word); a model that copies anyway still passes, as ``passage_missing`` checks the
passage itself. Parsing puts the passage back where ``{{context}}`` stands, as Bonito's does, and reads
what the model wrote as following the prompt's ``<input>`` (or its own, if it writes one).

The prompt is the model's chat template rendered here, by its tokenizer, into the plain text every
engine takes as it takes Bonito's prompt; the leading BOS the template writes is dropped when the
tokenizer adds one itself on encoding (the engines encode the prompt with special tokens), so that
the model sees one BOS, as it was trained.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from bonito_ray.prompt import CONTEXT_PLACEHOLDER, Rejection, Task
from bonito_ray.rejects import (EMPTY_INPUT, EMPTY_OUTPUT, MISPLACED_TAG, MULTIPLE_TASKS, NO_INPUT_TAG,
                                NO_OUTPUT_TAG)
from bonito_ray.generators.instruct_examples import EXAMPLE_PASSAGE, EXAMPLE_TASKS
from bonito_ray.tasks import TASK_TYPES, full_task_name, resolve_task_type, task_description

INPUT_OPEN, INPUT_CLOSE, OUTPUT_OPEN, OUTPUT_CLOSE = "<input>", "</input>", "<output>", "</output>"
PASSAGE_OPEN, PASSAGE_CLOSE = "<passage>", "</passage>"
# The answer's start, written at the end of the prompt: a small model asked a question tends to talk about
# it; started on its answer, it writes the task (SmolLM2-135M-Instruct: docs/generators.md).
ANSWER_START = f"{INPUT_OPEN}\n"
# What a model writes after the prompt, when it parses, around the task input and output (the echo engine
# writes it too).
ANSWER_LAYOUT = ("", f"\n{INPUT_CLOSE}\n{OUTPUT_OPEN}\n", f"\n{OUTPUT_CLOSE}")
# Strings a passage must not hold: it could close its own block early, or forge or break an answer.
MARKERS = (CONTEXT_PLACEHOLDER, PASSAGE_OPEN, PASSAGE_CLOSE, INPUT_OPEN, INPUT_CLOSE, OUTPUT_OPEN, OUTPUT_CLOSE)

_TAG = re.compile(r"</?(input|output)>", re.IGNORECASE)  # models write <Input> too


def request_text(context: str, task_type: str) -> str:
    """A user turn asking for one task of ``task_type`` (short or full name) about ``context``."""
    return (
        f"Write one {full_task_name(task_type)} task about the passage below: {task_description(task_type)}. "
        f"Write {CONTEXT_PLACEHOLDER} where the passage goes instead of copying it, and write in the language of "
        f"the passage. Answer with the task only: its input between {INPUT_OPEN} tags, its output between "
        f"{OUTPUT_OPEN} tags.\n\n{PASSAGE_OPEN}\n{context.strip()}\n{PASSAGE_CLOSE}"
    )


def example_answer(task_type: str) -> str:
    """The worked example's answer for ``task_type``, in full (tags and all)."""
    task_input, task_output = EXAMPLE_TASKS[resolve_task_type(task_type)]
    return f"{INPUT_OPEN}\n{task_input}\n{INPUT_CLOSE}\n{OUTPUT_OPEN}\n{task_output}\n{OUTPUT_CLOSE}"


def messages(context: str, task_type: str) -> list[dict[str, str]]:
    """The conversation asked: the request about the example passage, its answer, then the request about ``context``."""
    return [{"role": "user", "content": request_text(EXAMPLE_PASSAGE, task_type)},
            {"role": "assistant", "content": example_answer(task_type)},
            {"role": "user", "content": request_text(context, task_type)}]


def chat_prompt(tokenizer: Any, turns: list[dict[str, str]]) -> str:
    """``turns`` in ``tokenizer``'s chat template, ready for the assistant's answer."""
    rendered = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and rendered.startswith(bos) and _adds_bos(tokenizer):
        rendered = rendered[len(bos):]
    return rendered


@functools.lru_cache(maxsize=8)  # asked for every request a job builds, of the one tokenizer it caches
def _adds_bos(tokenizer: Any) -> bool:
    """Whether encoding with special tokens puts a BOS first (Llama, Mistral: yes; Qwen: no BOS at all)."""
    ids = tokenizer("x")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def build_prompt(context: str, task_type: str, tokenizer: Any) -> str:
    """The prompt the engine gets: the conversation in the model's chat template, and the answer's start."""
    return chat_prompt(tokenizer, messages(context, task_type)) + ANSWER_START


def sizing_prompts(tokenizer: Any) -> list[str]:
    """The prompts around a one-character passage: the longest bounds what a prompt adds to its passage."""
    return [build_prompt("x", task_type, tokenizer) for task_type in TASK_TYPES]


def parse_answer(generated_text: str, context: str) -> Task | Rejection:
    """The task in what the model wrote after the prompt's ``ANSWER_START`` (``parse_generation`` of the whole
    answer); a model that writes ``<input>`` again anyway is read from its own."""
    if generated_text.lstrip().lower().startswith(INPUT_OPEN):
        return parse_generation(generated_text, context)
    return parse_generation(ANSWER_START + generated_text, context)


def parse_generation(generated_text: str, context: str) -> Task | Rejection:
    """The task in a generation: the input runs from ``<input>`` to ``</input>`` (or ``<output>``), the output
    from ``<output>`` to ``</output>`` (or the end: a model may stop after its answer); text around them is
    ignored. ``{{context}}`` becomes the passage."""
    tags = [(m.group(0).lower(), m.start(), m.end()) for m in _TAG.finditer(generated_text)]
    opens = {tag: [t for t in tags if t[0] == tag] for tag in (INPUT_OPEN, OUTPUT_OPEN)}
    if len(opens[INPUT_OPEN]) > 1 or len(opens[OUTPUT_OPEN]) > 1:
        return Rejection(MULTIPLE_TASKS)
    if not opens[INPUT_OPEN]:
        return Rejection(NO_INPUT_TAG)
    input_start = opens[INPUT_OPEN][0][2]
    if not opens[OUTPUT_OPEN] or opens[OUTPUT_OPEN][0][1] < input_start:
        return Rejection(NO_OUTPUT_TAG)
    output_start = opens[OUTPUT_OPEN][0][2]
    input_end = next(start for tag, start, _ in tags if start >= input_start and tag in (INPUT_CLOSE, OUTPUT_OPEN))
    output_end = next((start for tag, start, _ in tags if start >= output_start and tag == OUTPUT_CLOSE),
                      len(generated_text))
    passage = context.strip()
    if _TAG.search(generated_text[input_start:input_end]) or _TAG.search(generated_text[output_start:output_end]):
        return Rejection(MISPLACED_TAG)  # tags out of order: what lies between them is no task's part
    task_input = generated_text[input_start:input_end].strip().replace(CONTEXT_PLACEHOLDER, passage)
    task_output = generated_text[output_start:output_end].strip().replace(CONTEXT_PLACEHOLDER, passage)
    if not task_input:
        return Rejection(EMPTY_INPUT)
    if not task_output:
        return Rejection(EMPTY_OUTPUT)
    return Task(task_input, task_output)
