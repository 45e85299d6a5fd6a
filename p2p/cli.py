"""The `pouw` command line: one entry point, one subcommand per job.

Subcommands import their heavy dependencies (torch, the node) only when they run, so
`pouw --help` answers at once. Every command and subcommand takes `--version`. Output into a
pipe that closes early (`pouw ... | head`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from p2p.user_errors import UserError
from p2p import cli_bench, cli_node, cli_params, cli_sim, cli_task, cli_wallet, cli_work

# Each module registers its subcommands on the parser it is given.
_SUBCOMMAND_MODULES: list[Callable[[argparse._SubParsersAction], None]] = [
    cli_work.register,
    cli_bench.register,
    cli_node.register,
    cli_wallet.register,
    cli_task.register,
    cli_sim.register,
    cli_params.register,
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
    if "--version" not in parser._option_string_actions:  # argparse has no public view of a parser's options
        parser.add_argument("--version", action="version", version=text, help="print the version and exit")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_version_everywhere(child, text)


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
    _add_version_everywhere(parser, version_text())
    return parser


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (`| head`): say nothing more, as a Unix tool would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a process ended by it


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader gone by now is a broken pipe too
        return code
    except CliError as exc:
        print(f"pouw: error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:  # raised past a subcommand's own handling (the node's unusable store)
        print(f"pouw: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pouw: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()


if __name__ == "__main__":
    sys.exit(main())
