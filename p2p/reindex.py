"""`--reindex`: rebuild the block index and the ledger state from the stored block bodies.

Every stored body is read from the old store, and replayed by height into a fresh store through
ChainState.process_block (full validation, re-execution included). The new store is built beside
the old one and swapped in with renames, so a reindex killed half-way leaves the old store usable.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from chain.block import Block
from chain.storage import STATUS_BODY, STATUS_VALID, ChainStore
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


def reindex(chain_dir: Path, params: ConsensusParams, device: str = "cpu") -> int:
    """Rebuild `chain_dir`; return the new tip height."""
    recover_swap(chain_dir)
    if not chain_dir.exists():
        log.info("reindex: no store at %s yet, nothing to rebuild", chain_dir)
        return 0
    started = time.perf_counter()
    old = ChainStore(str(chain_dir))
    try:
        entries = sorted(
            (e for e in old.index_entries() if e.status in (STATUS_BODY, STATUS_VALID) and e.height > 0),
            key=lambda e: e.height,
        )
        blocks: list[Block] = []
        for e in entries:
            block = old.get_block(e.hash)
            if block is not None:
                blocks.append(block)
    finally:
        old.close()
    log.info("reindex: %d stored blocks read from %s", len(blocks), chain_dir)
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
    finally:
        store.close()
    backup = chain_dir.with_name(chain_dir.name + ".old")
    chain_dir.rename(backup)
    tmp.rename(chain_dir)
    shutil.rmtree(backup)
    log.info("reindex: done in %.1f s, tip height %d (%s)", time.perf_counter() - started, height, counts)
    return height
