"""Sampling parameters given as the reference Bonito package takes them, read into job settings.

``generate_tasks`` takes a plain mapping or a ``vllm.SamplingParams``. Five settings carry over
(``max_tokens``, ``temperature``, ``top_p``, ``n``, ``seed``); anything else set on a
``SamplingParams`` (a penalty, ``top_k``, stop strings, ...) is refused in one line instead of
being silently ignored. vLLM is never imported here: a ``SamplingParams`` can only exist once its
caller has imported vLLM, so it is recognised through ``sys.modules``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from bonito_ray.config import ConfigError

SAMPLING_KEYS = ("max_tokens", "temperature", "top_p", "n", "seed")
# The Bonito authors' settings: what a mapping that leaves a key out gets (GenerateConfig's defaults).
DEFAULTS: dict[str, Any] = {"max_tokens": 256, "temperature": 0.5, "top_p": 0.95, "n": 1, "seed": None}
# SamplingParams fields that change what vLLM generates and that bonito-ray's engines do not apply.
# Each is compared with a default SamplingParams; fields not in a given vLLM version are skipped.
UNSUPPORTED_FIELDS = (
    "presence_penalty", "frequency_penalty", "repetition_penalty", "top_k", "min_p", "stop", "stop_token_ids",
    "bad_words", "ignore_eos", "min_tokens", "include_stop_str_in_output", "skip_special_tokens",
    "spaces_between_special_tokens", "logit_bias", "allowed_token_ids", "structured_outputs", "logits_processors",
    "truncate_prompt_tokens", "best_of",
)
_MISSING = object()


def sampling_settings(params: Mapping[str, Any] | Any | None) -> dict[str, Any]:
    """The job settings (``SAMPLING_KEYS``) that ``params`` asks for.

    ``params``: None (the defaults), a mapping with some of ``SAMPLING_KEYS`` (the others take
    ``DEFAULTS``), or a ``vllm.SamplingParams`` (all five read from it, vLLM's defaults included,
    e.g. its ``max_tokens`` of 16). Raises ``ConfigError`` for anything else, for an unknown key and
    for a ``SamplingParams`` field that bonito-ray would not apply.
    """
    if params is None:
        return dict(DEFAULTS)
    if isinstance(params, Mapping):
        unknown = sorted(set(params) - set(SAMPLING_KEYS), key=str)  # keys of any type: a mapping is the caller's
        if unknown:
            raise ConfigError(f"sampling_params: unknown key(s) {', '.join(map(str, unknown))}; "
                              f"bonito-ray reads {', '.join(SAMPLING_KEYS)}")
        return {**DEFAULTS, **params}
    if _is_vllm_sampling_params(params):
        return _from_vllm(params)
    raise ConfigError(f"sampling_params must be a dict or a vllm.SamplingParams, got {type(params).__name__}")


def _is_vllm_sampling_params(params: Any) -> bool:
    module = sys.modules.get("vllm.sampling_params")
    return module is not None and isinstance(params, module.SamplingParams)


def _from_vllm(params: Any) -> dict[str, Any]:
    default = type(params)()
    unsupported = [name for name in UNSUPPORTED_FIELDS
                   if getattr(params, name, _MISSING) != getattr(default, name, _MISSING)]
    if unsupported:
        raise ConfigError(f"sampling_params sets {', '.join(unsupported)}, which bonito-ray does not apply; "
                          f"it reads {', '.join(SAMPLING_KEYS)}")
    settings = {key: getattr(params, key) for key in SAMPLING_KEYS}
    if settings["max_tokens"] is None:  # vLLM's "up to the window": bonito-ray sizes passages by max_tokens
        raise ConfigError("sampling_params.max_tokens must be set (bonito-ray sizes passages to leave room for it)")
    return settings
