"""The explorer's only source of chain data: the node's own HTTP API, read over loopback.

Pages read JSON exactly as any other client would, so the explorer shows what the API serves
and nothing else; it reads the fields it knows with defaults and ignores the rest, so a field the
API gains later does no harm. An API error becomes a PageError with the API's own message.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import aiohttp


class PageError(Exception):
    """What a visitor sees instead of a page: an HTTP status and a sentence saying what was
    wrong."""

    def __init__(self, status: int, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title or {400: "Bad request", 404: "Not found", 503: "Busy"}.get(
            status, "Node unavailable"
        )


def loopback_url(api_hostport: str) -> str:
    """The URL at which this process reaches its own API (a wildcard bind address is dialled on
    loopback)."""
    host, _, port = api_hostport.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class ApiSource:
    """GET JSON from the node API at `base_url`; one session, opened on first use."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, path: str, **query: Any) -> dict:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        url = self.base_url + path
        params = {k: str(v) for k, v in query.items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        try:
            async with self._session.get(url, headers={"Accept": "application/json"}) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if resp.status == 200 and isinstance(body, dict):
                    return body
                message = body.get("error") if isinstance(body, dict) else None
                status = resp.status if resp.status in (400, 404, 409, 503) else 502
                raise PageError(
                    status, message or f"the node's API answered HTTP {resp.status} for {path}"
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PageError(502, f"the node's API did not answer ({type(exc).__name__})") from None

    async def get_or_none(self, path: str, **query: Any) -> dict | None:
        """The JSON, or None where the API says 404 (or 400 for an id of the wrong shape)."""
        try:
            return await self.get(path, **query)
        except PageError as exc:
            if exc.status in (400, 404):
                return None
            raise
