"""The generate job (Bonito's method, ``bonito_ray.pipeline``) as the core sees it (``bonito_ray.job_kind``):
what its dataset card says; it keeps no staged work beside its example rows."""

from __future__ import annotations

from typing import Any

from bonito_ray import card
from bonito_ray.generators import DEFAULT_GENERATOR, GENERATORS
from bonito_ray.job_kind import JobKind


def intro(config: dict[str, Any]) -> str:
    return ("Each passage of a private corpus was crossed with task types and sent to " + _generator_words(config)
            + ", which wrote a task (an input with the passage in it, and an output) for each. Every prompt is "
            "accounted for: accepted ones are the dataset (one folder per task type), the others are kept under "
            "`_rejects/` with their reason. Load one task type with `datasets.load_dataset(OUTPUT, \"ynqa\")`, "
            "all of them with `datasets.load_dataset(OUTPUT)`.")


def provenance(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    config, versions = manifest["config"], manifest.get("versions", {})
    seed = "none" if config.get("seed") is None else config["seed"]
    runs = manifest.get("runs", [])
    return [
        ("generator model", f"`{card.model_name(config['model'])}`"),
        ("generator", f"`{_generator(config)}`"),
        ("engine", f"`{config['engine']}`"),
        ("task types", ", ".join(config["task_types"])),
        ("sampling", f"n={config['n']}, max_tokens={config['max_tokens']}, temperature={config['temperature']}, "
                     f"top_p={config['top_p']}, seed={seed}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "unknown"),
        ("runs", ", ".join(f"`{r['run_id']}`" + (" (resumed)" if r.get("resumed") else "") for r in runs) or "unknown"),
        ("input", f"`{config['input']}`, fingerprint `{manifest.get('input_fingerprint', 'unknown')}`"),
        ("command", f"`{manifest['command']}`" if manifest.get("command") else "unknown (not run from the CLI)"),
    ]


def _generator_words(config: dict[str, Any]) -> str:
    """The generator, as the card's introduction names it: ``the `instruct` generator (any instruction-tuned ...)``."""
    name = _generator(config)
    known = GENERATORS.get(name)
    return f"the `{name}` generator" + (f" ({known.summary})" if known else "")


def _generator(config: dict[str, Any]) -> str:
    # Manifests from before the instruct generator name none: Bonito's meta-template made them.
    return config.get("generator", DEFAULT_GENERATOR)


KIND = JobKind("generate", made=lambda config: True, intro=intro, provenance=provenance)
