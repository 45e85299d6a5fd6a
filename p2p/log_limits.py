"""Log rate limiting: a repeated message (same logger, same format string) is written at most a
few times a minute; the rest are counted and summed up in one line when the window ends.

A node under attack or on a failing disk must not write a traceback per event (a full disk or
file-descriptor table otherwise turns into hundreds of megabytes of identical log lines).
"""

from __future__ import annotations

import logging
import time

WINDOW_S = 60.0
PER_WINDOW = 5


class RateLimit(logging.Filter):
    def __init__(self, per_window: int = PER_WINDOW, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.per_window = per_window
        self.window_s = window_s
        self._seen: dict[tuple[str, str], list[float | int]] = {}  # key -> [window start, count]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] > self.window_s:
            suppressed = int(entry[1]) - self.per_window if entry is not None else 0
            self._seen[key] = [now, 1]
            if len(self._seen) > 10_000:  # bounded: forget the oldest windows
                for k in list(self._seen)[:5_000]:
                    del self._seen[k]
            if suppressed > 0:
                record.msg = (
                    f"{record.msg} [{suppressed} more like this in the last "
                    f"{self.window_s:.0f} s not shown]"
                )
            return True
        entry[1] = int(entry[1]) + 1
        return entry[1] <= self.per_window


def install(logger: logging.Logger | None = None) -> RateLimit:
    """Put one RateLimit on every handler of `logger` (default: the root logger); idempotent."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        for f in handler.filters:
            if isinstance(f, RateLimit):
                return f
    limit = RateLimit()
    for handler in logger.handlers:
        handler.addFilter(limit)
    return limit
