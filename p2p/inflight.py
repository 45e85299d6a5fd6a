"""Block bodies asked of peers and not yet delivered: the one record of who was asked for what,
and when. Sync schedules requests against it, the peer table reads a peer's count from it, and
a delivery, a `notfound`, a timeout, a dropped branch or a peer's disconnection clears it."""

from __future__ import annotations


class BlocksInFlight:
    def __init__(self) -> None:
        self._holder: dict[bytes, int] = {}  # block hash -> id of the peer asked for it
        self._asked: dict[int, dict[bytes, float]] = {}  # peer id -> block hash -> when asked

    def __contains__(self, block_hash: bytes) -> bool:
        return block_hash in self._holder

    def count(self, peer_id: int) -> int:
        """Bodies `peer_id` was asked for and has not delivered."""
        return len(self._asked.get(peer_id, ()))

    def ask(self, peer_id: int, block_hash: bytes, now: float) -> None:
        self._holder[block_hash] = peer_id
        self._asked.setdefault(peer_id, {})[block_hash] = now

    def delivered(self, peer_id: int, block_hash: bytes) -> bool:
        """A body arrived from `peer_id`: whether that peer had been asked for it. Any request
        for the block is done with."""
        solicited = self._asked.get(peer_id, {}).pop(block_hash, None) is not None
        self._holder.pop(block_hash, None)
        return solicited

    def not_found(self, peer_id: int, block_hash: bytes) -> bool:
        """`peer_id` says it lacks the block: whether it had been asked for it (then the block
        may be asked of another)."""
        if self._asked.get(peer_id, {}).pop(block_hash, None) is None:
            return False
        self._holder.pop(block_hash, None)
        return True

    def expire(self, peer_id: int, now: float, timeout_s: float) -> list[bytes]:
        """The requests to `peer_id` older than `timeout_s`, forgotten (to be asked elsewhere)."""
        asked = self._asked.get(peer_id, {})
        late = [h for h, t in asked.items() if now - t > timeout_s]
        for h in late:
            del asked[h]
            self._holder.pop(h, None)
        return late

    def cancel(self, block_hash: bytes) -> None:
        """The block is wanted no more (its branch was given up)."""
        peer_id = self._holder.pop(block_hash, None)
        if peer_id is not None:
            self._asked.get(peer_id, {}).pop(block_hash, None)

    def peer_gone(self, peer_id: int) -> None:
        for h in self._asked.pop(peer_id, {}):
            self._holder.pop(h, None)
