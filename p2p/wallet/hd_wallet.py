"""HD wallets: a BIP39 recovery phrase, and the Ed25519 keys derived from it along one path.

- The phrase: 24 (or 12) words of the BIP39 English list, through the `mnemonic` package
  (BIP39's reference implementation): it encodes 256 (128) bits of entropy with a checksum,
  and PBKDF2-HMAC-SHA512 turns phrase plus an optional passphrase into a 64-byte seed.
- The keys: SLIP-0010 derivation for Ed25519 from that seed, along

      m / 44' / 1' / 0' / 0' / i'        (i = 0, 1, 2, ...: address i of the wallet)

  44' is BIP44's purpose; 1' is SLIP-44's coin type for test networks (pouw has no registered
  coin type of its own); account 0', chain 0'. SLIP-0010 derives Ed25519 keys hardened only,
  so every level is hardened. Each derived 32-byte key is the Ed25519 seed of one address.

SLIP-0010 for Ed25519 is two HMAC-SHA512 calls (the master key from the seed, then one per
level); it is written out here with the standard library and checked against the published
SLIP-0010 test vectors in tests/wallet.

`scan_used` finds a restored wallet's addresses: it walks i = 0, 1, ... and stops after
`gap_limit` addresses in a row that the chain has never seen.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from mnemonic import Mnemonic

from chain.address import address_of, format_address
from chain.keys import PrivateKey

HARDENED = 1 << 31
PURPOSE = 44
COIN_TYPE = 1  # SLIP-44: "testnet (all coins)"; pouw has no registered coin type
ACCOUNT = 0
CHAIN = 0
BASE_PATH = (PURPOSE, COIN_TYPE, ACCOUNT, CHAIN)
PATH_TEMPLATE = f"m/{PURPOSE}'/{COIN_TYPE}'/{ACCOUNT}'/{CHAIN}'/i'"
DERIVATION = (
    "BIP39 phrase -> seed (PBKDF2-HMAC-SHA512, optional passphrase) -> SLIP-0010 Ed25519 keys at "
    f"{PATH_TEMPLATE}"
)
WORD_COUNTS = {12: 128, 24: 256}  # words -> bits of entropy
DEFAULT_WORDS = 24
DEFAULT_GAP_LIMIT = 20
MAX_ADDRESSES = 10_000

_BIP39 = Mnemonic("english")
_WORDS = set(_BIP39.wordlist)


class PhraseError(ValueError):
    """A recovery phrase that is not a valid BIP39 phrase; the message names the word or the
    problem."""


@dataclass(frozen=True)
class HdSecret:
    """What an HD key file encrypts: the phrase's entropy (to show the phrase again) and the
    seed."""

    entropy: bytes
    seed: bytes  # 64 bytes: PBKDF2 of phrase and passphrase
    passphrase: bool  # whether a passphrase went into the seed (it is not stored)

    @property
    def phrase(self) -> str:
        return _BIP39.to_mnemonic(self.entropy)

    @property
    def words(self) -> list[str]:
        return self.phrase.split()

    def key(self, index: int) -> PrivateKey:
        return derive_key(self.seed, index)

    def address(self, index: int) -> str:
        return address_text(self.key(index))


def new_secret(words: int = DEFAULT_WORDS, passphrase: str = "") -> HdSecret:
    """A fresh phrase of `words` words (12 or 24) from the OS's random source."""
    if words not in WORD_COUNTS:
        raise PhraseError(f"a phrase has {' or '.join(map(str, WORD_COUNTS))} words, not {words}")
    phrase = _BIP39.generate(strength=WORD_COUNTS[words])
    return secret_from_phrase(phrase, passphrase)


def normalize_word(text: str) -> str:
    """One word as typed: lower case, trimmed, expanded from its first four letters when unique."""
    w = unicodedata.normalize("NFKD", text).strip().lower()
    return w if w in _WORDS else _BIP39.expand_word(w)


def normalize_phrase(text: str) -> str:
    """The phrase in canonical form: lower case, single spaces, each word expanded from its
    first four letters if abbreviated; PhraseError names the first word not in the list."""
    raw = unicodedata.normalize("NFKD", text).lower().replace(",", " ").split()
    raw = [w.strip(".") for w in raw]
    if len(raw) not in WORD_COUNTS:
        raise PhraseError(
            f"a recovery phrase has {' or '.join(map(str, WORD_COUNTS))} words; this has {len(raw)}"
        )
    words = []
    for i, w in enumerate(raw, 1):
        full = w if w in _WORDS else _BIP39.expand_word(w)
        if full not in _WORDS:
            close = difflib.get_close_matches(w, _BIP39.wordlist, n=3, cutoff=0.7)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise PhraseError(f"word {i}, {w!r}, is not in the BIP39 English word list{hint}")
        words.append(full)
    phrase = " ".join(words)
    if not _BIP39.check(phrase):
        raise PhraseError(
            "the words do not add up (BIP39 checksum): a word is wrong, missing or out of order"
        )
    return phrase


def secret_from_phrase(text: str, passphrase: str = "") -> HdSecret:
    phrase = normalize_phrase(text)
    seed = _BIP39.to_seed(phrase, passphrase)
    return HdSecret(bytes(_BIP39.to_entropy(phrase)), bytes(seed), bool(passphrase))


# --- SLIP-0010, Ed25519 ---------------------------------------------------------------------------


def slip10_master(seed: bytes) -> tuple[bytes, bytes]:
    """(key, chain code) of the master node for `seed`."""
    i = hmac.new(b"ed25519 seed", seed, hashlib.sha512).digest()
    return i[:32], i[32:]


def slip10_child(key: bytes, chain_code: bytes, index: int) -> tuple[bytes, bytes]:
    """The hardened child `index` (0 .. 2^31 - 1; the hardened bit is added here)."""
    if not 0 <= index < HARDENED:
        raise ValueError(f"child index {index} out of range 0 .. 2^31 - 1")
    data = b"\x00" + key + (index | HARDENED).to_bytes(4, "big")
    i = hmac.new(chain_code, data, hashlib.sha512).digest()
    return i[:32], i[32:]


def slip10_derive(seed: bytes, path: tuple[int, ...]) -> tuple[bytes, bytes]:
    key, chain_code = slip10_master(seed)
    for index in path:
        key, chain_code = slip10_child(key, chain_code, index)
    return key, chain_code


def path_of(index: int) -> str:
    return f"m/{PURPOSE}'/{COIN_TYPE}'/{ACCOUNT}'/{CHAIN}'/{index}'"


def derive_key(seed: bytes, index: int) -> PrivateKey:
    """The signing key of address `index`: the SLIP-0010 key at m/44'/1'/0'/0'/index'."""
    key, _ = slip10_derive(seed, (*BASE_PATH, index))
    return PrivateKey.from_bytes(key)


def address_text(key: PrivateKey) -> str:
    return format_address(address_of(key.public_key()))


def scan_used(
    secret: HdSecret,
    is_used: Callable[[str], bool],
    gap_limit: int = DEFAULT_GAP_LIMIT,
    progress: Callable[[int, str, bool], None] | None = None,
) -> list[str]:
    """The wallet's addresses 0 .. last used (at least address 0): derive i = 0, 1, ... and stop
    after `gap_limit` unused addresses in a row."""
    if gap_limit < 1:
        raise ValueError("the gap limit must be at least 1")
    addresses: list[str] = []
    last_used = 0
    gap = 0
    index = 0
    while gap < gap_limit and index < MAX_ADDRESSES:
        address = secret.address(index)
        used = is_used(address)
        if progress:
            progress(index, address, used)
        addresses.append(address)
        if used:
            last_used, gap = index, 0
        else:
            gap += 1
        index += 1
    return addresses[: last_used + 1]
