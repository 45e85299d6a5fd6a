"""Trace commitments: one leaf per unit, a Merkle root over the leaves, openings of input states.

A miner on parent P with miner address M runs units u = 0, 1, 2, ... with seed_u = unit_seed(P, M, u) (a
later attempt a on the same parent: unit_seed(P, M, u, a)).
Unit 0 starts from the task's state at P and unit u+1 from unit u's output. Each unit yields a
leaf (input state hash, output state hash, output digest); the trace root commits to them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from useful_work.hashing import HASH_SIZE, int_bytes, tagged_hash
from useful_work.merkle import merkle_root

LEAF_SIZE = 3 * HASH_SIZE


def state_hash(state: bytes) -> bytes:
    """The hash under which a serialised task state is committed and stored."""
    return tagged_hash("task-state", state)


def unit_seed(parent_hash: bytes, miner: bytes, unit_index: int, attempt: int = 0) -> bytes:
    """Seed of unit u of trace `attempt` mined on parent P by miner M.

    The work depends on M, so a new key means new work; a new attempt is new work too, which lets
    a key that ran out of units on a tip start a fresh trace without a free ticket.
    """
    if attempt == 0:
        return tagged_hash("unit", parent_hash, miner, int_bytes(unit_index))
    return tagged_hash("unit", parent_hash, miner, int_bytes(unit_index), int_bytes(attempt))


@dataclass(frozen=True, slots=True)
class Leaf:
    input_hash: bytes
    output_hash: bytes
    digest: bytes

    def __post_init__(self) -> None:
        for name in ("input_hash", "output_hash", "digest"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise ValueError(f"leaf field {name} must be {HASH_SIZE} bytes")

    def to_bytes(self) -> bytes:
        return self.input_hash + self.output_hash + self.digest

    @classmethod
    def from_bytes(cls, data: bytes) -> "Leaf":
        if len(data) != LEAF_SIZE:
            raise ValueError(f"a leaf is {LEAF_SIZE} bytes, got {len(data)}")
        return cls(data[:32], data[32:64], data[64:])


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
