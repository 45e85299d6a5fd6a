"""The miner thread: mines on the best fully validated tip while mining is on, hands each block
it finds to the chain worker, and backs off (1 s, doubling to 30 s) while attempts fail.

Headers claim work, bodies prove it: mining pauses only while bodies of a heavier branch really
arrive (Sync.catching_up), never for headers alone, and while the store cannot write.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from chain.block import Block
from chain.storage import StoreError
from consensus.chainstate import ChainState, Outcome
from consensus.miner import Miner
from p2p.metrics import NodeMetrics
from p2p.sync import Sync

log = logging.getLogger("pouw.node")

MINING_BACKOFF_S = (1.0, 30.0)  # a failing mining attempt waits 1 s, doubling up to 30 s


class MiningLoop:
    def __init__(
        self,
        miner: Miner,
        chain: ChainState,
        sync: Sync,
        metrics: NodeMetrics,
        enabled: bool,
        stopping: Callable[[], bool],
        storage_failing: Callable[[], bool],
        storage_failed: Callable[[BaseException], None],
    ) -> None:
        self.miner, self.chain, self.sync, self.metrics = miner, chain, sync, metrics
        self.enabled = enabled
        self.error: str | None = None  # why the last mining attempt failed; None once one works
        self.error_since = 0.0
        self._stopping, self._storage_failing, self._storage_failed = (
            stopping,
            storage_failing,
            storage_failed,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="miner", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def state(self) -> str:
        """off, mining, waiting-for-sync (heavier blocks are arriving) or failing (see error)."""
        if not self.enabled:
            return "off"
        if self.error is not None:
            return "failing"
        return "waiting-for-sync" if self.sync.catching_up() else "mining"

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            self._ok()  # a failure is reported while mining is on; switching off clears it
        log.info("mining %s", "on" if enabled else "off")

    def _should_stop(self) -> bool:
        return self._stopping() or not self.enabled

    def _failed(self, exc: Exception, backoff: float) -> None:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(
            ": "
        )
        if self.error is None:
            self.error_since = time.time()
        self.error = reason
        self.metrics.mining_errors.inc()
        self.metrics.mining_failing.set(1)
        log.warning("mining failed: %s; retrying in %.0f s", reason, backoff)
        log.debug("mining failure", exc_info=exc)

    def _ok(self) -> None:
        if self.error is not None:
            log.info("mining works again (it failed for %.0f s)", time.time() - self.error_since)
            self.error = None
            self.metrics.mining_failing.set(0)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stopping():
            if not self.enabled or self._storage_failing() or self.sync.catching_up():
                time.sleep(0.1)
                continue
            accepted = True
            try:
                block = self.miner.mine_block(self._should_stop)
                if block is not None and not self._stopping():
                    assert self._loop is not None
                    accepted = asyncio.run_coroutine_threadsafe(
                        self._on_mined(block), self._loop
                    ).result(timeout=60)
            # Any failure: a template built during a reorg, a bad state, an own block refused.
            except Exception as exc:  # noqa: BLE001
                backoff = min(MINING_BACKOFF_S[1], max(MINING_BACKOFF_S[0], backoff * 2))
                self._failed(exc, backoff)
                end = time.monotonic() + backoff
                while time.monotonic() < end and not self._should_stop():
                    time.sleep(0.1)
                continue
            backoff = 0.0
            self._ok()
            if not accepted:
                # The same template would give the same block: wait for the tip or the clock.
                time.sleep(1.0)

    async def _on_mined(self, block: Block) -> bool:
        self.sync.note_received(block.hash)
        started = time.perf_counter()
        try:
            result, cpu = await self.sync.process_block(block, None)
        except StoreError as exc:
            self._storage_failed(exc)
            return False
        await self.sync.after_block(result, time.perf_counter() - started, cpu)
        if result.outcome == Outcome.NEW_TIP:
            self.metrics.blocks_mined.inc()
            log.info(
                "mined block %s at height %d (%d units)",
                block.hash.hex()[:16],
                block.header.height,
                block.header.work[0].unit_count,
            )
            return True
        if result.outcome in (Outcome.INVALID, Outcome.BAD_MESSAGE):
            raise RuntimeError(
                f"own block at height {block.header.height} refused: "
                f"{result.outcome.value} {result.detail}"
            )
        log.info(
            "mined block %s at height %d was not accepted: %s %s",
            block.hash.hex()[:16],
            block.header.height,
            result.outcome.value,
            result.detail,
        )
        return False
