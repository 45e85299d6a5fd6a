"""When this node first had each recent block's body, when it first connected it to its best
chain (wall-clock Unix ms, float) and how many milliseconds validating and connecting it took:
shown by GET /api/blocks/{id} for propagation measurements. Bounded, kept in memory only."""

from __future__ import annotations

import time
from collections import OrderedDict

from chain.block import Block

MAX_BLOCK_TIMES = 10_000  # blocks whose arrival and connection times are kept


class BlockTimes:
    def __init__(self, limit: int = MAX_BLOCK_TIMES) -> None:
        self.limit = limit
        # hash -> [received, connected, verify]
        self._times: OrderedDict[bytes, list[float | None]] = OrderedDict()

    def get(self, block_hash: bytes) -> list[float | None] | None:
        """[received_ms, connected_ms, verify_ms] (each None until known), or None if not seen."""
        return self._times.get(block_hash)

    def _entry(self, block_hash: bytes) -> list[float | None]:
        times = self._times.get(block_hash)
        if times is None:
            times = self._times[block_hash] = [None, None, None]
            while len(self._times) > self.limit:
                self._times.popitem(last=False)
        return times

    def received(self, block_hash: bytes) -> None:
        times = self._entry(block_hash)
        if times[0] is None:
            times[0] = round(time.time() * 1000, 3)

    def connected(self, blocks: list[Block]) -> None:
        now = round(time.time() * 1000, 3)
        for block in blocks:
            times = self._entry(block.hash)
            if times[1] is None:
                times[1] = now

    def verified(self, block_hash: bytes, seconds: float) -> None:
        """The block became the new tip after `seconds` of validation (first time only)."""
        times = self._times.get(block_hash)
        if times is not None and times[2] is None:
            times[2] = round(seconds * 1000, 3)
