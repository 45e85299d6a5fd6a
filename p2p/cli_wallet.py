"""`pouw wallet ...`: encrypted keys, balances, transfers and history, through a node's HTTP API.

    pouw wallet create [-w NAME]              a new key, encrypted under a password
    pouw wallet import [-w NAME] [--key-file FILE]
    pouw wallet export [-w NAME]              print the private key (hex): keep it secret
    pouw wallet list | address [-w NAME]
    pouw wallet balance [ADDRESS|NAME]        balance, nonce, pending transactions
    pouw wallet send TO AMOUNT [--fee F]      TO: an address or a wallet name; AMOUNT in POUW
    pouw wallet history [ADDRESS|NAME]

Every command takes --json; --node URL picks the node; see docs/wallet.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from p2p.user_errors import handles_user_errors
from p2p.wallet_common import DEFAULT_FEE, common_options


def register(sub: argparse._SubParsersAction) -> None:
    wallet = sub.add_parser("wallet", help="keys, balances, transfers and history (encrypted key store)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    wsub = wallet.add_subparsers(dest="wallet_command", metavar="WALLET_COMMAND", required=True)
    local = common_options(node=False)
    local_nopw = common_options(node=False, password=False)
    remote_nopw = common_options(password=False)
    remote = common_options()

    p = wsub.add_parser("create", parents=[local], help="create a new key, encrypted under a password")
    p.add_argument("--scrypt-n", type=int, default=None, metavar="N",
                   help="scrypt cost, a power of two (default 131072 or $POUW_WALLET_SCRYPT_N; lower only for tests)")
    p.set_defaults(func=handles_user_errors(_cmd_create))

    p = wsub.add_parser("import", parents=[local], help="import a private key (64 hex digits) under a new wallet name")
    p.add_argument("--key-file", default=None, metavar="FILE", help="read the key's hex from FILE (default: ask for it)")
    p.add_argument("--scrypt-n", type=int, default=None, metavar="N", help="scrypt cost, as for create")
    p.set_defaults(func=handles_user_errors(_cmd_import))

    p = wsub.add_parser("export", parents=[local], help="print the wallet's private key (hex); anyone holding it can spend")
    p.set_defaults(func=handles_user_errors(_cmd_export))

    p = wsub.add_parser("list", parents=[local_nopw], help="list the wallets in the wallet directory")
    p.set_defaults(func=handles_user_errors(_cmd_list))

    p = wsub.add_parser("address", parents=[local_nopw], help="print the wallet's address (no password needed)")
    p.set_defaults(func=handles_user_errors(_cmd_address))

    p = wsub.add_parser("balance", parents=[remote_nopw], help="balance and nonce from the node")
    p.add_argument("target", nargs="?", default=None, metavar="ADDRESS|NAME", help="another address or wallet (default: -w)")
    p.set_defaults(func=handles_user_errors(_cmd_balance))

    p = wsub.add_parser("send", parents=[remote], help="send POUW to an address or wallet name")
    p.add_argument("to", metavar="TO", help="recipient: a checksummed address (pw...) or a wallet name")
    p.add_argument("amount", metavar="AMOUNT", help="amount in POUW, up to 8 decimals (e.g. 1.5)")
    p.add_argument("--fee", default=DEFAULT_FEE, help=f"fee in POUW (default {DEFAULT_FEE})")
    p.add_argument("--nonce", type=int, default=None,
                   help="use this nonce (default: the node's next nonce); to replace a pending transaction with a higher fee")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to SECONDS for the transaction to be in a block")
    p.set_defaults(func=handles_user_errors(_cmd_send))

    p = wsub.add_parser("history", parents=[remote_nopw], help="transactions and rewards of the address, newest first")
    p.add_argument("target", nargs="?", default=None, metavar="ADDRESS|NAME", help="another address or wallet (default: -w)")
    p.add_argument("--limit", type=int, default=20, help="entries to show, 1 .. 100 (default 20)")
    p.add_argument("--offset", type=int, default=0, help="entries to skip (default 0)")
    p.set_defaults(func=handles_user_errors(_cmd_history))


# --- local commands --------------------------------------------------------------------------------


def _store_new(args: argparse.Namespace, key) -> int:
    from p2p.keystore import KeystoreError, scrypt_params
    from p2p.user_errors import UserError, WalletFileError
    from p2p.wallet_common import emit, keystore, keystore_error, read_password, wallet_name

    store, name = keystore(args), wallet_name(args)
    try:  # a bad or taken name is reported before the password is asked for
        path = store.path_for(name)
    except KeystoreError as exc:
        raise keystore_error(exc) from None
    if path.exists():
        raise WalletFileError(f"wallet {name!r} already exists ({path}); pick another name with -w NAME")
    try:
        scrypt_params(args.scrypt_n)  # a bad cost too
    except KeystoreError as exc:
        raise UserError(f"--scrypt-n: {exc}") from None
    password = read_password(args, confirm=True, prompt=f"New password for wallet {name!r}: ")
    try:
        entry = store.create(name, key, password, args.scrypt_n)
    except KeystoreError as exc:
        raise keystore_error(exc) from None
    emit(args, {"name": entry.name, "address": entry.keyfile.address, "file": str(entry.path)},
         f"wallet {entry.name!r}: {entry.keyfile.address}\nkey file {entry.path} (encrypted; keep the password safe: it cannot be recovered)")
    return 0


def _cmd_create(args: argparse.Namespace) -> int:
    from chain.keys import PrivateKey

    return _store_new(args, PrivateKey.generate())


def _cmd_import(args: argparse.Namespace) -> int:
    from chain.keys import InvalidKey, PrivateKey
    from p2p.user_errors import UserError
    from p2p.wallet_common import ask_secret

    if args.key_file:
        try:
            text = Path(args.key_file).read_text().strip()
        except OSError as exc:
            raise UserError(f"--key-file {args.key_file}: cannot read ({exc.strerror})") from None
    else:
        text = ask_secret("Private key (64 hex digits): ").strip()
    try:
        key = PrivateKey.from_bytes(bytes.fromhex(text.removeprefix("0x")))
    except (ValueError, InvalidKey):
        raise UserError("the private key must be 64 hex digits (as `pouw wallet export` prints it)") from None
    return _store_new(args, key)


def _cmd_export(args: argparse.Namespace) -> int:
    from p2p.wallet_common import emit, unlock

    entry, key = unlock(args)
    if not args.json:
        print("Anyone who has this key can spend from the wallet; do not share it.", file=sys.stderr)
    emit(args, {"name": entry.name, "address": entry.keyfile.address, "private_key": key.to_bytes().hex()}, key.to_bytes().hex())
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from p2p.wallet_common import emit, keystore

    store = keystore(args)
    entries = store.entries()
    rows = [{"name": e.name, "address": e.keyfile.address, "file": str(e.path)} for e in entries]
    text = "\n".join(f"{e.name:20s} {e.keyfile.address}" for e in entries) or f"no wallets in {store.directory} (pouw wallet create)"
    emit(args, {"directory": str(store.directory), "wallets": rows}, text)
    return 0


def _cmd_address(args: argparse.Namespace) -> int:
    from p2p.wallet_common import emit, load_wallet

    entry = load_wallet(args)
    emit(args, {"name": entry.name, "address": entry.keyfile.address}, entry.keyfile.address)
    return 0


# --- node commands ---------------------------------------------------------------------------------


def _cmd_balance(args: argparse.Namespace) -> int:
    from p2p.amounts import format_amount
    from p2p.wallet_common import address_text, amount_json, client, emit

    address = address_text(args, args.target)
    node = client(args)
    acct = node.account(address)
    data = {
        "address": address,
        "balance": amount_json(acct["balance"]),
        "immature": amount_json(acct.get("immature", 0)),
        "nonce": acct["nonce"],
        "pending_transactions": acct.get("pending_transactions", 0),
        "node": node.base_url,
    }
    pending = f"  ({data['pending_transactions']} pending)" if data["pending_transactions"] else ""
    immature = ""
    if acct.get("immature"):
        immature = (f"  + {format_amount(acct['immature'])} POUW immature (mining rewards spendable "
                    f"{acct.get('reward_maturity')} blocks after their block)")
    emit(args, data, f"{address}  {format_amount(acct['balance'])} POUW  nonce {acct['nonce']}{pending}{immature}")
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    from chain.address import format_address
    from chain.tx import make_transfer
    from p2p.amounts import format_amount
    from p2p.user_errors import UserError
    from p2p.wallet_common import (
        amount_json,
        check_funds,
        client,
        emit,
        keystore,
        load_wallet,
        parse_amount_arg,
        resolve_address,
        sign_and_send,
        unlock,
        wait_confirmed,
    )

    # Everything a user can mistype is checked before the password is asked for.
    to = resolve_address(args.to, keystore(args), "TO")
    amount = parse_amount_arg(args.amount, "AMOUNT", allow_zero=False)
    fee = parse_amount_arg(args.fee, "--fee")
    if args.nonce is not None and args.nonce < 0:
        raise UserError("--nonce must not be negative")
    if amount + fee > (1 << 64) - 1:
        raise UserError("AMOUNT plus --fee exceeds the largest amount")
    node = client(args)
    # An unreachable node or a short balance is reported before the password is asked for.
    check_funds(node, load_wallet(args).keyfile.address, amount + fee)
    entry, key = unlock(args)
    sent = sign_and_send(
        node, key, amount + fee, lambda chain_id, nonce: make_transfer(key, chain_id, nonce, fee, to, amount), args.nonce
    )
    txid = sent.tx.txid.hex()
    data = {"txid": txid, "from": entry.keyfile.address, "to": format_address(to), "amount": amount_json(amount),
            "fee": amount_json(fee), "nonce": sent.nonce, "status": "pending"}
    if args.wait > 0:
        if not args.json:
            print(f"sent {txid}; waiting up to {args.wait:g} s for a block...", file=sys.stderr, flush=True)
        info = wait_confirmed(node, txid, args.wait)
        data.update(status="confirmed", height=info["height"], block=info["block"])
    where = f"in block {data['height']}" if data["status"] == "confirmed" else "pending; it is in the next block a miner finds"
    emit(args, data, f"sent {format_amount(amount)} POUW to {format_address(to)} (fee {format_amount(fee)}, nonce {sent.nonce})\n"
                     f"txid {txid}  {where}")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from p2p.amounts import format_amount
    from p2p.user_errors import UserError
    from p2p.wallet_common import address_text, client, emit

    if not 1 <= args.limit <= 100 or args.offset < 0:
        raise UserError("--limit must be 1 .. 100 and --offset at least 0")
    address = address_text(args, args.target)
    page = client(args).history(address, args.offset, args.limit)
    lines = [f"{address}: {page['total']} {'entry' if page['total'] == 1 else 'entries'}, newest first"]
    sign = {"transfer-out": "-", "submit-task": "-", "transfer-in": "+", "reward": "+"}
    for e in page["items"]:
        amount = f"{sign.get(e['kind'], '')}{format_amount(e['amount'])}"
        fee = f" fee {format_amount(e['fee'])}" if e.get("fee") else ""
        other = f" {'to' if e['kind'] == 'transfer-out' else 'from'} {e['counterparty']}" if e.get("counterparty") else ""
        txid = f" tx {e['txid'][:16]}" if e.get("txid") else ""
        lines.append(f"  height {e['height']:6d}  {e['kind']:12s} {amount:>20s} POUW{fee}{other}{txid}")
    emit(args, page, "\n".join(lines))
    return 0
