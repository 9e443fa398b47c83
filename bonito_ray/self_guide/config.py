"""The SELF-GUIDE job's configuration: one dataclass, filled from a YAML file and CLI flags, checked up front.

Every setting the paper states defaults to its value (Zhao et al., 2024, arXiv:2407.12874); ``None``
for the temperature of input generation and for the two length filters means "as the paper does for
this kind of task". Each field's help is beside it (``bonito_ray.config.option``): the CLI's flags are made from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from bonito_ray.config import (CLUSTER, INPUT, PROGRESS, QUALITY, REQUIRED, SELF_GUIDE_ANNOTATION, SELF_GUIDE_INPUTS,
                               TASKS, ConfigError, DatasetOutput, EngineChoice, EngineResources, GenerateConfig,
                               OpenAISettings, above, at_least, check_settings, command_line, in_unit_interval, option)
from bonito_ray.config import load_config as load_job_config
from bonito_ray.self_guide.spec import TaskSpec

# Input generation's temperature by task kind (the paper: 0.7 for classification, 0.9 for generation).
INPUT_TEMPERATURE = {"classification": 0.7, "generation": 0.9}

# Settings that do not change what a run makes: a resumed run may differ in these.
_NOT_IDENTITY = {f.name for f in dataclasses.fields(DatasetOutput)} | {"ray_address", "verbose"}
# The engine's settings: what of them is identity is said apart (engine_kwargs; openai_identity()).
_ENGINE = {f.name for f in dataclasses.fields(EngineResources) + dataclasses.fields(OpenAISettings)}


@dataclass
class SelfGuideConfig(DatasetOutput, EngineChoice, EngineResources, OpenAISettings):
    """Everything a SELF-GUIDE job needs. Field names double as YAML keys and CLI flags; the output, the engine and
    the student model, the engine's resources and the openai engine's settings are ``generate``'s
    (``DatasetOutput``, ``EngineChoice``, ``EngineResources``, ``OpenAISettings``), with their checks."""

    spec: str = option("", check=REQUIRED, group=INPUT, default_text=None,
                       help="the task spec: YAML or JSON with instruction, kind, labels, demonstrations, examples")
    # Input generation (the paper: rounds of 10, 1-10 earlier inputs shown, top-k 40).
    inputs_per_round: int = option(10, check=at_least(1), group=SELF_GUIDE_INPUTS,
                                   help="inputs asked for per round (rounds: examples / this, the paper's 40)")
    rounds_per_pass: int = option(1, check=at_least(1), group=SELF_GUIDE_INPUTS,
                                  help="rounds sent to the engine together in one pass (on hf each pass loads the "
                                       "model again; vllm starts once per job); a pass's prompts show the inputs "
                                       "kept before it (1: the paper's strictly sequential rounds)")
    min_weak_examples: int = option(1, group=SELF_GUIDE_INPUTS, help="fewest earlier generated inputs shown per prompt")
    max_weak_examples: int = option(10, group=SELF_GUIDE_INPUTS, help="most earlier generated inputs shown per prompt")
    input_temperature: float | None = option(None, check=at_least(0), group=SELF_GUIDE_INPUTS,
                                             default_text="0.7 classification, 0.9 generation",
                                             help="input generation temperature")
    input_top_k: int = option(40, check=at_least(0, "0: no top-k cut"), group=SELF_GUIDE_INPUTS,
                              help="input generation top-k")
    input_top_p: float = option(1.0, check=in_unit_interval(zero=False), group=SELF_GUIDE_INPUTS,
                                help="input generation top-p")
    input_max_tokens: int = option(256, check=at_least(1), group=SELF_GUIDE_INPUTS,
                                   help="max tokens of a generated input")
    input_length_filter: bool | None = option(None, default_text="on for classification", switch=True, group=QUALITY,
                                              help="drop inputs outside mean +/- length_std std of the demonstrations' "
                                                   "input lengths")
    near_duplicate_filter: bool = option(True, switch=True, group=QUALITY,
                                         help="drop inputs too close to a demonstration's input (near_demonstration) "
                                              "or to an input kept before them (near_duplicate_input); not in the "
                                              "paper")
    near_duplicate_threshold: float = option(0.5, check=in_unit_interval(zero=False), group=QUALITY,
                                             help="the Jaccard similarity of two inputs' word sets from which the "
                                                  "near-duplicate filter drops the later one, in (0, 1]")
    # Output annotation (the paper: 10 samples at temperature 0.2, top-k 10, self-consistency 0.3).
    samples: int = option(10, check=at_least(1), group=SELF_GUIDE_ANNOTATION,
                          help="annotations sampled per input for the vote")
    output_temperature: float = option(0.2, check=at_least(0), group=SELF_GUIDE_ANNOTATION,
                                       help="annotation temperature")
    output_top_k: int = option(10, check=at_least(0, "0: no top-k cut"), group=SELF_GUIDE_ANNOTATION,
                               help="annotation top-k")
    output_top_p: float = option(1.0, check=in_unit_interval(zero=False), group=SELF_GUIDE_ANNOTATION,
                                 help="annotation top-p")
    output_max_tokens: int = option(128, check=at_least(1), group=SELF_GUIDE_ANNOTATION,
                                    help="max tokens of an annotation")
    output_length_filter: bool | None = option(None, default_text="on for generation", switch=True, group=QUALITY,
                                               help="drop annotations outside mean +/- length_std std of the "
                                                    "demonstrations' output lengths")
    length_std: float = option(2.0, check=above(0), group=QUALITY, help="standard deviations the length filters allow")
    noise_filter: bool = option(True, switch=True, group=QUALITY, help="drop texts with chat phrases or template words")
    consistency_threshold: float = option(0.3, check=in_unit_interval(zero=False), group=SELF_GUIDE_ANNOTATION,
                                          help="keep the majority annotation only if its share of the valid samples "
                                               "is at least this")
    balance_classes: bool = option(True, switch=True, group=QUALITY,
                                   help="classification: cut every label down to the smallest one's count")
    seed: int | None = option(None, default_text="unseeded", group=TASKS,
                              help="seeds every request and every random choice: reruns reproduce")
    ray_address: str | None = option(None, default_text="RAY_ADDRESS, else local", group=CLUSTER,
                                     help="Ray cluster: an address, `auto` or `local`")
    verbose: bool = option(False, switch=True, group=PROGRESS, help="also show Ray's own logs and Ray Data's progress")

    def __post_init__(self) -> None:
        check_settings(self)
        # The engine settings are checked together by the engine's own configuration, once, here: built again at
        # each use, it would check again (an openai endpoint's name looked up, its warning repeated).
        self._engine_config = self._build_engine_config()
        self.engine_kwargs = self._engine_config.engine_kwargs
        self.placement_group_config = self._engine_config.placement_group_config

    def check_together(self) -> None:
        """The earlier inputs shown: from at least 0 to at most max_weak_examples."""
        if not 0 <= self.min_weak_examples <= self.max_weak_examples:
            raise ConfigError("min_weak_examples must be >= 0 and <= max_weak_examples")

    def rounds(self, spec: TaskSpec) -> int:
        """Rounds of input generation: enough for the spec's ``examples`` inputs."""
        return math.ceil(spec.examples / self.inputs_per_round)

    def engine_passes(self, spec: TaskSpec) -> int:
        """The runs through the engine stage: one per ``rounds_per_pass`` rounds, one for annotation. Each is its
        own Ray Data execution: on hf each loads the model again; on vllm the engine starts once per job
        (docs/self_guide.md, "Engine starts")."""
        return math.ceil(self.rounds(spec) / self.rounds_per_pass) + 1

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
        """The engine stage's configuration (``bonito_ray.engines.build_engine_stage`` takes a GenerateConfig),
        built and checked when this configuration was."""
        return self._engine_config

    def _build_engine_config(self) -> GenerateConfig:
        try:
            return GenerateConfig(
                input=self.spec, output=self.output, engine=self.engine, model=self.model,
                max_tokens=max(self.input_max_tokens, self.output_max_tokens), s3_endpoint=self.s3_endpoint,
                verbose=self.verbose, **self.engine_resources(), **self.openai_settings())
        except TypeError as err:
            raise ConfigError(str(err)) from err

    def identity(self, spec: TaskSpec) -> dict[str, Any]:
        """What decides what a run makes: a resumed run must match it (the output's commit protocol keys)."""
        values = {k: v for k, v in self.to_dict().items() if k not in _NOT_IDENTITY and k not in _ENGINE}
        values |= {"engine_kwargs": self.engine_kwargs} | self.openai_identity()
        fingerprint = spec.fingerprint()
        return {**values, "generator": "self_guide", "spec": fingerprint, "input_fingerprint": fingerprint,
                "incremental": False}

    def command(self) -> str:
        """The ``bonito-ray self-guide`` command that runs this job (``bonito_ray.config.command_line``)."""
        return command_line(self, "self-guide")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | None, overrides: dict[str, Any]) -> SelfGuideConfig:
    """A config from an optional YAML file, with non-None ``overrides`` (CLI flags) on top."""
    return load_job_config(path, overrides, SelfGuideConfig)
