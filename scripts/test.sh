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
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
