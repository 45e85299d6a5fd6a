"""The wire protocol on its own: round trips, size limits before decoding, strict errors that name the field."""

import os

import msgpack
import pytest

from p2p.protocol import (
    MESSAGE_TYPES,
    Addr,
    BlockMsg,
    GetHeaders,
    Hello,
    Inv,
    Ping,
    ProtocolError,
    decode,
    encode,
    int_from_wire,
    int_to_wire,
)

H = bytes(range(32))


def test_every_message_round_trips():
    samples = [
        Hello(1, "devnet", H, H, 7, int_to_wire(12345), "127.0.0.1:8333", b"12345678", "pouw/0.1"),
        Ping(5),
        Inv(blocks=(H,), txs=(H, H)),
        GetHeaders((H,)),
        BlockMsg(b"x" * 1000),
        Addr(("127.0.0.1:1", "[::1]:2")),
    ]
    for msg in samples:
        assert decode(encode(msg), 1 << 20) == msg
    assert int_from_wire(int_to_wire(2**200 + 5)) == 2**200 + 5
    assert {cls.CODE for cls in MESSAGE_TYPES.values()} == set(MESSAGE_TYPES)


@pytest.mark.parametrize(
    "frame, error",
    [
        (b"\x01\x02\x03\x04", "envelope"),
        (b"\x92\x63\x80", "unknown message code 99"),
        (msgpack.packb([2, {"nonce": -1}]), "ping.nonce: expected u64"),
        (msgpack.packb([2, {"nonce": 1, "x": 2}]), "ping: fields unknown x"),
        (msgpack.packb([4, {"blocks": [b"a"], "txs": []}]), "inv.blocks[0]: expected 32 bytes, got 1"),
        (encode(Ping(1)) + b"\x00", "ping: trailing bytes"),
        (msgpack.packb([12, {"addrs": ["not an address"]}]), "addr.addrs[0]"),
    ],
)
def test_malformed_frames_name_what_is_wrong(frame, error):
    with pytest.raises(ProtocolError, match=error.replace("[", r"\[").replace("]", r"\]")):
        decode(frame, 1 << 20)


def test_size_is_checked_before_decoding():
    # A ping-typed frame far over the ping limit is refused on its length alone (its body is junk).
    with pytest.raises(ProtocolError, match=r"ping: 5002 bytes, limit 64"):
        decode(b"\x92\x02" + os.urandom(5000), 1 << 20)
    # Blocks are bounded by the network's max_message_bytes.
    with pytest.raises(ProtocolError, match="block: .* limit 2048"):
        decode(encode(BlockMsg(b"x" * 3000)), 2048)
