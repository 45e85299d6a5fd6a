"""Canonical msgpack for every consensus object.

A record is a frozen dataclass whose fields are `Annotated[type, codec]`; it encodes as a msgpack
array of its fields in declaration order (no maps, no floats, no strings in consensus objects).
msgpack-python always writes the shortest form of an int, a byte string and an array header, so
"canonical" means: the input equals the re-encoding of what it decodes to. Decoding checks every
field's type, range and length, then that equality; on any failure it walks the input again with
a streaming unpacker to name the offending field ("Transaction.fee: expected u64, got -1").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Generic, TypeVar, get_args, get_origin

import msgpack

T = TypeVar("T")
R = TypeVar("R", bound="Record")


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of the expected object; the message names the
    field."""


class EncodeError(ValueError):
    """An object whose field is out of its schema (wrong type, range or length); names the field."""


def _describe(value: Any) -> str:
    """How a bad value is shown in an error: ints in full, bytes by length, others by type."""
    if isinstance(value, bool):
        return f"bool {value}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# Codecs: each converts between a typed value and its plain msgpack form (ints, bytes, lists,
# None), checking the value in both directions. `check` returns a problem or None.


class Codec(Generic[T]):
    def check(self, value: Any) -> str | None:
        raise NotImplementedError

    def to_plain(self, value: T, where: str) -> Any:
        problem = self.check(value)
        if problem:
            raise EncodeError(f"{where}: {problem}")
        return value

    def from_plain(self, plain: Any, where: str) -> T:
        problem = self.check(plain)
        if problem:
            raise DecodeError(f"{where}: {problem}")
        return plain


class UInt(Codec[int]):
    """Unsigned integer of `bits` bits, optionally restricted to a set of values."""

    def __init__(self, bits: int, choices: Sequence[int] | None = None) -> None:
        self.bits = bits
        self.limit = 1 << bits
        self.choices = frozenset(choices) if choices is not None else None

    def check(self, value: Any) -> str | None:
        if type(value) is not int or not 0 <= value < self.limit:
            return f"expected u{self.bits}, got {_describe(value)}"
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in sorted(self.choices))
            return f"expected one of {allowed}, got {value}"
        return None


U8 = UInt(8)
U32 = UInt(32)
U64 = UInt(64)
U64_MAX = (1 << 64) - 1


class UInt256(Codec[int]):
    """256-bit unsigned integer, carried as 32 big-endian bytes (targets, ticket bounds)."""

    def check(self, value: Any) -> str | None:
        if type(value) is not int or not 0 <= value < 1 << 256:
            return f"expected u256, got {_describe(value)}"
        return None

    def to_plain(self, value: int, where: str) -> bytes:
        return super().to_plain(value, where).to_bytes(32, "big")

    def from_plain(self, plain: Any, where: str) -> int:
        if type(plain) is not bytes or len(plain) != 32:
            raise DecodeError(f"{where}: expected u256 as 32 bytes, got {_describe(plain)}")
        return int.from_bytes(plain, "big")


U256 = UInt256()


class BigUInt(Codec[int]):
    """Unsigned integer of any size up to `max_bytes`, as minimal big-endian bytes (0 is b"")."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def check(self, value: Any) -> str | None:
        if type(value) is not int or not 0 <= value < 1 << (8 * self.max_bytes):
            return (
                f"expected an unsigned integer below 2^{8 * self.max_bytes}, got {_describe(value)}"
            )
        return None

    def to_plain(self, value: int, where: str) -> bytes:
        value = super().to_plain(value, where)
        return value.to_bytes((value.bit_length() + 7) // 8, "big")

    def from_plain(self, plain: Any, where: str) -> int:
        if type(plain) is not bytes or len(plain) > self.max_bytes:
            raise DecodeError(
                f"{where}: expected at most {self.max_bytes} bytes, got {_describe(plain)}"
            )
        if plain[:1] == b"\x00":
            raise DecodeError(f"{where}: integer has a leading zero byte")
        return int.from_bytes(plain, "big")


class Bytes(Codec[bytes]):
    """Exactly `size` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size

    def check(self, value: Any) -> str | None:
        if type(value) is not bytes:
            return f"expected {self.size} bytes, got {_describe(value)}"
        if len(value) != self.size:
            return f"expected {self.size} bytes, got {len(value)} bytes"
        return None


class VarBytes(Codec[bytes]):
    """Between 0 and `max_len` bytes."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def check(self, value: Any) -> str | None:
        if type(value) is not bytes:
            return f"expected bytes, got {_describe(value)}"
        if len(value) > self.max_len:
            return f"{len(value)} bytes exceeds the limit of {self.max_len}"
        return None


class Text(Codec[str]):
    """UTF-8 text up to `max_len` characters; for local records (never in consensus objects)."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def check(self, value: Any) -> str | None:
        if type(value) is not str:
            return f"expected text, got {_describe(value)}"
        if len(value) > self.max_len:
            return f"text of {len(value)} characters exceeds the limit of {self.max_len}"
        return None


class Packed(Codec[T]):
    """A value class with `to_bytes()` / `from_bytes()` of a fixed size, carried as bytes."""

    def __init__(self, cls: type[T], size: int) -> None:
        self.cls = cls
        self.size = size

    def to_plain(self, value: T, where: str) -> bytes:
        if not isinstance(value, self.cls):
            raise EncodeError(f"{where}: expected {self.cls.__name__}, got {_describe(value)}")
        return value.to_bytes()  # type: ignore[attr-defined]

    def from_plain(self, plain: Any, where: str) -> T:
        if type(plain) is not bytes or len(plain) != self.size:
            raise DecodeError(f"{where}: expected {self.size} bytes, got {_describe(plain)}")
        try:
            return self.cls.from_bytes(plain)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise DecodeError(f"{where}: {exc}") from None


class ListOf(Codec[tuple]):
    """A list of at most `max_len` items of one codec; held as a tuple in the record."""

    def __init__(self, item: Codec, max_len: int) -> None:
        self.item = item
        self.max_len = max_len

    def to_plain(self, value: Sequence, where: str) -> list:
        if not isinstance(value, (list, tuple)):
            raise EncodeError(f"{where}: expected a list, got {_describe(value)}")
        if len(value) > self.max_len:
            raise EncodeError(f"{where}: {len(value)} items exceeds the limit of {self.max_len}")
        return [self.item.to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]

    def from_plain(self, plain: Any, where: str) -> tuple:
        if type(plain) is not list:
            raise DecodeError(f"{where}: expected a list, got {_describe(plain)}")
        if len(plain) > self.max_len:
            raise DecodeError(f"{where}: {len(plain)} items exceeds the limit of {self.max_len}")
        return tuple(self.item.from_plain(v, f"{where}[{i}]") for i, v in enumerate(plain))


class Maybe(Codec[T | None]):
    """A value or nil; only for local records such as undo data."""

    def __init__(self, inner: Codec[T]) -> None:
        self.inner = inner

    def to_plain(self, value: T | None, where: str) -> Any:
        return None if value is None else self.inner.to_plain(value, where)

    def from_plain(self, plain: Any, where: str) -> T | None:
        return None if plain is None else self.inner.from_plain(plain, where)


class Nested(Codec[R]):
    """A record inside a record."""

    def __init__(self, cls: type[R]) -> None:
        self.cls = cls

    def to_plain(self, value: R, where: str) -> list:
        if not isinstance(value, self.cls):
            raise EncodeError(f"{where}: expected {self.cls.__name__}, got {_describe(value)}")
        return value.to_plain(where)

    def from_plain(self, plain: Any, where: str) -> R:
        return self.cls.from_plain(plain, where)


class Variant(Codec[Any]):
    """A record chosen by the value of an earlier field of the same record (a tagged union)."""

    def __init__(self, selector: str, cases: Mapping[int, type[Record]]) -> None:
        self.selector = selector
        self.cases = dict(cases)

    def select(self, selector_value: Any, where: str) -> Nested:
        case = self.cases.get(selector_value)
        if case is None:
            raise DecodeError(f"{where}: no variant for {self.selector} {selector_value!r}")
        return Nested(case)


# ---------------------------------------------------------------------------------------------
# Records


class Record:
    """Base of every encodable frozen dataclass; fields are `Annotated[type, codec]`, in wire
    order."""

    __schema__: ClassVar[tuple[tuple[str, Codec], ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        schema = []
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if get_origin(annotation) is ClassVar:
                continue
            if isinstance(annotation, str) or get_origin(annotation) is not Annotated:
                raise TypeError(
                    f"{cls.__name__}.{name}: record fields must be Annotated[type, codec]"
                )
            codec = get_args(annotation)[1]
            if not isinstance(codec, Codec):
                raise TypeError(f"{cls.__name__}.{name}: the annotation's metadata must be a codec")
            schema.append((name, codec))
        if not schema:
            raise TypeError(f"{cls.__name__}: a record needs at least one field")
        cls.__schema__ = tuple(schema)

    def __post_init__(self) -> None:
        """Lists become tuples, so records stay immutable and equal their decoded copies."""
        for name, codec in self.__schema__:
            if isinstance(codec, ListOf) and isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    # plain form -------------------------------------------------------------------------------

    def to_plain(self, where: str | None = None) -> list:
        where = where or type(self).__name__
        plain: list = []
        for name, codec in self.__schema__:
            value = getattr(self, name)
            if isinstance(codec, Variant):
                selector = getattr(self, codec.selector)
                case = codec.cases.get(selector)
                if case is None or not isinstance(value, case):
                    raise EncodeError(
                        f"{where}.{name}: {_describe(value)} does not match "
                        f"{codec.selector} {selector!r}"
                    )
                codec = Nested(case)
            plain.append(codec.to_plain(value, f"{where}.{name}"))
        return plain

    @classmethod
    def from_plain(cls: type[R], plain: Any, where: str | None = None) -> R:
        where = where or cls.__name__
        if type(plain) is not list:
            raise DecodeError(
                f"{where}: expected an array of {len(cls.__schema__)} fields, got "
                f"{_describe(plain)}"
            )
        if len(plain) != len(cls.__schema__):
            raise DecodeError(f"{where}: expected {len(cls.__schema__)} fields, got {len(plain)}")
        values: dict[str, Any] = {}
        for (name, codec), item in zip(cls.__schema__, plain, strict=True):
            if isinstance(codec, Variant):
                codec = codec.select(values[codec.selector], f"{where}.{name}")
            values[name] = codec.from_plain(item, f"{where}.{name}")
        return cls(**values)

    # bytes ------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return msgpack.packb(self.to_plain(), use_bin_type=True)

    @classmethod
    def from_bytes(cls: type[R], data: bytes) -> R:
        """Decode canonical bytes or raise DecodeError naming the field at fault."""
        return decode(cls, data)


def encode(obj: Record) -> bytes:
    return obj.to_bytes()


def encode_unsigned(obj: Record) -> bytes:
    """The encoding of a record without its last field, the signature: what a signature covers."""
    if obj.__schema__[-1][0] != "signature":
        raise TypeError(f"{type(obj).__name__} has no trailing signature field")
    return msgpack.packb(obj.to_plain()[:-1], use_bin_type=True)


def decode(cls: type[R], data: bytes) -> R:
    name = cls.__name__
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise DecodeError(f"{name}: expected bytes, got {_describe(data)}")
        data = bytes(data)
    try:
        plain = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception:  # msgpack raises several unrelated types on bad input; diagnose below
        raise DecodeError(_diagnose(cls, data)) from None
    obj = cls.from_plain(plain, name)
    if msgpack.packb(plain, use_bin_type=True) != data:
        raise DecodeError(_diagnose(cls, data))
    return obj


# ---------------------------------------------------------------------------------------------
# Diagnosis: walk bad input with a streaming unpacker, checking each element's bytes against its
# canonical form, so the error names the first field that is truncated or non-canonical.


class _Found(Exception):
    pass


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _diagnose(cls: type[Record], data: bytes) -> str:
    unpacker = msgpack.Unpacker(
        raw=False, use_list=True, strict_map_key=True, max_buffer_size=max(len(data), 1)
    )
    unpacker.feed(data)
    try:
        _walk_record(unpacker, data, cls, cls.__name__)
    except _Found as found:
        return str(found)
    if unpacker.tell() != len(data):
        return f"{cls.__name__}: {len(data) - unpacker.tell()} trailing bytes after the object"
    return f"{cls.__name__}: not in canonical encoding"


def _step(unpacker: msgpack.Unpacker, where: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except msgpack.OutOfData:
        raise _Found(f"{where}: truncated input") from None
    except Exception as exc:  # wrong msgpack type for an array header, reserved byte, ...
        raise _Found(f"{where}: malformed or unexpected msgpack ({exc})") from None


def _walk_header(unpacker: msgpack.Unpacker, data: bytes, where: str) -> int:
    start = unpacker.tell()
    n = _step(unpacker, where, unpacker.read_array_header)
    if data[start : unpacker.tell()] != _array_header(n):
        raise _Found(f"{where}: non-canonical array header")
    return n


def _walk_record(unpacker: msgpack.Unpacker, data: bytes, cls: type[Record], where: str) -> None:
    n = _walk_header(unpacker, data, where)
    if n != len(cls.__schema__):
        raise _Found(f"{where}: expected {len(cls.__schema__)} fields, got {n}")
    values: dict[str, Any] = {}
    for name, codec in cls.__schema__:
        if isinstance(codec, Variant):
            try:
                codec = codec.select(values[codec.selector], f"{where}.{name}")
            except DecodeError as exc:
                raise _Found(str(exc)) from None
        values[name] = _walk_value(unpacker, data, codec, f"{where}.{name}")


def _walk_value(unpacker: msgpack.Unpacker, data: bytes, codec: Codec, where: str) -> Any:
    if isinstance(codec, Nested):
        _walk_record(unpacker, data, codec.cls, where)
        return None
    if isinstance(codec, ListOf):
        n = _walk_header(unpacker, data, where)
        if n > codec.max_len:
            raise _Found(f"{where}: {n} items exceeds the limit of {codec.max_len}")
        for i in range(n):
            _walk_value(unpacker, data, codec.item, f"{where}[{i}]")
        return None
    if isinstance(codec, Maybe) and isinstance(codec.inner, (Nested, ListOf)):
        start = unpacker.tell()
        if data[start : start + 1] == b"\xc0":
            _step(unpacker, where, unpacker.skip)
            return None
        return _walk_value(unpacker, data, codec.inner, where)
    start = unpacker.tell()
    value = _step(unpacker, where, unpacker.unpack)
    try:
        decoded = codec.from_plain(value, where)
    except DecodeError as exc:
        raise _Found(str(exc)) from None
    if msgpack.packb(value, use_bin_type=True) != data[start : unpacker.tell()]:
        raise _Found(f"{where}: non-canonical encoding (a wider msgpack type than needed)")
    return decoded
