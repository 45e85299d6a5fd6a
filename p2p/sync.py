"""Chain sync and gossip: headers first, then bodies from several peers; announcements.

- A peer with more work than our best header gets `getheaders` with a locator of our best header
  chain; headers are checked (ticket, signature, target: cheap) and indexed as they arrive.
- Bodies of the best header chain that we lack are requested from the peers that have them, at
  most `max_blocks_in_flight` per peer, and re-requested elsewhere after a timeout.
- Blocks are validated on the chain worker thread (one thread: the chain state's only writer), so
  the event loop stays responsive. Re-execution of work only happens inside ChainState when a
  block's branch has more work than the tip; an unsolicited block is looked at only if it could be
  the new best tip, and each peer has a verification budget: seconds of validation spent on its
  blocks that did not become our best chain. A peer over budget is dropped.
- New tips and new transactions are announced with `inv`; a peer that hears of an unknown block
  asks for headers, which brings the body request along.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from chain.block import Block, BlockHeader
from chain.encoding import DecodeError
from chain.mempool import Mempool, TxRejected
from chain.storage import STATUS_HEADER, STATUS_INVALID, IndexEntry
from chain.tx import Transaction
from consensus.chainstate import BlockResult, ChainState, Outcome

from p2p.metrics import NodeMetrics
from p2p.peer import Misbehaving, Peer
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
)

MAX_REMEMBERED_SENDERS = 4_096  # block bodies whose sender we can still blame
log = logging.getLogger("pouw.sync")
T = TypeVar("T")

BLOCK_TIMEOUT_S = 30.0
HEADERS_TIMEOUT_S = 30.0
MAX_GETDATA_BLOCKS = 64  # blocks one getdata may ask for
PROGRESS_EVERY_S = 5.0
CATCHING_UP_S = 5.0  # mining pauses while blocks of a heavier chain connected this recently
MAX_BLOCK_TIMES = 10_000  # blocks whose arrival and connection times are kept (for the API)


@dataclass
class SyncProgress:
    height: int
    target_height: int
    blocks_per_second: float
    syncing: bool


class Sync:
    def __init__(self, chain: ChainState, mempool: Mempool, metrics: NodeMetrics, peers: Callable[[], list[Peer]]) -> None:
        self.chain = chain
        self.mempool = mempool
        self.metrics = metrics
        self.peers = peers
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain")
        self.best_header: IndexEntry = chain.tip
        self.in_flight: dict[bytes, int] = {}  # block hash -> peer id
        self.body_senders: OrderedDict[bytes, Peer] = OrderedDict()  # recent block bodies -> who sent them
        self.headers_asked: dict[int, float] = {}  # peer id -> when we sent getheaders
        self.on_new_tip: list[Callable[[BlockResult], Awaitable[None] | None]] = []
        self._progress_at = time.monotonic()
        self._progress_height = chain.tip.height
        self.progress = SyncProgress(chain.tip.height, chain.tip.height, 0.0, False)
        self._scheduling = False
        self._peer_block_connected_at = 0.0  # when a peer's block last moved our tip
        # hash -> [received_ms, connected_ms, verify_ms]: wall-clock times (Unix ms, float) at which
        # this node first had the block's body (from a peer or its own miner) and first connected it
        # to its best chain, and the milliseconds it took to validate and connect it; shown by
        # GET /api/blocks/{id} (propagation measurements). Bounded, not stored.
        self.block_times: OrderedDict[bytes, list[float | None]] = OrderedDict()

    # --- block timing ------------------------------------------------------------------------------

    def _times(self, block_hash: bytes) -> list[float | None]:
        times = self.block_times.get(block_hash)
        if times is None:
            times = self.block_times[block_hash] = [None, None, None]
            while len(self.block_times) > MAX_BLOCK_TIMES:
                self.block_times.popitem(last=False)
        return times

    def note_received(self, block_hash: bytes) -> None:
        times = self._times(block_hash)
        if times[0] is None:
            times[0] = round(time.time() * 1000, 3)

    def catching_up(self) -> bool:
        """A heavier header chain is known and its bodies are arriving: mining there would be wasted.

        Headers alone never pause mining: they cost their sender only hashes."""
        recent = time.monotonic() - self._peer_block_connected_at < CATCHING_UP_S
        return recent and self.best_header.chain_work > self.chain.tip.chain_work

    def note_connected(self, blocks: list[Block]) -> None:
        now = round(time.time() * 1000, 3)
        for block in blocks:
            times = self._times(block.hash)
            if times[1] is None:
                times[1] = now

    # --- the chain worker ------------------------------------------------------------------------

    async def run_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the chain worker thread (the only thread that changes the chain)."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)

    # --- views of the block tree (run on the chain worker) ----------------------------------------

    def _find_best_header(self) -> IndexEntry:
        return self.chain.best_header()

    def _header_locator(self) -> list[bytes]:
        """Hashes of the best header chain at heights top, top-1, ..., then doubling steps, genesis."""
        entries = self.chain.entries
        chain: list[bytes] = []
        e: IndexEntry | None = self.best_header
        heights: set[int] = set()
        step, h = 1, self.best_header.height
        while h > 0:
            heights.add(h)
            if len(heights) >= 10:
                step *= 2
            h -= step
        while e is not None and e.height > 0:
            if e.height in heights:
                chain.append(e.hash)
            if self.chain.on_best_chain(e.hash):
                # below here the connected chain's index is faster
                chain += [x for x in (self.chain.hash_at(k) for k in sorted(heights, reverse=True) if k < e.height) if x]
                break
            e = entries.get(e.prev_hash)
        chain.append(self.chain.genesis.block.hash)
        return chain[: MAX_LOCATOR - 1] + ([self.chain.genesis.block.hash] if len(chain) >= MAX_LOCATOR else [])

    def _missing_bodies(self, limit: int) -> list[tuple[bytes, int]]:
        """(hash, height) of the best header chain's blocks without a body, lowest first."""
        self.best_header = self._find_best_header()
        out: list[tuple[bytes, int]] = []
        e: IndexEntry | None = self.best_header
        entries = self.chain.entries
        if self.best_header.chain_work <= self.chain.tip.chain_work:
            return []
        # Down to the fork point with the best chain: a branch may fork below our tip.
        while e is not None and not self.chain.on_best_chain(e.hash):
            if e.status == STATUS_HEADER:
                out.append((e.hash, e.height))
            e = entries.get(e.prev_hash)
        out.reverse()
        return out[:limit]

    def _accept_headers(self, headers: list[BlockHeader]) -> tuple[Outcome, str, int]:
        """Index headers in order; stop at the first that is not accepted. (outcome, detail, index)."""
        for i, header in enumerate(headers):
            result = self.chain.process_header(header)
            if result.outcome in (Outcome.HEADER, Outcome.DUPLICATE):
                continue
            self.best_header = self._find_best_header()
            detail = (result.reason.value + ": " if result.reason else "") + result.detail
            return result.outcome, detail, i
        self.best_header = self._find_best_header()
        return Outcome.HEADER, "", len(headers)

    # --- handlers --------------------------------------------------------------------------------

    async def peer_ready(self, peer: Peer) -> None:
        if peer.best_work > self.best_header.chain_work:
            await self.ask_headers(peer)

    def peer_gone(self, peer: Peer) -> None:
        for h in list(peer.blocks_in_flight):
            self.in_flight.pop(h, None)
        peer.blocks_in_flight.clear()
        self.headers_asked.pop(peer.id, None)

    async def ask_headers(self, peer: Peer, start: bytes | None = None) -> None:
        locator = await self.run_chain(self._header_locator)
        if start is not None:
            locator = [start, *locator][:MAX_LOCATOR]
        self.headers_asked[peer.id] = time.monotonic()
        peer.send(GetHeaders(tuple(locator)))

    async def handle(self, peer: Peer, msg: Message) -> None:
        if isinstance(msg, GetHeaders):
            headers = await self.run_chain(self.chain.headers_after, list(msg.locator), MAX_HEADERS)
            peer.send(Headers(tuple(h.to_bytes() for h in headers)))
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
                if peer.blocks_in_flight.pop(h, None) is not None:
                    self.in_flight.pop(h, None)
            await self.schedule()

    async def _on_headers(self, peer: Peer, msg: Headers) -> None:
        self.headers_asked.pop(peer.id, None)
        if not msg.headers:
            return
        headers: list[BlockHeader] = []
        for i, raw in enumerate(msg.headers):
            try:
                header = BlockHeader.from_bytes(raw)
            except DecodeError as exc:
                raise Misbehaving(100, f"headers[{i}] does not decode: {exc}") from None
            if headers and header.prev_hash != headers[-1].hash:
                raise Misbehaving(100, f"headers[{i}] does not follow headers[{i - 1}]")
            headers.append(header)
        outcome, detail, index = await self.run_chain(self._accept_headers, headers)
        if outcome in (Outcome.INVALID, Outcome.BAD_MESSAGE):
            raise Misbehaving(100, f"invalid header {headers[index].hash.hex()[:16]} at height {headers[index].height}: {detail}")
        if outcome == Outcome.ORPHAN:
            # Does not connect to anything we know: maybe a fork deeper than our locator reached.
            raise Misbehaving(20, f"headers starting at height {headers[0].height} do not connect")
        last = headers[index - 1] if index > 0 else None
        if last is not None:
            entry = self.chain.entry(last.hash)
            peer.best_height = max(peer.best_height, last.height)
            if entry is not None:
                peer.best_work = max(peer.best_work, entry.chain_work)
            for h in headers[:index]:
                peer.mark_known(h.hash)
        if outcome == Outcome.HEADER and len(headers) == MAX_HEADERS:
            await self.ask_headers(peer, start=headers[-1].hash)
        await self.schedule()

    async def _on_inv(self, peer: Peer, msg: Inv) -> None:
        unknown_block = False
        for h in msg.blocks:
            peer.mark_known(h)
            if self.chain.entry(h) is None:
                unknown_block = True
        if unknown_block and peer.id not in self.headers_asked:
            await self.ask_headers(peer)
        wanted = []
        for h in msg.txs:
            peer.mark_known(h)
            if h not in self.mempool:
                wanted.append(h)
        if wanted:
            peer.send(GetData(txs=tuple(wanted)))

    async def _on_getdata(self, peer: Peer, msg: GetData) -> None:
        if len(msg.blocks) > MAX_GETDATA_BLOCKS:
            raise Misbehaving(50, f"getdata for {len(msg.blocks)} blocks, at most {MAX_GETDATA_BLOCKS}")
        missing_blocks, missing_txs = [], []
        for h in msg.blocks:
            block = await asyncio.to_thread(self.chain.get_block, h)
            if block is None:
                missing_blocks.append(h)
            elif not peer.send(BlockMsg(block.to_bytes())):
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
            raise Misbehaving(100, f"block does not decode: {exc}") from None
        h = block.hash
        self.note_received(h)
        peer.mark_known(h)
        solicited = peer.blocks_in_flight.pop(h, None) is not None
        self.in_flight.pop(h, None)
        known = self.chain.entry(h)
        if known is not None and known.status != STATUS_HEADER:
            return  # duplicate (or already known invalid: the header path bans for that)
        if not solicited:
            parent = self.chain.entry(block.header.prev_hash)
            if parent is None:
                await self.ask_headers(peer)
                raise Misbehaving(50, f"unsolicited block {h.hex()[:16]} on unknown parent {block.header.prev_hash.hex()[:16]}")
            if parent.status == STATUS_INVALID:
                raise Misbehaving(100, f"block {h.hex()[:16]} builds on invalid block {parent.hash.hex()[:16]}")
        peer.verify_budget.refill()
        if peer.verify_budget.tokens <= 0:
            peer.close(f"verification budget exhausted ({peer.limits.verify_budget_s:g} s of validation on blocks that did not become our best chain)")
            return
        self._remember_sender(h, peer)
        started = time.perf_counter()
        result = await self.run_chain(self.chain.process_block, block, len(msg.block))
        spent = time.perf_counter() - started
        if result.connected:
            self._peer_block_connected_at = time.monotonic()
        await self.after_block(result, spent, source=peer)
        self._blame_earlier_senders(result, h)
        # Charged: what did not become our best chain. A body we asked for (on our best header
        # chain) that waits for its parent's body is stored as a side block until then: that is
        # the order of delivery from several peers during sync, not the peer's doing.
        if result.outcome == Outcome.INVALID or (not solicited and result.outcome != Outcome.NEW_TIP and not result.connected):
            peer.verify_budget.charge(spent)
        if result.outcome in (Outcome.INVALID, Outcome.BAD_MESSAGE):
            why = (result.reason.value if result.reason else "invalid") + (f" ({result.detail})" if result.detail else "")
            raise Misbehaving(100, f"{'invalid' if result.outcome == Outcome.INVALID else 'bad'} block {h.hex()[:16]} at height {block.header.height}: {why}")
        if result.outcome == Outcome.REJECTED:
            raise Misbehaving(10, f"block {h.hex()[:16]} rejected for now: {result.reason.value if result.reason else ''} {result.detail}")
        if result.outcome == Outcome.ORPHAN:
            await self.ask_headers(peer)
        await self.schedule()

    def _remember_sender(self, block_hash: bytes, peer: Peer) -> None:
        self.body_senders[block_hash] = peer
        while len(self.body_senders) > MAX_REMEMBERED_SENDERS:
            self.body_senders.popitem(last=False)

    def _blame_earlier_senders(self, result: BlockResult, current: bytes) -> None:
        """A side block found invalid only when a later block made its branch the best: ban who sent it."""
        for block_hash, reason in result.invalidated:
            sender = self.body_senders.get(block_hash)
            if block_hash != current and sender is not None and not sender.closed:
                sender.misbehave(100, f"invalid block {block_hash.hex()[:16]} (found when its branch became the best): {reason}")

    async def after_block(self, result: BlockResult, seconds: float, source: Peer | None = None) -> None:
        """Metrics, relay and listeners for a processed block (ours or a peer's)."""
        self.note_connected(result.connected)
        if result.outcome == Outcome.NEW_TIP and result.block_hash in self.block_times:
            times = self.block_times[result.block_hash]
            if times[2] is None:
                times[2] = round(seconds * 1000, 3)
        reason = result.reason.value if result.reason else ""
        self.metrics.blocks.labels(result.outcome.value, reason).inc()
        self.metrics.verify_seconds.observe(seconds)
        if result.tip_changed:
            tip = self.chain.tip
            self.metrics.height.set(tip.height)
            self.metrics.mempool_txs.set(len(self.mempool))
            self.metrics.mempool_bytes.set(self.mempool.total_bytes)
            if tip.chain_work > self.best_header.chain_work:
                self.best_header = tip
            self.announce_block(tip.hash, exclude=source)
            for listener in self.on_new_tip:
                done = listener(result)
                if done is not None:
                    await done

    def announce_block(self, block_hash: bytes, exclude: Peer | None = None) -> None:
        for p in self.peers():
            if p is not exclude and block_hash not in p.known:
                p.mark_known(block_hash)
                p.send(Inv(blocks=(block_hash,)))

    async def _on_tx(self, peer: Peer, msg: TxMsg) -> None:
        try:
            tx = Transaction.from_bytes(msg.tx)
        except DecodeError as exc:
            raise Misbehaving(100, f"transaction does not decode: {exc}") from None
        peer.mark_known(tx.txid)
        try:
            await self.submit_tx(tx, source=peer)
        except TxRejected as exc:
            log.debug("%s: transaction %s rejected: %s", peer, tx.txid.hex()[:16], exc.reason)

    async def submit_tx(self, tx: Transaction, source: Peer | None = None) -> None:
        """Add to the mempool (on the chain worker) and announce; raises TxRejected."""

        def add() -> None:
            self.chain.add_transaction(tx)

        try:
            await self.run_chain(add)
        except TxRejected as exc:
            self.metrics.txs.labels("rejected", exc.reason.split(":")[0][:40]).inc()
            raise
        self.metrics.txs.labels("accepted", "").inc()
        self.metrics.mempool_txs.set(len(self.mempool))
        self.metrics.mempool_bytes.set(self.mempool.total_bytes)
        for p in self.peers():
            if p is not source and tx.txid not in p.known:
                p.mark_known(tx.txid)
                p.send(Inv(txs=(tx.txid,)))

    # --- scheduling ------------------------------------------------------------------------------

    async def schedule(self) -> None:
        """Ask peers for the bodies of the best header chain that nobody is fetching yet."""
        if self._scheduling:
            return
        self._scheduling = True
        try:
            missing = await self.run_chain(self._missing_bodies, 1024)
            ready = [p for p in self.peers() if not p.closed]
            asks: dict[int, list[bytes]] = {}
            by_id = {p.id: p for p in ready}
            for h, height in missing:
                if h in self.in_flight:
                    continue
                candidates = [
                    p for p in ready
                    if p.best_height >= height and len(p.blocks_in_flight) < p.limits.max_blocks_in_flight
                ]
                if not candidates:
                    continue
                p = min(candidates, key=lambda c: len(c.blocks_in_flight))
                p.blocks_in_flight[h] = time.monotonic()
                self.in_flight[h] = p.id
                asks.setdefault(p.id, []).append(h)
            for pid, hashes in asks.items():
                by_id[pid].send(GetData(blocks=tuple(hashes)))
        finally:
            self._scheduling = False

    async def tick(self) -> None:
        """Once a second: time out requests, ask ahead peers for headers, log progress."""
        now = time.monotonic()
        for p in self.peers():
            late = [h for h, t in p.blocks_in_flight.items() if now - t > BLOCK_TIMEOUT_S]
            for h in late:
                del p.blocks_in_flight[h]
                self.in_flight.pop(h, None)
                log.info("%s: block %s not delivered in %.0f s; asking elsewhere", p, h.hex()[:16], BLOCK_TIMEOUT_S)
            asked = self.headers_asked.get(p.id)
            if asked is not None and now - asked > HEADERS_TIMEOUT_S:
                self.headers_asked.pop(p.id, None)
            if p.best_work > self.best_header.chain_work and p.id not in self.headers_asked:
                await self.ask_headers(p)
        await self.schedule()
        self._log_progress(now)

    def _log_progress(self, now: float) -> None:
        tip = self.chain.tip
        target = max(self.best_header.height, max((p.best_height for p in self.peers()), default=0))
        elapsed = now - self._progress_at
        syncing = target > tip.height
        self.metrics.header_height.set(self.best_header.height)
        if elapsed >= PROGRESS_EVERY_S or (syncing != self.progress.syncing):
            rate = (tip.height - self._progress_height) / elapsed if elapsed > 0 else 0.0
            if syncing or self.progress.syncing:
                log.info("sync: height %d, target height %d, %.1f blocks/s%s", tip.height, target, rate, "" if syncing else " (caught up)")
            self.progress = SyncProgress(tip.height, target, rate, syncing)
            self._progress_at, self._progress_height = now, tip.height
        else:
            self.progress = SyncProgress(tip.height, target, self.progress.blocks_per_second, syncing)
