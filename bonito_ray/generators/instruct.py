"""The ``instruct`` generator: any instruction-tuned chat model asked to write one task for a passage.

The request is one user turn (some chat templates refuse a system turn) naming the task type, saying
what a task of that type is (``bonito_ray.tasks.TASK_DESCRIPTIONS``), holding the passage, and asking
for the answer in tags, in the passage's language::

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
passage itself. Parsing puts the passage back where ``{{context}}`` stands, as Bonito's does.

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
from bonito_ray.rejects import EMPTY_INPUT, EMPTY_OUTPUT, MULTIPLE_TASKS, NO_INPUT_TAG, NO_OUTPUT_TAG
from bonito_ray.tasks import TASK_TYPES, full_task_name, task_description

INPUT_OPEN, INPUT_CLOSE, OUTPUT_OPEN, OUTPUT_CLOSE = "<input>", "</input>", "<output>", "</output>"
PASSAGE_OPEN, PASSAGE_CLOSE = "<passage>", "</passage>"
# What an answer that parses looks like around the task input and output (the echo engine writes it too).
ANSWER_LAYOUT = (f"{INPUT_OPEN}\n", f"\n{INPUT_CLOSE}\n{OUTPUT_OPEN}\n", f"\n{OUTPUT_CLOSE}")
# Strings a passage must not hold: it could close its own block early, or forge or break an answer.
MARKERS = (CONTEXT_PLACEHOLDER, PASSAGE_OPEN, PASSAGE_CLOSE, INPUT_OPEN, INPUT_CLOSE, OUTPUT_OPEN, OUTPUT_CLOSE)

_TAG = re.compile(r"</?(input|output)>", re.IGNORECASE)  # models write <Input> too


def request_text(context: str, task_type: str) -> str:
    """The user turn asking for one task of ``task_type`` (short or full name) about ``context``."""
    return (
        f"Write one training example of the task type \"{full_task_name(task_type)}\" for the passage below: "
        f"{task_description(task_type)}.\n\n"
        f"{PASSAGE_OPEN}\n{context.strip()}\n{PASSAGE_CLOSE}\n\n"
        "The example has an input (the instruction or question, with the passage in it) and an output (the "
        f"correct answer). Write {CONTEXT_PLACEHOLDER} exactly where the passage goes instead of copying it. "
        "Write in the language of the passage. Reply with the example only, in exactly this form:\n"
        f"{ANSWER_LAYOUT[0]}the input, with {CONTEXT_PLACEHOLDER} in it{ANSWER_LAYOUT[1]}the output{ANSWER_LAYOUT[2]}"
    )


def chat_prompt(tokenizer: Any, text: str) -> str:
    """``text`` as the one user turn of ``tokenizer``'s chat template, ready for the assistant's answer."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
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
    """The prompt the engine gets: the request in the model's chat template."""
    return chat_prompt(tokenizer, request_text(context, task_type))


def sizing_prompts(tokenizer: Any) -> list[str]:
    """The prompts around a one-character passage: the longest bounds what a prompt adds to its passage."""
    return [build_prompt("x", task_type, tokenizer) for task_type in TASK_TYPES]


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
    task_input = generated_text[input_start:input_end].strip().replace(CONTEXT_PLACEHOLDER, passage)
    task_output = generated_text[output_start:output_end].strip().replace(CONTEXT_PLACEHOLDER, passage)
    if not task_input:
        return Rejection(EMPTY_INPUT)
    if not task_output:
        return Rejection(EMPTY_OUTPUT)
    return Task(task_input, task_output)
