"""bonito-ray: Bonito conditional task generation at cluster scale on Ray Data.

From Python::

    from bonito_ray import Bonito                 # the reference package's API (bonito_ray.bonito)
    from bonito_ray import GenerateConfig, generate
    summary = generate(GenerateConfig(input="corpus/", output="out/"))   # the whole job, as the CLI

The names below are imported on first use, so that ``import bonito_ray`` (the CLI, every Ray
worker) does not pull in the pipeline, ``datasets`` or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Bonito": "bonito_ray.bonito",
    "GeneratedTasks": "bonito_ray.bonito",
    "generate": "bonito_ray.job",
    "GenerateConfig": "bonito_ray.config",
    "ConfigError": "bonito_ray.config",
    "RunSummary": "bonito_ray.report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bonito_ray' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
