"""Share claims on the wire: verified before relay, bounded per peer, kept in the share pool.

A share claim (chain.block.ShareClaim) travels in a `share` message (p2p.protocol.ShareMsg).
What one costs the sender vs the node, and the rule for each:
- size: at most `max_share_bytes` (a block's whole share budget); more is a ban (no honest
  peer of the network sends it);
- rate: at most SHARES_PER_S claims a second per peer (a burst of SHARE_BURST); over it the
  claim is dropped and the peer scored (10 points), never verified;
- cheap first: a claim that does not decode is a ban; one no longer than the pool's claim of
  its (miner, attempt, parent) is dropped unverified (re-announcements are honest); one on
  another parent waits, unverified, in a FIFO of WAITING_LIMIT claims for that parent to become
  the tip (a block's finder gossips claims on it while its peers still fetch and check the
  block), and is checked then or dropped with the FIFO's oldest;
- then the pool's checks (consensus.share_pool: signature, share tickets, openings), and the
  re-execution of its shares' last units and each segment's `share_spot_checks` off the event
  loop (a longer version of a held claim re-runs its new segments only). A claim that
  fails them cost its sender hashes only and the node up to that many units: the sender is
  banned (100 points), as for an invalid block;
- relay: only a claim the pool kept goes to the other peers, once per peer (claim id), paced
  at SEND_PER_S a peer (under SHARES_PER_S, so an honest node is never over a peer's limit
  however many miners' claims it relays at once); a claim waiting to go out is replaced by a
  longer one of its (parent, miner, attempt) and dropped when the tip moves.
The miner hands its own claims to `publish` from its thread; they go to every peer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

from chain.block import ShareClaim
from chain.encoding import DecodeError
from consensus.chainstate import ChainState
from consensus.miner import Miner
from consensus.share_pool import SharePool
from consensus.shares import ShareRuleError, share_miner
from p2p.peer import Misbehaving, Peer
from p2p.protocol import ShareMsg

if TYPE_CHECKING:
    from chain.state import LedgerState

log = logging.getLogger("pouw.shares")

SHARES_PER_S = 4.0  # sustained claims a second one peer may send
SHARE_BURST = 16.0
SEND_PER_S = 3.0  # claims a second this node sends one peer: under SHARES_PER_S, with margin
SEND_BURST = 8.0  # for a peer's event loop that stalls and then reads a queue at once
WAITING_LIMIT = 64  # claims on a parent that is not (yet) the tip, kept to check when it is
OUTBOX_LIMIT = 256  # claims waiting for one peer; beyond it the oldest are dropped
BENIGN = ("share-wrong-parent", "duplicate-share", "shares-off")  # racing tips, re-announcements


class ShareRelay:
    """The node's share pool, fed by its miner and its peers, relayed after verification."""

    def __init__(
        self,
        chain: ChainState,
        peers: Callable[[], list[Peer]],
        device: str = "cpu",
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.chain = chain
        self.params = chain.params
        self.pool = SharePool(chain.params, device)
        self.peers = peers
        self.loop: asyncio.AbstractEventLoop | None = None
        self._buckets: dict[int, tuple[float, float]] = {}  # peer id -> (tokens, last refill)
        self._send_buckets: dict[int, tuple[float, float]] = {}  # the same for what we send
        # peer id -> claims waiting to go to it, the longest per (parent, miner, attempt)
        self._outbox: dict[int, dict[tuple[bytes, bytes, int], ShareClaim]] = {}
        self._flush_due: set[int] = set()  # peers with a flush scheduled
        # claims on a parent that is not the tip, the longest per (parent, miner, attempt)
        self._waiting: dict[tuple[bytes, bytes, int], tuple[Peer, ShareClaim]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0
        self.refused = 0
        self.relayed = 0
        self.verify_seconds = 0.0  # re-running claims' units before relay
        self._claims: Counter | None = None
        self._seconds: Counter | None = None
        if registry is not None:
            self._claims = Counter(
                "pouw_share_claims",
                "Share claims from peers, by result",
                ["result"],
                registry=registry,
            )
            self._seconds = Counter(
                "pouw_share_verify_seconds",
                "Seconds spent re-running share claims' units before relay",
                registry=registry,
            )

    @property
    def enabled(self) -> bool:
        return self.params.shares_per_block > 0

    def attach(self, miner: Miner) -> None:
        """The miner includes the pool's claims in its blocks and publishes the shares it finds."""
        if self.enabled:
            self.loop = asyncio.get_running_loop()
            miner.share_pool = self.pool
            miner.on_share = self.publish
            self.chain.verified_claims = self.pool.verified_output

    def publish(self, claim: ShareClaim) -> None:
        """From the miner's thread: send the miner's own claim to every peer."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._relay, claim, None)

    def _relay(self, claim: ShareClaim, source: Peer | None) -> None:
        key = (claim.parent_hash, share_miner(claim), claim.attempt)
        for p in self.peers():
            if p is source or claim.claim_id in p.known:
                continue
            box = self._outbox.setdefault(p.id, {})
            waiting = box.get(key)
            if waiting is None or len(waiting.shares) < len(claim.shares):
                box.pop(key, None)  # the longer claim goes to the back of the queue
                box[key] = claim
                while len(box) > OUTBOX_LIMIT:
                    box.pop(next(iter(box)))
            self._flush(p)

    def _flush(self, peer: Peer) -> None:
        """Send `peer` the claims waiting for it, as fast as the pace allows; schedule the rest."""
        self._flush_due.discard(peer.id)
        box = self._outbox.get(peer.id)
        tip = self.chain.tip.hash
        while box:
            key = next(iter(box))
            claim = box[key]
            if claim.parent_hash != tip or claim.claim_id in peer.known:
                del box[key]  # stale, or the peer has it: nothing to spend a send on
                continue
            wait = _take(self._send_buckets, peer.id, SEND_PER_S, SEND_BURST)
            if wait > 0:
                if self.loop is not None and peer.id not in self._flush_due:
                    self._flush_due.add(peer.id)
                    self.loop.call_later(wait, self._flush_if_connected, peer)
                return
            del box[key]
            peer.mark_known(claim.claim_id)
            peer.send(ShareMsg(claim.to_bytes()))
            self.relayed += 1

    def _flush_if_connected(self, peer: Peer) -> None:
        if any(p is peer for p in self.peers()):
            self._flush(peer)
        else:
            self.peer_gone(peer)

    def _take_token(self, peer: Peer) -> bool:
        return _take(self._buckets, peer.id, SHARES_PER_S, SHARE_BURST) == 0

    def _count(self, result: str, started: float) -> None:
        took = time.perf_counter() - started
        self.verify_seconds += took
        if self._claims is not None and self._seconds is not None:
            self._claims.labels(result).inc()
            self._seconds.inc(took)

    def peer_gone(self, peer: Peer) -> None:
        self._buckets.pop(peer.id, None)
        self._send_buckets.pop(peer.id, None)
        self._outbox.pop(peer.id, None)
        self._flush_due.discard(peer.id)

    def _parent(self) -> tuple[bytes, int, LedgerState]:
        with self.chain.lock:
            tip = self.chain.tip
            return (
                tip.hash,
                self.chain.parent_info(tip.hash).next_target(self.params),
                self.chain.state,
            )

    async def on_message(self, peer: Peer, msg: ShareMsg) -> None:
        if not self.enabled:
            raise Misbehaving(20, "share message on a network without shares")
        if len(msg.claim) > self.params.max_share_bytes:
            raise Misbehaving(
                100, f"share claim of {len(msg.claim)} bytes, limit {self.params.max_share_bytes}"
            )
        if not self._take_token(peer):
            raise Misbehaving(10, f"over {SHARES_PER_S:.0f} share claims a second")
        try:
            claim = ShareClaim.from_bytes(msg.claim)
        except DecodeError as exc:
            raise Misbehaving(100, f"share claim does not decode: {exc}") from None
        peer.mark_known(claim.claim_id)
        parent, target, state = self._parent()
        if claim.parent_hash != parent:
            self._wait(peer, claim)
            return
        await self._check(peer, claim, parent, target, state)

    def _wait(self, peer: Peer, claim: ShareClaim) -> None:
        key = (claim.parent_hash, share_miner(claim), claim.attempt)
        held = self._waiting.get(key)
        if held is None or len(held[1].shares) < len(claim.shares):
            self._waiting.pop(key, None)
            self._waiting[key] = (peer, claim)
            while len(self._waiting) > WAITING_LIMIT:
                self._waiting.pop(next(iter(self._waiting)))

    def on_new_tip(self, result: object = None) -> None:
        """A sync.on_new_tip listener: check the claims that waited for the new tip, in a task
        of their own (block processing does not wait for them)."""
        if not self.enabled:
            return
        parent, target, state = self._parent()
        ready = [pc for k, pc in self._waiting.items() if k[0] == parent]
        self._waiting = {k: pc for k, pc in self._waiting.items() if k[0] != parent}
        if ready:
            task = asyncio.create_task(self._check_waiting(ready, parent, target, state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _check_waiting(
        self,
        ready: list[tuple[Peer, ShareClaim]],
        parent: bytes,
        target: int,
        state: LedgerState,
    ) -> None:
        for peer, claim in ready:
            if peer.closed:
                continue
            try:
                await self._check(peer, claim, parent, target, state)
            except Misbehaving as exc:
                peer.misbehave(exc.points, exc.reason)

    async def _check(
        self, peer: Peer, claim: ShareClaim, parent: bytes, target: int, state: LedgerState
    ) -> None:
        if self.pool.has_better(claim):
            return  # one we hold as long: nothing to check or relay
        started = time.perf_counter()
        try:
            outcome = await asyncio.to_thread(self.pool.add, claim, parent, target, state)
        except ShareRuleError as exc:
            self._count("refused", started)
            self.refused += 1
            if exc.reason in BENIGN:
                log.debug("%s: share claim not kept: %s", peer, exc)
                return
            raise Misbehaving(100, f"invalid share claim: {exc}") from None
        self._count("accepted", started)
        self.accepted += 1
        log.debug("%s: share claim %s %s", peer, claim.claim_id.hex()[:16], outcome)
        self._relay(claim, peer)


def _take(buckets: dict[int, tuple[float, float]], key: int, rate: float, burst: float) -> float:
    """Take a token from `key`'s bucket: 0 when taken, else the seconds until one is there."""
    now = time.monotonic()
    tokens, last = buckets.get(key, (burst, now))
    tokens = min(burst, tokens + (now - last) * rate)
    if tokens < 1:
        buckets[key] = (tokens, now)
        return (1 - tokens) / rate
    buckets[key] = (tokens - 1, now)
    return 0.0
