"""How a subcommand ends: a user error becomes one line and its exit code; a reader that went away
(`pouw ... | head`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable

from p2p.errors import UserError


def handles_user_errors(
    func: Callable[[argparse.Namespace], int | None],
) -> Callable[[argparse.Namespace], int]:
    """Wrap a subcommand: a UserError becomes its one-line message and exit code; nothing else
    changes."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(func(args) or 0)
        except UserError as exc:
            message = str(exc).splitlines()[0] if str(exc) else exc.kind
            print(f"pouw: error: {message}", file=sys.stderr)
            if getattr(args, "json", False):
                print(json.dumps({"error": message, "kind": exc.kind, "exit_code": exc.exit_code}))
            return exc.exit_code

    return wrapper


def quiet_broken_pipe() -> int:
    """The reader of our output went away (`| head`): say nothing more, as a Unix tool would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a process ended by it
