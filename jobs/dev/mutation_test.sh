#!/usr/bin/env bash
# Mutation testing of bonito-ray's pure core with mutmut 3 (settings: setup.cfg [mutmut]).
#
# Mutates the parts of bonito_ray named by SCOPE in jobs/dev/mutation_scope.py, by group (a module), and
# runs each mutant against the fast unit tests only (setup.cfg pytest_add_cli_args_test_selection, in
# mutmut's own process: `-n 0`, no xdist workers); no test there starts Ray, and
# RAY_ENABLE_AUTO_CONNECT=0 keeps a mutant from starting one. Functions outside SCOPE need a Ray cluster
# or a CLI process and are covered by the slower tests, not measured here (docs/mutation.md).
#
# Usage: jobs/dev/mutation_test.sh [max workers, default 2] [group ...; default all of them]
# Prints each group's survivors and score, and records them in jobs/dev/mutation_results.json, the one
# source of the figures docs/development.md and docs/mutation.md quote (jobs/dev/check_mutation_figures.py checks
# that they do). Fails, saying why, on a SCOPE part that names no code or matches no mutant, when mutmut
# fails (the tail of its log shown; the whole log in mutants/run.log), or after an hour.
# mutants/ is scratch (git-ignored), removed at each start.
set -euo pipefail
cd "$(dirname "$0")/../.."
workers="${1:-2}"
groups=("${@:2}")
command="jobs/dev/mutation_test.sh $workers${groups[*]:+ ${groups[*]}}"

globs=$(python3 jobs/dev/mutation_scope.py globs "${groups[@]}")  # fails first on a part that names nothing
mapfile -t scope <<< "$globs"

export RAY_ENABLE_AUTO_CONNECT=0
rm -rf mutants  # a clean measurement: no results cached from an earlier version of the code or tests
mkdir mutants
log=mutants/run.log
started=$SECONDS
status=0
timeout 3600 mutmut run --max-children "$workers" "${scope[@]}" > "$log" 2>&1 || status=$?
if (( status != 0 )); then
  tail -n 40 "$log" >&2
  if (( status == 124 )); then
    echo "mutation_test: stopped after an hour; run fewer groups at a time (jobs/dev/mutation_test.sh $workers GROUP)" >&2
  else
    echo "mutation_test: mutmut failed (exit $status), no score recorded; the whole log: $log" >&2
  fi
  exit 1
fi
minutes=$(( (SECONDS - started) / 60 )).$(( (SECONDS - started) % 60 * 10 / 60 ))
mutmut results --all true | python3 jobs/dev/mutation_scope.py record --command "$command" --minutes "$minutes" \
  "${groups[@]}"
