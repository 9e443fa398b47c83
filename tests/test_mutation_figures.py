"""The mutation score as quoted is the mutation script's own output (static: reads files, runs no mutmut).

``jobs/dev/mutation_test.sh`` records its figures in ``jobs/dev/mutation_results.json``;
``jobs/dev/check_mutation_figures.py`` compares docs/development.md and docs/mutation.md with them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "jobs" / "dev"


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEV / "check_mutation_figures.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def mutation_scope():
    spec = importlib.util.spec_from_file_location("mutation_scope", DEV / "mutation_scope.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_quote_the_recorded_mutation_figures():
    done = check()
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_figure_survivor_or_scope_that_differs_from_the_record_is_named(tmp_path):
    development = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    doc = (ROOT / "docs" / "mutation.md").read_text(encoding="utf-8")
    results = json.loads((DEV / "mutation_results.json").read_text(encoding="utf-8"))
    group, entry = next((g, e) for g, e in results["groups"].items() if e["survivors"])
    survivor = entry["survivors"][0].split(": ")[0]
    entry["killed"] += 1  # as if the docs were written from another run
    entry["survivors"] = entry["survivors"][1:]
    results["groups"]["prompt"]["scope"] = ["prompt:build_prompt"]  # as if SCOPE had changed since the run
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (tmp_path / "development.md").write_text(development, encoding="utf-8")
    (tmp_path / "mutation.md").write_text(doc, encoding="utf-8")
    done = check("--development", str(tmp_path / "development.md"), "--doc", str(tmp_path / "mutation.md"),
                 "--results", str(tmp_path / "results.json"))
    assert done.returncode == 1
    killed, total = entry["killed"], entry["total"]
    assert f"docs/mutation.md: does not quote {group}'s {killed:,} of {total:,}" in done.stdout
    assert "docs/development.md: does not quote total's" in done.stdout
    assert f"docs/mutation.md: {survivor} is in a table but did not survive the recorded run" in done.stdout
    assert "group prompt: its scope changed since its recorded run" in done.stdout


def test_scope_globs_match_mutmuts_names_and_a_part_that_matches_nothing_fails():
    scope = mutation_scope()
    names = {"bonito_ray.task_dedup.x_banded_values__mutmut_1": "killed",
             "bonito_ray.task_dedup.xǁSignerǁsign__mutmut_4": "survived",
             "bonito_ray.output.xǁOutputǁfinished__mutmut_2": "no tests",
             "bonito_ray.self_guide.vote.x_majority__mutmut_10": "killed"}
    assert scope.score(names, ["task_dedup:banded_values", "task_dedup:Signer"]) == {
        "killed": 1, "total": 2, "survivors": ["task_dedup.Signer.sign 4: survived"]}
    assert scope.score(names, ["output:Output.finished", "self_guide.vote"])["survivors"] == [
        "output.Output.finished 2: no tests"]
    with pytest.raises(ValueError, match=r"task_dedup:banded \(bonito_ray.task_dedup.x_banded__mutmut_\*\) matches no"):
        scope.score(names, ["task_dedup:banded_values", "task_dedup:banded"])
    with pytest.raises(ValueError, match="not run"):
        scope.score(names | {"bonito_ray.task_dedup.x_banded_values__mutmut_2": "not checked"},
                    ["task_dedup:banded_values"])


def test_a_scope_part_that_names_no_code_is_refused_before_any_run():
    scope = mutation_scope()
    assert scope.scope_problems() == []
    assert scope.scope_problems({"task_dedup": ["task_dedup:banded", "task_dedup:Signer.sign"],
                                 "passages": ["passages:chunk"]}) == [
        "task_dedup: task_dedup:banded: bonito_ray/task_dedup.py defines no banded (renamed or removed?)",
        "passages: passages:chunk: bonito_ray/passages.py is not in setup.cfg [mutmut] only_mutate",
    ] + [f"{path}: in setup.cfg [mutmut] only_mutate, but in no group of SCOPE"
         for path in scope.mutmut_setting("only_mutate") if path != "bonito_ray/task_dedup.py"]
