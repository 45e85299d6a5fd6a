"""`--reindex`: rebuild the block index and the ledger state from the stored block bodies.

Every stored body is read from the old store, and replayed by height into a fresh store through
ChainState.process_block (full validation, re-execution included). The new store is built beside
the old one and swapped in with renames, so a reindex killed half-way leaves the old store usable.
Progress shows as a bar with an ETA on a terminal, else as a log line every few seconds; the end
is one sentence.
A damaged store (see chain.storage) is salvaged: whatever is readable is replayed, and the
summary line says how many blocks of the old best chain were lost.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
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
from p2p.logs import format_duration

log = logging.getLogger("pouw.reindex")
LOG_EVERY_S = 10.0


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
        log.warning(
            "reindex: %s; repairing the LevelDB files in place (unusable files go to %s/lost)",
            exc,
            chain_dir,
        )
        plyvel.repair_db(str(chain_dir))
        return open_leveldb(str(chain_dir), create=False), True


def _decode(cls, raw: bytes):
    try:
        return cls.from_bytes(raw)
    except DecodeError:
        return None


def _any_damage(db: plyvel.DB) -> bool:
    """Whether any record of the store fails its checksum (state, blobs, undo: not only blocks)."""
    try:
        for _ in db.iterator(verify_checksums=True, fill_cache=False):
            pass
    except plyvel.CorruptionError:
        return True
    return False


def _read_old(chain_dir: Path) -> tuple[list[Block], dict[int, bytes], int, bool]:
    """(readable blocks by height, the old best chain's hashes by height, unreadable bodies,
    damaged?)."""
    db, damaged = _open_salvaging(chain_dir)
    try:
        raw_blocks, d1 = read_prefix_salvaging(db, BLOCK_PREFIX)
        raw_index, d2 = read_prefix_salvaging(db, INDEX_PREFIX)
        raw_heights, d3 = read_prefix_salvaging(db, HEIGHT_PREFIX)
        damaged = damaged or d1 or d2 or d3 or _any_damage(db)
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
        if (
            e is not None
            and e.height > 0
            and e.status in (STATUS_BODY, STATUS_VALID)
            and e.hash not in have
        ):
            unreadable += 1  # indexed with a body that is no longer readable
    old_best = {int.from_bytes(k[1:], "big"): v for k, v in raw_heights}
    blocks.sort(key=lambda b: b.header.height)
    return blocks, old_best, unreadable, damaged


def reindex(
    chain_dir: Path,
    params: ConsensusParams,
    device: str = "cpu",
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Rebuild `chain_dir` from every readable stored body; return the new tip height (-1 when
    stopped).

    A damaged store is salvaged: it is repaired if it does not open, records are read around
    damaged blocks, and bodies that do not decode to their own hash are skipped. The summary
    says how many blocks of the old best chain were lost (peers supply them again), and a damaged
    store is kept beside the new one (`chain.damaged`) instead of being deleted. When
    `should_stop()` turns true (a stop signal), the replay ends between two blocks and the old
    store stays as it was.
    """
    recover_swap(chain_dir)
    if not chain_dir.exists():
        log.info("reindex: no store at %s yet, nothing to rebuild", chain_dir)
        return 0
    started = time.perf_counter()
    blocks, old_best, unreadable, damaged = _read_old(chain_dir)
    log.info(
        "reindex: %d stored blocks read from %s%s",
        len(blocks),
        chain_dir,
        " (damaged store)" if damaged else "",
    )
    tmp = chain_dir.with_name(chain_dir.name + ".reindex")
    store = ChainStore(str(tmp))
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = tqdm(
        total=len(blocks),
        unit="block",
        desc="reindex",
        disable=not sys.stderr.isatty() or not blocks,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    replayed = time.perf_counter()
    last_log = replayed
    chain_log = logging.getLogger("pouw.chainstate")
    chain_level = chain_log.level
    chain_log.setLevel(
        max(logging.WARNING, chain_log.getEffectiveLevel())
    )  # no line per replayed tip
    redirect = logging_redirect_tqdm()  # log lines print above the bar, not through it
    redirect.__enter__()
    counts: dict[str, int] = {}
    try:
        chain = ChainState(store, params, device=device)
        for i, block in enumerate(blocks, 1):
            if should_stop():
                break
            result = chain.process_block(block)
            counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
            if result.outcome == Outcome.INVALID:
                log.warning(
                    "reindex: block %s at height %d invalid: %s",
                    block.hash.hex()[:16],
                    block.header.height,
                    result.detail,
                )
            bar.update(1)
            now = time.perf_counter()
            if bar.disable and now - last_log >= LOG_EVERY_S:
                last_log = now
                rate = i / (now - replayed)
                log.info(
                    "reindex: %d of %d blocks (%.0f%%), height %d, %.2f blocks/s, about %s left",
                    i,
                    len(blocks),
                    100 * i / len(blocks),
                    chain.tip.height,
                    rate,
                    format_duration((len(blocks) - i) / rate),
                )
        height = chain.tip.height
        lost = sum(1 for h, x in old_best.items() if h > 0 and chain.hash_at(h) != x)
    finally:
        bar.close()
        redirect.__exit__(None, None, None)
        chain_log.setLevel(chain_level)
        store.close()
    if should_stop():
        shutil.rmtree(tmp)
        log.info(
            "reindex: stopped after %d of %d blocks; the old store is kept as it was",
            sum(counts.values()),
            len(blocks),
        )
        return -1
    backup = chain_dir.with_name(chain_dir.name + (".damaged" if damaged else ".old"))
    if backup.exists():
        shutil.rmtree(backup)
    chain_dir.rename(backup)
    tmp.rename(chain_dir)
    old_height = max(old_best, default=0)
    if damaged:
        log.warning(
            "reindex: recovered height %d of %d: %d blocks of the old best chain lost, %d "
            "stored blocks unreadable; "
            "the damaged store is kept at %s (remove it when no longer needed)",
            height,
            old_height,
            lost,
            unreadable,
            backup,
        )
    else:
        shutil.rmtree(backup)
    elapsed = time.perf_counter() - started
    connected = counts.get(Outcome.NEW_TIP.value, 0)
    invalid = counts.get(Outcome.INVALID.value, 0)
    log.info(
        "reindex: rebuilt the chain from %d stored blocks in %s (%.1f blocks/s): tip "
        "height %d; %d connected to the "
        "best chain, %d invalid, %d on side branches or not connected; %d blocks of the "
        "old best chain lost",
        len(blocks),
        format_duration(elapsed),
        len(blocks) / elapsed if elapsed > 0 else 0.0,
        height,
        connected,
        invalid,
        sum(counts.values()) - connected - invalid,
        lost,
    )
    return height
