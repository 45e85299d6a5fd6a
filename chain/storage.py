"""The chain on disk: LevelDB through plyvel.

Keys are a one-byte prefix and a fixed-size key (see the table below). Connecting a block (body,
index, state deltas, undo record, height index, tip) and disconnecting one are each one atomic,
synced WriteBatch, so a process killed at any moment reopens onto the chain as of its last
completed connect or disconnect, with the state that belongs to that tip.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

import plyvel

from useful_work.hashing import HASH_SIZE
from useful_work.trace import state_hash

from chain.block import Block, BlockHeader
from chain.encoding import U64, BigUInt, Bytes, DecodeError, Record, Text, UInt
from chain.state import Account, LedgerState, PendingReward, TaskRecord, Undo

R = TypeVar("R", bound=Record)

FORMAT_VERSION = b"3"  # 3: pending rewards record their work for fraud proofs; undo records what was burned (2: chained seeds)

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

STATUS_HEADER = 0  # header known, body not yet
STATUS_BODY = 1  # body stored, not yet validated
STATUS_VALID = 2  # validated (connected now or in the past)
STATUS_INVALID = 3  # failed validation; `reason` says why
STATUS_NAMES = {STATUS_HEADER: "header-only", STATUS_BODY: "body", STATUS_VALID: "valid", STATUS_INVALID: "invalid"}


class StoreError(RuntimeError):
    """An operation the store refuses (wrong parent, no undo data, not initialised, ...)."""


class CorruptRecord(StoreError):
    """A stored record that does not decode; names the key."""


@dataclass(frozen=True)
class IndexEntry(Record):
    hash: Annotated[bytes, Bytes(HASH_SIZE)]
    prev_hash: Annotated[bytes, Bytes(HASH_SIZE)]
    height: Annotated[int, U64]
    chain_work: Annotated[int, BigUInt(64)]
    status: Annotated[int, UInt(8, choices=tuple(STATUS_NAMES))]
    reason: Annotated[str, Text(500)]


def _height_key(height: int) -> bytes:
    return _HEIGHT + height.to_bytes(8, "big")


class ChainStore:
    def __init__(self, path: str) -> None:
        self.path = str(path)
        self.db = plyvel.DB(self.path, create_if_missing=True)
        version = self.db.get(_META + b"format")
        if version is not None and version != FORMAT_VERSION:
            self.db.close()
            raise StoreError(f"{self.path}: store format {version!r}, this code reads {FORMAT_VERSION!r}")

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()

    def __enter__(self) -> "ChainStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------------------

    def _read(self, cls: type[R], key: bytes, what: str) -> R | None:
        raw = self.db.get(key)
        if raw is None:
            return None
        try:
            return cls.from_bytes(raw)
        except DecodeError as exc:
            raise CorruptRecord(f"{self.path}: {what}: {exc}") from None

    def _meta(self, name: bytes) -> bytes:
        value = self.db.get(_META + name)
        if value is None:
            raise StoreError(f"{self.path}: store not initialised (no {name.decode()})")
        return value

    def is_initialised(self) -> bool:
        return self.db.get(_TIP) is not None

    @property
    def chain_id(self) -> bytes:
        return self._meta(b"chain_id")

    @property
    def genesis_hash(self) -> bytes:
        return self._meta(b"genesis")

    def tip(self) -> bytes:
        tip = self.db.get(_TIP)
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
        for key, raw in self.db.iterator(prefix=_INDEX):
            try:
                yield IndexEntry.from_bytes(raw)
            except DecodeError as exc:
                raise CorruptRecord(f"{self.path}: index entry {key[1:].hex()}: {exc}") from None

    def get_header(self, block_hash: bytes) -> BlockHeader | None:
        return self._read(BlockHeader, _HEADER + block_hash, f"header {block_hash.hex()}")

    def get_block(self, block_hash: bytes) -> Block | None:
        return self._read(Block, _BLOCK + block_hash, f"block {block_hash.hex()}")

    def has_block(self, block_hash: bytes) -> bool:
        return self.db.get(_BLOCK + block_hash) is not None

    def hash_at(self, height: int) -> bytes | None:
        """Hash of the best chain's block at `height`."""
        return self.db.get(_height_key(height))

    def get_undo(self, block_hash: bytes) -> Undo | None:
        return self._read(Undo, _UNDO + block_hash, f"undo record {block_hash.hex()}")

    def account(self, address: bytes) -> Account | None:
        return self._read(Account, _ACCOUNT + address, f"account {address.hex()}")

    def task(self, task_id: bytes) -> TaskRecord | None:
        return self._read(TaskRecord, _TASK + task_id, f"task {task_id.hex()}")

    def load_state(self) -> LedgerState:
        """The ledger state at the best tip."""
        accounts = {}
        for key, raw in self.db.iterator(prefix=_ACCOUNT):
            accounts[key[1:]] = self._decode(Account, raw, f"account {key[1:].hex()}")
        tasks = {}
        for key, raw in self.db.iterator(prefix=_TASK):
            tasks[key[1:]] = self._decode(TaskRecord, raw, f"task {key[1:].hex()}")
        rewards = {}
        for key, raw in self.db.iterator(prefix=_REWARD):
            rewards[int.from_bytes(key[1:], "big")] = self._decode(PendingReward, raw, f"reward of block {key[1:].hex()}")
        return LedgerState(self.chain_id, accounts, tasks, rewards)

    def _decode(self, cls: type[R], raw: bytes, what: str) -> R:
        try:
            return cls.from_bytes(raw)
        except DecodeError as exc:
            raise CorruptRecord(f"{self.path}: {what}: {exc}") from None

    def get_blob(self, blob_hash: bytes) -> bytes | None:
        return self.db.get(_BLOB + blob_hash)

    def blocks_for_task(self, task_id: bytes) -> list[tuple[int, bytes]]:
        """(height, block hash) of the best chain's blocks that worked on the task, by height."""
        prefix = _TASK_BLOCKS + task_id
        return [
            (int.from_bytes(key[len(prefix) : len(prefix) + 8], "big"), key[len(prefix) + 8 :])
            for key in self.db.iterator(prefix=prefix, include_value=False)
        ]

    # --- writing outside the best chain ----------------------------------------------------------

    def put_blob(self, blob: bytes) -> bytes:
        key = state_hash(blob)
        self.db.put(_BLOB + key, blob, sync=True)
        return key

    def put_header(self, header: BlockHeader, chain_work: int) -> IndexEntry:
        """Store a header and its index entry (header-only) unless the block is already known."""
        entry = self.get_index(header.hash)
        if entry is not None:
            return entry
        entry = IndexEntry(header.hash, header.prev_hash, header.height, chain_work, STATUS_HEADER, "")
        with self.db.write_batch(transaction=True, sync=True) as batch:
            batch.put(_HEADER + header.hash, header.to_bytes())
            batch.put(_INDEX + header.hash, entry.to_bytes())
        return entry

    def put_block(self, block: Block, chain_work: int) -> IndexEntry:
        """Store a block body (status body unless it is already valid or invalid)."""
        entry = self.get_index(block.hash)
        if entry is None or entry.status == STATUS_HEADER:
            entry = IndexEntry(block.hash, block.header.prev_hash, block.header.height, chain_work, STATUS_BODY, "")
        with self.db.write_batch(transaction=True, sync=True) as batch:
            batch.put(_HEADER + block.hash, block.header.to_bytes())
            batch.put(_BLOCK + block.hash, block.to_bytes())
            batch.put(_INDEX + block.hash, entry.to_bytes())
        return entry

    def set_status(self, block_hash: bytes, status: int, reason: str = "") -> IndexEntry:
        entry = self.get_index(block_hash)
        if entry is None:
            raise StoreError(f"no index entry for block {block_hash.hex()}")
        entry = IndexEntry(entry.hash, entry.prev_hash, entry.height, entry.chain_work, status, reason[:500])
        self.db.put(_INDEX + block_hash, entry.to_bytes(), sync=True)
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
        entry = IndexEntry(h, block.header.prev_hash, block.header.height, chain_work, STATUS_VALID, "")
        with self.db.write_batch(transaction=True, sync=True) as batch:
            batch.put(_META + b"format", FORMAT_VERSION)
            batch.put(_META + b"chain_id", state.chain_id)
            batch.put(_META + b"genesis", h)
            batch.put(_HEADER + h, block.header.to_bytes())
            batch.put(_BLOCK + h, block.to_bytes())
            batch.put(_INDEX + h, entry.to_bytes())
            for address, account in state.accounts.items():
                batch.put(_ACCOUNT + address, account.to_bytes())
            for task_id, task in state.tasks.items():
                batch.put(_TASK + task_id, task.to_bytes())
            for blob in blobs:
                batch.put(_BLOB + state_hash(blob), blob)
            batch.put(_height_key(block.header.height), h)
            batch.put(_TIP, h)

    def connect_block(
        self,
        block: Block,
        undo: Undo,
        new_state: LedgerState,
        chain_work: int | None = None,
        blobs: Iterable[bytes] = (),
    ) -> IndexEntry:
        """Make `block` the new tip: one atomic batch with its state deltas and undo record.

        `new_state` is apply_block's result for this block on the tip's state; only the keys named
        in `undo` are written. `chain_work` may be left out when the block is already indexed.
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
        entry = IndexEntry(h, block.header.prev_hash, block.header.height, chain_work, STATUS_VALID, "")
        with self.db.write_batch(transaction=True, sync=True) as batch:
            batch.put(_HEADER + h, block.header.to_bytes())
            batch.put(_BLOCK + h, block.to_bytes())
            batch.put(_INDEX + h, entry.to_bytes())
            for item in undo.accounts:
                _put_or_delete(batch, _ACCOUNT + item.address, new_state.accounts.get(item.address))
            for item in undo.tasks:
                _put_or_delete(batch, _TASK + item.task_id, new_state.tasks.get(item.task_id))
            for r in undo.rewards:
                _put_or_delete(batch, _REWARD + r.height.to_bytes(8, "big"), new_state.rewards.get(r.height))
            for blob in blobs:
                batch.put(_BLOB + state_hash(blob), blob)
            for claim in block.header.work:
                batch.put(_task_block_key(claim.task_id, block.header.height, h), b"")
            batch.put(_UNDO + h, undo.to_bytes())
            batch.put(_height_key(block.header.height), h)
            batch.put(_TIP, h)
        return entry

    def disconnect_tip(self) -> tuple[Block, Undo]:
        """Undo the tip block on disk in one atomic batch; return it and its undo record.

        The caller brings its in-memory state back with `undo_block(state, undo)`.
        """
        h = self.tip()
        if h == self.genesis_hash:
            raise StoreError("cannot disconnect the genesis block")
        block = self.get_block(h)
        undo = self.get_undo(h)
        if block is None or undo is None:
            raise CorruptRecord(f"{self.path}: tip {h.hex()} has no {'block' if block is None else 'undo record'}")
        with self.db.write_batch(transaction=True, sync=True) as batch:
            for item in undo.accounts:
                _put_or_delete(batch, _ACCOUNT + item.address, item.before)
            for item in undo.tasks:
                _put_or_delete(batch, _TASK + item.task_id, item.before)
            for r in undo.rewards:
                _put_or_delete(batch, _REWARD + r.height.to_bytes(8, "big"), r.before)
            for claim in block.header.work:
                batch.delete(_task_block_key(claim.task_id, block.header.height, h))
            batch.delete(_UNDO + h)
            batch.delete(_height_key(block.header.height))
            batch.put(_TIP, block.header.prev_hash)
        return block, undo


def _task_block_key(task_id: bytes, height: int, block_hash: bytes) -> bytes:
    return _TASK_BLOCKS + task_id + height.to_bytes(8, "big") + block_hash


def _put_or_delete(batch: "plyvel.WriteBatch", key: bytes, value: Record | None) -> None:
    if value is None:
        batch.delete(key)
    else:
        batch.put(key, value.to_bytes())
