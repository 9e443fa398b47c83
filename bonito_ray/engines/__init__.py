"""Generation engines behind one row contract.

In: rows with ``prompt`` (str) and ``sampling_params`` (``max_tokens``, ``temperature``,
``top_p``, ``seed``, and optionally ``top_k``: null, absent or 0 means no top-k cut); every other column is carried through untouched.
Out: the same rows plus ``generated_text``, ``num_input_tokens``, ``num_generated_tokens``,
``finish_reason`` (``stop``: ended by end of sequence; ``length``: cut at ``max_tokens`` or the
window, vLLM's names) and ``engine_error`` (null unless the engine rejected that row, e.g. a
prompt longer than the model's window). One request row gives one generation; ``n`` samples are ``n`` request rows.

``ENGINES`` is the one registry: each engine names its stage builder, how it learns the window a
request runs in (planning sizes passages from it) and the check of its own settings, each as
``module:function`` imported only when used (vLLM and torch are heavy). Nothing outside this
package asks which engine a job uses.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the configuration imports the registry: types only here
    from ray.data import Dataset

    from bonito_ray.config import GenerateConfig

EngineStage = Callable[["Dataset"], "Dataset"]
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


@dataclass(frozen=True)
class Engine:
    """One engine. ``stage``: (config, progress) -> EngineStage; ``window``: (config, tokenizer or None) -> the
    window in tokens (None: unknown); ``check``: (config) -> None, raising ConfigError, run on every
    configuration (an engine's own settings given to another engine are refused there)."""

    name: str
    summary: str  # for --help
    stage: str
    window: str = "bonito_ray.engines.window:model_window"
    check: str | None = None
    needs_model: bool = True  # False: runs without loading a model when the passage length is given
    # (keywords, bonito-ray's own options) -> None: checks the keyword arguments a Python caller passes
    # for the engine itself (vLLM's engine arguments); None: the engine takes none
    keywords: str | None = None
    # (config) -> the GPUs one replica holds (the planner's GPU-hours, bonito_ray.plan); None: none of the job's
    # (the openai engine's server holds its own)
    replica_gpus: str | None = None
    published_figures: bool = False  # bonito_ray.plan.PUBLISHED_THROUGHPUT's figures (vLLM's) are of this engine
    # (config, progress) -> a context manager of a stage whose replicas start once and are kept for every
    # execution until it closes (``open_engine_stage``); None: each execution starts the stage's replicas
    kept_stage: str | None = None


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("hf", "transformers, CPU or GPU", "bonito_ray.engines.hf:build_hf_stage",
           replica_gpus="bonito_ray.engines.hf:replica_gpus"),
    Engine("vllm", "GPUs, or CPUs with vLLM's CPU build", "bonito_ray.engines.vllm:build_vllm_stage",
           window="bonito_ray.engines.window:vllm_window", keywords="bonito_ray.engines.vllm:check_engine_args",
           replica_gpus="bonito_ray.engines.vllm:replica_gpus", published_figures=True,
           kept_stage="bonito_ray.engines.vllm_pool:open_vllm_stage"),
    Engine("openai", "an OpenAI-compatible completions server in the cluster: --endpoint",
           "bonito_ray.engines.openai:build_openai_stage", window="bonito_ray.engines.openai:openai_window",
           check="bonito_ray.engines.openai:check_openai_config"),
    Engine("echo", "test/benchmark stand-in, no model", "bonito_ray.engines.echo:build_echo_stage", needs_model=False),
    Engine("latency", "benchmark stand-in: echo after a set latency, asleep, 0 CPUs per replica",
           "bonito_ray.engines.latency:build_latency_stage", check="bonito_ray.engines.latency:check_latency_config",
           needs_model=False),
)}
ENGINE_NAMES = tuple(ENGINES)
ENGINE_HELP = ", ".join(f"{e.name} ({e.summary})" for e in ENGINES.values())


def _load(target: str) -> Any:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def build_engine_stage(config: GenerateConfig, progress: Any = None) -> EngineStage:
    """The engine stage for ``config.engine``: a function from a request dataset to generations, whose replicas
    tell ``progress`` (a ``bonito_ray.progress.ProgressCounter``; None: nobody) that they started and each batch
    they return (``bonito_ray.progress.reporting``)."""
    return _load(ENGINES[config.engine].stage)(config, progress)


@contextlib.contextmanager
def open_engine_stage(config: GenerateConfig, progress: Any = None) -> Iterator[EngineStage]:
    """The engine stage for a job that runs it many times (SELF-GUIDE's passes): where ``config.engine`` can,
    its replicas start once and end with the ``with`` block (also on an error); else ``build_engine_stage``'s."""
    kept = ENGINES[config.engine].kept_stage
    if kept is None:
        yield build_engine_stage(config, progress)
        return
    with _load(kept)(config, progress) as stage:
        yield stage


def keeps_replicas(engine: str) -> bool:
    """Whether ``open_engine_stage`` keeps ``engine``'s replicas between executions."""
    return ENGINES[engine].kept_stage is not None


def generation_window(config: GenerateConfig, tokenizer: Any) -> int | None:
    """The window requests of ``config``'s engine run in (checked against the model where it can be)."""
    return _load(ENGINES[config.engine].window)(config, tokenizer)


def check_engine_keywords(engine: str, keywords: dict[str, Any], ours: str) -> None:
    """Refuse keyword arguments for ``engine`` (the Python API's ``Bonito(model, engine, **keywords)``) that
    it does not take; ``ours`` names bonito-ray's own options, for the message."""
    from bonito_ray.config import ConfigError

    takes = ENGINES[engine].keywords if engine in ENGINES else None
    if takes is None:
        raise ConfigError(f"unknown option(s) {', '.join(sorted(keywords))} for engine {engine!r}; valid: {ours}")
    _load(takes)(keywords, ours)


def check_engine_settings(config: GenerateConfig) -> None:
    """Every engine's check of its own settings (a ConfigError names the problem)."""
    for engine in ENGINES.values():
        if engine.check:
            _load(engine.check)(config)


def replica_gpus(config: GenerateConfig) -> float:
    """The GPUs one replica of ``config``'s engine holds (0: none of the job's)."""
    target = ENGINES[config.engine].replica_gpus
    return float(_load(target)(config)) if target else 0.0
