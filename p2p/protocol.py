"""The peer wire protocol: msgpack envelopes in binary WebSocket frames.

A frame is the msgpack array `[code, body]`: `code` a positive fixint naming the message type,
`body` a map with exactly that type's fields. Because a fixarray of two starts with 0x92 and a
positive fixint is one byte, the type is known from the frame's first two bytes, so each type's
size limit is checked before anything is decoded. Decoding is strict: unknown or missing fields,
wrong types, over-long lists and trailing bytes are errors naming the message and field
("inv.blocks[3]: expected 32 bytes, got 31").

Consensus objects (headers, blocks, transactions) travel as their canonical bytes and are decoded
by their own classes (chain.encoding), never here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import msgpack

PROTOCOL_VERSION = 3  # 3: state roots are sparse Merkle tree roots
AGENT = "pouw/0.1"
HASH_SIZE = 32
NONCE_SIZE = 8
MAX_INV = 1_000  # hashes per inv / getdata / notfound
MAX_LOCATOR = 64
MAX_HEADERS = 2_000  # headers per message
MAX_HEADER_BYTES = 4_096  # one encoded header
MAX_TX_BYTES = 64 * 1024  # one encoded transaction (specs are at most 4 KiB)
MAX_ADDRS = 1_000
SMALL = 1_024  # limit for small control messages


class ProtocolError(ValueError):
    """A frame that is not a valid protocol message; the message names what was wrong."""


class FrameTooLarge(ProtocolError):
    """A frame over its type's size limit: no honest peer of the same network sends one."""


# --- field checks: each returns the decoded value or raises ProtocolError naming `where` -----------


Check = Callable[[Any, str], Any]


def _uint(bits: int) -> Check:
    def check(v: Any, where: str) -> int:
        if type(v) is not int or not 0 <= v < (1 << bits):
            raise ProtocolError(f"{where}: expected u{bits}, got {_show(v)}")
        return v

    return check


def _bytes(size: int | None = None, max_len: int | None = None) -> Check:
    def check(v: Any, where: str) -> bytes:
        if type(v) is not bytes:
            raise ProtocolError(f"{where}: expected bytes, got {_show(v)}")
        if size is not None and len(v) != size:
            raise ProtocolError(f"{where}: expected {size} bytes, got {len(v)}")
        if max_len is not None and len(v) > max_len:
            raise ProtocolError(f"{where}: {len(v)} bytes, at most {max_len}")
        return v

    return check


def _text(max_len: int) -> Check:
    def check(v: Any, where: str) -> str:
        if type(v) is not str:
            raise ProtocolError(f"{where}: expected text, got {_show(v)}")
        if len(v) > max_len:
            raise ProtocolError(f"{where}: {len(v)} characters, at most {max_len}")
        return v

    return check


def _list(item: Check, max_len: int) -> Check:
    def check(v: Any, where: str) -> tuple:
        if type(v) is not list:
            raise ProtocolError(f"{where}: expected a list, got {_show(v)}")
        if len(v) > max_len:
            raise ProtocolError(f"{where}: {len(v)} items, at most {max_len}")
        return tuple(item(x, f"{where}[{i}]") for i, x in enumerate(v))

    return check


def _address(v: Any, where: str) -> str:
    text = _text(300)(v, where)
    if text and parse_hostport(text, where) is None:
        raise ProtocolError(f"{where}: {text!r} is not HOST:PORT")
    return text


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return f"bool {v}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (bytes, str, list, dict)):
        return f"{type(v).__name__} of length {len(v)}"
    return type(v).__name__


def parse_hostport(text: str, where: str = "address") -> tuple[str, int] | None:
    """`host:port` (IPv6 in brackets) -> (host, port), or None when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    elif not all(c.isalnum() or c in ".-" for c in host):
        return None
    return host, int(port)


HASH = _bytes(HASH_SIZE)
HASHES = _list(HASH, MAX_INV)


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    CODE: ClassVar[int]
    NAME: ClassVar[str]
    LIMIT: ClassVar[int]  # the most bytes a frame of this type may have; 0: the network's max_message_bytes
    SCHEMA: ClassVar[dict[str, Check]]


@dataclass(frozen=True)
class Hello(Message):
    version: int
    network: str
    chain_id: bytes
    genesis: bytes
    height: int
    chain_work: bytes  # big-endian, no leading zero bytes (int_to_wire)
    listen: str  # the sender's listening HOST:PORT, "" when it accepts no connections
    nonce: bytes  # random per process: detects connections to oneself and duplicate connections
    agent: str
    pruned: int = 0  # 0: a full node; else it keeps bodies of only this many blocks below its tip
    CODE, NAME, LIMIT = 1, "hello", SMALL
    SCHEMA = {
        "version": _uint(32),
        "network": _text(64),
        "chain_id": _bytes(HASH_SIZE),
        "genesis": HASH,
        "height": _uint(64),
        "chain_work": _bytes(max_len=64),
        "listen": _address,
        "nonce": _bytes(NONCE_SIZE),
        "agent": _text(64),
        "pruned": _uint(32),
    }


@dataclass(frozen=True)
class Ping(Message):
    nonce: int
    CODE, NAME, LIMIT = 2, "ping", 64
    SCHEMA = {"nonce": _uint(64)}


@dataclass(frozen=True)
class Pong(Message):
    nonce: int
    CODE, NAME, LIMIT = 3, "pong", 64
    SCHEMA = {"nonce": _uint(64)}


@dataclass(frozen=True)
class Inv(Message):
    """Announcement of blocks and transactions the sender has."""

    blocks: tuple[bytes, ...] = ()
    txs: tuple[bytes, ...] = ()
    CODE, NAME, LIMIT = 4, "inv", 2 * MAX_INV * (HASH_SIZE + 2) + 64
    SCHEMA = {"blocks": HASHES, "txs": HASHES}


@dataclass(frozen=True)
class GetData(Message):
    blocks: tuple[bytes, ...] = ()
    txs: tuple[bytes, ...] = ()
    CODE, NAME, LIMIT = 5, "getdata", Inv.LIMIT
    SCHEMA = {"blocks": HASHES, "txs": HASHES}


@dataclass(frozen=True)
class NotFound(Message):
    blocks: tuple[bytes, ...] = ()
    txs: tuple[bytes, ...] = ()
    CODE, NAME, LIMIT = 6, "notfound", Inv.LIMIT
    SCHEMA = {"blocks": HASHES, "txs": HASHES}


@dataclass(frozen=True)
class GetHeaders(Message):
    """Best-chain headers after the first locator hash the receiver knows, up to MAX_HEADERS."""

    locator: tuple[bytes, ...]
    CODE, NAME, LIMIT = 7, "getheaders", MAX_LOCATOR * (HASH_SIZE + 2) + 64
    SCHEMA = {"locator": _list(HASH, MAX_LOCATOR)}


@dataclass(frozen=True)
class Headers(Message):
    headers: tuple[bytes, ...]  # canonical BlockHeader encodings, in chain order
    CODE, NAME, LIMIT = 8, "headers", MAX_HEADERS * (MAX_HEADER_BYTES + 3) + 64
    SCHEMA = {"headers": _list(_bytes(max_len=MAX_HEADER_BYTES), MAX_HEADERS)}


@dataclass(frozen=True)
class BlockMsg(Message):
    block: bytes  # canonical Block encoding
    CODE, NAME, LIMIT = 9, "block", 0
    SCHEMA = {"block": _bytes()}


@dataclass(frozen=True)
class TxMsg(Message):
    tx: bytes  # canonical Transaction encoding
    CODE, NAME, LIMIT = 10, "tx", MAX_TX_BYTES + 64
    SCHEMA = {"tx": _bytes(max_len=MAX_TX_BYTES)}


@dataclass(frozen=True)
class GetAddr(Message):
    CODE, NAME, LIMIT = 11, "getaddr", 64
    SCHEMA: ClassVar[dict[str, Check]] = {}


@dataclass(frozen=True)
class Addr(Message):
    addrs: tuple[str, ...]
    CODE, NAME, LIMIT = 12, "addr", MAX_ADDRS * 304 + 64
    SCHEMA = {"addrs": _list(_address, MAX_ADDRS)}


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.CODE: cls for cls in (Hello, Ping, Pong, Inv, GetData, NotFound, GetHeaders, Headers, BlockMsg, TxMsg, GetAddr, Addr)
}


def int_to_wire(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def int_from_wire(data: bytes) -> int:
    return int.from_bytes(data, "big")


# --- encoding and decoding ---------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    body = {f.name: (list(v) if isinstance(v := getattr(msg, f.name), tuple) else v) for f in fields(msg)}
    return msgpack.packb([msg.CODE, body], use_bin_type=True)


def frame_limit(code: int, max_message_bytes: int) -> int:
    cls = MESSAGE_TYPES[code]
    return cls.LIMIT or max_message_bytes


def peek_type(frame: bytes) -> type[Message]:
    """The frame's message type from its first two bytes, without decoding anything."""
    if len(frame) < 3 or frame[0] != 0x92:
        raise ProtocolError(f"envelope: expected a msgpack array [code, body], got first byte {frame[:1].hex() or 'none'}")
    cls = MESSAGE_TYPES.get(frame[1])
    if cls is None:
        raise ProtocolError(f"envelope: unknown message code {frame[1]}")
    return cls


def decode(frame: bytes, max_message_bytes: int) -> Message:
    """Check the frame's size against its type's limit, then decode it strictly."""
    cls = peek_type(frame)
    limit = cls.LIMIT or max_message_bytes
    if len(frame) > limit:
        raise FrameTooLarge(f"{cls.NAME}: {len(frame)} bytes, limit {limit}")
    try:
        envelope = msgpack.unpackb(
            frame,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=limit,
            max_str_len=4_096,
            max_array_len=max(MAX_HEADERS, MAX_INV, MAX_ADDRS),
            max_map_len=16,
            max_ext_len=0,
        )
    except msgpack.ExtraData:
        raise ProtocolError(f"{cls.NAME}: trailing bytes after the message") from None
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise ProtocolError(f"{cls.NAME}: not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(envelope, list) or len(envelope) != 2:
        raise ProtocolError("envelope: expected [code, body]")
    body = envelope[1]
    if not isinstance(body, dict):
        raise ProtocolError(f"{cls.NAME}: body must be a map, got {_show(body)}")
    expected = set(cls.SCHEMA)
    if set(body) != expected:
        missing, extra = sorted(expected - set(body)), sorted(map(str, set(body) - expected))
        raise ProtocolError(f"{cls.NAME}: fields {'missing ' + ', '.join(missing) if missing else ''}{'; ' if missing and extra else ''}{'unknown ' + ', '.join(extra) if extra else ''}")
    values = {name: check(body[name], f"{cls.NAME}.{name}") for name, check in cls.SCHEMA.items()}
    return cls(**values)


__all__ = [
    "PROTOCOL_VERSION",
    "ProtocolError",
    "FrameTooLarge",
    "Message",
    "Hello",
    "Ping",
    "Pong",
    "Inv",
    "GetData",
    "NotFound",
    "GetHeaders",
    "Headers",
    "BlockMsg",
    "TxMsg",
    "GetAddr",
    "Addr",
    "encode",
    "decode",
    "peek_type",
    "int_to_wire",
    "int_from_wire",
    "parse_hostport",
]
