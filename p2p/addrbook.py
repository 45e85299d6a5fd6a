"""The address book: peer addresses (HOST:PORT) this node knows, and when each may be dialled.

Addresses the operator named (`--peer`, `POST /api/admin/peers`) are persistent: dialled again
and again, with a backoff after each failure. Addresses heard from peers are kept up to
MAX_KNOWN_ADDRS and dialled only while outbound slots are free.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_KNOWN_ADDRS = 1_000
DIAL_BACKOFF_S = (0.5, 30.0)  # after the n-th failure in a row: 0.5 s * 2^n, at most 30 s
REDIAL_AFTER_S = 1.0  # a connection that ended: the address may be dialled again after this


@dataclass
class AddrInfo:
    persistent: bool
    next_try: float = 0.0
    failures: int = 0


class AddressBook:
    def __init__(self, own: str, limit: int = MAX_KNOWN_ADDRS) -> None:
        self.own = own  # our own listen address: never dialled, never learned
        self.limit = limit
        self.entries: dict[str, AddrInfo] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __contains__(self, addr: object) -> bool:
        return addr in self.entries

    def add_persistent(self, addr: str) -> None:
        """An address the operator named: dialled at once, and again whenever it drops."""
        info = self.entries.setdefault(addr, AddrInfo(persistent=True))
        info.persistent, info.next_try = True, 0.0

    def add(self, addr: str) -> None:
        """A connected peer's own listen address."""
        self.entries.setdefault(addr, AddrInfo(persistent=False))

    def learn(self, addr: str) -> None:
        """An address a peer told us of (`addr`): kept while the book has room."""
        if addr and addr != self.own and len(self.entries) < self.limit:
            self.entries.setdefault(addr, AddrInfo(persistent=False))

    def forget(self, addr: str) -> None:
        self.entries.pop(addr, None)

    def dialling(self, addr: str) -> AddrInfo:
        return self.entries.setdefault(addr, AddrInfo(persistent=False))

    def dial_failed(self, addr: str) -> float:
        """Count a failed dial; seconds until the address is tried again."""
        info = self.dialling(addr)
        info.failures += 1
        wait = min(DIAL_BACKOFF_S[1], DIAL_BACKOFF_S[0] * 2 ** min(info.failures, 6))
        info.next_try = time.monotonic() + wait
        return wait

    def dial_worked(self, addr: str) -> None:
        self.dialling(addr).failures = 0

    def connection_ended(self, addr: str) -> None:
        self.dialling(addr).next_try = time.monotonic() + REDIAL_AFTER_S

    def due(
        self, connected: set[str], outbound: int, max_outbound: int, banned: Callable[[str], object]
    ) -> list[str]:
        """Addresses to dial now: not connected, not ours, past their backoff, not banned;
        heard-of ones only while fewer than `max_outbound` outbound connections are open."""
        now = time.monotonic()
        out = []
        for addr, info in list(self.entries.items()):
            if addr in connected or addr == self.own or now < info.next_try:
                continue
            if not info.persistent and outbound >= max_outbound:
                continue
            if banned(addr.rpartition(":")[0]):
                continue
            outbound += 1
            out.append(addr)
        return out
