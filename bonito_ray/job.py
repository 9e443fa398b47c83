"""The generation job from Python: ``bonito_ray.generate(config)``, what ``bonito-ray generate`` runs.

It plans the job first (bad input, output or model fails here, in one line, before any cluster
work), connects to Ray the way the CLI does (``config.ray_address``, else ``RAY_ADDRESS``, else a
private local cluster; see ``bonito_ray.cluster``) unless the job has nothing to do, then runs it.
"""

from __future__ import annotations

from bonito_ray import cluster
from bonito_ray.config import GenerateConfig
from bonito_ray.report import RunSummary


def generate(config: GenerateConfig, overwrite: bool = False) -> RunSummary:
    """Run (or resume) the generation job ``config`` describes and return its summary.

    ``overwrite``: replace the bonito-ray dataset at ``config.output`` (as ``--overwrite``). Errors
    in what was asked are ``bonito_ray.config.ConfigError`` and the other one-line errors the CLI
    reports (``CorpusError``, ``OutputError``, ``ErrorBudgetExceeded``, ...).
    """
    from bonito_ray import pipeline  # the pipeline pulls in the engines' stages: imported when a job runs

    plan = pipeline.plan_job(config, overwrite=overwrite)
    try:
        if plan.finished is None:  # a job with nothing to do needs no cluster
            cluster.connect(config.ray_address, verbose=config.verbose)
        return pipeline.generate(config, plan=plan)
    finally:
        plan.release()
