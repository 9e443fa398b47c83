"""The ``bonito-ray`` command line."""

from __future__ import annotations

import argparse
import logging
import sys

from bonito_ray import cluster, preview
from bonito_ray.adapt import cli as adapt_cli
from bonito_ray.config import DEVICES, ENGINES, ConfigError, load_config
from bonito_ray.corpus import CorpusError
from bonito_ray.budget import ErrorBudgetExceeded
from bonito_ray.commit import ResumeMismatchError
from bonito_ray.lease import LeaseHeldError, LeaseLostError
from bonito_ray.output import OutputError
from bonito_ray.pipeline import generate, plan_job
from bonito_ray.storage import EndpointError
from bonito_ray.tasks import UnknownTaskTypeError
from bonito_ray.validators import LEVELS

# Errors in what the user asked for: reported in one line, without a traceback.
_USER_ERRORS = (ConfigError, CorpusError, OutputError, LeaseHeldError, LeaseLostError, UnknownTaskTypeError,
                ResumeMismatchError, ErrorBudgetExceeded, EndpointError, *adapt_cli.USER_ERRORS)
# Parsed arguments of `generate` that are not configuration keys.
_NOT_CONFIG = ("command", "func", "config", "overwrite", "log_level", "preview")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: every generation flag defaults to None so that config-file values apply."""
    parser = argparse.ArgumentParser(prog="bonito-ray", description="Bonito synthetic task generation on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="generate a synthetic instruction-tuning dataset from a corpus")
    gen.add_argument("--config", help="YAML file with the same keys as these flags (flags override it)")
    gen.add_argument("--input", help="corpus file or directory/prefix (JSONL, .jsonl.gz/.zst, Parquet)")
    gen.add_argument("--output", help="output directory/prefix for the Parquet dataset")
    gen.add_argument("--task-types", help="comma-separated short or full task names (default: ynqa,exqa,nli)")
    gen.add_argument("--engine", choices=ENGINES, help="hf (transformers, CPU or GPU), vllm (GPUs, or CPUs with vLLM's CPU build), "
                     "echo (test/benchmark stand-in, no model) (default: hf)")
    gen.add_argument("--model", help="model directory or hub id (default: the bundled CPU demo model)")
    gen.add_argument("--context-column", help="column holding the passage text (default: text)")
    gen.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (MinIO, Ceph, R2); default: AWS_ENDPOINT_URL")
    gen.add_argument("--passage-tokens", type=int,
                     help="max tokens per passage; longer documents are chunked (default: fits the model window)")
    gen.add_argument("--passage-overlap", type=int, help="tokens shared by consecutive chunks (default: 0)")
    gen.add_argument("--min-passage-chars", type=int, help="drop shorter passages (default: 20)")
    gen.add_argument("--max-passage-chars", type=int, help="drop longer passages (default: none)")
    gen.add_argument("--no-dedup", dest="dedup", action="store_const", const=False,
                     help="keep exact duplicate passages (default: dropped)")
    gen.add_argument("--incremental", action="store_const", const=True,
                     help="scheduled runs: generate only for input files new or changed since the last run, "
                          "and add to the dataset (a ledger is kept next to it)")
    gen.add_argument("--max-error-rate", type=float,
                     help="fail the job when more than this fraction of requests fail in the engine (default: 0.05)")
    gen.add_argument("--validate", choices=LEVELS,
                     help="task validators after parsing: strict (form and answer: span, options, yes/no), basic "
                          "(form: truncated, degenerate, passage missing), off (keep all that parses) (default: strict)")
    gen.add_argument("--validator", dest="validators", action="append",
                     help="your own validator, module:function (repeatable); runs after --validate's")
    gen.add_argument("--no-task-dedup", dest="task_dedup", action="store_const", const=False,
                     help="keep exact and near-duplicate generated tasks (default: dropped as duplicate_task)")
    gen.add_argument("--rows-per-file", type=int, help="target rows per output Parquet file (default: 50000)")
    gen.add_argument("--n", type=int, help="samples per prompt (default: 1)")
    gen.add_argument("--max-tokens", type=int, help="max generated tokens (default: 256)")
    gen.add_argument("--temperature", type=float, help="sampling temperature, 0 = greedy (default: 0.5)")
    gen.add_argument("--top-p", type=float, help="nucleus sampling mass (default: 0.95)")
    gen.add_argument("--seed", type=int, help="seed for reproducible sampling (default: unseeded)")
    gen.add_argument("--num-replicas", type=int, help="engine replicas, one model each (default: 1)")
    gen.add_argument("--batch-size", type=int, help="rows per engine batch (default: 16)")
    gen.add_argument("--max-concurrent-batches", type=int, help="vllm: batches in flight per replica (default: 8)")
    gen.add_argument("--engine-kwargs", help='vllm: engine arguments as JSON, e.g. \'{"max_model_len": 4096}\'')
    gen.add_argument("--device", choices=DEVICES,
                     help="vllm: where replicas run: auto (GPUs when the cluster has them), gpu, cpu (default: auto)")
    gen.add_argument("--placement-group-config",
                     help='vllm: Ray placement group of one replica as JSON, e.g. '
                          '\'{"bundles": [{"GPU": 1, "CPU": 4}, {"GPU": 1}], "strategy": "STRICT_PACK"}\'')
    gen.add_argument("--accelerator-type", help="accelerator type to schedule replicas on, e.g. A100, H100")
    gen.add_argument("--cpus-per-replica", type=float, help="CPUs per replica (hf; vllm on CPUs) (default: 1)")
    gen.add_argument("--gpus-per-replica", type=float, help="hf: GPUs per replica (default: 0)")
    gen.add_argument("--ray-address",
                     help="Ray cluster: an address, `auto` (join the one running on this machine) or `local` "
                          "(start a private one) (default: RAY_ADDRESS, as `ray job submit` sets it, else local)")
    gen.add_argument("--overwrite", action="store_true",
                     help="replace the bonito-ray dataset at --output (only files bonito-ray wrote are deleted; "
                          "an output holding anything else is refused)")
    gen.add_argument("--license", help="the dataset card's license field (default: other)")
    gen.add_argument("--card-samples", type=int,
                     help="examples per task type shown in the dataset card; they hold passage text (default: 0)")
    gen.add_argument("--verbose", action="store_const", const=True,
                     help="also show Ray's own logs and Ray Data's progress (default: bonito-ray's lines only)")
    gen.add_argument("--preview", type=int, metavar="N",
                     help="generate for N passages and print the tasks with their verdicts; writes nothing "
                          "(--output is not needed, and is left untouched)")
    gen.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    gen.set_defaults(func=run_generate)
    stats = commands.add_parser("stats", help="a committed dataset's figures and random examples per task type")
    stats.add_argument("output", help="the dataset (the --output of generate)")
    stats.add_argument("--examples", type=int, default=2, help="random examples per task type (default: 2)")
    stats.add_argument("--seed", type=int, help="seed of the random choice (default: a new one each time)")
    stats.add_argument("--s3-endpoint", help="S3-compatible endpoint URL; default: AWS_ENDPOINT_URL")
    stats.add_argument("--write-card", action="store_true",
                       help="draw the dataset card again (e.g. with plots, once matplotlib is installed)")
    stats.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")
    stats.set_defaults(func=run_stats)
    adapt_cli.register(commands)
    register_self_guide(commands)
    return parser


def register_self_guide(commands) -> None:
    """``self-guide``: one flag per configuration key (``bonito_ray.self_guide.config.HELP``), None when not given."""
    import dataclasses

    from bonito_ray.self_guide.config import HELP, SelfGuideConfig

    sub = commands.add_parser("self-guide", help="SELF-GUIDE: the model writes training data for one task from "
                                                 "its instruction and a few demonstrations (docs/self_guide.md)")
    sub.add_argument("--config", help="YAML file with the same keys as these flags (flags override it)")
    for f in dataclasses.fields(SelfGuideConfig):
        flag, kind = "--" + f.name.replace("_", "-"), str(f.type)
        if kind.startswith("bool"):
            sub.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=HELP[f.name])
        else:
            convert = int if kind.startswith("int") else float if kind.startswith("float") else str
            sub.add_argument(flag, type=convert, help=HELP[f.name])
    sub.add_argument("--overwrite", action="store_true",
                     help="replace the bonito-ray dataset at --output (only files bonito-ray wrote are deleted)")
    sub.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    sub.set_defaults(func=run_self_guide)


def run_self_guide(args: argparse.Namespace) -> int:
    """``self-guide``: plan (no cluster work), connect to Ray, run, print the summary."""
    from bonito_ray.self_guide.config import load_config as load_self_guide_config
    from bonito_ray.self_guide.pipeline import plan_self_guide, self_guide

    overrides = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    config = load_self_guide_config(args.config, overrides)
    plan = plan_self_guide(config, overwrite=args.overwrite)  # a bad spec, model or output fails here
    try:
        if plan.finished is None:
            cluster.connect(config.ray_address, verbose=config.verbose)
        print(self_guide(config, plan=plan).format())
    finally:
        plan.release()
    return 0


def config_overrides(args: argparse.Namespace) -> dict:
    """The configuration keys among parsed ``generate`` arguments (None: not given on the command line)."""
    return {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}


def run_generate(args: argparse.Namespace) -> int:
    """``generate``: plan the job (no cluster work), connect to Ray, run it, print the summary."""
    if args.preview is not None:
        return run_preview(args)
    config = load_config(args.config, config_overrides(args))
    plan = plan_job(config, overwrite=args.overwrite)  # bad input, output or model fails here, before cluster work
    try:
        if plan.finished is None:  # a job with nothing to do needs no cluster
            cluster.connect(config.ray_address, verbose=config.verbose)
        print(generate(config, plan=plan).format())
    finally:
        plan.release()
    return 0


def run_preview(args: argparse.Namespace) -> int:
    """``generate --preview N``: the tasks N passages give, with their verdicts; nothing is written."""
    if args.preview < 1:
        raise ConfigError(f"--preview must be at least 1 passage, got {args.preview}")
    overrides = config_overrides(args)
    overrides["output"] = overrides.get("output") or "(preview: none)"  # never opened: preview writes nothing
    config = load_config(args.config, overrides)
    cluster.connect(config.ray_address)
    print(preview.format_preview(preview.preview(config, args.preview)))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """``stats OUTPUT``: the card's figures and random examples; ``--write-card`` draws the card again."""
    if args.write_card:
        print(preview.write_card(args.output, args.s3_endpoint))
    print(preview.format_stats(args.output, args.s3_endpoint, args.examples, args.seed))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bonito-ray`` console script; returns the exit code (2 for a user error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except _USER_ERRORS as err:
        print(f"bonito-ray: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
