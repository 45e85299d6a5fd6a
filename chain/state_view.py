"""Read-only views of the ledger's maps, layered without copying the state, and the tree's keys.

A block's new state is its parent's state with the block's changes laid over it (`Overlay`):
reads look at the changes first, then at the parent's maps. Overlays flatten: an overlay over an
overlay keeps one base and the union of the changes since it, so a read is two dict lookups
however many blocks are stacked. The base is the store's state at its tip, read through a
bounded cache (chain.state_store), or plain dicts (tests, genesis, the simulator).

Tree keys: each ledger entry is one leaf of the state tree (chain.smt), keyed by
H("state-key", kind, id) and valued by H("state-value", record bytes), kinds b"a" (account by
address), b"t" (task by id) and b"r" (pending reward by height, 8 bytes big-endian).
"""

from collections.abc import Iterator, Mapping
from typing import TypeVar

from useful_work.hashing import tagged_hash

K = TypeVar("K")
V = TypeVar("V")

ACCOUNT_KIND = b"a"
TASK_KIND = b"t"
REWARD_KIND = b"r"


def state_key(kind: bytes, ident: bytes) -> bytes:
    return tagged_hash("state-key", kind, ident)


def account_key(address: bytes) -> bytes:
    return state_key(ACCOUNT_KIND, address)


def task_key(task_id: bytes) -> bytes:
    return state_key(TASK_KIND, task_id)


def reward_key(height: int) -> bytes:
    return state_key(REWARD_KIND, height.to_bytes(8, "big"))


def value_hash(record: bytes) -> bytes:
    return tagged_hash("state-value", record)


class Overlay(Mapping[K, V]):
    """`base` with `changes` laid over it (a None value: the key is removed); read-only."""

    __slots__ = ("base", "changes")

    def __init__(self, base: Mapping[K, V], changes: Mapping[K, V | None]) -> None:
        self.base = base
        self.changes = changes

    @classmethod
    def over(cls, parent: Mapping[K, V], changes: Mapping[K, V | None]) -> "Overlay[K, V]":
        """`changes` over `parent`, sharing the parent's base when it is an overlay itself."""
        if not changes and isinstance(parent, Overlay):
            return parent
        if isinstance(parent, Overlay):
            merged = dict(parent.changes)
            merged.update(changes)
            return cls(parent.base, merged)
        return cls(parent, dict(changes))

    def __getitem__(self, key: K) -> V:
        if key in self.changes:
            value = self.changes[key]
            if value is None:
                raise KeyError(key)
            return value
        return self.base[key]

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        if key in self.changes:
            value = self.changes[key]
            return default if value is None else value
        return self.base.get(key, default)

    def __contains__(self, key: object) -> bool:
        if key in self.changes:
            return self.changes[key] is not None  # type: ignore[index]
        return key in self.base

    def __iter__(self) -> Iterator[K]:
        for key, value in self.changes.items():
            if value is not None:
                yield key
        for key in self.base:
            if key not in self.changes:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)
