"""The chain worker: the one thread that changes the chain state (block and header processing,
mempool additions), so the event loop never holds the chain lock and stays responsive."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class ChainWorker:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the worker thread; calls run one at a time, in order."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        """Finish the call in progress, drop the queued ones, end the thread."""
        self._executor.shutdown(wait=True, cancel_futures=True)
