"""The prompt a target model sees, how its answer is read, and token encoding shared by training and evaluation.

``plain`` is the paper's format for pretrained targets (plain-text markers, BOS from the
tokenizer); ``chat`` wraps the input as one user turn of the model's own chat template, as
the paper does for instruction-tuned targets. Training and evaluation both go through
:func:`encode_prompt` and :func:`encode_answer`, so a model is scored on the token
boundaries it was trained on.

A SELF-GUIDE dataset's input is one task's bare input: its instruction and demonstrations are in the
task spec. Given that spec (``task``), the prompt text is SELF-GUIDE's few-shot prompt, the one the
student answered when it annotated its own data (instruction, demonstrations, the input in an open
output slot: ``bonito_ray.self_guide.prompts``); ``plain`` then adds no markers of its own (the text
already ends where the answer goes) and ``chat`` makes it the user turn. The answer is the slot's
text, closing quote included, and is read back from the slot.
"""

from __future__ import annotations

from typing import Any

from bonito_ray.adapt.errors import PromptFormatError
from bonito_ray.self_guide.prompts import annotation_prompt, read_slot, slot_answer
from bonito_ray.self_guide.spec import TaskSpec

PROMPT_FORMATS = ("plain", "chat")


def plain_prompt(text: str) -> str:
    """The paper's prompt for a pretrained target: the answer follows the ``<|output|>`` line."""
    return "<|input|>\n" + text + "\n<|output|>\n"


def check_prompt_format(tokenizer: Any, prompt_format: str, model: str) -> None:
    """Raise :class:`PromptFormatError` if ``tokenizer`` (of ``model``) cannot build ``prompt_format``."""
    if prompt_format not in PROMPT_FORMATS:
        raise PromptFormatError(f"unknown prompt format {prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}")
    if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise PromptFormatError(f"--prompt-format chat needs a chat template, and the tokenizer of {model} has "
                                "none (a pretrained model?); use --prompt-format plain")


def prompt_text(text: str, task: TaskSpec | None = None) -> str:
    """What the target is asked: the task input, or for a SELF-GUIDE ``task`` its few-shot prompt around it."""
    return annotation_prompt(task, text) if task is not None else text


def plain_text(text: str, task: TaskSpec | None = None) -> str:
    """The whole ``plain`` prompt: the paper's markers around a task input; a SELF-GUIDE prompt as it is (it
    already ends where the answer goes)."""
    return prompt_text(text, task) if task is not None else plain_prompt(text)


def answer_text(text: str, task: TaskSpec | None = None) -> str:
    """What the target answers: the output, or for a SELF-GUIDE ``task`` the slot's text (closing quote included)."""
    return slot_answer(text) if task is not None else text


def encode_prompt(tokenizer: Any, text: str, prompt_format: str, task: TaskSpec | None = None) -> list[int]:
    """Token ids of the prompt for the task input ``text`` (of the SELF-GUIDE ``task``), special tokens included."""
    if prompt_format == "chat":
        # The template writes its own BOS and turn markers, so the tokenizer must not add another BOS.
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt_text(text, task)}],
                                               tokenize=False, add_generation_prompt=True)
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer(plain_text(text, task))["input_ids"]


def encode_answer(tokenizer: Any, text: str, eos: bool = False, task: TaskSpec | None = None) -> list[int]:
    """Token ids of an answer that follows the prompt; ``eos`` appends the end token (training targets)."""
    ids = tokenizer(answer_text(text, task), add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if eos else ids


def read_answer(generated: str, task: TaskSpec | None = None) -> str:
    """The answer in a model's decoded continuation of :func:`encode_prompt`'s prompt, stripped."""
    return read_slot(generated) if task is not None else generated.strip()
