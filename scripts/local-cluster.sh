#!/usr/bin/env bash
# The main job: set up, then start a local cluster of agents on 127.0.0.x from nothing and
# print its nodes. Stop it with: .venv/bin/cnm local down
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/cnm local up "$@"
