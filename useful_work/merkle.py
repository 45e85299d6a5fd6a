"""Merkle trees with inclusion proofs, used for work traces and transaction roots.

The tree splits n leaves at the largest power of two below n (as RFC 6962 does), so no leaf is
ever duplicated and two different leaf lists cannot share a root (no CVE-2012-2459 mutation).
Leaves and inner nodes are hashed under different tags, and the leaf count is bound into the
root, so a proof for index i of n leaves cannot be replayed as a proof for another shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from useful_work.hashing import ZERO_HASH, int_bytes, tagged_hash


def leaf_hash(data: bytes) -> bytes:
    return tagged_hash("merkle-leaf", data)


def node_hash(left: bytes, right: bytes) -> bytes:
    return tagged_hash("merkle-node", left, right)


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _subtree_root(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(_subtree_root(hashes[:k]), _subtree_root(hashes[k:]))


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over the leaves' data; the empty list has the root H("merkle-root", 0, ZERO_HASH)."""
    inner = _subtree_root([leaf_hash(x) for x in leaves]) if leaves else ZERO_HASH
    return tagged_hash("merkle-root", int_bytes(len(leaves)), inner)


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from the leaf up to the top, for `verify_merkle_proof`."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} out of range for {len(leaves)} leaves")
    hashes = [leaf_hash(x) for x in leaves]
    path: list[bytes] = []
    lo, hi = 0, len(hashes)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_subtree_root(hashes[lo + k : hi]))
            hi = lo + k
        else:
            path.append(_subtree_root(hashes[lo : lo + k]))
            lo = lo + k
    path.reverse()
    return path


def verify_merkle_proof(
    data: bytes, index: int, count: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when `data` is leaf `index` of a tree of `count` leaves with this root."""
    if not 0 <= index < count:
        return False
    # Rebuild the path shape top-down, then fold the siblings bottom-up.
    sides: list[bool] = []  # True when our node is the left child at that level
    lo, hi = 0, count
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            sides.append(True)
            hi = lo + k
        else:
            sides.append(False)
            lo = lo + k
    if len(sides) != len(proof):
        return False
    h = leaf_hash(data)
    for is_left, sibling in zip(reversed(sides), proof):
        h = node_hash(h, sibling) if is_left else node_hash(sibling, h)
    return tagged_hash("merkle-root", int_bytes(count), h) == root
