"""The chain-state manager: accepts blocks in any order, keeps the valid chain with the most work.

It owns the block tree (index entries in memory, bodies in LevelDB), the orphan pool, the ledger
state at the best tip, and the reorganisation that moves between branches: disconnect back to the
fork with stored undo data, then connect the new branch, each step one atomic write. A branch
that fails validation is marked invalid with its reason (and so are its descendants) and the node
falls back to the best remaining valid chain. Thread-safe: the node calls it from its event loop
and its miner thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from chain.block import Block, BlockHeader
from chain.mempool import Mempool, TxRejected
from chain.state import LedgerState, undo_block
from chain.tx import Transaction
from chain.storage import STATUS_BODY, STATUS_HEADER, STATUS_INVALID, STATUS_VALID, ChainStore, IndexEntry

from consensus.genesis import Genesis, build_genesis
from consensus.market import check_market_rules
from consensus.params import ConsensusParams
from consensus.forkchoice import chain_work_after, prefer
from consensus.validation import (
    InvalidBlock,
    ParentInfo,
    Reason,
    check_body,
    check_header,
    connect_checks,
    median_time_past,
    task_state_at,
)

log = logging.getLogger("pouw.chainstate")


class Outcome(str, Enum):
    NEW_TIP = "new-tip"  # the block is on the best chain now
    SIDE = "side-branch"  # stored and valid so far, but not the most work
    ORPHAN = "orphan"  # parent unknown; kept until it arrives
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    REJECTED = "rejected"  # not valid now (e.g. time too far ahead), may be later; not stored


@dataclass
class BlockResult:
    outcome: Outcome
    block_hash: bytes
    reason: Reason | None = None
    detail: str = ""
    connected: list[Block] = field(default_factory=list)
    disconnected: list[Block] = field(default_factory=list)
    # Blocks stored earlier that failed when this one made their branch the best: (hash, reason).
    # Their senders, not this block's, deserve the blame.
    invalidated: list[tuple[bytes, str]] = field(default_factory=list)

    @property
    def tip_changed(self) -> bool:
        return bool(self.connected or self.disconnected)


class WrongNetwork(RuntimeError):
    """The data directory holds another network's chain."""


def now_ms() -> int:
    return int(time.time() * 1000)


class ChainState:
    def __init__(
        self,
        store: ChainStore,
        params: ConsensusParams,
        *,
        mempool: Mempool | None = None,
        device: str = "cpu",
        clock: Callable[[], int] = now_ms,
        max_orphans: int = 256,
    ) -> None:
        self.store = store
        self.params = params
        self.mempool = mempool
        self.device = device
        self.clock = clock
        self.max_orphans = max_orphans
        self.lock = threading.RLock()
        self.genesis: Genesis = build_genesis(params)
        if not store.is_initialised():
            store.init_genesis(self.genesis.block, self.genesis.state, self.genesis.chain_work, [self.genesis.default_task_state])
        elif store.genesis_hash != self.genesis.block.hash:
            raise WrongNetwork(
                f"{store.path} holds the chain with genesis {store.genesis_hash.hex()[:16]}, "
                f"not {params.network}'s genesis {self.genesis.block.hash.hex()[:16]}"
            )
        self.chain_id = self.genesis.chain_id
        self.entries: dict[bytes, IndexEntry] = {e.hash: e for e in store.index_entries()}
        self.children: dict[bytes, set[bytes]] = {}
        for e in self.entries.values():
            self.children.setdefault(e.prev_hash, set()).add(e.hash)
        self.headers: dict[bytes, BlockHeader] = {}
        self.orphans: OrderedDict[bytes, Block] = OrderedDict()
        self.state: LedgerState = store.load_state()
        self.tip: IndexEntry = store.tip_entry()
        self.tip_version = 0  # bumped when process_block moves the tip; the miner watches it

    # --- queries -------------------------------------------------------------------------------

    def header(self, block_hash: bytes) -> BlockHeader | None:
        h = self.headers.get(block_hash)
        if h is None:
            h = self.store.get_header(block_hash)
            if h is not None:
                self.headers[block_hash] = h
        return h

    def get_block(self, block_hash: bytes) -> Block | None:
        return self.store.get_block(block_hash)

    def entry(self, block_hash: bytes) -> IndexEntry | None:
        return self.entries.get(block_hash)

    def hash_at(self, height: int) -> bytes | None:
        return self.store.hash_at(height) if 0 <= height <= self.tip.height else None

    def on_best_chain(self, block_hash: bytes) -> bool:
        e = self.entries.get(block_hash)
        return e is not None and self.hash_at(e.height) == block_hash

    def parent_info(self, parent_hash: bytes) -> ParentInfo:
        """Height, time and median time past of a known block, for the header rules of its child."""
        header = self.header(parent_hash)
        if header is None:
            raise KeyError(parent_hash.hex())
        times = [header.time_ms]
        h = header
        while len(times) < self.params.median_time_span and h.height > 0:
            h = self.header(h.prev_hash)
            assert h is not None
            times.append(h.time_ms)
        grandparent = self.header(header.prev_hash) if header.height > 0 else None
        prev_time = grandparent.time_ms if grandparent is not None else header.time_ms
        return ParentInfo(parent_hash, header.height, header.time_ms, header.target, prev_time, median_time_past(times))

    def locator(self) -> list[bytes]:
        """Best-chain hashes at heights tip, tip-1, tip-2, tip-4, ... down to genesis."""
        out, step, height = [], 1, self.tip.height
        while height > 0:
            out.append(self.hash_at(height))
            if len(out) >= 10:
                step *= 2
            height -= step
        out.append(self.genesis.block.hash)
        return [h for h in out if h is not None]

    def fork_point(self, locator: list[bytes]) -> int:
        """Height of the first locator hash on our best chain (0: genesis)."""
        for h in locator:
            if self.on_best_chain(h):
                return self.entries[h].height
        return 0

    def headers_after(self, locator: list[bytes], limit: int) -> list[BlockHeader]:
        start = self.fork_point(locator) + 1
        out = []
        for height in range(start, min(self.tip.height, start + limit - 1) + 1):
            h = self.hash_at(height)
            header = self.header(h) if h else None
            if header is None:
                break
            out.append(header)
        return out

    def task_state(self) -> tuple[bytes, bytes]:
        """(task id, state blob) that the next unit on the tip starts from."""
        return task_state_at(self.state, self.store.get_blob)

    # --- accepting headers and blocks -----------------------------------------------------------

    def process_header(self, header: BlockHeader) -> Outcome:
        """Headers-first sync: index a header whose parent is known, after the header rules."""
        with self.lock:
            known = self.entries.get(header.hash)
            if known is not None:
                return Outcome.INVALID if known.status == STATUS_INVALID else Outcome.DUPLICATE
            parent = self.entries.get(header.prev_hash)
            if parent is None:
                return Outcome.ORPHAN
            if parent.status == STATUS_INVALID:
                self._mark_invalid_header(header, parent.chain_work, Reason.INVALID_PARENT.value)
                return Outcome.INVALID
            try:
                check_header(self.params, header, self.parent_info(header.prev_hash), self.clock())
            except InvalidBlock as exc:
                if exc.reason.temporary:
                    return Outcome.REJECTED
                self._mark_invalid_header(header, parent.chain_work, str(exc))
                return Outcome.INVALID
            self._index(self.store.put_header(header, chain_work_after(parent.chain_work, header.target)))
            self.headers[header.hash] = header
            return Outcome.SIDE

    def process_block(self, block: Block, encoded_size: int | None = None) -> BlockResult:
        with self.lock:
            tip_before = self.tip.hash
            result = self._process_one(block, encoded_size)
            if result.outcome in (Outcome.NEW_TIP, Outcome.SIDE):
                self._adopt_orphans(block.hash, result)
            self._update_mempool(result)
            if self.tip.hash != tip_before:
                # Only a moved tip stops the miner: a refused branch that leaves the tip in place
                # must not reset everyone's work (that would make invalid blocks a cheap DoS).
                self.tip_version += 1
            return result

    def _process_one(self, block: Block, encoded_size: int | None) -> BlockResult:
        h = block.hash
        known = self.entries.get(h)
        if known is not None and known.status != STATUS_HEADER:
            if known.status == STATUS_INVALID:
                return BlockResult(Outcome.INVALID, h, None, known.reason)
            return BlockResult(Outcome.DUPLICATE, h)
        parent = self.entries.get(block.header.prev_hash)
        if parent is None:
            self._add_orphan(block)
            return BlockResult(Outcome.ORPHAN, h)
        if parent.status == STATUS_INVALID:
            self._mark_invalid_header(block.header, parent.chain_work, Reason.INVALID_PARENT.value)
            return BlockResult(Outcome.INVALID, h, Reason.INVALID_PARENT)
        try:
            check_header(self.params, block.header, self.parent_info(parent.hash), self.clock())
            check_body(self.params, block, encoded_size)
        except InvalidBlock as exc:
            if exc.reason.temporary:
                return BlockResult(Outcome.REJECTED, h, exc.reason, exc.detail)
            self._mark_invalid_header(block.header, parent.chain_work, str(exc))
            return BlockResult(Outcome.INVALID, h, exc.reason, exc.detail)
        self._index(self.store.put_block(block, chain_work_after(parent.chain_work, block.header.target)))
        self.headers[h] = block.header
        result = BlockResult(Outcome.SIDE, h)
        if prefer(self.entries[h].chain_work, self.tip.chain_work):
            self._activate_best_chain(result)
            if self.entries[h].status == STATUS_INVALID:
                result.outcome = Outcome.INVALID
                reason = self.entries[h].reason
                result.reason = next((r for r in Reason if reason.startswith(r.value)), None)
                result.detail = reason
            elif self.on_best_chain(h):
                result.outcome = Outcome.NEW_TIP
        return result

    def _add_orphan(self, block: Block) -> None:
        self.orphans[block.hash] = block
        while len(self.orphans) > self.max_orphans:
            self.orphans.popitem(last=False)

    def _adopt_orphans(self, parent_hash: bytes, result: BlockResult) -> None:
        queue = [parent_hash]
        while queue:
            p = queue.pop()
            for h, orphan in list(self.orphans.items()):
                if orphan.header.prev_hash == p:
                    del self.orphans[h]
                    sub = self._process_one(orphan, None)
                    result.connected += sub.connected
                    result.disconnected += sub.disconnected
                    if sub.outcome in (Outcome.NEW_TIP, Outcome.SIDE):
                        queue.append(h)

    def _index(self, entry: IndexEntry) -> None:
        self.entries[entry.hash] = entry
        self.children.setdefault(entry.prev_hash, set()).add(entry.hash)

    def _mark_invalid_header(self, header: BlockHeader, parent_work: int, reason: str) -> None:
        self._index(self.store.put_header(header, chain_work_after(parent_work, header.target)))
        self.headers[header.hash] = header
        self._mark_invalid(header.hash, reason)

    def _mark_invalid(self, block_hash: bytes, reason: str) -> None:
        """Mark a block invalid with its reason, and every known descendant with invalid-parent."""
        stack = [(block_hash, reason)]
        while stack:
            h, why = stack.pop()
            entry = self.entries.get(h)
            if entry is None or entry.status == STATUS_INVALID:
                continue
            self.entries[h] = self.store.set_status(h, STATUS_INVALID, why)
            log.warning("block %s at height %d invalid: %s", h.hex()[:16], entry.height, why)
            stack += [(c, Reason.INVALID_PARENT.value) for c in self.children.get(h, ())]

    # --- fork choice and reorganisation ---------------------------------------------------------

    def _best_candidate(self) -> IndexEntry:
        """The entry with most work whose whole branch has bodies and none of it is invalid."""
        best = self.tip
        for e in self.entries.values():
            if e.status in (STATUS_BODY, STATUS_VALID) and prefer(e.chain_work, best.chain_work) and self._branch_usable(e):
                best = e
        return best

    def _branch_usable(self, entry: IndexEntry) -> bool:
        e = entry
        while not self.on_best_chain(e.hash):
            if e.status not in (STATUS_BODY, STATUS_VALID):
                return False
            parent = self.entries.get(e.prev_hash)
            if parent is None:
                return False
            e = parent
        return True

    def _activate_best_chain(self, result: BlockResult) -> None:
        """Move to the best usable branch; on a validation failure, mark it and try the next best."""
        while True:
            target = self._best_candidate()
            if target.hash == self.tip.hash:
                return
            if self._reorganise_to(target, result):
                return

    def _reorganise_to(self, target: IndexEntry, result: BlockResult) -> bool:
        branch: list[IndexEntry] = []
        e = target
        while not self.on_best_chain(e.hash):
            branch.append(e)
            e = self.entries[e.prev_hash]
        fork = e
        while self.tip.hash != fork.hash:
            block, undo = self.store.disconnect_tip()
            self.state = undo_block(self.state, undo)
            self.tip = self.entries[block.header.prev_hash]
            result.disconnected.append(block)
        for entry in reversed(branch):
            block = self.store.get_block(entry.hash)
            assert block is not None
            try:
                done = connect_checks(
                    self.params, block, self.state, device=self.device, reexecute=entry.status != STATUS_VALID
                )
            except InvalidBlock as exc:
                self._mark_invalid(entry.hash, str(exc))
                result.invalidated.append((entry.hash, str(exc)))
                return False
            blobs = [done.task_state] if done.task_state is not None else []
            self.entries[entry.hash] = self.store.connect_block(block, done.undo, done.state, entry.chain_work, blobs)
            self.state = done.state
            self.tip = self.entries[entry.hash]
            result.connected.append(block)
        log.info("tip %s height %d (%d connected, %d disconnected)", self.tip.hash.hex()[:16], self.tip.height, len(result.connected), len(result.disconnected))
        return True

    def _update_mempool(self, result: BlockResult) -> None:
        """Drop what the new branch included; return what the dropped blocks held; re-check the rest."""
        if self.mempool is None or not result.tip_changed:
            return
        self.mempool.remove(tx.txid for block in result.connected for tx in block.txs)
        self.mempool.readd((tx for block in result.disconnected for tx in block.txs), self.state, self.chain_id)
        self.mempool.revalidate(self.state)

    def add_transaction(self, tx: Transaction) -> None:
        """Admit a transaction to the mempool: the market's rules, then the mempool's own against the tip.

        Raises TxRejected with the reason (a bounty under the minimum would otherwise wait forever).
        """
        if self.mempool is None:
            raise TxRejected("this node keeps no mempool")
        try:
            check_market_rules(self.params, tx)
        except ValueError as exc:
            raise TxRejected(str(exc)) from None
        self.mempool.add(tx, self.state, self.chain_id)
