"""The node's log: ISO 8601 UTC timestamps, to stderr or to a file rotated by size.

A log line never raises into the node: a closed pipe or a full disk loses the line, not the node.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from pathlib import Path

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class IsoFormatter(logging.Formatter):
    """`2026-12-01T22:32:01.123Z INFO    pouw.node: message`."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z"
        )


FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(
    level: str = "INFO", log_file: str | Path | None = None, max_mb: float = 10.0, backups: int = 5
) -> logging.Handler:
    """Log at `level` to `log_file` (rotated at `max_mb`, keeping `backups` old files) or to stderr.

    Raises ValueError for a bad level and OSError for a log file that cannot be opened."""
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"--log-level {level!r}: expected one of {', '.join(LEVELS)}")
    if log_file:
        path = Path(log_file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max(1, int(max_mb * (1 << 20))), backupCount=backups, encoding="utf-8"
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(IsoFormatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, name))
    logging.raiseExceptions = (
        False  # a failed write (closed pipe, full disk) drops the line quietly
    )
    return handler


def format_duration(seconds: float) -> str:
    """A duration for people: "42 s", "3 min 07 s", "2 h 05 min"."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
