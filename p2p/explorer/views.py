"""HTML templates (Jinja2, autoescaped) and the filters that format chain values for people."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from p2p.wallet.amounts import format_amount

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def short(text: Any, head: int = 10) -> str:
    """A hash cut to its first `head` characters (the page keeps the whole one in a title)."""
    s = "" if text is None else str(text)
    return s if len(s) <= head + 2 else s[:head] + "…"


def short_address(text: Any) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= 14 else f"{s[:8]}…{s[-4:]}"


def amount(units: Any) -> str:
    if not isinstance(units, int) or isinstance(units, bool):
        return "–"
    return f"{format_amount(units)} POUW"


def utc(ms: Any) -> str:
    if not isinstance(ms, (int, float)):
        return "–"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(ms: Any, now_ms: float | None = None) -> str:
    if not isinstance(ms, (int, float)):
        return "–"
    s = max(0.0, ((now_ms if now_ms is not None else time.time() * 1000) - ms) / 1000)
    if s < 60:
        return f"{s:.0f} s ago"
    if s < 3600:
        return f"{s / 60:.0f} min ago"
    if s < 86400:
        return f"{s / 3600:.1f} h ago"
    return f"{s / 86400:.1f} d ago"


def millis(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def percent(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{100 * value:.1f} %"


def static_version() -> str:
    """A short hash of the static files, appended to their URLs so a browser never runs stale
    code."""
    h = hashlib.blake2b(digest_size=6)
    for f in sorted(STATIC.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        short=short,
        short_address=short_address,
        amount=amount,
        utc=utc,
        ago=ago,
        millis=millis,
        percent=percent,
    )
    env.globals["static_version"] = static_version()
    return env
