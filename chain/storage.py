"""The chain on disk: LevelDB through plyvel.

Keys are a one-byte prefix and a fixed-size key (see the table below). Connecting a block (body,
index, state deltas, undo record, height index, tip) and disconnecting one are each one atomic,
synced WriteBatch, so a process killed at any moment reopens onto the chain as of its last
completed connect or disconnect, with the state that belongs to that tip.

Trust in the disk (docs/reliability.md):
- LevelDB runs with paranoid checks, and every read verifies block checksums, so a damaged file
  is an error, never a silently different record or a dropped log tail.
- An existing directory is opened without create_if_missing: a store whose CURRENT file is gone
  is refused (StoreCorrupt) instead of being replaced by an empty one that deletes the old tables.
- The first write that fails (disk full, I/O error) puts the store in a failed state: every
  later write is refused at once without touching LevelDB (`write_failure` says why), so nothing
  is appended after a torn record and no caller believes a record that was not persisted.
"""

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import plyvel

from chain.block import Block, BlockHeader, WorkProof
from chain.encoding import U64, BigUInt, Bytes, DecodeError, Record, Text, UInt
from chain.history import AccountEvent, TxLocation, account_events, tx_locations
from chain.smt import Node, Position, TreeView, build_nodes, encode_node, position_key, update
from chain.state import (
    Account,
    LedgerState,
    PendingReward,
    TaskRecord,
    Undo,
    leaf_changes,
    state_leaves,
)
from chain.state_store import GenerationReader, StateCache, StoredAccounts
from chain.types import BlockHash
from useful_work.hashing import HASH_SIZE
from useful_work.trace import state_hash

R = TypeVar("R", bound=Record)

# 4: the state tree's nodes, transaction index, account histories, pruning, share claims in
# blocks and rewards (3: pending rewards record their work for fraud proofs; 2: chained seeds)
FORMAT_VERSION = b"4"

# prefix      key after the prefix              value
_META = b"m"  # name                            bytes (chain id, genesis hash, format version)
_HEADER = b"h"  # block hash                    BlockHeader
_BLOCK = b"b"  # block hash                     Block
_INDEX = b"i"  # block hash                     IndexEntry
_TIP = b"T"  # (none)                           best tip hash
_HEIGHT = b"n"  # height, 8 bytes big-endian    block hash on the best chain
_ACCOUNT = b"a"  # address                      Account
_TASK = b"k"  # task id                         TaskRecord
_BLOB = b"s"  # state_hash(blob)                blob (task states; content-addressed)
_UNDO = b"u"  # block hash                      Undo
_TASK_BLOCKS = b"w"  # task id + height (8 BE) + block hash   b"" (blocks that worked on a task)
_REWARD = b"r"  # height, 8 bytes big-endian    PendingReward (immature block rewards)
_NODE = b"z"  # depth (2 BE) + path (32)        state-tree node (chain.smt.encode_node)
_TXLOC = b"x"  # txid                           TxLocation (best chain only)
_EVENT = b"e"  # address + height (8 BE) + seq (4 BE)   AccountEvent (best chain only)
_PRUNED = b"P"  # block hash                    b"" (its openings and undo record are deleted)
_BY_WORK = b"W"  # chain work (64 BE) + hash     b"" (stored blocks off the best chain, by work)

# For p2p.reindex, which salvages these prefixes from a damaged store.
BLOCK_PREFIX, INDEX_PREFIX, HEIGHT_PREFIX = _BLOCK, _INDEX, _HEIGHT

STATUS_HEADER = 0  # header known, body not yet
STATUS_BODY = 1  # body stored, not yet validated
STATUS_VALID = 2  # validated (connected now or in the past)
STATUS_INVALID = 3  # failed validation; `reason` says why
STATUS_NAMES = {
    STATUS_HEADER: "header-only",
    STATUS_BODY: "body",
    STATUS_VALID: "valid",
    STATUS_INVALID: "invalid",
}


class StoreError(RuntimeError):
    """An operation the store refuses (wrong parent, no undo data, not initialised, ...)."""


class CorruptRecord(StoreError):
    """A stored record that does not decode; names the key."""


REINDEX_HINT = (
    "restart the node with --reindex to rebuild the chain from the readable blocks (peers "
    "supply the rest)"
)


class StoreCorrupt(StoreError):
    """The store's files are damaged or incomplete (LevelDB corruption, a missing CURRENT file).
    The message is one line naming the file and the remedy."""


class StoreWriteFailed(StoreError):
    """A write that did not reach the disk (disk full, I/O error); the store refuses writes from
    then on, so no caller goes on as if the record were stored."""


@dataclass(frozen=True)
class IndexEntry(Record):
    hash: Annotated[BlockHash, Bytes(HASH_SIZE)]
    prev_hash: Annotated[BlockHash, Bytes(HASH_SIZE)]
    height: Annotated[int, U64]
    chain_work: Annotated[int, BigUInt(64)]
    status: Annotated[int, UInt(8, choices=tuple(STATUS_NAMES))]
    reason: Annotated[str, Text(500)]


# LevelDB's block cache (its default is 8 MiB): the state tree's reads are random, so a larger
# cache keeps a block's cost near flat as the ledger grows (`pouw bench node-scale`). A node's
# `--db-cache MIB` sets it; this is its default.
LEVELDB_CACHE_BYTES = 256 << 20  # an upper bound: it fills only with what is read


def _height_key(height: int) -> bytes:
    return _HEIGHT + height.to_bytes(8, "big")


def _work_key(chain_work: int, block_hash: bytes) -> bytes:
    return _BY_WORK + chain_work.to_bytes(64, "big") + block_hash


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def open_leveldb(path: str, create: bool, cache_bytes: int = LEVELDB_CACHE_BYTES) -> "plyvel.DB":
    """Open with paranoid checks; `create` only for a directory that is missing or empty."""
    try:
        return plyvel.DB(
            path, create_if_missing=create, paranoid_checks=True, lru_cache_size=cache_bytes
        )
    except plyvel.CorruptionError as exc:
        raise StoreCorrupt(
            f"{path}: LevelDB found damaged data at open ({_text(exc)}); {REINDEX_HINT}"
        ) from None
    except plyvel.Error as exc:
        if not create and not (Path(path) / "CURRENT").exists():
            raise StoreCorrupt(
                f"{path}/CURRENT is missing, so this store cannot be opened (nothing was "
                f"changed or deleted); {REINDEX_HINT}, "
                "or restore the data directory from a backup"
            ) from None
        raise StoreError(f"{path}: cannot open the store: {_text(exc)}") from None


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


# The full store check, run in a child process: the table files LevelDB maps while reading every
# record stay resident in the reader, so a check in the node itself would make its memory grow
# with the store (172 MB of mapped pages at 50,000 blocks).
_CHECK_CHILD = """
import sys, plyvel
db = plyvel.DB(sys.argv[1], paranoid_checks=True)
for _ in db.iterator(verify_checksums=True, fill_cache=False):
    pass
db.close()
"""


class ChainStore:
    @classmethod
    def open_checked(cls, path: str, cache_bytes: int = LEVELDB_CACHE_BYTES) -> "ChainStore":
        """Open after reading every record once with checksums verified (as `check=True`), the
        reading done in a child process so this one's memory does not grow with the store. If
        the child finds anything wrong, the check runs here, to name the damaged file."""
        if _has_files(Path(path)):
            child = subprocess.run(
                [sys.executable, "-c", _CHECK_CHILD, str(path)], capture_output=True
            )
            if child.returncode == 0:
                return cls(path, cache_bytes=cache_bytes)
        return cls(path, check=True, cache_bytes=cache_bytes)

    def __init__(
        self, path: str, check: bool = False, cache_bytes: int = LEVELDB_CACHE_BYTES
    ) -> None:
        """Open (or, for a missing or empty directory, create) the store at `path`; with `check`,
        read every record once with checksums verified, so damage is found now, not mid-sync.
        `cache_bytes`: LevelDB's block cache (the node's --db-cache)."""
        self.path = str(path)
        self.write_failure: str | None = None
        self.db = open_leveldb(self.path, not _has_files(Path(self.path)), cache_bytes)
        try:
            if check:
                self.verify()
            version = self._get(_META + b"format")
        except StoreError:
            self.db.close()
            raise
        if version is not None and version != FORMAT_VERSION:
            self.db.close()
            raise StoreError(
                f"{self.path}: store format {version!r}, this code reads {FORMAT_VERSION!r}"
            )
        self.cache = StateCache()
        self._state: LedgerState | None = None
        self._tasks: dict[bytes, TaskRecord] = {}
        self._rewards: dict[int, PendingReward] = {}
        try:
            self._load_tasks_and_rewards()
            self._build_work_index()
        except StoreError:
            self.db.close()
            raise

    def _build_work_index(self) -> None:
        """Once, for a store written before the work index: index every stored block by work."""
        if not self.is_initialised() or self._get(_META + b"work-index") is not None:
            return
        with self._write_batch() as batch:
            for entry in self.index_entries():
                if entry.status != STATUS_HEADER:
                    batch.put(_work_key(entry.chain_work, entry.hash), b"")
            batch.put(_META + b"work-index", b"1")

    def verify(self) -> tuple[int, int]:
        """Read every record with checksums verified; (records, bytes), or StoreCorrupt naming
        the file."""
        records = size = 0
        try:
            for key, value in self.db.iterator(verify_checksums=True, fill_cache=False):
                records += 1
                size += len(key) + len(value)
        except plyvel.CorruptionError as exc:
            raise self._corrupt(exc) from None
        return records, size

    def _corrupt(self, exc: BaseException) -> StoreCorrupt:
        bad = find_damaged_tables(self.path)
        where = ", ".join(f"{self.path}/{name}" for name in bad) if bad else self.path
        return StoreCorrupt(f"{where}: damaged LevelDB data ({_text(exc)}); {REINDEX_HINT}")

    def _get(self, key: bytes) -> bytes | None:
        try:
            return self.db.get(key, verify_checksums=True)
        except plyvel.CorruptionError as exc:
            raise self._corrupt(exc) from None

    def _iter(self, **kw) -> Iterator:
        try:
            yield from self.db.iterator(verify_checksums=True, **kw)
        except plyvel.CorruptionError as exc:
            raise self._corrupt(exc) from None

    def _check_writable(self) -> None:
        if self.write_failure is not None:
            raise StoreWriteFailed(
                f"{self.path}: writes stopped after an earlier failure: {self.write_failure}"
            )

    def _write_batch(self) -> "_Batch":
        self._check_writable()
        return _Batch(self)

    def _put(self, key: bytes, value: bytes) -> None:
        self._check_writable()
        try:
            self.db.put(key, value, sync=True)
        except plyvel.Error as exc:
            raise self._write_failed(exc) from None

    def _write_failed(self, exc: BaseException) -> StoreWriteFailed:
        self.write_failure = _text(exc)
        return StoreWriteFailed(
            f"{self.path}: write failed, nothing more will be written: {self.write_failure}"
        )

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()

    def __enter__(self) -> "ChainStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------------

    def _read(self, cls: type[R], key: bytes, what: str) -> R | None:
        raw = self._get(key)
        if raw is None:
            return None
        try:
            return cls.from_bytes(raw)
        except DecodeError as exc:
            raise CorruptRecord(f"{self.path}: {what}: {exc}") from None

    def _meta(self, name: bytes) -> bytes:
        value = self._get(_META + name)
        if value is None:
            raise StoreError(f"{self.path}: store not initialised (no {name.decode()})")
        return value

    def is_initialised(self) -> bool:
        return self._get(_TIP) is not None

    @property
    def chain_id(self) -> bytes:
        return self._meta(b"chain_id")

    @property
    def genesis_hash(self) -> BlockHash:
        return BlockHash(self._meta(b"genesis"))

    def tip(self) -> bytes:
        tip = self._get(_TIP)
        if tip is None:
            raise StoreError(f"{self.path}: store not initialised (no tip)")
        return tip

    def tip_entry(self) -> IndexEntry:
        entry = self.get_index(self.tip())
        if entry is None:
            raise CorruptRecord(f"{self.path}: tip {self.tip().hex()} has no index entry")
        return entry

    def get_index(self, block_hash: bytes) -> IndexEntry | None:
        return self._read(IndexEntry, _INDEX + block_hash, f"index entry {block_hash.hex()}")

    def index_entries(self) -> Iterator[IndexEntry]:
        """Every block index entry (any status), for rebuilding the block tree at start-up."""
        for key, raw in self._iter(prefix=_INDEX):
            try:
                yield IndexEntry.from_bytes(raw)
            except DecodeError as exc:
                raise CorruptRecord(f"{self.path}: index entry {key[1:].hex()}: {exc}") from None

    def entries_above(self, chain_work: int) -> Iterator[IndexEntry]:
        """Stored blocks off the best chain with more work than `chain_work` (the fork-choice
        candidates at start-up), read from the work index without scanning the block index."""
        start, stop = _work_key(chain_work + 1, b""), bytes([_BY_WORK[0] + 1])
        for key in self._iter(start=start, stop=stop, include_value=False):
            entry = self.get_index(key[-HASH_SIZE:])
            if entry is None:
                where = key[-HASH_SIZE:].hex()
                raise CorruptRecord(f"{self.path}: the work index names {where}, not indexed")
            yield entry

    def get_header(self, block_hash: bytes) -> BlockHeader | None:
        return self._read(BlockHeader, _HEADER + block_hash, f"header {block_hash.hex()}")

    def get_block(self, block_hash: bytes) -> Block | None:
        return self._read(Block, _BLOCK + block_hash, f"block {block_hash.hex()}")

    def has_block(self, block_hash: bytes) -> bool:
        return self._get(_BLOCK + block_hash) is not None

    def hash_at(self, height: int) -> BlockHash | None:
        """Hash of the best chain's block at `height`."""
        found = self._get(_height_key(height))
        return None if found is None else BlockHash(found)

    def get_undo(self, block_hash: bytes) -> Undo | None:
        return self._read(Undo, _UNDO + block_hash, f"undo record {block_hash.hex()}")

    def account(self, address: bytes) -> Account | None:
        return self._read(Account, _ACCOUNT + address, f"account {address.hex()}")

    def task(self, task_id: bytes) -> TaskRecord | None:
        return self._read(TaskRecord, _TASK + task_id, f"task {task_id.hex()}")

    def _load_tasks_and_rewards(self) -> None:
        for key, raw in self._iter(prefix=_TASK):
            self._tasks[key[1:]] = self._decode(TaskRecord, raw, f"task {key[1:].hex()}")
        for key, raw in self._iter(prefix=_REWARD):
            what = f"reward of block {key[1:].hex()}"
            self._rewards[int.from_bytes(key[1:], "big")] = self._decode(PendingReward, raw, what)

    def state(self) -> LedgerState:
        """The ledger state at the best tip: accounts and tree nodes read from disk as needed
        (through the cache), tasks and pending rewards from memory. One object per tip."""
        state = self._state
        base = state.tree.base if state is not None else None
        if (
            state is None
            or not isinstance(base, GenerationReader)
            or base.generation != self.cache.generation
        ):
            reader = GenerationReader(self.db, self.cache, _NODE, _ACCOUNT, self._corrupt)
            accounts: StoredAccounts[Account] = StoredAccounts(reader, self._decode_account)
            state = LedgerState(
                self.chain_id,
                accounts,
                dict(self._tasks),
                dict(self._rewards),
                tree=TreeView(reader),
            )
            self._state = state
        return state

    def load_state(self) -> LedgerState:
        """The ledger state at the best tip (see `state`)."""
        return self.state()

    def _decode_account(self, address: bytes, raw: bytes) -> Account:
        return self._decode(Account, raw, f"account {address.hex()}")

    def _decode(self, cls: type[R], raw: bytes, what: str) -> R:
        try:
            return cls.from_bytes(raw)
        except DecodeError as exc:
            raise CorruptRecord(f"{self.path}: {what}: {exc}") from None

    def tx_location(self, txid: bytes) -> TxLocation | None:
        """Where a transaction of the best chain is."""
        return self._read(TxLocation, _TXLOC + txid, f"location of tx {txid.hex()}")

    def txids(self, hex_prefix: str = "") -> Iterator[bytes]:
        """The best chain's txids starting with these hex digits (whole bytes are seeked)."""
        whole = bytes.fromhex(hex_prefix[: len(hex_prefix) // 2 * 2])
        for key in self._iter(prefix=_TXLOC + whole, include_value=False):
            txid = key[1:]
            if txid.hex().startswith(hex_prefix):
                yield txid

    def history(self, address: bytes, offset: int, limit: int) -> tuple[int, list[AccountEvent]]:
        """(number of events, a page of them newest first) of an address on the best chain."""
        prefix = _EVENT + address
        total = sum(1 for _ in self._iter(prefix=prefix, include_value=False))
        page: list[AccountEvent] = []
        for i, (key, raw) in enumerate(self._iter(prefix=prefix, reverse=True)):
            if i >= offset + limit:
                break
            if i >= offset:
                page.append(self._decode(AccountEvent, raw, f"event {key[1:].hex()}"))
        return total, page

    def is_pruned(self, block_hash: bytes) -> bool:
        return self._get(_PRUNED + block_hash) is not None

    def pruned_height(self) -> int:
        """The best chain's blocks at and below this height are pruned (0: none)."""
        raw = self._get(_META + b"pruned")
        return int.from_bytes(raw, "big") if raw is not None else 0

    def prune(self, keep: int, max_blocks: int = 256) -> int:
        """Prune the best chain's blocks more than `keep` below the tip, at most `max_blocks` now:
        their openings (the bulk of a body) and undo records are deleted; header, transactions
        and leaves stay (the task manifests and fraud proofs need the leaves, task results are
        blobs, which are kept). One atomic batch. Returns how many blocks were pruned."""
        if keep < 1:
            raise StoreError(f"prune: keep {keep} blocks, at least 1")
        start = self.pruned_height() + 1
        end = min(self.tip_entry().height - keep, start + max_blocks - 1)
        if end < start:
            return 0
        with self._write_batch() as batch:
            for height in range(start, end + 1):
                h = self.hash_at(height)
                block = self.get_block(h) if h is not None else None
                if h is None or block is None:
                    raise CorruptRecord(f"{self.path}: best-chain block at height {height} missing")
                proofs = tuple(WorkProof(p.leaves, ()) for p in block.proofs)
                batch.put(_BLOCK + h, Block(block.header, block.txs, proofs).to_bytes())
                batch.delete(_UNDO + h)
                batch.put(_PRUNED + h, b"")
            batch.put(_META + b"pruned", end.to_bytes(8, "big"))
        self._state = None  # its snapshot would keep the deleted records from being compacted away
        return end - start + 1

    def get_blob(self, blob_hash: bytes) -> bytes | None:
        return self._get(_BLOB + blob_hash)

    def blocks_for_task(self, task_id: bytes) -> list[tuple[int, bytes]]:
        """(height, block hash) of the best chain's blocks that worked on the task, by height."""
        prefix = _TASK_BLOCKS + task_id
        return [
            (int.from_bytes(key[len(prefix) : len(prefix) + 8], "big"), key[len(prefix) + 8 :])
            for key in self._iter(prefix=prefix, include_value=False)
        ]

    # --- writing outside the best chain ----------------------------------------------------------

    def put_blob(self, blob: bytes) -> bytes:
        key = state_hash(blob)
        self._put(_BLOB + key, blob)
        return key

    def put_header(self, header: BlockHeader, chain_work: int) -> IndexEntry:
        """Store a header and its index entry (header-only) unless the block is already known."""
        entry = self.get_index(header.hash)
        if entry is not None:
            return entry
        entry = IndexEntry(
            header.hash, header.prev_hash, header.height, chain_work, STATUS_HEADER, ""
        )
        with self._write_batch() as batch:
            batch.put(_HEADER + header.hash, header.to_bytes())
            batch.put(_INDEX + header.hash, entry.to_bytes())
        return entry

    def put_block(self, block: Block, chain_work: int, encoded: bytes | None = None) -> IndexEntry:
        """Store a block body (status body unless it is already valid or invalid). `encoded`: the
        block's canonical bytes as they arrived (checked by Block.from_bytes), written as they are
        rather than encoding the block again."""
        entry = self.get_index(block.hash)
        if entry is None or entry.status == STATUS_HEADER:
            entry = IndexEntry(
                block.hash, block.header.prev_hash, block.header.height, chain_work, STATUS_BODY, ""
            )
        with self._write_batch() as batch:
            batch.put(_HEADER + block.hash, block.header.to_bytes())
            batch.put(_BLOCK + block.hash, block.to_bytes() if encoded is None else encoded)
            batch.put(_INDEX + block.hash, entry.to_bytes())
            if entry.status != STATUS_VALID:
                batch.put(_work_key(chain_work, block.hash), b"")
        return entry

    def set_status(self, block_hash: bytes, status: int, reason: str = "") -> IndexEntry:
        entry = self.get_index(block_hash)
        if entry is None:
            raise StoreError(f"no index entry for block {block_hash.hex()}")
        entry = IndexEntry(
            entry.hash, entry.prev_hash, entry.height, entry.chain_work, status, reason[:500]
        )
        self._put(_INDEX + block_hash, entry.to_bytes())
        return entry

    # --- the best chain: genesis, connect, disconnect ---------------------------------------------

    def init_genesis(
        self, block: Block, state: LedgerState, chain_work: int, blobs: Iterable[bytes] = ()
    ) -> None:
        """Write the genesis block and state into an empty store."""
        with self.db.iterator(include_value=False) as keys:
            if next(keys, None) is not None:
                raise StoreError(f"{self.path}: store is not empty")
        h = block.hash
        entry = IndexEntry(
            h, block.header.prev_hash, block.header.height, chain_work, STATUS_VALID, ""
        )
        with self._write_batch() as batch:
            batch.put(_META + b"format", FORMAT_VERSION)
            batch.put(_META + b"chain_id", state.chain_id)
            batch.put(_META + b"genesis", h)
            batch.put(_META + b"work-index", b"1")
            batch.put(_HEADER + h, block.header.to_bytes())
            batch.put(_BLOCK + h, block.to_bytes())
            batch.put(_INDEX + h, entry.to_bytes())
            for address, account in state.accounts.items():
                batch.put(_ACCOUNT + address, account.to_bytes())
            for task_id, task in state.tasks.items():
                batch.put(_TASK + task_id, task.to_bytes())
            for height, reward in state.rewards.items():
                batch.put(_REWARD + height.to_bytes(8, "big"), reward.to_bytes())
            nodes = build_nodes(state_leaves(state))
            for pos, node in nodes.items():
                if node is not None:
                    batch.put(_NODE + position_key(pos), encode_node(node))
            for blob in blobs:
                batch.put(_BLOB + state_hash(blob), blob)
            batch.put(_height_key(block.header.height), h)
            batch.put(_TIP, h)
        self._tasks, self._rewards = dict(state.tasks), dict(state.rewards)
        self.cache.advance({}, {})

    def _tree_writes(
        self,
        new_state: LedgerState | None,
        accounts: Mapping[bytes, Account | None],
        tasks: Mapping[bytes, TaskRecord | None],
        rewards: Mapping[int, PendingReward | None],
    ) -> dict[Position, Node | None]:
        """The tree positions to write for these changes on the tip's state: taken from
        `new_state` when it was derived from the tip's state, else computed here."""
        if new_state is not None:
            base = new_state.tree.base
            if (
                isinstance(base, GenerationReader)
                and base.cache is self.cache
                and base.generation == self.cache.generation
            ):
                return new_state.tree.writes
        return update(self.state().tree, leaf_changes(accounts, tasks, rewards))

    def _write_state(
        self,
        batch: "_Batch",
        nodes: Mapping[Position, Node | None],
        accounts: Mapping[bytes, Account | None],
        tasks: Mapping[bytes, TaskRecord | None],
        rewards: Mapping[int, PendingReward | None],
    ) -> None:
        for address, account in accounts.items():
            _put_or_delete(batch, _ACCOUNT + address, account)
        for task_id, task in tasks.items():
            _put_or_delete(batch, _TASK + task_id, task)
        for height, reward in rewards.items():
            _put_or_delete(batch, _REWARD + height.to_bytes(8, "big"), reward)
        for pos, node in nodes.items():
            if node is None:
                batch.delete(_NODE + position_key(pos))
            else:
                batch.put(_NODE + position_key(pos), encode_node(node))

    def _advance(
        self,
        nodes: Mapping[Position, Node | None],
        accounts: Mapping[bytes, Account | None],
        tasks: Mapping[bytes, TaskRecord | None],
        rewards: Mapping[int, PendingReward | None],
    ) -> None:
        """After a batch reached the disk: the in-memory maps and caches follow it."""
        for task_id, task in tasks.items():
            if task is None:
                self._tasks.pop(task_id, None)
            else:
                self._tasks[task_id] = task
        for height, reward in rewards.items():
            if reward is None:
                self._rewards.pop(height, None)
            else:
                self._rewards[height] = reward
        raw = {a: None if acct is None else acct.to_bytes() for a, acct in accounts.items()}
        self.cache.advance(nodes, raw)

    def connect_block(
        self,
        block: Block,
        undo: Undo,
        new_state: LedgerState,
        chain_work: int | None = None,
        blobs: Iterable[bytes] = (),
        body_stored: bool = False,
    ) -> IndexEntry:
        """Make `block` the new tip: one atomic batch with its state deltas, tree nodes, undo
        record, transaction locations and account events.

        `new_state` is apply_block's result for this block on the tip's state; only the keys named
        in `undo` are written. `chain_work` may be left out when the block is already indexed.
        `body_stored`: put_block wrote the body already (it is not written twice).
        """
        h = block.hash
        tip = self.tip()
        if block.header.prev_hash != tip:
            raise StoreError(f"block {h.hex()} does not extend the tip {tip.hex()}")
        if chain_work is None:
            known = self.get_index(h)
            if known is None:
                raise StoreError(f"block {h.hex()} is not indexed and no chain work was given")
            chain_work = known.chain_work
        entry = IndexEntry(
            h, block.header.prev_hash, block.header.height, chain_work, STATUS_VALID, ""
        )
        accounts = {u.address: new_state.accounts.get(u.address) for u in undo.accounts}
        tasks = {u.task_id: new_state.tasks.get(u.task_id) for u in undo.tasks}
        rewards = {u.height: new_state.rewards.get(u.height) for u in undo.rewards}
        nodes = self._tree_writes(new_state, accounts, tasks, rewards)
        with self._write_batch() as batch:
            if not body_stored:
                batch.put(_HEADER + h, block.header.to_bytes())
                batch.put(_BLOCK + h, block.to_bytes())
            batch.put(_INDEX + h, entry.to_bytes())
            batch.delete(_work_key(chain_work, h))  # on the best chain: never a candidate again
            self._write_state(batch, nodes, accounts, tasks, rewards)
            for txid, location in tx_locations(block):
                batch.put(_TXLOC + txid, location.to_bytes())
            pending = new_state.rewards.get(block.header.height)
            paid = [c.amount for c in pending.claims] if pending is not None else []
            for address, seq, event in account_events(block, undo.miner_reward, paid):
                batch.put(_event_key(address, block.header.height, seq), event.to_bytes())
            for blob in blobs:
                batch.put(_BLOB + state_hash(blob), blob)
            for claim in block.header.work:
                batch.put(_task_block_key(claim.task_id, block.header.height, h), b"")
            batch.put(_UNDO + h, undo.to_bytes())
            batch.put(_height_key(block.header.height), h)
            batch.put(_TIP, h)
        self._advance(nodes, accounts, tasks, rewards)
        return entry

    def disconnect_tip(self) -> tuple[Block, Undo]:
        """Undo the tip block on disk in one atomic batch; return it and its undo record.

        The store's `state()` is the state before the block from then on.
        """
        h = self.tip()
        if h == self.genesis_hash:
            raise StoreError("cannot disconnect the genesis block")
        if self.is_pruned(h):
            raise StoreError(f"cannot disconnect block {h.hex()[:16]}: pruned (no undo record)")
        block = self.get_block(h)
        undo = self.get_undo(h)
        entry = self.get_index(h)
        if block is None or undo is None:
            raise CorruptRecord(
                f"{self.path}: tip {h.hex()} has no {'block' if block is None else 'undo record'}"
            )
        accounts = {u.address: u.before for u in undo.accounts}
        tasks = {u.task_id: u.before for u in undo.tasks}
        rewards = {u.height: u.before for u in undo.rewards}
        nodes = self._tree_writes(None, accounts, tasks, rewards)
        with self._write_batch() as batch:
            self._write_state(batch, nodes, accounts, tasks, rewards)
            for txid, _ in tx_locations(block):
                batch.delete(_TXLOC + txid)
            for address, seq, _event in account_events(block, undo.miner_reward):
                batch.delete(_event_key(address, block.header.height, seq))
            for claim in block.header.work:
                batch.delete(_task_block_key(claim.task_id, block.header.height, h))
            batch.delete(_UNDO + h)
            batch.delete(_height_key(block.header.height))
            if entry is not None:
                batch.put(_work_key(entry.chain_work, h), b"")  # off the best chain again
            batch.put(_TIP, block.header.prev_hash)
        self._advance(nodes, accounts, tasks, rewards)
        return block, undo


def _event_key(address: bytes, height: int, seq: int) -> bytes:
    return _EVENT + address + height.to_bytes(8, "big") + seq.to_bytes(4, "big")


def _task_block_key(task_id: bytes, height: int, block_hash: bytes) -> bytes:
    return _TASK_BLOCKS + task_id + height.to_bytes(8, "big") + block_hash


def _put_or_delete(batch: "_Batch", key: bytes, value: Record | None) -> None:
    if value is None:
        batch.delete(key)
    else:
        batch.put(key, value.to_bytes())


class _Batch:
    """One atomic, synced WriteBatch; a failed write marks the store failed."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self.batch = store.db.write_batch(sync=True)

    def put(self, key: bytes, value: bytes) -> None:
        self.batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self.batch.delete(key)

    def __enter__(self) -> "_Batch":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.batch.clear()
            return
        try:
            self.batch.write()
        except plyvel.Error as error:
            raise self.store._write_failed(error) from None


def find_damaged_tables(path: str) -> list[str]:
    """Names of the LevelDB table files under `path` that fail a checksum-verified read.

    Each table is copied alone into a scratch store beside `path` (repaired into a store of its
    own, so the original files are never touched) and read through once. Only on the error path.
    """
    root = Path(path)
    bad = []
    for table in sorted(list(root.glob("*.ldb")) + list(root.glob("*.sst"))):
        scratch = Path(tempfile.mkdtemp(prefix=".check-", dir=root.parent))
        try:
            shutil.copy2(table, scratch / table.name)
            plyvel.repair_db(str(scratch))
            # Repair salvages the readable entries of a damaged table into a clean one, so the
            # read below can pass: its log, which names every corruption it skipped, decides too.
            log = scratch / "LOG"
            if log.is_file() and "orruption" in log.read_text(errors="replace"):
                bad.append(table.name)
                continue
            db = plyvel.DB(str(scratch), create_if_missing=False)
            try:
                for _ in db.iterator(verify_checksums=True, fill_cache=False):
                    pass
            except plyvel.CorruptionError:
                bad.append(table.name)
            finally:
                db.close()
        except (plyvel.Error, OSError):
            bad.append(table.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return bad


def read_prefix_salvaging(db: "plyvel.DB", prefix: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Every readable (key, value) under `prefix`, reading forward and then backward around
    damaged blocks; (records, whether any damage was met)."""
    forward: list[tuple[bytes, bytes]] = []
    damaged = False
    try:
        for kv in db.iterator(prefix=prefix, verify_checksums=True, fill_cache=False):
            forward.append(kv)
    except plyvel.CorruptionError:
        damaged = True
    if not damaged:
        return forward, False
    last = forward[-1][0] if forward else None
    backward: list[tuple[bytes, bytes]] = []
    try:
        for kv in db.iterator(prefix=prefix, reverse=True, verify_checksums=True, fill_cache=False):
            if last is not None and kv[0] <= last:
                break
            backward.append(kv)
    except plyvel.CorruptionError:
        pass
    return forward + backward[::-1], True
