"""What `pouw wallet` and `pouw task` share: options, passwords, unlocking, fees, paying addresses,
sending.

Password sources, first that is given wins: --password-file FILE (its first line), the
environment variable POUW_WALLET_PASSWORD, then a prompt on the terminal (getpass; three tries
to get it right). A new password must have at least 8 characters; its strength (zxcvbn's
estimate of the guesses needed) is shown at the prompt, which refuses an easily guessed one.

Fees: the default fee is the node's estimate (GET /api/fees: a rate in base units per byte,
times this transaction's size); a fee below the node's minimum relay fee is refused naming the
minimum; a fee above 10% of the amount (unless it is no more than the estimate) or above
1 POUW needs --yes. On a terminal, a send shows what it will do and asks before signing.
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
from chain.address import AddressError, format_address, parse_address
from chain.keys import PrivateKey
from chain.tx import Transaction
from p2p.wallet.amounts import UNITS_PER_COIN, AmountError, format_amount, parse_amount
from p2p.wallet.client import NodeClient, resolve_node_url
from p2p.wallet.errors import (
    BadAddress,
    InsufficientBalance,
    NeedsConfirmation,
    NodeError,
    NotFound,
    NotReady,
    UserError,
    WalletFileError,
    WrongPassword,
)
from p2p.wallet.keystore import (
    Keystore,
    KeystoreError,
    Unlocked,
    WalletEntry,
    WrongPasswordError,
    open_keyfile,
    resolve_wallet_dir,
)

PASSWORD_ENV = "POUW_WALLET_PASSWORD"
WALLET_NAME_ENV = "POUW_WALLET"
DEFAULT_WALLET_NAME = "default"
MIN_PASSWORD_LENGTH = 8
MIN_PROMPT_SCORE = 2  # zxcvbn score (0 .. 4) a password typed at the prompt must reach
PASSWORD_TRIES = 3
FEE_SHARE_PERCENT = (
    10  # a fee above this share of the amount needs --yes (unless it is at most the estimate)
)
FEE_CEILING = 1 * UNITS_PER_COIN  # a fee above this needs --yes
_STRENGTH = ("very weak", "weak", "fair", "strong", "very strong")


def common_options(
    wallet: bool = True, node: bool = True, password: bool = True
) -> argparse.ArgumentParser:
    """A parent parser with the options every wallet and task command takes (after the command
    name)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--json", action="store_true", help="machine-readable JSON output (errors too, on stdout)"
    )
    if wallet:
        p.add_argument(
            "--wallet-dir",
            default=None,
            metavar="DIR",
            help="wallet directory (default $POUW_WALLET_DIR or ~/.pouw/wallet)",
        )
        p.add_argument(
            "-w",
            "--wallet",
            default=None,
            metavar="NAME",
            help=f"wallet name (default $POUW_WALLET or {DEFAULT_WALLET_NAME!r})",
        )
    if password:
        p.add_argument(
            "--password-file",
            default=None,
            metavar="FILE",
            help=f"read the password from FILE's first line (else ${PASSWORD_ENV}, else a prompt)",
        )
    if node:
        p.add_argument(
            "--node",
            default=None,
            metavar="URL",
            help="node API URL (default $POUW_NODE or http://127.0.0.1:8080)",
        )
    return p


# --- output ---------------------------------------------------------------------------------------


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


# --- wallets and passwords ------------------------------------------------------------------------


def keystore(args: argparse.Namespace) -> Keystore:
    return Keystore(resolve_wallet_dir(getattr(args, "wallet_dir", None)))


def wallet_name(args: argparse.Namespace) -> str:
    return getattr(args, "wallet", None) or os.environ.get(WALLET_NAME_ENV) or DEFAULT_WALLET_NAME


def _password_source(args: argparse.Namespace) -> str | None:
    """The password from --password-file or the environment; None when it must be asked for."""
    path = getattr(args, "password_file", None)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(
                f"--password-file {path}: cannot read ({getattr(exc, 'strerror', None) or exc})"
            ) from None
        return text.splitlines()[0] if text else ""
    if os.environ.get(PASSWORD_ENV) is not None:
        return os.environ[PASSWORD_ENV]
    return None


def password_strength(password: str) -> tuple[int, str]:
    """(zxcvbn score 0 .. 4, one line of feedback) for a new password."""
    from zxcvbn import zxcvbn

    result = zxcvbn(password[:100])  # zxcvbn's cost grows with length; 100 characters is plenty
    score = int(result["score"])
    feedback = result.get("feedback") or {}
    notes = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
    text = " ".join(n for n in notes if n)
    return score, f"password strength: {_STRENGTH[score]} ({score}/4)" + (
        f": {text}" if text else ""
    )


def _too_short(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return (
            f"the password has {len(password)} characters; use at least {MIN_PASSWORD_LENGTH} "
            "(four or five random words make a strong one)"
        )
    return None


def read_new_password(args: argparse.Namespace, prompt: str = "New password: ") -> str:
    """A password for a new key file: at least 8 characters; at the prompt, strong enough and
    typed twice."""
    given = _password_source(args)
    if given is not None:
        if not given:
            raise UserError("the password is empty")
        problem = _too_short(given)
        if problem:
            raise UserError(problem)
        score, feedback = password_strength(given)
        if score < MIN_PROMPT_SCORE and not getattr(args, "json", False):
            print(f"warning: {feedback}", file=sys.stderr)
        return given
    for attempt in range(PASSWORD_TRIES):
        password = ask_secret(prompt)
        problem = _too_short(password)
        score, feedback = password_strength(password) if not problem else (0, "")
        if not problem and score < MIN_PROMPT_SCORE:
            problem = f"{feedback.rstrip('.')}. Pick one that is harder to guess"
        if problem:
            left = PASSWORD_TRIES - attempt - 1
            say(
                f"{problem}" + (f" ({left} {'try' if left == 1 else 'tries'} left)" if left else "")
            )
            continue
        say(feedback)
        if _has_terminal() and ask_secret("Repeat the password: ") != password:
            raise UserError("the passwords do not match; nothing was written")
        return password
    raise UserError(f"no acceptable password in {PASSWORD_TRIES} tries; nothing was written")


def _has_terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        return True
    except OSError:
        return False


def interactive() -> bool:
    """A person at a terminal: standard input is one and /dev/tty opens (prompts may ask and
    wait)."""
    try:
        return sys.stdin.isatty() and _has_terminal()
    except (AttributeError, ValueError):
        return False


def say(text: str) -> None:
    """A line for the person at the terminal (stderr), never part of the command's output."""
    print(text, file=sys.stderr, flush=True)


def ask_secret(prompt: str) -> str:
    """Ask on the terminal without echo; with no terminal, read one line of stdin (for pipes)."""
    if _has_terminal():
        try:
            return getpass.getpass(prompt)
        except EOFError:
            raise UserError("no answer given on the terminal") from None
    line = sys.stdin.readline()
    if not line:
        raise UserError(
            "no password: no terminal to ask on and nothing on stdin; use --password-file FILE "
            f"or ${PASSWORD_ENV}"
        )
    return line.rstrip("\r\n")


def ask_line(prompt: str) -> str:
    """Ask on the terminal with echo (stderr prompt); with no terminal, read one line of stdin."""
    if interactive():
        print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        raise UserError("no answer: standard input ended")
    return line.rstrip("\r\n")


def ask_yes(prompt: str) -> bool:
    """y/yes on the terminal; anything else (or Enter) is no."""
    return ask_line(f"{prompt} [y/N] ").strip().lower() in ("y", "yes")


def keystore_error(exc: KeystoreError) -> UserError:
    """WrongPassword for a wrong password; WalletFileError for a missing, taken or unreadable key
    file."""
    if isinstance(exc, WrongPasswordError):
        return WrongPassword(str(exc))
    return WalletFileError(str(exc))


def load_wallet(args: argparse.Namespace) -> WalletEntry:
    try:
        return keystore(args).load(wallet_name(args))
    except KeystoreError as exc:
        raise keystore_error(exc) from None


def unlock(
    args: argparse.Namespace, entry: WalletEntry | None = None
) -> tuple[WalletEntry, Unlocked]:
    """The wallet's keys: the file is found (and checked) before the password is asked for; at a
    prompt a wrong password may be typed again, three tries in all."""
    entry = entry or load_wallet(args)
    prompt = f"Password for wallet {entry.name!r} ({entry.keyfile.address}): "
    given = _password_source(args)
    tries = 1 if given is not None else PASSWORD_TRIES
    for attempt in range(tries):
        password = given if given is not None else ask_secret(prompt)
        if not password:
            raise UserError("the password is empty")
        try:
            return entry, open_keyfile(entry.keyfile, password)
        except WrongPasswordError as exc:
            left = tries - attempt - 1
            if not left:
                raise WrongPassword(str(exc) + (f" ({tries} tries)" if tries > 1 else "")) from None
            say(f"wrong password; {left} {'try' if left == 1 else 'tries'} left")
        except KeystoreError as exc:
            raise keystore_error(exc) from None
    raise AssertionError("unreachable")


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
    raise BadAddress(
        f"{what}: {text!r} is neither an address ({problem}) nor the name of a wallet in "
        f"{store.directory}"
    )


def addresses_of(
    args: argparse.Namespace, explicit: str | None
) -> tuple[str | None, tuple[str, ...]]:
    """(wallet name or None, addresses) that a balance or history covers: every address of a
    wallet (-w, or a wallet name given), or the one address given."""
    store = keystore(args)
    if explicit:
        try:
            return None, (format_address(parse_address(explicit)),)
        except AddressError:
            pass
        resolve_address(explicit, store)  # raises BadAddress for a typo or an unknown name
        entry = store.load(explicit)
        return entry.name, entry.keyfile.addresses
    entry = load_wallet(args)
    return entry.name, entry.keyfile.addresses


def client(args: argparse.Namespace) -> NodeClient:
    return NodeClient(resolve_node_url(getattr(args, "node", None)))


# --- fees and paying addresses -------------------------------------------------------------------


Build = Callable[
    [PrivateKey, bytes, int, int], Transaction
]  # (key, chain id, nonce, fee) -> signed transaction
_SIZING_KEY = PrivateKey(
    bytes(range(32))
)  # sizes only: a transaction's size does not depend on its key


def tx_size(build: Build, chain_id: bytes, nonce: int, fee: int) -> int:
    return build(_SIZING_KEY, chain_id, nonce, fee).size


def fee_at_rate(build: Build, chain_id: bytes, nonce: int, rate: int) -> tuple[int, int]:
    """(fee, size): `rate` per byte of the transaction that carries that very fee."""
    fee = 0
    for _ in range(6):  # the fee's own encoding adds a byte or two; this settles in two rounds
        size = tx_size(build, chain_id, nonce, fee)
        if fee == size * rate:
            break
        fee = size * rate
    return fee, tx_size(build, chain_id, nonce, fee)


def spendable(account: dict) -> int:
    """What an account can pay now: its spendable balance where the node reports one, else its
    balance."""
    value = account.get("spendable")
    return value if isinstance(value, int) else account["balance"]


@dataclass(frozen=True)
class Payment:
    """Who pays, with which nonce and fee, for a transaction of `value` (amount or bounty)."""

    address: str
    index: int  # position among the wallet's addresses
    account: dict
    nonce: int
    fee: int
    size: int
    min_fee: int
    estimate_fee: int
    fee_rate: int  # the node's estimate, base units per byte
    min_rate: int
    fee_given: bool  # --fee was given (else the fee is the node's estimate)
    chain_id: bytes
    value: int

    @property
    def cost(self) -> int:
        return self.fee + self.value


def immature_note(account: dict, cost: int) -> str:
    """Why a balance that holds fresh mining rewards cannot pay yet ("" when that is not the
    reason)."""
    immature = account.get("immature_rewards") or []
    if not immature or cost > spendable(account) + sum(r["amount"] for r in immature):
        return ""
    return (
        f"; {format_amount(sum(r['amount'] for r in immature))} POUW more are mining rewards not "
        f"spendable yet (a reward becomes spendable {account.get('reward_maturity')} blocks after "
        f"its block: the next at height {immature[0]['spendable_at_height']})"
    )


def plan_payment(
    node: NodeClient,
    entry: WalletEntry,
    value: int,
    build: Build,
    fee_text: str | None,
    payer: str | None = None,
    nonce: int | None = None,
) -> Payment:
    """Pick the paying address (the first of the wallet's that covers value plus fee, or --from),
    its nonce, and the fee (--fee, else the node's estimate); InsufficientBalance when none can
    pay."""
    status = node.status()
    chain_id = bytes.fromhex(status["chain_id"])
    fees = node.fees()
    rate, min_rate = int(fees["estimate_fee_rate"]), int(fees["min_relay_fee_rate"])
    fixed = parse_amount_arg(fee_text, "--fee") if fee_text is not None else None
    addresses = entry.keyfile.addresses
    candidates = list(enumerate(addresses))
    if payer is not None:
        candidates = [(i, a) for i, a in candidates if a == payer]
        if not candidates:
            raise BadAddress(f"--from: {payer} is not an address of wallet {entry.name!r}")
    best: tuple[int, str, int] | None = None  # (spendable, address, what it needed)
    total = 0
    for index, address in candidates:
        account = node.account(address)
        have = spendable(account)
        total += have
        use_nonce = account.get("next_nonce", account["nonce"]) if nonce is None else nonce
        est_fee, size = fee_at_rate(build, chain_id, use_nonce, rate)
        fee = est_fee if fixed is None else fixed
        size = tx_size(build, chain_id, use_nonce, fee)
        min_fee = size * min_rate
        if fixed is None:
            fee = max(fee, min_fee)
        if value + fee > (1 << 64) - 1:
            raise UserError("the amount plus the fee exceeds the largest amount")
        if have >= value + fee:
            return Payment(
                address,
                index,
                account,
                use_nonce,
                fee,
                size,
                min_fee,
                est_fee,
                rate,
                min_rate,
                fixed is not None,
                chain_id,
                value,
            )
        if best is None or have > best[0]:
            best = (have, address, value + fee)
    assert best is not None
    if len(candidates) == 1:
        raise InsufficientBalance(
            f"insufficient balance: {best[1]} has {format_amount(best[0])} POUW, "
            f"this needs {format_amount(best[2])} POUW (amount and fee)"
            f"{immature_note(node.account(best[1]), best[2])}"
        )
    raise InsufficientBalance(
        f"insufficient balance: no address of wallet {entry.name!r} has {format_amount(best[2])} "
        f"POUW (amount and fee) on its own (the most is {format_amount(best[0])} POUW at "
        f"{best[1]}; {format_amount(total)} POUW over {len(addresses)} addresses); send in parts "
        "with --from ADDRESS"
    )


def check_fee(pay: Payment, value: int, yes: bool, what: str = "the amount") -> None:
    """Refuse a fee under the node's minimum relay fee; a fee far above need asks for --yes."""
    if pay.fee < pay.min_fee:
        raise UserError(
            f"--fee {format_amount(pay.fee)} POUW is below the node's minimum relay fee of "
            f"{format_amount(pay.min_fee)} POUW for this transaction ({pay.size} bytes at "
            f"{pay.min_rate} base units per byte); it would be refused"
        )
    if yes:
        return
    estimate = f"the node's estimate is {format_amount(pay.estimate_fee)} POUW"
    if pay.fee > FEE_CEILING:
        raise NeedsConfirmation(
            f"--fee {format_amount(pay.fee)} POUW is more than {format_amount(FEE_CEILING)} POUW "
            f"({estimate}); pass --yes to pay it anyway"
        )
    if pay.fee > pay.estimate_fee and pay.fee * 100 > value * FEE_SHARE_PERCENT:
        share = f"{pay.fee / value:.0%}" if pay.fee < 100 * value else f"{pay.fee // value}x"
        raise NeedsConfirmation(
            f"--fee {format_amount(pay.fee)} POUW is {share} of {what} {format_amount(value)} POUW "
            f"({estimate}); pass --yes to pay it anyway"
        )


def describe_fee(pay: Payment) -> str:
    if pay.fee_given:
        return (
            f"fee {format_amount(pay.fee)} POUW (--fee; the node's estimate is "
            f"{format_amount(pay.estimate_fee)})"
        )
    return (
        f"fee {format_amount(pay.fee)} POUW (the node's estimate: {pay.fee_rate} base units per "
        f"byte x {pay.size} bytes; its minimum is {format_amount(pay.min_fee)})"
    )


def confirm_send(args: argparse.Namespace, lines: list[str]) -> None:
    """On a terminal and without --yes: show what is about to be signed and ask."""
    if getattr(args, "yes", False) or getattr(args, "json", False) or not interactive():
        return
    for line in lines:
        say(line)
    if not ask_yes("Send?"):
        raise UserError("not sent")


# --- sending --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    tx: Transaction
    nonce: int
    balance_before: int


def sign_and_send(node: NodeClient, unlocked: Unlocked, pay: Payment, build: Build) -> Sent:
    """Sign the planned transaction with the paying address's key and submit it; the node's
    mempool has the last word (pending spends, its fee policy), with its reason."""
    key = unlocked.key_for(pay.address)
    tx = build(key, pay.chain_id, pay.nonce, pay.fee)
    answer = node.submit_tx(tx.to_bytes())
    if answer.get("txid") != tx.txid.hex():
        raise NodeError(
            f"the node acknowledged txid {answer.get('txid')}, expected {tx.txid.hex()}"
        )
    return Sent(tx, pay.nonce, pay.account["balance"])


def pay_and_send(
    args: argparse.Namespace,
    node: NodeClient,
    entry: WalletEntry,
    value: int,
    build: Build,
    payer: str | None,
    describe: Callable[[Payment], list[str]],
    what: str = "the amount",
    nonce: int | None = None,
) -> tuple[Payment, Sent]:
    """The whole way from a planned payment to a submitted transaction: pick the payer and fee,
    check the fee, show `describe(pay)` and ask, unlock, sign and submit."""
    pay = plan_payment(node, entry, value, build, args.fee, payer, nonce)
    check_fee(pay, value, args.yes, what)
    confirm_send(args, [*describe(pay), describe_fee(pay), f"total {format_amount(pay.cost)} POUW"])
    _, unlocked = unlock(args, entry)
    return pay, sign_and_send(node, unlocked, pay, build)


def wait_confirmed(node: NodeClient, txid: str, timeout: float) -> dict:
    """Poll until the transaction is in a block on the best chain; NotReady after `timeout`
    seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = node.tx(txid)
        except NotFound:
            raise NotFound(
                f"transaction {txid} is neither pending nor confirmed any more (dropped from the "
                "mempool?)"
            ) from None
        if info.get("status") == "confirmed":
            return info
        if time.monotonic() >= deadline:
            raise NotReady(
                f"transaction {txid} still pending after {timeout:.0f} s (it stays in the mempool)"
            )
        time.sleep(0.5)
