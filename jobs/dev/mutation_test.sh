#!/usr/bin/env bash
# Mutation testing of bonito-ray's pure core with mutmut 3 (settings: setup.cfg [mutmut]).
#
# Mutates the functions listed in SCOPE below (prompt and parsing, task names, dedup keys and the
# shard's choice, request/example mapping, ids and schema conforming, the resume and commit
# decisions, the output's state and overlap decisions, the task validators and option detection,
# generated-task dedup's decision) and runs each mutant against the fast unit
# tests only (setup.cfg pytest_add_cli_args_test_selection); no test there starts Ray, and
# RAY_ENABLE_AUTO_CONNECT=0 keeps a mutant from starting one. Functions outside SCOPE need a
# Ray cluster or a CLI process and are covered by the slower tests, not measured here.
#
# Usage: jobs/dev/mutation_test.sh [max workers, default 2]
# Prints the survivors and "score: KILLED/TOTAL (P%)". mutants/ is scratch (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
workers="${1:-2}"

SCOPE=(
  'bonito_ray.prompt.*'
  'bonito_ray.tasks.*'
  'bonito_ray.dedup.x__keys_and_owners__mutmut_*'
  'bonito_ray.engine_rows.x_row_seed__mutmut_*'
  'bonito_ray.engine_rows.x_to_requests__mutmut_*'
  'bonito_ray.engine_rows.x_to_examples__mutmut_*'
  'bonito_ray.engine_rows.x__to_example__mutmut_*'
  'bonito_ray.engine_rows.x_drop_done__mutmut_*'
  'bonito_ray.schema.x_stable_id__mutmut_*'
  'bonito_ray.schema.x_conform__mutmut_*'
  'bonito_ray.schema.x_table_from_rows__mutmut_*'
  'bonito_ray.commit.x_is_complete__mutmut_*'
  'bonito_ray.commit.x_has_journal__mutmut_*'
  'bonito_ray.commit.x_start_or_resume__mutmut_*'
  'bonito_ray.commit.x_staged_example_files__mutmut_*'
  'bonito_ray.commit.x_committed_example_files__mutmut_*'
  'bonito_ray.commit.x_example_files__mutmut_*'
  'bonito_ray.commit.x__example_files__mutmut_*'
  'bonito_ray.commit.x_done_ids__mutmut_*'
  'bonito_ray.commit.x__ids__mutmut_*'
  'bonito_ray.commit.x__is_staged_data__mutmut_*'
  'bonito_ray.commit.x__move__mutmut_*'
  'bonito_ray.output.x_inspect__mutmut_*'
  'bonito_ray.output.x_check_no_overlap__mutmut_*'
  'bonito_ray.output.x__location__mutmut_*'
  'bonito_ray.output.x_foreign_entries__mutmut_*'
  'bonito_ray.output.x__refuse_foreign__mutmut_*'
  'bonito_ray.output.x__differences__mutmut_*'
  'bonito_ray.output.xǁOutputǁfinished__mutmut_*'
  'bonito_ray.validators.*'
  'bonito_ray.options.*'
  'bonito_ray.task_dedup.x_normalise__mutmut_*'
  'bonito_ray.task_dedup.x_task_parts__mutmut_*'
  'bonito_ray.task_dedup.x_shingles__mutmut_*'
  'bonito_ray.task_dedup.xǁSignerǁ*'
  'bonito_ray.task_dedup.x_banded__mutmut_*'
  'bonito_ray.task_dedup.x_find_duplicates__mutmut_*'
  'bonito_ray.task_dedup.x__nearest__mutmut_*'
)

export RAY_ENABLE_AUTO_CONNECT=0
rm -rf mutants  # a clean measurement: no results cached from an earlier version of the code or tests
timeout 3600 mutmut run --max-children "$workers" "${SCOPE[@]}" > /dev/null
mutmut results --all true | python3 -c '
import fnmatch, sys
scope = sys.argv[1:]
results = [line.strip().rsplit(": ", 1) for line in sys.stdin if ": " in line]
results = [(name, status) for name, status in results if any(fnmatch.fnmatch(name, g) for g in scope)]
killed = sum(status == "killed" for _, status in results)
for name, status in sorted(results):
    if status != "killed":
        print(f"{status}: {name}")
print(f"score: {killed}/{len(results)} ({100 * killed / max(len(results), 1):.1f}%)")
' "${SCOPE[@]}"
