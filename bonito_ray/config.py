"""The job configuration: one dataclass, filled from a YAML file and CLI flags, validated up front."""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bonito_ray.engines import ENGINE_NAMES, check_engine_settings
from bonito_ray.errors import UserError
from bonito_ray.storage import EndpointError, check_endpoint
from bonito_ray.tasks import resolve_task_types
from bonito_ray.validators import DEFAULT_LEVEL, LEVELS, validators_for

DEVICES = ("auto", "gpu", "cpu")  # where engine replicas run; auto: GPUs when the cluster has them
DEMO_MODEL = str(Path(__file__).parent / "demo_model")
DEFAULT_TASK_TYPES = ["ynqa", "exqa", "nli"]


_NUMBERS = {
    "n": int, "max_tokens": int, "seed": int, "num_replicas": int, "batch_size": int,
    "max_concurrent_batches": int, "temperature": float, "top_p": float,
    "cpus_per_replica": float, "gpus_per_replica": float, "passage_tokens": int, "passage_overlap": int,
    "min_passage_chars": int, "max_passage_chars": int, "rows_per_file": int, "max_error_rate": float,
    "card_samples": int, "max_concurrent_requests": int, "requests_per_second": float, "max_retries": int,
    "retry_backoff_s": float, "request_timeout_s": float,
}
_IDENTITY = {
    "input", "task_types", "engine", "model", "context_column", "n", "max_tokens", "temperature", "top_p", "seed",
    "engine_kwargs", "passage_overlap", "min_passage_chars", "max_passage_chars", "dedup", "incremental",
    "validate", "validators", "task_dedup", "served_model_name",
}
_OPTIONAL = {"seed", "passage_tokens", "max_passage_chars", "requests_per_second"}


class ConfigError(UserError, ValueError):
    """A configuration value is missing or invalid."""


@dataclass
class GenerateConfig:
    """Everything a generation job needs. Field names double as YAML keys and CLI flags."""

    input: str = ""
    output: str = ""
    task_types: list[str] = field(default_factory=lambda: list(DEFAULT_TASK_TYPES))
    engine: str = "hf"
    model: str = DEMO_MODEL
    context_column: str = "text"
    s3_endpoint: str | None = None
    # Passages: token-aware chunking (None: fit prompt + max_tokens in the model's window), cleaning.
    passage_tokens: int | None = None
    passage_overlap: int = 0
    min_passage_chars: int = 20
    max_passage_chars: int | None = None
    dedup: bool = True
    rows_per_file: int = 50_000
    incremental: bool = False  # process only input files new or changed since the last run (ledger)
    max_error_rate: float = 0.05  # fraction of requests the engine may refuse before the job fails
    # Quality: validators after parsing (bonito_ray.validators), the user's own, generated-task dedup.
    validate: str = DEFAULT_LEVEL
    validators: list[str] = field(default_factory=list)  # "module:function" names
    task_dedup: bool = True
    # Sampling: the Bonito authors' settings (Nayak et al., 2024, arXiv:2402.18334; the reference package's README).
    n: int = 1
    max_tokens: int = 256
    temperature: float = 0.5
    top_p: float = 0.95
    seed: int | None = None
    # Engine resources.
    num_replicas: int = 1
    batch_size: int = 16
    max_concurrent_batches: int = 8
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    accelerator_type: str | None = None
    device: str = "auto"
    placement_group_config: dict[str, Any] | None = None  # vllm: Ray placement group of one replica (TP/PP)
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    # The openai engine: an OpenAI-compatible completions server in the cluster (bonito_ray.engines.openai).
    endpoint: str | None = None  # its base URL, e.g. http://10.0.0.5:8000/v1
    served_model_name: str | None = None  # the name it serves the model under (None: `model`)
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key; the key is never config
    max_concurrent_requests: int = 16  # per replica
    requests_per_second: float | None = None  # job-wide, retries included (None: no limit)
    max_retries: int = 5  # per request, on HTTP 408, 429, 5xx, timeouts and connection errors
    retry_backoff_s: float = 1.0  # the first retry's wait, doubled at each retry
    request_timeout_s: float = 300.0
    allow_external_endpoint: bool = False  # opt in to an endpoint outside the cluster (passages go there)
    ray_address: str | None = None
    # The dataset card (bonito_ray.card) and the console: how the dataset is described, not what it holds.
    license: str = "other"  # the card's license field (the corpus's and the generator's terms decide it)
    card_samples: int = 0  # examples per task type shown in the card: 0 keeps passage text out of it
    verbose: bool = False  # Ray's own logs and progress bars on the console (bonito_ray.console)

    def __post_init__(self) -> None:
        if not self.input:
            raise ConfigError("input is required (--input PATH or 'input:' in the config file)")
        if not self.output:
            raise ConfigError("output is required (--output PATH or 'output:' in the config file)")
        self.task_types = resolve_task_types(self.task_types)
        if self.engine not in ENGINE_NAMES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINE_NAMES)}, got {self.engine!r}")
        if isinstance(self.engine_kwargs, str):
            self.engine_kwargs = _parse_json_object("engine_kwargs", self.engine_kwargs)
        if not isinstance(self.engine_kwargs, dict):
            raise ConfigError("engine_kwargs must be a mapping")
        if self.s3_endpoint:
            try:
                check_endpoint(self.s3_endpoint)
            except EndpointError as err:
                raise ConfigError(str(err)) from None
        if isinstance(self.placement_group_config, str):
            self.placement_group_config = _parse_json_object("placement_group_config", self.placement_group_config)
        if self.placement_group_config is not None and not isinstance(self.placement_group_config, dict):
            raise ConfigError("placement_group_config must be a mapping")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name, kind in _NUMBERS.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or kind(value) != value:
                what = "an integer" if kind is int else "a number"
                raise ConfigError(f"{name} must be {what}, got {value!r}")
            setattr(self, name, kind(value))
        _check(self.n >= 1, "n must be >= 1")
        _check(self.max_tokens >= 1, "max_tokens must be >= 1")
        _check(self.temperature >= 0, "temperature must be >= 0")
        _check(0 < self.top_p <= 1, "top_p must be in (0, 1]")
        _check(self.num_replicas >= 1, "num_replicas must be >= 1")
        _check(self.batch_size >= 1, "batch_size must be >= 1")
        _check(self.max_concurrent_batches >= 1, "max_concurrent_batches must be >= 1")
        _check(self.cpus_per_replica > 0, "cpus_per_replica must be > 0")
        _check(self.gpus_per_replica >= 0, "gpus_per_replica must be >= 0")
        _check(self.max_concurrent_requests >= 1, "max_concurrent_requests must be >= 1")
        _check(self.requests_per_second is None or self.requests_per_second > 0, "requests_per_second must be > 0")
        _check(self.max_retries >= 0, "max_retries must be >= 0")
        _check(self.retry_backoff_s >= 0, "retry_backoff_s must be >= 0")
        _check(self.request_timeout_s > 0, "request_timeout_s must be > 0")
        _check(isinstance(self.allow_external_endpoint, bool), "allow_external_endpoint must be true or false")
        _check(bool(self.context_column), "context_column must not be empty")
        _check(self.passage_tokens is None or self.passage_tokens >= 16, "passage_tokens must be >= 16")
        _check(self.passage_overlap >= 0, "passage_overlap must be >= 0")
        _check(self.passage_tokens is None or self.passage_overlap < self.passage_tokens // 2,
               "passage_overlap must be less than half of passage_tokens")
        _check(self.min_passage_chars >= 0, "min_passage_chars must be >= 0")
        _check(self.rows_per_file >= 1, "rows_per_file must be >= 1")
        _check(isinstance(self.dedup, bool), "dedup must be true or false")
        _check(isinstance(self.incremental, bool), "incremental must be true or false")
        _check(isinstance(self.verbose, bool), "verbose must be true or false")
        _check(0 <= self.max_error_rate <= 1, "max_error_rate must be in [0, 1]")
        _check(self.card_samples >= 0, "card_samples must be >= 0")
        _check(isinstance(self.license, str) and bool(self.license), "license must be a non-empty string")
        _check(isinstance(self.task_dedup, bool), "task_dedup must be true or false")
        _check(self.validate in LEVELS, f"validate must be one of {', '.join(LEVELS)}, got {self.validate!r}")
        if isinstance(self.validators, str):
            self.validators = [v.strip() for v in self.validators.split(",") if v.strip()]
        _check(isinstance(self.validators, list), "validators must be a list of module:function names")
        try:
            validators_for(self.validate, self.validators)  # a validator that cannot be loaded fails here
        except ValueError as err:
            raise ConfigError(str(err)) from None
        check_engine_settings(self)  # e.g. openai's endpoint: a base URL, inside the cluster (or opted out)

    @property
    def sampling_params(self) -> dict[str, Any]:
        """Sampling parameters shared by every request (the per-row seed is added later)."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}

    def identity(self) -> dict[str, Any]:
        """The settings that decide what a run generates (not how fast): a resumed run must match them.
        A setting added since a dataset was made is left out while unset, so that its identity holds."""
        return {k: v for k, v in self.to_dict().items() if k in _IDENTITY
                and not (k == "served_model_name" and v is None)}

    def command(self) -> str:
        """The ``bonito-ray generate`` command that runs this job (defaults left out; the Ray address and
        console settings too, which do not change what it makes)."""
        words = ["bonito-ray", "generate"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name in ("ray_address", "verbose") or value == default:
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name == "dedup":
                words.append("--no-dedup")
            elif isinstance(value, bool):
                words.append(flag)
            elif isinstance(value, dict):
                words += [flag, shlex.quote(json.dumps(value, sort_keys=True))]
            else:
                words += [flag, shlex.quote(",".join(value) if isinstance(value, list) else str(value))]
        return " ".join(words)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view of the configuration."""
        return dataclasses.asdict(self)


def field_names() -> list[str]:
    """The configuration keys."""
    return [f.name for f in dataclasses.fields(GenerateConfig)]


def load_config(path: str | None, overrides: dict[str, Any]) -> GenerateConfig:
    """Build a config from an optional YAML file, with non-None ``overrides`` (CLI flags) on top."""
    values: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise ConfigError(
            f"unknown configuration key(s) {', '.join(unknown)}; valid keys: {', '.join(field_names())}"
        )
    return GenerateConfig(**values)


def _parse_json_object(name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{name} must be a JSON object: {err}") from err
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
