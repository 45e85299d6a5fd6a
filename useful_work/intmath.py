"""Integer nonlinearities for the trainer: exp and ln from tables, softmax cross-entropy,
max-pooling.

The tables are computed once with Python's `decimal` (software arithmetic whose `exp` and `ln`
are correctly rounded), so their entries are a function of the definitions here alone, never of
the platform's libm. Every tensor operation below is integer addition, multiplication, shifts or
comparisons on int64 tensors, so results are identical on any device and thread count.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cache, lru_cache

import torch

from useful_work.exact import floor_div, shift_round

TABLE_BITS = 8  # 2^8 interpolation segments per table
TABLE_FRAC = 30  # table entries are Q30
EXP_IN_FRAC = 16  # exp/softmax take Q16 inputs (the logit format)
_LOG2E_FRAC = 24
_U_FRAC = EXP_IN_FRAC + _LOG2E_FRAC  # t * log2(e) is Q40
MAX_EXP_SHIFT = 62
PROB_FRAC = 20  # softmax probabilities are Q20

_CTX = Context(prec=60)


def _round_decimal(x: Decimal) -> int:
    return int(x.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=_CTX))


def _ln2() -> Decimal:
    return _CTX.ln(Decimal(2))


@cache
def exp2_neg_table() -> tuple[int, ...]:
    """round(2^30 * 2^(-j/256)) for j = 0 .. 256."""
    ln2 = _ln2()
    n = 1 << TABLE_BITS
    return tuple(
        _round_decimal(_CTX.exp(_CTX.multiply(ln2, Decimal(-j) / n)) * (1 << TABLE_FRAC))
        for j in range(n + 1)
    )


@cache
def ln1p_table() -> tuple[int, ...]:
    """round(2^30 * ln(1 + j/256)) for j = 0 .. 256."""
    n = 1 << TABLE_BITS
    return tuple(
        _round_decimal(_CTX.ln(Decimal(n + j) / n) * (1 << TABLE_FRAC)) for j in range(n + 1)
    )


@cache
def log2e_q() -> int:
    """log2(e) in Q24."""
    return _round_decimal(_CTX.divide(Decimal(1), _ln2()) * (1 << _LOG2E_FRAC))


@cache
def ln2_q() -> int:
    """ln(2) in Q30."""
    return _round_decimal(_ln2() * (1 << TABLE_FRAC))


@cache
def _table_tensor(name: str, device: torch.device) -> torch.Tensor:
    values = exp2_neg_table() if name == "exp2" else ln1p_table()
    return torch.tensor(values, dtype=torch.int64, device=device)


def _interpolate(table: torch.Tensor, frac: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Piecewise-linear table lookup at frac / 2^frac_bits in [0, 1); Q30 result."""
    low_bits = frac_bits - TABLE_BITS
    idx = frac >> low_bits
    rem = frac & ((1 << low_bits) - 1)
    lo = table[idx]
    hi = table[idx + 1]
    return lo + shift_round((hi - lo) * rem, low_bits)


def exp_neg(t: torch.Tensor) -> torch.Tensor:
    """exp(-t) for int64 t >= 0 in Q16 (|t| < 2^26), as Q30 (so exp(0) = 2^30)."""
    u = t * log2e_q()  # Q40: t * log2(e), below 2^51
    whole = (u >> _U_FRAC).clamp(max=MAX_EXP_SHIFT)
    frac = u & ((1 << _U_FRAC) - 1)
    # 2^-frac needs 32 fraction bits at most for a Q30 result: drop the rest by one shift.
    mant = _interpolate(_table_tensor("exp2", t.device), frac >> (_U_FRAC - 32), 32)
    return mant >> whole  # floor: the one per-element shift, rounding named here


def ln_q30(x: torch.Tensor, frac: int = TABLE_FRAC) -> torch.Tensor:
    """ln(x / 2^frac) as Q30 for int64 x with 2^frac <= x < 2^(frac+2) (values in [1, 4))."""
    two = 1 << (frac + 1)
    high = x >= two
    norm = torch.where(high, x >> 1, x)  # in [2^frac, 2^(frac+1)): floor shift, error below 2^-frac
    m = norm - (1 << frac)  # mantissa fraction, Q(frac)
    if frac < 32:
        m = m << (32 - frac)
    elif frac > 32:
        m = m >> (frac - 32)
    return _interpolate(_table_tensor("ln1p", x.device), m, 32) + high.to(torch.int64) * ln2_q()


def first_argmax(z: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum along dim 1 of an integer [B, C] tensor (explicit tie rule)."""
    best = z[:, 0]
    index = torch.zeros_like(best)
    for j in range(1, z.shape[1]):
        better = z[:, j] > best
        index = torch.where(better, j, index)
        best = torch.where(better, z[:, j], best)
    return index


def softmax_xent(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax cross-entropy of Q16 logits [B, C] (C <= 4) against class indices [B].

    Returns (probabilities Q20 [B, C], per-sample loss Q16 [B]); the loss is ln(sum exp(z - max))
    + (max - z_label), exact up to the tables' interpolation.
    """
    zmax = logits.max(dim=1, keepdim=True).values
    e = exp_neg(zmax - logits)  # Q30, the max entry is exactly 2^30
    s = e.sum(dim=1, keepdim=True)  # in [2^30, C * 2^30)
    probs = floor_div(e << PROB_FRAC, s)
    z_label = logits.gather(1, labels.view(-1, 1)).view(-1)
    loss = shift_round(ln_q30(s.view(-1)), TABLE_FRAC - EXP_IN_FRAC) + (zmax.view(-1) - z_label)
    return probs, loss


TIE_BREAK = ((3, 2), (1, 0))  # added to 4 * x at window member (dy, dx): earlier members win ties


@lru_cache(maxsize=16)
def tie_break_pattern(h: int, w: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[h, w] tensor of TIE_BREAK repeated over the 2x2 windows (cached: do not modify it)."""
    return torch.tensor(TIE_BREAK, dtype=dtype, device=device).repeat(h // 2, w // 2)


@lru_cache(maxsize=16)
def _window_offsets(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat offset of the winner within its window for each tie value, each window's origin)."""
    offsets = [0] * 4
    for dy in range(2):
        for dx in range(2):
            offsets[TIE_BREAK[dy][dx]] = dy * w + dx
    rows = torch.arange(h // 2, dtype=torch.int64, device=device).view(-1, 1) * (2 * w)
    origin = rows + torch.arange(w // 2, dtype=torch.int64, device=device) * 2
    return torch.tensor(offsets, dtype=torch.int64, device=device), origin


def max_pool2x2_tie_broken(x4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 max-pool over the last two dims of x4 = 4 * x + tie_break_pattern, for integer x.

    Every window's maximum of x4 is unique, at the first maximum of x in scan order (0,0), (0,1),
    (1,0), (1,1), which is how PyTorch's max_pool2d routes its gradient; ties are frequent (flat
    image regions give equal patches), so the rule matters. Returns (the maximum of x4 per window,
    so max x = floor(m4 / 4), and the winner's flat index within each H*W plane, int64).
    """
    *lead, h, w = x4.shape
    v = x4.view(*lead, h // 2, 2, w)
    rows = torch.maximum(v[..., 0, :], v[..., 1, :])  # [..., h/2, w]
    m4 = rows.view(*lead, h // 2, w // 2, 2).amax(dim=-1)
    tie = (m4 - 4.0 * torch.floor(m4 * 0.25)) if m4.is_floating_point() else (m4 & 3)
    offsets, origin = _window_offsets(h, w, x4.device)
    return m4, origin + offsets[tie.to(torch.int64)]


def max_unpool2x2(grad: torch.Tensor, index: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Scatter a pooled gradient [..., h/2, w/2] to the winners' flat `index`: [..., h, w] (no
    overlaps)."""
    *lead, h2, w2 = grad.shape
    out = torch.zeros((*lead, h * w), dtype=grad.dtype, device=grad.device)
    out.scatter_(-1, index.reshape(*lead, h2 * w2), grad.reshape(*lead, h2 * w2))
    return out.view(*lead, h, w)
