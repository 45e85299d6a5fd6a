"""What `pouw wallet` and `pouw task` share: options, passwords, unlocking a key, signing and sending.

Password sources, first that is given wins: --password-file FILE (its first line), the
environment variable POUW_WALLET_PASSWORD, then a prompt on the terminal (getpass).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.address import PREFIX as ADDRESS_PREFIX
from chain.address import TEXT_LENGTH as ADDRESS_TEXT_LENGTH
from chain.address import AddressError, address_of, format_address, parse_address
from chain.keys import PrivateKey
from chain.tx import Transaction

from p2p.amounts import AmountError, format_amount, parse_amount
from p2p.client import NodeClient, resolve_node_url
from p2p.keystore import (
    Keystore,
    KeystoreError,
    WalletEntry,
    WrongPasswordError,
    decrypt_key,
    resolve_wallet_dir,
)
from p2p.user_errors import (
    BadAddress,
    InsufficientBalance,
    NodeError,
    NotFound,
    NotReady,
    UserError,
    WalletFileError,
    WrongPassword,
)

PASSWORD_ENV = "POUW_WALLET_PASSWORD"
WALLET_NAME_ENV = "POUW_WALLET"
DEFAULT_WALLET_NAME = "default"
DEFAULT_FEE = "0.0001"


def common_options(wallet: bool = True, node: bool = True, password: bool = True) -> argparse.ArgumentParser:
    """A parent parser with the options every wallet and task command takes (after the command name)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help="machine-readable JSON output (errors too, on stdout)")
    if wallet:
        p.add_argument("--wallet-dir", default=None, metavar="DIR",
                       help="wallet directory (default $POUW_WALLET_DIR or ~/.pouw/wallet)")
        p.add_argument("-w", "--wallet", default=None, metavar="NAME",
                       help=f"wallet name (default $POUW_WALLET or {DEFAULT_WALLET_NAME!r})")
    if password:
        p.add_argument("--password-file", default=None, metavar="FILE",
                       help=f"read the password from FILE's first line (else ${PASSWORD_ENV}, else a prompt)")
    if node:
        p.add_argument("--node", default=None, metavar="URL",
                       help="node API URL (default $POUW_NODE or http://127.0.0.1:8080)")
    return p


# --- output ----------------------------------------------------------------------------------------


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print `data` as JSON with --json, else the human text."""
    print(json.dumps(data, indent=2) if args.json else text)


def amount_json(units: int) -> dict:
    return {"units": units, "pouw": format_amount(units)}


def parse_amount_arg(text: str, what: str, allow_zero: bool = True) -> int:
    try:
        return parse_amount(text, what, allow_zero=allow_zero)
    except AmountError as exc:
        raise UserError(str(exc)) from None


# --- wallets and passwords -------------------------------------------------------------------------


def keystore(args: argparse.Namespace) -> Keystore:
    return Keystore(resolve_wallet_dir(getattr(args, "wallet_dir", None)))


def wallet_name(args: argparse.Namespace) -> str:
    return getattr(args, "wallet", None) or os.environ.get(WALLET_NAME_ENV) or DEFAULT_WALLET_NAME


def read_password(args: argparse.Namespace, confirm: bool = False, prompt: str = "Wallet password: ") -> str:
    path = getattr(args, "password_file", None)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--password-file {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
        password = text.splitlines()[0] if text else ""
    elif os.environ.get(PASSWORD_ENV) is not None:
        password = os.environ[PASSWORD_ENV]
    else:
        password = ask_secret(prompt)
        if confirm and _has_terminal() and ask_secret("Repeat the password: ") != password:
            raise UserError("the passwords do not match; nothing was written")
    if not password:
        raise UserError("the password is empty")
    return password


def _has_terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        return True
    except OSError:
        return False


def ask_secret(prompt: str) -> str:
    """Ask on the terminal without echo; with no terminal, read one line of stdin (for pipes)."""
    if _has_terminal():
        try:
            return getpass.getpass(prompt)
        except EOFError:
            raise UserError("no answer given on the terminal") from None
    line = sys.stdin.readline()
    if not line:
        raise UserError(f"no password: no terminal to ask on and nothing on stdin; use --password-file FILE or ${PASSWORD_ENV}")
    return line.rstrip("\r\n")


def keystore_error(exc: KeystoreError) -> UserError:
    """WrongPassword for a wrong password; WalletFileError for a missing, taken or unreadable key file."""
    if isinstance(exc, WrongPasswordError):
        return WrongPassword(str(exc))
    return WalletFileError(str(exc))


def load_wallet(args: argparse.Namespace) -> WalletEntry:
    try:
        return keystore(args).load(wallet_name(args))
    except KeystoreError as exc:
        raise keystore_error(exc) from None


def unlock(args: argparse.Namespace) -> tuple[WalletEntry, PrivateKey]:
    """The wallet's key: the file is found (and checked) before the password is asked for."""
    entry = load_wallet(args)
    password = read_password(args, prompt=f"Password for wallet {entry.name!r} ({entry.keyfile.address}): ")
    try:
        return entry, decrypt_key(entry.keyfile, password)
    except KeystoreError as exc:
        raise keystore_error(exc) from None


def resolve_address(text: str, store: Keystore, what: str = "address") -> bytes:
    """An address in its checksummed text form, or the name of a wallet in the wallet directory."""
    try:
        return parse_address(text)
    except AddressError as exc:
        problem = str(exc)
    if text.startswith(ADDRESS_PREFIX) and len(text) == ADDRESS_TEXT_LENGTH:
        raise BadAddress(f"{what}: {problem}")  # address-shaped: a typo, not a wallet name
    try:
        return parse_address(store.load(text).keyfile.address)
    except KeystoreError:
        pass
    raise BadAddress(f"{what}: {text!r} is neither an address ({problem}) nor the name of a wallet in {store.directory}")


def address_text(args: argparse.Namespace, explicit: str | None) -> str:
    """The address a read-only command looks at: an explicit address or wallet name, else the wallet's."""
    if explicit:
        return format_address(resolve_address(explicit, keystore(args)))
    return load_wallet(args).keyfile.address


def client(args: argparse.Namespace) -> NodeClient:
    return NodeClient(resolve_node_url(getattr(args, "node", None)))


# --- sending ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    tx: Transaction
    nonce: int
    balance_before: int


def check_funds(node: NodeClient, sender: str, cost: int) -> dict:
    """The sender's account from the node; InsufficientBalance when it cannot pay `cost` (value plus fee)."""
    account = node.account(sender)
    if cost > account["balance"]:
        immature = account.get("immature_rewards") or []
        why = ""
        if immature and cost <= account["balance"] + sum(r["amount"] for r in immature):
            first = immature[0]
            why = (
                f"; {format_amount(sum(r['amount'] for r in immature))} POUW more are mining rewards not spendable yet "
                f"(a reward becomes spendable {account.get('reward_maturity')} blocks after its block: the next at "
                f"height {first['spendable_at_height']})"
            )
        raise InsufficientBalance(
            f"insufficient balance: {sender} has {format_amount(account['balance'])} POUW, "
            f"this needs {format_amount(cost)} POUW (amount and fee){why}"
        )
    return account


def sign_and_send(
    node: NodeClient,
    key: PrivateKey,
    cost: int,
    build: Callable[[bytes, int], Transaction],
    nonce: int | None = None,
) -> Sent:
    """Sign a transaction for the node's chain with the account's next nonce and submit it.

    `cost` (value plus fee) is checked against the balance the node reports before anything is
    signed; the node's mempool still has the last word (pending spends), with its reason.
    """
    sender = format_address(address_of(key.public_key()))
    status = node.status()
    account = check_funds(node, sender, cost)
    use_nonce = account.get("next_nonce", account["nonce"]) if nonce is None else nonce
    tx = build(bytes.fromhex(status["chain_id"]), use_nonce)
    answer = node.submit_tx(tx.to_bytes())
    if answer.get("txid") != tx.txid.hex():
        raise NodeError(f"the node acknowledged txid {answer.get('txid')}, expected {tx.txid.hex()}")
    return Sent(tx, use_nonce, account["balance"])


def wait_confirmed(node: NodeClient, txid: str, timeout: float) -> dict:
    """Poll until the transaction is in a block on the best chain; NotReady after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = node.tx(txid)
        except NotFound:
            raise NotFound(f"transaction {txid} is neither pending nor confirmed any more (dropped from the mempool?)") from None
        if info.get("status") == "confirmed":
            return info
        if time.monotonic() >= deadline:
            raise NotReady(f"transaction {txid} still pending after {timeout:.0f} s (it stays in the mempool)")
        time.sleep(0.5)
