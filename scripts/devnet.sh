#!/usr/bin/env bash
# Local devnet: sets up .venv, then starts N mining nodes on loopback with a live view (Ctrl-C stops them).
# Usage: scripts/devnet.sh [--nodes N] [--datadir DIR] [--network devnet|testnet|FILE.toml]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/pouw devnet "$@"
