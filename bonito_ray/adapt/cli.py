"""The ``finetune``, ``evaluate`` and ``export`` subcommands of ``bonito-ray``.

``register`` adds them to the main parser's subparsers; each sets ``func`` (parsed args -> exit
code). Their errors in what the user gave are ``bonito_ray.errors.UserError``s (``AdaptError`` and its
kinds), shown in one line by the main command.
"""

from __future__ import annotations

import argparse

from bonito_ray import s3_preflight
from bonito_ray.adapt.evaluate import EvaluateConfig, evaluate, format_table
from bonito_ray.adapt.export import FORMATS, export
from bonito_ray.adapt.finetune import FinetuneConfig, finetune
from bonito_ray.adapt.prompts import PROMPT_FORMATS
from bonito_ray.adapt.protocols import BONITO, PROTOCOLS, SELF_GUIDE
from bonito_ray.schema import SELF_GUIDE_TASK
from bonito_ray.tasks import resolve_task_types


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``finetune``, ``evaluate`` and ``export`` subcommands to ``subparsers``."""
    _add_export(subparsers)
    _add_finetune(subparsers)
    _add_evaluate(subparsers)


def _add_export(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("export", help="export a generated dataset to Alpaca / OpenAI messages / "
                                "prompt-completion files for other trainers")
    cmd.add_argument("--input", required=True, help="generated dataset (output of `generate`): directory or URI")
    cmd.add_argument("--output", required=True, help="directory or URI for the exported files")
    cmd.add_argument("--formats", help=f"comma-separated subset of {','.join(FORMATS)} (default: all)")
    cmd.add_argument("--task-types", help="only these task types, comma-separated (default: all)")
    cmd.add_argument("--name", default="bonito", help="dataset name prefix in dataset_info.json (default: bonito)")
    _add_common(cmd)
    cmd.set_defaults(func=run_export)


def _add_finetune(subparsers: argparse._SubParsersAction) -> None:
    defaults = FinetuneConfig(model="", dataset="", output="")
    cmd = subparsers.add_parser("finetune", help="train LoRA adapters of a target model on a generated dataset "
                                "with Ray Train (re-run the same command to resume)")
    cmd.add_argument("--model", required=True, help="target model: directory or hub id")
    cmd.add_argument("--dataset", required=True, help="generated dataset: directory or URI")
    cmd.add_argument("--output", required=True, help="directory or URI for checkpoints, adapter and summary")
    cmd.add_argument("--task-types", help="train on these task types only, comma-separated (default: all)")
    cmd.add_argument("--prompt-format", choices=PROMPT_FORMATS, default=defaults.prompt_format,
                     help="plain: '<|input|>\\n...\\n<|output|>\\n' (pretrained targets); chat: the model's chat "
                          "template (instruct targets) (default: plain)")
    for flag, kind, help_text in [
        ("lora-rank", int, "LoRA rank"), ("lora-alpha", int, "LoRA alpha"), ("lora-dropout", float, "LoRA dropout"),
        ("learning-rate", float, "peak learning rate, decayed linearly to 0"),
        ("batch-size", int, "effective batch: per-device batch x gradient accumulation x workers"),
        ("per-device-batch-size", int, "examples per forward pass on one worker"),
        ("epochs", int, "passes over the training split"),
        ("max-length", int, "longest example in tokens; longer ones are dropped and counted"),
        ("max-grad-norm", float, "gradient clipping norm"),
        ("validation-fraction", float, "share of examples (by id hash) held out for validation loss"),
        ("checkpoint-every", int, "optimizer steps between checkpoints"), ("seed", int, "data order and LoRA init"),
        ("num-workers", int, "Ray Train workers (data parallel)"), ("cpus-per-worker", float, "CPUs per worker"),
        ("max-failures", int, "worker failures to recover from (from the last checkpoint) before giving up"),
    ]:
        default = getattr(defaults, flag.replace("-", "_"))
        cmd.add_argument(f"--{flag}", type=kind, default=default, help=f"{help_text} (default: {default})")
    cmd.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    cmd.add_argument("--use-gpu", action="store_true", help="one GPU per worker")
    cmd.add_argument("--qlora", action="store_true", help="4-bit NF4 base weights (Q-LoRA, the paper's setup); "
                     "needs --use-gpu and bitsandbytes")
    cmd.add_argument("--merge", action="store_true", help="also save base + adapter merged under OUTPUT/merged")
    cmd.add_argument("--overwrite", action="store_true", help="discard an earlier run at --output and start afresh")
    cmd.add_argument("--ray-address",
                     help="Ray cluster: an address, `auto` (join the one running on this machine) or `local` "
                          "(start a private one) (default: RAY_ADDRESS, as `ray job submit` sets it, else local)")
    _add_verbose(cmd)
    _add_common(cmd)
    cmd.set_defaults(func=run_finetune)


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    defaults = EvaluateConfig(eval_sets=[])
    cmd = subparsers.add_parser("evaluate", help="score a model zero-shot and with a LoRA adapter, by Bonito's "
                                "protocol (ranked classification: macro-F1; greedy extractive QA: SQuAD F1) or "
                                "SELF-GUIDE's (greedy: exact match of the label, ROUGE-L)")
    cmd.add_argument("--eval-set", action="append", required=True, dest="eval_sets",
                     help="Parquet or JSONL file with input, answer and (classification) choices; repeatable")
    cmd.add_argument("--model", help="base model: directory or hub id (default: the adapter's base model)")
    cmd.add_argument("--adapter", help="LoRA adapter directory or URI (e.g. OUTPUT/adapter of `finetune`)")
    cmd.add_argument("--prompt-format", choices=PROMPT_FORMATS,
                     help="as in `finetune` (default: the adapter's training format, else plain)")
    cmd.add_argument("--output", help="write the report as JSON here (local path or URI)")
    cmd.add_argument("--protocol", choices=list(PROTOCOLS),
                     help="bonito: ranked classification (macro-F1), generation by SQuAD F1, zero-shot vs adapted; "
                          "self-guide: every set generated greedily, classification by exact match of the first "
                          "label in the text, generation by ROUGE-L, prompting vs fine-tuned (default: self-guide "
                          "with a task spec, else bonito)")
    cmd.add_argument("--spec", help="a SELF-GUIDE task spec (YAML/JSON): every input goes into its few-shot prompt "
                                    "(instruction, demonstrations, input), as `finetune` trains on a SELF-GUIDE "
                                    "dataset (default: the spec recorded with the adapter, if any)")
    cmd.add_argument("--max-new-tokens", type=int,
                     help=f"greedy generation budget (default: {BONITO.max_new_tokens} for bonito, "
                          f"{SELF_GUIDE.max_new_tokens} for self-guide)")
    cmd.add_argument("--batch-size", type=int, default=defaults.batch_size,
                     help=f"rows per scoring batch (default: {defaults.batch_size})")
    cmd.add_argument("--num-replicas", type=int, default=defaults.num_replicas,
                     help=f"scoring actors, one model each (default: {defaults.num_replicas})")
    cmd.add_argument("--cpus-per-replica", type=float, default=defaults.cpus_per_replica,
                     help=f"CPUs per actor (default: {defaults.cpus_per_replica})")
    cmd.add_argument("--gpus-per-replica", type=float, default=defaults.gpus_per_replica,
                     help=f"GPUs per actor (default: {defaults.gpus_per_replica})")
    cmd.add_argument("--ray-address",
                     help="Ray cluster: an address, `auto` (join the one running on this machine) or `local` "
                          "(start a private one) (default: RAY_ADDRESS, as `ray job submit` sets it, else local)")
    _add_verbose(cmd)
    _add_common(cmd)
    cmd.set_defaults(func=run_evaluate)


def _add_verbose(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--verbose", action="store_true",
                     help="also show Ray's own logs and progress (default: bonito-ray's lines only)")


def _add_common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")


def dataset_task_types(names: str | None) -> list[str] | None:
    """A ``--task-types`` filter over a dataset: Bonito's task types (short or full names) and SELF-GUIDE's
    task folder (``self_guide``); None: no filter."""
    if not names:
        return None
    parts = [n.strip() for n in names.split(",") if n.strip()]
    bonito = [n for n in parts if n != SELF_GUIDE_TASK]
    own = [SELF_GUIDE_TASK] if SELF_GUIDE_TASK in parts else []
    return (resolve_task_types(bonito) if bonito or not own else []) + own  # none at all: resolve's error


def run_export(args: argparse.Namespace) -> int:
    """``export``: write the trainer files and print what was written."""
    s3_preflight.check_settings(vars(args))
    task_types = dataset_task_types(args.task_types)
    print(export(args.input, args.output, args.formats, task_types, args.name).format())
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    """``finetune``: train (or resume) on the Ray cluster and print the summary."""
    s3_preflight.check_settings(vars(args))
    options = {k: v for k, v in vars(args).items() if k not in ("command", "func", "overwrite", "log_level")}
    options["task_types"] = dataset_task_types(args.task_types)
    print(finetune(FinetuneConfig(**options), overwrite=args.overwrite).format())
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: score on the Ray cluster, print the table, write the JSON report."""
    s3_preflight.check_settings(vars(args))
    options = {k: v for k, v in vars(args).items() if k not in ("command", "func", "log_level")}
    print(format_table(evaluate(EvaluateConfig(**options))))
    return 0
