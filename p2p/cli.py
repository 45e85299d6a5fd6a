"""The `pouw` command line: one entry point, one subcommand per job.

Subcommands import their heavy dependencies (torch, the node) only when they run, so
`pouw --help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from p2p.user_errors import UserError
from p2p import cli_bench, cli_node, cli_sim, cli_task, cli_wallet, cli_work

# Each module registers its subcommands on the parser it is given.
_SUBCOMMAND_MODULES: list[Callable[[argparse._SubParsersAction], None]] = [
    cli_work.register,
    cli_bench.register,
    cli_node.register,
    cli_wallet.register,
    cli_task.register,
    cli_sim.register,
]


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pouw",
        description="Proof-of-useful-work chain: nodes, wallet, tasks, simulator and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _SUBCOMMAND_MODULES:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"pouw: error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:  # raised past a subcommand's own handling (the node's unusable store)
        print(f"pouw: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pouw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
