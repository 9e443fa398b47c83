"""`bonito-ray --help` and a mistyped flag answer at once: they import neither Ray nor the model libraries
(what made them take seconds), and a mistyped flag gets its subcommand's usage and the flag it resembles.

What is checked is what got imported, not wall time, so that the tests hold on a busy machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bonito_ray.cli import build_parser

# Each takes seconds to import; none is needed to parse a command line.
HEAVY = ("ray", "torch", "transformers", "vllm")

# Runs the CLI as `python -m bonito_ray.cli ARGS` would, then prints which heavy packages it imported.
RUN_CLI = """
import json, runpy, sys
args, heavy = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["bonito-ray", *args]
try:
    runpy.run_module("bonito_ray.cli", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
print("IMPORTED " + json.dumps(sorted({m.split(".")[0] for m in sys.modules} & heavy)))
sys.exit(code)
"""


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The CLI's exit, output and the heavy packages it imported."""
    done = subprocess.run([sys.executable, "-c", RUN_CLI, json.dumps(args), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=300)
    marker = [line for line in done.stdout.splitlines() if line.startswith("IMPORTED ")]
    assert marker, done.stdout + done.stderr
    return done, json.loads(marker[-1].removeprefix("IMPORTED "))


def test_help_imports_no_heavy_package():
    done, imported = run_cli("--help")
    assert done.returncode == 0 and "generate" in done.stdout, done.stderr
    assert imported == []


def test_a_subcommands_help_imports_no_heavy_package():
    done, imported = run_cli("finetune", "--help")
    assert done.returncode == 0 and "--lora-rank" in done.stdout, done.stderr
    assert imported == []


def test_a_mistyped_flag_gets_the_subcommands_usage_and_the_flag_it_resembles():
    done, imported = run_cli("generate", "--inptu", "x")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: bonito-ray generate ")
    assert done.stderr.rstrip().endswith("unrecognized arguments: --inptu x (did you mean --input?)")
    assert imported == []


@pytest.mark.parametrize("argv, hint", [
    (["generate", "--input=a", "--otput", "b", "--temprature", "1"],
     "(did you mean --output for --otput, --temperature for --temprature?)"),
    (["export", "--inptu", "a", "--output", "b"], "required: --input (did you mean --input?)"),
    (["stats", "out", "--exmples", "3"], "unrecognized arguments: --exmples 3 (did you mean --examples?)"),
])
def test_every_mistyped_flag_gets_its_nearest_flag(argv, hint, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"usage: bonito-ray {argv[0]} ") and hint in err


@pytest.mark.parametrize("argv", [
    ["generate", "--zzzz"],  # like no flag at all
    ["generate", "--input", "a", "--bogus-thing-entirely"],
])
def test_no_suggestion_when_no_flag_is_near(argv, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and "did you mean" not in err


def test_abbreviations_and_values_are_not_taken_for_mistakes():
    args = build_parser().parse_args(["generate", "--outp", "o", "--temperature", "-1"])
    assert args.output == "o" and args.temperature == -1
