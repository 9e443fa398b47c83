"""The SELF-GUIDE job's configuration: one dataclass, filled from a YAML file and CLI flags, checked up front.

Every setting the paper states defaults to its value (Zhao et al., 2024, arXiv:2407.12874); ``None``
for the temperature of input generation and for the two length filters means "as the paper does for
this kind of task". ``HELP`` gives each key its one-line meaning (the CLI's flags are made from it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bonito_ray.config import DEMO_MODEL, DEVICES, ENGINES, ConfigError, GenerateConfig
from bonito_ray.self_guide.spec import TaskSpec

# Input generation's temperature by task kind (the paper: 0.7 for classification, 0.9 for generation).
INPUT_TEMPERATURE = {"classification": 0.7, "generation": 0.9}

HELP: dict[str, str] = {
    "spec": "the task spec: YAML or JSON with instruction, kind, labels, demonstrations, examples",
    "output": "where the dataset is committed (same layout as `generate`)",
    "engine": f"generation engine: {', '.join(ENGINES)} (default: hf)",
    "model": "the student model: directory or hub id (default: the bundled CPU demo model)",
    "inputs_per_round": "inputs asked for per round (default: 10; rounds = examples / this, the paper's 40)",
    "rounds_per_pass": "rounds sent to the engine together, each engine pass one engine start; a pass's prompts "
                       "show the inputs kept before it (default: 1, the paper's strictly sequential rounds)",
    "min_weak_examples": "fewest earlier generated inputs shown per prompt (default: 1)",
    "max_weak_examples": "most earlier generated inputs shown per prompt (default: 10)",
    "input_temperature": "input generation temperature (default: 0.7 classification, 0.9 generation)",
    "input_top_k": "input generation top-k (default: 40)",
    "input_top_p": "input generation top-p (default: 1.0)",
    "input_max_tokens": "max tokens of a generated input (default: 256)",
    "input_length_filter": "drop inputs outside mean +/- length_std std of the demonstrations' input lengths "
                           "(default: on for classification)",
    "samples": "annotations sampled per input for the vote (default: 10)",
    "output_temperature": "annotation temperature (default: 0.2)",
    "output_top_k": "annotation top-k (default: 10)",
    "output_top_p": "annotation top-p (default: 1.0)",
    "output_max_tokens": "max tokens of an annotation (default: 128)",
    "output_length_filter": "drop annotations outside mean +/- length_std std of the demonstrations' output "
                            "lengths (default: on for generation)",
    "length_std": "standard deviations the length filters allow (default: 2)",
    "noise_filter": "drop texts with chat phrases or template words (default: on)",
    "consistency_threshold": "keep the majority annotation only if its share of the valid samples is at least "
                             "this (default: 0.3)",
    "balance_classes": "classification: cut every label down to the smallest one's count (default: on)",
    "seed": "seeds every request and every random choice: reruns reproduce (default: unseeded)",
    "num_replicas": "engine replicas, one model each (default: 1)",
    "batch_size": "rows per engine batch (default: 16)",
    "max_concurrent_batches": "vllm: batches in flight per replica (default: 8)",
    "engine_kwargs": "vllm engine arguments as JSON (see `generate --engine-kwargs`)",
    "device": f"vllm: where replicas run: {', '.join(DEVICES)} (default: auto)",
    "placement_group_config": "vllm: Ray placement group of one replica as JSON",
    "accelerator_type": "accelerator type to schedule replicas on, e.g. A100",
    "cpus_per_replica": "CPUs per replica (default: 1)",
    "gpus_per_replica": "hf: GPUs per replica (default: 0)",
    "s3_endpoint": "S3-compatible endpoint URL; default: AWS_ENDPOINT_URL",
    "ray_address": "Ray cluster: an address, `auto` or `local` (default: RAY_ADDRESS, else local)",
    "rows_per_file": "target rows per output Parquet file (default: 50000)",
    "license": "the dataset card's license field (default: other)",
    "verbose": "also show Ray's own logs and Ray Data's progress",
}
# Settings that do not change what a run makes: a resumed run may differ in these.
_NOT_IDENTITY = {"output", "num_replicas", "batch_size", "max_concurrent_batches", "accelerator_type",
                 "cpus_per_replica", "gpus_per_replica", "s3_endpoint", "ray_address", "rows_per_file", "license",
                 "verbose", "device", "placement_group_config"}


@dataclass
class SelfGuideConfig:
    """Everything a SELF-GUIDE job needs. Field names double as YAML keys and CLI flags."""

    spec: str = ""
    output: str = ""
    engine: str = "hf"
    model: str = DEMO_MODEL
    # Input generation (the paper: rounds of 10, 1-10 earlier inputs shown, top-k 40).
    inputs_per_round: int = 10
    rounds_per_pass: int = 1
    min_weak_examples: int = 1
    max_weak_examples: int = 10
    input_temperature: float | None = None
    input_top_k: int = 40
    input_top_p: float = 1.0
    input_max_tokens: int = 256
    input_length_filter: bool | None = None
    # Output annotation (the paper: 10 samples at temperature 0.2, top-k 10, self-consistency 0.3).
    samples: int = 10
    output_temperature: float = 0.2
    output_top_k: int = 10
    output_top_p: float = 1.0
    output_max_tokens: int = 128
    output_length_filter: bool | None = None
    length_std: float = 2.0
    noise_filter: bool = True
    consistency_threshold: float = 0.3
    balance_classes: bool = True
    seed: int | None = None
    # Engine resources, as `generate`'s.
    num_replicas: int = 1
    batch_size: int = 16
    max_concurrent_batches: int = 8
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    placement_group_config: dict[str, Any] | None = None
    accelerator_type: str | None = None
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    s3_endpoint: str | None = None
    ray_address: str | None = None
    rows_per_file: int = 50_000
    license: str = "other"
    verbose: bool = False

    def __post_init__(self) -> None:
        if not self.spec:
            raise ConfigError("spec is required (--spec PATH or 'spec:' in the config file)")
        if not self.output:
            raise ConfigError("output is required (--output PATH or 'output:' in the config file)")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.type if isinstance(f.type, str) else ""
            if value is None and "None" in kind:
                continue
            if kind.startswith("int") and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{f.name} must be an integer, got {value!r}")
            if kind.startswith("float"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ConfigError(f"{f.name} must be a number, got {value!r}")
                setattr(self, f.name, float(value))
            if kind.startswith("bool") and not isinstance(value, bool):
                raise ConfigError(f"{f.name} must be true or false, got {value!r}")
        _check(self.inputs_per_round >= 1, "inputs_per_round must be >= 1")
        _check(self.rounds_per_pass >= 1, "rounds_per_pass must be >= 1")
        _check(0 <= self.min_weak_examples <= self.max_weak_examples,
               "min_weak_examples must be >= 0 and <= max_weak_examples")
        for name in ("input", "output"):
            temperature = getattr(self, f"{name}_temperature")
            _check(temperature is None or temperature >= 0, f"{name}_temperature must be >= 0")
            _check(getattr(self, f"{name}_top_k") >= 0, f"{name}_top_k must be >= 0 (0: no top-k cut)")
            _check(0 < getattr(self, f"{name}_top_p") <= 1, f"{name}_top_p must be in (0, 1]")
            _check(getattr(self, f"{name}_max_tokens") >= 1, f"{name}_max_tokens must be >= 1")
        _check(self.samples >= 1, "samples must be >= 1")
        _check(self.length_std > 0, "length_std must be > 0")
        _check(0 < self.consistency_threshold <= 1, "consistency_threshold must be in (0, 1]")
        # The engine settings are checked by the engine's own configuration, once, here.
        checked = self.engine_config()
        self.engine_kwargs, self.placement_group_config = checked.engine_kwargs, checked.placement_group_config

    def rounds(self, spec: TaskSpec) -> int:
        """Rounds of input generation: enough for the spec's ``examples`` inputs."""
        return math.ceil(spec.examples / self.inputs_per_round)

    def input_sampling(self, spec: TaskSpec) -> dict[str, Any]:
        temperature = self.input_temperature
        if temperature is None:
            temperature = INPUT_TEMPERATURE[spec.kind]
        return {"max_tokens": self.input_max_tokens, "temperature": temperature, "top_p": self.input_top_p,
                "top_k": self.input_top_k or None}

    def output_sampling(self) -> dict[str, Any]:
        return {"max_tokens": self.output_max_tokens, "temperature": self.output_temperature,
                "top_p": self.output_top_p, "top_k": self.output_top_k or None}

    def filters_input_length(self, spec: TaskSpec) -> bool:
        return spec.is_classification if self.input_length_filter is None else self.input_length_filter

    def filters_output_length(self, spec: TaskSpec) -> bool:
        return (not spec.is_classification) if self.output_length_filter is None else self.output_length_filter

    def engine_config(self) -> GenerateConfig:
        """The engine stage's configuration (``bonito_ray.engines.build_engine_stage`` takes a GenerateConfig)."""
        try:
            return GenerateConfig(
                input=self.spec, output=self.output, engine=self.engine, model=self.model,
                max_tokens=max(self.input_max_tokens, self.output_max_tokens), num_replicas=self.num_replicas,
                batch_size=self.batch_size, max_concurrent_batches=self.max_concurrent_batches,
                engine_kwargs=self.engine_kwargs, device=self.device,
                placement_group_config=self.placement_group_config, accelerator_type=self.accelerator_type,
                cpus_per_replica=self.cpus_per_replica, gpus_per_replica=self.gpus_per_replica,
                s3_endpoint=self.s3_endpoint, verbose=self.verbose)
        except TypeError as err:
            raise ConfigError(str(err)) from err

    def identity(self, spec: TaskSpec) -> dict[str, Any]:
        """What decides what a run makes: a resumed run must match it (the output's commit protocol keys)."""
        values = {k: v for k, v in self.to_dict().items() if k not in _NOT_IDENTITY}
        fingerprint = spec.fingerprint()
        return {**values, "generator": "self_guide", "spec": fingerprint, "input_fingerprint": fingerprint,
                "incremental": False}

    def command(self) -> str:
        """The ``bonito-ray self-guide`` command that runs this job (defaults, the Ray address and the console
        setting left out: they do not change what it makes)."""
        words = ["bonito-ray", "self-guide"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name in ("ray_address", "verbose") or value == default:
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                words.append(flag if value else "--no-" + f.name.replace("_", "-"))
            else:
                shown = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
                words += [flag, shlex.quote(shown)]
        return " ".join(words)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SelfGuideConfig)]


def load_config(path: str | None, overrides: dict[str, Any]) -> SelfGuideConfig:
    """A config from an optional YAML file, with non-None ``overrides`` (CLI flags) on top."""
    values: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        values.update({str(k).replace("-", "_"): v for k, v in (loaded or {}).items()})
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise ConfigError(f"unknown configuration key(s) {', '.join(unknown)}; valid keys: {', '.join(field_names())}")
    return SelfGuideConfig(**values)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
