"""The chain-state manager: accepts headers and blocks in any order, keeps the valid chain with the
most work.

It owns the block tree (index entries in LevelDB behind a bounded cache, consensus.block_index;
header-only entries in memory), the orphan pool, the ledger
state at the best tip, and the reorganisation that moves between branches. Three rules keep a
hostile peer from splitting, halting or stalling it:

- Header work is a claim. A header that passes the header rules cost its maker only hashes, so
  headers without bodies ("unproven") live in memory only, bounded in number and in height above
  the validated tip, and are dropped once the validated chain has more work. The tip is always
  the best *fully validated* chain.
- A body is not the block. A body that does not match its header's commitments, or a header whose
  signature fails, is a bad message (Outcome.BAD_MESSAGE): nothing is stored or marked, and the
  caller blames the sender. A hash is marked invalid only for a rule of its hashed content.
- Validate, then switch. A heavier branch is checked in memory on the state at the fork point
  (rebuilt from undo records) before the tip moves; a branch that fails leaves the tip where it
  was (or moves it to the branch's valid part, if that has more work).

Thread-safe: the node calls it from its event loop and its miner thread.
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
from chain.lru import LRU
from chain.mempool import Mempool, TxRejected
from chain.state import LedgerState, StateError, fraud_target, undo_blocks
from chain.storage import (
    STATUS_BODY,
    STATUS_HEADER,
    STATUS_INVALID,
    STATUS_VALID,
    ChainStore,
    IndexEntry,
)
from chain.tx import FraudProof, Transaction
from chain.types import BlockHash, TaskId
from consensus.block_index import BlockIndex
from consensus.forkchoice import chain_work_after, prefer
from consensus.fraud import FraudError, check_fraud_proof
from consensus.genesis import Genesis, build_genesis
from consensus.market import check_market_rules
from consensus.params import ConsensusParams
from consensus.validation import (
    Connected,
    InvalidBlock,
    ParentInfo,
    Reason,
    VerifiedClaims,
    check_body,
    check_header,
    check_work,
    connect_checks,
    median_time_past,
    task_state_at,
)

log = logging.getLogger("pouw.chainstate")


class Outcome(str, Enum):
    NEW_TIP = "new-tip"  # the block is on the best chain now
    SIDE = "side-branch"  # body stored and valid so far, but not the most work
    HEADER = "header-accepted"  # a header indexed ahead of its body (headers-first sync)
    ORPHAN = "orphan"  # parent unknown; kept until it arrives
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    REJECTED = "rejected"  # not acceptable now (time too far ahead, header limits); not stored
    BAD_MESSAGE = (
        "bad-message"  # a broken signature or a body that is not the header's: the sender's fault
    )


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


@dataclass(frozen=True)
class Limits:
    """Bounds on what peers can make this node hold or do (node policy, not consensus)."""

    max_orphans: int = 256
    max_unproven_headers: int = 8_192  # headers without bodies kept in memory
    max_headers_ahead: int = 4_096  # how far above the validated tip a header may be
    max_invalid_remembered: int = (
        16_384  # invalid headers kept (memory only) to refuse their children
    )
    max_reorg_in_memory: int = 512  # branch blocks validated in memory before the tip moves
    dropped_memory_s: float = 120.0  # how long a branch given up for missing bodies stays refused
    index_cache_entries: int = 8_192  # stored block-index entries (and headers) cached in memory
    warm_entries: int = 512  # best-chain entries below the tip read into the cache at start


class ChainState:
    def __init__(
        self,
        store: ChainStore,
        params: ConsensusParams,
        *,
        mempool: Mempool | None = None,
        device: str = "cpu",
        clock: Callable[[], int] = now_ms,
        limits: Limits | None = None,
        assume_valid: bytes | None = None,
        prune_keep: int | None = None,
    ) -> None:
        """`assume_valid` (default: the params' `assume_valid`, off when empty) names a block at and
        below which a branch's blocks are connected without re-executing their units.
        `prune_keep`: keep the openings and undo records of this many blocks below the tip (the
        reorg horizon), prune older ones (ChainStore.prune); None keeps everything."""
        self.store = store
        self.params = params
        self.mempool = mempool
        self.device = device
        # Output states of share claims verified already (the share pool's), not re-run again.
        self.verified_claims: VerifiedClaims | None = None
        self.clock = clock
        self.limits = limits or Limits()
        self.lock = threading.RLock()
        self.genesis: Genesis = build_genesis(params)
        if not store.is_initialised():
            store.init_genesis(
                self.genesis.block,
                self.genesis.state,
                self.genesis.chain_work,
                [self.genesis.default_task_state],
            )
        elif store.genesis_hash != self.genesis.block.hash:
            raise WrongNetwork(
                f"{store.path} holds the chain with genesis {store.genesis_hash.hex()[:16]}, "
                f"not {params.network}'s genesis {self.genesis.block.hash.hex()[:16]}"
            )
        self.chain_id = self.genesis.chain_id
        # Stored entries are read on demand (header-only entries of an older run are not
        # reloaded): start-up reads the tip, the candidates and recent entries, not the tree.
        self.entries = BlockIndex(store, self.limits.index_cache_entries)
        # Children of the entries this run has seen (and of the candidates): for marking an
        # invalid block's descendants; a stored block's older children are refused through
        # their parent's status when they come up (_branch_usable, _process_one).
        self.children: dict[bytes, set[bytes]] = {}
        self.headers: dict[bytes, BlockHeader] = {}  # headers of header-only entries
        self._header_cache: LRU[bytes, BlockHeader] = LRU(self.limits.index_cache_entries)
        self.orphans: OrderedDict[bytes, Block] = OrderedDict()
        self.unproven: OrderedDict[bytes, IndexEntry] = (
            OrderedDict()
        )  # header-only entries, memory only
        self.invalid_headers: OrderedDict[bytes, None] = (
            OrderedDict()
        )  # invalid, no body: memory only
        self.dropped: OrderedDict[bytes, float] = (
            OrderedDict()
        )  # header hash -> when its branch was given up
        self.state: LedgerState = store.load_state()
        self.tip: IndexEntry = store.tip_entry()
        self.entries.put_stored(self.tip)
        self._warm_cache()
        # Stored blocks with more work than the tip, in the order seen: the fork-choice candidates.
        self.candidates: dict[bytes, None] = {}
        for e in store.entries_above(self.tip.chain_work):
            if e.status in (STATUS_BODY, STATUS_VALID) and prefer(
                e.chain_work, self.tip.chain_work
            ):
                self.candidates[e.hash] = None
                self._index_branch(e)
        self.tip_version = 0  # bumped when the tip moves; the miner watches it
        if assume_valid is None and params.assume_valid:
            assume_valid = bytes.fromhex(params.assume_valid)
        self.assume_valid = assume_valid or None  # b"": turned off
        # height -> hash of the assume-valid block's ancestry, once its header is known
        self._assumed_chain: dict[int, bytes] | None = None
        self._assume_refused: tuple[bytes, str] | None = None  # (best header, why) last refused
        self.assumed_connects = 0  # blocks connected without re-executing their units
        self._arrived: tuple[bytes, Block] | None = None  # the block just stored, still in memory
        self.prune_keep = prune_keep

    def _index_branch(self, entry: IndexEntry) -> None:
        """Learn the children along a stored candidate's branch, down to the best chain."""
        e: IndexEntry | None = entry
        while e is not None and e.hash not in self.children.get(e.prev_hash, ()):
            self._index(e, stored=True)
            if self.on_best_chain(e.hash):
                break
            e = self.entries.get(e.prev_hash)

    def _warm_cache(self) -> None:
        """Read the best chain's most recent entries (the reorg horizon) into the cache."""
        for height in range(
            self.tip.height, max(0, self.tip.height - self.limits.warm_entries), -1
        ):
            h = self.store.hash_at(height)
            if h is not None:
                self.entries.get(h)

    # --- queries -------------------------------------------------------------------------------

    def header(self, block_hash: bytes) -> BlockHeader | None:
        h = self.headers.get(block_hash)
        if h is not None:
            return h
        cached = self._header_cache.get(block_hash)
        if isinstance(cached, BlockHeader):
            return cached
        h = self.store.get_header(block_hash)
        if h is not None:
            self._header_cache.put(h.hash, h)
        return h

    def get_block(self, block_hash: bytes) -> Block | None:
        return self.store.get_block(block_hash)

    def entry(self, block_hash: bytes) -> IndexEntry | None:
        return self.entries.get(block_hash)

    def hash_at(self, height: int) -> BlockHash | None:
        return self.store.hash_at(height) if 0 <= height <= self.tip.height else None

    def on_best_chain(self, block_hash: bytes) -> bool:
        e = self.entries.get(block_hash)
        return e is not None and self.hash_at(e.height) == block_hash

    def best_header(self) -> IndexEntry:
        """The entry with most claimed work: the tip, or an unproven header above it."""
        best = self.tip
        for e in self.unproven.values():
            if prefer(e.chain_work, best.chain_work):
                best = e
        return best

    def parent_info(self, parent_hash: bytes) -> ParentInfo:
        """Height, time and median time past of a known block, for the header rules of its child."""
        header = self.header(parent_hash)
        if header is None:
            raise KeyError(parent_hash.hex())
        times = [header.time_ms]
        h = header
        while len(times) < self.params.median_time_span and h.height > 0:
            parent = self.header(h.prev_hash)
            assert parent is not None
            h = parent
            times.append(h.time_ms)
        grandparent = self.header(header.prev_hash) if header.height > 0 else None
        grandparent_time = grandparent.time_ms if grandparent is not None else header.time_ms
        return ParentInfo(
            parent_hash,
            header.height,
            header.time_ms,
            header.target,
            grandparent_time,
            median_time_past(times),
        )

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

    def task_state(self) -> tuple[TaskId, bytes]:
        """(task id, state blob) that the next unit on the tip starts from."""
        return task_state_at(self.state, self.store.get_blob)

    # --- accepting headers -----------------------------------------------------------------------

    def process_header(self, header: BlockHeader) -> BlockResult:
        """Headers-first sync: index a header whose parent is known, after the header rules."""
        with self.lock:
            h = header.hash
            known = self.entries.get(h)
            if known is not None:
                outcome = Outcome.INVALID if known.status == STATUS_INVALID else Outcome.DUPLICATE
                return BlockResult(outcome, h, None, known.reason)
            if self._recently_dropped(h):
                return BlockResult(
                    Outcome.REJECTED, h, None, "its branch was given up: the bodies did not arrive"
                )
            parent = self.entries.get(header.prev_hash)
            if parent is None:
                return BlockResult(Outcome.ORPHAN, h)
            if parent.status == STATUS_INVALID:
                self._mark_invalid_header(header, parent.chain_work, Reason.INVALID_PARENT.value)
                return BlockResult(Outcome.INVALID, h, Reason.INVALID_PARENT)
            try:
                check_header(self.params, header, self.parent_info(header.prev_hash), self.clock())
            except InvalidBlock as exc:
                return self._refused(header, parent, exc)
            if header.height > self.tip.height + self.limits.max_headers_ahead:
                return BlockResult(
                    Outcome.REJECTED,
                    h,
                    None,
                    f"height {header.height} is more than {self.limits.max_headers_ahead} "
                    "above the validated tip",
                )
            if len(self.unproven) >= self.limits.max_unproven_headers:
                return BlockResult(
                    Outcome.REJECTED,
                    h,
                    None,
                    f"{len(self.unproven)} headers without bodies held already",
                )
            entry = IndexEntry(
                h,
                header.prev_hash,
                header.height,
                chain_work_after(parent.chain_work, header.target),
                STATUS_HEADER,
                "",
            )
            self._index(entry, stored=False)
            self.unproven[h] = entry
            self.headers[h] = header
            return BlockResult(Outcome.HEADER, h)

    def _refused(self, header: BlockHeader, parent: IndexEntry, exc: InvalidBlock) -> BlockResult:
        """The outcome of a failed rule: marked invalid only when the rule is about the block
        itself."""
        if exc.reason.temporary:
            return BlockResult(Outcome.REJECTED, header.hash, exc.reason, exc.detail)
        if exc.reason.bad_message:
            return BlockResult(Outcome.BAD_MESSAGE, header.hash, exc.reason, exc.detail)
        self._mark_invalid_header(header, parent.chain_work, str(exc))
        return BlockResult(Outcome.INVALID, header.hash, exc.reason, exc.detail)

    def drop_header_branch(self, block_hash: bytes) -> int:
        """Give up on the unproven headers of a branch whose bodies did not arrive: forget them
        (and their unproven descendants) and refuse them for a while. Returns how many went."""
        with self.lock:
            e = self.unproven.get(block_hash)
            lowest = None
            while e is not None and e.status == STATUS_HEADER:
                lowest = e
                e = self.unproven.get(e.prev_hash)
            if lowest is None:
                return 0
            stack: list[bytes] = [lowest.hash]
            dropped = 0
            now = time.monotonic()
            while stack:
                h = stack.pop()
                if h not in self.unproven:
                    continue
                stack += list(self.children.get(h, ()))
                self._forget(h)
                self.dropped[h] = now
                dropped += 1
            while len(self.dropped) > self.limits.max_unproven_headers:
                self.dropped.popitem(last=False)
            return dropped

    def _recently_dropped(self, h: bytes) -> bool:
        at = self.dropped.get(h)
        if at is None:
            return False
        if time.monotonic() - at > self.limits.dropped_memory_s:
            del self.dropped[h]
            return False
        return True

    # --- accepting blocks ------------------------------------------------------------------------

    def process_block(
        self, block: Block, encoded_size: int | None = None, encoded: bytes | None = None
    ) -> BlockResult:
        """`encoded`: the bytes the block arrived as, which Block.from_bytes checked are its
        canonical encoding; the store writes them as they are (the block is not encoded again)."""
        with self.lock:
            tip_before = self.tip.hash
            if encoded is not None and encoded_size is None:
                encoded_size = len(encoded)
            result = self._process_one(block, encoded_size, encoded)
            if result.outcome in (Outcome.NEW_TIP, Outcome.SIDE):
                self._adopt_orphans(block.hash, result)
            self._update_mempool(result)
            if self.tip.hash != tip_before:
                # Only a moved tip stops the miner: a refused branch that leaves the tip in place
                # must not reset everyone's work (that would make invalid blocks a cheap DoS).
                self.tip_version += 1
            return result

    def _process_one(
        self, block: Block, encoded_size: int | None, encoded: bytes | None = None
    ) -> BlockResult:
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
            return self._refused(block.header, parent, exc)
        self.unproven.pop(h, None)
        self.dropped.pop(h, None)
        self._index(
            self.store.put_block(
                block, chain_work_after(parent.chain_work, block.header.target), encoded
            ),
            stored=True,
        )
        self._arrived = (h, block)  # validated from memory, not read back from the store
        self.headers.pop(h, None)
        self._header_cache.put(block.hash, block.header)
        entry = self.entries[h]
        result = BlockResult(Outcome.SIDE, h)
        heavier = prefer(entry.chain_work, self.tip.chain_work)
        if heavier or (self.candidates and self.children.get(h)):
            # Heavier, or the missing body of a stored heavier branch (bodies out of order).
            if heavier:
                self.candidates[h] = None
            self._activate_best_chain(result)
            entry = self.entries[h]
            if entry.status == STATUS_INVALID:
                result.outcome = Outcome.INVALID
                code = entry.reason.split(":")[0]
                result.reason = next((r for r in Reason if code == r.value), None)
                result.detail = entry.reason
            elif self.on_best_chain(h):
                result.outcome = Outcome.NEW_TIP
        return result

    def _add_orphan(self, block: Block) -> None:
        self.orphans[block.hash] = block
        while len(self.orphans) > self.limits.max_orphans:
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
                    result.invalidated += sub.invalidated
                    if sub.outcome in (Outcome.NEW_TIP, Outcome.SIDE):
                        queue.append(h)

    # --- the block tree --------------------------------------------------------------------------

    def _index(self, entry: IndexEntry, stored: bool) -> None:
        if stored:
            self.entries.put_stored(entry)
        else:
            self.entries.put_memory(entry)
        self.children.setdefault(entry.prev_hash, set()).add(entry.hash)

    def _forget(self, h: bytes) -> None:
        """Remove an entry that has no body from memory (an unproven or invalid header)."""
        entry = self.entries.forget(h)
        self.unproven.pop(h, None)
        self.invalid_headers.pop(h, None)
        self.headers.pop(h, None)
        if entry is not None:
            siblings = self.children.get(entry.prev_hash)
            if siblings is not None:
                siblings.discard(h)
                if not siblings:
                    del self.children[entry.prev_hash]

    def _mark_invalid_header(self, header: BlockHeader, parent_work: int, reason: str) -> None:
        """Remember an invalid header (memory only, bounded) so its descendants are refused
        cheaply."""
        h = header.hash
        if h not in self.entries:
            self._index(
                IndexEntry(
                    h,
                    header.prev_hash,
                    header.height,
                    chain_work_after(parent_work, header.target),
                    STATUS_HEADER,
                    "",
                ),
                stored=False,
            )
            self.headers[h] = header
        self._mark_invalid(h, reason)

    def _mark_invalid(self, block_hash: bytes, reason: str) -> None:
        """Mark a block invalid with its reason, and every known descendant with invalid-parent."""
        stack = [(block_hash, reason)]
        while stack:
            h, why = stack.pop()
            entry = self.entries.get(h)
            if entry is None or entry.status == STATUS_INVALID:
                continue
            stored = entry.status != STATUS_HEADER
            marked = IndexEntry(
                entry.hash,
                entry.prev_hash,
                entry.height,
                entry.chain_work,
                STATUS_INVALID,
                why[:500],
            )
            if stored:
                self.entries.put_stored(self.store.set_status(h, STATUS_INVALID, why))
            else:
                self.entries.put_memory(marked)
            self.unproven.pop(h, None)
            self.candidates.pop(h, None)
            if not stored:
                self.invalid_headers[h] = None
            log.warning("block %s at height %d invalid: %s", h.hex()[:16], entry.height, why)
            stack += [(c, Reason.INVALID_PARENT.value) for c in self.children.get(h, ())]
        while len(self.invalid_headers) > self.limits.max_invalid_remembered:
            oldest, _ = self.invalid_headers.popitem(last=False)
            self._forget(oldest)

    # --- fork choice and reorganisation ---------------------------------------------------------

    def _best_candidate(self) -> IndexEntry:
        """The stored block with most work whose whole branch has bodies and none of it is
        invalid."""
        best = self.tip
        for h in list(self.candidates):
            e = self.entries.get(h)
            if (
                e is None
                or e.status not in (STATUS_BODY, STATUS_VALID)
                or not prefer(e.chain_work, self.tip.chain_work)
            ):
                del self.candidates[h]  # the tip's work only grows, so it can never be chosen again
            elif prefer(e.chain_work, best.chain_work) and self._branch_usable(e):
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
        """Move to the best usable branch; on a validation failure, mark it and try the next
        best."""
        while True:
            target = self._best_candidate()
            if target.hash == self.tip.hash:
                return
            if self._reorganise_to(target, result):
                return

    def _reorganise_to(self, target: IndexEntry, result: BlockResult) -> bool:
        """Validate the branch to `target` on the fork point's state, then switch to it.

        Returns False when a block of the branch failed (it is marked invalid; the tip stays, or
        moves to the branch's valid part when that has more work)."""
        branch: list[IndexEntry] = []
        e = target
        while not self.on_best_chain(e.hash):
            branch.append(e)
            e = self.entries[e.prev_hash]
        branch.reverse()
        fork = e.hash
        if e.height < self.store.pruned_height():
            # A pruned node has no undo records below its horizon: it cannot go back that far.
            log.warning(
                "branch to %s forks at height %d, below the pruned height %d: not followed",
                target.hash.hex()[:16],
                e.height,
                self.store.pruned_height(),
            )
            self.candidates.pop(target.hash, None)
            return True
        state = self._state_at(fork)
        pending: list[tuple[IndexEntry, Block, Connected]] = []
        for entry in branch:
            arrived = self._arrived
            fresh = arrived is not None and arrived[0] == entry.hash
            block = arrived[1] if arrived is not None and fresh else self.get_block(entry.hash)
            assert block is not None
            assumed = entry.status != STATUS_VALID and self._assumed(entry)
            try:
                done = connect_checks(
                    self.params,
                    block,
                    state,
                    device=self.device,
                    reexecute=entry.status != STATUS_VALID and not assumed,
                    load_block=self.store.get_block,
                    verified_claims=self.verified_claims,
                )
                if assumed:
                    done = self._assumed_connect(block, state, done)
            except InvalidBlock as exc:
                self._mark_invalid(entry.hash, str(exc))
                result.invalidated.append((entry.hash, str(exc)))
                if pending and prefer(pending[-1][0].chain_work, self.tip.chain_work):
                    self._switch(fork, pending, result)
                return False
            pending.append((entry, block, done))
            state = done.state
            if len(pending) >= self.limits.max_reorg_in_memory:
                # A branch this long cost real work to make: write what is validated to bound
                # memory.
                self._switch(fork, pending, result)
                fork, pending = entry.hash, []
        if pending:
            self._switch(fork, pending, result)
        return True

    def _assumed(self, entry: IndexEntry) -> bool:
        """Whether the block is the assume-valid block or one of its ancestors (headers known)."""
        if self.assume_valid is None:
            return False
        if self._assumed_chain is None:
            best = self.best_header()
            if self._assume_refused is not None and self._assume_refused[0] == best.hash:
                return False  # nothing changed since the last refusal
            target, why = self._assume_valid_target(best)
            if target is None:
                self._assume_refused = (best.hash, why)
                log.info(
                    "assume-valid block %s not used (yet): %s; blocks are fully validated",
                    self.assume_valid.hex()[:16],
                    why,
                )
                return False
            chain: dict[int, bytes] = {}
            e: IndexEntry | None = target
            while e is not None:
                chain[e.height] = e.hash
                e = self.entries.get(e.prev_hash) if e.height > 0 else None
            self._assumed_chain = chain
            log.info(
                "assume-valid block %s at height %d: its ancestors connect without re-execution",
                target.hash.hex()[:16],
                target.height,
            )
        return self._assumed_chain.get(entry.height) == entry.hash

    def _assume_valid_target(self, best: IndexEntry) -> tuple[IndexEntry | None, str]:
        """The assume-valid block's entry if re-execution may be skipped below it, else why not:
        it must be on the best header chain, and that chain must carry the stated minimum work,
        so a peer serving a lighter branch (or another branch) cannot switch validation off."""
        assert self.assume_valid is not None
        target = self.entries.get(self.assume_valid)
        if target is None:
            return None, "its header is not known"
        if target.status == STATUS_INVALID:
            return None, f"it is invalid ({target.reason})"
        e: IndexEntry | None = best
        while e is not None and e.height > target.height:
            e = self.entries.get(e.prev_hash)
        if e is None or e.hash != target.hash:
            return None, (
                f"it is not on the best header chain (best header {best.hash.hex()[:16]} "
                f"at height {best.height})"
            )
        if best.chain_work < self.params.assume_valid_min_work:
            return None, (
                f"the best header chain has chain work {best.chain_work}, under the minimum "
                f"{self.params.assume_valid_min_work} (assume_valid_min_work)"
            )
        return target, ""

    def _assumed_connect(self, block: Block, state: LedgerState, done: Connected) -> Connected:
        """An assumed block's units are not re-executed, except where the node must keep the
        winner's output state: the assume-valid block itself (the next unit starts from it) and
        a block that completes a task (its result)."""
        self.assumed_connects += 1
        claim = block.header.work[0]
        before, after = state.tasks.get(claim.task_id), done.state.tasks.get(claim.task_id)
        completes = (
            before is not None and after is not None and before.is_open and not after.is_open
        )
        if block.hash != self.assume_valid and not completes:
            return done
        return Connected(done.state, done.undo, check_work(self.params, block, state, self.device))

    def _state_at(self, block_hash: bytes) -> LedgerState:
        """The ledger state after a block of the best chain, rebuilt in memory from undo records."""
        undos = []
        e = self.tip
        while e.hash != block_hash:
            undo = self.store.get_undo(e.hash)
            assert undo is not None, f"no undo record for best-chain block {e.hash.hex()}"
            undos.append(undo)
            e = self.entries[e.prev_hash]
        return undo_blocks(self.state, undos) if undos else self.state

    def _switch(
        self, fork: bytes, pending: list[tuple[IndexEntry, Block, Connected]], result: BlockResult
    ) -> None:
        """Disconnect down to `fork` and connect the validated blocks, each step one atomic
        write."""
        old_tip = self.tip
        while self.tip.hash != fork:
            block, undo = self.store.disconnect_tip()
            self.state = self.store.state()
            self.tip = self.entries[block.header.prev_hash]
            result.disconnected.append(block)
        for entry, block, done in pending:
            blobs = [done.task_state] if done.task_state is not None else []
            self.entries.put_stored(
                self.store.connect_block(
                    block, done.undo, done.state, entry.chain_work, blobs, body_stored=True
                )
            )
            self.state = self.store.state()  # the same state as done.state, read from the store
            self.tip = self.entries[entry.hash]
            result.connected.append(block)
        if not self.on_best_chain(old_tip.hash) and prefer(old_tip.chain_work, self.tip.chain_work):
            self.candidates[old_tip.hash] = (
                None  # a partial switch: the old chain is still a candidate
            )
        self._prune_unproven()
        if self.prune_keep is not None:
            self.store.prune(self.prune_keep)
        log.info(
            "tip %s height %d (%d connected, %d disconnected)",
            self.tip.hash.hex()[:16],
            self.tip.height,
            len(result.connected),
            len(result.disconnected),
        )

    def _prune_unproven(self) -> None:
        """Unproven headers with no more work than the validated tip can never be the best chain."""
        for h, e in reversed(list(self.unproven.items())):  # children before their parents
            if not prefer(e.chain_work, self.tip.chain_work) and not self.children.get(h):
                self._forget(h)

    def _update_mempool(self, result: BlockResult) -> None:
        """Drop what the new branch included; return what the dropped blocks held; re-check the
        rest."""
        if self.mempool is None or not result.tip_changed:
            return
        self.mempool.remove(tx.txid for block in result.connected for tx in block.txs)
        self.mempool.readd(
            (tx for block in result.disconnected for tx in block.txs), self.state, self.chain_id
        )
        self.mempool.revalidate(self.state)
        stale = []
        for tx in self.mempool.transactions():
            if isinstance(tx.payload, FraudProof):
                try:
                    fraud_target(
                        self.state,
                        tx.payload,
                        self.header(tx.payload.block_hash),
                        self.tip.height + 1,
                        self.params.reward_maturity,
                    )
                except StateError:
                    stale.append(tx.txid)  # matured, forfeited already or reorganised away
        self.mempool.remove(stale)

    def add_transaction(self, tx: Transaction) -> None:
        """Admit a transaction to the mempool: the market's rules, then the mempool's own against
        the tip. A fraud proof is checked first (one unit re-run), and only one per guilty block is
        kept.

        Raises TxRejected with the reason (a bounty under the minimum would otherwise wait forever).
        """
        if self.mempool is None:
            raise TxRejected("this node keeps no mempool")
        try:
            check_market_rules(self.params, tx)
        except ValueError as exc:
            raise TxRejected(str(exc)) from None
        if isinstance(tx.payload, FraudProof):
            if tx.txid in self.mempool:
                raise TxRejected("already in the mempool")
            for pending in self.mempool.transactions():
                if (
                    isinstance(pending.payload, FraudProof)
                    and pending.payload.block_hash == tx.payload.block_hash
                ):
                    raise TxRejected(
                        "duplicate: a fraud proof against block "
                        f"{tx.payload.block_hash.hex()[:16]} is already pending"
                    )
            with self.lock:
                state, height = self.state, self.tip.height + 1
            try:
                check_fraud_proof(
                    self.params, tx.payload, state, height, self.store.get_block, self.device
                )
            except FraudError as exc:
                raise TxRejected(exc.reason) from None
        self.mempool.add(tx, self.state, self.chain_id)

    def block_headers(self, block_hash: bytes) -> BlockHeader | None:
        """The header of a stored block (with its body), for fraud proofs' ledger rules."""
        block = self.store.get_block(block_hash)
        return block.header if block is not None else None
