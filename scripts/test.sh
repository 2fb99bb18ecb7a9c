#!/usr/bin/env bash
# The whole test suite: set up, then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy (strict, src/)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest -q -p no:cacheprovider "$@"
# The long Schemathesis run (5,000 generated requests, tests/api/test_openapi_fuzz.py) is
# deselected by default (pyproject.toml); the whole suite (no arguments, as .ci/run calls it)
# runs it too.
if [ $# -eq 0 ]; then
    echo "== pytest: the long Schemathesis run"
    .venv/bin/pytest -q -p no:cacheprovider -m schemathesis_long tests/api/test_openapi_fuzz.py
fi
