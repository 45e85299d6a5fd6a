"""Chain sync and gossip: headers first, then bodies from several peers; announcements.

- A peer that claims more work than we have seen from it gets `getheaders` with a locator (the
  last header it gave us, then our validated chain); headers are checked (ticket, signature,
  target: cheap) and indexed as they arrive, within the chain state's bounds on unproven headers.
  A header refused for now (too far above our validated tip, too many held, its branch given up)
  is not the peer's fault: we stop asking that peer for headers until our tip has moved on.
- Header work is a claim. Each header branch heavier than our validated tip is tracked: when its
  bodies were first wanted, who announced it, how long it has waited with no body arriving.
  Bodies of the heaviest branches are requested from the peers that have them (those that sent
  or announced them first, else peers high enough), at most `max_blocks_in_flight` per peer, and
  re-requested elsewhere after a timeout or a `notfound`. A branch that gets no body for
  `body_timeout_s` of wanting is given up (ChainState.drop_header_branch) and its announcers are
  disconnected: a fake header chain costs the node a bounded wait, never its liveness, and the
  miner keeps mining on the validated tip meanwhile (it pauses only while bodies of a heavier
  branch really arrive).
- Blocks are validated on the chain worker thread (one thread: the chain state's only writer), so
  the event loop stays responsive. Re-execution of work only happens inside ChainState when a
  block's branch has more work than the tip; an unsolicited block is looked at only if it could be
  the new best tip, and each peer has a verification budget: seconds of validation spent on its
  blocks that did not become our best chain. A peer over budget is dropped.
- A body that is not its header's (Outcome.BAD_MESSAGE) bans its sender and marks nothing: the
  body is fetched again from another peer. Invalid work bans its sender.
- New tips and new transactions are announced with `inv`; a peer that hears of an unknown block
  asks for headers, which brings the body request along.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chain.block import Block, BlockHeader
from chain.encoding import DecodeError
from chain.mempool import Mempool, TxRejected
from chain.storage import STATUS_HEADER, STATUS_INVALID, IndexEntry
from chain.tx import Transaction
from consensus.chainstate import BlockResult, ChainState, Outcome
from consensus.forkchoice import prefer
from consensus.validation import Reason
from p2p.block_times import BlockTimes
from p2p.chain_worker import ChainWorker
from p2p.inflight import BlocksInFlight
from p2p.metrics import NodeMetrics, tx_reason_code
from p2p.peer import Misbehaving, Peer, TokenBucket
from p2p.protocol import (
    MAX_HEADERS,
    MAX_LOCATOR,
    BlockMsg,
    GetData,
    GetHeaders,
    Headers,
    Inv,
    Message,
    NotFound,
    TxMsg,
    encode,
)

MAX_REMEMBERED_SENDERS = 4_096  # block bodies whose sender we can still blame
log = logging.getLogger("pouw.sync")
T = TypeVar("T")

BODY_TIMEOUT_S = (
    60.0  # default: a heavier header branch with no body arriving for this long is given up
)
TOTAL_SERVE_SHARE = 0.2  # seconds per second that serving headers and blocks to all peers may take
TOTAL_SERVE_BURST_S = 3.0
BLOCK_TIMEOUT_S = 30.0  # one body request (at most; half the body timeout when that is shorter)
HEADERS_TIMEOUT_S = 30.0
HEADERS_RETRY_S = (
    30.0  # a peer whose headers were refused for now is asked again after this long at most
)
MAX_GETDATA_BLOCKS = 64  # blocks one getdata may ask for
MAX_BRANCHES = 32  # heavier header branches tracked
MAX_BRANCHES_FETCHED = 4  # the heaviest ones whose bodies are requested at once
MAX_MISSING_PER_BRANCH = 1_024  # bodies of one branch considered per scheduling round
PROGRESS_EVERY_S = 5.0
CATCHING_UP_S = 5.0  # mining pauses while bodies of a heavier branch arrived this recently


@dataclass
class SyncProgress:
    height: int
    target_height: int
    blocks_per_second: float
    syncing: bool


@dataclass
class BranchWant:
    """A header branch with more work than the validated tip, whose bodies we want."""

    id: bytes  # the first header it was tracked by (stable while the branch grows)
    tip: bytes  # its heaviest header we know
    height: int
    work: int
    first_wanted: float  # monotonic time it was first tracked
    announcers: set[int] = field(default_factory=set)  # ids of the peers that sent its headers
    waited: float = 0.0  # seconds wanted (among the branches being fetched) with no body arriving
    aged_at: float = 0.0  # monotonic time `waited` was last brought up to date
    progressed: bool = False  # a body of it arrived since the last tick
    missing: int = 0  # bodies it lacked at the last look


@dataclass(frozen=True)
class BranchView:
    """What the chain says of a tracked branch (computed on the chain worker)."""

    alive: bool  # still heavier than the tip, not invalid, connected to our best chain
    height: int
    work: int
    missing: tuple[
        tuple[bytes, int], ...
    ]  # (hash, height) of its blocks without a body, lowest first


@dataclass(frozen=True)
class HeaderBatch:
    outcome: Outcome  # of the first header not accepted, else HEADER
    reason: Reason | None  # its reason, if it has one
    detail: str
    index: int  # headers[:index] were accepted (new or known)
    new: int  # how many were new
    outcomes: dict[str, int]  # outcome value -> count, for the metrics


class Sync:
    def __init__(
        self,
        chain: ChainState,
        mempool: Mempool,
        metrics: NodeMetrics,
        peers: Callable[[], list[Peer]],
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.chain = chain
        self.mempool = mempool
        self.metrics = metrics
        self.peers = peers
        self.body_timeout_s = body_timeout_s
        self.block_timeout_s = min(BLOCK_TIMEOUT_S, body_timeout_s / 2)
        self.worker = ChainWorker()
        # All peers' requests together: at most this share of the node's time (see _served).
        self.serve_budget = TokenBucket(TOTAL_SERVE_SHARE, TOTAL_SERVE_BURST_S)
        self.best_header: IndexEntry = chain.tip  # a copy: see _refresh_best_header
        self.in_flight = BlocksInFlight()
        self.body_senders: OrderedDict[bytes, Peer] = (
            OrderedDict()
        )  # recent block bodies -> who sent them
        self.headers_asked: dict[int, float] = {}  # peer id -> when we sent getheaders
        # peer id -> (our tip height, monotonic time) when a header of theirs was refused for now
        self.headers_paused: dict[int, tuple[int, float]] = {}
        self.branches: dict[bytes, BranchWant] = {}
        self.branch_of: dict[
            bytes, bytes
        ] = {}  # missing body hash -> id of the branch it was wanted for
        self.not_found: dict[
            bytes, set[int]
        ] = {}  # hash -> peers that do not have it (notfound, bad body)
        self.timed_out: dict[
            bytes, set[int]
        ] = {}  # hash -> peers that let a request for it time out
        self.on_new_tip: list[Callable[[BlockResult], Awaitable[None] | None]] = []
        self._progress_at = time.monotonic()
        self._progress_height = chain.tip.height
        self.progress = SyncProgress(chain.tip.height, chain.tip.height, 0.0, False)
        self._scheduling = False
        self._reschedule = False
        # Bodies of a heavier branch arrived until this monotonic time; the branch's work then.
        self._catching_up_until = 0.0
        self._catching_up_work = 0
        self.block_times = BlockTimes()  # for the API (p2p/block_times.py)
        self.block_cpu_seconds = 0.0  # the chain worker's CPU time processing blocks (status)

    # --- block timing -----------------------------------------------------------------------------

    def note_received(self, block_hash: bytes) -> None:
        self.block_times.received(block_hash)

    def catching_up(self) -> bool:
        """Bodies of a heavier branch are arriving: mining on the old tip now would be wasted.

        Headers alone never pause mining: they cost their sender only hashes. (Called from the
        miner thread: it reads two numbers the event loop sets.)"""
        return (
            time.monotonic() < self._catching_up_until
            and self._catching_up_work > self.chain.tip.chain_work
        )

    # --- the chain worker (p2p/chain_worker.py) and serving budgets -------------------------------

    async def _served(self, peer: Peer, fn: Callable[[], T]) -> T:
        """Run a reply's work on the chain worker and charge the time it took (not the wait for
        the worker) to the peer's serving budget (see Node._serve_request)."""

        def timed() -> tuple[T, float]:
            started = time.perf_counter()
            return fn(), time.perf_counter() - started

        result, spent = await self.run_chain(timed)
        self.charge(peer, spent)
        return result

    def charge(self, peer: Peer, seconds: float) -> None:
        peer.serve_budget.charge(seconds)
        self.serve_budget.charge(seconds)

    def serve_wait(self, peer: Peer) -> float:
        """Seconds a request from `peer` waits before it is served: until both its own budget
        and the budget of all peers together are out of debt."""
        waits = []
        for bucket in (peer.serve_budget, self.serve_budget):
            bucket.refill()
            waits.append(-bucket.tokens / bucket.rate if bucket.tokens < 0 else 0.0)
        return max(waits)

    async def run_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the chain worker thread (the only thread that changes the chain)."""
        return await self.worker.run(fn, *args)

    async def process_block(
        self, block: Block, encoded_size: int | None = None, encoded: bytes | None = None
    ) -> tuple[BlockResult, float]:
        """`chain.process_block` on the chain worker, and the CPU time the worker
        thread spent in it (`time.thread_time`: validation with re-execution, connect, store; not
        the wait for the worker nor other threads' work while it ran)."""

        def timed() -> tuple[BlockResult, float]:
            started = time.thread_time()
            result = self.chain.process_block(block, encoded_size, encoded)
            return result, time.thread_time() - started

        return await self.run_chain(timed)

    def close(self) -> None:
        self.worker.close()

    # --- views of the block tree (run on the chain worker) ----------------------------------------

    def _header_locator(self, start: bytes | None) -> list[bytes]:
        """`start` (the last header a peer gave us, if we still hold it), then our validated chain
        at heights tip, tip-1, ... (ten), then doubling steps, then genesis."""
        out: list[bytes] = []
        if start is not None:
            e = self.chain.entry(start)
            if e is not None and e.status != STATUS_INVALID:
                out.append(start)
        step, h = 1, self.chain.tip.height
        while h > 0 and len(out) < MAX_LOCATOR - 1:
            x = self.chain.hash_at(h)
            if x is not None and x not in out:
                out.append(x)
            if len(out) >= 10:
                step *= 2
            h -= step
        out.append(self.chain.genesis.block.hash)
        return out

    def _accept_headers(self, headers: list[BlockHeader]) -> HeaderBatch:
        """Index headers in order; stop at the first that is not accepted."""
        counts: dict[str, int] = {}
        new = 0
        for i, header in enumerate(headers):
            result = self.chain.process_header(header)
            counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
            if result.outcome == Outcome.HEADER:
                new += 1
                continue
            if result.outcome == Outcome.DUPLICATE:
                continue
            self._refresh_best_header()
            detail = (result.reason.value + ": " if result.reason else "") + result.detail
            return HeaderBatch(result.outcome, result.reason, detail, i, new, counts)
        self._refresh_best_header()
        return HeaderBatch(Outcome.HEADER, None, "", len(headers), new, counts)

    def _branch_containing(self, block_hash: bytes, tips: frozenset[bytes]) -> bytes | None:
        """The tracked tip that `block_hash` extends (walking down to our best chain), if any."""
        e = self.chain.entry(block_hash)
        if e is not None:
            e = self.chain.entry(e.prev_hash)
        while e is not None:
            if e.hash in tips:
                return e.hash
            if e.status != STATUS_HEADER and self.chain.on_best_chain(e.hash):
                return None
            e = self.chain.entry(e.prev_hash)
        return None

    def _branch_views(self, tips: list[bytes], limit: int) -> list[BranchView]:
        out = []
        tip_work = self.chain.tip.chain_work
        for tip in tips:
            top = self.chain.entry(tip)
            if top is None or top.status == STATUS_INVALID or not prefer(top.chain_work, tip_work):
                out.append(BranchView(False, 0, 0, ()))
                continue
            missing: list[tuple[bytes, int]] = []
            e: IndexEntry | None = top
            connected = False
            while e is not None:
                if e.status == STATUS_HEADER:
                    missing.append((e.hash, e.height))  # never on the best chain: no lookup needed
                elif e.status == STATUS_INVALID:
                    break
                elif self.chain.on_best_chain(e.hash):
                    connected = True
                    break
                e = self.chain.entry(e.prev_hash)
            missing.reverse()
            out.append(BranchView(connected, top.height, top.chain_work, tuple(missing[:limit])))
        return out

    def _drop_branch(self, lowest_missing: bytes) -> int:
        dropped = self.chain.drop_header_branch(lowest_missing)
        self._refresh_best_header()
        return dropped

    def _refresh_best_header(self) -> None:
        """Copy the chain state's best header (ChainState.best_header owns that fact) for the event
        loop to read; on the chain worker, after every change of the headers or the tip."""
        self.best_header = self.chain.best_header()

    # --- handlers --------------------------------------------------------------------------------

    def _wants_headers(self, peer: Peer) -> bool:
        """The peer claims more work than our tip and than the headers it gave us, and we are not
        waiting for its answer, nor holding off after refusing its headers."""
        if peer.id in self.headers_asked or peer.id in self.headers_paused:
            return False
        if peer.best_work <= self.chain.tip.chain_work:
            return False
        last = self.chain.entry(peer.last_header) if peer.last_header is not None else None
        return last is None or peer.best_work > last.chain_work

    async def peer_ready(self, peer: Peer) -> None:
        if self._wants_headers(peer):
            await self.ask_headers(peer)

    def peer_gone(self, peer: Peer) -> None:
        self.in_flight.peer_gone(peer.id)
        self.headers_asked.pop(peer.id, None)
        self.headers_paused.pop(peer.id, None)

    async def ask_headers(self, peer: Peer) -> None:
        locator = await self.run_chain(self._header_locator, peer.last_header)
        self.headers_asked[peer.id] = time.monotonic()
        peer.send(GetHeaders(tuple(locator)))

    async def handle(self, peer: Peer, msg: Message) -> None:
        if isinstance(msg, GetHeaders):

            def answer() -> bytes:  # read and encoded on the chain worker, charged to the peer
                return encode(
                    Headers(
                        tuple(
                            h.to_bytes()
                            for h in self.chain.headers_after(list(msg.locator), MAX_HEADERS)
                        )
                    )
                )

            if await peer.drain():  # a peer that does not read gets no more replies queued
                peer.send_frame(await self._served(peer, answer))
        elif isinstance(msg, Headers):
            await self._on_headers(peer, msg)
        elif isinstance(msg, Inv):
            await self._on_inv(peer, msg)
        elif isinstance(msg, GetData):
            await self._on_getdata(peer, msg)
        elif isinstance(msg, BlockMsg):
            await self._on_block(peer, msg)
        elif isinstance(msg, TxMsg):
            await self._on_tx(peer, msg)
        elif isinstance(msg, NotFound):
            for h in msg.blocks:
                if self.in_flight.not_found(peer.id, h):
                    self.not_found.setdefault(h, set()).add(peer.id)
            await self.schedule()

    def _bad_message(self, message: str, reason: str) -> None:
        self.metrics.bad_messages.labels(message, reason).inc()

    async def _on_headers(self, peer: Peer, msg: Headers) -> None:
        self.headers_asked.pop(peer.id, None)
        if not msg.headers:
            # Nothing after our locator: the peer has no more work than we have seen of it.
            last = self.chain.entry(peer.last_header) if peer.last_header is not None else None
            peer.best_work = min(
                peer.best_work, max(self.chain.tip.chain_work, last.chain_work if last else 0)
            )
            return
        headers: list[BlockHeader] = []
        for i, raw in enumerate(msg.headers):
            try:
                header = BlockHeader.from_bytes(raw)
            except DecodeError as exc:
                self._bad_message("header", "undecodable")
                raise Misbehaving(100, f"headers[{i}] does not decode: {exc}") from None
            if headers and header.prev_hash != headers[-1].hash:
                self._bad_message("header", "not-a-chain")
                raise Misbehaving(100, f"headers[{i}] does not follow headers[{i - 1}]")
            headers.append(header)
        batch = await self.run_chain(self._accept_headers, headers)
        for outcome, n in batch.outcomes.items():
            self.metrics.headers.labels(outcome).inc(n)
        self.metrics.header_height.set(self.best_header.height)
        index = batch.index
        if index > 0:
            newest = headers[index - 1]
            entry = self.chain.entry(newest.hash)
            peer.best_height = max(peer.best_height, newest.height)
            peer.last_header = newest.hash
            for h in headers[:index]:
                peer.mark_known(h.hash)
            if entry is not None:
                peer.best_work = max(peer.best_work, entry.chain_work)
                if batch.new:
                    await self._track_branch(peer, entry)
        if batch.outcome == Outcome.BAD_MESSAGE:
            bad = headers[index]
            self._bad_message("header", batch.reason.value if batch.reason else "bad-message")
            raise Misbehaving(
                100, f"bad header {bad.hash.hex()[:16]} at height {bad.height}: {batch.detail}"
            )
        if batch.outcome == Outcome.INVALID:
            bad = headers[index]
            raise Misbehaving(
                100, f"invalid header {bad.hash.hex()[:16]} at height {bad.height}: {batch.detail}"
            )
        if batch.outcome == Outcome.ORPHAN:
            # Does not connect to anything we know: maybe a fork deeper than our locator reached.
            raise Misbehaving(20, f"headers starting at height {headers[0].height} do not connect")
        if batch.outcome == Outcome.REJECTED:
            # Not the peer's fault (too far above our validated tip, too many held, a branch we
            # gave up): ask it again once our tip has moved on, or after a while.
            self.headers_paused[peer.id] = (self.chain.tip.height, time.monotonic())
            log.info(
                "%s: header at height %d refused for now (%s); asking again when our tip moves on",
                peer,
                headers[index].height,
                batch.detail,
            )
        elif len(headers) == MAX_HEADERS:
            await self.ask_headers(peer)  # more to come: from the last one it gave us
        elif index == len(headers) and index > 0:
            entry = self.chain.entry(headers[-1].hash)
            if entry is not None:
                peer.best_work = entry.chain_work  # its whole chain after our locator
        await self.schedule()

    async def _track_branch(self, peer: Peer, entry: IndexEntry) -> None:
        """New headers up to `entry` from `peer`: extend the branch they continue, or track a new
        one."""
        if not prefer(entry.chain_work, self.chain.tip.chain_work):
            return
        by_tip = {b.tip: b for b in self.branches.values()}
        found = await self.run_chain(self._branch_containing, entry.hash, frozenset(by_tip))
        branch = by_tip.get(found) if found is not None else None
        if branch is None:
            branch = self.branches.get(entry.hash)
        if branch is None:
            now = time.monotonic()
            branch = BranchWant(
                entry.hash, entry.hash, entry.height, entry.chain_work, now, aged_at=now
            )
            self.branches[entry.hash] = branch
            while len(self.branches) > MAX_BRANCHES:
                lightest = min(self.branches.values(), key=lambda b: b.work)
                del self.branches[lightest.id]
            if branch.id not in self.branches:
                return
        if entry.chain_work > branch.work:
            branch.tip, branch.height, branch.work = entry.hash, entry.height, entry.chain_work
        branch.announcers.add(peer.id)

    async def _on_inv(self, peer: Peer, msg: Inv) -> None:
        unknown_block = False
        wanted_known = False
        for h in msg.blocks:
            peer.mark_known(h)
            entry = self.chain.entry(h)
            if entry is None:
                unknown_block = True
            else:
                peer.best_height = max(peer.best_height, entry.height)
                wanted_known = wanted_known or entry.status == STATUS_HEADER
        if (
            unknown_block
            and peer.id not in self.headers_asked
            and peer.id not in self.headers_paused
        ):
            await self.ask_headers(peer)
        wanted = []
        for h in msg.txs:
            peer.mark_known(h)
            if h not in self.mempool:
                wanted.append(h)
        if wanted:
            peer.send(GetData(txs=tuple(wanted)))
        if wanted_known:
            await self.schedule()  # one more peer has a body we lack

    async def _on_getdata(self, peer: Peer, msg: GetData) -> None:
        if len(msg.blocks) > MAX_GETDATA_BLOCKS:
            raise Misbehaving(
                50, f"getdata for {len(msg.blocks)} blocks, at most {MAX_GETDATA_BLOCKS}"
            )
        missing_blocks, missing_txs = [], []
        for h in msg.blocks:
            if not await peer.drain():  # one block at a time into a peer that reads: bounded memory
                return
            started = time.perf_counter()
            block = await asyncio.to_thread(self.chain.get_block, h)
            if block is None or self.chain.store.is_pruned(h):
                if block is not None:
                    log.info(
                        "%s asked for block %s, pruned here (openings deleted): sent notfound",
                        peer,
                        h.hex()[:16],
                    )
                missing_blocks.append(h)
                continue
            frame = encode(BlockMsg(block.to_bytes()))
            self.charge(peer, time.perf_counter() - started)
            if not peer.send_frame(frame):
                return
        for h in msg.txs:
            tx = self.mempool.get(h)
            if tx is None:
                missing_txs.append(h)
            else:
                peer.send(TxMsg(tx.encoded))
        if missing_blocks or missing_txs:
            peer.send(NotFound(tuple(missing_blocks), tuple(missing_txs)))

    async def _on_block(self, peer: Peer, msg: BlockMsg) -> None:
        try:
            block = Block.from_bytes(msg.block)
        except DecodeError as exc:
            self._bad_message("block", "undecodable")
            raise Misbehaving(100, f"block does not decode: {exc}") from None
        h = block.hash
        self.note_received(h)
        peer.mark_known(h)
        solicited = self.in_flight.delivered(peer.id, h)
        known = self.chain.entry(h)
        if known is not None and known.status != STATUS_HEADER:
            return  # duplicate (or already known invalid: the header path bans for that)
        if not solicited:
            parent = self.chain.entry(block.header.prev_hash)
            if parent is None:
                await self.ask_headers(peer)
                raise Misbehaving(
                    50,
                    f"unsolicited block {h.hex()[:16]} on unknown parent "
                    f"{block.header.prev_hash.hex()[:16]}",
                )
            if parent.status == STATUS_INVALID:
                raise Misbehaving(
                    100, f"block {h.hex()[:16]} builds on invalid block {parent.hash.hex()[:16]}"
                )
        peer.verify_budget.refill()
        if peer.verify_budget.tokens <= 0:
            peer.close(
                f"verification budget exhausted ({peer.limits.verify_budget_s:g} s of "
                "validation on blocks that did not become our best chain)"
            )
            return
        self._remember_sender(h, peer)
        started = time.perf_counter()
        # The arrived bytes are the block's canonical encoding (from_bytes checks): stored as is.
        result, cpu = await self.process_block(block, len(msg.block), msg.block)
        spent = time.perf_counter() - started
        if result.outcome in (Outcome.NEW_TIP, Outcome.SIDE) or result.connected:
            self._note_body_progress(h, bool(result.connected))
        await self.after_block(result, spent, cpu, source=peer)
        self._blame_earlier_senders(result, h)
        # Charged: what did not become our best chain. A body we asked for (on a heavier header
        # branch) that waits for its parent's body is stored as a side block until then: that is
        # the order of delivery from several peers during sync, not the peer's doing.
        if result.outcome == Outcome.INVALID or (
            not solicited and result.outcome != Outcome.NEW_TIP and not result.connected
        ):
            peer.verify_budget.charge(spent)
        if result.outcome == Outcome.BAD_MESSAGE:
            # Not this block's body (or a broken signature): nothing was stored or marked; the
            # body is fetched again from another peer that has it.
            self.not_found.setdefault(h, set()).add(peer.id)
            reason = result.reason.value if result.reason else "bad-message"
            self._bad_message("block", reason)
            await self.schedule()
            raise Misbehaving(
                100,
                f"bad block {h.hex()[:16]} at height {block.header.height}: {reason}"
                + (f" ({result.detail})" if result.detail else ""),
            )
        if result.outcome == Outcome.INVALID:
            why = (result.reason.value if result.reason else "invalid") + (
                f" ({result.detail})" if result.detail else ""
            )
            raise Misbehaving(
                100, f"invalid block {h.hex()[:16]} at height {block.header.height}: {why}"
            )
        if result.outcome == Outcome.REJECTED:
            raise Misbehaving(
                10,
                f"block {h.hex()[:16]} rejected for now: "
                f"{result.reason.value if result.reason else ''} {result.detail}",
            )
        if result.outcome == Outcome.ORPHAN:
            await self.ask_headers(peer)
        await self.schedule()

    def _note_body_progress(self, block_hash: bytes, connected: bool) -> None:
        """A body we wanted for a heavier branch arrived: the branch's wait starts again. When it
        also moved our tip and the branch still has more work, its blocks are coming: mining
        pauses a while. (Bodies that are only stored pause nothing: until the branch is validated
        they may be fake work, which must not stop the miner.)"""
        branch = self.branches.get(self.branch_of.get(block_hash, b""))
        if branch is None:
            return
        branch.progressed = True
        if connected and branch.work > self.chain.tip.chain_work:
            self._catching_up_work = max(
                branch.work, self._catching_up_work if self.catching_up() else 0
            )
            self._catching_up_until = time.monotonic() + CATCHING_UP_S

    def _remember_sender(self, block_hash: bytes, peer: Peer) -> None:
        self.body_senders[block_hash] = peer
        while len(self.body_senders) > MAX_REMEMBERED_SENDERS:
            self.body_senders.popitem(last=False)

    def _blame_earlier_senders(self, result: BlockResult, current: bytes) -> None:
        """A side block found invalid only when a later block made its branch the best: ban who
        sent it."""
        for block_hash, reason in result.invalidated:
            sender = self.body_senders.get(block_hash)
            if block_hash != current and sender is not None and not sender.closed:
                sender.misbehave(
                    100,
                    f"invalid block {block_hash.hex()[:16]} (found when its branch became "
                    f"the best): {reason}",
                )

    async def after_block(
        self, result: BlockResult, seconds: float, cpu_seconds: float, source: Peer | None = None
    ) -> None:
        """Metrics, relay and listeners for a processed block (ours or a peer's): `seconds` of
        wall time from the request to the chain worker to its answer, `cpu_seconds` of the worker
        thread's CPU time in processing it."""
        self.block_times.connected(result.connected)
        if result.outcome == Outcome.NEW_TIP:
            self.block_times.verified(result.block_hash, seconds)
        reason = result.reason.value if result.reason else ""
        self.metrics.blocks.labels(result.outcome.value, reason).inc()
        self.metrics.verify_seconds.observe(seconds)
        self.metrics.verify_cpu_seconds.inc(cpu_seconds)
        self.block_cpu_seconds += cpu_seconds
        if result.disconnected:
            self.metrics.reorgs.inc()
            self.metrics.reorg_depth.observe(len(result.disconnected))
        if result.tip_changed:
            tip = self.chain.tip
            self.metrics.height.set(tip.height)
            self.metrics.mempool_txs.set(len(self.mempool))
            self.metrics.mempool_bytes.set(self.mempool.total_bytes)
            if result.invalidated:
                self._catching_up_until = 0.0  # the branch we were catching up with failed
            await self.run_chain(self._refresh_best_header)
            self.announce_block(tip.hash, exclude=source)
            for listener in self.on_new_tip:
                done = listener(result)
                if done is not None:
                    await done
            await self._resume_headers(time.monotonic())
        elif result.invalidated or result.outcome == Outcome.INVALID:
            self._catching_up_until = 0.0
            await self.run_chain(self._refresh_best_header)

    def announce_block(self, block_hash: bytes, exclude: Peer | None = None) -> None:
        for p in self.peers():
            if p is not exclude and block_hash not in p.known:
                p.mark_known(block_hash)
                p.send(Inv(blocks=(block_hash,)))

    async def _on_tx(self, peer: Peer, msg: TxMsg) -> None:
        try:
            tx = Transaction.from_bytes(msg.tx)
        except DecodeError as exc:
            self._bad_message("tx", "undecodable")
            raise Misbehaving(100, f"transaction does not decode: {exc}") from None
        peer.mark_known(tx.txid)
        try:
            await self.submit_tx(tx, source=peer)
        except TxRejected as exc:
            log.debug("%s: transaction %s rejected: %s", peer, tx.txid.hex()[:16], exc.reason)
            if tx.is_fraud_proof and ("no fraud" in exc.reason or "does not hash" in exc.reason):
                # It cost this node a unit re-run (or a hash) and proves nothing: the sender's
                # fault.
                raise Misbehaving(20, f"fraud proof that proves nothing: {exc.reason}") from None

    async def submit_tx(self, tx: Transaction, source: Peer | None = None) -> None:
        """Add to the mempool (on the chain worker) and announce; raises TxRejected."""

        def add() -> None:
            self.chain.add_transaction(tx)

        try:
            await self.run_chain(add)
        except TxRejected as exc:
            self.metrics.txs.labels("rejected", tx_reason_code(exc.reason)).inc()
            raise
        self.metrics.txs.labels("accepted", "").inc()
        self.metrics.mempool_txs.set(len(self.mempool))
        self.metrics.mempool_bytes.set(self.mempool.total_bytes)
        for p in self.peers():
            if p is not source and tx.txid not in p.known:
                p.mark_known(tx.txid)
                p.send(Inv(txs=(tx.txid,)))

    # --- scheduling ------------------------------------------------------------------------------

    def _fetched(self) -> list[BranchWant]:
        """The branches whose bodies are requested now: the heaviest few."""
        return sorted(self.branches.values(), key=lambda b: b.work, reverse=True)[
            :MAX_BRANCHES_FETCHED
        ]

    async def _look(self, branches: list[BranchWant]) -> list[tuple[BranchWant, BranchView]]:
        """Each branch with the chain's view of it; branches that are gone are forgotten."""
        views = await self.run_chain(
            self._branch_views, [b.tip for b in branches], MAX_MISSING_PER_BRANCH
        )
        out = []
        for branch, view in zip(branches, views, strict=True):
            if not view.alive:
                self.branches.pop(branch.id, None)
                continue
            branch.missing = len(view.missing)
            out.append((branch, view))
        return out

    async def schedule(self) -> None:
        """Ask peers for the bodies of the heaviest header branches that nobody is fetching yet."""
        if self._scheduling:
            self._reschedule = True
            return
        self._scheduling = True
        try:
            while True:
                self._reschedule = False
                await self._schedule_once()
                if not self._reschedule:
                    break
        finally:
            self._scheduling = False

    async def _schedule_once(self) -> None:
        looked = await self._look(self._fetched())
        self.branch_of = {h: branch.id for branch, view in looked for h, _ in view.missing}
        for table in (self.not_found, self.timed_out):
            for h in [h for h in table if h not in self.branch_of]:
                del table[h]
        ready = [p for p in self.peers() if not p.closed]
        by_id = {p.id: p for p in ready}
        asks: dict[int, list[bytes]] = {}
        free = sum(
            max(0, p.limits.max_blocks_in_flight - self.in_flight.count(p.id)) for p in ready
        )
        for branch, view in looked:
            for h, height in view.missing:
                if free <= 0:
                    break  # every peer is busy: the rest waits for the next round
                if h in self.in_flight:
                    continue
                peer = self._pick_peer(ready, branch, h, height)
                if peer is None:
                    continue
                self.in_flight.ask(peer.id, h, time.monotonic())
                asks.setdefault(peer.id, []).append(h)
                free -= 1
        for pid, hashes in asks.items():
            for i in range(0, len(hashes), MAX_GETDATA_BLOCKS):
                by_id[pid].send(GetData(blocks=tuple(hashes[i : i + MAX_GETDATA_BLOCKS])))

    def _pick_peer(
        self, ready: list[Peer], branch: BranchWant, h: bytes, height: int
    ) -> Peer | None:
        """Who to ask for a body: a peer that sent or announced the branch (or this block), else,
        when no such peer is left, one whose chain is high enough; never one that said it lacks
        the block; one that let a request for it time out only when no other can be asked."""
        refused = self.not_found.get(h, ())
        late = self.timed_out.get(h, ())
        candidates = [p for p in ready if p.id not in refused]
        knowers = [
            p
            for p in candidates
            if p.id in branch.announcers or h in p.known or branch.tip in p.known
        ]
        pool = knowers or [p for p in candidates if p.best_height >= height]
        free = [p for p in pool if self.in_flight.count(p.id) < p.limits.max_blocks_in_flight]
        if not free:
            return None
        return min(free, key=lambda p: (p.id in late, self.in_flight.count(p.id)))

    async def tick(self) -> None:
        """Once a second: time out requests, give up on branches whose bodies do not come, ask
        peers for headers, log progress."""
        now = time.monotonic()
        for p in self.peers():
            for h in self.in_flight.expire(p.id, now, self.block_timeout_s):
                self.timed_out.setdefault(h, set()).add(p.id)
                log.info(
                    "%s: block %s not delivered in %.0f s; asking elsewhere",
                    p,
                    h.hex()[:16],
                    self.block_timeout_s,
                )
            asked = self.headers_asked.get(p.id)
            if asked is not None and now - asked > HEADERS_TIMEOUT_S:
                self.headers_asked.pop(p.id, None)
        await self._age_branches(now)
        await self._resume_headers(now)
        for p in self.peers():
            if not p.closed and self._wants_headers(p):
                await self.ask_headers(p)
        await self.schedule()
        self._log_progress(now)

    async def _age_branches(self, now: float) -> None:
        """The fetched branches that got no body since the last look wait longer; past the body
        timeout a branch is given up. Branches not being fetched (lighter ones) do not age."""
        fetched = self._fetched()
        ids = {b.id for b in fetched}
        for branch, _ in await self._look(
            [b for b in self.branches.values() if b.id not in ids]
        ):  # forgets the dead ones
            branch.aged_at = now
        for branch, view in await self._look(fetched):
            elapsed = min(
                now - branch.aged_at, 5.0
            )  # a stalled loop does not count against a branch
            branch.aged_at = now
            if branch.progressed or not view.missing:
                branch.waited = 0.0
                branch.progressed = False
                continue
            branch.waited += elapsed
            if branch.waited >= self.body_timeout_s:
                await self._give_up(branch, view)

    async def _give_up(self, branch: BranchWant, view: BranchView) -> None:
        lowest = view.missing[0][0]
        dropped = await self.run_chain(self._drop_branch, lowest)
        self.branches.pop(branch.id, None)
        self._catching_up_until = 0.0
        for h, bid in list(self.branch_of.items()):
            if bid == branch.id:
                del self.branch_of[h]
                self.in_flight.cancel(h)
        held = time.monotonic() - branch.first_wanted
        self.metrics.header_branches_dropped.inc()
        self.metrics.header_height.set(self.best_header.height)
        log.warning(
            "gave up on a header branch to height %d (%d headers dropped, %d bodies "
            "missing): no body arrived for %.0f s "
            "(tracked %.1f s); disconnecting its announcers",
            view.height,
            dropped,
            len(view.missing),
            self.body_timeout_s,
            held,
        )
        reason = (
            f"announced headers of a branch to height {view.height} whose bodies did not "
            f"arrive within {self.body_timeout_s:g} s"
        )
        for p in self.peers():
            if p.id in branch.announcers and not p.closed:
                p.misbehave(50, reason)
                p.close(reason)
        self.headers_paused.clear()  # room for headers again: ask the peers we held off

    async def _resume_headers(self, now: float) -> None:
        """Ask peers whose headers were refused for now again, once our tip has moved on enough
        (half the headers-ahead window) or after a while."""
        if not self.headers_paused:
            return
        step = max(1, min(self.chain.limits.max_headers_ahead // 2, MAX_HEADERS))
        tip = self.chain.tip.height
        for p in self.peers():
            paused = self.headers_paused.get(p.id)
            if paused is None or p.closed:
                continue
            height, at = paused
            if tip >= height + step or now - at >= HEADERS_RETRY_S:
                del self.headers_paused[p.id]
                if p.id not in self.headers_asked:
                    await self.ask_headers(p)

    def _log_progress(self, now: float) -> None:
        tip = self.chain.tip
        target = max(self.best_header.height, max((p.best_height for p in self.peers()), default=0))
        elapsed = now - self._progress_at
        syncing = target > tip.height
        self.metrics.header_height.set(self.best_header.height)
        if elapsed >= PROGRESS_EVERY_S or (syncing != self.progress.syncing):
            rate = (tip.height - self._progress_height) / elapsed if elapsed > 0 else 0.0
            if syncing or self.progress.syncing:
                log.info(
                    "sync: height %d, target height %d, %.1f blocks/s%s",
                    tip.height,
                    target,
                    rate,
                    "" if syncing else " (caught up)",
                )
            self.progress = SyncProgress(tip.height, target, rate, syncing)
            self._progress_at, self._progress_height = now, tip.height
        else:
            self.progress = SyncProgress(
                tip.height, target, self.progress.blocks_per_second, syncing
            )
