"""The one hash function of the project: BLAKE2b-256, domain-separated by a tag.

Every hash that consensus compares goes through `tagged_hash`, so two different kinds of object
can never collide by accident (a transaction id can never equal a state hash). Each part is
length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
"""

from __future__ import annotations

import hashlib
import struct

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    """BLAKE2b-256 of the tag and the length-prefixed parts."""
    tag_bytes = tag.encode("ascii")
    h = hashlib.blake2b(digest_size=HASH_SIZE, person=b"pouw-v1")
    h.update(struct.pack("<B", len(tag_bytes)))
    h.update(tag_bytes)
    for part in parts:
        h.update(struct.pack("<Q", len(part)))
        h.update(part)
    return h.digest()


def int_bytes(value: int) -> bytes:
    """Fixed 8-byte little-endian form of a non-negative integer, for hashing counters."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"integer {value} does not fit in 8 unsigned bytes")
    return struct.pack("<Q", value)
