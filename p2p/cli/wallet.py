"""`pouw wallet ...`: HD wallets from a recovery phrase, balances, transfers and history, through a node's HTTP API.

    pouw wallet create [-w NAME] [--words 24|12] [--passphrase]   a new wallet: shows its recovery phrase once
    pouw wallet restore [-w NAME] [--passphrase] [--gap-limit 20]  rebuild a wallet from its phrase, find its addresses
    pouw wallet backup [-w NAME]              show the recovery phrase and derivation path again
    pouw wallet address [-w NAME] [--new | --all]
    pouw wallet list
    pouw wallet balance [ADDRESS|NAME]        over every address of the wallet
    pouw wallet send TO AMOUNT [--fee F] [--from ADDRESS] [--yes]
    pouw wallet history [ADDRESS|NAME]        over every address of the wallet, newest first
    pouw wallet import [-w NAME] [--key-file FILE]   a plain private key (64 hex digits)
    pouw wallet export [-w NAME] [--index I]  print one address's private key (hex): keep it secret

Keys derive from the phrase along m/44'/1'/0'/0'/i' (SLIP-0010 Ed25519; see p2p/wallet/hd_wallet.py).
Every command takes --json; --node URL picks the node; see docs/wallet.md.
"""  # noqa: E501 (printed as is by --help: RawDescriptionHelpFormatter)

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from p2p.cli.exits import handles_user_errors
from p2p.wallet.session import common_options

CONFIRM_WORDS = 3  # words of a new phrase the user types back before the wallet is written


def register(sub: argparse._SubParsersAction) -> None:
    wallet = sub.add_parser(
        "wallet",
        help="recovery phrases, addresses, balances, transfers and history (encrypted key store)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wsub = wallet.add_subparsers(dest="wallet_command", metavar="WALLET_COMMAND", required=True)
    local = common_options(node=False)
    local_nopw = common_options(node=False, password=False)
    remote_nopw = common_options(password=False)
    remote = common_options()
    scrypt_help = (
        "scrypt cost, a power of two (default 131072 or $POUW_WALLET_SCRYPT_N; lower only for "
        "tests)"
    )

    p = wsub.add_parser(
        "create",
        parents=[local],
        help="create a wallet from a new recovery phrase, encrypted under a password",
    )
    p.add_argument(
        "--words", type=int, default=24, choices=(12, 24), help="words in the phrase (default 24)"
    )
    p.add_argument(
        "--passphrase",
        action="store_true",
        help="also ask for a BIP39 passphrase (an extra secret word: the phrase alone then "
        "restores nothing)",
    )
    p.add_argument(
        "--passphrase-file",
        default=None,
        metavar="FILE",
        help="read the BIP39 passphrase from FILE's first line",
    )
    p.add_argument(
        "--no-confirm",
        action="store_true",
        help="do not ask for words of the phrase back (it is shown all the same)",
    )
    p.add_argument("--scrypt-n", type=int, default=None, metavar="N", help=scrypt_help)
    p.set_defaults(func=handles_user_errors(_cmd_create))

    p = wsub.add_parser(
        "restore",
        parents=[remote],
        help="rebuild a wallet from its recovery phrase; find its used addresses on the chain",
    )
    p.add_argument(
        "--phrase-file",
        default=None,
        metavar="FILE",
        help="read the phrase from FILE (default: ask for it)",
    )
    p.add_argument(
        "--passphrase",
        action="store_true",
        help="ask for the BIP39 passphrase the wallet was made with",
    )
    p.add_argument(
        "--passphrase-file",
        default=None,
        metavar="FILE",
        help="read the BIP39 passphrase from FILE's first line",
    )
    p.add_argument(
        "--gap-limit",
        type=int,
        default=20,
        metavar="N",
        help="stop scanning after N unused addresses in a row (default 20)",
    )
    p.add_argument(
        "--no-scan",
        action="store_true",
        help="do not ask a node: restore address 0 only (add more with address --new)",
    )
    p.add_argument("--scrypt-n", type=int, default=None, metavar="N", help=scrypt_help)
    p.set_defaults(func=handles_user_errors(_cmd_restore))

    p = wsub.add_parser(
        "backup",
        parents=[local],
        help="show the wallet's recovery phrase and derivation path (password needed)",
    )
    p.set_defaults(func=handles_user_errors(_cmd_backup))

    p = wsub.add_parser(
        "import",
        parents=[local],
        help="import a plain private key (64 hex digits) under a new wallet name",
    )
    p.add_argument(
        "--key-file",
        default=None,
        metavar="FILE",
        help="read the key's hex from FILE (default: ask for it)",
    )
    p.add_argument("--scrypt-n", type=int, default=None, metavar="N", help=scrypt_help)
    p.set_defaults(func=handles_user_errors(_cmd_import))

    p = wsub.add_parser(
        "export",
        parents=[local],
        help="print one address's private key (hex); anyone holding it can spend",
    )
    p.add_argument(
        "--index",
        type=int,
        default=0,
        metavar="I",
        help="which of the wallet's addresses (default 0)",
    )
    p.set_defaults(func=handles_user_errors(_cmd_export))

    p = wsub.add_parser(
        "list", parents=[local_nopw], help="list the wallets in the wallet directory"
    )
    p.set_defaults(func=handles_user_errors(_cmd_list))

    p = wsub.add_parser(
        "address",
        parents=[local],
        help="print the wallet's first address (no password needed), or derive a new one",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--new",
        action="store_true",
        help="derive the wallet's next address and print it (password needed)",
    )
    g.add_argument(
        "--all",
        action="store_true",
        help="print every address of the wallet with its index and path",
    )
    p.set_defaults(func=handles_user_errors(_cmd_address))

    p = wsub.add_parser(
        "balance",
        parents=[remote_nopw],
        help="balance over every address of the wallet, from the node",
    )
    p.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="ADDRESS|NAME",
        help="another address or wallet (default: -w)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="check each balance against headers this wallet verifies itself from genesis (a tree "
        "proof)",
    )
    p.add_argument(
        "--network",
        default=None,
        metavar="NAME|FILE",
        help="with --verify: the network's preset or TOML file (default: the preset the node "
        "names)",
    )
    p.set_defaults(func=handles_user_errors(_cmd_balance))

    p = wsub.add_parser("send", parents=[remote], help="send POUW to an address or wallet name")
    p.add_argument(
        "to", metavar="TO", help="recipient: a checksummed address (pw...) or a wallet name"
    )
    p.add_argument("amount", metavar="AMOUNT", help="amount in POUW, up to 8 decimals (e.g. 1.5)")
    p.add_argument(
        "--fee",
        default=None,
        help="fee in POUW (default: the node's estimate for this transaction)",
    )
    p.add_argument(
        "--from",
        dest="payer",
        default=None,
        metavar="ADDRESS|INDEX",
        help="the wallet's address that pays (default: the first that covers amount and fee)",
    )
    p.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask before sending; allow a fee above 10%% of the amount or above 1 POUW",
    )
    p.add_argument(
        "--nonce",
        type=int,
        default=None,
        help="use this nonce (default: the node's next nonce); to replace a pending transaction "
        "with a higher fee",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for the transaction to be in a block",
    )
    p.set_defaults(func=handles_user_errors(_cmd_send))

    p = wsub.add_parser(
        "history",
        parents=[remote_nopw],
        help="transactions and rewards of every address of the wallet, newest first",
    )
    p.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="ADDRESS|NAME",
        help="another address or wallet (default: -w)",
    )
    p.add_argument("--limit", type=int, default=20, help="entries to show, 1 .. 100 (default 20)")
    p.add_argument("--offset", type=int, default=0, help="entries to skip (default 0)")
    p.set_defaults(func=handles_user_errors(_cmd_history))


# --- phrases --------------------------------------------------------------------------------------


def backup_text(name: str, secret, first_address: str) -> str:
    """The words, numbered, and what restoring needs: the derivation path and whether a
    passphrase was used."""
    from p2p.wallet.hd_wallet import PATH_TEMPLATE

    words = secret.words
    rows = []
    for r in range(0, len(words), 4):
        rows.append(
            "  "
            + "".join(
                f"{i + 1:2d}. {w:<10s}" for i, w in enumerate(words[r : r + 4], start=r)
            ).rstrip()
        )
    passphrase = (
        "yes: restoring needs it with the words (it is not stored anywhere)"
        if secret.passphrase
        else "none"
    )
    return "\n".join(
        [
            f"Recovery phrase of wallet {name!r} (BIP39, {len(words)} English words):",
            *rows,
            f"Derivation: SLIP-0010 Ed25519 keys from the BIP39 seed, path {PATH_TEMPLATE} for "
            "address i (all levels hardened)",
            f"Passphrase: {passphrase}",
            f"Address 0:  {first_address}",
            "Write the words down in order and keep them offline: they restore every address of "
            "this wallet",
            "(pouw wallet restore). Anyone who has them can spend.",
        ]
    )


def _read_passphrase(args: argparse.Namespace, new: bool) -> str:
    from p2p.wallet.errors import UserError
    from p2p.wallet.session import ask_secret, interactive

    if args.passphrase_file:
        try:
            text = Path(args.passphrase_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(
                f"--passphrase-file {args.passphrase_file}: cannot read "
                f"({getattr(exc, 'strerror', None) or exc})"
            ) from None
        passphrase = text.splitlines()[0] if text else ""
        if not passphrase:
            raise UserError(f"--passphrase-file {args.passphrase_file}: the first line is empty")
        return passphrase
    if not args.passphrase:
        return ""
    passphrase = ask_secret("BIP39 passphrase: ")
    if not passphrase:
        raise UserError("the passphrase is empty (leave out --passphrase for none)")
    if new and interactive() and ask_secret("Repeat the passphrase: ") != passphrase:
        raise UserError("the passphrases do not match; nothing was written")
    return passphrase


def _confirm_words(secret) -> None:
    """Ask for CONFIRM_WORDS random words of the phrase back; UserError (nothing written) after
    three misses."""
    import secrets as pysecrets

    from p2p.wallet.errors import UserError
    from p2p.wallet.hd_wallet import normalize_word
    from p2p.wallet.session import ask_line, say

    words = secret.words
    ask_line("Write the words down in order, then press Enter: ")
    sys.stderr.write("\x1b[2J\x1b[H")  # clear the screen: the words are typed from the written copy
    sys.stderr.flush()
    positions = sorted(pysecrets.SystemRandom().sample(range(len(words)), CONFIRM_WORDS))
    say(f"To check your copy, type {CONFIRM_WORDS} of the words.")
    misses = 0
    for pos in positions:
        while True:
            answer = normalize_word(ask_line(f"Word #{pos + 1}: "))
            if answer == words[pos]:
                break
            misses += 1
            if misses >= 3:
                raise UserError(
                    "three wrong words: nothing was written; run `pouw wallet create` again for a "
                    "new phrase"
                )
            say(f"that is not word #{pos + 1}; look at your copy again")
    say("The copy checks out.")


def _check_new_name(args: argparse.Namespace):
    from p2p.wallet.errors import UserError, WalletFileError
    from p2p.wallet.keystore import KeystoreError, scrypt_params
    from p2p.wallet.session import keystore, keystore_error, wallet_name

    store, name = keystore(args), wallet_name(args)
    try:  # a bad or taken name is reported before the password is asked for
        path = store.path_for(name)
    except KeystoreError as exc:
        raise keystore_error(exc) from None
    if path.exists():
        raise WalletFileError(
            f"wallet {name!r} already exists ({path}); pick another name with -w NAME"
        )
    try:
        scrypt_params(args.scrypt_n)  # a bad cost too
    except KeystoreError as exc:
        raise UserError(f"--scrypt-n: {exc}") from None
    return store, name


def _created(args: argparse.Namespace, entry, extra: dict, text: str) -> None:
    from p2p.wallet.session import emit

    emit(
        args,
        {
            "name": entry.name,
            "address": entry.keyfile.address,
            "addresses": list(entry.keyfile.addresses),
            "file": str(entry.path),
            **extra,
        },
        f"{text}wallet {entry.name!r}: {entry.keyfile.address}\n"
        f"key file {entry.path} (encrypted; keep the password safe: it cannot be recovered)",
    )


def _cmd_create(args: argparse.Namespace) -> int:
    from p2p.wallet.hd_wallet import DERIVATION, PATH_TEMPLATE, new_secret
    from p2p.wallet.keystore import KeystoreError
    from p2p.wallet.session import interactive, keystore_error, read_new_password, say

    store, name = _check_new_name(args)
    password = read_new_password(args, prompt=f"New password for wallet {name!r}: ")
    passphrase = _read_passphrase(args, new=True)
    secret = new_secret(args.words, passphrase)
    text = backup_text(name, secret, secret.address(0))
    shown_here = interactive() and not args.json
    if shown_here:
        say(text)
        if not args.no_confirm:
            _confirm_words(secret)
    try:
        entry = store.create_hd(name, secret, password, scrypt_n=args.scrypt_n)
    except KeystoreError as exc:
        raise keystore_error(exc) from None
    extra = {
        "derivation": DERIVATION,
        "path": PATH_TEMPLATE,
        "words": len(secret.words),
        "passphrase": secret.passphrase,
    }
    if (
        not shown_here
    ):  # a script's only chance to see the phrase (`pouw wallet backup` shows it again)
        extra["phrase"] = secret.phrase
    _created(args, entry, extra, "" if shown_here else text + "\n\n")
    return 0


def _read_phrase(args: argparse.Namespace):
    from p2p.wallet.errors import UserError
    from p2p.wallet.hd_wallet import PhraseError, normalize_phrase
    from p2p.wallet.session import ask_line, interactive, say

    if args.phrase_file:
        try:
            text = Path(args.phrase_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(
                f"--phrase-file {args.phrase_file}: cannot read "
                f"({getattr(exc, 'strerror', None) or exc})"
            ) from None
        tries = [text]
    else:
        tries = None
    for attempt in range(3 if tries is None else 1):
        text = tries[0] if tries else ask_line("Recovery phrase (12 or 24 words): ")
        try:
            return normalize_phrase(text)
        except PhraseError as exc:
            if tries is not None or not interactive() or attempt == 2:
                raise UserError(f"recovery phrase: {exc}") from None
            say(f"{exc}; type the phrase again")
    raise AssertionError("unreachable")


def _cmd_restore(args: argparse.Namespace) -> int:
    from p2p.wallet.errors import UserError, WalletFileError
    from p2p.wallet.hd_wallet import DERIVATION, PATH_TEMPLATE, scan_used, secret_from_phrase
    from p2p.wallet.keystore import KeystoreError
    from p2p.wallet.session import client, keystore_error, read_new_password, say

    store, name = _check_new_name(args)
    if args.gap_limit < 1 or args.gap_limit > 1000:
        raise UserError("--gap-limit must be 1 .. 1000")
    phrase = _read_phrase(args)
    passphrase = _read_passphrase(args, new=False)
    secret = secret_from_phrase(phrase, passphrase)
    other = store.owner_of([secret.address(0)])
    if other is not None:
        raise WalletFileError(
            f"wallet {other.name!r} already holds this phrase (address 0 {secret.address(0)}); "
            f"use -w {other.name}, or delete {other.path} first"
        )
    if args.no_scan:
        addresses, scanned = [secret.address(0)], 0
    else:
        node = client(args)
        node.status()  # an unreachable node is reported before the password is asked for

        def used(address: str) -> bool:
            return node.history(address, 0, 1)["total"] > 0 or node.account(address)["balance"] > 0

        seen: list[tuple[int, str, bool]] = []
        addresses = scan_used(secret, used, args.gap_limit, lambda i, a, u: seen.append((i, a, u)))
        scanned = len(seen)
        if not args.json:
            found = [i for i, _, u in seen if u]
            say(
                f"scanned {scanned} addresses on {node.base_url} (gap limit {args.gap_limit}): "
                + (f"used: {', '.join(map(str, found))}" if found else "none used yet")
            )
    password = read_new_password(args, prompt=f"New password for wallet {name!r}: ")
    try:
        entry = store.create_hd(name, secret, password, addresses, scrypt_n=args.scrypt_n)
    except KeystoreError as exc:
        raise keystore_error(exc) from None
    _created(
        args,
        entry,
        {
            "derivation": DERIVATION,
            "path": PATH_TEMPLATE,
            "scanned": scanned,
            "passphrase": secret.passphrase,
        },
        f"restored {len(addresses)} address{'es' if len(addresses) != 1 else ''} "
        f"({PATH_TEMPLATE}, i = 0 .. {len(addresses) - 1})\n",
    )
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    from p2p.wallet.errors import UserError
    from p2p.wallet.hd_wallet import DERIVATION, PATH_TEMPLATE
    from p2p.wallet.session import emit, load_wallet, unlock

    entry = load_wallet(args)
    if not entry.keyfile.is_hd:
        raise UserError(
            f"wallet {entry.name!r} holds one plain key, not a phrase; back it up with `pouw "
            "wallet export` or by copying its key file"
        )
    entry, unlocked = unlock(args, entry)
    secret = unlocked.secret
    assert secret is not None  # an HD key file unlocks to its phrase
    emit(
        args,
        {
            "name": entry.name,
            "phrase": secret.phrase,
            "words": len(secret.words),
            "derivation": DERIVATION,
            "path": PATH_TEMPLATE,
            "passphrase": secret.passphrase,
            "addresses": list(entry.keyfile.addresses),
        },
        backup_text(entry.name, secret, entry.keyfile.address),
    )
    return 0


# --- plain keys -----------------------------------------------------------------------------------


def _cmd_import(args: argparse.Namespace) -> int:
    from chain.keys import InvalidKey, PrivateKey
    from p2p.wallet.errors import UserError
    from p2p.wallet.keystore import KeystoreError
    from p2p.wallet.session import ask_secret, keystore_error, read_new_password

    store, name = _check_new_name(args)
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
        raise UserError(
            "the private key must be 64 hex digits (as `pouw wallet export` prints it)"
        ) from None
    from chain.address import address_of, format_address

    address = format_address(address_of(key.public_key()))
    other = store.owner_of([address])
    if other is not None:  # before the password is asked for
        raise keystore_error(
            KeystoreError(
                f"wallet {other.name!r} already holds this key (address {address}); "
                f"use -w {other.name}, or delete {other.path} first"
            )
        )
    password = read_new_password(args, prompt=f"New password for wallet {name!r}: ")
    try:
        entry = store.create(name, key, password, args.scrypt_n)
    except KeystoreError as exc:
        raise keystore_error(exc) from None
    _created(args, entry, {}, "")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from p2p.wallet.errors import UserError
    from p2p.wallet.hd_wallet import path_of
    from p2p.wallet.session import emit, load_wallet, unlock

    entry = load_wallet(args)
    addresses = entry.keyfile.addresses
    if not 0 <= args.index < len(addresses):
        raise UserError(
            f"--index {args.index}: wallet {entry.name!r} has addresses 0 .. {len(addresses) - 1}"
        )
    entry, unlocked = unlock(args, entry)
    address = addresses[args.index]
    key = unlocked.key_for(address)
    if not args.json:
        print(
            "Anyone who has this key can spend from the address; do not share it.", file=sys.stderr
        )
    data = {
        "name": entry.name,
        "address": address,
        "index": args.index,
        "private_key": key.to_bytes().hex(),
    }
    if entry.keyfile.is_hd:
        data["path"] = path_of(args.index)
    emit(args, data, key.to_bytes().hex())
    return 0


# --- listing and addresses ------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    from p2p.wallet.session import emit, keystore

    store = keystore(args)
    entries = store.entries()
    rows = [
        {
            "name": e.name,
            "address": e.keyfile.address,
            "kind": "hd" if e.keyfile.is_hd else "key",
            "addresses": len(e.keyfile.addresses),
            "file": str(e.path),
        }
        for e in entries
    ]
    text = (
        "\n".join(
            f"{e.name:20s} {e.keyfile.address}  "
            + (
                f"phrase, {len(e.keyfile.addresses)} "
                f"address{'es' if len(e.keyfile.addresses) != 1 else ''}"
                if e.keyfile.is_hd
                else "plain key"
            )
            for e in entries
        )
        or f"no wallets in {store.directory} (pouw wallet create)"
    )
    emit(args, {"directory": str(store.directory), "wallets": rows}, text)
    return 0


def _cmd_address(args: argparse.Namespace) -> int:
    from p2p.wallet.errors import UserError
    from p2p.wallet.hd_wallet import path_of
    from p2p.wallet.keystore import KeystoreError
    from p2p.wallet.session import emit, keystore, keystore_error, load_wallet, unlock

    entry = load_wallet(args)
    addresses = entry.keyfile.addresses
    if args.new:
        if not entry.keyfile.is_hd:
            raise UserError(
                f"wallet {entry.name!r} holds one plain key: it has one address; "
                "a wallet made from a phrase (pouw wallet create) derives new ones"
            )
        entry, unlocked = unlock(args, entry)
        index = len(addresses)
        assert unlocked.secret is not None  # an HD key file unlocks to its phrase
        address = unlocked.secret.address(index)
        try:
            entry = keystore(args).save_addresses(entry, unlocked, (*addresses, address))
        except KeystoreError as exc:
            raise keystore_error(exc) from None
        emit(
            args,
            {"name": entry.name, "address": address, "index": index, "path": path_of(index)},
            address,
        )
        return 0
    if args.all:
        rows = [
            {"index": i, "address": a, "path": path_of(i) if entry.keyfile.is_hd else None}
            for i, a in enumerate(addresses)
        ]
        emit(
            args,
            {"name": entry.name, "addresses": rows},
            "\n".join(f"{r['index']:4d}  {r['address']}  {r['path'] or 'plain key'}" for r in rows),
        )
        return 0
    emit(args, {"name": entry.name, "address": entry.keyfile.address}, entry.keyfile.address)
    return 0


# --- node commands --------------------------------------------------------------------------------


def _verify_balances(
    args: argparse.Namespace, node, addresses: Sequence[str], answers: list[dict]
) -> dict:
    """Verify the node's header chain from genesis and each answer's proof; UserError if not."""
    import time

    from chain.address import parse_address
    from consensus.params import ParamsError, load_params
    from p2p.errors import UserError
    from p2p.wallet.light_client import VerifyFailed, verify_account, verify_header_chain

    network = args.network or node.status()["network"]
    try:
        params = load_params(network)
    except (ParamsError, OSError, ValueError) as exc:
        raise UserError(
            f"--verify needs the network's parameters: {exc} (give --network NAME|FILE)"
        ) from None
    upto = (
        max(int(a["proof"]["height"]) for a in answers if isinstance(a.get("proof"), dict))
        if all(isinstance(a.get("proof"), dict) for a in answers)
        else 0
    )
    encoded: list[bytes] = []
    while len(encoded) <= upto:
        page = node.headers(len(encoded))["headers"]
        if not page:
            break
        encoded += [bytes.fromhex(h) for h in page]
    try:
        headers = verify_header_chain(params, encoded, int(time.time() * 1000))
        results = [
            verify_account(headers, parse_address(a), ans)
            for a, ans in zip(addresses, answers, strict=True)
        ]
    except VerifyFailed as exc:
        raise UserError(f"verification failed, do not trust this node's balance: {exc}") from None
    last = results[0]
    return {
        "height": last.height,
        "block": last.block_hash.hex(),
        "headers_checked": len(headers),
        "network": params.network,
    }


def _cmd_balance(args: argparse.Namespace) -> int:
    from p2p.wallet.amounts import format_amount
    from p2p.wallet.session import addresses_of, amount_json, client, emit, spendable

    name, addresses = addresses_of(args, args.target)
    node = client(args)
    rows = []
    maturity = None
    answers = [node.account(address, proof=args.verify) for address in addresses]
    verified = _verify_balances(args, node, addresses, answers) if args.verify else None
    for i, (address, acct) in enumerate(zip(addresses, answers, strict=True)):
        row = {
            "index": i,
            "address": address,
            "balance": amount_json(acct["balance"]),
            "nonce": acct["nonce"],
            "pending_transactions": acct.get("pending_transactions", 0),
        }
        if "spendable" in acct:
            row["spendable"] = amount_json(spendable(acct))
        if acct.get("immature"):
            row["immature"] = amount_json(acct["immature"])
            maturity = acct.get("reward_maturity")
        rows.append(row)
    total = sum(r["balance"]["units"] for r in rows)
    pending_n = sum(r["pending_transactions"] for r in rows)
    data = {
        "address": rows[0]["address"],
        "balance": amount_json(total),
        "nonce": rows[0]["nonce"],
        "pending_transactions": pending_n,
        "node": node.base_url,
    }
    if "spendable" in rows[0]:
        data["spendable"] = amount_json(sum(r["spendable"]["units"] for r in rows))
    if name is not None:
        data.update(wallet=name, addresses=rows)
    if verified is not None:
        data["verified"] = verified

    immature_total = sum(r["immature"]["units"] for r in rows if "immature" in r)
    if immature_total:
        data["immature"] = amount_json(immature_total)

    def line(r: dict) -> str:
        pending = f"  ({r['pending_transactions']} pending)" if r["pending_transactions"] else ""
        extra = ""
        if "spendable" in r and r["spendable"]["units"] != r["balance"]["units"]:
            extra = f" ({r['spendable']['pouw']} spendable)"
        if "immature" in r:
            extra += (
                f" + {r['immature']['pouw']} POUW immature (mining rewards, spendable {maturity} "
                "blocks after their block)"
            )
        return f"{r['address']}  {r['balance']['pouw']} POUW{extra}  nonce {r['nonce']}{pending}"

    if len(rows) == 1:
        text = line(rows[0])
    else:
        text = "\n".join(
            [f"wallet {name!r}: {format_amount(total)} POUW over {len(rows)} addresses"]
            + [f"  {r['index']:3d}  {line(r)}" for r in rows]
        )
    if verified is not None:
        text += (
            f"\nverified: {verified['headers_checked']} headers checked from "
            f"{verified['network']}'s genesis, the state proof against block {verified['height']} "
            f"({verified['block'][:16]})"
        )
    emit(args, data, text)
    return 0


def _resolve_payer(args: argparse.Namespace, entry) -> str | None:
    from chain.address import AddressError, format_address, parse_address
    from p2p.wallet.errors import BadAddress

    text = args.payer
    if text is None:
        return None
    addresses = entry.keyfile.addresses
    if text.isdigit():
        i = int(text)
        if i >= len(addresses):
            raise BadAddress(
                f"--from {text}: wallet {entry.name!r} has addresses 0 .. {len(addresses) - 1}"
            )
        return addresses[i]
    try:
        address = format_address(parse_address(text))
    except AddressError as exc:
        raise BadAddress(f"--from: {exc}") from None
    if address not in addresses:
        raise BadAddress(f"--from: {address} is not an address of wallet {entry.name!r}")
    return address


def _cmd_send(args: argparse.Namespace) -> int:
    from chain.address import format_address
    from chain.tx import make_transfer
    from p2p.wallet.amounts import format_amount
    from p2p.wallet.errors import UserError
    from p2p.wallet.session import (
        amount_json,
        client,
        emit,
        keystore,
        load_wallet,
        parse_amount_arg,
        pay_and_send,
        resolve_address,
        say,
        spendable,
        wait_confirmed,
    )

    # Everything a user can mistype is checked before the node or the password is asked.
    to = resolve_address(args.to, keystore(args), "TO")
    amount = parse_amount_arg(args.amount, "AMOUNT", allow_zero=False)
    if args.fee is not None:
        parse_amount_arg(args.fee, "--fee")
    if args.nonce is not None and args.nonce < 0:
        raise UserError("--nonce must not be negative")
    entry = load_wallet(args)
    payer = _resolve_payer(args, entry)
    node = client(args)

    def build(key, chain_id, nonce, fee):
        return make_transfer(key, chain_id, nonce, fee, to, amount)

    pay, sent = pay_and_send(
        args,
        node,
        entry,
        amount,
        build,
        payer,
        lambda pay: [
            f"send {format_amount(amount)} POUW to {format_address(to)}",
            f"from {pay.address} (address {pay.index} of wallet {entry.name!r}, "
            f"{format_amount(spendable(pay.account))} POUW)",
        ],
        nonce=args.nonce,
    )
    txid = sent.tx.txid.hex()
    data = {
        "txid": txid,
        "from": pay.address,
        "to": format_address(to),
        "amount": amount_json(amount),
        "fee": amount_json(pay.fee),
        "fee_source": "--fee" if pay.fee_given else "estimate",
        "nonce": sent.nonce,
        "status": "pending",
    }
    if args.wait > 0:
        if not args.json:
            say(f"sent {txid}; waiting up to {args.wait:g} s for a block...")
        info = wait_confirmed(node, txid, args.wait)
        data.update(status="confirmed", height=info["height"], block=info["block"])
    where = (
        f"in block {data['height']}"
        if data["status"] == "confirmed"
        else "pending; it is in the next block a miner finds"
    )
    emit(
        args,
        data,
        f"sent {format_amount(amount)} POUW to {format_address(to)} (fee "
        f"{format_amount(pay.fee)}, nonce {sent.nonce})\ntxid {txid}  {where}",
    )
    return 0


def merged_history(
    node, addresses: tuple[str, ...], offset: int, limit: int
) -> tuple[int, list[dict]]:
    """Entries of all `addresses`, newest first (each tagged with its address), and their total."""
    want = offset + limit
    total, items = 0, []
    for address in addresses:
        got: list[dict] = []
        while len(got) < want:
            page = node.history(address, len(got), 100)
            got += page["items"]
            if len(got) >= page["total"] or not page["items"]:
                break
        total += page["total"]
        items += [{**e, "address": address} for e in got[:want]]
    items.sort(key=lambda e: -e["height"])  # stable: an address's own order stays within a height
    return total, items[offset:want]


def _cmd_history(args: argparse.Namespace) -> int:
    from p2p.wallet.amounts import format_amount
    from p2p.wallet.errors import UserError
    from p2p.wallet.session import addresses_of, client, emit

    if not 1 <= args.limit <= 100 or args.offset < 0:
        raise UserError("--limit must be 1 .. 100 and --offset at least 0")
    name, addresses = addresses_of(args, args.target)
    node = client(args)
    if len(addresses) == 1:
        page = node.history(addresses[0], args.offset, args.limit)
        total, items = page["total"], [{**e, "address": addresses[0]} for e in page["items"]]
    else:
        total, items = merged_history(node, addresses, args.offset, args.limit)
    index = {a: i for i, a in enumerate(addresses)}
    head = addresses[0] if len(addresses) == 1 else f"wallet {name!r} ({len(addresses)} addresses)"
    lines = [f"{head}: {total} {'entry' if total == 1 else 'entries'}, newest first"]
    sign = {
        "transfer-out": "-",
        "submit-task": "-",
        "transfer-in": "+",
        "reward": "+",
        "share-reward": "+",
    }
    towards = {"transfer-out": "to", "share-reward": "included by"}
    for e in items:
        amount = f"{sign.get(e['kind'], '')}{format_amount(e['amount'])}"
        fee = f" fee {format_amount(e['fee'])}" if e.get("fee") else ""
        other = (
            f" {towards.get(e['kind'], 'from')} {e['counterparty']}"
            if e.get("counterparty")
            else ""
        )
        txid = f" tx {e['txid'][:16]}" if e.get("txid") else ""
        mine = f" #{index[e['address']]}" if len(addresses) > 1 else ""
        lines.append(
            f"  height {e['height']:6d}{mine}  {e['kind']:12s} {amount:>20s} POUW{fee}{other}{txid}"
        )
    data = {
        "address": addresses[0],
        "addresses": list(addresses),
        "total": total,
        "offset": args.offset,
        "limit": args.limit,
        "items": items,
    }
    if name is not None:
        data["wallet"] = name
    emit(args, data, "\n".join(lines))
    return 0
