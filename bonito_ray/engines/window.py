"""The generation window: how many tokens one request (prompt plus generation) may hold.

It is settled at planning time from the model's own config, before any cluster work: passages are
sized to fit it, and a vLLM ``max_model_len`` larger than the model can take is refused in one
line instead of by an engine actor dying on the cluster after the job started. For the openai
engine it is the server's own ``max_model_len`` where the server reports one.
"""

from __future__ import annotations

from typing import Any

from bonito_ray.config import ConfigError, GenerateConfig

# vLLM's window when the user sets none: enough for Bonito's passages and outputs, and a KV cache
# that stays small; never more than the model's own window.
DEFAULT_MAX_MODEL_LEN = 4096


def context_window(model_config: Any, tokenizer: Any) -> int | None:
    """The model's context window in tokens, where its config or tokenizer states one."""
    window = getattr(model_config, "max_position_embeddings", None)
    if window is None and tokenizer is not None and tokenizer.model_max_length < 1_000_000:
        window = tokenizer.model_max_length
    return window


def generation_window(config: GenerateConfig, tokenizer: Any) -> int | None:
    """The window requests run in: the model's, for vLLM its ``max_model_len`` (checked against it), for an
    openai server the one it reports (else the model's)."""
    from transformers import AutoConfig

    if config.engine == "openai":
        from bonito_ray.engines.openai import served_window

        served = served_window(config)
        if served is not None:
            return served

    try:
        model_window = context_window(AutoConfig.from_pretrained(config.model), tokenizer)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load model {config.model!r}: {err}") from err
    if config.engine != "vllm":
        return model_window
    asked = config.engine_kwargs.get("max_model_len")
    if asked is None:
        return min(DEFAULT_MAX_MODEL_LEN, model_window) if model_window else DEFAULT_MAX_MODEL_LEN
    if isinstance(asked, bool) or not isinstance(asked, int) or asked < 1:
        raise ConfigError(f"engine_kwargs max_model_len must be a positive integer, got {asked!r}")
    if model_window is not None and asked > model_window:
        raise ConfigError(f"engine_kwargs max_model_len={asked} is larger than the window of model "
                          f"{config.model} ({model_window} tokens)")
    return asked
