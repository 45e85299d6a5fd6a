#!/usr/bin/env bash
# Sets everything up, runs the lint and type checks, then the test suite (the README's test
# command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# The explorer's browser tests drive Debian's headless Chromium; install it when this user can
# (root with apt-get). Without it those tests skip with one line saying so.
if [ -z "${POUW_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[test] installing chromium for the explorer's browser tests"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
            || echo "[test] could not install chromium: the explorer's browser tests will skip"
    else
        echo "[test] no chromium (apt-get install chromium): the explorer's browser tests will skip"
    fi
fi
# Lint and type checks first: a failure ends the command before the tests run.
echo "[test] ruff check"
.venv/bin/ruff check .
echo "[test] ruff format --check"
.venv/bin/ruff format --check .
echo "[test] mypy"
.venv/bin/mypy
# loadgroup: tests marked xdist_group (the browser tests' shared devnet) stay on one worker.
exec .venv/bin/python -m pytest -n 2 --dist loadgroup -q "$@"
