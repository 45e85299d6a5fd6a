"""POUW amounts: exact decimal parsing (never float), formatting, and the limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p.wallet.amounts import MAX_UNITS, AmountError, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1", 100_000_000),
        ("1.5", 150_000_000),
        ("0.1", 10_000_000),  # 0.1 is not a binary float: parsed exactly all the same
        ("0.00000001", 1),
        (".5", 50_000_000),
        ("5.", 500_000_000),
        ("0", 0),
        ("1.10000000000", 110_000_000),  # trailing zeros beyond 8 decimals are still exact
        (" 2 ", 200_000_000),
        ("184467440737.09551615", MAX_UNITS),
        ("0.29", 29_000_000),  # float(0.29) * 1e8 == 28999999.999999996
    ],
)
def test_parse_exact(text, units):
    assert parse_amount(text) == units


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.000000001", "more than 8 decimals"),
        ("184467440737.09551616", "exceeds the largest amount"),
        ("-1", "plain decimal"),
        ("+1", "plain decimal"),
        ("1e3", "plain decimal"),
        ("NaN", "plain decimal"),
        ("inf", "plain decimal"),
        ("1,5", "plain decimal"),
        ("1_000", "plain decimal"),
        ("", "plain decimal"),
        (".", "plain decimal"),
        ("١", "plain decimal"),  # a non-ASCII digit
        ("9" * 41, "too long"),
    ],
)
def test_parse_rejects(text, message):
    with pytest.raises(AmountError, match=message):
        parse_amount(text)


def test_zero_can_be_refused():
    with pytest.raises(AmountError, match="more than 0"):
        parse_amount("0.000", "AMOUNT", allow_zero=False)


def test_format():
    assert format_amount(150_000_000) == "1.5"
    assert format_amount(1) == "0.00000001"
    assert format_amount(0) == "0"
    assert format_amount(5_000_000_000) == "50"
    with pytest.raises(TypeError):
        format_amount(1.5)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=MAX_UNITS))
def test_format_then_parse_is_the_identity(units):
    assert parse_amount(format_amount(units)) == units
