"""Loading tokenizers, target models (full precision or 4-bit) and the LoRA configuration."""

from __future__ import annotations

import importlib.util
from typing import Any

# LoRA on every linear layer of the transformer blocks, as Q-LoRA does (the LM head stays frozen).
LORA_TARGET_MODULES = "all-linear"


def load_tokenizer(model: str) -> Any:
    """The tokenizer of ``model``, with a pad token (the EOS token when the model defines none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def compute_dtype(device: Any) -> Any:
    """bfloat16 on GPUs that support it, else float32 (CPU training in half precision is slow and lossy)."""
    import torch

    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_causal_lm(model: str, device: Any, quantize_4bit: bool = False) -> Any:
    """``model`` on ``device``; with ``quantize_4bit`` its weights are NF4 (Q-LoRA, needs a GPU and bitsandbytes)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = compute_dtype(device)
    if not quantize_4bit:
        return AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(model, dtype=dtype, quantization_config=quantization,
                                                device_map={"": torch.device(device).index or 0})


def bitsandbytes_available() -> bool:
    """Whether bitsandbytes (needed for 4-bit Q-LoRA) can be imported here."""
    return importlib.util.find_spec("bitsandbytes") is not None


def lora_config(rank: int, alpha: int, dropout: float) -> Any:
    """The peft LoRA configuration for causal-LM fine-tuning."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGET_MODULES,
                      bias="none", task_type="CAUSAL_LM")


def context_window(model: Any) -> int | None:
    """The model's context window in tokens, where its config states one."""
    return getattr(model.config, "max_position_embeddings", None)
