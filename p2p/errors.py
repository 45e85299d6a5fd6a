"""The one error type a user sees from any `pouw` command: one line, a kind and an exit code.

A subcommand raises `UserError` (exit code 2, "usage") for a bad option or file; the wallet's
errors (p2p/wallet/errors.py) and the node's unusable store subclass it with codes of their own.
The command line (p2p/cli/main.py) prints it as `pouw: error: ...` and exits with its code.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of the errors shown to a user: one line, a kind and an exit code."""

    exit_code = 2
    kind = "usage"
