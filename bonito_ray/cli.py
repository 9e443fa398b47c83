"""The ``bonito-ray`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import sys
import types
import typing

from bonito_ray import cluster, interrupt, s3_preflight
from bonito_ray.adapt import cli as adapt_cli
from bonito_ray.command_clock import command_started
from bonito_ray.config import (FLAG_GROUPS, INPUT, OUTPUT, PROGRESS, ConfigError, GenerateConfig, cli_flag, flag_group,
                               load_config, own_fields_first)
from bonito_ray.errors import UserError

# The pipeline and the dataset readers (Ray Data, vLLM...) are imported by the commands that run them, not here:
# `--help` and a mistyped flag must answer at once, and importing Ray alone takes seconds on a busy machine.

# Parsed arguments of `generate` that are not configuration keys.
_NOT_CONFIG = ("command", "func", "config", "overwrite", "log_level", "preview")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: every generation flag defaults to None so that config-file values apply."""
    parser = argparse.ArgumentParser(prog="bonito-ray", description="Bonito synthetic task generation on Ray.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    gen = commands.add_parser("generate", help="generate a synthetic instruction-tuning dataset from a corpus")
    groups = add_job_flags(gen, GenerateConfig, "; an output holding anything else is refused")
    groups[OUTPUT].add_argument("--preview", type=int, metavar="N",
                                help="generate for N passages and print the tasks with their verdicts; writes nothing "
                                     "(--output is not needed, and is left untouched)")
    groups[PROGRESS].add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
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
    register_model(commands)
    from bonito_ray import plan_cli  # it imports add_config_flags from here: imported once this module is

    plan_cli.register(commands)
    return parser


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: a flag it does not know is its own error (its usage, not the top-level one, as
    argparse would print), with the nearest flag it has ("did you mean --input?")."""

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        namespace, unknown = super().parse_known_args(args, namespace)
        if unknown:
            self.error("unrecognized arguments: " + " ".join(unknown))
        return namespace, unknown

    def error(self, message: str):
        near = nearest_flags(self, getattr(self, "_given", []))
        if len(near) == 1:
            message += f" (did you mean {near[0][1]}?)"
        elif near:
            message += " (did you mean " + ", ".join(f"{flag} for {typo}" for typo, flag in near) + "?)"
        super().error(message)


def nearest_flags(parser: argparse.ArgumentParser, given: list[str]) -> list[tuple[str, str]]:
    """(flag given, the parser's closest flag) for each flag in ``given`` the parser does not know (nor takes as
    an abbreviation) that resembles one of its own."""
    known = list(parser._option_string_actions)
    found = []
    for token in given:
        if token == "--":
            break  # what follows is positional
        flag = token.split("=", 1)[0]
        if not flag.startswith("-") or parser._negative_number_matcher.match(flag):
            continue
        if any(option.startswith(flag) for option in known):
            continue  # its own flag, or an abbreviation argparse takes
        near = difflib.get_close_matches(flag, known, n=1)
        if near:
            found.append((flag, near[0]))
    return found


def register_model(commands) -> None:
    """``model NAME``: a packaged model converted into bonito-ray's cache (``bonito_ray.model_cache``)."""
    from bonito_ray.model_cache import BUILT_MODELS, CACHE_ENV, DEFAULT_CACHE, PACKAGED_MODELS

    sub = commands.add_parser("model", help="convert a model shipped in a PyPI wheel into a model folder, once, and "
                                            "print the folder (what --model NAME loads)")
    sub.add_argument("name", choices=sorted([*PACKAGED_MODELS, *BUILT_MODELS]),
                     help=f"the model; its folder is in {CACHE_ENV} (default: {DEFAULT_CACHE})")
    sub.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    sub.set_defaults(func=run_model)


def run_model(args: argparse.Namespace) -> int:
    """``model NAME``: print the converted folder."""
    from bonito_ray.model_cache import resolve_model

    print(resolve_model(args.name))
    return 0


def register_self_guide(commands) -> None:
    """``self-guide``: one flag per configuration key (``bonito_ray.config.option``), None when not given."""
    from bonito_ray.self_guide.config import SelfGuideConfig

    sub = commands.add_parser("self-guide", help="SELF-GUIDE: the model writes training data for one task from "
                                                 "its instruction and a few demonstrations (docs/self_guide.md)")
    groups = add_job_flags(sub, SelfGuideConfig)
    groups[PROGRESS].add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    sub.set_defaults(func=run_self_guide)


def run_self_guide(args: argparse.Namespace) -> int:
    """``self-guide``: plan (no cluster work), connect to Ray, run, print the summary."""
    from bonito_ray.self_guide.config import load_config as load_self_guide_config
    from bonito_ray.self_guide.pipeline import plan_self_guide, self_guide

    overrides = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    config = load_self_guide_config(args.config, overrides)
    s3_preflight.check_settings(config)  # one line for an unusable s3:// URI, before any cluster work
    plan = plan_self_guide(config, overwrite=args.overwrite)  # a bad spec, model or output fails here
    try:
        if plan.finished is None:
            cluster.connect(config.ray_address, verbose=config.verbose)
        print(self_guide(config, plan=plan, command_started=command_started()).format())
    finally:
        plan.release()
    return 0


def add_job_flags(parser: argparse.ArgumentParser, config_class: type, overwrite_note: str = ""
                  ) -> dict[str, argparse._ArgumentGroup]:
    """A dataset job's flags, in their --help sections (returned, for the job's own flags): --config, one per
    setting of ``config_class``, and --overwrite."""
    groups = flag_groups(parser)
    groups[INPUT].add_argument("--config", help="YAML file with the same keys as these flags (flags override it)")
    add_config_flags(parser, config_class, groups)
    groups[OUTPUT].add_argument("--overwrite", action="store_true",
                                help="replace the bonito-ray dataset at --output (only files bonito-ray wrote are "
                                     f"deleted{overwrite_note})")
    return groups


def flag_groups(parser: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """The --help sections of a job's flags (``bonito_ray.config.FLAG_GROUPS``), made in the order shown: a
    section no flag goes into is not shown."""
    return {title: parser.add_argument_group(title) for title in FLAG_GROUPS}


def add_config_flags(parser: argparse.ArgumentParser, config_class: type,
                     groups: dict[str, argparse._ArgumentGroup] | None = None) -> None:
    """One flag per field of ``config_class`` that has help (``bonito_ray.config.option``), in its --help section
    (``flag_group``; ``groups``: sections made already by ``flag_groups``); each defaults to None, so that a flag
    not given leaves the config file's value or the field's default."""
    hints = typing.get_type_hints(config_class)
    groups = groups if groups is not None else flag_groups(parser)
    for f in own_fields_first(config_class):  # the job's own flags first in usage and in each section
        if "help" not in f.metadata:
            continue
        meta, hint = f.metadata, hints[f.name]
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kind = next((k for k in kinds if k is not type(None)), str)
        options: dict = {"dest": f.name, "help": meta["help"] + _default_text(f)}
        if kind is bool and meta.get("switch"):
            options.update(action=argparse.BooleanOptionalAction)
        elif kind is bool:
            options.update(action="store_const", const=not f.default)
        elif meta.get("action"):
            options.update(action=meta["action"])
        else:
            options.update(type=kind if kind in (int, float) else str, choices=meta.get("choices"))
        groups.get(flag_group(config_class, f), parser).add_argument(cli_flag(f), **options)


def _default_text(f: dataclasses.Field) -> str:
    """" (default: ...)" for the help of a field's flag; an on-or-off flag's help says it in its own words."""
    if (f.default is True or f.default is False) and not f.metadata.get("switch"):
        return ""
    if "default_text" in f.metadata:
        text = f.metadata["default_text"]
        return "" if text is None else f" (default: {text})"
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    shown = (",".join(default) if isinstance(default, list) else "none" if default is None
             else ("on" if default else "off") if isinstance(default, bool)  # a switch's, not Python's True
             else f"{default:g}" if isinstance(default, float) else default)
    return f" (default: {shown})"


def config_overrides(args: argparse.Namespace) -> dict:
    """The configuration keys among parsed ``generate`` arguments (None: not given on the command line)."""
    return {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}


def run_generate(args: argparse.Namespace) -> int:
    """``generate``: plan the job (no cluster work), connect to Ray, run it, print the summary."""
    if args.preview is not None:
        return run_preview(args)
    from bonito_ray.pipeline import generate, plan_job

    config = load_config(args.config, config_overrides(args))
    s3_preflight.check_settings(config)  # one line for an unusable s3:// URI, before any cluster work
    plan = plan_job(config, overwrite=args.overwrite)  # bad input, output or model fails here, before cluster work
    try:
        if plan.finished is None:  # a job with nothing to do needs no cluster
            cluster.connect(config.ray_address, verbose=config.verbose)
        print(generate(config, plan=plan, command_started=command_started()).format())
    finally:
        plan.release()
    return 0


def run_preview(args: argparse.Namespace) -> int:
    """``generate --preview N``: the tasks N passages give, with their verdicts; nothing is written."""
    if args.preview < 1:
        raise ConfigError(f"--preview must be at least 1 passage, got {args.preview}")
    from bonito_ray import preview

    overrides = config_overrides(args)
    overrides["output"] = overrides.get("output") or "(preview: none)"  # never opened: preview writes nothing
    config = load_config(args.config, overrides)
    s3_preflight.check_settings(config)
    cluster.connect(config.ray_address)
    print(preview.format_preview(preview.preview(config, args.preview)))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """``stats OUTPUT``: the card's figures and random examples; ``--write-card`` draws the card again."""
    from bonito_ray import preview

    s3_preflight.check_settings(vars(args))
    if args.write_card:
        print(preview.write_card(args.output, args.s3_endpoint))
    print(preview.format_stats(args.output, args.s3_endpoint, args.examples, args.seed))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bonito-ray`` console script; returns the exit code (2 for a user error; 143 or 130
    when stopped by SIGTERM or SIGINT, see ``bonito_ray.interrupt``)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with interrupt.stop_on_signals():
            return args.func(args)
    except UserError as err:
        print(f"bonito-ray: error: {err}", file=sys.stderr)
        return 2
    except interrupt.Stopped as stop:
        print(f"bonito-ray: {stop}: nothing more is committed; rerun the same command to resume from what "
              "this run saved", file=sys.stderr)
        return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
