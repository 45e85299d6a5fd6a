"""Exact integer arithmetic on torch tensors: GEMM, rounding shifts, square roots, floor division.

Matrix products run as integer-valued float64 GEMM, exact while every partial sum stays below
2^53 whatever order the BLAS or GPU kernel adds in. `exact_matmul` checks that bound from the
operands before the product and splits the reduction (or the operands) where it would not hold,
so its result equals an int64 GEMM bit for bit on any device, thread count or chunk order.
"""

from __future__ import annotations

import torch

FLOAT_EXACT_BITS = {torch.float64: 53, torch.float32: 24}


class ExactnessError(ValueError):
    """An operation would leave the range where integer results are exact."""


def _abs_max(x: torch.Tensor) -> int:
    return int(x.abs().max().item()) if x.numel() else 0


def exact_matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    max_chunk: int | None = None,
    reverse_chunks: bool = False,
    a_bound: int | None = None,
    b_bound: int | None = None,
) -> torch.Tensor:
    """a @ b for int64 tensors (a: [..., M, K], b: [..., K, N]) computed exactly, returned as int64.

    `a_bound`/`b_bound` are bounds on |a| and |b| that the caller guarantees by construction
    (for example after `clamp_bits`), saving the reduction that measures them.
    `max_chunk` and `reverse_chunks` only change how the work is split and ordered; the result
    is the same for every choice, which the tests check.
    """
    if a.dtype != torch.int64 or b.dtype != torch.int64:
        raise TypeError("exact_matmul takes int64 tensors")
    limit = 1 << FLOAT_EXACT_BITS[dtype]
    amax = _abs_max(a) if a_bound is None else a_bound
    bmax = _abs_max(b) if b_bound is None else b_bound
    k = a.shape[-1]
    if amax == 0 or bmax == 0:
        return torch.matmul(a.to(dtype), b.to(dtype)).to(torch.int64)
    if k * amax * bmax >= 1 << 63:
        raise ExactnessError(f"product of K={k}, |a|<={amax}, |b|<={bmax} can overflow int64")
    if amax * bmax >= limit:
        # One product alone could round: split the larger operand into high and low limbs.
        if amax >= bmax:
            shift = max(1, (amax.bit_length() + 1) // 2)
            lo = a & ((1 << shift) - 1)
            hi = a >> shift
            return (
                exact_matmul(hi, b, dtype=dtype, max_chunk=max_chunk, reverse_chunks=reverse_chunks)
                << shift
            ) + exact_matmul(lo, b, dtype=dtype, max_chunk=max_chunk, reverse_chunks=reverse_chunks)
        shift = max(1, (bmax.bit_length() + 1) // 2)
        lo = b & ((1 << shift) - 1)
        hi = b >> shift
        return (
            exact_matmul(a, hi, dtype=dtype, max_chunk=max_chunk, reverse_chunks=reverse_chunks)
            << shift
        ) + exact_matmul(a, lo, dtype=dtype, max_chunk=max_chunk, reverse_chunks=reverse_chunks)
    chunk = (limit - 1) // (amax * bmax)
    if max_chunk is not None:
        chunk = min(chunk, max_chunk)
    chunk = max(1, min(chunk, k))
    starts = list(range(0, k, chunk))
    if reverse_chunks:
        starts.reverse()
    out: torch.Tensor | None = None
    for s in starts:
        part = torch.matmul(a[..., s : s + chunk].to(dtype), b[..., s : s + chunk, :].to(dtype)).to(
            torch.int64
        )
        out = part if out is None else out + part
    assert out is not None
    return out


def exact_matmul_fp(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    a_bound: int,
    b_bound: int,
    max_chunk: int | None = None,
    reverse_chunks: bool = False,
) -> torch.Tensor:
    """a @ b for integer-valued float64 tensors with |a| <= a_bound, |b| <= b_bound
    (caller-guaranteed).

    Keeps activations in float64 end to end (no int64 round trips). Exact because every partial
    sum, whatever order the kernel adds in, is an integer below K * a_bound * b_bound < 2^53;
    a product that could reach 2^53 is refused (use `exact_matmul`, which splits it).
    `max_chunk`/`reverse_chunks` only change the split of K, never the result.
    """
    if a.dtype != torch.float64 or b.dtype != torch.float64:
        raise TypeError("exact_matmul_fp takes float64 tensors holding integers")
    k = a.shape[-1]
    if k * a_bound * b_bound >= 1 << FLOAT_EXACT_BITS[torch.float64]:
        raise ExactnessError(f"K={k}, |a|<={a_bound}, |b|<={b_bound} can reach 2^53 in float64")
    chunk = k if max_chunk is None else max(1, min(max_chunk, k))
    if chunk >= k:
        return torch.matmul(a, b)
    starts = list(range(0, k, chunk))
    if reverse_chunks:
        starts.reverse()
    out = torch.matmul(
        a[..., starts[0] : starts[0] + chunk], b[..., starts[0] : starts[0] + chunk, :]
    )
    for s in starts[1:]:
        out = out + torch.matmul(a[..., s : s + chunk], b[..., s : s + chunk, :])
    return out


def int_matmul_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Plain int64 GEMM (CPU), the reference the tests compare `exact_matmul` against."""
    return torch.matmul(a.cpu(), b.cpu())


def shift_round(x: torch.Tensor, shift: int) -> torch.Tensor:
    """x / 2^shift rounded to nearest, ties toward +infinity: floor((x + 2^(shift-1)) / 2^shift).

    This is the project's one rounding rule for rescaling fixed-point values. A float64 tensor
    holding integers gets the same result (exact while |x| + 2^(shift-1) < 2^53: scaling by a
    power of two and floor are exact).
    """
    if shift < 0:
        raise ValueError("shift must be >= 0")
    if shift == 0:
        return x
    if x.is_floating_point():
        if x.dtype != torch.float64:
            raise TypeError("shift_round on floats takes float64 tensors holding integers")
        return torch.floor((x + float(1 << (shift - 1))) * (1.0 / (1 << shift)))
    return (x + (1 << (shift - 1))) >> shift


def floor_div(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    """Integer division rounding toward -infinity, named explicitly."""
    return torch.div(a, b, rounding_mode="floor")


_ISQRT_MAX = 3037000499  # floor(sqrt(2^63 - 1))


def isqrt(x: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(x)) of a non-negative int64 tensor, exact.

    The float64 square root is correctly rounded (IEEE 754) on CPU and CUDA; two integer
    corrections make the result exact even where converting x to float64 rounded.
    """
    if x.dtype != torch.int64:
        raise TypeError("isqrt takes an int64 tensor")
    if x.numel() and int(x.min().item()) < 0:
        raise ValueError("isqrt of a negative value")
    r = torch.sqrt(x.to(torch.float64)).to(torch.int64).clamp(max=_ISQRT_MAX)
    for _ in range(2):
        r = torch.where(r * r > x, r - 1, r)
        up = (r + 1).clamp(max=_ISQRT_MAX)  # (r + 1)^2 would overflow int64 past isqrt(2^63 - 1)
        r = torch.where((up > r) & (up * up <= x), up, r)
    return r


def clamp_bits(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Saturate to the signed range of `bits` bits, so values stay inside proven GEMM bounds."""
    lim = (1 << (bits - 1)) - 1
    return x.clamp(-lim, lim)
