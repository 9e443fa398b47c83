"""Check that the mutation-testing figures docs/development.md and docs/mutation.md quote are the ones
``jobs/dev/mutation_test.sh`` recorded (``jobs/dev/mutation_results.json``), for the scope it has now.

- Every group of ``SCOPE`` (``jobs/dev/mutation_scope.py``) has a recorded run of that very scope, and
  each part of the scope still names code (a rename shows here, before any mutmut run).
- docs/development.md's mutation paragraph (from "Mutation testing" to its link to mutation.md) quotes the
  total, and every "N of M", percentage and date in it is a recorded one (a group's or the total).
- docs/mutation.md quotes every group's figure and the total, with nothing else of that form, and its
  survivor tables name exactly the recorded survivors: each as ``module.function N`` in a row's first
  cell (several: "`task_dedup.shingles` 5, 13; `task_dedup.decide` 7").

    python jobs/dev/check_mutation_figures.py     # one line per problem, exit 1; else exit 0

Run by tests/test_mutation_figures.py (static).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from mutation_scope import RESULTS, ROOT, SCOPE, percent, scope_problems

FIGURE = re.compile(r"(\d[\d,]*) of (\d[\d,]*)")
PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DEVELOPMENT_PARAGRAPH = re.compile(r"Mutation testing.*?\(mutation\.md\)", re.DOTALL)
TABLE_ENTRY = re.compile(r"`([\w.]+)`((?:\s*\d+\s*,?)+)")


def figures(results: dict) -> dict[str, tuple[int, int]]:
    """(killed, total) of each recorded group and of all of them (``total``)."""
    groups = {g: (e["killed"], e["total"]) for g, e in results["groups"].items()}
    return groups | {"total": (sum(k for k, _ in groups.values()), sum(t for _, t in groups.values()))}


def scope_changes(results: dict) -> list[str]:
    recorded = results["groups"]
    problems = [f"group {g}: no recorded run; run jobs/dev/mutation_test.sh 2 {g}" for g in SCOPE if g not in recorded]
    problems += [f"group {g}: recorded, but not in SCOPE any more; rerun the script" for g in recorded if g not in SCOPE]
    problems += [f"group {g}: its scope changed since its recorded run; run jobs/dev/mutation_test.sh 2 {g}"
                 for g in SCOPE if g in recorded and recorded[g]["scope"] != SCOPE[g]]
    return problems


def quoted_problems(text: str, where: str, results: dict, required: list[str]) -> list[str]:
    """Figures, percentages and dates in ``text`` that are not recorded ones, and recorded figures
    (``required``, by group name) that ``text`` does not quote."""
    known = figures(results)
    allowed = set(known.values())
    quoted = {(int(k.replace(",", "")), int(t.replace(",", ""))) for k, t in FIGURE.findall(text)}
    problems = [f"{where}: {k:,} of {t:,} is no recorded figure" for k, t in sorted(quoted - allowed)]
    percents = {percent(k, t).rstrip("%") for k, t in allowed if t}
    problems += [f"{where}: {p}% is no recorded percentage" for p in PERCENT.findall(text) if p not in percents]
    dates = {e["date"] for e in results["groups"].values()}
    problems += [f"{where}: {d} is no recorded date ({', '.join(sorted(dates))})" for d in DATE.findall(text)
                 if d not in dates]
    problems += [f"{where}: does not quote {name}'s {known[name][0]:,} of {known[name][1]:,}" for name in required
                 if known[name] not in quoted]
    return problems


def explained_survivors(doc: str) -> set[str]:
    """The mutants docs/mutation.md's tables name, as ``module.function N``."""
    names = set()
    for line in doc.splitlines():
        if not line.startswith("|") or line.startswith("|--"):
            continue
        for name, numbers in TABLE_ENTRY.findall(line.split("|")[1]):
            names |= {f"{name} {n}" for n in re.findall(r"\d+", numbers)}
    return names


def survivor_problems(doc: str, results: dict) -> list[str]:
    recorded = {s.split(": ")[0] for e in results["groups"].values() for s in e["survivors"]}
    explained = explained_survivors(doc)
    return ([f"docs/mutation.md: survivor {s} is not in a table with why it lives" for s in sorted(recorded - explained)]
            + [f"docs/mutation.md: {s} is in a table but did not survive the recorded run" for s in
               sorted(explained - recorded)])


def problems(development: str, doc: str, results: dict) -> list[str]:
    found = [f"SCOPE: {p}" for p in scope_problems()] + scope_changes(results)
    paragraph = DEVELOPMENT_PARAGRAPH.search(development)
    if paragraph is None:
        found.append("docs/development.md: no mutation paragraph (from 'Mutation testing' to '(mutation.md)')")
    else:
        found += quoted_problems(paragraph.group(0), "docs/development.md", results, ["total"])
    found += quoted_problems(doc, "docs/mutation.md", results, [*results["groups"], "total"])
    if any("recorded figure" in p or "does not quote" in p for p in found):
        found.append("recorded: " + ", ".join(f"{g} {k:,} of {t:,}" for g, (k, t) in figures(results).items()))
    return found + survivor_problems(doc, results)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--development", type=Path, default=ROOT / "docs" / "development.md")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "mutation.md")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    found = problems(args.development.read_text(encoding="utf-8"), args.doc.read_text(encoding="utf-8"), results)
    for problem in found:
        print(problem)
    if found:
        return 1
    total = figures(results)["total"]
    print(f"mutation figures match {args.results.name}: {total[0]:,} of {total[1]:,} ({percent(*total)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
