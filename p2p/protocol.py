"""The peer wire protocol: msgpack envelopes in binary WebSocket frames.

A frame is the msgpack array `[code, body]`: `code` a positive fixint naming the message type,
`body` a map with exactly that type's fields. Because a fixarray of two starts with 0x92 and a
positive fixint is one byte, the type is known from the frame's first two bytes, so each type's
size limit is checked before anything is decoded. Decoding is strict: unknown or missing fields,
wrong types, over-long lists and trailing bytes are errors naming the message and field
("inv.blocks[3]: expected 32 bytes, got 31 bytes").

Message fields are declared once, as chain.encoding records (`Annotated[type, codec]`); the body
is a map of those fields, so frames are the same bytes as before the messages were records.
Consensus objects (headers, blocks, transactions) travel as their canonical bytes and are decoded
by their own classes (chain.encoding), never here.
"""

import ipaddress
from dataclasses import dataclass, fields
from typing import Annotated, Any, ClassVar

import msgpack

from chain.encoding import U32, U64, Bytes, Codec, DecodeError, ListOf, Record, Text, VarBytes

PROTOCOL_VERSION = 3  # 3: sparse Merkle state roots, share claims in bodies, `pruned` in hello
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


# --- field codecs: chain.encoding's, plus peer addresses ------------------------------------------


class HostPort(Text):
    """A peer's listening HOST:PORT (IPv6 in brackets), or "" for none."""

    def check(self, value: Any) -> str | None:
        problem = super().check(value)
        if problem is None and value and parse_hostport(value) is None:
            return f"{value!r} is not HOST:PORT"
        return problem


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


HASH = Bytes(HASH_SIZE)
HASHES = ListOf(HASH, MAX_INV)
ANY_LENGTH = 1 << 62  # a field bounded only by its frame's size limit


# --- messages --------------------------------------------------------------------------------
# Each message with fields is a chain.encoding Record: its fields and their codecs are declared
# once, as `Annotated[type, codec]`; `encode` writes them as the frame's body map, in order, and
# `decode` checks each with its codec. (No `from __future__ import annotations` in this module:
# a record reads its codecs from its annotations when the class is made.)


@dataclass(frozen=True)
class Message:
    CODE: ClassVar[int]
    NAME: ClassVar[str]
    LIMIT: ClassVar[
        int
    ]  # the most bytes a frame of this type may have; 0: the network's max_message_bytes


@dataclass(frozen=True)
class Hello(Message, Record):
    version: Annotated[int, U32]
    network: Annotated[str, Text(64)]
    chain_id: Annotated[bytes, Bytes(HASH_SIZE)]
    genesis: Annotated[bytes, HASH]
    height: Annotated[int, U64]
    chain_work: Annotated[bytes, VarBytes(64)]  # big-endian, no leading zero bytes (int_to_wire)
    # the sender's listening HOST:PORT, "" when it accepts no connections
    listen: Annotated[str, HostPort(300)]
    # random per process: detects connections to oneself and duplicate connections
    nonce: Annotated[bytes, Bytes(NONCE_SIZE)]
    agent: Annotated[str, Text(64)]
    # 0: a full node; else it keeps bodies of only this many blocks below its tip (since version 3)
    pruned: Annotated[int, U32] = 0
    CODE, NAME, LIMIT = 1, "hello", SMALL


@dataclass(frozen=True)
class Ping(Message, Record):
    nonce: Annotated[int, U64]
    CODE, NAME, LIMIT = 2, "ping", 64


@dataclass(frozen=True)
class Pong(Message, Record):
    nonce: Annotated[int, U64]
    CODE, NAME, LIMIT = 3, "pong", 64


@dataclass(frozen=True)
class Inv(Message, Record):
    """Announcement of blocks and transactions the sender has."""

    blocks: Annotated[tuple[bytes, ...], HASHES] = ()
    txs: Annotated[tuple[bytes, ...], HASHES] = ()
    CODE, NAME, LIMIT = 4, "inv", 2 * MAX_INV * (HASH_SIZE + 2) + 64


@dataclass(frozen=True)
class GetData(Message, Record):
    blocks: Annotated[tuple[bytes, ...], HASHES] = ()
    txs: Annotated[tuple[bytes, ...], HASHES] = ()
    CODE, NAME, LIMIT = 5, "getdata", Inv.LIMIT


@dataclass(frozen=True)
class NotFound(Message, Record):
    blocks: Annotated[tuple[bytes, ...], HASHES] = ()
    txs: Annotated[tuple[bytes, ...], HASHES] = ()
    CODE, NAME, LIMIT = 6, "notfound", Inv.LIMIT


@dataclass(frozen=True)
class GetHeaders(Message, Record):
    """Best-chain headers after the first locator hash the receiver knows, up to MAX_HEADERS."""

    locator: Annotated[tuple[bytes, ...], ListOf(HASH, MAX_LOCATOR)]
    CODE, NAME, LIMIT = 7, "getheaders", MAX_LOCATOR * (HASH_SIZE + 2) + 64


@dataclass(frozen=True)
class Headers(Message, Record):
    # canonical BlockHeader encodings, in chain order
    headers: Annotated[tuple[bytes, ...], ListOf(VarBytes(MAX_HEADER_BYTES), MAX_HEADERS)]
    CODE, NAME, LIMIT = 8, "headers", MAX_HEADERS * (MAX_HEADER_BYTES + 3) + 64


@dataclass(frozen=True)
class BlockMsg(Message, Record):
    block: Annotated[bytes, VarBytes(ANY_LENGTH)]  # canonical Block encoding
    CODE, NAME, LIMIT = 9, "block", 0


@dataclass(frozen=True)
class TxMsg(Message, Record):
    tx: Annotated[bytes, VarBytes(MAX_TX_BYTES)]  # canonical Transaction encoding
    CODE, NAME, LIMIT = 10, "tx", MAX_TX_BYTES + 64


@dataclass(frozen=True)
class GetAddr(Message):
    """No fields (a record needs one, so this is a plain message)."""

    CODE, NAME, LIMIT = 11, "getaddr", 64


@dataclass(frozen=True)
class Addr(Message, Record):
    addrs: Annotated[tuple[str, ...], ListOf(HostPort(300), MAX_ADDRS)]
    CODE, NAME, LIMIT = 12, "addr", MAX_ADDRS * 304 + 64


@dataclass(frozen=True)
class ShareMsg(Message, Record):
    """A share claim on the sender's tip (p2p/shares.py); bounded by `max_share_bytes` there."""

    claim: Annotated[bytes, VarBytes(ANY_LENGTH)]  # canonical ShareClaim encoding
    CODE, NAME, LIMIT = 13, "share", 0


def fields_of(cls: type[Message]) -> tuple[tuple[str, Codec], ...]:
    """A message type's fields and their codecs, in wire order."""
    return cls.__schema__ if issubclass(cls, Record) else ()


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.CODE: cls
    for cls in (
        Hello,
        Ping,
        Pong,
        Inv,
        GetData,
        NotFound,
        GetHeaders,
        Headers,
        BlockMsg,
        TxMsg,
        GetAddr,
        Addr,
        ShareMsg,
    )
}


def int_to_wire(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def int_from_wire(data: bytes) -> int:
    return int.from_bytes(data, "big")


# --- encoding and decoding ---------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    body = {
        f.name: (list(v) if isinstance(v := getattr(msg, f.name), tuple) else v)
        for f in fields(msg)
    }
    return msgpack.packb([msg.CODE, body], use_bin_type=True)


def peek_type(frame: bytes) -> type[Message]:
    """The frame's message type from its first two bytes, without decoding anything."""
    if len(frame) < 3 or frame[0] != 0x92:
        raise ProtocolError(
            "envelope: expected a msgpack array [code, body], got first byte "
            f"{frame[:1].hex() or 'none'}"
        )
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
        raise ProtocolError(
            f"{cls.NAME}: not valid msgpack ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(envelope, list) or len(envelope) != 2:
        raise ProtocolError("envelope: expected [code, body]")
    body = envelope[1]
    if not isinstance(body, dict):
        raise ProtocolError(f"{cls.NAME}: body must be a map, got {_show(body)}")
    schema = fields_of(cls)
    expected = {name for name, _ in schema}
    if set(body) != expected:
        missing, extra = sorted(expected - set(body)), sorted(map(str, set(body) - expected))
        parts = (["missing " + ", ".join(missing)] if missing else []) + (
            ["unknown " + ", ".join(extra)] if extra else []
        )
        raise ProtocolError(f"{cls.NAME}: fields {'; '.join(parts)}")
    try:
        values = {
            name: codec.from_plain(body[name], f"{cls.NAME}.{name}") for name, codec in schema
        }
    except DecodeError as exc:
        raise ProtocolError(str(exc)) from None
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
    "ShareMsg",
    "encode",
    "decode",
    "peek_type",
    "int_to_wire",
    "int_from_wire",
    "parse_hostport",
]
