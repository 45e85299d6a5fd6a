"""The `pouw` command line: one entry point, one subcommand per job.

Subcommands import their heavy dependencies (torch, the node) only when they run, so
`pouw --help` answers at once. Every command and subcommand takes `--version`. Output into a
pipe that closes early (`pouw ... | head`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from p2p.cli import bench, node, params, sim, task, wallet, work
from p2p.cli.exits import quiet_broken_pipe
from p2p.errors import UserError

# Each module registers its subcommands on the parser it is given.
_SUBCOMMAND_MODULES: list[Callable[[argparse._SubParsersAction], None]] = [
    work.register,
    bench.register,
    node.register,
    wallet.register,
    task.register,
    sim.register,
    params.register,
]


def version_text() -> str:
    """`pouw 0.1.0 (protocol 2)`: the installed package's version and the protocol it speaks."""
    from importlib.metadata import PackageNotFoundError, version

    from p2p.protocol import PROTOCOL_VERSION

    try:
        number = version("pouw")
    except PackageNotFoundError:  # run from a source tree that is not installed
        number = "unknown"
    return f"pouw {number} (protocol {PROTOCOL_VERSION})"


def _add_version_everywhere(parser: argparse.ArgumentParser, text: str) -> None:
    if (
        "--version" not in parser._option_string_actions
    ):  # argparse has no public view of a parser's options
        parser.add_argument(
            "--version", action="version", version=text, help="print the version and exit"
        )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_version_everywhere(child, text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pouw",
        description="Proof-of-useful-work chain: nodes, wallet, tasks, simulator and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _SUBCOMMAND_MODULES:
        register(sub)
    _add_version_everywhere(parser, version_text())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader gone by now is a broken pipe too
        return code
    except UserError as exc:  # a bad option (exit 2), or past a subcommand's own handling
        print(f"pouw: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pouw: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return quiet_broken_pipe()


if __name__ == "__main__":
    sys.exit(main())
