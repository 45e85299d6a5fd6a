"""Where each confirmed transaction is, and each account's history, for the API.

The records live in the store (chain.history), written in the same batch as the block that
creates them and deleted in the batch that disconnects it: nothing is rebuilt at start-up, and
the index can never disagree with the best chain after a crash.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from chain.history import AccountEvent, TxLocation
from chain.storage import ChainStore

__all__ = ["AccountEvent", "TxIndex", "TxLocation"]


class _Locations(Mapping[bytes, TxLocation]):
    def __init__(self, store: ChainStore) -> None:
        self.store = store

    def __getitem__(self, txid: bytes) -> TxLocation:
        found = self.store.tx_location(txid)
        if found is None:
            raise KeyError(txid)
        return found

    def get(self, txid: bytes, default: TxLocation | None = None) -> TxLocation | None:  # type: ignore[override]
        found = self.store.tx_location(txid)
        return default if found is None else found

    def __iter__(self) -> Iterator[bytes]:
        return self.store.txids()

    def __len__(self) -> int:
        return sum(1 for _ in self)


class TxIndex:
    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self.locations = _Locations(store)

    def txids(self, hex_prefix: str) -> list[bytes]:
        return list(self.store.txids(hex_prefix))

    def history(self, address: bytes, offset: int, limit: int) -> tuple[int, list[AccountEvent]]:
        """(total, a page of events newest first)."""
        return self.store.history(address, offset, limit)
