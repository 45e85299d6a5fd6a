"""The auditor thread: replays whole traces of recent blocks (consensus/audit.py) at its share of
one CPU and hands each fraud proof it finds to the node's transaction relay."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from chain.tx import Transaction
from consensus.audit import Auditor
from p2p.metrics import NodeMetrics

log = logging.getLogger("pouw.node")


class AuditLoop:
    def __init__(
        self,
        auditor: Auditor,
        metrics: NodeMetrics,
        submit: Callable[[Transaction], Coroutine[Any, Any, None]],
        stopping: Callable[[], bool],
    ) -> None:
        self.auditor, self.metrics, self._submit, self._stopping = (
            auditor,
            metrics,
            submit,
            stopping,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="auditor", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        """Replay recent blocks (consensus/audit.py); submit each fraud proof found."""
        auditor, reported = self.auditor, 0
        while not self._stopping():
            try:
                outcome = auditor.step(self._stopping)
            except Exception:  # noqa: BLE001 - a block pruned or reorganised away mid-audit
                log.exception("audit step failed; retrying")
                outcome = None
                time.sleep(0.5)
            self.metrics.audit_units.inc(auditor.stats.units - reported)
            reported = auditor.stats.units
            self.metrics.audit_lag.set(auditor.lag())
            if outcome is None:
                time.sleep(0.2)
                continue
            if outcome.proof is None:
                self.metrics.audit_blocks.inc()
                continue
            self.metrics.audit_proofs_found.inc()
            log.warning(
                "audit: unit %d of block %s at height %d does not reproduce; publishing a "
                "fraud proof",
                outcome.unit,
                outcome.block_hash.hex()[:16],
                outcome.height,
            )
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(self._submit(outcome.proof), self._loop)
            try:
                future.result(timeout=60)
            # Refused, e.g. because another node's proof came first.
            except Exception as exc:  # noqa: BLE001
                log.warning(
                    "audit: fraud proof against %s not admitted: %s",
                    outcome.block_hash.hex()[:16],
                    exc,
                )
