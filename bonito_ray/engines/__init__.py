"""Generation engines behind one row contract.

In: rows with ``prompt`` (str) and ``sampling_params`` (``max_tokens``, ``temperature``,
``top_p``, ``seed``, and optionally ``top_k``: null, absent or 0 means no top-k cut); every other column is carried through untouched.
Out: the same rows plus ``generated_text``, ``num_input_tokens``, ``num_generated_tokens``,
``finish_reason`` (``stop``: ended by end of sequence; ``length``: cut at ``max_tokens`` or the
window, vLLM's names) and ``engine_error`` (null unless the engine rejected that row, e.g. a
prompt longer than the model's window). One request row gives one generation; ``n`` samples are ``n`` request rows.
"""

from __future__ import annotations

from collections.abc import Callable

from ray.data import Dataset

from bonito_ray.config import GenerateConfig

EngineStage = Callable[[Dataset], Dataset]
OUTPUT_COLUMNS = ("generated_text", "num_input_tokens", "num_generated_tokens", "finish_reason", "engine_error")
STOP, LENGTH = "stop", "length"


def finish_reason(tokens: list[int], num_input_tokens: int, max_tokens: int, window: int | None,
                  eos_ids: frozenset[int]) -> str:
    """Why a generation ended, decided as vLLM's scheduler does (``check_stop``): an end-of-sequence
    token last is ``stop``; else reaching ``max_tokens`` or the window is ``length``."""
    if tokens and tokens[-1] in eos_ids:
        return STOP
    if len(tokens) >= max_tokens or (window is not None and num_input_tokens + len(tokens) >= window):
        return LENGTH
    return STOP


def build_engine_stage(config: GenerateConfig) -> EngineStage:
    """The engine stage for ``config.engine``: a function from a request dataset to generations."""
    if config.engine == "hf":
        from bonito_ray.engines.hf import build_hf_stage

        return build_hf_stage(config)
    if config.engine == "vllm":
        from bonito_ray.engines.vllm import build_vllm_stage

        return build_vllm_stage(config)
    from bonito_ray.engines.echo import build_echo_stage

    return build_echo_stage(config)
