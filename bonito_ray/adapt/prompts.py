"""The prompt a target model sees, and token encoding shared by training and evaluation.

``plain`` is the paper's format for pretrained targets (plain-text markers, BOS from the
tokenizer); ``chat`` wraps the input as one user turn of the model's own chat template, as
the paper does for instruction-tuned targets. Training and evaluation both go through
:func:`encode_prompt` and :func:`encode_answer`, so a model is scored on the token
boundaries it was trained on.
"""

from __future__ import annotations

from typing import Any

from bonito_ray.adapt.errors import PromptFormatError

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


def encode_prompt(tokenizer: Any, text: str, prompt_format: str) -> list[int]:
    """Token ids of the prompt for the task input ``text``, special tokens included."""
    if prompt_format == "chat":
        # The template writes its own BOS and turn markers, so the tokenizer must not add another BOS.
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                               add_generation_prompt=True)
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer(plain_prompt(text))["input_ids"]


def encode_answer(tokenizer: Any, text: str, eos: bool = False) -> list[int]:
    """Token ids of an answer that follows the prompt; ``eos`` appends the end token (training targets)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if eos else ids
