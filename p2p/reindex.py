"""`--reindex`: rebuild the block index and the ledger state from the stored block bodies.

Every stored body is read from the old store, and replayed by height into a fresh store through
ChainState.process_block (full validation, re-execution included). The new store is built beside
the old one and swapped in with renames, so a reindex killed half-way leaves the old store usable.
Progress shows as a bar with an ETA on a terminal, else as a log line every few seconds; the end
is one sentence.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from chain.block import Block
from chain.storage import STATUS_BODY, STATUS_VALID, ChainStore
from consensus.chainstate import ChainState, Outcome
from consensus.params import ConsensusParams

log = logging.getLogger("pouw.reindex")
LOG_EVERY_S = 10.0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


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


def reindex(chain_dir: Path, params: ConsensusParams, device: str = "cpu", should_stop: Callable[[], bool] = lambda: False) -> int:
    """Rebuild `chain_dir`; return the new tip height. When `should_stop()` turns true (a stop
    signal), the replay ends between two blocks and the old store stays as it was."""
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
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = tqdm(total=len(blocks), unit="block", desc="reindex", disable=not sys.stderr.isatty() or not blocks,
               file=sys.stderr, dynamic_ncols=True)
    replayed = time.perf_counter()
    last_log = replayed
    chain_log = logging.getLogger("pouw.chainstate")
    chain_level = chain_log.level
    chain_log.setLevel(max(logging.WARNING, chain_log.getEffectiveLevel()))  # no line per replayed tip
    redirect = logging_redirect_tqdm()  # log lines print above the bar, not through it
    redirect.__enter__()
    try:
        chain = ChainState(store, params, device=device)
        counts: dict[str, int] = {}
        for i, block in enumerate(blocks, 1):
            if should_stop():
                break
            result = chain.process_block(block)
            counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
            if result.outcome == Outcome.INVALID:
                log.warning("reindex: block %s at height %d invalid: %s", block.hash.hex()[:16], block.header.height, result.detail)
            bar.update(1)
            now = time.perf_counter()
            if bar.disable and now - last_log >= LOG_EVERY_S:
                last_log = now
                rate = i / (now - replayed)
                log.info("reindex: %d of %d blocks (%.0f%%), height %d, %.2f blocks/s, about %s left",
                         i, len(blocks), 100 * i / len(blocks), chain.tip.height, rate, _duration((len(blocks) - i) / rate))
        height = chain.tip.height
    finally:
        bar.close()
        redirect.__exit__(None, None, None)
        chain_log.setLevel(chain_level)
        store.close()
    if should_stop():
        shutil.rmtree(tmp)
        log.info("reindex: stopped after %d of %d blocks; the old store is kept as it was", sum(counts.values()), len(blocks))
        return -1
    backup = chain_dir.with_name(chain_dir.name + ".old")
    chain_dir.rename(backup)
    tmp.rename(chain_dir)
    shutil.rmtree(backup)
    elapsed = time.perf_counter() - started
    connected = counts.get(Outcome.NEW_TIP.value, 0)
    others = sum(counts.values()) - connected
    log.info("reindex: rebuilt the chain from %d stored blocks in %s (%.1f blocks/s): tip height %d; %d connected to the "
             "best chain, %d invalid, %d on side branches or not connected", len(blocks), _duration(elapsed),
             len(blocks) / elapsed if elapsed > 0 else 0.0, height, connected, counts.get(Outcome.INVALID.value, 0),
             others - counts.get(Outcome.INVALID.value, 0))
    return height
