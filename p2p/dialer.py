"""Dialling out: every second, connect to the addresses the address book says are due, and run
each connection until it ends; a failed dial backs the address off (p2p/addrbook.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp

from p2p.addrbook import AddressBook

log = logging.getLogger("pouw.node")


class Dialer:
    def __init__(
        self,
        book: AddressBook,
        session: aiohttp.ClientSession,
        max_message_bytes: int,
        run_peer: Callable[[aiohttp.ClientWebSocketResponse, str], Awaitable[None]],
        *,
        peer_addrs: Callable[[], set[str]],
        outbound: Callable[[], int],
        max_outbound: int,
        banned: Callable[[str], object],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.book, self.session, self.max_message_bytes, self.run_peer = (
            book,
            session,
            max_message_bytes,
            run_peer,
        )
        self.peer_addrs, self.outbound, self.max_outbound = peer_addrs, outbound, max_outbound
        self.banned, self.spawn = banned, spawn
        self.dialling: set[str] = set()

    async def connect(self, addr: str) -> None:
        """Dial a peer's listen address and run the connection until it ends."""
        if addr in self.dialling:
            return
        self.dialling.add(addr)
        info = self.book.dialling(addr)
        try:
            ws = await self.session.ws_connect(
                f"http://{addr}/p2p",
                max_msg_size=self.max_message_bytes + 4096,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            wait = self.book.dial_failed(addr)
            # Peers the operator named are worth a line each try (the backoff bounds them); gossiped
            # ones are not.
            log.log(
                logging.WARNING if info.persistent else logging.DEBUG,
                "peer %s: cannot connect (%s); retrying in %.0f s",
                addr,
                _connect_reason(exc),
                wait,
            )
            self.dialling.discard(addr)
            return
        self.book.dial_worked(addr)
        try:
            await self.run_peer(ws, addr)
        finally:
            self.dialling.discard(addr)
            self.book.connection_ended(addr)

    async def run(self) -> None:
        while True:
            try:
                connected = self.peer_addrs() | self.dialling
                outbound = self.outbound() + len(self.dialling)
                for addr in self.book.due(connected, outbound, self.max_outbound, self.banned):
                    self.spawn(self.connect(addr))
            except Exception:  # noqa: BLE001
                log.exception("connection manager error")
            await asyncio.sleep(1.0)


def _connect_reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error is not None:
        err = exc.os_error
        # asyncio's strerror is "Connect call failed (host, port)"; the errno says why (a resolver
        # error's is negative)
        return (
            (os.strerror(err.errno) if err.errno and err.errno > 0 else "")
            or err.strerror
            or str(err)
            or type(err).__name__
        )
    return str(exc) or type(exc).__name__
