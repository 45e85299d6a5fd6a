#!/usr/bin/env bash
# Local devnet: sets up .venv, then starts N mining nodes on loopback, a prefunded `dev` wallet
# (password dev) and a live view; Ctrl-C, closing the terminal or killing this process stops the nodes.
# Usage: scripts/devnet.sh [--nodes N] [--datadir DIR] [--network devnet|testnet|sharenet|FILE.toml]
#                          [--api-port 18080] [--p2p-port 18330] [--no-wallet] [--plain]
# Node i serves its API on --api-port + i; DIR/nodes.json lists every node's addresses.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/pouw devnet "$@"
