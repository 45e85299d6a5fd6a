"""The event queue: a heap ordered by time, then by insertion, so equal times replay in one
order."""

from __future__ import annotations

import heapq
import itertools
from typing import Any

import numpy as np


class EventQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()

    def push(self, time: float, kind: str, payload: Any = None) -> None:
        heapq.heappush(self._heap, (time, next(self._seq), kind, payload))

    def peek_time(self) -> float:
        return self._heap[0][0] if self._heap else float("inf")

    def pop(self) -> tuple[float, str, Any]:
        time, _, kind, payload = heapq.heappop(self._heap)
        return time, kind, payload

    def __len__(self) -> int:
        return len(self._heap)


class Draws:
    """Standard exponential and uniform variates from one seeded Generator, drawn in batches
    (fast, and the same sequence every run)."""

    def __init__(self, rng: np.random.Generator, batch: int = 8192) -> None:
        self.rng = rng
        self.batch = batch
        self._exp: list[float] = []
        self._uni: list[float] = []

    def exponential(self) -> float:
        if not self._exp:
            self._exp = self.rng.standard_exponential(self.batch).tolist()[::-1]
        return self._exp.pop()

    def uniform(self) -> float:
        if not self._uni:
            self._uni = self.rng.random(self.batch).tolist()[::-1]
        return self._uni.pop()
