"""A sparse Merkle tree over 256-bit keys: the authenticated ledger state.

The tree is the binary trie of all 2^256 keys, with two rules that make it small:
- an empty subtree hashes to EMPTY (32 zero bytes) at every depth;
- a subtree that holds exactly one leaf *is* that leaf: the leaf sits at the first depth where
  no other key shares its path, and hashes to H("smt-leaf", key, value_hash).
Every other node is a branch, H("smt-branch", left, right). The root depends only on the set of
(key, value hash) pairs, not on the order they were written in (`root_of` recomputes it from
scratch). With N keys a leaf sits about log2(N) levels deep, so an update reads and hashes about
log2(N) nodes per key touched: cost depends on what a block touches, not on the state's size.

Nodes are stored by position (depth, prefix of the key): a tree keeps only the current state,
and undoing a block is updating its keys back to their previous values. `update` returns the new
root and the positions it wrote; the caller persists them in the same batch as the block.

A proof for a key is the sibling hashes along its path and the leaf met at the end of it (none:
an empty subtree). It proves membership (that leaf is the key's, with the value hash) or absence
(an empty subtree, or another key's leaf on the key's path).
"""

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Annotated, Protocol

from chain.encoding import Bytes, ListOf, Maybe, Record
from useful_work.hashing import HASH_SIZE, ZERO_HASH

EMPTY = ZERO_HASH
PERSON = b"pouw-v1"  # useful_work.hashing's personalisation
KEY_BITS = 256

Position = tuple[int, int]  # (depth, the key's first `depth` bits as an int)
ROOT_POSITION: Position = (0, 0)


def _two_part_prefix(tag: str) -> tuple[bytes, bytes]:
    """What `tagged_hash(tag, a, b)` feeds BLAKE2b before `a` and between `a` and `b`, for two
    32-byte parts: one call to the hash instead of several updates (same digest)."""
    size = struct.pack("<Q", HASH_SIZE)
    return struct.pack("<B", len(tag)) + tag.encode("ascii") + size, size


_LEAF_HEAD, _LEAF_MID = _two_part_prefix("smt-leaf")
_BRANCH_HEAD, _BRANCH_MID = _two_part_prefix("smt-branch")


def leaf_hash(key: bytes, value_hash: bytes) -> bytes:
    """tagged_hash("smt-leaf", key, value_hash)."""
    return blake2b(
        _LEAF_HEAD + key + _LEAF_MID + value_hash, digest_size=HASH_SIZE, person=PERSON
    ).digest()


def branch_hash(left: bytes, right: bytes) -> bytes:
    """tagged_hash("smt-branch", left, right)."""
    return blake2b(
        _BRANCH_HEAD + left + _BRANCH_MID + right, digest_size=HASH_SIZE, person=PERSON
    ).digest()


@dataclass(frozen=True, slots=True)
class Leaf:
    key: bytes
    value_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Branch:
    left: bytes
    right: bytes
    hash: bytes


Node = Leaf | Branch


def make_leaf(key: bytes, value_hash: bytes) -> Leaf:
    return Leaf(key, value_hash, leaf_hash(key, value_hash))


def make_branch(left: bytes, right: bytes) -> Branch:
    return Branch(left, right, branch_hash(left, right))


def node_hash(node: Node | None) -> bytes:
    return EMPTY if node is None else node.hash


def encode_node(node: Node) -> bytes:
    """b"L" + key + value hash, or b"B" + left + right (the hash is recomputed on decode)."""
    if isinstance(node, Leaf):
        return b"L" + node.key + node.value_hash
    return b"B" + node.left + node.right


def decode_node(raw: bytes) -> Node:
    if len(raw) != 1 + 2 * HASH_SIZE or raw[:1] not in (b"L", b"B"):
        raise ValueError(f"not a tree node: {len(raw)} bytes starting {raw[:1]!r}")
    a, b = raw[1 : 1 + HASH_SIZE], raw[1 + HASH_SIZE :]
    return make_leaf(a, b) if raw[:1] == b"L" else make_branch(a, b)


def position_key(position: Position) -> bytes:
    """The 34-byte storage key of a position: depth (2 bytes) and the prefix left-aligned."""
    depth, prefix = position
    return depth.to_bytes(2, "big") + (prefix << (KEY_BITS - depth)).to_bytes(32, "big")


class NodeSource(Protocol):
    def node(self, position: Position) -> Node | None: ...


def _bit(key_int: int, depth: int) -> int:
    return (key_int >> (KEY_BITS - 1 - depth)) & 1


class TreeView:
    """A tree: the nodes of `base` overlaid by positions written since (None: deleted)."""

    def __init__(
        self, base: NodeSource, writes: Mapping[Position, Node | None] | None = None
    ) -> None:
        self.base = base
        self.writes: dict[Position, Node | None] = dict(writes) if writes else {}

    def node(self, position: Position) -> Node | None:
        if position in self.writes:
            return self.writes[position]
        return self.base.node(position)

    @property
    def root(self) -> bytes:
        return node_hash(self.node(ROOT_POSITION))

    def updated(self, changes: Mapping[bytes, bytes | None]) -> "TreeView":
        """The tree with each key set to its value hash (None: removed); this one is unchanged."""
        writes = update(self, changes)
        child = TreeView(self.base, self.writes)
        child.writes.update(writes)
        return child

    def prove(self, key: bytes) -> "Proof":
        return prove(self, key)


def update(
    source: NodeSource, changes: Mapping[bytes, bytes | None]
) -> dict[Position, Node | None]:
    """The positions that change when each key is set to its value hash (None: removed)."""
    writes: dict[Position, Node | None] = {}
    if changes:
        ups = sorted((int.from_bytes(k, "big"), k, v) for k, v in changes.items())
        _update(source, writes, ROOT_POSITION, source.node(ROOT_POSITION), ups)
    return writes


_Update = tuple[int, bytes, bytes | None]


def _update(
    source: NodeSource,
    writes: dict[Position, Node | None],
    pos: Position,
    node: Node | None,
    ups: list[_Update],
) -> Node | None:
    """The new node at `pos` after `ups` (keys under `pos`, sorted); records every write."""
    depth, prefix = pos
    if not isinstance(node, Branch):
        entries: dict[int, tuple[bytes, bytes]] = {}
        if node is not None:
            entries[int.from_bytes(node.key, "big")] = (node.key, node.value_hash)
        for key_int, key, value in ups:
            if value is None:
                entries.pop(key_int, None)
            else:
                entries[key_int] = (key, value)
        built = _build(writes, pos, sorted(entries.items()))
        writes[pos] = built
        return built
    cut = 0
    while cut < len(ups) and _bit(ups[cut][0], depth) == 0:
        cut += 1
    left_pos, right_pos = (depth + 1, prefix << 1), (depth + 1, (prefix << 1) | 1)
    left: Node | None | bytes = node.left  # bytes: unchanged, only its hash known
    right: Node | None | bytes = node.right
    if cut:
        left = _update(source, writes, left_pos, source.node(left_pos), ups[:cut])
    if cut < len(ups):
        right = _update(source, writes, right_pos, source.node(right_pos), ups[cut:])
    left = _known(source, left_pos, left)
    right = _known(source, right_pos, right)
    result: Node | None
    if left is None and right is None:
        result = None
    elif left is None or right is None:
        only, only_pos = (right, right_pos) if left is None else (left, left_pos)
        if isinstance(only, bytes):
            only = source.node(only_pos)
        if isinstance(only, Leaf):
            writes[only_pos] = None  # a lone leaf moves up to where its subtree starts
            result = only
        else:
            result = make_branch(_hash_of(left), _hash_of(right))
    else:
        result = make_branch(_hash_of(left), _hash_of(right))
    writes[pos] = result
    return result


def _known(source: NodeSource, pos: Position, side: Node | None | bytes) -> Node | None | bytes:
    """An unchanged side stays a hash, except the empty one, which is None."""
    if isinstance(side, bytes) and side == EMPTY:
        return None
    return side


def _hash_of(side: Node | None | bytes) -> bytes:
    if isinstance(side, bytes):
        return side
    return node_hash(side)


def _build(
    writes: dict[Position, Node | None],
    pos: Position,
    entries: list[tuple[int, tuple[bytes, bytes]]],
) -> Node | None:
    """The subtree at `pos` holding exactly `entries` (sorted by key), where nothing was below."""
    if not entries:
        return None
    if len(entries) == 1:
        key, value = entries[0][1]
        return make_leaf(key, value)
    depth, prefix = pos
    cut = 0
    while cut < len(entries) and _bit(entries[cut][0], depth) == 0:
        cut += 1
    left_pos, right_pos = (depth + 1, prefix << 1), (depth + 1, (prefix << 1) | 1)
    left = _build(writes, left_pos, entries[:cut])
    right = _build(writes, right_pos, entries[cut:])
    if left is not None:
        writes[left_pos] = left
    if right is not None:
        writes[right_pos] = right
    return make_branch(node_hash(left), node_hash(right))


def root_of(entries: Mapping[bytes, bytes]) -> bytes:
    """The root of the tree holding exactly these (key, value hash) pairs, computed from scratch."""
    return _subtree_root(0, sorted((int.from_bytes(k, "big"), k, v) for k, v in entries.items()))


def _subtree_root(depth: int, items: list[tuple[int, bytes, bytes]]) -> bytes:
    if not items:
        return EMPTY
    if len(items) == 1:
        return leaf_hash(items[0][1], items[0][2])
    left = [it for it in items if _bit(it[0], depth) == 0]
    right = items[len(left) :]
    return branch_hash(_subtree_root(depth + 1, left), _subtree_root(depth + 1, right))


def build_nodes(entries: Mapping[bytes, bytes]) -> dict[Position, Node | None]:
    """Every node of the tree holding exactly these pairs, by position (for a new store)."""
    writes: dict[Position, Node | None] = {}
    items = sorted((int.from_bytes(k, "big"), (k, v)) for k, v in entries.items())
    writes[ROOT_POSITION] = _build(writes, ROOT_POSITION, items)
    return writes


# --- proofs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proof(Record):
    """Sibling hashes from the root down, and the leaf at the end of the key's path, if any."""

    siblings: Annotated[tuple[bytes, ...], ListOf(Bytes(HASH_SIZE), KEY_BITS)]
    leaf_key: Annotated[bytes | None, Maybe(Bytes(HASH_SIZE))]
    leaf_value: Annotated[bytes | None, Maybe(Bytes(HASH_SIZE))]


def prove(source: NodeSource, key: bytes) -> Proof:
    key_int = int.from_bytes(key, "big")
    siblings: list[bytes] = []
    pos = ROOT_POSITION
    node = source.node(pos)
    while isinstance(node, Branch):
        depth, prefix = pos
        bit = _bit(key_int, depth)
        siblings.append(node.right if bit == 0 else node.left)
        pos = (depth + 1, (prefix << 1) | bit)
        node = source.node(pos)
    if node is None:
        return Proof(tuple(siblings), None, None)
    return Proof(tuple(siblings), node.key, node.value_hash)


def verify(root: bytes, key: bytes, value_hash: bytes | None, proof: Proof) -> bool:
    """Whether `proof` shows that `key` holds `value_hash` (None: is absent) under `root`."""
    if len(key) != HASH_SIZE or len(proof.siblings) > KEY_BITS:
        return False
    if (proof.leaf_key is None) != (proof.leaf_value is None):
        return False
    depth = len(proof.siblings)
    key_int = int.from_bytes(key, "big")
    if proof.leaf_key is None or proof.leaf_value is None:
        if value_hash is not None:
            return False
        h = EMPTY
    else:
        other = int.from_bytes(proof.leaf_key, "big")
        if depth and (other >> (KEY_BITS - depth)) != (key_int >> (KEY_BITS - depth)):
            return False  # that leaf is not on this key's path
        if value_hash is None:
            if proof.leaf_key == key:
                return False
        elif proof.leaf_key != key or proof.leaf_value != value_hash:
            return False
        h = leaf_hash(proof.leaf_key, proof.leaf_value)
    for d in range(depth - 1, -1, -1):
        sibling = proof.siblings[d]
        h = branch_hash(h, sibling) if _bit(key_int, d) == 0 else branch_hash(sibling, h)
    return h == root


def leaves(source: NodeSource) -> Iterable[Leaf]:
    """Every leaf, left to right (a walk of the whole tree: for checks, not per block)."""
    stack = [ROOT_POSITION]
    while stack:
        pos = stack.pop()
        node = source.node(pos)
        if isinstance(node, Leaf):
            yield node
        elif isinstance(node, Branch):
            depth, prefix = pos
            stack.append((depth + 1, (prefix << 1) | 1))
            stack.append((depth + 1, prefix << 1))
