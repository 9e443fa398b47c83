"""The ``vllm`` engine: Ray Data LLM's vLLM processor, one engine replica per actor.

Bonito is a base model with plain-text markers, so the chat-template stage is off and the
prompt goes in as ``prompt``. Rows the engine rejects (a prompt longer than ``max_model_len``,
say) come back with ``engine_error`` set instead of failing the job.
"""

from __future__ import annotations

from typing import Any

from bonito_ray.cluster import PRIVACY_ENV
from bonito_ray.config import GenerateConfig
from bonito_ray.engines import OUTPUT_COLUMNS, EngineStage
from bonito_ray.stages import REQUEST_SCHEMA

# Sane engine defaults for Bonito-sized models; any key in `engine_kwargs` overrides them.
DEFAULT_ENGINE_KWARGS: dict[str, Any] = {"max_model_len": 4096, "enable_prefix_caching": True}


def build_vllm_processor(config: GenerateConfig):
    """The ``ray.data.llm`` processor for ``config`` (building it does not import vLLM)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    processor_config = vLLMEngineProcessorConfig(
        model_source=config.model,
        engine_kwargs={**DEFAULT_ENGINE_KWARGS, **config.engine_kwargs},
        batch_size=config.batch_size,
        concurrency=(config.num_replicas, config.num_replicas),
        max_concurrent_batches=config.max_concurrent_batches,
        accelerator_type=config.accelerator_type,
        runtime_env={"env_vars": PRIVACY_ENV},
        should_continue_on_error=True,
        chat_template_stage=False,
        tokenize_stage=True,
        detokenize_stage=True,
    )
    # Identity postprocess: rows the engine rejects bypass postprocess with every column, so
    # success rows keep every column too and `_to_contract` picks the contract's columns after.
    return build_processor(processor_config, preprocess=_to_vllm_request, postprocess=lambda row: row)


def build_vllm_stage(config: GenerateConfig) -> EngineStage:
    """An engine stage running ``config.model`` on vLLM through ``ray.data.llm``."""
    processor = build_vllm_processor(config)

    def stage(requests):
        return processor(requests).map(_to_contract, fn_kwargs={"carried": REQUEST_SCHEMA.names})

    return stage


def _to_vllm_request(row: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in row["sampling_params"].items() if v is not None}
    return {"prompt": row["prompt"], "sampling_params": params}


def _to_contract(row: dict[str, Any], carried: list[str]) -> dict[str, Any]:
    out = {name: row.get(name) for name in carried}
    out.update({name: row.get(name) for name in OUTPUT_COLUMNS[:-1]})
    out["engine_error"] = row.get("__inference_error__") or None
    return out
