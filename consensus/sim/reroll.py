"""A re-rolling miner in modelled mode: what each of its tickets costs, and whether verifiers accept
its blocks.

The mechanism of consensus.attacks.RerollMiner, drawn instead of run. On each tip the re-roller
runs `honest_prefix` honest units (each a ticket, exactly as an honest miner's), then grinds one
fabricated leaf (a "jump" that keeps the state and makes up its digest) per ticket:

- "chained": the fabricated leaf at index h = honest_prefix is followed by one honest unit, the
  winner; its seed chains over the fabricated leaf, so every ticket costs one real unit. A winning
  ticket is one unit's ticket under the target, drawn by the engine at the miner's unit rate like
  any other. Verifiers re-execute the winner (it passes) and the k units that
  consensus.tickets.challenged_units picks for the ticket among the n - 1 = h + 1 non-winning ones,
  in index order; the block is refused when the fabricated leaf is among them. The ticket is drawn
  as 32 random bytes and the real challenge rule is run on it, so the refusal rate (about
  k / (h + 1), every block when h + 1 <= k) comes out of the mechanism and is never an input.
- "last": the fabricated leaf is the winner. Its tickets cost hashes only (no simulated time; the
  number of hashes, geometric in the block's target, is counted), so the block is found as soon as
  the prefix is done, and verifiers refuse it at once: the winner is always re-executed.

Like RerollMiner, the re-roller publishes the first winning ticket without looking at its
challenges; a refused block leaves it idle until its tip moves (its node refused the block, and a
new attempt on the same tip would be the same work again), as the real-mode driver does. Idle time
runs no units. The units it really runs are counted per phase (prefix and re-roll units), so the
run record tells what each accepted block cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("last", "chained")


@dataclass(frozen=True)
class RerolledBlock:
    claimed: int  # leaves in the trace: the prefix, the fabricated leaf, and (chained) the winner
    caught: bool
    verify_units: int  # units a verifier re-executes before it accepts or refuses


def rerolled_block(
    rng: np.random.Generator,
    strategy: str,
    prefix: int,
    k: int,
    challenged: Callable[[bytes, int, int], list[int]],
) -> RerolledBlock:
    """A block won by a re-rolled ticket; `challenged` is consensus.tickets.challenged_units."""
    if strategy == "last":
        return RerolledBlock(prefix + 1, True, 1)
    n = prefix + 2
    fake = prefix  # the last non-winning index, so verifiers reach it after every other challenge
    chosen = challenged(rng.bytes(32), n, k)
    return RerolledBlock(n, fake in chosen, 1 + len(chosen))


class RerollAttempts:
    """The re-roller's attempts: which tip it mines on since when, whether it is idle, and the
    units it ran."""

    def __init__(self, strategy: str, prefix: int, rate: float) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(
                f"reroll strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
            )
        self.strategy = strategy
        self.prefix = prefix
        self.rate = rate
        self.tip = -1
        self.q = (
            0.0  # the chance that one unit's ticket on the current tip wins (its target / 2^256)
        )
        self.start = 0.0
        self.idle_since: float | None = None
        self.token = (
            0  # bumped by every new attempt (a scheduled "last" grind of an old attempt is void)
        )
        self.prefix_units = 0.0
        self.roll_units = 0.0
        self.idle_s = 0.0
        self.expected_prefix = (
            0.0  # blocks its prefix units win on average (units times q, summed over tips)
        )
        self.expected_roll = 0.0  # the same for its re-roll units, before any refusal
        # "last": fabricated leaves ground (drawn per block); "chained" makes one per re-roll unit
        self.hashes = 0

    @property
    def idle(self) -> bool:
        return self.idle_since is not None

    def units_since_start(self, t: float) -> float:
        return max(0.0, t - self.start) * self.rate

    def _close(self, t: float) -> None:
        """Count the units of the running attempt up to t (none while idle)."""
        if self.idle_since is not None:
            self.idle_s += max(0.0, t - self.idle_since)
            return
        units = self.units_since_start(t)
        if self.strategy == "last":
            units = min(units, self.prefix)  # past its prefix it only hashes
        prefix = min(units, self.prefix)
        self.prefix_units += prefix
        self.roll_units += units - prefix
        self.expected_prefix += prefix * self.q
        self.expected_roll += (units - prefix) * self.q

    def begin(self, tip: int, start: float, q: float = 0.0) -> None:
        """A new tip (accepted at `start`, a unit's ticket on it winning with probability q): the
        old attempt, or idle spell, ends there and a new attempt begins."""
        self._close(start)
        self.tip, self.q, self.start, self.idle_since = tip, q, start, None
        self.token += 1

    def go_idle(self, t: float) -> None:
        self._close(t)
        self.idle_since = t

    def finish(self, t: float) -> None:
        self._close(t)
        self.idle_since = t  # nothing more runs

    @property
    def units_run(self) -> float:
        return self.prefix_units + self.roll_units
