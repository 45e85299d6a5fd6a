"""The ledger state at the store's tip, read from LevelDB through bounded caches.

Accounts and state-tree nodes are read when asked for, never loaded whole: a node's memory does
not grow with the number of accounts. Tasks and pending rewards (few: rewards are bounded by the
maturity window) are kept in memory.

Each connect or disconnect starts a new *generation*. A view made for one generation reads a
LevelDB snapshot taken then, so a view kept across a connect (a miner's template) still reads
the state it was made for. The caches hold the current generation's values only: a write
updates them under a lock together with the generation counter, and a view of an older
generation reads its snapshot, never the cache.
"""

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import plyvel

from chain.lru import LRU, MISSING
from chain.smt import Node, Position, decode_node, position_key

V = TypeVar("V")


class StateCache:
    """The current generation's accounts and tree nodes, bounded in entries."""

    def __init__(self, nodes: int = 200_000, accounts: int = 100_000) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        self.nodes: LRU[Position, Node | None] = LRU(nodes)
        self.accounts: LRU[bytes, bytes | None] = LRU(accounts)

    def advance(
        self, nodes: Mapping[Position, Node | None], accounts: Mapping[bytes, bytes | None]
    ) -> None:
        """A write reached the disk: start the next generation with these values."""
        with self.lock:
            self.generation += 1
            for pos, node in nodes.items():
                self.nodes.put(pos, node)
            for address, raw in accounts.items():
                self.accounts.put(address, raw)


class GenerationReader:
    """Reads of one generation: the cache while it is current, else that generation's snapshot."""

    def __init__(
        self,
        db: "plyvel.DB",
        cache: StateCache,
        node_prefix: bytes,
        account_prefix: bytes,
        on_corrupt: Callable[[BaseException], Exception],
    ) -> None:
        self.cache = cache
        self.generation = cache.generation
        self.snapshot = db.snapshot()
        self.node_prefix = node_prefix
        self.account_prefix = account_prefix
        self.on_corrupt = on_corrupt

    def _read(
        self, lru: LRU, key: object, db_key: bytes, decode: Callable[[bytes], object]
    ) -> object:
        cache = self.cache
        if self.generation == cache.generation:
            with cache.lock:
                hit = lru.get(key) if self.generation == cache.generation else MISSING
            if hit is not MISSING:
                return hit
        try:
            raw = self.snapshot.get(db_key, verify_checksums=True)
        except plyvel.CorruptionError as exc:
            raise self.on_corrupt(exc) from None
        value = None if raw is None else decode(raw)
        with cache.lock:
            if self.generation == cache.generation:
                lru.put(key, value)
        return value

    def node(self, position: Position) -> Node | None:
        return self._read(  # type: ignore[return-value]
            self.cache.nodes, position, self.node_prefix + position_key(position), decode_node
        )

    def account_bytes(self, address: bytes) -> bytes | None:
        return self._read(  # type: ignore[return-value]
            self.cache.accounts, address, self.account_prefix + address, bytes
        )

    def account_addresses(self) -> Iterator[bytes]:
        """Every stored address (a scan of the whole account table: for checks and tests)."""
        n = len(self.account_prefix)
        for key in self.snapshot.iterator(prefix=self.account_prefix, include_value=False):
            yield key[n:]


class StoredAccounts(Mapping[bytes, V]):
    """The accounts of one generation, decoded with `decode(address, raw)` as they are read."""

    def __init__(self, reader: GenerationReader, decode: Callable[[bytes, bytes], V]) -> None:
        self.reader = reader
        self.decode = decode

    def __getitem__(self, address: bytes) -> V:
        raw = self.reader.account_bytes(address)
        if raw is None:
            raise KeyError(address)
        return self.decode(address, raw)

    def get(self, address: bytes, default: V | None = None) -> V | None:  # type: ignore[override]
        raw = self.reader.account_bytes(address)
        return default if raw is None else self.decode(address, raw)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, bytes) and self.reader.account_bytes(address) is not None

    def __iter__(self) -> Iterator[bytes]:
        return self.reader.account_addresses()

    def __len__(self) -> int:
        return sum(1 for _ in self)
