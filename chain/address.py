"""Addresses: the first 20 bytes of H("address", public key), written as checksummed text.

Text form: "pw" followed by lowercase base32 (no padding) of the address and a 4-byte checksum
H("address-checksum", address)[:4], 41 characters in all. A mistyped character changes the
checksum with probability 1 - 2^-32, so `parse_address` refuses it instead of sending coins away.
"""

from __future__ import annotations

import base64
import binascii

from chain.keys import PublicKey
from chain.types import Address
from useful_work.hashing import tagged_hash

ADDRESS_SIZE = 20
CHECKSUM_SIZE = 4
PREFIX = "pw"
_BASE32_CHARS = "abcdefghijklmnopqrstuvwxyz234567"
TEXT_LENGTH = len(PREFIX) + -(-(ADDRESS_SIZE + CHECKSUM_SIZE) * 8 // 5)
ZERO_ADDRESS = Address(bytes(ADDRESS_SIZE))


class AddressError(ValueError):
    """Text that is not a well-formed address, or whose checksum fails (a typo)."""


def address_of(public_key: PublicKey | bytes) -> Address:
    raw = public_key.raw if isinstance(public_key, PublicKey) else public_key
    if len(raw) != 32:
        raise ValueError("a public key is 32 bytes")
    return Address(tagged_hash("address", raw)[:ADDRESS_SIZE])


def _checksum(address: bytes) -> bytes:
    return tagged_hash("address-checksum", address)[:CHECKSUM_SIZE]


def format_address(address: bytes) -> str:
    if type(address) is not bytes or len(address) != ADDRESS_SIZE:
        raise ValueError(f"an address is {ADDRESS_SIZE} bytes")
    body = base64.b32encode(address + _checksum(address)).decode("ascii").rstrip("=").lower()
    return PREFIX + body


def parse_address(text: object) -> Address:
    """The 20-byte address written in `text`, or AddressError saying what is wrong with it."""
    if not isinstance(text, str):
        raise AddressError(f"an address is text, got {type(text).__name__}")
    if not text.startswith(PREFIX):
        raise AddressError(f"address {text!r} must start with {PREFIX!r}")
    if len(text) != TEXT_LENGTH:
        raise AddressError(f"address {text!r} has {len(text)} characters, expected {TEXT_LENGTH}")
    body = text[len(PREFIX) :]
    for i, ch in enumerate(body):
        if ch not in _BASE32_CHARS:
            raise AddressError(
                f"address {text!r} has an invalid character {ch!r} at position {i + len(PREFIX)} "
                "(lowercase a-z and 2-7 only)"
            )
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError) as exc:
        raise AddressError(f"address {text!r} is not valid base32 ({exc})") from None
    address, checksum = raw[:ADDRESS_SIZE], raw[ADDRESS_SIZE:]
    if checksum != _checksum(address) or format_address(address) != text:
        raise AddressError(f"address {text!r} has a bad checksum (mistyped?)")
    return Address(address)
