"""What ``jobs/dev/mutation_test.sh`` mutates, and the results file it writes (``mutation_results.json``).

``SCOPE`` holds, per group (a module: the unit a run can be split into), the parts of ``bonito_ray``
mutated: a module name alone is all of it; ``module:function``, ``module:Class`` (its methods) or
``module:Class.method`` one part. Only pure functions belong here, those whose fast unit tests (setup.cfg
``[mutmut]`` ``pytest_add_cli_args_test_selection``) need no Ray cluster and no CLI process
(docs/mutation.md says what is left out and why).

    python jobs/dev/mutation_scope.py globs [GROUP ...]   # mutmut's globs; fails on a part that is gone
    mutmut results --all true | python jobs/dev/mutation_scope.py record --command CMD --minutes M [GROUP ...]

``record`` scores each group from mutmut's results, prints its survivors and score, and writes the
group's entry (figures, survivors, date, commit, command) into the results file, which
``jobs/dev/check_mutation_figures.py`` compares with the figures in docs/development.md and docs/mutation.md.
Nothing else writes that file.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import datetime
import fnmatch
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "bonito_ray"
RESULTS = Path(__file__).with_name("mutation_results.json")

SCOPE: dict[str, list[str]] = {
    "prompt": ["prompt"],
    "tasks": ["tasks"],
    "dedup": ["dedup:_keys_and_owners"],  # the shard (DedupShard) is a Ray actor: see docs/mutation.md
    "engine_rows": ["engine_rows"],
    "schema": ["schema"],
    "commit": ["commit:is_complete", "commit:has_journal", "commit:start_or_resume", "commit:_staged_work",
               "commit:staged_example_files", "commit:committed_example_files", "commit:example_files",
               "commit:_example_files", "commit:done_ids", "commit:_ids", "commit:_is_staged_data", "commit:_move"],
    "output": ["output:inspect", "output:check_no_overlap", "output:_location", "output:foreign_entries",
               "output:_refuse_foreign", "output:_differences", "output:Output.finished"],
    "validators": ["validators"],
    "options": ["options"],
    "task_dedup": ["task_dedup:normalise", "task_dedup:task_parts", "task_dedup:shingles", "task_dedup:Signer",
                   "task_dedup:sign_tasks", "task_dedup:signatures_of", "task_dedup:banded_values",
                   "task_dedup:member", "task_dedup:band_rows", "task_dedup:shared_band_members",
                   "task_dedup:only_members", "task_dedup:decide", "task_dedup:_nearest",
                   "task_dedup:find_duplicates", "task_dedup:_without_stale"],
    "self_guide.vote": ["self_guide.vote"],
}


def glob_of(part: str) -> str:
    """The mutmut mutant-name glob of one ``SCOPE`` part (mutmut 3 names a mutant
    ``module.x_function__mutmut_N`` or ``module.xǁClassǁmethod__mutmut_N``)."""
    module, _, name = part.partition(":")
    if not name:
        return f"{PACKAGE}.{module}.*"
    owner, _, method = name.partition(".")
    if method:
        return f"{PACKAGE}.{module}.xǁ{owner}ǁ{method}__mutmut_*"
    if owner[:1].isupper():
        return f"{PACKAGE}.{module}.xǁ{owner}ǁ*"
    return f"{PACKAGE}.{module}.x_{owner}__mutmut_*"


def display_name(mutant: str) -> str:
    """``bonito_ray.task_dedup.xǁSignerǁsign__mutmut_4`` -> ``task_dedup.Signer.sign 4`` (docs/mutation.md's form)."""
    module, mangled = mutant.removeprefix(PACKAGE + ".").rsplit(".", 1)
    function, number = mangled.rsplit("__mutmut_", 1)
    function = function.removeprefix("x_") if function.startswith("x_") else ".".join(function.split("ǁ")[1:])
    return f"{module}.{function} {number}"


def mutmut_setting(name: str) -> list[str]:
    """A list in setup.cfg's ``[mutmut]``: ``only_mutate`` (the files mutmut makes mutants of),
    ``pytest_add_cli_args_test_selection`` (the tests it runs)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config.get("mutmut", name).split()


def scope_problems(scope: dict[str, list[str]] = SCOPE) -> list[str]:
    """Parts of ``scope`` that name no function, class or method of the code, or a file mutmut does not
    mutate; mutated files no group covers; tests in the selection that are gone. Empty when all is well."""
    problems = []
    files = mutmut_setting("only_mutate")
    covered = set()
    for group, parts in scope.items():
        for part in parts:
            module, _, name = part.partition(":")
            path = f"{PACKAGE}/{module.replace('.', '/')}.py"
            covered.add(path)
            if path not in files:
                problems.append(f"{group}: {part}: {path} is not in setup.cfg [mutmut] only_mutate")
                continue
            if not (ROOT / path).is_file():
                problems.append(f"{group}: {part}: {path} does not exist")
                continue
            if name and not _defines(ast.parse((ROOT / path).read_text(encoding="utf-8")), name.split(".")):
                problems.append(f"{group}: {part}: {path} defines no {name} (renamed or removed?)")
    problems += [f"{path}: in setup.cfg [mutmut] only_mutate, but in no group of SCOPE" for path in files
                 if path not in covered]
    for test in mutmut_setting("pytest_add_cli_args_test_selection"):
        path, _, name = test.partition("::")
        if not (ROOT / path).is_file():
            problems.append(f"setup.cfg [mutmut] test selection: {path} does not exist")
        elif name and not _defines(ast.parse((ROOT / path).read_text(encoding="utf-8")), [name.split("[")[0]]):
            problems.append(f"setup.cfg [mutmut] test selection: {path} has no test {name} (renamed or removed?)")
    return problems


def _defines(tree: ast.AST, names: list[str]) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == names[0]:
            return len(names) == 1 or _defines(node, names[1:])
    return False


def score(results: dict[str, str], parts: list[str]) -> dict:
    """One group's score from mutmut's statuses by mutant name. Raises ValueError, naming it, on a part
    that matches no mutant or a mutant mutmut did not run."""
    statuses = {}
    for part in parts:
        matched = {name: status for name, status in results.items() if fnmatch.fnmatchcase(name, glob_of(part))}
        if not matched:
            raise ValueError(f"{part} ({glob_of(part)}) matches no mutant: renamed, removed, or nothing to mutate")
        statuses |= matched
    unrun = sorted(name for name, status in statuses.items() if status == "not checked")
    if unrun:
        raise ValueError(f"{len(unrun)} mutants were not run (the run was cut short?), {unrun[0]} first")
    survivors = [f"{display_name(name)}: {status}" for name, status in statuses.items() if status != "killed"]
    survivors.sort(key=lambda s: (s.split(" ")[0], int(s.split(" ")[1].rstrip(":"))))  # mutant 10 after 9
    return {"killed": len(statuses) - len(survivors), "total": len(statuses), "survivors": survivors}


def percent(killed: int, total: int) -> str:
    """The one rounding of a score, here and in the figures checked against it."""
    return f"{100 * killed / total:.1f}%"


def _commit() -> str:
    """HEAD's short hash, with ``+changes`` when the mutated or test files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", PACKAGE, "tests", "setup.cfg", "pyproject.toml")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+changes" if changed else "")


def record(lines: list[str], groups: list[str], command: str, minutes: float) -> int:
    results = dict(line.strip().rsplit(": ", 1) for line in lines if ": " in line)
    saved = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {"groups": {}}
    scored = {}
    for group in groups:
        try:
            scored[group] = score(results, SCOPE[group])
        except ValueError as err:
            print(f"mutation_test: group {group}: {err}", file=sys.stderr)
            return 1
    for group, entry in scored.items():
        for survivor in entry["survivors"]:
            print(survivor)
        print(f"{group}: {entry['killed']} of {entry['total']} killed ({percent(entry['killed'], entry['total'])})")
        saved["groups"][group] = {"scope": SCOPE[group], **entry, "date": datetime.date.today().isoformat(),
                                  "commit": _commit(), "command": command, "minutes": round(minutes, 1),
                                  "mutmut": metadata.version("mutmut")}
    saved["groups"] = {g: saved["groups"][g] for g in SCOPE if g in saved["groups"]}  # SCOPE's order
    killed = sum(e["killed"] for e in scored.values())
    total = sum(e["total"] for e in scored.values())
    print(f"score: {killed}/{total} ({percent(killed, total)})")
    RESULTS.write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"recorded in {RESULTS.relative_to(ROOT)}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    globs = commands.add_parser("globs", help="print the mutant-name globs of the groups (all without one)")
    globs.add_argument("groups", nargs="*")
    rec = commands.add_parser("record", help="score mutmut's results (stdin) and record them")
    rec.add_argument("--command", required=True, help="the command that ran, as recorded")
    rec.add_argument("--minutes", type=float, required=True, help="how long the run took")
    rec.add_argument("groups", nargs="*")
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in SCOPE]
    if unknown:
        print(f"mutation_test: no group {', '.join(unknown)}; the groups: {' '.join(SCOPE)}", file=sys.stderr)
        return 2
    if args.command == "globs":
        problems = scope_problems()
        for problem in problems:
            print(f"mutation_test: SCOPE: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("\n".join(glob_of(part) for group in args.groups or SCOPE for part in SCOPE[group]))
        return 0
    return record(sys.stdin.readlines(), args.groups or list(SCOPE), args.command, args.minutes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
