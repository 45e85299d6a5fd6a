"""`--reindex`: rebuild the block index and the ledger state from the stored block bodies.

Every stored body is read from the old store, and replayed by height into a fresh store through
ChainState.process_block (full validation, re-execution included). The new store is built beside
the old one and swapped in with renames, so a reindex killed half-way leaves the old store usable.
A damaged store (see chain.storage) is salvaged: whatever is readable is replayed, and the
summary line says how many blocks of the old best chain were lost.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import plyvel

from chain.block import Block
from chain.encoding import DecodeError
from chain.storage import (
    BLOCK_PREFIX,
    HEIGHT_PREFIX,
    INDEX_PREFIX,
    STATUS_BODY,
    STATUS_VALID,
    ChainStore,
    IndexEntry,
    StoreCorrupt,
    open_leveldb,
    read_prefix_salvaging,
)
from consensus.chainstate import ChainState, Outcome
from consensus.params import ConsensusParams

log = logging.getLogger("pouw.reindex")


def recover_swap(chain_dir: Path) -> None:
    """Finish or undo a swap interrupted by a crash."""
    old = chain_dir.with_name(chain_dir.name + ".old")
    if old.exists() and not chain_dir.exists():
        old.rename(chain_dir)
    elif old.exists():
        shutil.rmtree(old)
    tmp = chain_dir.with_name(chain_dir.name + ".reindex")
    if tmp.exists():
        shutil.rmtree(tmp)


def _open_salvaging(chain_dir: Path) -> tuple[plyvel.DB, bool]:
    """The old store's LevelDB, repaired first if it does not open (a missing CURRENT, a damaged
    manifest): repair keeps every table and archives what it cannot use under lost/."""
    try:
        return open_leveldb(str(chain_dir), create=False), False
    except StoreCorrupt as exc:
        log.warning("reindex: %s; repairing the LevelDB files in place (unusable files go to %s/lost)", exc, chain_dir)
        plyvel.repair_db(str(chain_dir))
        return open_leveldb(str(chain_dir), create=False), True


def _decode(cls, raw: bytes):
    try:
        return cls.from_bytes(raw)
    except DecodeError:
        return None


def reindex(chain_dir: Path, params: ConsensusParams, device: str = "cpu") -> int:
    """Rebuild `chain_dir` from every readable stored body; return the new tip height.

    A damaged store is salvaged: it is repaired if it does not open, records are read around
    damaged blocks, and bodies that do not decode to their own hash are skipped. The summary
    says how many blocks of the old best chain were lost (peers supply them again), and a damaged
    store is kept beside the new one (`chain.damaged`) instead of being deleted.
    """
    recover_swap(chain_dir)
    if not chain_dir.exists():
        log.info("reindex: no store at %s yet, nothing to rebuild", chain_dir)
        return 0
    started = time.perf_counter()
    db, damaged = _open_salvaging(chain_dir)
    try:
        raw_blocks, d1 = read_prefix_salvaging(db, BLOCK_PREFIX)
        raw_index, d2 = read_prefix_salvaging(db, INDEX_PREFIX)
        raw_heights, d3 = read_prefix_salvaging(db, HEIGHT_PREFIX)
        damaged = damaged or d1 or d2 or d3
    finally:
        db.close()
    blocks: list[Block] = []
    unreadable = 0
    for key, raw in raw_blocks:
        block = _decode(Block, raw)
        if block is None or block.hash != key[1:]:
            unreadable += 1
        elif block.header.height > 0:
            blocks.append(block)
    have = {b.hash for b in blocks}
    for _, raw in raw_index:
        e = _decode(IndexEntry, raw)
        if e is not None and e.height > 0 and e.status in (STATUS_BODY, STATUS_VALID) and e.hash not in have:
            unreadable += 1  # indexed with a body that is no longer readable
    old_best = {int.from_bytes(k[1:], "big"): v for k, v in raw_heights}
    blocks.sort(key=lambda b: b.header.height)
    log.info("reindex: %d stored blocks read from %s%s", len(blocks), chain_dir, " (damaged store)" if damaged else "")
    tmp = chain_dir.with_name(chain_dir.name + ".reindex")
    store = ChainStore(str(tmp))
    try:
        chain = ChainState(store, params, device=device)
        counts: dict[str, int] = {}
        for i, block in enumerate(blocks, 1):
            result = chain.process_block(block)
            counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
            if result.outcome == Outcome.INVALID:
                log.warning("reindex: block %s at height %d invalid: %s", block.hash.hex()[:16], block.header.height, result.detail)
            if i % 100 == 0:
                log.info("reindex: %d / %d blocks, height %d", i, len(blocks), chain.tip.height)
        height = chain.tip.height
        lost = sum(1 for h, x in old_best.items() if h > 0 and chain.hash_at(h) != x)
    finally:
        store.close()
    backup = chain_dir.with_name(chain_dir.name + (".damaged" if damaged else ".old"))
    if backup.exists():
        shutil.rmtree(backup)
    chain_dir.rename(backup)
    tmp.rename(chain_dir)
    old_height = max(old_best, default=0)
    if damaged:
        log.warning(
            "reindex: recovered height %d of %d: %d blocks of the old best chain lost, %d stored blocks unreadable; "
            "the damaged store is kept at %s (remove it when no longer needed)", height, old_height, lost, unreadable, backup,
        )
    else:
        shutil.rmtree(backup)
    log.info("reindex: done in %.1f s, tip height %d, %d blocks of the old best chain lost (%s)",
             time.perf_counter() - started, height, lost, counts)
    return height
