"""POUW amounts as users write them: decimal text with up to 8 decimals, parsed exactly (never
float).

1 POUW = 10^8 base units; amounts on chain are u64 base units.
"""

from __future__ import annotations

import re
from decimal import Decimal, Inexact, localcontext

UNITS_PER_COIN = 100_000_000
DECIMALS = 8
MAX_UNITS = (1 << 64) - 1

_AMOUNT = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")  # no sign, exponent, separator, NaN or Infinity


class AmountError(ValueError):
    """Text that is not an amount of POUW this wallet can send; the message says why."""


def parse_amount(text: str, what: str = "amount", allow_zero: bool = True) -> int:
    """Base units of a decimal POUW amount such as "12", "0.5" or "1.23456789".

    Rejects signs, exponents, separators, more than 8 decimals and values beyond u64, instead
    of rounding: an amount is money, so what is sent is exactly what was typed.
    """
    if not isinstance(text, str):
        raise AmountError(f"{what}: expected text, got {type(text).__name__}")
    s = text.strip()
    m = _AMOUNT.fullmatch(s)
    if m is None:
        raise AmountError(f"{what}: {text!r} is not a plain decimal number of POUW (e.g. 1.5)")
    if len(s) > 40:
        raise AmountError(f"{what}: {text!r} is too long to be an amount")
    with localcontext() as ctx:
        ctx.prec = 64  # more digits than 40 characters can hold: the product below is exact
        ctx.traps[Inexact] = True
        value = Decimal(s) * UNITS_PER_COIN
    if value != value.to_integral_value():
        raise AmountError(
            f"{what}: {text!r} has more than {DECIMALS} decimals (the smallest amount is "
            "0.00000001 POUW)"
        )
    units = int(value)
    if units > MAX_UNITS:
        raise AmountError(
            f"{what}: {text!r} exceeds the largest amount, {format_amount(MAX_UNITS)} POUW"
        )
    if units == 0 and not allow_zero:
        raise AmountError(f"{what}: must be more than 0")
    return units


def format_amount(units: int) -> str:
    """Base units as POUW text with no trailing zeros: 150000000 -> "1.5", 1 -> "0.00000001"."""
    if not isinstance(units, int) or isinstance(units, bool):
        raise TypeError("an amount is an int of base units")
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), UNITS_PER_COIN)
    text = f"{whole}.{frac:08d}".rstrip("0").rstrip(".")
    return sign + text
