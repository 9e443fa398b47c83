"""Loading target models (full precision or 4-bit) and the LoRA configuration (tokenizers, dtypes and
windows: ``bonito_ray.hf_models``, shared with the engines)."""

from __future__ import annotations

import importlib.util
from typing import Any

from bonito_ray.hf_models import compute_dtype

# LoRA on every linear layer of the transformer blocks, as Q-LoRA does (the LM head stays frozen).
LORA_TARGET_MODULES = "all-linear"


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
