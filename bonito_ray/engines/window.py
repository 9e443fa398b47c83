"""The generation window: how many tokens one request (prompt plus generation) may hold.

It is settled at planning time from the model's own config, before any cluster work: passages are
sized to fit it, and a vLLM ``max_model_len`` larger than the model can take is refused in one
line instead of by an engine actor dying on the cluster after the job started. Each engine says
which function gives its window (``bonito_ray.engines.ENGINES``); the openai engine's is in its module.
"""

from __future__ import annotations

from typing import Any

from bonito_ray.config import ConfigError, GenerateConfig
from bonito_ray.hf_models import context_window

# vLLM's window when the user sets none: enough for Bonito's passages and outputs, and a KV cache
# that stays small; never more than the model's own window.
DEFAULT_MAX_MODEL_LEN = 4096


def model_window(config: GenerateConfig, tokenizer: Any) -> int | None:
    """The model's own window (its config, else its tokenizer): what hf and echo requests run in."""
    from transformers import AutoConfig

    try:
        return context_window(AutoConfig.from_pretrained(config.model), tokenizer)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load model {config.model!r}: {err}") from err


def vllm_window(config: GenerateConfig, tokenizer: Any) -> int | None:
    """vLLM's ``max_model_len``: the user's (checked against the model's window), else the model's up to
    DEFAULT_MAX_MODEL_LEN."""
    window = model_window(config, tokenizer)
    asked = config.engine_kwargs.get("max_model_len")
    if asked is None:
        return min(DEFAULT_MAX_MODEL_LEN, window) if window else DEFAULT_MAX_MODEL_LEN
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        raise ConfigError(f"engine_kwargs max_model_len must be a positive integer, got {asked!r}")
    if window is not None and asked > window:
        raise ConfigError(f"engine_kwargs max_model_len={asked} is larger than the window of model "
                          f"{config.model} ({window} tokens)")
    return asked
