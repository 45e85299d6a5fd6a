"""Trace commitments: one leaf per unit, chained seeds, a Merkle root over the leaves.

A miner M on parent P runs units u = 0, 1, 2, ... of trace `attempt`. Unit u's seed commits to
everything a miner could otherwise vary for free:

    seed_u = H("unit", P, M, attempt, u, C_u, c_u)

where C_u = H("trace-prefix", C_{u-1}, leaf_{u-1}) (C_0 = ZERO_HASH) commits to every earlier
leaf, and c_u is the miner's header commitment (transaction root and time) when unit u starts.
Leaf u records (input state hash, output state hash, output digest, c_u). Changing any earlier
leaf, or the header a unit was run for, changes the unit's seed: a re-rolled ticket needs the
unit run again. Unit 0 starts from the task's state at P and unit u+1 from unit u's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from useful_work.hashing import HASH_SIZE, ZERO_HASH, int_bytes, tagged_hash
from useful_work.merkle import leaf_hash, merkle_root, node_hash

LEAF_SIZE = 4 * HASH_SIZE
TRACE_START = ZERO_HASH  # C_0: the prefix commitment before the first leaf


def state_hash(state: bytes) -> bytes:
    """The hash under which a serialised task state is committed and stored."""
    return tagged_hash("task-state", state)


@dataclass(frozen=True, slots=True)
class Leaf:
    input_hash: bytes
    output_hash: bytes
    digest: bytes
    commitment: bytes  # the miner's header commitment when the unit started

    def __post_init__(self) -> None:
        for name in ("input_hash", "output_hash", "digest", "commitment"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise ValueError(f"leaf field {name} must be {HASH_SIZE} bytes")

    def to_bytes(self) -> bytes:
        return self.input_hash + self.output_hash + self.digest + self.commitment

    @classmethod
    def from_bytes(cls, data: bytes) -> Leaf:
        if len(data) != LEAF_SIZE:
            raise ValueError(f"a leaf is {LEAF_SIZE} bytes, got {len(data)}")
        return cls(data[:32], data[32:64], data[64:96], data[96:])


def next_prefix(prefix: bytes, leaf: Leaf) -> bytes:
    """C_{u+1} from C_u and leaf u."""
    return tagged_hash("trace-prefix", prefix, leaf.to_bytes())


def prefix_commitments(leaves: Sequence[Leaf]) -> list[bytes]:
    """[C_0, C_1, ..., C_n] for a trace of n leaves."""
    out = [TRACE_START]
    for leaf in leaves:
        out.append(next_prefix(out[-1], leaf))
    return out


def unit_seed(
    parent_hash: bytes,
    miner: bytes,
    attempt: int,
    unit_index: int,
    prefix: bytes,
    commitment: bytes,
) -> bytes:
    """Seed of unit u of trace `attempt` by miner M on parent P, after prefix C_u, for header
    commitment c_u."""
    return tagged_hash(
        "unit", parent_hash, miner, int_bytes(attempt), int_bytes(unit_index), prefix, commitment
    )


def trace_root(leaves: Sequence[Leaf]) -> bytes:
    return merkle_root([leaf.to_bytes() for leaf in leaves])


def leaves_chain(leaves: Sequence[Leaf], start_hash: bytes) -> int | None:
    """Index of the first leaf whose input does not follow on, or None when the trace chains."""
    expected = start_hash
    for i, leaf in enumerate(leaves):
        if leaf.input_hash != expected:
            return i
        expected = leaf.output_hash
    return None


def prefix_trace_roots(leaves: Sequence[Leaf], wanted: Sequence[int]) -> dict[int, bytes]:
    """`trace_root(leaves[: u + 1])` for each u in `wanted`, in O(n log n) hashes in all.

    The tree splits at the largest power of two below the leaf count, so a prefix's tree is
    the complete subtrees of its count's binary digits, joined right to left: a stack of
    complete subtrees (merged while the top two are the same size) gives every prefix root."""
    want = set(wanted)
    out: dict[int, bytes] = {}
    stack: list[tuple[int, bytes]] = []  # (size, root of a complete subtree), sizes decreasing
    last = max(want, default=-1)
    for u, leaf in enumerate(leaves[: last + 1]):
        size, node = 1, leaf_hash(leaf.to_bytes())
        while stack and stack[-1][0] == size:
            left = stack.pop()[1]
            size, node = 2 * size, node_hash(left, node)
        stack.append((size, node))
        if u in want:
            inner = stack[-1][1]
            for _, left in reversed(stack[:-1]):
                inner = node_hash(left, inner)
            out[u] = tagged_hash("merkle-root", int_bytes(u + 1), inner)
    return out
