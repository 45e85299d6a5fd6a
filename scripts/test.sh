#!/usr/bin/env bash
# Sets everything up and runs the test suite (the README's test command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest -n 2 -q "$@"
