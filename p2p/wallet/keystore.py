"""Encrypted key files: a wallet's secret under AES-256-GCM with a key derived from a password by
scrypt.

One JSON file per wallet, in the spirit of Ethereum's keystore v3. Two kinds:

- version 2, an HD wallet (`pouw wallet create`, `restore`): the secret is the BIP39 phrase's
  entropy and the 64-byte seed derived from it (see p2p/wallet/hd_wallet.py); the file lists the
  addresses derived so far (address i is the key at m/44'/1'/0'/0'/i'):

    {"format": "pouw-keystore", "version": 2, "address": "pw..." (address 0),
     "hd": {"derivation": "...", "path": "m/44'/1'/0'/0'/i'", "words": 24,
            "addresses": ["pw...", ...]},
     "crypto": {"cipher": "aes-256-gcm", "nonce": hex,
                "ciphertext": hex (JSON secret + 16-byte tag),
                "kdf": "scrypt",
                "kdfparams": {"n": 131072, "r": 8, "p": 1, "dklen": 32, "salt": hex}}}

- version 1, a plain key (`pouw wallet import`, and wallets made before phrases): one address,
  the ciphertext is the 32-byte Ed25519 seed plus the tag; no "hd" field.

The GCM tag also covers the file's header (format, version, addresses, derivation, cipher, KDF
and its parameters) as associated data, so an altered address or weakened KDF cost fails like a
wrong password; after decryption every listed address must be the one its key gives. Files are
written atomically (a temporary file in the same directory, fsync, then link or rename, then fsync
of the directory) with mode 0600; reading a file, with any password, never writes it.

The default scrypt cost (n = 2^17, r = 8, p = 1: 128 MiB and about 0.4 s) can be lowered for
tests with `scrypt_n` or the environment variable POUW_WALLET_SCRYPT_N (at least 2^10).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from chain.address import AddressError, address_of, format_address, parse_address
from chain.keys import InvalidKey, PrivateKey
from p2p.wallet.hd_wallet import DERIVATION, MAX_ADDRESSES, PATH_TEMPLATE, WORD_COUNTS, HdSecret

FORMAT = "pouw-keystore"
VERSION = 1  # a plain key
HD_VERSION = 2  # a BIP39 phrase with derived addresses
VERSIONS = (VERSION, HD_VERSION)
MAX_SECRET_BYTES = 1024
CIPHER = "aes-256-gcm"
KDF = "scrypt"
DEFAULT_SCRYPT_N = 1 << 17
SCRYPT_R = 8
SCRYPT_P = 1
MIN_SCRYPT_N = 1 << 10
MAX_SCRYPT_N = 1 << 22  # a file asking for more memory than this is refused, not run
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
DKLEN = 32
SALT_BYTES = 32
NONCE_BYTES = 12
SCRYPT_N_ENV = "POUW_WALLET_SCRYPT_N"
WALLET_DIR_ENV = "POUW_WALLET_DIR"
DEFAULT_WALLET_DIR = Path("~/.pouw/wallet")
FILE_SUFFIX = ".json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class KeystoreError(Exception):
    """A key file problem: missing, already there, unreadable, or corrupt; the message names the
    file."""


class WrongPasswordError(KeystoreError):
    """The password does not open the key file (or the file was altered)."""


class WalletNotFoundError(KeystoreError):
    pass


class WalletExistsError(KeystoreError):
    pass


@dataclass(frozen=True)
class ScryptParams:
    n: int
    r: int
    p: int
    salt: bytes
    dklen: int = DKLEN

    def check(self) -> ScryptParams:
        if not (MIN_SCRYPT_N <= self.n <= MAX_SCRYPT_N) or self.n & (self.n - 1):
            raise ValueError(
                f"scrypt n must be a power of two in {MIN_SCRYPT_N} .. {MAX_SCRYPT_N}, got {self.n}"
            )
        if not 1 <= self.r <= MAX_SCRYPT_R or not 1 <= self.p <= MAX_SCRYPT_P:
            raise ValueError(
                f"scrypt r and p must be in 1 .. {MAX_SCRYPT_R} and 1 .. {MAX_SCRYPT_P}, got "
                f"{self.r}, {self.p}"
            )
        if self.dklen != DKLEN or len(self.salt) < 16:
            raise ValueError(f"scrypt dklen must be {DKLEN} and the salt at least 16 bytes")
        return self

    def derive(self, password: str) -> bytes:
        kdf = Scrypt(salt=self.salt, length=self.dklen, n=self.n, r=self.r, p=self.p)
        return kdf.derive(password.encode("utf-8"))

    def to_json(self) -> dict:
        return {"n": self.n, "r": self.r, "p": self.p, "dklen": self.dklen, "salt": self.salt.hex()}


@dataclass(frozen=True)
class HdInfo:
    """The clear part of an HD key file: its derivation and the addresses derived so far (index =
    position)."""

    words: int
    addresses: tuple[str, ...]
    path: str = PATH_TEMPLATE

    def to_json(self) -> dict:
        return {
            "derivation": DERIVATION,
            "path": self.path,
            "words": self.words,
            "addresses": list(self.addresses),
        }

    @classmethod
    def from_json(cls, data: object) -> HdInfo:
        if not isinstance(data, dict):
            raise ValueError("hd: missing")
        if data.get("path") != PATH_TEMPLATE:
            raise ValueError(
                f"hd.path: this wallet derives keys at {PATH_TEMPLATE}, got {data.get('path')!r}"
            )
        if data.get("derivation") != DERIVATION:
            raise ValueError(f"hd.derivation: expected {DERIVATION!r}")
        words = data.get("words")
        if not isinstance(words, int) or isinstance(words, bool) or words not in WORD_COUNTS:
            raise ValueError(
                f"hd.words: expected {' or '.join(map(str, WORD_COUNTS))}, got {words!r}"
            )
        addresses = data.get("addresses")
        if not isinstance(addresses, list) or not 1 <= len(addresses) <= MAX_ADDRESSES:
            raise ValueError(f"hd.addresses: expected a list of 1 .. {MAX_ADDRESSES} addresses")
        for i, a in enumerate(addresses):
            try:
                parse_address(a)
            except AddressError as exc:
                raise ValueError(f"hd.addresses[{i}]: {exc}") from None
        if len(set(addresses)) != len(addresses):
            raise ValueError("hd.addresses: an address is listed twice")
        return cls(words=words, addresses=tuple(addresses))


@dataclass(frozen=True)
class KeyFile:
    """One encrypted wallet as stored; its addresses are readable without the password."""

    address: str  # the first (for a plain key: the only) address
    kdf: ScryptParams
    nonce: bytes
    ciphertext: bytes  # the encrypted secret followed by the 16-byte GCM tag
    version: int = VERSION
    hd: HdInfo | None = None

    @property
    def is_hd(self) -> bool:
        return self.hd is not None

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.hd.addresses if self.hd is not None else (self.address,)

    def header(self) -> dict:
        out = {
            "format": FORMAT,
            "version": self.version,
            "address": self.address,
            "cipher": CIPHER,
            "kdf": KDF,
            "kdfparams": self.kdf.to_json(),
        }
        if self.hd is not None:
            out["hd"] = self.hd.to_json()
        return out

    def associated_data(self) -> bytes:
        return json.dumps(self.header(), sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict:
        out = {
            "format": FORMAT,
            "version": self.version,
            "address": self.address,
        }
        if self.hd is not None:
            out["hd"] = self.hd.to_json()
        out["crypto"] = {
            "cipher": CIPHER,
            "nonce": self.nonce.hex(),
            "ciphertext": self.ciphertext.hex(),
            "kdf": KDF,
            "kdfparams": self.kdf.to_json(),
        }
        return out

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: object) -> KeyFile:
        """Parse and check a key file's JSON; ValueError says which field is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"format: expected {FORMAT!r}, got {data.get('format')!r}")
        version = data.get("version")
        if version not in VERSIONS or isinstance(version, bool):
            raise ValueError(
                f"version: this wallet reads versions {', '.join(map(str, VERSIONS))}, got "
                f"{version!r}"
            )
        try:
            parse_address(data.get("address"))
        except AddressError as exc:
            raise ValueError(f"address: {exc}") from None
        hd = None
        if version == HD_VERSION:
            hd = HdInfo.from_json(data.get("hd"))
            if hd.addresses[0] != data["address"]:
                raise ValueError("address: must be hd.addresses[0]")
        elif "hd" in data:
            raise ValueError("hd: a version 1 file holds a plain key, not an HD wallet")
        crypto = data.get("crypto")
        if not isinstance(crypto, dict):
            raise ValueError("crypto: missing")
        if crypto.get("cipher") != CIPHER:
            raise ValueError(f"crypto.cipher: expected {CIPHER!r}, got {crypto.get('cipher')!r}")
        if crypto.get("kdf") != KDF:
            raise ValueError(f"crypto.kdf: expected {KDF!r}, got {crypto.get('kdf')!r}")
        kp = crypto.get("kdfparams")
        if not isinstance(kp, dict):
            raise ValueError("crypto.kdfparams: missing")
        try:
            params = ScryptParams(
                n=_int(kp, "n"),
                r=_int(kp, "r"),
                p=_int(kp, "p"),
                dklen=_int(kp, "dklen"),
                salt=_hex(kp, "salt"),
            ).check()
            nonce, ciphertext = _hex(crypto, "nonce"), _hex(crypto, "ciphertext")
        except ValueError as exc:
            raise ValueError(f"crypto: {exc}") from None
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"crypto.nonce: expected {NONCE_BYTES} bytes, got {len(nonce)}")
        if hd is None and len(ciphertext) != 32 + 16:
            raise ValueError(f"crypto.ciphertext: expected 48 bytes, got {len(ciphertext)}")
        if hd is not None and not 16 < len(ciphertext) <= MAX_SECRET_BYTES + 16:
            raise ValueError(
                f"crypto.ciphertext: expected 17 .. {MAX_SECRET_BYTES + 16} bytes, got "
                f"{len(ciphertext)}"
            )
        return cls(
            address=data["address"],
            kdf=params,
            nonce=nonce,
            ciphertext=ciphertext,
            version=version,
            hd=hd,
        )


def _int(d: dict, key: str) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}: expected an integer")
    return value


def _hex(d: dict, key: str) -> bytes:
    value = d.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected hex text")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{key}: not hex") from None


def default_scrypt_n() -> int:
    text = os.environ.get(SCRYPT_N_ENV, "").strip()
    if not text:
        return DEFAULT_SCRYPT_N
    try:
        n = int(text)
    except ValueError:
        raise KeystoreError(f"{SCRYPT_N_ENV}={text!r}: not an integer") from None
    return n


def scrypt_params(scrypt_n: int | None = None) -> ScryptParams:
    """Fresh scrypt parameters (new salt) at cost `scrypt_n`, else $POUW_WALLET_SCRYPT_N, else
    2^17."""
    n = default_scrypt_n() if scrypt_n is None else scrypt_n
    try:
        return ScryptParams(
            n=n, r=SCRYPT_R, p=SCRYPT_P, salt=secrets.token_bytes(SALT_BYTES)
        ).check()
    except ValueError as exc:
        raise KeystoreError(str(exc)) from None


def encrypt_key(key: PrivateKey, password: str, scrypt_n: int | None = None) -> KeyFile:
    """A new plain key file for `key` under `password` (fresh salt and nonce)."""
    if not password:
        raise KeystoreError("the password must not be empty")
    kdf = scrypt_params(scrypt_n)
    address = format_address(address_of(key.public_key()))
    unsealed = KeyFile(
        address=address, kdf=kdf, nonce=secrets.token_bytes(NONCE_BYTES), ciphertext=bytes(48)
    )
    ciphertext = AESGCM(kdf.derive(password)).encrypt(
        unsealed.nonce, key.to_bytes(), unsealed.associated_data()
    )
    return KeyFile(address=address, kdf=kdf, nonce=unsealed.nonce, ciphertext=ciphertext)


def _secret_bytes(secret: HdSecret) -> bytes:
    return json.dumps(
        {
            "entropy": secret.entropy.hex(),
            "seed": secret.seed.hex(),
            "passphrase": secret.passphrase,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def _secret_from_bytes(raw: bytes) -> HdSecret:
    try:
        data = json.loads(raw)
        secret = HdSecret(
            bytes.fromhex(data["entropy"]), bytes.fromhex(data["seed"]), bool(data["passphrase"])
        )
    except (ValueError, KeyError, TypeError):
        raise KeystoreError("key file's secret is not readable") from None
    if len(secret.entropy) * 8 not in WORD_COUNTS.values() or len(secret.seed) != 64:
        raise KeystoreError("key file's secret has the wrong size")
    return secret


def seal_hd(
    secret: HdSecret, addresses: tuple[str, ...] | list[str], aes_key: bytes, kdf: ScryptParams
) -> KeyFile:
    """An HD key file for `secret` listing `addresses`, encrypted under an scrypt output (fresh
    nonce)."""
    hd = HdInfo(words=len(secret.words), addresses=tuple(addresses))
    unsealed = KeyFile(
        address=hd.addresses[0],
        kdf=kdf,
        nonce=secrets.token_bytes(NONCE_BYTES),
        ciphertext=b"",
        version=HD_VERSION,
        hd=hd,
    )
    ciphertext = AESGCM(aes_key).encrypt(
        unsealed.nonce, _secret_bytes(secret), unsealed.associated_data()
    )
    return KeyFile(
        address=hd.addresses[0],
        kdf=kdf,
        nonce=unsealed.nonce,
        ciphertext=ciphertext,
        version=HD_VERSION,
        hd=hd,
    )


def encrypt_hd(
    secret: HdSecret,
    password: str,
    addresses: tuple[str, ...] | list[str] | None = None,
    scrypt_n: int | None = None,
) -> KeyFile:
    """A new HD key file (fresh salt and nonce) listing `addresses` (default: address 0)."""
    if not password:
        raise KeystoreError("the password must not be empty")
    kdf = scrypt_params(scrypt_n)
    return seal_hd(secret, tuple(addresses or (secret.address(0),)), kdf.derive(password), kdf)


@dataclass(frozen=True)
class Unlocked:
    """A key file opened with its password: the signing key of each of its addresses."""

    keyfile: KeyFile
    aes_key: bytes = field(repr=False)  # the scrypt output: re-seals the file without asking again
    keys: dict[str, PrivateKey] = field(repr=False)
    secret: HdSecret | None = field(default=None, repr=False)

    def key_for(self, address: str) -> PrivateKey:
        try:
            return self.keys[address]
        except KeyError:
            raise KeystoreError(f"address {address} is not one of this wallet's") from None

    @property
    def first_key(self) -> PrivateKey:
        return self.keys[self.keyfile.address]


def open_keyfile(keyfile: KeyFile, password: str) -> Unlocked:
    """Decrypt `keyfile`; WrongPasswordError when the password (or the file) is wrong."""
    aes_key = keyfile.kdf.derive(password)
    try:
        plain = AESGCM(aes_key).decrypt(
            keyfile.nonce, keyfile.ciphertext, keyfile.associated_data()
        )
    except InvalidTag:
        raise WrongPasswordError("wrong password (or the key file was altered)") from None
    if keyfile.hd is None:
        try:
            key = PrivateKey.from_bytes(plain)
        except InvalidKey as exc:  # pragma: no cover - the tag makes this unreachable
            raise KeystoreError(f"key file holds no valid key: {exc}") from None
        keys = {format_address(address_of(key.public_key())): key}
        secret = None
    else:
        secret = _secret_from_bytes(plain)
        keys = {}
        for i in range(len(keyfile.hd.addresses)):
            key = secret.key(i)
            keys[format_address(address_of(key.public_key()))] = key
    if tuple(keys) != keyfile.addresses:
        raise KeystoreError(
            f"key file's keys do not match its addresses (first: {keyfile.address})"
        )
    return Unlocked(keyfile, aes_key, keys, secret)


def decrypt_key(keyfile: KeyFile, password: str) -> PrivateKey:
    """The key of the file's first address; WrongPasswordError when the password (or the file) is
    wrong."""
    return open_keyfile(keyfile, password).first_key


# --- files ----------------------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, overwrite: bool = False, mode: int = 0o600) -> None:
    """Write `data` to `path` so that a crash leaves either no file or the whole file, never a part.

    The data goes to a temporary file in the same directory (created with `mode`, fsynced), which
    then becomes `path` by a hard link (refusing an existing file unless `overwrite`) or a rename;
    the directory is fsynced so the new name survives a crash too.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask left
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # FileExistsError if the name is taken: never clobbers a key
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links
                if path.exists():
                    raise FileExistsError(str(path)) from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def resolve_wallet_dir(option: str | None = None) -> Path:
    """--wallet-dir, else $POUW_WALLET_DIR, else ~/.pouw/wallet."""
    text = option or os.environ.get(WALLET_DIR_ENV) or str(DEFAULT_WALLET_DIR)
    return Path(text).expanduser()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise KeystoreError(
            f"wallet name {name!r}: use 1 to 64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit"
        )
    return name


@dataclass(frozen=True)
class WalletEntry:
    name: str
    path: Path
    keyfile: KeyFile


@dataclass(frozen=True)
class Keystore:
    """A wallet directory: one key file `<name>.json` per named wallet."""

    directory: Path

    def path_for(self, name: str) -> Path:
        return self.directory / (check_name(name) + FILE_SUFFIX)

    def exists(self, name: str) -> bool:
        return self.path_for(name).exists()

    def owner_of(self, addresses: tuple[str, ...] | list[str]) -> WalletEntry | None:
        """The wallet in this directory that already holds one of `addresses`, if any."""
        wanted = set(addresses)
        for entry in self.entries():
            if wanted.intersection(entry.keyfile.addresses):
                return entry
        return None

    def _check_new(self, name: str, addresses: tuple[str, ...]) -> Path:
        path = self.path_for(name)
        if path.exists():
            raise WalletExistsError(
                f"wallet {name!r} already exists ({path}); pick another name with -w NAME"
            )
        other = self.owner_of(addresses)
        if other is not None:
            shared = next(a for a in addresses if a in other.keyfile.addresses)
            raise WalletExistsError(
                f"wallet {other.name!r} already holds this key (address {shared}); "
                f"use -w {other.name}, or delete {other.path} first"
            )
        return path

    def _write_new(self, name: str, path: Path, keyfile: KeyFile) -> WalletEntry:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            write_atomic(path, keyfile.to_bytes(), overwrite=False)
        except FileExistsError:
            raise WalletExistsError(f"wallet {name!r} already exists ({path})") from None
        return WalletEntry(name, path, keyfile)

    def create(
        self, name: str, key: PrivateKey, password: str, scrypt_n: int | None = None
    ) -> WalletEntry:
        """Encrypt and store a plain key under a new name; WalletExistsError if the name is taken
        or another wallet here already holds the key."""
        path = self._check_new(name, (format_address(address_of(key.public_key())),))
        return self._write_new(name, path, encrypt_key(key, password, scrypt_n))

    def create_hd(
        self,
        name: str,
        secret: HdSecret,
        password: str,
        addresses: list[str] | tuple[str, ...] | None = None,
        scrypt_n: int | None = None,
    ) -> WalletEntry:
        """Encrypt and store an HD wallet listing `addresses` (default: address 0) under a new
        name."""
        keyfile = encrypt_hd(secret, password, addresses, scrypt_n)
        path = self._check_new(name, keyfile.addresses)
        return self._write_new(name, path, keyfile)

    def save_addresses(
        self, entry: WalletEntry, unlocked: Unlocked, addresses: list[str] | tuple[str, ...]
    ) -> WalletEntry:
        """Rewrite an HD wallet's file (atomically, same password) listing `addresses`."""
        if unlocked.secret is None:
            raise KeystoreError(
                f"wallet {entry.name!r} holds one plain key; only a wallet made from a phrase "
                "derives new addresses"
            )
        keyfile = seal_hd(unlocked.secret, tuple(addresses), unlocked.aes_key, entry.keyfile.kdf)
        write_atomic(entry.path, keyfile.to_bytes(), overwrite=True)
        return WalletEntry(entry.name, entry.path, keyfile)

    def load(self, name: str) -> WalletEntry:
        path = self.path_for(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            known = ", ".join(e.name for e in self.entries()) or "none"
            raise WalletNotFoundError(
                f"no wallet named {name!r} in {self.directory} (wallets here: {known})"
            ) from None
        except OSError as exc:
            raise KeystoreError(f"{path}: cannot read ({exc.strerror})") from None
        return WalletEntry(name, path, _parse(raw, path))

    def unlock(self, name: str, password: str) -> tuple[WalletEntry, PrivateKey]:
        """The wallet and the key of its first address."""
        entry = self.load(name)
        return entry, decrypt_key(entry.keyfile, password)

    def entries(self) -> list[WalletEntry]:
        """Every readable key file in the directory, by name (unreadable ones are skipped)."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("*" + FILE_SUFFIX)):
            name = path.name[: -len(FILE_SUFFIX)]
            if not _NAME.fullmatch(name):
                continue
            try:
                out.append(WalletEntry(name, path, _parse(path.read_bytes(), path)))
            except (KeystoreError, OSError):
                continue
        return out


def _parse(raw: bytes, path: Path) -> KeyFile:
    try:
        return KeyFile.from_json(json.loads(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"{path}: not a valid key file ({exc})") from None
