"""Canonical encoding: round trips for every record, and rejection of everything else, with the
field named."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.block import Block, BlockHeader, Opening, WorkClaim, WorkProof
from chain.encoding import (
    BigUInt,
    Bytes,
    Codec,
    DecodeError,
    EncodeError,
    ListOf,
    Maybe,
    Nested,
    Packed,
    Record,
    Text,
    UInt,
    UInt256,
    VarBytes,
    Variant,
    encode_unsigned,
)
from chain.state import Account, AccountUndo, TaskRecord, TaskUndo, Undo
from chain.storage import IndexEntry
from chain.tx import SubmitTask, Transaction, Transfer
from useful_work.trace import Leaf

RECORDS = [
    Transfer,
    SubmitTask,
    Transaction,
    WorkClaim,
    Opening,
    WorkProof,
    BlockHeader,
    Block,
    Account,
    TaskRecord,
    AccountUndo,
    TaskUndo,
    Undo,
    IndexEntry,
]

# --- strategies derived from the schemas themselves ----------------------------------------------


def value_of(codec: Codec) -> st.SearchStrategy:
    if isinstance(codec, UInt):
        if codec.choices is not None:
            return st.sampled_from(sorted(codec.choices))
        return st.one_of(st.integers(0, 300), st.integers(0, codec.limit - 1))
    if isinstance(codec, UInt256):
        return st.integers(0, (1 << 256) - 1)
    if isinstance(codec, BigUInt):
        return st.integers(0, (1 << (8 * codec.max_bytes)) - 1)
    if isinstance(codec, Bytes):
        return st.binary(min_size=codec.size, max_size=codec.size)
    if isinstance(codec, VarBytes):
        return st.binary(max_size=min(codec.max_len, 300))
    if isinstance(codec, Text):
        return st.text(max_size=min(codec.max_len, 20))
    if isinstance(codec, Packed):
        assert codec.cls is Leaf
        return st.builds(Leaf, *[st.binary(min_size=32, max_size=32)] * 4)
    if isinstance(codec, ListOf):
        return st.lists(value_of(codec.item), max_size=min(3, codec.max_len)).map(tuple)
    if isinstance(codec, Maybe):
        return st.none() | value_of(codec.inner)
    if isinstance(codec, Nested):
        return record_of(codec.cls)
    raise AssertionError(codec)


@st.composite
def _record(draw, cls: type[Record]):
    values = {}
    for name, codec in cls.__schema__:
        if isinstance(codec, Variant):
            codec = Nested(codec.cases[values[codec.selector]])
        values[name] = draw(value_of(codec))
    return cls(**values)


def record_of(cls: type[Record]) -> st.SearchStrategy:
    return _record(cls)


any_record = st.sampled_from(RECORDS).flatmap(record_of)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@fast
@given(data=st.data())
def test_round_trip_every_record(cls, data):
    obj = data.draw(record_of(cls))
    encoded = obj.to_bytes()
    decoded = cls.from_bytes(encoded)
    assert decoded == obj
    assert decoded.to_bytes() == encoded


@fast
@given(any_record)
def test_encoding_is_plain_msgpack_arrays_without_maps_or_floats(obj):
    def plain_types(x):
        if isinstance(x, list):
            return all(plain_types(i) for i in x)
        return x is None or type(x) in (int, bytes, str)

    plain = msgpack.unpackb(obj.to_bytes(), raw=False)
    assert isinstance(plain, list) and plain_types(plain)


# --- non-canonical input: the error names the field --------------------------------------------


def _int_paths(codec_or_cls, plain, where):
    """(path, position) of every int in `plain`, in encoding order, following the schema."""
    if isinstance(codec_or_cls, type):
        out = []
        values = {}
        for (name, codec), item in zip(codec_or_cls.__schema__, plain, strict=True):
            if isinstance(codec, Variant):
                codec = Nested(codec.cases[values[codec.selector]])
            values[name] = item
            out += _int_paths(codec, item, f"{where}.{name}")
        return out
    if isinstance(codec_or_cls, Nested):
        return _int_paths(codec_or_cls.cls, plain, where)
    if isinstance(codec_or_cls, Maybe):
        return [] if plain is None else _int_paths(codec_or_cls.inner, plain, where)
    if isinstance(codec_or_cls, ListOf):
        return [
            p
            for i, item in enumerate(plain)
            for p in _int_paths(codec_or_cls.item, item, f"{where}[{i}]")
        ]
    return [(where, plain)] if type(plain) is int else []


def _pack_widening(plain, target: int, counter: list[int]) -> bytes:
    """msgpack of `plain`, except the target-th int is written as a uint64 (0xcf): valid but not
    minimal."""
    if type(plain) is int:
        counter[0] += 1
        if counter[0] - 1 == target:
            return b"\xcf" + struct.pack(">Q", plain)
        return msgpack.packb(plain)
    if isinstance(plain, list):
        head = msgpack.packb([None] * len(plain))[: -len(plain) or None] if plain else b"\x90"
        return head + b"".join(_pack_widening(item, target, counter) for item in plain)
    return msgpack.packb(plain, use_bin_type=True)


@fast
@given(any_record, st.data())
def test_widened_integer_is_rejected_naming_its_field(obj, data):
    cls = type(obj)
    plain = obj.to_plain()
    paths = _int_paths(cls, plain, cls.__name__)
    assert _pack_widening(plain, -1, [0]) == obj.to_bytes()  # the test encoder is msgpack's own
    narrow = [
        i for i, (_, value) in enumerate(paths) if value < 1 << 32
    ]  # uint64 is their minimal form
    if not narrow:
        return
    target = data.draw(st.sampled_from(narrow))
    bad = _pack_widening(plain, target, [0])
    with pytest.raises(DecodeError) as err:
        cls.from_bytes(bad)
    assert (
        str(err.value)
        == f"{paths[target][0]}: non-canonical encoding (a wider msgpack type than needed)"
    )


def test_wide_array_header_and_wide_bytes_header_are_rejected():
    claim = WorkClaim(bytes(32), 3, bytes(32))
    good = claim.to_bytes()
    assert good[0] == 0x94  # fixarray of the four fields
    with pytest.raises(DecodeError, match=r"^WorkClaim: non-canonical array header$"):
        WorkClaim.from_bytes(b"\xdc\x00\x04" + good[1:])
    # task_id (bin8, 32 bytes) written as bin16
    assert good[1:3] == b"\xc4\x20"
    with pytest.raises(DecodeError, match=r"^WorkClaim.task_id: non-canonical encoding"):
        WorkClaim.from_bytes(good[:1] + b"\xc5\x00\x20" + good[3:])


@fast
@given(any_record, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(obj, extra):
    with pytest.raises(DecodeError, match="trailing bytes"):
        type(obj).from_bytes(obj.to_bytes() + extra)


@fast
@given(any_record, st.data())
def test_truncated_input_is_rejected_naming_a_field(obj, data):
    encoded = obj.to_bytes()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError) as err:
        type(obj).from_bytes(encoded[:cut])
    message = str(err.value)
    assert message.startswith(type(obj).__name__)
    if cut > 0:
        assert "truncated input" in message


def test_truncation_names_the_field():
    tx_plain = [0, bytes(32), bytes(32), 5, 7, [bytes(20), 9], bytes(64)]
    encoded = msgpack.packb(tx_plain, use_bin_type=True)
    with pytest.raises(DecodeError, match=r"^Transaction.signature: truncated input$"):
        Transaction.from_bytes(encoded[:-10])
    with pytest.raises(DecodeError, match=r"^Transaction.payload.amount: truncated input$"):
        Transaction.from_bytes(encoded[: 1 + 1 + 34 + 34 + 1 + 1 + 1 + 22])


@pytest.mark.parametrize(
    "index, value, message",
    [
        (4, -1, "Transaction.fee: expected u64, got -1"),
        (3, "5", "Transaction.nonce: expected u64, got str"),
        (3, 5.0, "Transaction.nonce: expected u64, got float"),
        (3, True, "Transaction.nonce: expected u64, got bool True"),
        (0, 7, "Transaction.kind: expected one of 0, 1, 2, got 7"),
        (1, bytes(31), "Transaction.chain_id: expected 32 bytes, got 31 bytes"),
        (2, "k" * 32, "Transaction.sender_key: expected 32 bytes, got str"),
        (5, {"to": 1}, "Transaction.payload: expected an array of 2 fields, got dict"),
        (5, [bytes(20)], "Transaction.payload: expected 2 fields, got 1"),
        (5, [bytes(19), 1], "Transaction.payload.to: expected 20 bytes, got 19 bytes"),
        (6, None, "Transaction.signature: expected 64 bytes, got NoneType"),
    ],
)
def test_wrong_field_types_are_named(index, value, message):
    plain = [0, bytes(32), bytes(32), 5, 7, [bytes(20), 9], bytes(64)]
    plain[index] = value
    with pytest.raises(DecodeError) as err:
        Transaction.from_bytes(msgpack.packb(plain, use_bin_type=True))
    assert str(err.value) == message


def test_variant_follows_the_kind_field():
    plain = [1, bytes(32), bytes(32), 5, 7, [bytes(20), 9], bytes(64)]
    assert Transaction.from_bytes(msgpack.packb(plain, use_bin_type=True)).payload == SubmitTask(
        bytes(20), 9
    )
    plain[0] = 0
    assert Transaction.from_bytes(msgpack.packb(plain, use_bin_type=True)).payload == Transfer(
        bytes(20), 9
    )
    plain[0], plain[5] = 1, [b"x" * 5000, 9]
    with pytest.raises(
        DecodeError, match=r"^Transaction.payload.spec: 5000 bytes exceeds the limit of 4096$"
    ):
        Transaction.from_bytes(msgpack.packb(plain, use_bin_type=True))


def test_not_msgpack_and_non_bytes_input():
    with pytest.raises(DecodeError, match=r"^Account: "):
        Account.from_bytes(b"\xc1")  # reserved byte
    with pytest.raises(DecodeError, match=r"^Account: expected bytes, got str$"):
        Account.from_bytes("abc")  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=r"^Account: "):
        Account.from_bytes(b"")
    assert Account.from_bytes(bytearray(Account(1, 2).to_bytes())) == Account(1, 2)


def test_nested_paths_in_lists():
    header = BlockHeader(
        1,
        2,
        bytes(32),
        3,
        4,
        bytes(20),
        bytes(32),
        bytes(20),
        bytes(32),
        bytes(32),
        (WorkClaim(bytes(32), 1, bytes(32)),) * 2,
        bytes(32),
        bytes(32),
        bytes(64),
    )
    plain = header.to_plain()
    plain[10][1][1] = -3
    with pytest.raises(
        DecodeError, match=r"^BlockHeader.work\[1\].unit_count: expected u32, got -3$"
    ):
        BlockHeader.from_bytes(msgpack.packb(plain, use_bin_type=True))
    plain[10] = [plain[10][0]] * 17
    with pytest.raises(DecodeError, match=r"^BlockHeader.work: 17 items exceeds the limit of 16$"):
        BlockHeader.from_bytes(msgpack.packb(plain, use_bin_type=True))


def test_u32_range():
    plain = WorkClaim(bytes(32), 1, bytes(32)).to_plain()
    plain[1] = 1 << 32
    with pytest.raises(DecodeError, match=rf"^WorkClaim.unit_count: expected u32, got {1 << 32}$"):
        WorkClaim.from_bytes(msgpack.packb(plain, use_bin_type=True))


def test_u256_and_biguint_forms():
    header = BlockHeader(
        1,
        2,
        bytes(32),
        3,
        (1 << 256) - 1,
        bytes(20),
        bytes(32),
        bytes(20),
        bytes(32),
        bytes(32),
        (),
        bytes(32),
        bytes(32),
        bytes(64),
    )
    assert BlockHeader.from_bytes(header.to_bytes()).target == (1 << 256) - 1
    plain = header.to_plain()
    plain[4] = b"\x01" * 31
    with pytest.raises(
        DecodeError, match=r"^BlockHeader.target: expected u256 as 32 bytes, got 31 bytes$"
    ):
        BlockHeader.from_bytes(msgpack.packb(plain, use_bin_type=True))
    entry = IndexEntry(bytes(32), bytes(32), 1, 0, 0, "")
    assert entry.to_plain()[3] == b""
    plain = entry.to_plain()
    plain[3] = b"\x00\x05"
    with pytest.raises(
        DecodeError, match=r"^IndexEntry.chain_work: integer has a leading zero byte$"
    ):
        IndexEntry.from_bytes(msgpack.packb(plain, use_bin_type=True))


def test_leaf_is_128_bytes_on_the_wire():
    leaf = Leaf(b"a" * 32, b"b" * 32, b"c" * 32, b"d" * 32)
    proof = WorkProof((leaf,), (Opening(0, b"state"),))
    assert proof.to_plain()[0] == [leaf.to_bytes()]
    plain = proof.to_plain()
    plain[0] = [b"x" * 127]
    with pytest.raises(
        DecodeError, match=r"^WorkProof.leaves\[0\]: expected 128 bytes, got 127 bytes$"
    ):
        WorkProof.from_bytes(msgpack.packb(plain, use_bin_type=True))


def test_encoding_refuses_out_of_schema_values():
    with pytest.raises(EncodeError, match=r"^Account.balance: expected u64, got -5$"):
        Account(-5, 0).to_bytes()
    with pytest.raises(
        EncodeError, match=r"^Transaction.payload: SubmitTask does not match kind 0$"
    ):
        Transaction(0, bytes(32), bytes(32), 0, 0, SubmitTask(b"", 0), bytes(64)).to_bytes()
    with pytest.raises(EncodeError, match=r"^WorkProof.leaves\[0\]: expected Leaf, got 128 bytes$"):
        WorkProof((b"x" * 128,), ()).to_bytes()  # type: ignore[arg-type]


def test_lists_are_held_as_tuples():
    proof = WorkProof([], [Opening(0, b"")])  # type: ignore[arg-type]
    assert proof.openings == (Opening(0, b""),)
    assert WorkProof.from_bytes(proof.to_bytes()) == proof


def test_unsigned_encoding_drops_only_the_signature():
    tx = Transaction(0, bytes(32), bytes(32), 1, 2, Transfer(bytes(20), 3), b"s" * 64)
    assert msgpack.unpackb(encode_unsigned(tx)) == tx.to_plain()[:-1]
    with pytest.raises(TypeError):
        encode_unsigned(Account(1, 1))


@settings(max_examples=300, deadline=None)
@given(any_record, st.data())
def test_random_corruption_gives_decode_error_or_the_same_bytes(obj, data):
    encoded = bytearray(obj.to_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] = data.draw(st.integers(0, 255))
    try:
        decoded = type(obj).from_bytes(bytes(encoded))
    except DecodeError:
        return
    assert decoded.to_bytes() == bytes(encoded)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(blob):
    for cls in (Transaction, BlockHeader, Block):
        try:
            cls.from_bytes(blob)
        except DecodeError:
            pass
