"""Ed25519 keys through `cryptography`: sign 32-byte digests, verify to a bool."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from chain.types import RawPublicKey

PUBLIC_KEY_SIZE = 32
PRIVATE_KEY_SIZE = 32
SIGNATURE_SIZE = 64


class InvalidKey(ValueError):
    """Key bytes of the wrong size or not a valid key."""


@lru_cache(maxsize=65536)
def _load_public(raw: bytes) -> Ed25519PublicKey | None:
    """Parsed keys are cached: a node verifies many transactions from the same senders."""
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None


@dataclass(frozen=True)
class PublicKey:
    raw: RawPublicKey

    def __post_init__(self) -> None:
        if type(self.raw) is not bytes or len(self.raw) != PUBLIC_KEY_SIZE:
            raise InvalidKey(f"a public key is {PUBLIC_KEY_SIZE} bytes")

    def to_bytes(self) -> bytes:
        return self.raw

    def verify(self, signature: bytes, message: bytes) -> bool:
        return verify_signature(self.raw, signature, message)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by the raw public key."""
    if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
        return False
    key = _load_public(bytes(public_key))
    if key is None:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 signing key, kept as its 32-byte seed (never shown in reprs)."""

    seed: bytes = field(repr=False)
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)
    _public: PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.seed) is not bytes or len(self.seed) != PRIVATE_KEY_SIZE:
            raise InvalidKey(f"a private key is {PRIVATE_KEY_SIZE} bytes")
        key = Ed25519PrivateKey.from_private_bytes(self.seed)
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_public", PublicKey(RawPublicKey(public)))

    @classmethod
    def generate(cls) -> PrivateKey:
        seed = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(seed)

    @classmethod
    def from_bytes(cls, seed: bytes) -> PrivateKey:
        return cls(seed)

    def to_bytes(self) -> bytes:
        return self.seed

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_key(self) -> PublicKey:
        return self._public
