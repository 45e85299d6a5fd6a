"""Share claims on the wire: verified before relay, bounded per peer, kept in the share pool.

A share claim (chain.block.ShareClaim) travels in a `share` message (p2p.protocol.ShareMsg).
What one costs the sender vs the node, and the rule for each:
- size: at most `max_share_bytes` (a block's whole share budget); more is a ban (no honest
  peer of the network sends it);
- rate: at most SHARES_PER_S claims a second per peer (a burst of SHARE_BURST); over it the
  claim is dropped and the peer scored (10 points), never verified;
- cheap first: a claim that does not decode is a ban; one on another parent, or no longer
  than the pool's claim of its (miner, attempt, parent), is dropped unverified (racing tips
  and re-announcements are honest);
- then the pool's checks (consensus.share_pool: signature, share tickets, openings), and the
  re-execution of its shares' last units and k spot checks off the event loop. A claim that
  fails them cost its sender hashes only and the node up to that many units: the sender is
  banned (100 points), as for an invalid block;
- relay: only a claim the pool kept goes to the other peers, once per peer (claim id).
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
from consensus.shares import ShareRuleError
from p2p.peer import Misbehaving, Peer
from p2p.protocol import ShareMsg

if TYPE_CHECKING:
    from chain.state import LedgerState

log = logging.getLogger("pouw.shares")

SHARES_PER_S = 4.0  # sustained claims a second one peer may send
SHARE_BURST = 16.0
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
        frame = ShareMsg(claim.to_bytes())
        for p in self.peers():
            if p is not source and claim.claim_id not in p.known:
                p.mark_known(claim.claim_id)
                p.send(frame)
                self.relayed += 1

    def _take_token(self, peer: Peer) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(peer.id, (SHARE_BURST, now))
        tokens = min(SHARE_BURST, tokens + (now - last) * SHARES_PER_S)
        if tokens < 1:
            self._buckets[peer.id] = (tokens, now)
            return False
        self._buckets[peer.id] = (tokens - 1, now)
        return True

    def _count(self, result: str, started: float) -> None:
        took = time.perf_counter() - started
        self.verify_seconds += took
        if self._claims is not None and self._seconds is not None:
            self._claims.labels(result).inc()
            self._seconds.inc(took)

    def peer_gone(self, peer: Peer) -> None:
        self._buckets.pop(peer.id, None)

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
        if claim.parent_hash != parent or self.pool.has_better(claim):
            return  # a claim on another tip, or one we hold as long: nothing to check or relay
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
