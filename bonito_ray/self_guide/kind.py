"""The SELF-GUIDE job (``bonito_ray.self_guide.pipeline``) as the core sees it (``bonito_ray.job_kind``): the
staged rounds a run keeps as its work, and what its dataset card says."""

from __future__ import annotations

from typing import Any

from bonito_ray import card
from bonito_ray.job_kind import JobKind
from bonito_ray.schema import SELF_GUIDE_DIR, SELF_GUIDE_REJECTS_DIRS
from bonito_ray.self_guide.spec import MANIFEST_KEY as SPEC_KEY

INTRO = (
    "SELF-GUIDE (Zhao et al., 2024, arXiv:2407.12874): the model wrote new inputs for one task from its "
    "instruction and demonstrations, answered each several times, and a self-consistency vote kept one answer. "
    "Accepted examples are in `self_guide/`; every generated input, annotation sample and input the vote did not "
    "keep is under `_rejects/stage=self_guide_*` with its reason.")


def made(config: dict[str, Any]) -> bool:
    return SPEC_KEY in config  # bonito_ray.self_guide.pipeline records the task spec there


def provenance(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    config, versions = manifest["config"], manifest.get("versions", {})
    seed = "none" if config.get("seed") is None else config["seed"]
    runs = manifest.get("runs", [])
    spec = config[SPEC_KEY]
    return [
        ("student model", f"`{card.model_name(config['model'])}`"),
        ("engine", f"`{config['engine']}`"),
        ("task", f"`{spec['name']}` ({spec['kind']}), {len(spec['demonstrations'])} demonstrations, "
                 f"{spec['examples']} inputs aimed for"),
        ("input generation", f"{config['inputs_per_round']} per round, temperature "
                             f"{config['input_temperature'] or 'by kind'}, top_k={config['input_top_k']}"),
        ("annotation", f"{config['samples']} samples, temperature {config['output_temperature']}, "
                       f"top_k={config['output_top_k']}, threshold {config['consistency_threshold']}, "
                       f"seed={seed}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "unknown"),
        ("runs", ", ".join(f"`{r['run_id']}`" + (" (resumed)" if r.get("resumed") else "") for r in runs)
         or "unknown"),
        ("task spec", f"`{config['spec']}`, fingerprint `{manifest.get('input_fingerprint', 'unknown')}`"),
    ]


# The kept generated inputs (one file per round) and their rejects: what a resumed run skips.
KIND = JobKind("self-guide", made=made, intro=lambda config: INTRO, provenance=provenance,
               staged_work=(SELF_GUIDE_DIR, *SELF_GUIDE_REJECTS_DIRS))
