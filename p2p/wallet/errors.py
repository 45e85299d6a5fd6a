"""Errors a wallet or task user meets, each with its own exit code (p2p/cli/exits.py prints them).

Every error is one line on stderr (`pouw: error: ...`); with `--json` the same error is also
written to stdout as {"error": message, "kind": ..., "exit_code": ...} so scripts can branch on it.
Exit codes (documented in docs/wallet.md):

| code | kind |
| --- | --- |
| 2 | usage (bad option value, missing password source, file problems) |
| 3 | wrong-password |
| 4 | insufficient-balance |
| 5 | bad-address (mistyped, or neither an address nor a wallet name) |
| 6 | node-unreachable |
| 7 | tx-rejected (the node's reason follows) |
| 8 | bad-task-spec (a task option out of range, naming the field) |
| 9 | wallet-not-found / wallet-exists / bad key file |
| 10 | not-found (a task or transaction the node does not know) / not ready (task not complete) |
| 11 | result-mismatch (a download does not match the chain's digests or state hash) |
| 12 | node-error (the node answered with an unexpected error) |
| 13 | needs-confirmation (a fee far above the need, without --yes) |
| 130 | interrupted (Ctrl-C while following a task: the task goes on) |
"""

from __future__ import annotations

from p2p.errors import UserError

__all__ = [
    "UserError",
    "WrongPassword",
    "InsufficientBalance",
    "BadAddress",
    "NodeUnreachable",
    "TxRejectedByNode",
    "BadTaskSpec",
    "WalletFileError",
    "NotFound",
    "NotReady",
    "ResultMismatch",
    "NeedsConfirmation",
    "Interrupted",
    "NodeError",
]


class WrongPassword(UserError):
    exit_code = 3
    kind = "wrong-password"


class InsufficientBalance(UserError):
    exit_code = 4
    kind = "insufficient-balance"


class BadAddress(UserError):
    exit_code = 5
    kind = "bad-address"


class NodeUnreachable(UserError):
    exit_code = 6
    kind = "node-unreachable"


class TxRejectedByNode(UserError):
    exit_code = 7
    kind = "tx-rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(f"transaction rejected by the node: {reason}")
        self.reason = reason


class BadTaskSpec(UserError):
    exit_code = 8
    kind = "bad-task-spec"


class WalletFileError(UserError):
    exit_code = 9
    kind = "wallet-file"


class NotFound(UserError):
    exit_code = 10
    kind = "not-found"


class NotReady(UserError):
    exit_code = 10
    kind = "not-ready"


class ResultMismatch(UserError):
    exit_code = 11
    kind = "result-mismatch"


class NeedsConfirmation(UserError):
    exit_code = 13
    kind = "needs-confirmation"


class Interrupted(UserError):
    exit_code = 130
    kind = "interrupted"


class NodeError(UserError):
    exit_code = 12
    kind = "node-error"

    def __init__(self, message: str, status: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail  # the node's own error text
