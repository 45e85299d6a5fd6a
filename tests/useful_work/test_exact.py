"""Exact kernels (exact.py) and the counter-based PRNG (prng.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from useful_work.exact import (
    ExactnessError,
    clamp_bits,
    exact_matmul,
    exact_matmul_fp,
    floor_div,
    int_matmul_reference,
    isqrt,
    shift_round,
)
from useful_work.prng import Prng, stream_id, threefry4x32

SEED = bytes(range(32))


def near_bound(prng: Prng, stream: str, shape: tuple[int, ...], bound: int) -> torch.Tensor:
    """Values in [-bound, bound], a quarter of them exactly at +-bound (the worst case for sums)."""
    n = 1
    for s in shape:
        n *= s
    wide = ((prng.words(stream + ".hi", n) >> 1) << 32) | prng.words(
        stream + ".lo", n
    )  # 63 random bits
    v = wide % (2 * bound + 1) - bound
    sel = prng.below(stream + ".sel", n, 4)
    sign = prng.below(stream + ".sign", n, 2) * 2 - 1
    return torch.where(sel == 0, sign * bound, v).view(shape)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "m,k,n,abits,bbits",
    [
        (7, 300, 5, 16, 16),  # K-split in float32, one chunk in float64
        (4, 64, 3, 28, 28),  # one product exceeds 2^53: limb split
        (9, 300, 6, 8, 40),  # unbalanced operands
        (3, 5000, 2, 20, 20),  # long reductions
    ],
)
def test_exact_matmul_equals_int64_near_bounds(dtype, m, k, n, abits, bbits) -> None:
    prng = Prng(SEED)
    a = near_bound(prng, f"a{m}{k}", (m, k), (1 << abits) - 1)
    b = near_bound(prng, f"b{k}{n}", (k, n), (1 << bbits) - 1)
    want = int_matmul_reference(a, b)
    assert torch.equal(exact_matmul(a, b, dtype=dtype), want)
    for max_chunk in ((1,) if k <= 300 else ()) + (7, 101, k // 2 + 1):
        for rev in (False, True):
            got = exact_matmul(a, b, dtype=dtype, max_chunk=max_chunk, reverse_chunks=rev)
            assert torch.equal(got, want), (max_chunk, rev)
    # Declared bounds (true ones) give the same result.
    got = exact_matmul(a, b, dtype=dtype, a_bound=(1 << abits) - 1, b_bound=(1 << bbits) - 1)
    assert torch.equal(got, want)


def test_exact_matmul_batched_and_errors() -> None:
    prng = Prng(SEED)
    a = near_bound(prng, "ba", (2, 3, 40), 1000)
    b = near_bound(prng, "bb", (2, 40, 4), 1000)
    assert torch.equal(
        exact_matmul(a, b, dtype=torch.float32, max_chunk=7), int_matmul_reference(a, b)
    )
    with pytest.raises(TypeError):
        exact_matmul(a.double(), b)
    big = torch.full((1, 4), 1 << 40, dtype=torch.int64)
    with pytest.raises(ExactnessError):
        exact_matmul(big, big.t().contiguous() << 22)
    zeros = torch.zeros((3, 4), dtype=torch.int64)
    assert torch.equal(exact_matmul(zeros, b[0, :4]), torch.zeros((3, 4), dtype=torch.int64))


def test_exact_matmul_fp_equals_int64_and_refuses_overflow() -> None:
    prng = Prng(SEED)
    a = near_bound(prng, "fa", (8, 4096), (1 << 23) - 1)
    b = near_bound(prng, "fb", (4096, 5), (1 << 17) - 1)  # 4096 * 2^23 * 2^17 = 2^52 < 2^53
    want = int_matmul_reference(a, b)
    for max_chunk, rev in ((None, False), (1000, False), (1000, True), (1, True)):
        got = exact_matmul_fp(
            a.double(),
            b.double(),
            a_bound=(1 << 23) - 1,
            b_bound=(1 << 17) - 1,
            max_chunk=max_chunk,
            reverse_chunks=rev,
        )
        assert got.dtype == torch.float64
        assert torch.equal(got.to(torch.int64), want)
    with pytest.raises(ExactnessError):
        exact_matmul_fp(a.double(), b.double(), a_bound=1 << 23, b_bound=1 << 18)
    with pytest.raises(TypeError):
        exact_matmul_fp(a, b, a_bound=1, b_bound=1)


@given(st.lists(st.integers(-(1 << 50), 1 << 50), min_size=1, max_size=50), st.integers(0, 40))
@settings(max_examples=200, deadline=None)
def test_shift_round_rule(values: list[int], shift: int) -> None:
    x = torch.tensor(values, dtype=torch.int64)
    want = [
        (v + (1 << (shift - 1))) >> shift if shift else v for v in values
    ]  # floor((v + half) / 2^s)
    assert shift_round(x, shift).tolist() == want
    # The float64 form (integers held in float64) applies the same rule.
    assert shift_round(x.to(torch.float64), shift).to(torch.int64).tolist() == want


def test_shift_round_ties_go_up() -> None:
    x = torch.tensor([-3, -1, 1, 3, -2, 2, 5, -5], dtype=torch.int64)  # halves at shift 1
    assert shift_round(x, 1).tolist() == [-1, 0, 1, 2, -1, 1, 3, -2]
    assert shift_round(x.double(), 1).tolist() == [-1, 0, 1, 2, -1, 1, 3, -2]
    with pytest.raises(ValueError):
        shift_round(x, -1)
    with pytest.raises(TypeError):
        shift_round(x.float(), 1)


def test_isqrt_edges() -> None:
    roots = [0, 1, 2, 3, 46340, 46341, (1 << 26) - 1, 1 << 26, 94906265, 94906266, 3037000499]
    values = set()
    for r in roots:
        for d in (-1, 0, 1):
            v = r * r + d
            if 0 <= v < 1 << 63:
                values.add(v)
    values |= {(1 << 63) - 1, (1 << 62), (1 << 53) + 1, (1 << 53) - 1, (1 << 52) + 3}
    xs = sorted(values)
    got = isqrt(torch.tensor(xs, dtype=torch.int64)).tolist()
    assert got == [math.isqrt(v) for v in xs]
    with pytest.raises(ValueError):
        isqrt(torch.tensor([-1]))
    with pytest.raises(TypeError):
        isqrt(torch.tensor([1.0]))


def test_floor_div_and_clamp_bits() -> None:
    a = torch.tensor([-7, -6, 6, 7], dtype=torch.int64)
    assert floor_div(a, 4).tolist() == [-2, -2, 1, 1]
    assert clamp_bits(torch.tensor([-200, -127, 127, 200]), 8).tolist() == [-127, -127, 127, 127]


def test_threefry_known_answers() -> None:
    """Random123's known-answer vectors for Threefry-4x32-20."""
    cases = [
        ((0, 0, 0, 0), (0, 0, 0, 0), (0x9C6CA96A, 0xE17EAE66, 0xFC10ECD4, 0x5256A7D8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 4, (0x2A881696, 0x57012287, 0xF6C7446E, 0xA16A6732)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0, 0x082EFA98, 0xEC4E6C89),
            (0x59CD1DBB, 0xB8879579, 0x86B5D00C, 0xAC8B6D84),
        ),
    ]
    for ctr, key, want in cases:
        out = threefry4x32([torch.tensor([c], dtype=torch.int64) for c in ctr], key)
        assert tuple(int(o) for o in out) == want


@given(st.integers(0, 10_000), st.integers(1, 40))
@settings(max_examples=50, deadline=None)
def test_prng_offsets_are_consistent(offset: int, n: int) -> None:
    prng = Prng(SEED)
    whole = prng.words("s", offset + n)
    assert torch.equal(prng.words("s", n, offset=offset), whole[offset:])


def test_prng_streams_and_ranges() -> None:
    prng = Prng(SEED)
    a, b = prng.words("one", 64), prng.words("two", 64)
    assert not torch.equal(a, b)
    assert torch.equal(prng.words("one", 64), prng.words(stream_id("one"), 64))
    assert torch.equal(Prng(SEED).words("one", 64), a)  # no hidden state
    assert not torch.equal(Prng(bytes(32)).words("one", 64), a)
    assert int(a.min()) >= 0 and int(a.max()) < 1 << 32
    v = prng.integers("r", 5000, -3, 3)
    assert set(v.tolist()) == set(range(-3, 4))
    s = prng.signed("w", 5000, 8)
    assert int(s.min()) >= -128 and int(s.max()) <= 127
    with pytest.raises(ValueError):
        Prng(b"short")
    with pytest.raises(ValueError):
        prng.below("x", 1, 0)
    # Golden words: pins the key schedule and the counter layout.
    assert prng.words("golden", 4).tolist() == GOLDEN_WORDS


GOLDEN_WORDS = [3738563454, 3144671779, 1936185371, 2138601342]
