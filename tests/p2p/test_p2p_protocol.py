"""The wire protocol on its own: round trips, size limits before decoding, strict errors that
name the field."""

import os

import msgpack
import pytest

from p2p.protocol import (
    MESSAGE_TYPES,
    Addr,
    BlockMsg,
    GetAddr,
    GetData,
    GetHeaders,
    Headers,
    Hello,
    Inv,
    NotFound,
    Ping,
    Pong,
    ProtocolError,
    ShareMsg,
    TxMsg,
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
        (
            msgpack.packb([4, {"blocks": [b"a"], "txs": []}]),
            "inv.blocks[0]: expected 32 bytes, got 1",
        ),
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


# Frames as the protocol wrote them before its messages became chain.encoding records: the
# encoding of every message type must stay byte for byte the same (peers of both builds
# interoperate). Version 3 added hello's `pruned` field and the `share` message.
GOLDEN_FRAMES = {
    Hello(
        2, "devnet", H, H[::-1], 7, int_to_wire(12345), "127.0.0.1:8333", b"12345678", "pouw/0.1"
    ): (
        # pruned: 0 (protocol version 3 added it)
        "92018aa776657273696f6e02a76e6574776f726ba66465766e6574a8636861696e5f6964c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fa767656e65736973c4201f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100a668656967687407aa636861696e5f776f726bc4023039a66c697374656eae3132372e302e302e313a38333333a56e6f6e6365c4083132333435363738a56167656e74a8706f75772f302e31a67072756e656400"
    ),
    Ping(5): "920281a56e6f6e636505",
    Pong(2**63): "920381a56e6f6e6365cf8000000000000000",
    Inv(blocks=(H,), txs=(H, H[::-1])): (
        "920482a6626c6f636b7391c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fa374787392c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fc4201f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
    ),
    GetData(blocks=(H,)): (
        "920582a6626c6f636b7391c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fa374787390"
    ),
    NotFound(txs=(H,)): (
        "920682a6626c6f636b7390a374787391c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    ),
    GetHeaders((H, H[::-1])): (
        "920781a76c6f6361746f7292c420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fc4201f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
    ),
    Headers((b"h1", b"h22")): "920881a76865616465727392c4026831c403683232",
    BlockMsg(b"x" * 40): "920981a5626c6f636bc428" + "78" * 40,
    TxMsg(b"t" * 10): "920a81a27478c40a" + "74" * 10,
    GetAddr(): "920b80",
    Addr(
        ("127.0.0.1:1", "[::1]:2")
    ): "920c81a5616464727392ab3132372e302e302e313a31a75b3a3a315d3a32",
    ShareMsg(b"s" * 10): "920d81a5636c61696dc40a" + "73" * 10,
}


def test_frames_are_byte_for_byte_what_they_were():
    assert {type(msg) for msg in GOLDEN_FRAMES} == set(MESSAGE_TYPES.values())
    for msg, frame in GOLDEN_FRAMES.items():
        assert encode(msg).hex() == frame, type(msg).__name__
        assert decode(bytes.fromhex(frame), 1 << 20) == msg
