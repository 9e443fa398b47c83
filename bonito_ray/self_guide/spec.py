"""The task spec: what SELF-GUIDE is asked to make data for, read from a YAML or JSON file.

    name: lease_sentiment             # optional; the file's stem by default
    instruction: Say whether the clause favours the tenant or the landlord.
    kind: classification              # or generation
    labels: [tenant, landlord]        # classification only: the label set
    demonstrations:                   # three or more
      - {input: "...", output: tenant}
    examples: 400                     # generated inputs to aim for (the paper: 40 rounds x 10)

Every problem is one :class:`~bonito_ray.config.ConfigError` line naming the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from bonito_ray.config import ConfigError
from bonito_ray.schema import stable_id

KINDS = ("classification", "generation")
MIN_DEMONSTRATIONS = 3  # the paper's few-shot setting: about three demonstrations per task
DEFAULT_EXAMPLES = 400  # the paper: 40 rounds of 10 inputs
_KEYS = {"name", "instruction", "kind", "labels", "demonstrations", "examples"}
MANIFEST_KEY = "spec_contents"  # where a SELF-GUIDE dataset's manifest holds its spec, under "config"


@dataclass(frozen=True)
class Demonstration:
    input: str
    output: str


@dataclass(frozen=True)
class TaskSpec:
    """One task: instruction, demonstrations, kind (and labels for classification), inputs to aim for."""

    name: str
    instruction: str
    kind: str
    demonstrations: tuple[Demonstration, ...]
    labels: tuple[str, ...] = ()
    examples: int = DEFAULT_EXAMPLES

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    def fingerprint(self) -> str:
        """A hash of everything the spec says: a resumed run must be making data for the same task."""
        return stable_id(self.name, self.instruction, self.kind, self.labels, self.examples,
                         *((d.input, d.output) for d in self.demonstrations))

    def to_dict(self) -> dict:
        return {"name": self.name, "instruction": self.instruction, "kind": self.kind, "labels": list(self.labels),
                "examples": self.examples,
                "demonstrations": [{"input": d.input, "output": d.output} for d in self.demonstrations]}


def spec_from_manifest(manifest: dict, where: str) -> TaskSpec | None:
    """The spec a dataset was made for, from its manifest (``where`` names it in errors); None: not a
    SELF-GUIDE dataset."""
    contents = (manifest.get("config") or {}).get(MANIFEST_KEY)
    return None if contents is None else parse_spec(contents, where)


def load_spec(path: str) -> TaskSpec:
    """Read and check the spec at ``path`` (YAML, of which JSON is a subset)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read task spec {path}: {err.strerror or err}") from err
    try:
        loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"task spec {path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                          f"{str(err).splitlines()[0]}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"task spec {path} must hold a mapping (instruction, kind, demonstrations, ...)")
    return parse_spec(loaded, path)


def parse_spec(values: dict, where: str = "task spec") -> TaskSpec:
    """A checked :class:`TaskSpec` from a mapping; ``where`` names it in errors."""
    def fail(message: str) -> None:
        raise ConfigError(f"{where}: {message}")

    unknown = sorted(set(map(str, values)) - _KEYS)
    if unknown:
        fail(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(_KEYS))}")
    instruction = values.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        fail("instruction must be a non-empty string")
    kind = values.get("kind")
    if kind not in KINDS:
        fail(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    labels = values.get("labels") or []
    if kind == "classification":
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x.strip() for x in labels):
            fail("a classification task needs labels: a list of two or more non-empty strings")
        labels = [x.strip() for x in labels]
        if len(set(labels)) != len(labels):
            fail(f"labels must be distinct, got {labels}")
    elif labels:
        fail("labels are for classification tasks only (kind: classification)")
    demos = values.get("demonstrations")
    if not isinstance(demos, list) or len(demos) < MIN_DEMONSTRATIONS:
        count = len(demos) if isinstance(demos, list) else 0
        fail(f"needs at least {MIN_DEMONSTRATIONS} demonstrations, got {count}")
    parsed = []
    for number, demo in enumerate(demos, 1):
        if not isinstance(demo, dict) or set(demo) != {"input", "output"}:
            fail(f"demonstration {number} must be a mapping with exactly the keys input and output")
        if not all(isinstance(demo[k], str) and demo[k].strip() for k in ("input", "output")):
            fail(f"demonstration {number}: input and output must be non-empty strings")
        if kind == "classification" and demo["output"].strip() not in labels:
            fail(f"demonstration {number}: output {demo['output']!r} is not one of the labels {labels}")
        parsed.append(Demonstration(demo["input"].strip(), demo["output"].strip()))
    examples = values.get("examples", DEFAULT_EXAMPLES)
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        fail(f"examples must be a positive integer, got {examples!r}")
    name = values.get("name") or Path(where).stem
    if not isinstance(name, str):
        fail(f"name must be a string, got {name!r}")
    return TaskSpec(name=name, instruction=instruction.strip(), kind=kind, demonstrations=tuple(parsed),
                    labels=tuple(labels), examples=examples)
