"""One peer connection: framing, limits, misbehaviour score, and the ban list.

A Peer wraps an aiohttp WebSocket (either side). It reads binary frames, checks each frame's size
against its type's limit before decoding, rate-limits messages with a token bucket, queues
outgoing frames with a bound on pending bytes (a peer that does not read is dropped), and hands
decoded messages to a handler. Anything wrong with what the peer sends closes the connection with
a logged reason; nothing it sends can raise out of `run`. A frame over its size limit (its
type's, or the network's max_message_bytes, which the WebSocket layer enforces from the frame
header) gets the peer banned: peers of one network share the limits, so only abuse exceeds them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp import web

from p2p.protocol import FrameTooLarge, Hello, Message, ProtocolError, decode, encode, int_from_wire

log = logging.getLogger("pouw.peer")

HANDSHAKE_TIMEOUT_S = (
    10.0  # from the TCP connection to the peer's hello (the HTTP upgrade has the same deadline)
)
IDLE_TIMEOUT_S = 120.0  # no frame at all for this long (pings come every 30 s): drop
SEND_LOW_WATER_BYTES = 4 << 20  # replies (blocks) wait until the peer's pending data is below this
DRAIN_TIMEOUT_S = 30.0  # a peer that reads nothing of its pending data for this long is dropped


@dataclass(frozen=True)
class PeerLimits:
    messages_per_second: float = 500.0
    burst: int = 2_000
    max_send_queue_bytes: int = (
        40 << 20
    )  # pending outgoing data per peer (above two of the largest messages)
    max_inbound: int = 64  # inbound peers at once, handshakes included
    max_inbound_per_host: int = (
        16  # of which from one IP address (a 16-node devnet shares 127.0.0.1)
    )
    # Serving budget: seconds of the node's time (chain worker, encoding) one peer's requests for
    # headers and blocks may take per second, with a burst; past it the peer's next request
    # waits (its reads pause, TCP pushes back), so a flood costs a bounded share and no ban.
    serve_share: float = 0.1
    serve_burst_s: float = 3.0
    max_blocks_in_flight: int = 16  # blocks we ask one peer for at once
    ban_score: int = 100
    ban_seconds: float = 600.0
    # Verification budget: seconds of block validation a peer may cost us on blocks that did not
    # become our best chain (invalid, side branches); it refills slowly.
    verify_budget_s: float = 20.0
    verify_refill_per_s: float = 0.2


class Handler(Protocol):
    async def on_hello(
        self, peer: Peer, hello: Hello
    ) -> str | None: ...  # a reason to refuse, or None

    async def on_ready(self, peer: Peer) -> None: ...  # after both hellos

    async def on_message(self, peer: Peer, msg: Message) -> None: ...

    async def on_close(self, peer: Peer) -> None: ...


class Misbehaving(Exception):
    """Raised by handlers for input that breaks the protocol; the peer is scored and maybe
    dropped."""

    def __init__(self, points: int, reason: str) -> None:
        super().__init__(reason)
        self.points = points
        self.reason = reason


@dataclass
class TokenBucket:
    rate: float
    capacity: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, amount: float = 1.0) -> bool:
        self.refill()
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def charge(self, amount: float) -> None:
        """Take `amount` even if it goes negative (a cost already spent)."""
        self.refill()
        self.tokens -= amount


class Peer:
    _ids = iter(range(1, 1 << 62))

    def __init__(
        self,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        remote: str,
        inbound: bool,
        limits: PeerLimits,
        max_message_bytes: int,
    ) -> None:
        self.id = next(self._ids)
        self.ws = ws
        self.remote = remote  # "host:port" of the socket
        self.dial_addr = ""  # the listen address we dialled (outbound only)
        self.inbound = inbound
        self.limits = limits
        self.max_message_bytes = max_message_bytes
        self.hello: Hello | None = None
        self.best_height = 0
        self.best_work = 0
        self.score = 0
        self.connected_at = time.time()
        self.bytes_in = 0
        self.bytes_out = 0
        self.msgs_in = 0
        self.ping_sent: tuple[int, float] | None = None
        self.ping_ms: float | None = None
        self.rate = TokenBucket(limits.messages_per_second, limits.burst)
        self.verify_budget = TokenBucket(limits.verify_refill_per_s, limits.verify_budget_s)
        self.serve_budget = TokenBucket(limits.serve_share, limits.serve_burst_s)
        self.last_header: bytes | None = (
            None  # the last header it gave us that we accepted (its locator start)
        )
        self.known: OrderedDict[bytes, None] = (
            OrderedDict()
        )  # block/tx hashes the peer has (bounded)
        self.close_reason = ""
        self.ban_reason = ""
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued_bytes = 0
        self._writer: asyncio.Task | None = None
        self._closed = asyncio.Event()
        self.transport: asyncio.Transport | None = (
            None  # the TCP connection (inbound), aborted after a stuck close
        )

    # --- identity ------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.remote.rpartition(":")[0].strip("[]")

    @property
    def listen(self) -> str:
        return self.hello.listen if self.hello else ""

    @property
    def ban_key(self) -> str | None:
        """What a ban applies to: the IP address; on loopback (devnets, tests, where every peer
        shares one address) the peer's listen address and node nonce instead."""
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback:
            return self.host
        if self.hello is None:
            return None
        return f"{self.hello.listen or self.remote}/{self.hello.nonce.hex()}"

    def __str__(self) -> str:
        return f"peer {self.id} {self.remote}{' (in)' if self.inbound else ''}"

    def mark_known(self, h: bytes) -> None:
        self.known[h] = None
        if len(self.known) > 20_000:
            self.known.popitem(last=False)

    def set_hello(self, hello: Hello) -> None:
        self.hello = hello
        self.best_height = hello.height
        self.best_work = int_from_wire(hello.chain_work)

    # --- sending -------------------------------------------------------------------------------

    def send(self, msg: Message) -> bool:
        """Queue a message; False (and the peer is closed) if its pending data is over the limit."""
        if self._closed.is_set():
            return False
        return self.send_frame(encode(msg))

    def send_frame(self, frame: bytes) -> bool:
        """Queue an already encoded message (see send)."""
        if self._closed.is_set():
            return False
        if self._queued_bytes + len(frame) > self.limits.max_send_queue_bytes:
            self.close(
                f"pending outgoing data over {self.limits.max_send_queue_bytes} bytes "
                "(peer not reading)"
            )
            return False
        self._queued_bytes += len(frame)
        self._queue.put_nowait(frame)
        return True

    async def drain(
        self, below: int = SEND_LOW_WATER_BYTES, timeout: float = DRAIN_TIMEOUT_S
    ) -> bool:
        """Wait until the pending outgoing data is under `below`; False (the peer is closed) if
        it does not get there within `timeout` or the peer went."""
        deadline = time.monotonic() + timeout
        while self._queued_bytes > below and not self.closed:
            if time.monotonic() > deadline:
                self.close(f"pending outgoing data not read for {timeout:.0f} s (peer not reading)")
                return False
            await asyncio.sleep(0.05)
        return not self.closed

    async def _write_loop(self) -> None:
        try:
            while True:
                frame = await self._queue.get()
                if frame is None:
                    return
                try:
                    await asyncio.wait_for(self.ws.send_bytes(frame), DRAIN_TIMEOUT_S)
                except TimeoutError:
                    self.close(f"a frame not taken for {DRAIN_TIMEOUT_S:.0f} s (peer not reading)")
                    return
                self._queued_bytes -= len(frame)
                self.bytes_out += len(frame)
        except (ConnectionError, RuntimeError, asyncio.CancelledError, aiohttp.ClientError) as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self.close(f"send failed: {exc}")

    # --- closing -------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        while not self._queue.empty():  # free the pending frames now, not when the writer ends
            self._queue.get_nowait()
        self._queued_bytes = 0
        self._queue.put_nowait(None)
        log.info("%s disconnected: %s", self, reason)
        asyncio.get_running_loop().create_task(self._close_ws(reason))

    async def _close_ws(self, reason: str) -> None:
        try:
            await asyncio.wait_for(
                self.ws.close(
                    code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=reason[:120].encode()
                ),
                5,
            )
        except Exception:  # noqa: BLE001 - the socket may already be gone
            pass
        if self.transport is not None:
            self.transport.abort()  # a peer that reads nothing does not take the close frame either

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def misbehave(self, points: int, reason: str) -> None:
        """Add to the misbehaviour score; at the ban score the peer is closed and marked for a
        ban."""
        self.score += points
        log.warning("%s misbehaving (+%d, score %d): %s", self, points, self.score, reason)
        if self.score >= self.limits.ban_score:
            self.ban_reason = reason
            self.close(f"banned: {reason}")

    # --- receiving -----------------------------------------------------------------------------

    async def _receive(self) -> bytes | None:
        """The next binary frame, or None when the connection ended (the reason is recorded)."""
        timeout = HANDSHAKE_TIMEOUT_S if self.hello is None else IDLE_TIMEOUT_S
        try:
            msg = await self.ws.receive(timeout=timeout)
        except TimeoutError:
            self.close(
                "handshake timeout"
                if self.hello is None
                else f"no message for {IDLE_TIMEOUT_S:.0f} s"
            )
            return None
        if msg.type == aiohttp.WSMsgType.BINARY:
            self.bytes_in += len(msg.data)
            return msg.data
        if msg.type == aiohttp.WSMsgType.TEXT:
            self.misbehave(50, "text frame (the protocol uses binary frames)")
            self.close("malformed: text frame")
            return None
        if msg.type == aiohttp.WSMsgType.ERROR:
            exc = msg.data if isinstance(msg.data, BaseException) else self.ws.exception()
            if (
                isinstance(exc, aiohttp.WebSocketError)
                and exc.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            ):
                # The WebSocket layer refused the frame from its header, before buffering it: it is
                # over max_message_bytes (plus envelope slack), which no honest peer sends.
                self.misbehave(self.limits.ban_score, f"frame over the message size limit ({exc})")
            self.close(f"malformed frame: {exc}")
            return None
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
        ):
            extra = f" ({msg.extra})" if getattr(msg, "extra", None) else ""
            self.close(f"closed by the peer{extra}")
            return None
        self.close(f"unexpected frame type {msg.type}")
        return None

    async def run(self, handler: Handler, our_hello: Hello) -> None:
        """Handshake, then read and dispatch until the connection ends. Never raises."""
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        try:
            if not self.inbound:
                self.send(our_hello)
            await self._read_loop(handler, our_hello)
        except Exception as exc:  # noqa: BLE001 - the node must survive anything a peer triggers
            log.exception("%s: internal error", self)
            self.close(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if not self.closed:
                self.close("connection ended")
            try:
                await handler.on_close(self)
            except Exception:  # noqa: BLE001
                log.exception("%s: error in close handler", self)
            if self._writer is not None:
                try:
                    await asyncio.wait_for(self._writer, 5)
                except (TimeoutError, asyncio.CancelledError, Exception):  # noqa: BLE001
                    self._writer.cancel()

    async def _read_loop(self, handler: Handler, our_hello: Hello) -> None:
        while not self.closed:
            frame = await self._receive()
            if frame is None:
                return
            self.msgs_in += 1
            if not self.rate.take():
                self.misbehave(
                    self.limits.ban_score,
                    f"over {self.limits.messages_per_second:.0f} messages per second",
                )
                return
            try:
                msg = decode(frame, self.max_message_bytes)
            except FrameTooLarge as exc:
                self.misbehave(self.limits.ban_score, f"oversized message: {exc}")
                return
            except ProtocolError as exc:
                self.misbehave(50, f"malformed message: {exc}")
                self.close(f"malformed message: {exc}")
                return
            if self.hello is None:
                if not isinstance(msg, Hello):
                    self.misbehave(50, f"{msg.NAME} before hello")
                    self.close(f"protocol: {msg.NAME} before hello")
                    return
                self.set_hello(msg)
                refusal = await handler.on_hello(self, msg)
                if refusal:
                    self.close(refusal)
                    return
                if self.inbound:
                    self.send(our_hello)
                log.info(
                    "%s connected: %s, height %d, listen %s",
                    self,
                    msg.agent,
                    msg.height,
                    msg.listen or "-",
                )
                await handler.on_ready(self)
                continue
            if isinstance(msg, Hello):
                self.misbehave(20, "second hello")
                continue
            try:
                await handler.on_message(self, msg)
            except Misbehaving as exc:
                self.misbehave(exc.points, exc.reason)


@dataclass
class BanList:
    """Bans by key (see Peer.ban_key) until a time, with the reason."""

    bans: dict[str, tuple[float, str]] = field(default_factory=dict)

    def ban(self, key: str, seconds: float, reason: str) -> None:
        self.bans[key] = (time.time() + seconds, reason)
        log.warning("banned %s for %.0f s: %s", key, seconds, reason)

    def banned(self, key: str | None) -> str | None:
        if key is None:
            return None
        entry = self.bans.get(key)
        if entry is None:
            return None
        if entry[0] < time.time():
            del self.bans[key]
            return None
        return entry[1]

    def listing(self) -> list[dict]:
        now = time.time()
        return [
            {"key": k, "until": int(u), "reason": r} for k, (u, r) in self.bans.items() if u > now
        ]
