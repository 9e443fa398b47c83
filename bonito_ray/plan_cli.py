"""``bonito-ray plan``: a generation job's documents, passages, requests, tokens, wall time, GPU-hours and cost,
before the run (docs/plan.md).

It takes generate's flags and config file (``--output`` is not used) and these of its own: ``--sample FILES``,
``--calibrate N``, ``--gpu-hour-price``, ``--workdir``, ``--json PATH`` and ``--format``. ``build_plan`` is the
same from Python. The corpus is read on this machine, without Ray (``bonito_ray.plan_corpus``); only a
calibration connects to Ray (``bonito_ray.plan_calibrate``); the arithmetic is ``bonito_ray.plan``'s.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from bonito_ray import s3_preflight
from bonito_ray.config import ConfigError, GenerateConfig, field_names, load_config
from bonito_ray.engines import ENGINES
from bonito_ray.plan import (COUNTED, Plan, choose_sample, estimate_total, published_throughput, throughput_of)

logger = logging.getLogger(__name__)

NO_OUTPUT = "(plan: none)"  # generate's required --output: the plan writes none


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``plan`` to the main parser's subcommands: generate's flags (one definition, ``cli.add_config_flags``)
    and the plan's own."""
    from bonito_ray.cli import add_config_flags  # the main parser's module imports this one

    sub = commands.add_parser("plan", help="estimate a generation job before running it: documents, passages, "
                                           "requests, tokens, wall time, GPU-hours and cost (docs/plan.md)")
    sub.add_argument("--config", help="YAML file with generate's keys (flags override it)")
    add_config_flags(sub, GenerateConfig)
    own = sub.add_argument_group("the plan")
    own.add_argument("--sample", type=int, metavar="FILES",
                     help="read FILES corpus files chosen at random (--seed, else 0) and scale by bytes, with 95%% "
                          "intervals (default: read every file: exact counts)")
    own.add_argument("--calibrate", type=int, metavar="N",
                     help="measure the configured engine on one replica: two jobs of a quarter of N prompts of the "
                          "corpus (at least --batch-size), then one of N, each into a temporary folder removed "
                          "afterwards; N several times --batch-size (vllm: x --max-concurrent-batches) gives the rate "
                          "of full batches (default: no calibration: --max-tokens as the output bound, a published "
                          "throughput if one matches)")
    own.add_argument("--gpu-hour-price", type=float, metavar="PRICE",
                     help="price of one GPU-hour (of one replica-hour for replicas without a GPU), in any currency")
    own.add_argument("--workdir", metavar="LOCATION",
                     help="where the calibration's temporary corpus and output go; on a multi-node cluster a location "
                          "every node reaches, e.g. s3://bucket/tmp (default: the system's temporary folder)")
    own.add_argument("--json", dest="json_path", metavar="PATH", help="also write the plan as JSON to PATH")
    own.add_argument("--format", choices=("text", "json"), default="text",
                     help="what is printed: text, or the JSON (default: text)")
    sub.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")
    sub.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    """``plan``: check the flags, make the plan, print it (and write its JSON)."""
    _at_least_one("--sample", args.sample)
    _at_least_one("--calibrate", args.calibrate)
    if args.gpu_hour_price is not None and not args.gpu_hour_price > 0:
        raise ConfigError(f"--gpu-hour-price must be a price above 0, got {args.gpu_hour_price:g}")
    json_path = Path(args.json_path) if args.json_path else None
    if json_path is not None and not json_path.parent.is_dir():
        raise ConfigError(f"--json {args.json_path}: no folder {json_path.parent} to write it in")
    overrides = {k: v for k, v in vars(args).items() if k in field_names()}
    overrides["output"] = overrides.get("output") or NO_OUTPUT
    config = load_config(args.config, overrides)
    s3_preflight.check_settings(config)  # one line for an unusable s3:// URI, before the corpus is read
    plan = build_plan(config, sample=args.sample, calibrate=args.calibrate, gpu_hour_price=args.gpu_hour_price,
                      workdir=args.workdir)
    text = json.dumps(plan.to_dict(), indent=2)
    if json_path is not None:
        try:
            json_path.write_text(text + "\n", encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"--json {args.json_path}: cannot write it: {err.strerror or err}") from None
    print(text if args.format == "json" else plan.format())
    return 0


def _at_least_one(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag} must be at least 1, got {value}")


def build_plan(config: GenerateConfig, sample: int | None = None, calibrate: int | None = None,
               gpu_hour_price: float | None = None, workdir: str | None = None) -> Plan:
    """The plan of ``config``'s job: its corpus counted (all files, or ``sample`` of them), calibrated on
    ``calibrate`` prompts if asked, priced at ``gpu_hour_price`` if given. Bad input fails in one line
    (``ConfigError``, ``CorpusError``), before any work."""
    from bonito_ray.corpus import check_context_column, list_corpus_files
    from bonito_ray.pipeline import settle_passage_tokens  # the job's own passage length and model checks
    from bonito_ray.plan_calibrate import calibrate as run_calibration, calibration_passages
    from bonito_ray.plan_corpus import count_files
    from bonito_ray.storage import display_uri

    listing = list_corpus_files(config.input, config.s3_endpoint)
    fs, files = listing.fs, listing.files
    check_context_column(fs, files[0], config.context_column, display_uri(config.input, files[0]))
    passage_tokens = settle_passage_tokens(config)
    sizes = {info.path: info.size or 0 for info in fs.get_file_info(files)}
    seed = config.seed if config.seed is not None else 0
    chosen = choose_sample(files, sample, seed)
    keep = calibration_passages(calibrate, config) if calibrate else 0
    reading = count_files(config, fs, chosen, sizes, passage_tokens, keep=keep, seed=seed)
    counted = reading.files
    totals = {name: estimate_total([getattr(c, name) for c in counted], [c.bytes for c in counted],
                                   sum(sizes.values()), len(files)) for name in COUNTED}
    notes = _notes(config, listing, len(chosen) < len(files), keep, len(reading.kept))
    calibration = run_calibration(config, reading.kept, workdir) if calibrate and reading.kept else None
    if calibrate and not reading.kept:
        notes.append("no passage to calibrate on: every document read was rejected or dropped")
    gpus, assumed = _gpus_per_replica(config)
    if assumed:
        notes.append(assumed)
    published = published_throughput(config.model, ENGINES[config.engine].published_figures, config.accelerator_type,
                                     gpus)
    return Plan(input=config.input, model=config.model, engine=config.engine, generator=config.generator,
                task_types=list(config.task_types), n=config.n, max_tokens=config.max_tokens,
                files_total=len(files), bytes_total=sum(sizes.values()), files_read=len(chosen),
                bytes_read=sum(sizes[f] for f in chosen), seed=seed, totals=totals, dedup=config.dedup,
                replicas=config.num_replicas, gpus_per_replica=gpus, gpu_hour_price=gpu_hour_price,
                calibration=calibration, throughput=throughput_of(calibration, published), notes=notes)


def _notes(config: GenerateConfig, listing, sampled: bool, wanted: int, kept: int) -> list[str]:
    notes = []
    if listing.skipped:
        notes.append(f"{len(listing.skipped)} entries under the input are not read (unsupported, hidden, ...): "
                     "the job rejects them too")
    if sampled and config.dedup:
        notes.append("duplicates are seen within the sample only: passages repeated across files outside it would "
                     "be dropped by the job, so the totals may be high")
    if config.incremental:
        notes.append("--incremental: the plan counts every input file, not only those new or changed since the "
                     "last run")
    if wanted and kept < wanted:
        notes.append(f"the calibration asked for {wanted} passages; the files read hold {kept}")
    return notes


def _gpus_per_replica(config: GenerateConfig) -> tuple[float, str]:
    """GPUs one replica holds (the engine's say, ``engines.replica_gpus``), and a note when ``--device auto`` was
    taken as GPUs for want of a connected cluster."""
    import ray

    from bonito_ray.engines import replica_gpus

    gpus = replica_gpus(config)
    assumed = gpus > 0 and config.device == "auto" and not ray.is_initialized()
    return gpus, "--device auto is counted as GPUs (pass --device cpu for replicas on CPUs)" if assumed else ""
