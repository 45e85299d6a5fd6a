"""The block tree's index entries, without holding the whole tree in memory.

Entries of stored blocks live in LevelDB (ChainStore's index) and are read on demand through a
bounded LRU cache, so a node's start-up time and memory do not grow with the chain. Entries of
headers without bodies (unproven headers, invalid headers) are never stored: they live in memory
only, bounded by the chain state's limits. Thread-safe: the event loop reads entries while the
chain worker changes them.
"""

from __future__ import annotations

import threading

from chain.lru import LRU
from chain.storage import STATUS_HEADER, ChainStore, IndexEntry


class BlockIndex:
    def __init__(self, store: ChainStore, cache_entries: int = 8_192) -> None:
        self.store = store
        self.memory: dict[bytes, IndexEntry] = {}  # header-only entries, never stored
        self.cache: LRU[bytes, IndexEntry] = LRU(cache_entries)
        self.reads = 0  # entries read from the store (cache misses)
        self._lock = threading.Lock()

    def get(self, block_hash: bytes) -> IndexEntry | None:
        with self._lock:
            found = self.memory.get(block_hash)
            if found is not None:
                return found
            cached = self.cache.get(block_hash)
            if isinstance(cached, IndexEntry):
                return cached
        found = self.store.get_index(block_hash)
        self.reads += 1
        if found is None or found.status == STATUS_HEADER:
            return None  # a header-only entry of an older run is not part of the tree
        with self._lock:
            changed = self.memory.get(block_hash) or self.cache.get(block_hash)
            if isinstance(changed, IndexEntry):  # changed meanwhile
                return changed
            self.cache.put(found.hash, found)
        return found

    def __getitem__(self, block_hash: bytes) -> IndexEntry:
        found = self.get(block_hash)
        if found is None:
            raise KeyError(block_hash.hex())
        return found

    def __contains__(self, block_hash: bytes) -> bool:
        return self.get(block_hash) is not None

    def put_stored(self, entry: IndexEntry) -> None:
        """An entry the store has just written (a stored block, a changed status)."""
        with self._lock:
            self.memory.pop(entry.hash, None)
            self.cache.put(entry.hash, entry)

    def put_memory(self, entry: IndexEntry) -> None:
        """A header-only entry, kept in memory until forgotten."""
        with self._lock:
            self.memory[entry.hash] = entry

    def forget(self, block_hash: bytes) -> IndexEntry | None:
        """Drop a header-only entry; stored entries stay (they are the store's)."""
        with self._lock:
            return self.memory.pop(block_hash, None)
