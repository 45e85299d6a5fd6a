"""Difficulty: an exponential (ASERT-style) retarget every block, in integer arithmetic, and chain
work.

Each block's target is its parent's target times 2^((solve time - block interval) / half-life):
the factors telescope, so after n blocks the target is the anchor's times
2^((elapsed - n * interval) / half-life), as under an absolute ASERT rule (up to the integer
2^x approximation, under 0.013% a block, which the feedback absorbs), and a miner who skews one
timestamp gains nothing the next block does not take back. The anchor is block 1 (the genesis
time is a parameter, not a solve time), so a network may start long after its genesis time.
"""

from __future__ import annotations

from consensus.params import ConsensusParams

_FRAC_BITS = 16


def _exp2_fixed(frac: int) -> int:
    """2^(frac / 2^16) * 2^16 for 0 <= frac < 2^16, by a cubic with integer coefficients.

    The cubic's error stays below 0.013% over the interval, and it is exact at both ends.
    """
    return (1 << _FRAC_BITS) + (
        (
            195_766_423_245_049 * frac
            + 971_821_376 * frac * frac
            + 5_127 * frac * frac * frac
            + (1 << 47)
        )
        >> 48
    )


def next_target(
    params: ConsensusParams,
    parent_height: int,
    parent_target: int,
    parent_time_ms: int,
    grandparent_time_ms: int,
) -> int:
    """Target of the block after `parent` (height parent_height + 1)."""
    if parent_height < 2:
        return (
            params.initial_target
        )  # blocks 1 and 2: block 1's time is the anchor, not a solve time
    solve_time = parent_time_ms - grandparent_time_ms
    exponent = (
        (solve_time - params.block_interval_ms) << _FRAC_BITS
    ) // params.retarget_half_life_ms
    shifts, frac = exponent >> _FRAC_BITS, exponent & ((1 << _FRAC_BITS) - 1)
    target = parent_target * _exp2_fixed(frac)
    target = target << shifts if shifts >= 0 else target >> -shifts
    target >>= _FRAC_BITS
    return max(1, min(target, params.max_target))


def block_work(target: int) -> int:
    """Expected number of tickets drawn to find a block at this target."""
    return (1 << 256) // (target + 1)
