#!/usr/bin/env bash
# The whole test suite: lint, sanity, unit tests, and every molecule scenario
# (converge, idempotence, verify) on local Debian 12/13 test hosts.
#   scripts/test.sh                 everything
#   scripts/test.sh default galaxy  only these molecule scenarios (after the checks)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

./scripts/bootstrap.sh
./scripts/build-test-images.sh
source scripts/env.sh

step() { printf '\n==> %s\n' "$*"; }

step "yamllint"
yamllint --strict .

step "ansible-lint (production profile)"
ansible-lint --strict

step "ansible-test sanity"
./scripts/sanity.sh

step "unit tests"
python -m pytest -q tests/unit

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' | xargs -n1 basename | sort)
fi
for scenario in "${scenarios[@]}"; do
  step "molecule test -s $scenario"
  molecule test -s "$scenario"
done
step "all checks passed: ${scenarios[*]}"
