"""What the engines and the adapt commands share about Hugging Face models: one way to read a
model's window, pad a tokenizer and choose a dtype."""

from __future__ import annotations

from typing import Any


def context_window(model_config: Any, tokenizer: Any = None) -> int | None:
    """The model's context window in tokens, where its config (or else its tokenizer) states one."""
    window = getattr(model_config, "max_position_embeddings", None)
    if window is None and tokenizer is not None and tokenizer.model_max_length < 1_000_000:
        window = tokenizer.model_max_length
    return window


def padded_tokenizer(model: str, padding_side: str | None = None) -> Any:
    """The tokenizer of ``model`` with a pad token (its EOS token when it defines none); ``padding_side``
    "left" for batched generation, which appends to every row's end."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def compute_dtype(device: Any) -> Any:
    """bfloat16 on GPUs that support it, else float32 (CPU work in half precision is slow and lossy)."""
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
